"""JackrabbitDLM's Python client, as it behaves on the wire, against dlm-server.

This is not JackrabbitDLM's code: it is a minimal client written from what
that client sends (PROTOCOL.md sections 1-3): one TCP connection per
request, the whole JSON line run through the table codec, keys in random
order, ``json.dumps`` escapes (non-ASCII as \\uXXXX), ``Expire`` as a
string on every request (``"0"`` where unused), ``"DataStore": null`` on
Get/Erase/Version, and values table-encoded by the default data encoder.
"""

import json
import os
import random
import socket
import subprocess
import pathlib

import pytest

ALPHABET = "1aA2bB3cC4dD5eE6fF7gG8hH9iI0jJ!kK@lL#mM$nN%oO^pP&qQ*rR(sS)tT/uU?vV=wW+xX;yY:zZ"


def encode(data: bytes) -> str:
    return "".join(ALPHABET[b // 78] + ALPHABET[b % 78] for b in data)


def decode(text: str) -> bytes:
    return bytes(ALPHABET.index(text[i]) * 78 + ALPHABET.index(text[i + 1]) for i in range(0, len(text), 2))


ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVER = pathlib.Path(os.environ.get("DLM_SERVER_BIN", ROOT / "target" / "debug" / "dlm-server"))


@pytest.fixture()
def server():
    proc = subprocess.Popen(
        [str(SERVER), "127.0.0.1", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    line = proc.stdout.readline().strip()
    host, port = line.rsplit(" ", 1)[1].rsplit(":", 1)
    yield (host, int(port))
    proc.terminate()
    assert proc.wait(timeout=5) == 0


class OldClient:
    """One request per connection, legacy framing, like JackrabbitDLM's Locker."""

    def __init__(self, addr, filename, ident=None):
        self.addr = addr
        self.filename = filename
        self.id = ident or "py-" + os.urandom(24).hex()

    def talk(self, payload: dict) -> dict:
        items = list(payload.items())
        random.shuffle(items)
        line = encode(json.dumps(dict(items)).encode("utf-8")) + "\n"
        with socket.create_connection(self.addr, timeout=10) as s:
            f = s.makefile("rw", buffering=1)
            f.write(line)
            f.flush()
            answer = f.readline()
        return json.loads(decode(answer.strip()))

    def request(self, action, expire, **extra):
        payload = {"ID": self.id, "FileName": self.filename, "Action": action, "Expire": str(expire)}
        payload.update(extra)
        return self.talk(payload)

    def lock(self, expire=300):
        return self.request("Lock", expire)["Status"].lower()

    def unlock(self):
        return self.request("Unlock", 0)["Status"].lower()

    def put(self, expire, data: str):
        return self.request("Put", expire, DataStore=encode(data.encode("utf-8")))

    def get(self):
        reply = self.request("Get", 0, DataStore=None)
        if "DataStore" in reply:
            reply["DataStore"] = decode(reply["DataStore"]).decode("utf-8")
        return reply

    def erase(self):
        return self.request("Erase", 0, DataStore=None)

    def version(self):
        return self.request("Version", 0, DataStore=None)


def test_lock_cycle(server):
    a = OldClient(server, "resource")
    b = OldClient(server, "resource")
    assert a.lock() == "locked"
    assert a.lock() == "locked"  # re-lock
    assert b.lock() == "notowner"
    assert b.unlock() == "notowner"
    assert a.unlock() == "unlocked"
    assert b.lock() == "locked"


def test_unicode_names_sent_as_escapes(server):
    # json.dumps escapes these as \\u00e9 and a surrogate pair.
    name = "caf\u00e9-\U0001f512"
    a = OldClient(server, name)
    assert a.lock() == "locked"
    assert OldClient(server, name).lock() == "notowner"
    assert OldClient(server, "cafe-\U0001f512").lock() == "locked"


def test_put_get_erase_round_trip(server):
    a = OldClient(server, "shared")
    text = "state: {\"n\": 1} \u2713"
    reply = a.put(60, text)
    assert reply["Status"] == "Done" and reply["ID"] == a.id
    reply = a.get()
    assert reply["Status"] == "Done"
    assert reply["DataStore"] == text
    assert OldClient(server, "shared").get()["Status"] == "NotOwner"
    assert a.erase()["Status"] == "Done"
    assert a.get()["Status"] == "NotFound"


def test_version_names_jackrabbit(server):
    reply = OldClient(server, "x").version()
    assert reply["Status"] == "Version"
    assert "JackrabbitDLM" in reply["ID"]


def test_anonymous_limits_as_jackrabbit(server):
    a = OldClient(server, "big")
    assert a.request("Lock", 3544)["Status"] == "BadPayload"
    assert a.request("Lock", 3543)["Status"] == "Locked"
    reply = a.request("Put", 60, DataStore="x" * (16 * 1024 + 1))
    assert reply["Status"] == "BadPayload"
