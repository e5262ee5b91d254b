"""dlm._errors follows dlm-core's list of error kinds: every kind a Python
caller can meet has its own class, whose ``code`` is the kind's name (the
same name as JavaScript's ``err.code`` and Go's ``Err<Name>``)."""

import dlm
from dlm import _errors, _native


def test_every_kind_has_its_own_class_with_its_code():
    pairs = _native.error_classes()
    assert len(pairs) >= 13
    for kind, class_name in pairs:
        assert class_name != "DlmError", f"{kind} has no class of its own"
        cls = getattr(_errors, class_name)
        assert issubclass(cls, dlm.DlmError)
        assert cls.code == kind, f"{class_name}.code is {cls.code}, not {kind}"
        assert class_name in dlm.__all__


def test_classes_are_distinct_and_every_class_is_used():
    pairs = _native.error_classes()
    names = [c for _, c in pairs]
    assert len(names) == len(set(names))
    # TlsError refines UnavailableError (same code): not a kind of its own.
    declared = {n for n in _errors.__all__ if n not in ("DlmError", "TlsError")}
    assert declared == set(names)
    assert issubclass(dlm.TlsError, dlm.UnavailableError)
    assert dlm.TlsError.code == dlm.UnavailableError.code


def test_builtin_families():
    assert issubclass(dlm.TimeoutError, TimeoutError)
    assert issubclass(dlm.UnavailableError, ConnectionError)
    assert issubclass(dlm.InvalidArgumentError, ValueError)
    assert issubclass(dlm.SystemResourceError, OSError)
