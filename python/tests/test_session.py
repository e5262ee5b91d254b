"""Sessions: locks bound to a connection of their own, released by the
server when the session ends, lock-delay, the session lost, sync and
asyncio."""

import asyncio
import os
import signal
import subprocess
import sys
import threading

import pytest

import dlm
import dlm.aio
from conftest import wait_for


def test_a_session_lock_is_released_when_the_session_ends(server, client, other, name) -> None:
    with client.session(ttl=10) as s:
        with s.lock(name) as lock:
            assert lock.held and lock.token > 0
            seen = other.test_lock(name)
            assert seen.state == "taken"
        assert not lock.held
        assert other.test_lock(name).state == "free"
        # Held when the session ends: the server releases it.
        kept = s.lock(name, ttl=600).acquire()
        assert other.test_lock(name).state == "taken"
        with pytest.raises(dlm.NotOwnerError):
            other.lock(name).acquire()
    assert s.closed
    wait_for(lambda: other.test_lock(name).state == "free", message="the session's end to release the lock")
    with other.lock(name) as taken:
        assert taken.token > kept.token
    with pytest.raises(dlm.LockLostError):
        s.lock(name).acquire()


def test_a_session_lock_waits_in_the_queue(server, client, other, name) -> None:
    held = other.lock(name, auto_renew=False).acquire()
    with client.session(ttl=10) as s:
        got = {}
        waiter = threading.Thread(target=lambda: got.setdefault("lock", s.lock(name, wait=5).acquire()))
        waiter.start()
        wait_for(lambda: server.stats()["AWait"] >= 1, message="the session's lock to queue")
        held.release()
        waiter.join(10)
        assert got["lock"].held and got["lock"].token > held.token
        assert other.test_lock(name).state == "taken"
    wait_for(lambda: other.test_lock(name).state == "free", message="the session's end to release the lock")


def test_lock_delay_keeps_the_name_closed_after_the_session_ends(fresh_server) -> None:
    server = fresh_server()
    with dlm.Client(server.addr) as a, dlm.Client(server.addr) as b:
        closed_before = server.stats()["SessionClosed"]
        s = a.session(ttl=10)
        lock = s.lock("delayed", ttl=600, lock_delay=1.5).acquire()
        assert lock.lock_delay == 1.5
        s.close()
        wait_for(lambda: server.stats()["SessionClosed"] > closed_before, message="the session to end")
        # Ended, but not released: closed to everyone for the delay.
        state = b.test_lock("delayed")
        assert state.state == "taken" and state.remaining is not None and state.remaining <= 1.5
        with pytest.raises(dlm.NotOwnerError):
            b.lock("delayed", auto_renew=False).acquire()
        # Once the delay has passed, the queue moves, with a greater token.
        with b.lock("delayed", wait=10) as after:
            assert after.token > lock.token
        assert server.stats()["SessionReleased"] >= 1


def test_limits_are_clear_errors(client, name) -> None:
    with client.session(ttl=5) as s:
        with pytest.raises(dlm.InvalidArgumentError, match="60"):
            s.lock(name, lock_delay=61).acquire()
        with pytest.raises(dlm.InvalidArgumentError):
            s.lock(name, lock_delay=-1)
        with pytest.raises(dlm.InvalidArgumentError):
            s.lock(name, mode="sideways")
        with pytest.raises(dlm.InvalidArgumentError, match="two thirds"):
            s.lock(name, wait=4)
        with s.lock(name, permits=2) as permit:
            with pytest.raises(dlm.ConflictError):
                s.lock(name, permits=3).acquire()
            assert permit.held
        # The server's limits, in its own words.
        with pytest.raises(dlm.BadRequestError, match="over the limit"):
            s.lock(name, ttl=10**9).acquire()
    with pytest.raises(dlm.BadRequestError, match="over the limit"):
        client.session(ttl=10**9)


def test_a_session_whose_server_goes_is_lost(fresh_server) -> None:
    server = fresh_server()
    c = dlm.Client(server.addr)
    s = c.session(ttl=0.3)
    told = threading.Event()
    s.on_lost(told.set)
    assert not s.lost
    server.stop()
    assert told.wait(10), "on_lost was not called"
    assert s.lost
    with pytest.raises(dlm.LockLostError):
        s.lock("x").acquire()
    s.close()
    c.close()


PAUSED_HOLDER = """
import sys, threading, time, dlm
c = dlm.Client(sys.argv[1])
s = c.session(ttl=0.5)
told = threading.Event()
s.on_lost(told.set)
lock = s.lock("paused", ttl=600).acquire()
print("holding", flush=True)
deadline = time.monotonic() + 20
while not s.lost and time.monotonic() < deadline:
    try:
        s.lock("paused-too").acquire().release()
    except dlm.LockLostError:
        pass
print("lost" if s.lost else "still trusted", flush=True)
print("told" if told.wait(10) else "untold", flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
def test_a_holder_paused_past_the_ttl_learns_its_session_is_lost(fresh_server) -> None:
    """The server ends a session nothing reached for its TTL and releases
    its locks; the paused holder's next keep-alive would open a new session
    without a word. The client takes the late answer as the session lost."""
    server = fresh_server()
    child = subprocess.Popen(
        [sys.executable, "-c", PAUSED_HOLDER, server.addr], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "holding"
        expired = server.stats()["SessionExpired"]
        os.kill(child.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: server.stats()["SessionExpired"] > expired, message="the session to run out")
            with dlm.Client(server.addr) as other:
                assert other.test_lock("paused").state == "free"
        finally:
            os.kill(child.pid, signal.SIGCONT)
        assert child.stdout.readline().strip() == "lost"
        assert child.stdout.readline().strip() == "told"
        assert child.wait(timeout=10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_asyncio_sessions(server, other, name) -> None:
    async def main() -> None:
        async with dlm.aio.Client(server.addr) as client:
            async with client.session(ttl=10) as s:
                async with s.lock(name, lock_delay=0) as lock:
                    assert lock.held and lock.token > 0
                    assert other.test_lock(name).state == "taken"
                assert not lock.held
                kept = await s.lock(name, ttl=600).acquire()
                assert not s.lost
            assert s.closed
            deadline = asyncio.get_running_loop().time() + 10
            while other.test_lock(name).state != "free":
                assert asyncio.get_running_loop().time() < deadline, "the lock was not released"
                await asyncio.sleep(0.005)
            assert kept.token is not None
            # Refusals raise the package's errors.
            held = other.lock(name).acquire()
            try:
                async with client.session(ttl=5) as s2:
                    with pytest.raises(dlm.NotOwnerError):
                        await s2.lock(name).acquire()
            finally:
                held.release()

    asyncio.run(main())
