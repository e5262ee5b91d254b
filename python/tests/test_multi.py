"""Multi-locks from Python against a real dlm-server: several names taken
all or none, one fencing token per name in name order, a wait that holds
nothing until it is granted everything, release of every name together,
and the asyncio layer."""

import asyncio
import threading

import pytest

import dlm
import dlm.aio
from conftest import wait_for


def names_of(name, n=3):
    return [f"{name}/{i}" for i in range(n)]


def test_lock_all_takes_every_name_with_a_token_each(client, other, name):
    names = names_of(name)
    locks = client.lock_all(names, ttl=30)
    assert locks.tokens is None and not locks.held
    with locks:
        assert locks.held and not locks.lost
        assert locks.names == names
        tokens = locks.tokens
        assert len(tokens) == 3 and all(isinstance(t, int) for t in tokens)
        # Distinct and in name order, each the token of its own name.
        assert tokens == sorted(tokens) and len(set(tokens)) == 3
        for n, t in zip(names, tokens):
            assert locks.token(n) == t
            assert client.test_lock(n).state == "mine"
            assert client.test_lock(n).token == t
            assert other.test_lock(n).state == "taken"
            with pytest.raises(dlm.NotOwnerError):
                other.lock(n).acquire()
        assert locks.token("not one of them") is None
        assert 0 < locks.remaining <= 30
    # Release frees every name.
    assert not locks.held
    for n in names:
        assert other.test_lock(n).state == "free"
    # A new grant: tokens above every earlier one.
    with other.lock_all(names) as again:
        assert min(again.tokens) > max(tokens)


def test_a_held_name_refuses_the_set_and_nothing_is_taken(client, other, name):
    a, b = names_of(name, 2)
    with other.lock(b):
        with pytest.raises(dlm.NotOwnerError):
            client.lock_all([a, b]).acquire()
        # All or none: the free name was not taken either.
        assert client.test_lock(a).state == "free"
        with other.lock(a) as la:
            assert la.held
        with pytest.raises(dlm.TimeoutError):
            client.lock_all([a, b], wait=0.2).acquire()
        assert client.test_lock(a).state == "free"


def test_a_waiting_set_is_granted_all_at_once(server, client, other, name):
    a, b = names_of(name, 2)
    holder = other.lock(b).acquire()
    got = {}
    base = server.stats()["AWait"]
    t = threading.Thread(target=lambda: got.setdefault("locks", client.lock_all([a, b], wait=20).acquire()))
    t.start()
    wait_for(lambda: server.stats()["AWait"] > base, message="the set to queue")
    # Waiting, it holds nothing: the free name is reserved, not taken.
    assert "locks" not in got
    assert client.test_lock(a).state != "mine"
    with pytest.raises(dlm.NotOwnerError):
        other.lock(a).acquire()
    holder.release()
    t.join(30)
    locks = got["locks"]
    assert locks.held and len(locks.tokens) == 2
    assert min(locks.tokens) > holder.token
    assert [client.test_lock(n).token for n in (a, b)] == locks.tokens
    locks.release()
    assert [other.test_lock(n).state for n in (a, b)] == ["free", "free"]


def test_renewal_keeps_the_set_and_without_it_one_lost_name_is_seen(server, client, other, name):
    a, b = names_of(name, 2)
    before = server.stats()["Relock"]
    with client.lock_all([a, b], ttl=0.3) as kept:
        # Renewed together: each name at least twice.
        wait_for(lambda: server.stats()["Relock"] >= before + 4, message="renewals")
        assert kept.held and not kept.lost
        assert [other.test_lock(n).state for n in (a, b)] == ["taken", "taken"]
    locks = client.lock_all([a, b], ttl=0.2, auto_renew=False).acquire()
    wait_for(lambda: other.test_lock(b).state == "free", message="the locks to expire")
    taker = other.lock(b).acquire()
    with pytest.raises(dlm.LockLostError):
        locks.extend()
    assert locks.lost and not locks.held
    with pytest.raises(dlm.LockLostError):
        locks.release()
    assert other.test_lock(b).token == taker.token, "the stale release left the new grant alone"
    taker.release()


def test_bad_name_lists_are_refused_before_any_request(client, name):
    with pytest.raises(dlm.InvalidArgumentError):
        client.lock_all([])
    with pytest.raises(dlm.InvalidArgumentError):
        client.lock_all([name, name])
    with pytest.raises(dlm.InvalidArgumentError):
        client.lock_all(names_of(name, 17))
    with pytest.raises(dlm.InvalidArgumentError):
        client.lock_all([name, ""])
    with pytest.raises(TypeError):
        client.lock_all(name)
    # A name that is a semaphore: the set is refused, nothing taken.
    a, b = names_of(name, 2)
    with client.semaphore(b, 2):
        with pytest.raises(dlm.ConflictError):
            client.lock_all([a, b]).acquire()
        assert client.test_lock(a).state == "free"


def test_asyncio_lock_all(server, name):
    names = names_of(name, 2)

    async def main():
        async with dlm.aio.Client(server.addr) as c, dlm.aio.Client(server.addr) as d:
            locks = c.lock_all(names, ttl=30)
            assert locks.tokens is None and locks.names == names
            async with locks as held:
                assert held is locks and locks.held and not locks.lost
                assert len(locks.tokens) == 2 and locks.tokens == sorted(locks.tokens)
                assert locks.token(names[1]) == locks.tokens[1]
                for n in names:
                    assert (await d.test_lock(n)).state == "taken"
                with pytest.raises(dlm.NotOwnerError):
                    await d.lock_all(names).acquire()
                await locks.extend(45)
                assert locks.remaining > 30
            assert not locks.held
            for n in names:
                assert (await d.test_lock(n)).state == "free"

    asyncio.run(main())
