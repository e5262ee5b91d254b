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

``client.session(ttl)`` is a ``Session`` (``async with``) whose ``lock()``s
end with it; ``client.watch(prefix=...)`` an async iterator of events on a
thread of its own.
"""

import asyncio
import concurrent.futures
import functools
import threading
import weakref
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar, Union

from . import _native
from ._errors import InvalidArgumentError, UnavailableError

__all__ = ["Client", "Lock", "MultiLock", "Session", "SessionLock", "Watch", "connect"]

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

    def __init__(self, server: Optional[str] = None, *, workers: int = 8, **options: Any) -> None:
        self._server = server
        self._options = options
        self._native: Optional[_native.Client] = None
        self._owned = True
        self._connecting: Optional[asyncio.Lock] = None
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dlm-aio")
        # The sessions and watches it made: closing the client closes them.
        self._children: "weakref.WeakSet[Union[Session, Watch]]" = weakref.WeakSet()
        self._closed = False

    @classmethod
    def wrap(cls, client: _native.Client, *, workers: int = 8) -> "Client":
        """An asyncio client over an existing ``dlm.Client`` (same pool,
        same owner ID); closing it leaves ``client`` open."""
        c = cls(client.server, workers=workers)
        c._native = client
        c._owned = False
        return c

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise UnavailableError("the client is closed")
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
        """Closes the sessions (the server releases their locks) and the
        watches made through it, then the connections (unless the client
        was wrapped) and the worker threads; later calls raise
        ``UnavailableError``."""
        if self._closed:
            return
        for child in list(self._children):
            await child.close()
        self._closed = True
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

    def lock_all(
        self, names: Sequence[str], ttl: float = 30.0, wait: Optional[float] = None, auto_renew: bool = True
    ) -> "MultiLock":
        """Exclusive locks on every one of ``names``, all or none, not yet
        taken: ``async with`` it, or ``await locks.acquire()``. Arguments
        as ``dlm.Client.lock_all``."""
        return MultiLock(self, names, ttl, wait, auto_renew)

    async def test_lock(self, name: str) -> _native.LockState:
        c = await self._client()
        return await self._run(c.test_lock, name)

    async def unlock(self, name: str, token: Optional[int] = None) -> bool:
        c = await self._client()
        return await self._run(c.unlock, name, token)

    async def put(
        self,
        name: str,
        value: Any,
        ttl: float = 300.0,
        *,
        revision: Optional[int] = None,
        readers: Optional[Union[str, Iterable[str]]] = None,
    ) -> int:
        """As ``dlm.Client.put``: ``readers`` is ``None`` (the owner alone),
        ``"any"``, or a list of identity names."""
        c = await self._client()
        return await self._run(functools.partial(c.put, revision=revision, readers=readers), name, value, ttl)

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

    def session(self, ttl: float = 10.0) -> "Session":
        """A server session of ``ttl`` seconds on a connection of its own,
        opened by ``async with`` (or ``await``): its ``lock()``s end with
        it. As ``dlm.Client.session``. Closing the client closes it."""
        session = Session(self, ttl)
        self._children.add(session)
        return session

    def watch(
        self, prefix: Optional[str] = None, *, name: Optional[str] = None, since: Optional[int] = None
    ) -> "Watch":
        """The changes of every name that starts with ``prefix`` (or of the
        one ``name``) as an async iterator of ``dlm.Event``: ``async for
        event in client.watch(prefix="jobs/")``. ``since``: resume after that
        revision. It starts at the first ``__anext__`` (or ``async with``);
        see ``Watch``. Closing the client closes it."""
        watch = Watch(self, prefix, name, since)
        self._children.add(watch)
        return watch

    def __repr__(self) -> str:
        where = self._server if self._server is not None else "DLM_SERVER"
        return f"<dlm.aio.Client {where} {'connected' if self._native else 'not connected'}>"


_G = TypeVar("_G", bound="_Grant")


class _Grant:
    """What ``Lock`` and ``MultiLock`` share: a native lock object (made on
    first use by ``make``) whose blocking calls run in worker threads."""

    def __init__(self, client: Client, make: Callable[[_native.Client], Any]) -> None:
        self._client = client
        self._make = make
        self._lock: Any = None

    async def _native(self) -> Any:
        if self._lock is None:
            c = await self._client._client()
            self._lock = self._make(c)
        return self._lock

    async def acquire(self: _G) -> _G:
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
    def lost(self) -> bool:
        return bool(self._lock.lost) if self._lock is not None else False

    @property
    def held(self) -> bool:
        return bool(self._lock.held) if self._lock is not None else False

    @property
    def remaining(self) -> float:
        return float(self._lock.remaining) if self._lock is not None else 0.0

    async def __aenter__(self: _G) -> _G:
        return await self.acquire()

    async def __aexit__(self, *exc: Any) -> None:
        await self.release()


class Lock(_Grant):
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
        super().__init__(client, _make or (lambda c: c.lock(name, ttl, wait, auto_renew)))
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def token(self) -> Optional[int]:
        """The fencing token of the latest grant."""
        return self._lock.token if self._lock is not None else None

    def __repr__(self) -> str:
        return f"<dlm.aio.Lock {self._native_repr()}>"

    def _native_repr(self) -> str:
        return repr(self._lock) if self._lock is not None else repr(self._name)


class MultiLock(_Grant):
    """Exclusive locks on several names of an asyncio ``Client``, taken
    all or none (``dlm.MultiLock`` underneath): ``async with
    client.lock_all(["a", "b"]) as locks``."""

    def __init__(
        self, client: Client, names: Sequence[str], ttl: float, wait: Optional[float], auto_renew: bool
    ) -> None:
        if isinstance(names, str):
            raise TypeError("lock_all takes a list of names, not one string")
        self._names = list(names)
        names_ = self._names
        super().__init__(client, lambda c: c.lock_all(names_, ttl, wait, auto_renew))

    @property
    def names(self) -> List[str]:
        """The names, in the order given."""
        return list(self._names)

    @property
    def tokens(self) -> Optional[List[Optional[int]]]:
        """The fencing token of each name of the latest grant, in the order
        of ``names`` (``None`` before the first grant)."""
        return self._lock.tokens if self._lock is not None else None

    def token(self, name: str) -> Optional[int]:
        """The fencing token of ``name`` in the latest grant."""
        return self._lock.token(name) if self._lock is not None else None

    def __repr__(self) -> str:
        return f"<dlm.aio.MultiLock {self._lock!r}>" if self._lock is not None else f"<dlm.aio.MultiLock {self._names!r}>"


class Session:
    """A session of an asyncio ``Client`` (``dlm.Session`` underneath):
    ``async with client.session(ttl=10) as s`` opens it and closes it at
    the end, which releases every lock bound to it."""

    def __init__(self, client: Client, ttl: float) -> None:
        self._client = client
        self._ttl = ttl
        self._native: Optional[_native.Session] = None
        self._opening: Optional[asyncio.Lock] = None

    async def open(self) -> "Session":
        """Opens it (once): ``BadRequestError`` from a server without
        sessions, ``UnavailableError`` if no server can be reached."""
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._native is None:
                c = await self._client._client()
                self._native = await self._client._run(c.session, self._ttl)
        return self

    def __await__(self) -> Any:
        return self.open().__await__()

    def _session(self) -> _native.Session:
        if self._native is None:
            raise RuntimeError("the session is not open yet: async with it, or await session.open()")
        return self._native

    def lock(
        self,
        name: str,
        *,
        ttl: float = 30.0,
        wait: Optional[float] = None,
        lock_delay: float = 0.0,
        permits: Optional[int] = None,
        mode: Optional[str] = None,
    ) -> "SessionLock":
        """A lock of ``name`` bound to this session, not yet taken: ``async
        with`` it. Arguments as ``dlm.Session.lock``."""
        return SessionLock(
            self,
            self._session().lock(name, ttl=ttl, wait=wait, lock_delay=lock_delay, permits=permits, mode=mode),
            wait is not None and wait > 0,
        )

    @property
    def lost(self) -> bool:
        """Whether a keep-alive found the session lost (its locks gone)."""
        return self._native is not None and self._native.lost

    @property
    def closed(self) -> bool:
        return self._native is not None and self._native.closed

    @property
    def ttl(self) -> float:
        return self._ttl

    def on_lost(self, callback: Callable[[], Any]) -> None:
        """Calls ``callback()`` in the event loop's thread once a keep-alive
        finds the session lost."""
        loop = asyncio.get_running_loop()

        def lost() -> None:
            try:
                loop.call_soon_threadsafe(callback)
            except RuntimeError:
                pass  # the loop is closed: nobody to tell

        self._session().on_lost(lost)

    async def close(self) -> None:
        """Ends the session (the server releases its locks)."""
        if self._native is not None:
            await self._client._run(self._native.close)

    async def __aenter__(self) -> "Session":
        return await self.open()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<dlm.aio.Session {self._native!r}>"


class SessionLock:
    """A lock bound to a ``Session``: ``async with`` takes and releases it."""

    def __init__(self, session: Session, native: _native.SessionLock, waits: bool) -> None:
        self._session = session
        self._native = native
        self._waits = waits

    async def acquire(self) -> "SessionLock":
        """Takes it; raises as ``dlm.SessionLock.acquire``. A cancelled
        acquire cannot stop the server's wait: a lock granted after it is
        released in the background."""
        loop = asyncio.get_running_loop()
        fut: "asyncio.Future[Any]" = loop.create_future()
        native = self._native
        pool = self._session._client._pool

        def work() -> None:
            try:
                result: Tuple[bool, Any] = (True, native.acquire())
            except BaseException as e:  # handed to the awaiting task
                result = (False, e)
            try:
                loop.call_soon_threadsafe(_settle, fut, *result)
            except RuntimeError:
                if result[0]:
                    native.release()

        if self._waits:
            threading.Thread(target=work, name="dlm-aio-session-wait", daemon=True).start()
        else:
            pool.submit(work)
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:

            def orphan(done: "asyncio.Future[Any]") -> None:
                if not done.cancelled() and done.exception() is None:
                    pool.submit(native.release)

            fut.add_done_callback(orphan)
            raise
        return self

    async def release(self) -> None:
        """Releases it; ``LockLostError`` if it was no longer held."""
        await self._session._client._run(self._native.release)

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def token(self) -> Optional[int]:
        return self._native.token

    @property
    def held(self) -> bool:
        return self._native.held

    async def __aenter__(self) -> "SessionLock":
        return await self.acquire()

    async def __aexit__(self, *exc: Any) -> None:
        await self.release()

    def __repr__(self) -> str:
        return f"<dlm.aio.SessionLock {self._native!r}>"


class Watch:
    """A watch of an asyncio ``Client``: an async iterator of
    ``dlm.Event`` (``dlm.Watch`` underneath, on a thread of its own, so a
    watch never takes the pool's workers). It never ends by itself: stop
    with ``break`` (then ``await watch.close()``), ``async with``, or by
    cancelling the task. It reconnects and resumes as ``dlm.Watch`` does;
    ``ConflictError`` (its ``revision`` the current one) says the server no
    longer keeps the events since the last one seen: read the state again,
    and go on iterating (it continues from the current revision)."""

    #: How long one wait on the watch's thread lasts before the loop looks
    #: again (so closing is never held up longer).
    _SLICE = 0.25

    def __init__(self, client: Client, prefix: Optional[str], name: Optional[str], since: Optional[int]) -> None:
        if (prefix is None) == (name is None):
            raise InvalidArgumentError("give a prefix or a name, not both")
        self._client = client
        self._prefix = prefix
        self._name = name
        self._since = since
        self._native: Optional[_native.Watch] = None
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dlm-aio-watch")
        self._pending: Optional["asyncio.Future[Optional[_native.Event]]"] = None
        self._closed = False

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, functools.partial(fn, *args))

    async def start(self) -> "Watch":
        """Subscribes now (else at the first ``__anext__``): raises
        ``ConflictError`` if ``since`` is older than the server keeps."""
        if self._closed:
            raise RuntimeError("the watch is closed")
        if self._native is None:
            c = await self._client._client()
            if self._prefix is not None:
                self._native = await self._run(functools.partial(c.watch_prefix, self._prefix, since=self._since))
            else:
                assert self._name is not None
                self._native = await self._run(functools.partial(c.watch_name, self._name, since=self._since))
        return self

    @property
    def revision(self) -> Optional[int]:
        """The last revision given (or the one it started from): pass it
        as ``since`` to resume in another watch."""
        return self._native.revision if self._native is not None else self._since

    def __aiter__(self) -> "Watch":
        return self

    async def __anext__(self) -> _native.Event:
        if self._closed:
            raise StopAsyncIteration
        native = (await self.start())._native
        assert native is not None
        loop = asyncio.get_running_loop()
        while True:
            if self._pending is None:
                self._pending = loop.run_in_executor(self._thread, native.next_event, self._SLICE)
            # A cancelled wait leaves its slice running: its event is kept
            # for the next call, never lost.
            fut = self._pending
            try:
                event = await asyncio.shield(fut)
            finally:
                if fut.done():
                    self._pending = None
            if self._closed:
                raise StopAsyncIteration
            if event is not None:
                return event

    async def close(self) -> None:
        """Closes the watch's connection; iterating ends."""
        if self._closed:
            return
        self._closed = True
        native = self._native
        if native is not None:
            await self._client._run(native.close)
        self._thread.shutdown(wait=False)

    async def aclose(self) -> None:
        await self.close()

    async def __aenter__(self) -> "Watch":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        what = f"prefix={self._prefix!r}" if self._prefix is not None else f"name={self._name!r}"
        return f"<dlm.aio.Watch {what} revision={self.revision}>"


async def connect(server: Optional[str] = None, **options: Any) -> Client:
    """Connects an asyncio client: ``await dlm.aio.connect("host:port")``
    (without ``server``: ``DLM_SERVER``, else 127.0.0.1:37373)."""
    return await Client(server, **options).connect()
