"""dlm: the Python client of dlm, a distributed lock manager.

Locks with fencing tokens, fair waits in the server's queue and renewal in
the background; small shared values with compare-and-set; persistent,
pooled connections. It speaks JackrabbitDLM's protocol, so
:class:`dlm.Locker` is a drop-in for JackrabbitDLM's own ``Locker``.

>>> import dlm
>>> client = dlm.Client("127.0.0.1:37373")                  # doctest: +SKIP
>>> with client.lock("nightly-report", ttl=30, wait=10) as lock:  # doctest: +SKIP
...     print("fencing token", lock.token)
...     client.put("report-status", "running", ttl=300)

The native part (``dlm._native``) is the Rust client compiled with PyO3;
every blocking call releases the GIL, and a wait for a lock can be
interrupted with Ctrl-C. ``dlm.aio`` has the same API for asyncio.
"""

from typing import Callable, Union

from . import _errors
from ._errors import (
    BadRequestError,
    CancelledError,
    ConflictError,
    DlmError,
    EncodingError,
    InternalError,
    InvalidArgumentError,
    LockLostError,
    NoMemoryError,
    NotFoundError,
    NotOwnerError,
    ProtocolError,
    SystemResourceError,
    TimeoutError,
    TlsError,
    UnavailableError,
)
from ._native import (
    CancelToken,
    Client,
    Event,
    Lock,
    LockState,
    MultiLock,
    SealedEncoder,
    Session,
    SessionLock,
    TableEncoder,
    Tls,
    Value,
    Watch,
    __version__,
)
from .locker import Locker

__all__ = [
    "Client",
    "Lock",
    "MultiLock",
    "LockState",
    "Value",
    "CancelToken",
    "TableEncoder",
    "SealedEncoder",
    "FunctionEncoder",
    "Tls",
    "Watch",
    "Event",
    "Session",
    "SessionLock",
    "Locker",
    "__version__",
    *_errors.__all__,
]


class FunctionEncoder:
    """An encoder made of two functions of the value alone, as JackrabbitDLM's
    ``Encoder``/``Decoder`` are: ``encode(value: bytes) -> str`` and
    ``decode(stored: str) -> bytes`` (a ``str`` result is taken as UTF-8).

    Any object with ``encode(name, value)`` and ``decode(name, stored)``
    methods can be a client's ``encoder``; this adapts the name-less kind.
    """

    def __init__(
        self,
        encode: Callable[[bytes], str],
        decode: Callable[[str], Union[bytes, str]],
    ) -> None:
        self._encode = encode
        self._decode = decode

    def encode(self, name: str, value: bytes) -> str:
        return self._encode(value)

    def decode(self, name: str, stored: str) -> bytes:
        plain = self._decode(stored)
        return plain.encode("utf-8") if isinstance(plain, str) else bytes(plain)

    def __repr__(self) -> str:
        return f"FunctionEncoder({self._encode!r}, {self._decode!r})"
