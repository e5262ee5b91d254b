"""The client across a cluster's failover: a real 3-member cluster started
here, its leader killed (SIGKILL) while one client holds an auto-renewed
lock, another waits for it and a third writes values in a loop."""

import json
import socket
import subprocess
import threading
import time
from typing import Dict, List, Optional

import pytest

import dlm
from conftest import SERVER_BIN, wait_for

# Elections and failovers on a loaded two-core machine: an upper bound only,
# nothing waits it out.
LONG = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Member:
    """One dlm-server of the cluster, on a free client port."""

    def __init__(self, node: int, peers: str) -> None:
        self.node = node
        self.proc = subprocess.Popen(
            [str(SERVER_BIN), "127.0.0.1", "0", "--node", str(node), "--peers", peers],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line.startswith("dlm-server listening on "), line
        self.addr = line.rsplit(" ", 1)[1]

    def status(self) -> Optional[Dict]:
        """The member's answer to {"Action":"Cluster"}, or None (no answer
        now: an election)."""
        host, port = self.addr.rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=5) as s:
                s.sendall(b'{"Action":"Cluster"}\n')
                data = b""
                while not data.endswith(b"\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        return None
                    data += chunk
        except OSError:
            return None
        answer = json.loads(data)
        return answer.get("Cluster")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


class Cluster:
    def __init__(self, n: int = 3) -> None:
        ports = {node: free_port() for node in range(1, n + 1)}
        peers = ",".join(f"{node}=127.0.0.1:{port}" for node, port in ports.items())
        self.members: Dict[int, Member] = {}
        for node in ports:
            self.members[node] = Member(node, peers)

    @property
    def servers(self) -> str:
        return ",".join(m.addr for m in self.members.values())

    def leader(self) -> int:
        """Waits until every running member names one running leader."""
        found: List[int] = []

        def agreed() -> bool:
            found.clear()
            for m in self.members.values():
                s = m.status()
                found.append(s.get("Leader", 0) if s else 0)
            return found[0] in self.members and all(f == found[0] for f in found)

        wait_for(agreed, timeout=LONG, message="a leader all members agree on")
        return found[0]

    def kill(self, node: int) -> None:
        self.members.pop(node).kill()

    def stop(self) -> None:
        for m in self.members.values():
            m.kill()


@pytest.fixture()
def cluster():
    c = Cluster()
    yield c
    c.stop()


def test_holder_waiter_and_writer_ride_through_the_leaders_death(cluster: Cluster) -> None:
    leader = cluster.leader()
    old_addr = cluster.members[leader].addr
    follower = next(n for n in cluster.members if n != leader)
    # Given one follower's address, a client finds the leader.
    with dlm.Client(cluster.members[follower].addr, timeout=LONG) as one:
        assert one.current_server == old_addr
    holder = dlm.Client(cluster.servers, timeout=LONG)
    waiter = dlm.Client(cluster.servers, timeout=LONG)
    writer = dlm.Client(cluster.servers, timeout=LONG)
    observer = dlm.Client(cluster.servers, timeout=LONG)
    assert holder.server == cluster.servers
    assert holder.current_server == old_addr

    ttl = 15.0
    lock = holder.lock("resource", ttl=ttl, auto_renew=True).acquire()
    token = lock.token
    assert token

    granted: Dict[str, object] = {}

    def wait_in_queue() -> None:
        try:
            got = waiter.lock("resource", ttl=ttl, wait=LONG, auto_renew=False).acquire()
            granted["token"] = got.token
            granted["server"] = waiter.current_server
            got.release()
        except Exception as e:  # reported by the assertions below
            granted["error"] = e

    waiting = threading.Thread(target=wait_in_queue)
    waiting.start()
    # The observer talks to the leader too: its AWait is the leader's.
    wait_for(lambda: observer.stats()["AWait"] == 1, timeout=LONG, message="the waiter to queue")

    stop = threading.Event()
    acked: List[int] = []
    errors: List[BaseException] = []
    chain = {"revision": 0}

    def write() -> None:
        try:
            for i in range(1, 20001):
                if stop.is_set():
                    return
                # A compare-and-set chain: a Put applied twice would make
                # its resend a conflict.
                chain["revision"] = writer.put("chain", str(i), 600, revision=chain["revision"])
                writer.put(f"k{i}", str(i), 600)
                acked.append(i)
        except BaseException as e:  # reported by the assertions below
            errors.append(e)

    writing = threading.Thread(target=write)
    writing.start()
    wait_for(lambda: len(acked) >= 20 or bool(errors), timeout=LONG, message="the writer to write")

    killed = time.monotonic()
    deadline_before = killed + lock.remaining
    cluster.kill(leader)
    new_leader = cluster.leader()
    assert new_leader != leader
    new_addr = cluster.members[new_leader].addr

    at_kill = len(acked)
    wait_for(lambda: len(acked) >= at_kill + 20 or bool(errors), timeout=LONG, message="writes after the failover")
    assert not errors, errors

    # Extended through the new leader: its deadline moved past where it
    # stood when the leader died, same grant, never reported lost.
    wait_for(
        lambda: time.monotonic() + lock.remaining > deadline_before + 1,
        timeout=LONG,
        message="an extension after the failover",
    )
    assert holder.current_server == new_addr
    assert not lock.lost and lock.held
    assert lock.token == token
    state = holder.test_lock("resource")
    assert (state.state, state.token) == ("mine", token)

    # The waiter queued again on the new leader, still waiting.
    wait_for(lambda: observer.stats()["AWait"] == 1, timeout=LONG, message="the waiter to queue again")
    assert waiting.is_alive()

    lock.release()
    waiting.join(timeout=LONG + 5)
    assert not waiting.is_alive()
    assert "error" not in granted, granted
    assert granted["token"] > token
    assert granted["server"] == new_addr

    stop.set()
    writing.join(timeout=LONG + 5)
    assert not errors, errors
    n = len(acked)
    got = writer.get("chain")
    assert got is not None and got.text == str(n)
    assert got.revision == chain["revision"]
    for i in range(1, n + 1):
        v = writer.get(f"k{i}")
        assert v is not None and v.text == str(i), i
    for c in (holder, waiter, writer, observer):
        c.close()


def test_a_client_given_one_follower_finds_and_follows_the_leader(cluster: Cluster) -> None:
    leader = cluster.leader()
    follower = next(n for n in cluster.members if n != leader)
    given = cluster.members[follower].addr
    with dlm.Client(given, timeout=LONG) as c:
        assert c.server == given
        # Discovery: the member given named the leader, and the client went there.
        assert c.current_server == cluster.members[leader].addr
        first = c.put("followed", "1", 600)
        # The leader dies. The client knows the other members from the
        # cluster itself, not from its argument, and follows the new leader.
        cluster.kill(leader)
        new_leader = cluster.leader()
        assert c.put("followed", "2", 600, revision=first) == first + 1
        assert c.current_server == cluster.members[new_leader].addr
        got = c.get("followed")
        assert got is not None and got.text == "2"


def test_unavailable_only_once_no_member_answers(cluster: Cluster) -> None:
    cluster.leader()
    c = dlm.Client(cluster.servers, timeout=3)
    c.put("x", "1", 60)
    for node in list(cluster.members):
        cluster.kill(node)
    with pytest.raises(dlm.UnavailableError):
        c.get("x")
    c.close()
    with pytest.raises(dlm.InvalidArgumentError):
        dlm.Client("127.0.0.1:1,nonsense")
