"""The exceptions of dlm: one class per kind of failure, each with a ``code``.

The codes are the ones every dlm binding uses (the Rust ``ErrorKind``, the C
status names, the Node.js ``err.code``), so logs and tests read the same in
every language. Where a built-in exception means the same thing, the class
derives from it too: ``TimeoutError`` is also Python's ``TimeoutError``,
``UnavailableError`` a ``ConnectionError``, ``InvalidArgumentError`` a
``ValueError``.

The native module raises these (it imports this module by name), so keep
the class names in step with ``src/errors.rs``.
"""

import builtins

__all__ = [
    "DlmError",
    "NotOwnerError",
    "NotFoundError",
    "ConflictError",
    "TimeoutError",
    "LockLostError",
    "CancelledError",
    "BadRequestError",
    "NoMemoryError",
    "UnavailableError",
    "TlsError",
    "ProtocolError",
    "EncodingError",
    "InvalidArgumentError",
    "InternalError",
    "SystemResourceError",
]


class DlmError(Exception):
    """Base class of every error dlm raises; ``code`` names the kind."""

    code = "Error"


class NotOwnerError(DlmError):
    """Another owner holds the lock or entry (or a fencing token was stale)."""

    code = "NotOwner"


class NotFoundError(DlmError):
    """No such entry. ``get`` returns ``None`` and ``erase`` ``False``
    instead; kept so that every binding has the same codes."""

    code = "NotFound"


class ConflictError(DlmError):
    """A compare-and-set ``put`` found another revision: ``revision`` is the
    stored one (0: there is no entry)."""

    code = "Conflict"

    def __init__(self, message: str = "revision conflict", revision: int = 0) -> None:
        super().__init__(message, revision)
        self.revision = revision

    def __str__(self) -> str:
        return str(self.args[0])


class TimeoutError(DlmError, builtins.TimeoutError):  # noqa: A001 - deliberate
    """A waiting lock's wait ran out (also a built-in ``TimeoutError``)."""

    code = "Timeout"


class LockLostError(DlmError):
    """The lock was lost: it expired or was taken before it could be
    extended or released, so the work it guarded may not have been
    exclusive."""

    code = "LockLost"


class CancelledError(DlmError):
    """A wait was cancelled through a ``CancelToken``. (An asyncio task that
    is cancelled raises ``asyncio.CancelledError`` as usual.)"""

    code = "Cancelled"


class BadRequestError(DlmError):
    """The server refused the request as malformed or over one of its
    limits (value size, TTL, name length)."""

    code = "BadRequest"


class NoMemoryError(DlmError):
    """The server's memory budget is spent: no new locks or values now."""

    code = "NoMemory"


class UnavailableError(DlmError, ConnectionError):
    """The server could not be reached, or the connection failed."""

    code = "Unavailable"


class TlsError(UnavailableError):
    """The TLS handshake failed: a refusal that trying again will not fix.
    ``reason`` says why: ``"unknown_ca"`` (the server's certificate is not
    signed by a trusted CA), ``"name_mismatch"`` (it is for another name),
    ``"expired"``, ``"not_valid_yet"``, ``"bad_certificate"``,
    ``"client_certificate_refused"`` (the server refused ours, or wanted
    one), ``"not_tls"`` (the port does not speak TLS) or ``"other"``.
    Its ``code`` stays ``"Unavailable"``, as in every binding."""

    code = "Unavailable"

    def __init__(self, message: str = "TLS handshake failed", reason: str = "other") -> None:
        super().__init__(message, reason)
        self.reason = reason

    def __str__(self) -> str:
        return str(self.args[0])


class ProtocolError(DlmError):
    """The server answered something that makes no sense for the request."""

    code = "Protocol"


class EncodingError(DlmError):
    """A value could not be encoded or decoded: the wrong encoder or key, a
    tampered value, or a custom encoder that raised (it is the
    ``__cause__``)."""

    code = "Encoding"


class InvalidArgumentError(DlmError, ValueError):
    """An argument was invalid (an empty name, a negative TTL, a key that is
    not 32 bytes...)."""

    code = "InvalidArgument"


class InternalError(DlmError):
    """A bug in dlm: the native code panicked. The panic was caught; the
    client may be used again."""

    code = "Panic"


class SystemResourceError(DlmError, OSError):
    """The operating system refused something the client needs (a thread
    for a lock's renewal, for example). The call did not take effect."""

    code = "System"
