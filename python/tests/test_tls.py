"""The client over TLS against a real dlm-server with certificates from
``dlm-server tls new``: trust (a CA file, or the system's roots), the
server's name always checked, client certificates standing for an
identity, and a typed ``TlsError`` saying why a handshake failed."""

import pathlib
import subprocess
from typing import Callable

import pytest

import dlm
from conftest import SERVER_BIN, Server


def pki(where: pathlib.Path, *clients: str) -> pathlib.Path:
    """A development CA, a server certificate (for localhost and
    127.0.0.1) and client certificates, written by dlm-server."""
    args = [str(SERVER_BIN), "tls", "new", str(where)]
    for c in clients:
        args += ["--client", c]
    subprocess.run(args, check=True, capture_output=True)
    return where


def tls_args(d: pathlib.Path, *extra: str):
    return ("--tls-cert", str(d / "server.pem"), "--tls-key", str(d / "server.key"), *extra)


@pytest.fixture()
def certs(tmp_path: pathlib.Path) -> pathlib.Path:
    return pki(tmp_path / "pki")


@pytest.fixture()
def tls_server(certs: pathlib.Path, fresh_server: Callable[..., Server]) -> Server:
    return fresh_server(*tls_args(certs), probe_tls=dlm.Tls(certs / "ca.pem"))


def test_locks_and_values_over_tls_with_the_name_checked(certs: pathlib.Path, tls_server: Server, name: str) -> None:
    # The address's host (127.0.0.1) is the name checked by default.
    with dlm.Client(tls_server.addr, tls=dlm.Tls(certs / "ca.pem")) as by_address:
        with by_address.lock(name, ttl=5) as lock:
            assert lock.token
            by_address.put(name, "over tls", 5)
            tls = dlm.Tls(certs / "ca.pem", server_name="localhost")
            with dlm.Client(tls_server.addr, tls=tls) as by_name:
                # Another owner: it sees the lock taken.
                assert by_name.test_lock(name).state == "taken"
            assert by_address.get(name).text == "over tls"
        assert by_address.stats()["TlsHandshake"] >= 2


def test_an_unknown_ca_is_a_tls_error_saying_so(tmp_path: pathlib.Path, tls_server: Server) -> None:
    stranger = pki(tmp_path / "stranger")
    with pytest.raises(dlm.TlsError) as caught:
        dlm.Client(tls_server.addr, tls=dlm.Tls(stranger / "ca.pem"))
    assert caught.value.reason == "unknown_ca"
    assert "unknown CA" in str(caught.value)
    # Still an UnavailableError, with its code, for code that catches those.
    assert isinstance(caught.value, dlm.UnavailableError)
    assert caught.value.code == "Unavailable"


def test_a_certificate_for_another_name_is_refused(certs: pathlib.Path, tls_server: Server) -> None:
    with pytest.raises(dlm.TlsError) as caught:
        dlm.Client(tls_server.addr, tls=dlm.Tls(certs / "ca.pem", server_name="db.example"))
    assert caught.value.reason == "name_mismatch"
    assert "db.example" in str(caught.value)


def test_without_a_ca_file_the_systems_roots_are_trusted(tls_server: Server) -> None:
    # The development CA is not among them: refused as unknown (or, on a
    # system without roots, the client says it has none to trust).
    with pytest.raises((dlm.TlsError, dlm.InvalidArgumentError)) as caught:
        dlm.Client(tls_server.addr, tls=dlm.Tls())
    if isinstance(caught.value, dlm.TlsError):
        assert caught.value.reason == "unknown_ca"
    else:
        assert "root certificates" in str(caught.value)


def test_a_tls_client_on_a_plaintext_port_is_told(certs: pathlib.Path, server: Server) -> None:
    with pytest.raises(dlm.TlsError) as caught:
        dlm.Client(server.addr, tls=dlm.Tls(certs / "ca.pem"), connect_timeout=5)
    assert caught.value.reason == "not_tls"


def test_a_client_certificate_stands_for_its_identity(tmp_path: pathlib.Path, fresh_server: Callable[..., Server], name: str) -> None:
    d = pki(tmp_path / "pki", "alice")
    stranger = pki(tmp_path / "stranger", "alice")
    ids = tmp_path / "ids"
    subprocess.run(
        [str(SERVER_BIN), "identity", "new", "alice", "--identity-dir", str(ids)],
        check=True,
        capture_output=True,
    )
    ca = d / "ca.pem"
    s = fresh_server(
        *tls_args(d, "--tls-client-ca", str(ca), "--identity-dir", str(ids)),
        probe_tls=dlm.Tls(ca, client_cert=d / "alice.pem", client_key=d / "alice.key"),
    )
    alice_tls = dlm.Tls(ca, client_cert=d / "alice.pem", client_key=d / "alice.key")
    with dlm.Client(s.addr, tls=alice_tls, identity=("alice", "")) as alice:
        # The certificate stood for the secret.
        with alice.lock(name, ttl=5):
            assert alice.stats()["AuthFailed"] == 0
    # Someone else's certificate for "alice" (another CA): with TLS 1.3 the
    # client learns the verdict at its first read.
    impostor_tls = dlm.Tls(ca, client_cert=stranger / "alice.pem", client_key=stranger / "alice.key")
    with pytest.raises(dlm.TlsError) as caught:
        with dlm.Client(s.addr, tls=impostor_tls, identity=("alice", "")) as impostor:
            impostor.version()
    assert caught.value.reason == "client_certificate_refused"


def test_settings_are_checked(certs: pathlib.Path, tmp_path: pathlib.Path, tls_server: Server) -> None:
    with pytest.raises(dlm.InvalidArgumentError):
        dlm.Tls(certs / "ca.pem", client_cert=certs / "server.pem")
    with pytest.raises(dlm.InvalidArgumentError):
        dlm.Tls(server_name="")
    t = dlm.Tls(certs / "ca.pem", server_name="localhost")
    assert t.ca_file == certs / "ca.pem" and t.server_name == "localhost" and t.client_cert is None
    assert "localhost" in repr(t)
    # A CA file that is not there: said before anything is sent.
    with pytest.raises(dlm.SystemResourceError) as caught:
        dlm.Client(tls_server.addr, tls=dlm.Tls(tmp_path / "missing.pem"))
    assert "missing.pem" in str(caught.value)
