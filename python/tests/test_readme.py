"""The examples of python/README.md and the root README run as written
(against this module's server instead of the default address)."""

import asyncio
import re

import pytest

from conftest import ROOT


def blocks(path):
    text = (ROOT / path).read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def run(path, server):
    """Runs the blocks in order in one namespace, as a reader would."""
    scope = {}
    for code in blocks(path):
        code = code.replace("127.0.0.1:37373", server.addr).replace("Port=37373", f"Port={server.port}")
        exec(compile(code, path, "exec"), scope)
        if "main" in scope:
            asyncio.run(scope.pop("main")())


@pytest.mark.parametrize("path", ["python/README.md", "README.md"])
def test_readme_examples(fresh_server, path):
    assert blocks(path)
    run(path, fresh_server())
