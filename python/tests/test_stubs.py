"""The type stubs shipped in the wheel match the native module: every class,
method and property in _native.pyi exists at run time, and the reverse."""

import ast
import pathlib

import dlm
from dlm import _native


def stub_members():
    stub = pathlib.Path(dlm.__file__).with_name("_native.pyi")
    assert stub.exists(), "the wheel ships the stubs"
    assert stub.with_name("py.typed").exists(), "the wheel is marked typed"
    tree = ast.parse(stub.read_text())
    classes = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            classes[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
    return classes


def runtime_members(cls):
    return {m for m in vars(cls) if not m.startswith("__") or m in ("__enter__", "__exit__", "__len__", "__init__", "__iter__", "__next__")}


def test_stubs_match_the_native_module():
    stubs = stub_members()
    runtime = {n for n in dir(_native) if isinstance(getattr(_native, n), type)}
    assert set(stubs) == runtime
    for name, members in stubs.items():
        cls = getattr(_native, name)
        have = runtime_members(cls)
        missing = members - have - {"__init__"}
        assert not missing, f"{name}: in the stubs, not at run time: {missing}"
        extra = have - members - {"__init__", "__new__"}
        assert not extra, f"{name}: at run time, not in the stubs: {extra}"


def test_every_export_exists():
    for name in dlm.__all__:
        assert hasattr(dlm, name), name
    for name in dlm._errors.__all__:
        err = getattr(dlm, name)
        assert issubclass(err, dlm.DlmError) and isinstance(err.code, str)
