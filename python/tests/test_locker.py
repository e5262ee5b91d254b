"""dlm.Locker: JackrabbitDLM's client API, its return values, and what it
gains (one connection, fencing tokens, waits, compare-and-set)."""

import gc
import json
import threading

import pytest

import dlm
from conftest import wait_for


def make(server, filename, **kw):
    return dlm.Locker(filename, Host=server.host, Port=server.port, **kw)


def test_lock_cycle_returns_the_original_words(server, name):
    a, b = make(server, name), make(server, name)
    assert a.ID != b.ID and 37 <= len(a.ID)
    assert a.Lock() == "locked"
    assert isinstance(a.token, int)
    token = a.token
    assert a.Lock(expire=60) == "locked"  # re-lock: extends the same grant
    assert a.token == token
    assert b.Lock() == "notowner"
    assert b.token is None
    assert b.Unlock() == "notowner"
    assert a.IsLocked(acquire=False) == "locked"
    assert b.IsLocked(acquire=False) == "notowner"
    assert a.Unlock() == "unlocked"
    assert a.Unlock() == "unlocked"  # nothing live: still 'unlocked', as the server says
    assert b.IsLocked(acquire=False) == "unlocked"
    assert b.IsLocked() == "locked"  # the original's IsLocked takes a free lock
    assert b.token > token
    assert b.Unlock() == "unlocked"


def test_the_lock_is_the_ids_not_the_objects(server, name):
    owner = "job-runner-7"
    assert make(server, name, ID=owner).Lock(expire=30) == "locked"
    gc.collect()  # the Locker is gone; the lock stays, as in the original
    assert make(server, name).Lock() == "notowner"
    assert make(server, name, ID=owner).IsLocked(acquire=False) == "locked"
    assert make(server, name, ID=owner).Unlock() == "unlocked"
    assert make(server, name).Lock() == "locked"


def test_an_expired_lock_is_taken_again(server, name):
    a = make(server, name)
    assert a.Lock(expire=0.2) == "locked"
    first = a.token
    wait_for(lambda: a.IsLocked(acquire=False) == "unlocked", message="expiry")
    b = make(server, name)
    assert b.Lock() == "locked"
    assert a.Lock() == "notowner"
    assert a.Unlock() == "notowner"
    assert b.Unlock() == "unlocked"
    assert a.Lock() == "locked" and a.token > first
    a.Unlock()


def test_wait_extension(server, name):
    a, b = make(server, name), make(server, name)
    assert a.Lock() == "locked"
    result = {}
    base = server.stats()["AWait"]
    t = threading.Thread(target=lambda: result.setdefault("b", b.Lock(expire=30, wait=10)))
    t.start()
    wait_for(lambda: server.stats()["AWait"] == base + 1, message="b to queue")
    assert a.Unlock() == "unlocked"
    t.join(10)
    assert result["b"] == "locked"
    assert b.Lock(wait=0.1) == "locked"  # its own: no wait
    assert a.Lock(wait=0.1) == "notowner"
    b.Unlock()


def test_put_get_erase_answers(server, name):
    a, b = make(server, name), make(server, name)
    answer = json.loads(a.Put(60, "state: {\"n\": 1} \u2713"))
    assert answer["Status"] == "Done" and answer["ID"] == a.ID and answer["Revision"] == 1
    got = a.Get()
    assert got["Status"] == "Done" and got["DataStore"] == "state: {\"n\": 1} \u2713"
    assert got["ID"] == a.ID and got["Revision"] == 1 and 0 < got["Expire"] <= 60
    assert b.Get() == {"Status": "NotOwner"}
    assert json.loads(b.Put(60, "x"))["Status"] == "NotOwner"
    assert json.loads(a.Put(60, {"as": "json"}))["Revision"] == 2
    assert json.loads(a.Get()["DataStore"]) == {"as": "json"}
    # Compare-and-set, an extension.
    assert json.loads(a.Put(60, "cas", revision=1)) == {"Status": "Conflict", "Revision": 2}
    assert json.loads(a.Put(60, "cas", revision=2))["Status"] == "Done"
    assert json.loads(a.Erase())["Status"] == "Done"
    assert json.loads(a.Erase()) == {"Status": "NotFound"}
    assert a.Get() == {"Status": "NotFound"}
    assert json.loads(a.Put(60, "x" * 20000))["Status"] == "BadPayload"
    assert json.loads(a.Put(0, "x"))["Status"] == "BadPayload"
    assert a.Lock(expire="not a number") == "badpayload"


def test_custom_encoder_and_decoder(server, name):
    enc = lambda data: data[::-1] if isinstance(data, str) else data.decode()[::-1]  # noqa: E731
    dec = lambda text: text[::-1]  # noqa: E731
    a = make(server, name, Encoder=enc, Decoder=dec)
    assert json.loads(a.Put(60, "abc"))["Status"] == "Done"
    assert a.Get()["DataStore"] == "abc"
    raw = make(server, name, ID=a.ID, Decoder=lambda text: text)
    assert raw.Get()["DataStore"] == "cba", "stored exactly what the Encoder returned"
    # The default codec is the table codec: readable by the default decoder.
    plain = make(server, name + "-plain")
    plain.Put(60, "hello")
    assert make(server, name + "-plain", ID=plain.ID, Decoder=lambda t: t).Get()["DataStore"] == plain.dlmEncode("hello")
    assert plain.dlmDecode(plain.dlmEncode(b"\x00\xff")) == b"\x00\xff"


def test_version_and_isdlm(server):
    a = make(server, "v")
    v = a.Version()
    assert "JackrabbitDLM" in v and v.endswith(":" + a.VERSION)
    assert a.IsDLM() is True


def test_unreachable_server_is_failure(fresh_server):
    gone = fresh_server()
    host, port = gone.host, gone.port
    gone.stop()
    a = dlm.Locker("x", Host=host, Port=port, Retry=2, RetrySleep=0, Timeout=1)
    assert a.Lock() == "failure"
    assert a.Error
    assert a.Unlock() == "failure"
    assert a.IsLocked() == "failure"
    assert a.Put(60, "x") == "failure"
    assert a.Get() is None
    assert a.Erase() == "failure"
    assert a.Version().startswith("Error:")
    assert a.IsDLM() is False


def test_one_connection_for_many_calls(server, name):
    before = server.stats()["Connections"]
    a = make(server, name)
    for _ in range(20):
        assert a.Lock() == "locked"
        assert json.loads(a.Put(60, "x"))["Status"] == "Done"
        assert a.Get()["Status"] == "Done"
        assert a.Unlock() == "unlocked"
    # The original opens one connection per request: 80 here.
    assert server.stats()["Connections"] - before <= 2


def test_lockers_of_one_id_share_the_grant(server, name):
    a, b = make(server, name, ID="same-owner"), make(server, name, ID="same-owner")
    assert a.Lock() == "locked"
    assert b.token == a.token
    assert b.Lock() == "locked" and b.token == a.token
    assert b.Unlock() == "unlocked"
    assert a.token is None
    assert make(server, name).Lock() == "locked"


def test_shuffle_json_and_getid(server):
    a = make(server, "x")
    payload = {"ID": "a", "FileName": "b", "Action": "Lock", "Expire": "300", "nested": {"x": 1, "y": [{"p": 1, "q": 2}]}}
    assert a.ShuffleJSON(payload) == payload
    assert a.ShuffleJSON(json.dumps(payload)) == payload
    ids = {a.GetID() for _ in range(20)}
    assert len(ids) == 20 and all(37 <= len(i) for i in ids)


def test_identity_arguments(fresh_server, tmp_path):
    import subprocess

    from conftest import SERVER_BIN

    ids = tmp_path / "ids"
    ids.mkdir()
    subprocess.run([str(SERVER_BIN), "identity", "new", "bob", "--identity-dir", str(ids)], check=True, stdout=subprocess.DEVNULL)
    secret = json.loads((ids / "bob.cfg").read_text())["Identity"]
    s = fresh_server("--identity-dir", str(ids))
    a = dlm.Locker("res", Host=s.host, Port=s.port, name="bob", identity=secret)
    assert a.Lock(expire=5000) == "locked"  # past the anonymous limit
    wrong = dlm.Locker("res", Host=s.host, Port=s.port, ID=a.ID, name="bob", identity="nope", Retry=0)
    assert wrong.Unlock() == "badpayload"
    assert a.Unlock() == "unlocked"


@pytest.mark.parametrize("hostile", ["nul\x00name", "\u00e9\U0001f512", "q\"uote"])
def test_hostile_filenames(server, hostile):
    a = make(server, hostile)
    assert a.Lock() == "locked"
    assert json.loads(a.Put(60, hostile))["Status"] == "Done"
    assert a.Get()["DataStore"] == hostile
    assert a.Unlock() == "unlocked"


def _parked_names():
    from dlm import locker

    return {(s.owner, n) for s in list(locker._parked.values()) for n in s.grants}


def test_expired_grants_of_dropped_lockers_are_swept(server, name, monkeypatch):
    from dlm import locker

    owner = "sweep-" + name
    assert make(server, name, ID=owner).Lock(expire=0.2) == "locked"
    gc.collect()
    assert (owner, name) in _parked_names(), "kept while the lock may be live"
    wait_for(lambda: make(server, name).IsLocked(acquire=False) == "unlocked", message="expiry")
    monkeypatch.setattr(locker, "_last_sweep", 0.0)
    make(server, "anything")  # a new Locker sweeps
    assert (owner, name) not in _parked_names()


def test_the_sweep_keeps_a_grant_the_owner_renewed_elsewhere(server, name, monkeypatch):
    from dlm import locker

    owner = "renewed-" + name
    a = make(server, name, ID=owner)
    assert a.Lock(expire=0.3) == "locked"
    token = a.token
    # The same owner in "another process": re-locking keeps the token.
    elsewhere = dlm.Client(server.addr, client_id=owner).lock(name, ttl=60, auto_renew=False).acquire()
    assert elsewhere.token == token
    del a
    gc.collect()
    grant = next(s.grants[name] for s in locker._parked.values() if s.owner == owner)
    wait_for(lambda: grant.remaining == 0, message="our estimate of the first TTL to run out")
    monkeypatch.setattr(locker, "_last_sweep", 0.0)
    make(server, "anything")
    assert (owner, name) in _parked_names(), "still the owner's live grant"
    assert make(server, name).Lock() == "notowner", "and the sweep did not release it"
    elsewhere.release()


def test_a_lock_outlives_the_process_that_took_it(server, name):
    import subprocess
    import sys

    script = (
        "import dlm\n"
        f"assert dlm.Locker({name!r}, Host={server.host!r}, Port={server.port}).Lock(expire=30) == 'locked'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    assert make(server, name).IsLocked(acquire=False) == "notowner", "left to its TTL, as JackrabbitDLM does"
