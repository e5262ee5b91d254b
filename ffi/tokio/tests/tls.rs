//! The async client over TLS against a real dlm-server, with certificates
//! from `dlm-server tls new`: trust, name checking, client certificates
//! standing for identities, and the errors that say why a handshake failed
//! (the blocking client's words, as `ffi/tests/tls.rs` checks them).

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use dlm_tests::{Server, binary, scratch_dir, tls_server};
use dlm_tokio::{Client, Error, Stat, Tls};

fn pki(clients: &[&str]) -> PathBuf {
    dlm_tests::dev_pki("tokio-tls", clients)
}

async fn connect(server: &Server, tls: Tls) -> dlm_tokio::Result<Client> {
    Client::builder()
        .tls(tls)
        .connect_timeout(Duration::from_secs(5))
        .connect_attempts(3)
        .connect(server.addr())
        .await
}

fn unavailable<T: std::fmt::Debug>(r: dlm_tokio::Result<T>) -> String {
    match r {
        Err(Error::Unavailable(e)) => e.to_string(),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn works_over_tls_with_the_name_or_address_checked() {
    let dir = pki(&[]);
    let server = tls_server(&dir.join("server.pem"), &dir.join("server.key"), &[]);
    let by_name = connect(
        &server,
        Tls::new()
            .ca_file(dir.join("ca.pem"))
            .server_name("localhost"),
    )
    .await
    .unwrap();
    // A wait (on a connection of its own) and pipelined calls, over TLS.
    let lock = by_name
        .lock("tls")
        .ttl(Duration::from_secs(5))
        .wait(Duration::from_secs(5))
        .acquire()
        .await
        .unwrap();
    let ttl = Duration::from_secs(5);
    let (a, b) = tokio::join!(
        by_name.put("k", b"over tls", ttl),
        by_name.put("k2", b"too", ttl)
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(by_name.get("k").await.unwrap().unwrap().data, b"over tls");
    // Without a name, the address connected to (127.0.0.1) is checked.
    let by_address = connect(&server, Tls::new().ca_file(dir.join("ca.pem")))
        .await
        .unwrap();
    let r = by_address.lock("tls").acquire().await;
    assert!(matches!(r, Err(Error::NotOwner)), "{r:?}");
    lock.unlock().await.unwrap();
    // The wait's connection was kept, TLS session and all: the next wait
    // takes it (what the server sent after the handshake, its session
    // tickets, does not make it look closed).
    let handshakes = by_address.stats().await.unwrap().get(Stat::TlsHandshake);
    let again = by_name
        .lock("tls")
        .wait(Duration::from_secs(5))
        .acquire()
        .await
        .unwrap();
    again.unlock().await.unwrap();
    let stats = by_address.stats().await.unwrap();
    assert_eq!(stats.get(Stat::TlsHandshake), handshakes, "{stats:?}");
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_or_for_another_name_is_refused_with_its_reason() {
    let dir = pki(&[]);
    let other = pki(&[]);
    let server = tls_server(&dir.join("server.pem"), &dir.join("server.key"), &[]);
    let why = unavailable(connect(&server, Tls::new().ca_file(other.join("ca.pem"))).await);
    assert!(why.contains("unknown CA"), "{why}");
    let why = unavailable(
        connect(
            &server,
            Tls::new()
                .ca_file(dir.join("ca.pem"))
                .server_name("db.example"),
        )
        .await,
    );
    assert!(
        why.contains("name mismatch") && why.contains("db.example"),
        "{why}"
    );
    // Refused once, not tried again: one handshake per refusal reached
    // the server, though three connection attempts were allowed.
    let trusted = connect(
        &server,
        Tls::new()
            .ca_file(dir.join("ca.pem"))
            .server_name("localhost"),
    )
    .await
    .unwrap();
    let stats = trusted.stats().await.unwrap();
    assert_eq!(stats.get(Stat::TlsFailed), 2, "{stats:?}");
    // A CA file that is not there: said before any connection.
    let r = connect(&server, Tls::new().ca_file(dir.join("missing.pem"))).await;
    match r {
        Err(Error::System(e)) => assert!(e.to_string().contains("missing.pem"), "{e}"),
        other => panic!("expected a System error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_client_certificate_stands_for_its_identity() {
    let dir = pki(&["alice"]);
    let stranger = pki(&["alice"]);
    let ids = scratch_dir("tokio-tls-ids");
    let made = Command::new(binary("dlm-server", "dlm-server"))
        .args(["identity", "new", "alice", "--identity-dir"])
        .arg(&ids)
        .status()
        .unwrap();
    assert!(made.success());
    let ca = dir.join("ca.pem");
    let server = tls_server(
        &dir.join("server.pem"),
        &dir.join("server.key"),
        &[
            "--tls-client-ca",
            ca.to_str().unwrap(),
            "--identity-dir",
            ids.to_str().unwrap(),
        ],
    );
    let as_alice = |tls: Tls| {
        Client::builder()
            .tls(tls)
            .credentials("alice", "")
            .connect(server.addr())
    };
    let alice = as_alice(
        Tls::new()
            .ca_file(&ca)
            .client_cert(dir.join("alice.pem"), dir.join("alice.key")),
    )
    .await
    .unwrap();
    // The certificate stood for the secret: the lock is granted and no
    // authentication failed.
    let lock = alice
        .lock("mine")
        .ttl(Duration::from_secs(5))
        .acquire()
        .await
        .unwrap();
    assert_eq!(alice.stats().await.unwrap().get(Stat::AuthFailed), 0);
    lock.unlock().await.unwrap();
    // Without a certificate the server (which requires one) refuses.
    let no_cert = match as_alice(Tls::new().ca_file(&ca)).await {
        Ok(c) => c.version().await,
        Err(e) => Err(e),
    };
    assert!(no_cert.is_err(), "{no_cert:?}");
    // Someone else's certificate for "alice" (another CA): refused, and
    // the error says so (TLS 1.3: at the client's first read).
    let impostor = match as_alice(
        Tls::new()
            .ca_file(&ca)
            .client_cert(stranger.join("alice.pem"), stranger.join("alice.key")),
    )
    .await
    {
        Ok(c) => c.version().await,
        Err(e) => Err(e),
    };
    let why = unavailable(impostor);
    assert!(why.contains("refused our client certificate"), "{why}");
}

#[tokio::test]
async fn mixing_up_the_ports_is_reported_clearly() {
    let dir = pki(&[]);
    let server = tls_server(
        &dir.join("server.pem"),
        &dir.join("server.key"),
        &["--plaintext-port", "0"],
    );
    // A plaintext client on the TLS port: the server says it speaks TLS.
    let plain = Client::connect(server.addr()).await.unwrap();
    match plain.version().await {
        Err(Error::BadRequest(why)) => assert!(why.contains("speaks TLS"), "{why}"),
        other => panic!("expected the server's refusal, got {other:?}"),
    }
    // A TLS client on the plaintext port.
    let log = server.log();
    let at = log.find("plaintext listener on ").unwrap();
    let plain_addr: std::net::SocketAddr = log[at + "plaintext listener on ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let why = unavailable(
        Client::builder()
            .tls(Tls::new().ca_file(dir.join("ca.pem")))
            .connect(plain_addr)
            .await,
    );
    assert!(why.contains("is that port plaintext"), "{why}");
}
