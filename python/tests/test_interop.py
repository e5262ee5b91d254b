"""Values and locks across bindings: Python with the `dlm` command (the Rust
client) and with the JackrabbitDLM-style client of tests/python, which
talks like JackrabbitDLM's own (legacy framing, a connection per request)."""

import importlib.util
import os
import subprocess

import pytest

import dlm
from conftest import CLI_BIN, ROOT

_spec = importlib.util.spec_from_file_location("jackrabbit_style", ROOT / "tests" / "python" / "test_jackrabbit_client.py")
assert _spec is not None and _spec.loader is not None
jackrabbit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(jackrabbit)
OldClient = jackrabbit.OldClient


def cli(server, *args, stdin=None):
    return subprocess.run(
        [str(CLI_BIN), "--server", server.addr, *args],
        input=stdin,
        capture_output=True,
        check=True,
        env={**os.environ, "DLM_SERVER": server.addr},
    ).stdout


def test_python_put_cli_get(server, name):
    c = dlm.Client(server.addr, client_id="interop-owner")
    value = bytes(range(256)) + "caf\u00e9".encode()
    c.put(name, value)
    assert cli(server, "--id", "interop-owner", "get", name) == value


def test_cli_put_python_get(server, name):
    value = b"from the dlm command \x00\xff"
    rev = cli(server, "--id", "interop-owner", "put", name, "-", stdin=value)
    assert int(rev.strip()) == 1
    v = dlm.Client(server.addr, client_id="interop-owner").get(name)
    assert v.value == value and v.revision == 1


def test_locks_are_seen_across_bindings(server, name):
    with dlm.Client(server.addr, client_id="py-holder").lock(name) as lock:
        out = cli(server, "--id", "py-holder", "test", name).decode().split()
        assert out[0] == "mine" and int(out[1]) == lock.token
        assert cli(server, "test", name).decode().startswith("taken")


@pytest.mark.parametrize("text", ["plain", "state: {\"n\": 1} \u2713", "caf\u00e9-\U0001f512"])
def test_values_with_the_jackrabbit_style_client(server, name, text):
    old = OldClient((server.host, server.port), name)
    # The old client writes; dlm.Client, dlm.Locker (same ID) read.
    assert old.put(60, text)["Status"] == "Done"
    assert dlm.Client(server.addr, client_id=old.id).get(name).text == text
    locker = dlm.Locker(name, Host=server.host, Port=server.port, ID=old.id)
    assert locker.Get()["DataStore"] == text
    # dlm.Client writes; the old client reads.
    dlm.Client(server.addr, client_id=old.id).put(name, text + "!")
    assert old.get()["DataStore"] == text + "!"
    # The Locker writes; the old client reads.
    locker.Put(60, text + "?")
    assert old.get()["DataStore"] == text + "?"


def test_locks_with_the_jackrabbit_style_client(server, name):
    old = OldClient((server.host, server.port), name)
    new = dlm.Locker(name, Host=server.host, Port=server.port)
    assert old.lock() == "locked"
    assert new.Lock() == "notowner"
    assert old.unlock() == "unlocked"
    assert new.Lock() == "locked"
    assert old.lock() == "notowner"
    # Same ID: the old client and the Locker are one owner.
    same = OldClient((server.host, server.port), name, ident=new.ID)
    assert same.lock() == "locked"
    assert same.unlock() == "unlocked"
    assert new.Unlock() == "unlocked"
