//! TLS on the client port, against the real server: handshakes, client
//! certificates standing for identities, reload on SIGHUP, and bad input
//! (plaintext to the TLS port, TLS to the plaintext port, truncated and
//! stalled handshakes, certificates from another CA), each refused,
//! counted, and harmless to the other connections.
//!
//! The client here is rustls used directly (not dlm's own client), so the
//! server is tested against a TLS implementation it does not share code
//! with beyond rustls itself.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dlm_core::stats::{Stat, Stats};
use dlm_tests::{Conn, Server, binary, scratch_dir};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};

fn pki(clients: &[&str]) -> PathBuf {
    dlm_tests::dev_pki("tls", clients)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(ca: &Path, client: Option<(&Path, &Path)>) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("ca file") {
        roots.add(c.expect("ca cert")).expect("add ca");
    }
    let b = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match client {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .expect("client cert")
                .collect::<Result<Vec<_>, _>>()
                .expect("client cert");
            let key = PrivateKeyDer::from_pem_file(key).expect("client key");
            b.with_client_auth_cert(certs, key).expect("client auth")
        }
    };
    Arc::new(config)
}

struct TlsConn {
    stream: BufReader<StreamOwned<ClientConnection, TcpStream>>,
}

impl TlsConn {
    /// Connects and completes the handshake (with TLS 1.3 the server's
    /// verdict on a client certificate comes with its first answer, so a
    /// refused certificate shows as an error of [`call`](Self::call)).
    fn open(addr: SocketAddr, config: Arc<ClientConfig>, name: &str) -> std::io::Result<Self> {
        let tcp = TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut conn =
            ClientConnection::new(config, ServerName::try_from(name.to_owned()).expect("name"))
                .expect("client connection");
        let mut tcp = tcp;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        Ok(Self {
            stream: BufReader::new(StreamOwned::new(conn, tcp)),
        })
    }

    /// Reads without sending: what a server that refused the client
    /// certificate says (its alert).
    fn verdict(&mut self) -> std::io::Result<String> {
        let mut answer = String::new();
        self.stream.read_line(&mut answer)?;
        Ok(answer)
    }

    fn call(&mut self, line: &str) -> std::io::Result<String> {
        let s = self.stream.get_mut();
        s.write_all(line.as_bytes())?;
        s.write_all(b"\n")?;
        s.flush()?;
        let mut answer = String::new();
        if self.stream.read_line(&mut answer)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(answer)
    }
}

const VERSION: &str = r#"{"Action":"Version"}"#;

/// The plaintext port the server logged.
fn plaintext_addr(server: &Server) -> SocketAddr {
    let log = server.log();
    let at = log
        .find("plaintext listener on ")
        .unwrap_or_else(|| panic!("no plaintext listener in the log:\n{log}"));
    log[at + "plaintext listener on ".len()..]
        .split_whitespace()
        .next()
        .and_then(|a| a.parse().ok())
        .expect("plaintext address")
}

fn stats(plain: SocketAddr) -> Stats {
    Conn::open(plain).stats()
}

#[track_caller]
fn wait_stats(plain: SocketAddr, what: &str, ok: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = Conn::open(plain);
    loop {
        let s = conn.stats();
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn tls_server(dir: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--plaintext-port", "0"];
    args.extend_from_slice(extra);
    dlm_tests::tls_server(&dir.join("server.pem"), &dir.join("server.key"), &args)
}

#[test]
fn serves_tls_and_counts_handshakes_and_their_memory() {
    let dir = pki(&[]);
    let server = tls_server(&dir, &[]);
    let plain = plaintext_addr(&server);
    let before = stats(plain);
    let config = client_config(&dir.join("ca.pem"), None);
    let mut a = TlsConn::open(server.addr(), config.clone(), "localhost").expect("tls localhost");
    assert!(
        a.call(VERSION)
            .expect("version")
            .contains("\"Status\":\"Version\"")
    );
    let mut b = TlsConn::open(server.addr(), config, "127.0.0.1").expect("tls by address");
    let lock = r#"{"Action":"Lock","FileName":"f","ID":"me","Expire":"10"}"#;
    assert!(
        b.call(lock)
            .expect("lock")
            .contains("\"Status\":\"Locked\"")
    );
    let s = wait_stats(plain, "two handshakes", |s| s.get(Stat::TlsHandshake) == 2);
    assert_eq!(s.get(Stat::TlsFailed), 0);
    // The TLS state is charged to the connection budget: two TLS
    // connections hold more than 2 x 50 KB beyond the plaintext ones.
    assert!(
        s.get(Stat::ConnMemory) >= before.get(Stat::ConnMemory) + 100_000,
        "ConnMemory {} -> {}",
        before.get(Stat::ConnMemory),
        s.get(Stat::ConnMemory)
    );
    // A long answer crosses several TLS records intact.
    let data = "x".repeat(15_000);
    let put = format!(
        r#"{{"Action":"Put","FileName":"d","ID":"me","Expire":"10","DataStore":"{data}"}}"#
    );
    assert!(a.call(&put).expect("put").contains("\"Status\":\"Done\""));
    let got = a
        .call(r#"{"Action":"Get","FileName":"d","ID":"me"}"#)
        .expect("get");
    assert!(got.contains(&data), "{}", &got[..80.min(got.len())]);
}

#[test]
fn refuses_a_server_certificate_from_another_ca_or_for_another_name() {
    let dir = pki(&[]);
    let other = pki(&[]);
    let server = tls_server(&dir, &[]);
    let plain = plaintext_addr(&server);
    let wrong_ca = TlsConn::open(
        server.addr(),
        client_config(&other.join("ca.pem"), None),
        "localhost",
    );
    let err = wrong_ca
        .err()
        .expect("a certificate from another CA must fail");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    let wrong_name = TlsConn::open(
        server.addr(),
        client_config(&dir.join("ca.pem"), None),
        "db.example",
    );
    let err = wrong_name
        .err()
        .expect("a certificate for another name must fail");
    assert!(err.to_string().contains("not valid for name"), "{err}");
    wait_stats(plain, "both refusals counted", |s| {
        s.get(Stat::TlsFailed) == 2
    });
}

#[test]
fn plaintext_to_the_tls_port_is_told_and_counted() {
    let dir = pki(&[]);
    let server = tls_server(&dir, &[]);
    let plain = plaintext_addr(&server);
    let config = client_config(&dir.join("ca.pem"), None);
    let mut good = TlsConn::open(server.addr(), config, "localhost").expect("tls");
    let mut c = Conn::open(server.addr());
    c.send_raw(format!("{VERSION}\n").as_bytes());
    let line = c.recv_line().expect("a refusal line");
    let text = String::from_utf8_lossy(&line);
    assert!(
        text.contains("BadPayload") && text.contains("speaks TLS"),
        "{text}"
    );
    assert!(
        c.closed_within(Duration::from_secs(5)),
        "closed after the refusal"
    );
    wait_stats(plain, "the refusal counted", |s| {
        s.get(Stat::TlsFailed) == 1
    });
    // Nothing else was affected.
    assert!(
        good.call(VERSION)
            .expect("still served")
            .contains("Version")
    );
    assert!(
        Conn::open(plain)
            .call(&dlm_core::client::Client::new("x").version())
            .status
            == dlm_core::protocol::Status::Version
    );
}

#[test]
fn a_tls_hello_to_the_plaintext_port_gets_a_tls_alert() {
    let dir = pki(&[]);
    let server = tls_server(&dir, &[]);
    let plain = plaintext_addr(&server);
    let err = TlsConn::open(plain, client_config(&dir.join("ca.pem"), None), "localhost")
        .err()
        .expect("TLS to the plaintext port must fail");
    assert!(err.to_string().contains("HandshakeFailure"), "{err}");
    let s = wait_stats(plain, "counted", |s| s.get(Stat::TlsOnPlain) == 1);
    assert_eq!(s.get(Stat::TlsFailed), 0);
}

/// The first bytes a TLS client sends: its hello.
fn client_hello(dir: &Path) -> Vec<u8> {
    let mut conn = ClientConnection::new(
        client_config(&dir.join("ca.pem"), None),
        ServerName::try_from("localhost").expect("name"),
    )
    .expect("client");
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).expect("hello");
    assert!(hello.len() > 40);
    hello
}

#[test]
fn a_truncated_handshake_is_closed_and_counted() {
    let dir = pki(&[]);
    let server = tls_server(&dir, &[]);
    let plain = plaintext_addr(&server);
    let hello = client_hello(&dir);
    let mut s = TcpStream::connect(server.addr()).expect("connect");
    s.write_all(&hello[..hello.len() / 2])
        .expect("half a hello");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    wait_stats(plain, "counted", |s| {
        s.get(Stat::TlsFailed) == 1 && s.get(Stat::AConn) == 1
    });
    // Garbage after a TLS record header is a protocol error: refused too.
    let mut g = TcpStream::connect(server.addr()).expect("connect");
    g.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0xff])
        .expect("garbage");
    g.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = g.read_to_end(&mut rest);
    wait_stats(plain, "counted", |s| s.get(Stat::TlsFailed) == 2);
}

#[test]
fn a_handshake_that_never_finishes_runs_into_the_idle_timeout() {
    let dir = pki(&[]);
    let server = tls_server(&dir, &["--idle-timeout", "300ms"]);
    let plain = plaintext_addr(&server);
    let hello = client_hello(&dir);
    let mut s = TcpStream::connect(server.addr()).expect("connect");
    // A hello without its last byte: the server waits for the rest.
    s.write_all(&hello[..hello.len() - 1])
        .expect("most of a hello");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut rest = Vec::new();
    let closed = s.read_to_end(&mut rest);
    assert!(closed.is_ok() || rest.is_empty(), "the server closes it");
    let st = wait_stats(plain, "counted", |s| s.get(Stat::TlsFailed) == 1);
    assert_eq!(st.get(Stat::IdleTimeout), 1);
}

fn new_identity(dir: &Path, name: &str) {
    let out = Command::new(binary("dlm-server", "dlm-server"))
        .args(["identity", "new", name, "--identity-dir"])
        .arg(dir)
        .output()
        .expect("identity new");
    assert!(out.status.success());
}

#[test]
fn client_certificates_stand_for_identities_and_others_are_refused() {
    let dir = pki(&["alice", "bob"]);
    let other = pki(&["alice"]);
    let ids = scratch_dir("tls-ids");
    new_identity(&ids, "alice");
    new_identity(&ids, "bob");
    let ca = dir.join("ca.pem");
    let server = tls_server(
        &dir,
        &[
            "--tls-client-ca",
            ca.to_str().expect("path"),
            "--identity-dir",
            ids.to_str().expect("path"),
        ],
    );
    let plain = plaintext_addr(&server);
    let alice_cfg = client_config(&ca, Some((&dir.join("alice.pem"), &dir.join("alice.key"))));
    let mut alice = TlsConn::open(server.addr(), alice_cfg, "localhost").expect("alice");
    let as_alice =
        r#"{"Action":"Lock","FileName":"f","ID":"a","Expire":"10","Name":"alice","Identity":""}"#;
    assert!(alice.call(as_alice).expect("lock").contains("Locked"));
    // The certificate stands for alice only: bob's name still needs bob's
    // secret.
    let as_bob =
        r#"{"Action":"Lock","FileName":"g","ID":"a","Expire":"10","Name":"bob","Identity":""}"#;
    let refused = alice.call(as_bob).expect("answer");
    assert!(refused.contains("BadPayload"), "{refused}");

    // No client certificate, or one from another CA: refused in the
    // handshake (TLS 1.3: the client learns it at its first read).
    let none = TlsConn::open(server.addr(), client_config(&ca, None), "localhost")
        .and_then(|mut c| c.verdict());
    let err = none.expect_err("no client certificate must fail");
    assert!(err.to_string().contains("CertificateRequired"), "{err}");
    let stranger_cfg = client_config(
        &ca,
        Some((&other.join("alice.pem"), &other.join("alice.key"))),
    );
    let stranger =
        TlsConn::open(server.addr(), stranger_cfg, "localhost").and_then(|mut c| c.verdict());
    let err = stranger.expect_err("a certificate from another CA must fail");
    assert!(err.to_string().contains("UnknownCA"), "{err}");
    let s = wait_stats(plain, "refusals counted", |s| s.get(Stat::TlsFailed) == 2);
    assert_eq!(s.get(Stat::TlsHandshake), 1);
    // Alice's connection was not affected.
    assert!(
        alice
            .call(VERSION)
            .expect("alice still served")
            .contains("Version")
    );
}

#[test]
fn identities_can_be_refused_over_plaintext() {
    let dir = pki(&[]);
    let ids = scratch_dir("tls-ids");
    new_identity(&ids, "carol");
    let server = tls_server(
        &dir,
        &[
            "--require-tls-for-identities",
            "--identity-dir",
            ids.to_str().expect("path"),
        ],
    );
    let plain = plaintext_addr(&server);
    let secret: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ids.join("carol.cfg")).expect("carol.cfg"))
            .expect("json");
    let secret = secret["Identity"].as_str().expect("secret").to_owned();
    let lock = format!(
        r#"{{"Action":"Lock","FileName":"f","ID":"c","Expire":"10","Name":"carol","Identity":"{secret}"}}"#
    );
    let mut c = Conn::open(plain);
    c.send_raw(format!("{lock}\n").as_bytes());
    let reply = String::from_utf8(c.recv_line().expect("answer")).expect("utf-8");
    assert!(
        reply.contains("BadPayload") && reply.contains("need TLS"),
        "{reply}"
    );
    // Anonymous requests still work over plaintext; the identity works
    // over TLS.
    assert_eq!(
        c.call(&dlm_core::client::Client::new("x").version()).status,
        dlm_core::protocol::Status::Version
    );
    let mut t = TlsConn::open(
        server.addr(),
        client_config(&dir.join("ca.pem"), None),
        "localhost",
    )
    .expect("tls");
    assert!(t.call(&lock).expect("lock").contains("Locked"));
    assert_eq!(stats(plain).get(Stat::AuthFailed), 1);
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_connections() {
    let dir = pki(&[]);
    let next = pki(&[]);
    let server = tls_server(&dir, &[]);
    let plain = plaintext_addr(&server);
    let old_cfg = client_config(&dir.join("ca.pem"), None);
    let new_cfg = client_config(&next.join("ca.pem"), None);
    let mut open = TlsConn::open(server.addr(), old_cfg.clone(), "localhost").expect("tls");
    // A broken file is refused at reload, keeping the old configuration.
    std::fs::write(dir.join("server.pem"), "not a certificate").expect("break");
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("cannot reload TLS") {
        assert!(
            Instant::now() < deadline,
            "no reload warning:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    TlsConn::open(server.addr(), old_cfg.clone(), "localhost").expect("old certificate kept");
    // Now the new certificate and key.
    std::fs::copy(next.join("server.pem"), dir.join("server.pem")).expect("cert");
    std::fs::copy(next.join("server.key"), dir.join("server.key")).expect("key");
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TlsConn::open(server.addr(), new_cfg.clone(), "localhost").is_err() {
        assert!(
            Instant::now() < deadline,
            "new certificate not served:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(TlsConn::open(server.addr(), old_cfg, "localhost").is_err());
    // The connection opened before both reloads is still served.
    assert!(open.call(VERSION).expect("still open").contains("Version"));
    assert!(stats(plain).get(Stat::TlsHandshake) >= 3);
}
