"""Watches in asyncio: ``async for event in client.watch(...)`` in order,
resuming from a revision, a resume past the history, and a slow watcher
cut off by the server."""

import asyncio

import pytest

import dlm
import dlm.aio


def test_events_in_order_with_increasing_revisions(fresh_server) -> None:
    server = fresh_server()

    async def main() -> None:
        async with dlm.aio.Client(server.addr, client_id="me") as me:
            async with me.watch(prefix="jobs/") as watch:
                start = watch.revision
                assert start is not None
                async with me.lock("jobs/1", ttl=60):
                    await me.put("jobs/state", "running", ttl=60)
                await me.erase("jobs/state")
                await me.put("other", "x", ttl=60)
                seen = []
                async for event in watch:
                    seen.append(event)
                    if len(seen) == 4:
                        break
                assert [(e.event, e.kind, e.name) for e in seen] == [
                    ("Granted", "Lock", "jobs/1"),
                    ("Put", "Data", "jobs/state"),
                    ("Released", "Lock", "jobs/1"),
                    ("Erased", "Data", "jobs/state"),
                ]
                revisions = [e.revision for e in seen]
                assert revisions == sorted(set(revisions)) and revisions[0] > start
                assert seen[1].value == b"running" and seen[1].owner == "me"
                assert watch.revision == revisions[-1]
            # Closed: iterating ends.
            assert [e async for e in watch] == []

    asyncio.run(main())


def test_resume_since_a_revision_misses_nothing(fresh_server) -> None:
    server = fresh_server()

    async def main() -> None:
        async with dlm.aio.Client(server.addr) as c:
            first = c.watch(name="k")
            await first.start()
            await c.put("k", "0", ttl=60)
            event = await first.__anext__()
            assert event.data_revision == 1
            last = first.revision
            await first.close()
            # Changes while nobody watches.
            for i in range(1, 4):
                await c.put("k", str(i), ttl=60)
            await c.erase("k")
            again = c.watch(name="k", since=last)
            got = [await again.__anext__() for _ in range(4)]
            assert [(e.event, e.data_revision) for e in got] == [("Put", 2), ("Put", 3), ("Put", 4), ("Erased", None)]
            assert [e.revision for e in got] == list(range(last + 1, last + 5))
            await again.close()

    asyncio.run(main())


def test_a_resume_past_the_history_raises_conflict(fresh_server) -> None:
    server = fresh_server("--watch-history", "3")

    async def main() -> None:
        async with dlm.aio.Client(server.addr) as c:
            w = await c.watch(name="k").start()
            start = w.revision
            await w.close()
            for i in range(5):
                await c.put("k", str(i), ttl=60)
            late = c.watch(name="k", since=start)
            with pytest.raises(dlm.ConflictError) as e:
                await late.__anext__()
            assert e.value.revision > start
            await late.close()

    asyncio.run(main())


def test_a_slow_watcher_is_cut_off_and_told(fresh_server) -> None:
    """The server cuts off a watcher that reads nothing; with the history
    too short to resume from, the watch says so (ConflictError) after the
    events it had received."""
    server = fresh_server("--watch-budget", "64KiB", "--watch-history", "3")

    async def main() -> None:
        async with dlm.aio.Client(server.addr) as c:
            watch = await c.watch(prefix="big/").start()
            start = watch.revision
            value = b"v" * 8192
            puts = 0
            while server.stats()["WatchCutOff"] == 0:
                assert puts < 1500, "the watcher was never cut off"
                for _ in range(10):
                    await c.put("big/k", value, ttl=60)
                    puts += 1
            seen = []
            with pytest.raises(dlm.ConflictError):
                for _ in range(puts + 1):
                    seen.append((await watch.__anext__()).revision)
            # What it had received came first, in order, without a gap.
            assert seen == list(range(start + 1, start + 1 + len(seen)))
            assert len(seen) < puts
            await watch.close()

    asyncio.run(main())


def test_cancelling_a_waiting_anext_loses_no_event(fresh_server) -> None:
    server = fresh_server()

    async def main() -> None:
        async with dlm.aio.Client(server.addr) as c:
            async with c.watch(prefix="") as watch:
                waiting = asyncio.ensure_future(watch.__anext__())
                await asyncio.sleep(0)
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
                await c.put("a", "1", ttl=60)
                event = await asyncio.wait_for(watch.__anext__(), 10)
                assert (event.event, event.name) == ("Put", "a")

    asyncio.run(main())


def test_watch_needs_a_prefix_or_a_name(server) -> None:
    c = dlm.aio.Client(server.addr)
    with pytest.raises(dlm.InvalidArgumentError):
        c.watch()
    with pytest.raises(dlm.InvalidArgumentError):
        c.watch(prefix="a", name="b")
