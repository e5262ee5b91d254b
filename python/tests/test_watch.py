"""Watches: an iterator of events over a connection of its own, values only
for their owner, resuming from a revision, and the answer when the server
no longer keeps it."""

import dlm
import pytest


def test_events_in_order_with_values_for_their_owner(fresh_server) -> None:
    server = fresh_server()
    with dlm.Client(server.addr, client_id="me") as me, dlm.Client(server.addr, client_id="you") as you:
        with me.watch_prefix("jobs/") as watch:
            start = watch.revision
            assert watch.next_event(timeout=0.02) is None
            with me.lock("jobs/1", ttl=60):
                me.put("jobs/state", "running", ttl=60)
                you.put("jobs/theirs", "secret", ttl=60)
                me.put("elsewhere", "x", ttl=60)
            events = [next(watch) for _ in range(4)]
            assert [(e.event, e.kind, e.name) for e in events] == [
                ("Granted", "Lock", "jobs/1"),
                ("Put", "Data", "jobs/state"),
                ("Put", "Data", "jobs/theirs"),
                ("Released", "Lock", "jobs/1"),
            ]
            assert [e.revision - start for e in events] == [1, 2, 3, 5]
            assert (events[1].owner, events[1].value) == ("me", b"running")
            assert (events[2].owner, events[2].value) == (None, None)
            assert events[0].token is not None
            assert watch.revision == start + 5


def test_resume_from_a_revision_and_past_the_history(fresh_server) -> None:
    server = fresh_server("--watch-history", "3")
    with dlm.Client(server.addr) as c:
        with c.watch_name("k") as watch:
            start = watch.revision
        for i in range(2):
            c.put("k", str(i), ttl=60)
        with c.watch_name("k", since=start) as again:
            assert [next(again).data_revision for _ in range(2)] == [1, 2]
        for i in range(3):
            c.put("k", str(i), ttl=60)
        with pytest.raises(dlm.ConflictError):
            c.watch_name("k", since=start)
