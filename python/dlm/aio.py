"""dlm for asyncio: the same client, with awaitables that never block the
event loop.

>>> import dlm.aio
>>> async def main():                                           # doctest: +SKIP
...     async with dlm.aio.Client("127.0.0.1:37373") as client:
...         async with client.lock("nightly-report", ttl=30, wait=10) as lock:
...             print("fencing token", lock.token)
...             await client.put("report-status", "running", ttl=300)

Each call runs the native client in a worker thread (the native code
releases the GIL, so the loop keeps running). A waiting ``acquire()`` gets
a thread of its own, so waits never starve the pool that serves the other
calls. Cancelling the task that awaits an acquire cancels the wait at once
(the server drops the waiter) and raises ``asyncio.CancelledError``; if the
lock was granted at that very moment, it is released in the background.
"""

import asyncio
import concurrent.futures
import functools
import threading
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar

from . import _native

__all__ = ["Client", "Lock", "connect"]

T = TypeVar("T")


def _settle(fut: "asyncio.Future[Any]", ok: bool, value: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class Client:
    """An asyncio client: ``dlm.Client``'s API, every call awaitable.

    It connects on first use (or ``await client.connect()``, or ``async
    with``); the arguments are ``dlm.Client``'s. ``workers`` bounds the
    threads that run the short calls.
    """

    def __init__(self, server: str = "127.0.0.1:37373", *, workers: int = 8, **options: Any) -> None:
        self._server = server
        self._options = options
        self._native: Optional[_native.Client] = None
        self._owned = True
        self._connecting: Optional[asyncio.Lock] = None
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dlm-aio")

    @classmethod
    def wrap(cls, client: _native.Client, *, workers: int = 8) -> "Client":
        """An asyncio client over an existing ``dlm.Client`` (same pool,
        same owner ID); closing it leaves ``client`` open."""
        c = cls(client.server, workers=workers)
        c._native = client
        c._owned = False
        return c

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    async def connect(self) -> "Client":
        """Connects now (raises ``UnavailableError`` if the server cannot be
        reached); later calls reuse the connection pool."""
        await self._client()
        return self

    async def _client(self) -> _native.Client:
        if self._native is not None:
            return self._native
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._native is None:
                self._native = await self._run(lambda: _native.Client(self._server, **self._options))
        return self._native

    @property
    def id(self) -> str:
        """The owner ID (after connecting)."""
        if self._native is None:
            raise RuntimeError("not connected yet: await client.connect() first")
        return self._native.id

    @property
    def native(self) -> Optional[_native.Client]:
        """The blocking ``dlm.Client`` underneath (``None`` before connecting)."""
        return self._native

    async def close(self) -> None:
        """Closes the connections (unless the client was wrapped) and the
        worker threads."""
        if self._native is not None and self._owned:
            self._native.close()
        self._pool.shutdown(wait=False)

    async def __aenter__(self) -> "Client":
        return await self.connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def lock(self, name: str, ttl: float = 30.0, wait: Optional[float] = None, auto_renew: bool = True) -> "Lock":
        """A lock on ``name``, not yet taken: ``async with`` it, or ``await
        lock.acquire()``. Arguments as ``dlm.Client.lock``."""
        return Lock(self, name, ttl, wait, auto_renew)

    def semaphore(
        self, name: str, permits: int, ttl: float = 30.0, wait: Optional[float] = None, auto_renew: bool = True
    ) -> "Lock":
        """One permit of the counting semaphore ``name``, not yet taken.
        Arguments as ``dlm.Client.semaphore``."""
        return Lock(
            self, name, ttl, wait, auto_renew, _make=lambda c: c.semaphore(name, permits, ttl, wait, auto_renew)
        )

    def read_lock(self, name: str, ttl: float = 30.0, wait: Optional[float] = None, auto_renew: bool = True) -> "Lock":
        """The shared side of the read/write lock ``name``, not yet taken.
        Arguments as ``dlm.Client.read_lock``."""
        return Lock(self, name, ttl, wait, auto_renew, _make=lambda c: c.read_lock(name, ttl, wait, auto_renew))

    def write_lock(self, name: str, ttl: float = 30.0, wait: Optional[float] = None, auto_renew: bool = True) -> "Lock":
        """The exclusive side of the read/write lock ``name``, not yet taken.
        Arguments as ``dlm.Client.write_lock``."""
        return Lock(self, name, ttl, wait, auto_renew, _make=lambda c: c.write_lock(name, ttl, wait, auto_renew))

    async def test_lock(self, name: str) -> _native.LockState:
        c = await self._client()
        return await self._run(c.test_lock, name)

    async def unlock(self, name: str, token: Optional[int] = None) -> bool:
        c = await self._client()
        return await self._run(c.unlock, name, token)

    async def put(self, name: str, value: Any, ttl: float = 300.0, *, revision: Optional[int] = None) -> int:
        c = await self._client()
        return await self._run(functools.partial(c.put, revision=revision), name, value, ttl)

    async def get(self, name: str) -> Optional[_native.Value]:
        c = await self._client()
        return await self._run(c.get, name)

    async def erase(self, name: str) -> bool:
        c = await self._client()
        return await self._run(c.erase, name)

    async def version(self) -> str:
        c = await self._client()
        return await self._run(c.version)

    async def stats(self) -> Dict[str, int]:
        c = await self._client()
        return await self._run(c.stats)

    def __repr__(self) -> str:
        return f"<dlm.aio.Client {self._server} {'connected' if self._native else 'not connected'}>"


class Lock:
    """A lock of an asyncio ``Client``: ``dlm.Lock``'s API, with
    ``acquire``, ``release`` and ``extend`` awaitable."""

    def __init__(
        self,
        client: Client,
        name: str,
        ttl: float,
        wait: Optional[float],
        auto_renew: bool,
        *,
        _make: Optional[Callable[[_native.Client], _native.Lock]] = None,
    ) -> None:
        self._client = client
        self._name = name
        self._make: Callable[[_native.Client], _native.Lock] = _make or (
            lambda c: c.lock(name, ttl, wait, auto_renew)
        )
        self._lock: Optional[_native.Lock] = None

    async def _native(self) -> _native.Lock:
        if self._lock is None:
            c = await self._client._client()
            self._lock = self._make(c)
        return self._lock

    async def acquire(self) -> "Lock":
        """Takes the lock (waiting up to ``wait`` seconds in the server's
        queue); raises as ``dlm.Lock.acquire``. Cancelling the awaiting
        task cancels the wait."""
        native = await self._native()
        loop = asyncio.get_running_loop()
        fut: "asyncio.Future[Any]" = loop.create_future()
        token = _native.CancelToken()

        def work() -> None:
            try:
                result: Tuple[bool, Any] = (True, native.acquire(cancel=token))
            except BaseException as e:  # handed to the awaiting task
                result = (False, e)
            try:
                loop.call_soon_threadsafe(_settle, fut, *result)
            except RuntimeError:
                # The loop is closed: nobody will ever use this grant.
                if result[0]:
                    native.release()

        # A wait may last long: a thread of its own. One attempt: the pool.
        if native.wait is not None:
            threading.Thread(target=work, name="dlm-aio-wait", daemon=True).start()
        else:
            self._client._pool.submit(work)
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            token.cancel()

            def orphan(done: "asyncio.Future[Any]") -> None:
                # Granted just before the cancel reached it: give it back.
                if not done.cancelled() and done.exception() is None:
                    self._client._pool.submit(native.release)

            fut.add_done_callback(orphan)
            raise
        return self

    async def release(self) -> None:
        """Releases the lock; raises ``LockLostError`` if it had been lost."""
        if self._lock is not None:
            await self._client._run(self._lock.release)

    async def extend(self, ttl: Optional[float] = None) -> None:
        """Extends this grant to ``ttl`` seconds from now (the lock's TTL by
        default); raises ``LockLostError`` if it is gone."""
        native = await self._native()
        await self._client._run(native.extend, ttl)

    @property
    def name(self) -> str:
        return self._name

    @property
    def token(self) -> Optional[int]:
        """The fencing token of the latest grant."""
        return self._lock.token if self._lock is not None else None

    @property
    def lost(self) -> bool:
        return self._lock.lost if self._lock is not None else False

    @property
    def held(self) -> bool:
        return self._lock.held if self._lock is not None else False

    @property
    def remaining(self) -> float:
        return self._lock.remaining if self._lock is not None else 0.0

    async def __aenter__(self) -> "Lock":
        return await self.acquire()

    async def __aexit__(self, *exc: Any) -> None:
        await self.release()

    def __repr__(self) -> str:
        return f"<dlm.aio.Lock {self._native_repr()}>"

    def _native_repr(self) -> str:
        return repr(self._lock) if self._lock is not None else repr(self._name)


async def connect(server: str = "127.0.0.1:37373", **options: Any) -> Client:
    """Connects an asyncio client: ``await dlm.aio.connect("host:port")``."""
    return await Client(server, **options).connect()
