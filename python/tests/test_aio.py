"""dlm.aio against a real dlm-server: awaitables that leave the event loop
free, async with, and cancellation of a waiting acquire."""

import asyncio
import time

import pytest

import dlm
import dlm.aio
from conftest import wait_for


async def wait_until(what, timeout: float = 10.0, message: str = "condition"):
    """The asyncio twin of conftest.wait_for: polls observable state."""
    deadline = time.monotonic() + timeout
    while not await what():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {message}")
        await asyncio.sleep(0.005)


def test_async_with_lock_and_values(server, name):
    async def main():
        async with dlm.aio.Client(server.addr) as client:
            async with client.lock(name, ttl=30, wait=10) as lock:
                assert lock.held and lock.token > 0
                assert (await client.test_lock(name)).state == "mine"
                rev = await client.put(name, "running", ttl=60)
                assert rev == 1
                assert (await client.get(name)).text == "running"
                with pytest.raises(dlm.ConflictError) as e:
                    await client.put(name, "stale", revision=0)
                assert e.value.revision == 1
                await lock.extend(45)
                assert lock.remaining > 30
            assert not lock.held
            assert (await client.test_lock(name)).state == "free"
            assert await client.erase(name) is True
            assert "JackrabbitDLM" in await client.version()
            assert (await client.stats())["AConn"] >= 1

    asyncio.run(main())


def test_a_wait_does_not_block_the_loop(server, name):
    holder = dlm.Client(server.addr).lock(name).acquire()
    base = server.stats()["AWait"]

    async def main():
        client = await dlm.aio.connect(server.addr)
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        tick = asyncio.create_task(ticker())
        acquire = asyncio.create_task(client.lock(name, wait=10).acquire())
        await wait_until(lambda: _stat(server, "AWait", base + 1), message="the waiter to queue")
        seen = ticks
        await wait_until(lambda: _true(ticks > seen + 5), message="the loop to keep ticking")
        assert not acquire.done()
        await asyncio.get_running_loop().run_in_executor(None, holder.release)
        lock = await acquire
        assert lock.token > holder.token
        await lock.release()
        tick.cancel()
        await client.close()

    asyncio.run(main())


def test_cancelling_the_task_cancels_the_wait(server, name):
    holder = dlm.Client(server.addr).lock(name).acquire()
    base = server.stats()["AWait"]

    async def main():
        async with dlm.aio.Client(server.addr) as client:
            lock = client.lock(name, wait=60)
            task = asyncio.create_task(lock.acquire())
            await wait_until(lambda: _stat(server, "AWait", base + 1), message="the waiter to queue")
            task.cancel()
            started = time.monotonic()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.monotonic() - started < 2
            assert not lock.held

    asyncio.run(main())
    wait_for(lambda: server.stats()["AWait"] == base, message="the server to drop the waiter")
    holder.release()
    # Nothing was left held by the cancelled acquire.
    assert dlm.Client(server.addr).test_lock(name).state == "free"


def test_wait_for_timeout_around_an_acquire(server, name):
    holder = dlm.Client(server.addr).lock(name).acquire()

    async def main():
        async with dlm.aio.Client(server.addr) as client:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.lock(name, wait=60).acquire(), 0.2)
            with pytest.raises(dlm.NotOwnerError):
                await client.lock(name).acquire()
            with pytest.raises(dlm.TimeoutError):
                await client.lock(name, wait=0.1).acquire()

    asyncio.run(main())
    wait_for(lambda: server.stats()["AWait"] == 0, message="no waiter left")
    holder.release()


def test_wrapping_a_blocking_client_shares_its_owner(server, name):
    blocking = dlm.Client(server.addr)

    async def main():
        client = dlm.aio.Client.wrap(blocking)
        assert client.id == blocking.id
        await client.put(name, b"shared")
        await client.close()

    asyncio.run(main())
    assert dlm.Client(server.addr, client_id=blocking.id).get(name).value == b"shared"


def test_unreachable_server_raises_on_connect(fresh_server):
    gone = fresh_server()
    addr = gone.addr
    gone.stop()

    async def main():
        with pytest.raises(dlm.UnavailableError):
            await dlm.aio.connect(addr, connect_attempts=1)

    asyncio.run(main())


def test_closing_the_client_closes_its_sessions_and_watches(server, name):
    other = dlm.Client(server.addr)

    async def main():
        client = await dlm.aio.connect(server.addr)
        session = await client.session(ttl=30)
        held = await session.lock(name, ttl=600).acquire()
        assert held.held
        watch = client.watch(prefix=name)
        await watch.start()
        events = []

        async def follow():
            async for event in watch:
                events.append(event)

        follower = asyncio.create_task(follow())
        assert other.test_lock(name).state == "taken"
        await client.close()
        # The session ended: the server released its lock.
        assert session.closed
        assert other.test_lock(name).state == "free"
        # The watch ended: the iteration stops by itself.
        await asyncio.wait_for(follower, timeout=10)
        with pytest.raises(dlm.UnavailableError):
            await client.get(name)
        await client.close()  # a second close does nothing

    asyncio.run(main())


async def _true(value: bool) -> bool:
    return value


async def _stat(server, key: str, value: int) -> bool:
    loop = asyncio.get_running_loop()
    stats = await loop.run_in_executor(None, server.stats)
    return stats[key] == value
