"""Fixtures: a real dlm-server per test module (started on port 0), and a
way to wait for what the server reports instead of sleeping."""

import os
import pathlib
import signal
import subprocess
import time
from typing import Callable, Iterator, List, Optional

import pytest

import dlm

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVER_BIN = pathlib.Path(os.environ.get("DLM_SERVER_BIN", ROOT / "target" / "debug" / "dlm-server"))
CLI_BIN = pathlib.Path(os.environ.get("DLM_CLI_BIN", ROOT / "target" / "debug" / "dlm"))


class Server:
    """A dlm-server process on a free port."""

    def __init__(self, *args: str, probe_tls: Optional["dlm.Tls"] = None) -> None:
        self.proc = subprocess.Popen(
            [str(SERVER_BIN), "127.0.0.1", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line.startswith("dlm-server listening on "), line
        self.addr = line.rsplit(" ", 1)[1]
        self.host, port = self.addr.rsplit(":", 1)
        self.port = int(port)
        self._probe = dlm.Client(self.addr, client_id="test-probe", tls=probe_tls)

    def stats(self) -> dict:
        return self._probe.stats()

    def stop(self) -> None:
        self._probe.close()
        self.proc.terminate()
        # 0 is a clean shutdown. dlm-server prints its line and serves before
        # it installs its SIGTERM handler, so a server stopped right after it
        # started may die of the signal instead: also fine for these tests.
        assert self.proc.wait(timeout=10) in (0, -signal.SIGTERM)


def wait_for(what: Callable[[], bool], timeout: float = 10.0, message: str = "condition") -> None:
    """Polls observable state (the server's statistics, a lock's flags)
    until it holds; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {message}")
        time.sleep(0.005)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.stop()


@pytest.fixture()
def fresh_server() -> Iterator[Callable[..., Server]]:
    """Starts servers with extra options, for one test."""
    started: List[Server] = []

    def start(*args: str, probe_tls: Optional[dlm.Tls] = None) -> Server:
        s = Server(*args, probe_tls=probe_tls)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture()
def client(server: Server) -> Iterator[dlm.Client]:
    with dlm.Client(server.addr) as c:
        yield c


@pytest.fixture()
def other(server: Server) -> Iterator[dlm.Client]:
    """A second client: another owner."""
    with dlm.Client(server.addr) as c:
        yield c


_names = iter(range(1 << 30))


@pytest.fixture()
def name(request: pytest.FixtureRequest) -> str:
    """A resource name no other test uses (the server is per module)."""
    return f"{request.node.name}-{next(_names)}"
