"""dlm.Client and dlm.Lock against a real dlm-server: locks, waits, fencing,
renewal, lost locks, values, compare-and-set, typed errors, cancellation."""

import builtins
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import dlm
from conftest import SERVER_BIN, wait_for


def test_the_installed_wheel_is_under_test():
    assert "site-packages" in dlm.__file__, dlm.__file__
    assert dlm._native.__file__.endswith(".abi3.so")


def test_no_server_given_reads_dlm_server(server, monkeypatch, name):
    monkeypatch.setenv("DLM_SERVER", server.addr)
    with dlm.Client(client_id="from-env") as c:
        assert c.current_server == server.addr
        c.put(name, b"v", ttl=60)
        assert c.get(name).value == b"v"
    # An address given wins over the environment.
    monkeypatch.setenv("DLM_SERVER", "127.0.0.1:1")
    with dlm.Client(server.addr) as c:
        assert c.current_server == server.addr


def test_with_block_holds_and_releases(client, other, name):
    with client.lock(name, ttl=30, wait=10) as lock:
        assert lock.held and not lock.lost
        assert isinstance(lock.token, int) and lock.token > 0
        assert 0 < lock.remaining <= 30
        assert client.test_lock(name).state == "mine"
        assert client.test_lock(name).token == lock.token
        assert other.test_lock(name).state == "taken"
        with pytest.raises(dlm.NotOwnerError) as e:
            other.lock(name).acquire()
        assert e.value.code == "NotOwner"
    assert not lock.held and not lock.lost
    assert other.test_lock(name).state == "free"


def test_explicit_acquire_release_and_fencing(client, other, name):
    first = client.lock(name, ttl=30).acquire()
    token = first.token
    first.extend(60)
    assert first.token == token, "an extension keeps the grant's token"
    assert first.remaining > 30
    first.release()
    first.release()  # a second release does nothing
    second = other.lock(name).acquire()
    assert second.token > token, "every grant gets a greater token"
    second.release()
    # The same object can be taken again: a new grant, a new token.
    again = first.acquire()
    assert again is first and first.token > second.token
    with pytest.raises(dlm.InvalidArgumentError):
        first.acquire()
    first.release()


def test_wait_queues_until_released(server, client, other, name):
    holder = client.lock(name).acquire()
    got = {}

    def waiter():
        with other.lock(name, wait=10) as lock:
            got["token"] = lock.token

    base = server.stats()["AWait"]
    t = threading.Thread(target=waiter)
    t.start()
    # The GIL is free while the waiter blocks: this thread keeps talking.
    wait_for(lambda: server.stats()["AWait"] == base + 1, message="the waiter to queue")
    assert "token" not in got
    holder.release()
    t.join(10)
    assert got["token"] > holder.token


def test_wait_runs_out(client, other, name):
    with client.lock(name):
        started = time.monotonic()
        with pytest.raises(dlm.TimeoutError) as e:
            other.lock(name, wait=0.2).acquire()
        assert time.monotonic() - started >= 0.2
        assert isinstance(e.value, builtins.TimeoutError) and e.value.code == "Timeout"


def test_auto_renew_keeps_a_short_lock(server, client, other, name):
    before = server.stats()["Relock"]
    with client.lock(name, ttl=0.3, auto_renew=True) as lock:
        # Three renewals: the lock outlives its TTL several times over.
        wait_for(lambda: server.stats()["Relock"] >= before + 3, message="three renewals")
        assert lock.held and not lock.lost
        assert other.test_lock(name).state == "taken"


def test_without_renewal_the_lock_is_lost(client, other, name):
    lock = client.lock(name, ttl=0.2, auto_renew=False).acquire()
    wait_for(lambda: other.test_lock(name).state == "free", message="the lock to expire")
    taker = other.lock(name).acquire()
    with pytest.raises(dlm.LockLostError):
        lock.extend()
    assert lock.lost and not lock.held
    with pytest.raises(dlm.LockLostError):
        lock.release()
    assert other.test_lock(name).token == taker.token, "the stale release left the new grant alone"
    taker.release()


def test_with_block_reports_a_lost_lock(client, name):
    with pytest.raises(dlm.LockLostError):
        with client.lock(name, ttl=0.2, auto_renew=False):
            wait_for(lambda: client.test_lock(name).state == "free", message="expiry")


def test_renewal_notices_a_lost_lock(client, name):
    lock = client.lock(name, ttl=0.3, auto_renew=True).acquire()
    # The owner ID itself unlocks by name: the next renewal finds it gone.
    assert client.unlock(name) is True
    wait_for(lambda: lock.lost, message="the renewer to mark the lock lost")
    assert not lock.held
    with pytest.raises(dlm.LockLostError):
        lock.release()


def test_cancel_token_aborts_a_wait(server, client, other, name):
    holder = client.lock(name).acquire()
    token = dlm.CancelToken()
    caught = []

    def waiter():
        try:
            other.lock(name, wait=30).acquire(cancel=token)
        except dlm.CancelledError as e:
            caught.append(e)

    base = server.stats()["AWait"]
    t = threading.Thread(target=waiter)
    t.start()
    wait_for(lambda: server.stats()["AWait"] == base + 1, message="the waiter to queue")
    token.cancel()
    t.join(10)
    assert token.cancelled and caught and caught[0].code == "Cancelled"
    wait_for(lambda: server.stats()["AWait"] == base, message="the server to drop the waiter")
    holder.release()


def test_ctrl_c_interrupts_a_wait(server, client, name):
    holder = client.lock(name).acquire()
    script = textwrap.dedent(
        f"""
        import signal, sys, time, dlm
        # Ctrl-C as in a terminal: a job a shell starts in the background
        # inherits SIGINT ignored, and Python keeps it so (make test run
        # that way failed here).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        c = dlm.Client({server.addr!r})
        print("waiting", flush=True)
        try:
            c.lock({name!r}, wait=60).acquire()
            print("acquired")
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """
    )
    base = server.stats()["AWait"]
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "waiting"
    wait_for(lambda: server.stats()["AWait"] == base + 1, message="the child to queue")
    started = time.monotonic()
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=10)
    assert out.strip() == "interrupted"
    assert time.monotonic() - started < 5
    wait_for(lambda: server.stats()["AWait"] == base, message="the server to drop the waiter")
    holder.release()


def test_values_and_compare_and_set(client, other, name):
    assert client.get(name) is None
    assert client.put(name, "hello", ttl=60) == 1
    v = client.get(name)
    assert (v.value, v.text, v.revision, len(v)) == (b"hello", "hello", 1, 5)
    assert 0 < v.ttl <= 60
    assert client.put(name, b"\x00\xff binary", ttl=60) == 2
    assert client.get(name).value == b"\x00\xff binary"
    # Compare-and-set.
    assert client.put(name, "v3", revision=2) == 3
    with pytest.raises(dlm.ConflictError) as e:
        client.put(name, "stale", revision=2)
    assert e.value.revision == 3 and e.value.code == "Conflict"
    with pytest.raises(dlm.ConflictError) as e:
        client.put(name, "only if absent", revision=0)
    assert e.value.revision == 3
    # Another owner can neither read nor change it.
    with pytest.raises(dlm.NotOwnerError):
        other.get(name)
    with pytest.raises(dlm.NotOwnerError):
        other.put(name, "mine now")
    assert client.erase(name) is True
    assert client.erase(name) is False
    assert client.put(name, "created", revision=0) == 1
    with pytest.raises(dlm.ConflictError) as e:
        client.put(name + "-absent", "x", revision=4)
    assert e.value.revision == 0


def test_same_id_is_the_same_owner(server, name):
    with dlm.Client(server.addr, client_id="shared-owner") as a, dlm.Client(server.addr, client_id="shared-owner") as b:
        assert a.id == b.id == "shared-owner"
        a.put(name, "from a")
        assert b.get(name).text == "from a"


def test_stats_and_version(client):
    assert "JackrabbitDLM" in client.version()
    stats = client.stats()
    assert stats["AConn"] >= 1 and all(isinstance(v, int) for v in stats.values())


def test_typed_errors_for_bad_arguments(client, name):
    for bad in (lambda: client.lock(""), lambda: client.lock(name, ttl=0), lambda: client.lock(name, ttl=-1),
                lambda: client.lock(name, ttl=float("nan")), lambda: client.lock(name, wait=float("inf")),
                lambda: client.put(name, "x", ttl=1e300), lambda: client.get("")):
        with pytest.raises(dlm.InvalidArgumentError) as e:
            bad()
        assert isinstance(e.value, ValueError) and e.value.code == "InvalidArgument"
    with pytest.raises(TypeError):
        client.lock(123)
    with pytest.raises(TypeError):
        client.put(name, 42)  # not bytes(42): a value is bytes or text
    with pytest.raises(TypeError):
        client.put(name, ["a", "list"])
    assert client.put(name, memoryview(b"view")) == 1
    assert client.put(name, bytearray(b"array")) == 2
    assert client.get(name).value == b"array"
    with pytest.raises(dlm.InvalidArgumentError):
        dlm.Client("not an address")


def test_unreachable_server_and_closed_client(fresh_server, server):
    gone = fresh_server()
    addr = gone.addr
    gone.stop()
    with pytest.raises(dlm.UnavailableError) as e:
        dlm.Client(addr, connect_attempts=1, connect_timeout=1)
    assert isinstance(e.value, ConnectionError) and e.value.code == "Unavailable"
    c = dlm.Client(server.addr)
    c.close()
    assert c.closed
    with pytest.raises(dlm.UnavailableError):
        c.get("x")


def test_server_limits_are_bad_requests(client, name):
    with pytest.raises(dlm.BadRequestError) as e:
        client.put(name, b"x" * (64 * 1024))
    assert e.value.code == "BadRequest"
    with pytest.raises(dlm.BadRequestError):
        client.lock(name, ttl=100000).acquire()
    # A request line over the server's 1 MiB: refused, and the client goes on.
    with pytest.raises(dlm.BadRequestError):
        client.put(name, os.urandom(2 * 1024 * 1024))
    assert client.put(name, "fine") == 1


def test_hostile_names_never_crash(client, other):
    for hostile in ("nul\x00inside", "\x00", "quote\"and\\backslash", "line\nbreak", "\u00e9\U0001f512", "x" * 1024):
        # The Rust client cannot renew a NUL name (its renewal thread is named
        # after the lock): refused up front rather than failing after the grant.
        if "\x00" in hostile:
            with pytest.raises(dlm.InvalidArgumentError):
                client.lock(hostile)
        with client.lock(hostile, auto_renew="\x00" not in hostile) as lock:
            assert other.test_lock(hostile).state == "taken"
            assert lock.token
        assert client.put(hostile, hostile) == 1
        assert client.get(hostile).text == hostile
        assert client.erase(hostile)
    with pytest.raises(dlm.BadRequestError):
        client.lock("n" * 5000).acquire()
    with pytest.raises(UnicodeEncodeError):
        client.lock("\ud800")  # a lone surrogate is no UTF-8 name


def test_dropping_a_held_lock_releases_it(client, other, name):
    lock = client.lock(name).acquire()
    del lock  # CPython frees it here; its guard releases the grant
    assert other.test_lock(name).state == "free"


def test_threads_share_one_client(server, name):
    with dlm.Client(server.addr) as c:
        errors = []

        def work(i):
            try:
                for j in range(20):
                    c.put(f"{name}-{i}", f"{j}")
                    assert c.get(f"{name}-{i}").text == f"{j}"
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors


def test_identity_owns_its_entries(fresh_server, tmp_path):
    ids = tmp_path / "ids"
    ids.mkdir()
    subprocess.run(
        [str(SERVER_BIN), "identity", "new", "alice", "--identity-dir", str(ids)],
        check=True, stdout=subprocess.DEVNULL,
    )
    secret = json.loads((ids / "alice.cfg").read_text())["Identity"]
    s = fresh_server("--identity-dir", str(ids))
    with dlm.Client(s.addr, client_id="me", identity=("alice", secret)) as alice, dlm.Client(s.addr, client_id="me") as anon:
        alice.put("k", "secret value", ttl=5000)  # past the anonymous limit
        with pytest.raises(dlm.NotOwnerError):
            anon.get("k")
        assert alice.get("k").text == "secret value"
    with pytest.raises(dlm.BadRequestError):
        with dlm.Client(s.addr, identity=("alice", "wrong")) as bad:
            bad.get("k")
