"""Semaphores and read/write locks from Python against a real dlm-server:
permits counted, each hold with its own fencing token, FIFO waits, a
waiting writer not overtaken by readers, sizes fixed while a name lives,
and the asyncio layer."""

import asyncio
import threading

import pytest

import dlm
import dlm.aio
from conftest import wait_for


def test_a_semaphore_admits_its_permits_and_no_more(client, other, name):
    a = client.semaphore(name, 2).acquire()
    b = other.semaphore(name, 2).acquire()
    assert a.held and b.held
    assert a.token != b.token, "each hold has its own fencing token"
    with pytest.raises(dlm.NotOwnerError):
        other.semaphore(name, 2).acquire()
    # A waiter is granted the permit the first hold gives back.
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("lock", other.semaphore(name, 2, wait=20).acquire()))
    t.start()
    a.release()
    t.join(30)
    third = got["lock"]
    assert third.held and third.token > max(a.token, b.token)
    third.release()
    b.release()


def test_a_semaphore_size_is_fixed_while_it_lives(client, other, name):
    with client.semaphore(name, 3):
        with pytest.raises(dlm.ConflictError) as e:
            other.semaphore(name, 2).acquire()
        assert "3 permits" in str(e.value)
        # A plain lock of a semaphore's name: held by others.
        with pytest.raises(dlm.NotOwnerError):
            other.lock(name).acquire()
    # Forgotten once nobody holds it: another size, or kind, may take it.
    with other.semaphore(name, 2) as s:
        assert s.held
    with pytest.raises(dlm.InvalidArgumentError):
        client.semaphore(name, 0)


def test_readers_share_and_a_waiting_writer_goes_first(server, client, other, name):
    r1 = client.read_lock(name).acquire()
    r2 = other.read_lock(name).acquire()
    assert r1.held and r2.held
    with pytest.raises(dlm.NotOwnerError):
        other.write_lock(name).acquire()
    got = {}
    writer = threading.Thread(target=lambda: got.setdefault("w", other.write_lock(name, wait=20).acquire()))
    writer.start()
    # Once the writer waits, a new reader queues behind it, not beside the
    # readers that hold.
    wait_for(lambda: server.stats().get("AWait", 0) == 1, message="the writer waits")
    with pytest.raises(dlm.NotOwnerError):
        client.read_lock(name).acquire()
    r1.release()
    r2.release()
    writer.join(30)
    w = got["w"]
    assert w.held and w.token > max(r1.token, r2.token)
    w.release()


def test_asyncio_semaphore_and_read_write_locks(server, name):
    async def main():
        async with dlm.aio.Client(server.addr) as c:
            async with c.semaphore(name, 1) as s:
                assert s.held and s.name == name
            async with c.read_lock(name + "-rw") as r:
                assert r.held
            async with c.write_lock(name + "-rw") as w:
                assert w.held and w.token > r.token

    asyncio.run(main())
