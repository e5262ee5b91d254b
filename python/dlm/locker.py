"""JackrabbitDLM's ``Locker`` API over dlm's client.

Code written for JackrabbitDLM's client switches by changing its import::

    from DLMLocker import Locker      # before
    from dlm import Locker            # after

The class takes the same arguments (``filename, Retry, RetrySleep, Timeout,
ID, Host, Port, Encoder, Decoder, name, identity``), has the same methods
(``Lock``, ``Unlock``, ``IsLocked``, ``Put``, ``Get``, ``Erase``,
``Version``, ``IsDLM``, ``GetID``, ``dlmEncode``, ``dlmDecode``) and returns
what they return: lowercase status words from the lock methods
(``'locked'``, ``'unlocked'``, ``'notowner'``, ``'badpayload'``, ``'no'``,
``'failure'`` when the server cannot be reached after ``Retry`` retries), the
server's answer as a JSON string from ``Put`` and ``Erase``, a dict with the
decoded ``DataStore`` (or ``None``) from ``Get``. Stored values use the
same table codec, so old and new clients read each other's values.

What changes underneath:

- **Persistent connections.** Every Locker with the same server, ``ID`` and
  identity shares one pooled dlm client; the original opens a TCP
  connection per request.
- **Fencing tokens.** After ``Lock()`` returns ``'locked'``, ``token`` holds
  the grant's fencing token, to pass to whatever the lock protects.
- **Waits.** ``Lock(expire, wait=S)`` queues up to S seconds in the
  server's fair queue instead of answering ``'notowner'`` at once.
- **Compare-and-set.** ``Put(expire, data, revision=N)`` stores only if the
  stored revision is N (0: only if absent); ``Get()`` returns the
  ``Revision``.

What is different, on purpose or by necessity:

- It needs a dlm server (``dlm-server``): JackrabbitDLM's server gives no
  fencing token, which dlm's client requires. Migrate the server first; old
  clients keep working against it.
- A custom ``Encoder``/``Decoder`` applies to stored values only. (The
  original runs whole requests through the default encoder; the wire
  framing here is dlm's, which its server reads from either client.)
- The strings ``Put`` and ``Erase`` return are built from dlm's typed
  answer: the same ``Status`` (and ``ID``), in ``json.dumps`` form.
- ``Retry`` counts retries after the first attempt, when the server cannot
  be reached; refusals are answers, not failures, and are never retried.
- ``Talker``, ``Retry`` and ``RetryData`` (the original's transport) are not
  here; errors are in ``Error`` as before, and are never printed.
- The lock is the owner's (the ``ID``'s), as before: a Locker that is
  garbage-collected, or a process that exits, leaves its lock to expire at
  its TTL, and another Locker with the same ``ID`` may unlock it.
"""

import atexit
import json
import random
import secrets
import threading
import time
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from . import _errors as errors
from ._native import Client, Lock, RawEncoder, TableEncoder, __version__

__all__ = ["Locker"]

_TABLE = TableEncoder()
_FAILURE = "failure"

# The status words the original returns from Lock/Unlock/IsLocked.
_STATUS_OF = {
    errors.NotOwnerError: "notowner",
    errors.TimeoutError: "notowner",
    errors.BadRequestError: "badpayload",
    errors.InvalidArgumentError: "badpayload",
    errors.NoMemoryError: "no",
}


def _status_word(e: errors.DlmError) -> Optional[str]:
    for cls, word in _STATUS_OF.items():
        if isinstance(e, cls):
            return word
    return None


def _answer(e: errors.DlmError) -> Dict[str, Any]:
    """The server's answer, as the original returned it, for a refusal."""
    if isinstance(e, errors.NotOwnerError):
        return {"Status": "NotOwner"}
    if isinstance(e, errors.ConflictError):
        return {"Status": "Conflict", "Revision": e.revision}
    if isinstance(e, errors.NoMemoryError):
        return {"Status": "NO"}
    if isinstance(e, (errors.BadRequestError, errors.InvalidArgumentError)):
        return {"Status": "BadPayload", "Error": str(e)}
    raise e


class _Session:
    """The client and the grants of one owner (server, ID, identity),
    shared by every Locker of that owner in this process: a lock belongs to
    its ID, not to a Python object."""

    def __init__(self, server: str, owner: str, identity: Optional[Tuple[str, str]], timeout: float):
        self.server = server
        self.owner = owner
        self.identity = identity
        self.timeout = timeout
        self._client: Optional[Client] = None
        self._mutex = threading.Lock()
        self._names: Dict[str, threading.Lock] = {}
        self.grants: Dict[str, Lock] = {}

    def client(self) -> Client:
        with self._mutex:
            if self._client is None:
                self._client = Client(
                    self.server,
                    client_id=self.owner,
                    timeout=self.timeout,
                    connect_timeout=self.timeout,
                    identity=self.identity,
                    encoder=RawEncoder(),
                    connect_attempts=1,
                    max_idle=2,
                )
            return self._client

    def name_lock(self, name: str) -> threading.Lock:
        """Serializes the calls on one name, so one grant has one guard."""
        with self._mutex:
            return self._names.setdefault(name, threading.Lock())

    def keep(self, name: str, grant: Lock) -> None:
        with self._mutex:
            self.grants[name] = grant
        _park(self)

    def drop(self, name: str) -> Optional[Lock]:
        with self._mutex:
            grant = self.grants.pop(name, None)
            empty = not self.grants
        if empty:
            _unpark(self)
        return grant


_registry = threading.Lock()
_sessions: "weakref.WeakValueDictionary[tuple, _Session]" = weakref.WeakValueDictionary()
# Sessions that hold grants stay alive with no Locker left: their locks are
# still the owner's, and a later Locker of that owner finds them here.
_parked: Dict[tuple, _Session] = {}
_last_sweep = 0.0
_SWEEP_EVERY = 1.0
_SWEEP_AT_MOST = 4


def _session(key: tuple, make: Callable[[], _Session]) -> _Session:
    with _registry:
        s = _sessions.get(key)
        if s is None:
            s = make()
            _sessions[key] = s
        return s


def _key_of(s: _Session) -> tuple:
    return (s.server, s.owner, s.identity, s.timeout)


def _park(s: _Session) -> None:
    with _registry:
        _parked[_key_of(s)] = s


def _unpark(s: _Session) -> None:
    with _registry:
        if _parked.get(_key_of(s)) is s and not s.grants:
            del _parked[_key_of(s)]


def _sweep() -> None:
    """Forgets a few grants that have run out, so parked sessions do not
    pile up: each grant past its TTL (by our clock) is checked with the
    server, and dropped unless the same owner still holds that very grant
    (another process with the same ID may have re-locked it, which keeps
    the token). Dropping sends a release fenced by the token, which cannot
    touch any other grant."""
    global _last_sweep
    now = time.monotonic()
    with _registry:
        if now - _last_sweep < _SWEEP_EVERY or not _parked:
            return
        _last_sweep = now
        sessions = list(_parked.values())
    checked = 0
    for s in sessions:
        for name, grant in list(s.grants.items()):
            if checked >= _SWEEP_AT_MOST:
                return
            if grant.remaining > 0:
                continue
            checked += 1
            with s.name_lock(name):
                if s.grants.get(name) is not grant:
                    continue
                try:
                    state = s.client().test_lock(name)
                    if state.state == "mine" and state.token == grant.token:
                        continue
                    s.drop(name)
                    grant.release()
                except errors.DlmError:
                    continue


@atexit.register
def _abandon_all() -> None:
    """At exit, leave every held lock to its TTL, as the original does,
    instead of releasing it when the interpreter frees the objects."""
    with _registry:
        sessions = list(_parked.values())
    for s in sessions:
        for grant in list(s.grants.values()):
            grant._abandon()


class Locker:
    """A lock and a value named ``filename``, owned by ``ID``: JackrabbitDLM's
    ``Locker``, over dlm's client. See the module's documentation for what
    is the same and what is new."""

    VERSION = f"dlm-python/{__version__}"

    def __init__(
        self,
        filename: str,
        Retry: int = 7,
        RetrySleep: float = 1,
        Timeout: float = 300,
        ID: Optional[str] = None,
        Host: str = "",
        Port: int = 37373,
        Encoder: Optional[Callable[[Any], str]] = None,
        Decoder: Optional[Callable[[str], Union[bytes, str]]] = None,
        name: Optional[str] = None,
        identity: Optional[str] = None,
    ) -> None:
        self.ulResp: List[str] = ["badpayload", "locked", "unlocked", "notowner", "notfound", "version", "no"]
        self.encoder = Encoder if Encoder else self.dlmEncode
        self.decoder = Decoder if Decoder else self.dlmDecode
        self.ID = ID if ID is not None else self.GetID()
        self.name = name
        self.identity = identity
        self.filename = filename
        self.retryLimit = Retry
        self.retrysleep = RetrySleep
        self.timeout = Timeout
        self.port = Port
        self.host = Host if Host else "127.0.0.1"
        self.Error: Optional[str] = None
        _sweep()

    # -- the original's helpers ------------------------------------------

    def dlmEncode(self, data: Union[bytes, str, dict]) -> str:
        """The table codec, as the default ``Encoder`` (a dict is stored as
        its JSON text)."""
        if isinstance(data, dict):
            data = json.dumps(data)
        return _TABLE.encode(self.filename, data)

    def dlmDecode(self, text: str) -> bytes:
        """The table codec's decoder, the default ``Decoder``."""
        if not text:
            return b""
        return _TABLE.decode(self.filename, text)

    def GetID(self) -> str:
        """A random owner ID: 37 to 72 random bytes, URL-safe base64."""
        return secrets.token_urlsafe(secrets.SystemRandom().randrange(37, 73))

    def ShuffleJSON(self, payload: Union[str, dict]) -> Any:
        """``payload`` with its keys (at every depth) in random order."""

        def shuffled(obj: Any) -> Any:
            if isinstance(obj, dict):
                items = list(obj.items())
                random.shuffle(items)
                return {k: shuffled(v) for k, v in items}
            if isinstance(obj, list):
                return [shuffled(v) for v in obj]
            return obj

        return shuffled(json.loads(payload) if isinstance(payload, str) else payload)

    # -- plumbing ---------------------------------------------------------

    @property
    def token(self) -> Optional[int]:
        """The fencing token of the lock this Locker's owner holds on
        ``filename`` (from ``Lock()``), or ``None``."""
        grant = self._session().grants.get(self.filename)
        return grant.token if grant is not None else None

    def _session(self) -> _Session:
        host = self.host if self.host else "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        server = f"{host}:{self.port}"
        identity = (str(self.name), str(self.identity)) if (self.name or self.identity) else None
        timeout = float(self.timeout)
        key = (server, self.ID, identity, timeout)
        # Held here, so the session (and its connections) lives as long as
        # this Locker; the registry only holds it weakly unless it has grants.
        cached = self.__dict__.get("_current")
        if cached is not None and cached[0] == key:
            return cached[1]
        owner = self.ID
        session = _session(key, lambda: _Session(server, owner, identity, timeout))
        self.__dict__["_current"] = (key, session)
        return session

    def _try(self, action: Callable[[_Session], Any], retry: bool = True) -> Any:
        """Runs ``action``, retrying while the server cannot be reached; the
        original's ``'failure'`` when it never could."""
        attempts = 1 + max(0, int(self.retryLimit)) if retry else 1
        for attempt in range(attempts):
            self.Error = None
            try:
                return action(self._session())
            except (errors.UnavailableError, errors.ProtocolError) as e:
                self.Error = str(e)
            except errors.InvalidArgumentError as e:
                # A bad address: as unreachable as a server that is down.
                if "address" not in str(e):
                    raise
                self.Error = str(e)
            if attempt + 1 < attempts:
                time.sleep(self.retrysleep)
        return _FAILURE

    def _lock(self, expire: Any, wait: Optional[float], retry: bool) -> str:
        try:
            ttl = float(expire)
        except (TypeError, ValueError):
            return "badpayload"
        name = self.filename

        def act(s: _Session) -> str:
            with s.name_lock(name):
                grant = s.grants.get(name)
                if grant is not None:
                    try:
                        grant.extend(ttl)
                        return "locked"
                    except errors.LockLostError:
                        s.drop(name)
                    except errors.DlmError as e:
                        word = _status_word(e)
                        if word is None:
                            raise
                        return word
                lock = s.client().lock(name, ttl=ttl, wait=wait, auto_renew=False)
                try:
                    lock.acquire()
                except errors.DlmError as e:
                    word = _status_word(e)
                    if word is None:
                        raise
                    return word
                s.keep(name, lock)
                return "locked"

        return self._try(act, retry)

    # -- the API ------------------------------------------------------------

    def Lock(self, expire: float = 300, wait: Optional[float] = None) -> str:
        """Takes (or, if this owner holds it, extends) the lock for ``expire``
        seconds: ``'locked'``, or ``'notowner'`` if another owner holds it.
        With ``wait``, queues up to that many seconds first."""
        return self._lock(expire, wait, retry=True)

    def IsLocked(self, expire: float = 300, acquire: bool = True) -> Optional[str]:
        """One attempt, no retry. With ``acquire`` (the default, as the
        original) it is ``Lock``: the lock is taken if free. Without, it
        only tests: ``'locked'`` (this owner holds it), ``'unlocked'`` or
        ``'notowner'``."""
        if acquire:
            return self._lock(expire, None, retry=False)
        name = self.filename

        def test(s: _Session) -> str:
            state = s.client().test_lock(name).state
            return {"mine": "locked", "free": "unlocked"}.get(state, "notowner")

        return self._try(test, retry=False)

    def Unlock(self) -> str:
        """Releases the owner's lock: ``'unlocked'`` (also if there was none
        live), or ``'notowner'`` if another owner holds it."""
        name = self.filename

        def act(s: _Session) -> str:
            with s.name_lock(name):
                grant = s.drop(name)
                if grant is not None:
                    try:
                        grant.release()
                        return "unlocked"
                    except errors.LockLostError:
                        pass
                    except errors.DlmError:
                        s.keep(name, grant)
                        raise
                try:
                    s.client().unlock(name)
                    return "unlocked"
                except errors.DlmError as e:
                    word = _status_word(e)
                    if word is None:
                        raise
                    return word

        return self._try(act)

    def Put(self, expire: float, data: Any, revision: Optional[int] = None) -> str:
        """Stores ``Encoder(data)`` for ``expire`` seconds; the server's
        answer as a JSON string (``"Status": "Done"`` on success). With
        ``revision``, compare-and-set (``"Status": "Conflict"`` if the stored
        revision differs)."""
        stored = self.encoder(data)
        if isinstance(stored, bytes):
            stored = stored.decode("utf-8")
        name = self.filename

        def act(s: _Session) -> str:
            try:
                ttl = float(expire)
                rev = s.client().put(name, stored, ttl, revision=revision)
                answer: Dict[str, Any] = {"Status": "Done", "ID": self.ID, "Revision": rev}
            except (TypeError, ValueError):
                answer = {"Status": "BadPayload", "Error": "field Expire must be a number"}
            except (errors.UnavailableError, errors.ProtocolError):
                raise
            except errors.DlmError as e:
                answer = _answer(e)
            return json.dumps(answer)

        return self._try(act)

    def Get(self) -> Optional[Dict[str, Any]]:
        """The server's answer as a dict: ``Status`` ``'Done'`` with the
        decoded ``DataStore`` (a str when the decoder gives bytes),
        ``Revision`` and ``Expire``; or ``'NotFound'``/``'NotOwner'``.
        ``None`` if the server cannot be reached."""
        name = self.filename

        def act(s: _Session) -> Dict[str, Any]:
            try:
                value = s.client().get(name)
            except (errors.UnavailableError, errors.ProtocolError):
                raise
            except errors.DlmError as e:
                return _answer(e)
            if value is None:
                return {"Status": "NotFound"}
            data = self.decoder(value.text)
            if isinstance(data, bytes):
                data = data.decode("utf-8")
            return {
                "Status": "Done",
                "ID": self.ID,
                "DataStore": data,
                "Revision": value.revision,
                "Expire": value.ttl,
            }

        answer = self._try(act)
        return None if answer == _FAILURE else answer

    def Erase(self) -> str:
        """Deletes the value; the server's answer as a JSON string."""
        name = self.filename

        def act(s: _Session) -> str:
            try:
                erased = s.client().erase(name)
            except (errors.UnavailableError, errors.ProtocolError):
                raise
            except errors.DlmError as e:
                return json.dumps(_answer(e))
            answer = {"Status": "Done", "ID": self.ID} if erased else {"Status": "NotFound"}
            return json.dumps(answer)

        return self._try(act)

    def Version(self) -> str:
        """``'<server version>:<client version>'``; the server part is
        ``'Error'`` if it cannot be reached."""
        version = self._try(lambda s: s.client().version())
        server = "Error" if version == _FAILURE else version
        return f"{server}:{self.VERSION}"

    def IsDLM(self) -> bool:
        """Whether a JackrabbitDLM-compatible server answers."""
        return "JackrabbitDLM" in self.Version()

    def __repr__(self) -> str:
        return f"<dlm.Locker {self.filename!r} id={self.ID!r} at {self.host}:{self.port}>"
