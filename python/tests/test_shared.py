"""Shared values from Python against a real dlm-server: a Put says who
besides its owner may read (nobody, any client, or named identities);
readers see the owner's ID; writes stay the owner's; a Put without
readers makes the value private again."""

import asyncio
import json
import subprocess

import pytest

import dlm
import dlm.aio
from conftest import SERVER_BIN


def test_a_value_shared_with_any_is_read_by_another_owner(client, other, name):
    assert client.put(name, "for all", ttl=60, readers="any") == 1
    v = other.get(name)
    assert v.text == "for all" and v.revision == 1
    assert v.owner == client.id != other.id
    assert client.get(name).owner == client.id
    # Reading is shared, writing is not.
    with pytest.raises(dlm.NotOwnerError):
        other.put(name, "mine now", readers="any")
    with pytest.raises(dlm.NotOwnerError):
        other.erase(name)
    # Compare-and-set with readers; then a put without readers makes it
    # the owner's alone again, as get() of another's value has always been.
    assert client.put(name, "still shared", revision=1, readers="ANY") == 2
    assert other.get(name).text == "still shared"
    assert client.put(name, "private again", ttl=60) == 3
    with pytest.raises(dlm.NotOwnerError):
        other.get(name)
    assert client.get(name).text == "private again"


def identity(ids, who):
    subprocess.run(
        [str(SERVER_BIN), "identity", "new", who, "--identity-dir", str(ids)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return (who, json.loads((ids / f"{who}.cfg").read_text())["Identity"])


def test_a_value_shared_with_an_identity_is_read_by_it_alone(fresh_server, tmp_path, name):
    ids = tmp_path / "ids"
    ids.mkdir()
    alice, bob = identity(ids, "alice"), identity(ids, "bob")
    s = fresh_server("--identity-dir", str(ids))
    with dlm.Client(s.addr) as owner, dlm.Client(s.addr, identity=alice) as a, dlm.Client(
        s.addr, identity=bob
    ) as b, dlm.Client(s.addr) as anon:
        owner.put(name, "for alice", ttl=60, readers=["alice"])
        v = a.get(name)
        assert v.text == "for alice" and v.owner == owner.id
        for refused in (b, anon):
            with pytest.raises(dlm.NotOwnerError):
                refused.get(name)
        # Named identities, then a put without readers: private again.
        owner.put(name, "for both", ttl=60, readers=("alice", "bob"))
        assert b.get(name).text == "for both" and a.get(name).text == "for both"
        owner.put(name, "mine", ttl=60)
        for refused in (a, b):
            with pytest.raises(dlm.NotOwnerError):
                refused.get(name)
        assert owner.get(name).text == "mine"


@pytest.mark.parametrize(
    "readers",
    ["everyone", "", ["not a name!"], [""], [".hidden"], [1], b"any", 7, [f"id{i}" for i in range(33)]],
)
def test_bad_readers_are_invalid_arguments(client, name, readers):
    with pytest.raises(dlm.InvalidArgumentError):
        client.put(name, "v", readers=readers)
    assert client.get(name) is None, "nothing was stored"


def test_asyncio_shared_values(server, name):
    async def main():
        async with dlm.aio.Client(server.addr) as c, dlm.aio.Client(server.addr) as d:
            await c.put(name, "shared", ttl=60, readers="any")
            v = await d.get(name)
            assert v.text == "shared" and v.owner == c.id
            await c.put(name, "private", ttl=60)
            with pytest.raises(dlm.NotOwnerError):
                await d.get(name)
            with pytest.raises(dlm.InvalidArgumentError):
                await c.put(name, "v", readers=["no spaces allowed"])

    asyncio.run(main())
