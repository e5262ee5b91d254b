//! The Rust client over TLS against a real dlm-server: trust, name
//! checking, client certificates standing for identities, and the errors
//! that say why a handshake failed.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use dlm::{Client, Error, Options, Stat, Tls, TlsFailure};
use dlm_tests::{Server, binary, scratch_dir, tls_server};

fn pki(clients: &[&str]) -> PathBuf {
    dlm_tests::dev_pki("client-tls", clients)
}

fn connect(server: &Server, tls: Tls) -> dlm::Result<Client> {
    Client::connect_with(
        server.addr(),
        Options::new()
            .tls(tls)
            .connect_timeout(Duration::from_secs(5))
            .connect_attempts(3),
    )
}

fn unavailable(r: dlm::Result<Client>) -> String {
    match r {
        Err(Error::Unavailable(e)) => e.to_string(),
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("expected a refused handshake"),
    }
}

#[test]
fn works_over_tls_with_the_name_or_address_checked() {
    let dir = pki(&[]);
    let server = tls_server(&dir.join("server.pem"), &dir.join("server.key"), &[]);
    let by_name = connect(
        &server,
        Tls::new()
            .ca_file(dir.join("ca.pem"))
            .server_name("localhost"),
    )
    .unwrap();
    let lock = by_name
        .lock("tls")
        .ttl(Duration::from_secs(5))
        .acquire()
        .unwrap();
    by_name
        .put("k", b"over tls", Duration::from_secs(5))
        .unwrap();
    assert_eq!(by_name.get("k").unwrap().unwrap().data, b"over tls");
    // Without a name, the address connected to (127.0.0.1) is checked.
    let by_address = connect(&server, Tls::new().ca_file(dir.join("ca.pem"))).unwrap();
    assert!(matches!(
        by_address.lock("tls").acquire(),
        Err(Error::NotOwner)
    ));
    lock.unlock().unwrap();
    assert!(by_address.stats().unwrap().get(Stat::TlsHandshake) >= 2);
}

#[test]
fn a_certificate_from_an_unknown_ca_or_for_another_name_is_refused_with_its_reason() {
    let dir = pki(&[]);
    let other = pki(&[]);
    let server = tls_server(&dir.join("server.pem"), &dir.join("server.key"), &[]);
    let why = unavailable(connect(&server, Tls::new().ca_file(other.join("ca.pem"))));
    assert!(why.contains("unknown CA"), "{why}");
    let why = unavailable(connect(
        &server,
        Tls::new()
            .ca_file(dir.join("ca.pem"))
            .server_name("db.example"),
    ));
    assert!(
        why.contains("name mismatch") && why.contains("db.example"),
        "{why}"
    );
    // The reason is typed too, for bindings that raise typed errors.
    let reason = |tls: Tls| connect(&server, tls).err().and_then(|e| e.tls_failure());
    assert_eq!(
        reason(Tls::new().ca_file(other.join("ca.pem"))),
        Some(TlsFailure::UnknownCa)
    );
    assert_eq!(
        reason(
            Tls::new()
                .ca_file(dir.join("ca.pem"))
                .server_name("db.example")
        ),
        Some(TlsFailure::NameMismatch)
    );
}

#[test]
fn an_expired_server_certificate_is_refused_with_its_reason() {
    use rcgen::{CertificateParams, Issuer, KeyPair, date_time_ymd};
    let dir = pki(&[]);
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).unwrap()).unwrap();
    let issuer = Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
        ca_key,
    )
    .unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.not_before = date_time_ymd(2000, 1, 1);
    params.not_after = date_time_ymd(2001, 1, 1);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (cert_path, key_path) = (dir.join("expired.pem"), dir.join("expired.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let server = tls_server(&cert_path, &key_path, &[]);
    let why = unavailable(connect(
        &server,
        Tls::new()
            .ca_file(dir.join("ca.pem"))
            .server_name("localhost"),
    ));
    assert!(why.contains("expired"), "{why}");
}

#[test]
fn a_client_certificate_stands_for_its_identity() {
    let dir = pki(&["alice"]);
    let stranger = pki(&["alice"]);
    let ids = scratch_dir("client-tls-ids");
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
    let alice = Client::connect_with(
        server.addr(),
        Options::new()
            .tls(
                Tls::new()
                    .ca_file(&ca)
                    .client_cert(dir.join("alice.pem"), dir.join("alice.key")),
            )
            .credentials("alice", ""),
    )
    .unwrap();
    // The certificate stood for the secret: the lock is granted and no
    // authentication failed.
    let lock = alice
        .lock("mine")
        .ttl(Duration::from_secs(5))
        .acquire()
        .unwrap();
    assert_eq!(alice.stats().unwrap().get(Stat::AuthFailed), 0);
    lock.unlock().unwrap();
    // Without a certificate the server (which requires one) refuses.
    let no_cert = Client::connect_with(
        server.addr(),
        Options::new()
            .tls(Tls::new().ca_file(&ca))
            .credentials("alice", ""),
    );
    assert!(no_cert.and_then(|c| c.version()).is_err());
    // Someone else's certificate for "alice" (another CA): refused, and
    // the error says so.
    let impostor = Client::connect_with(
        server.addr(),
        Options::new()
            .tls(
                Tls::new()
                    .ca_file(&ca)
                    .client_cert(stranger.join("alice.pem"), stranger.join("alice.key")),
            )
            .credentials("alice", ""),
    );
    // TLS 1.3: the client learns the verdict at its first read.
    let err = match impostor.and_then(|c| c.version()) {
        Err(Error::Unavailable(e)) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(err.contains("refused our client certificate"), "{err}");
}

#[test]
fn mixing_up_the_ports_is_reported_clearly() {
    let dir = pki(&[]);
    let server = tls_server(
        &dir.join("server.pem"),
        &dir.join("server.key"),
        &["--plaintext-port", "0"],
    );
    // A plaintext client on the TLS port: the server says it speaks TLS.
    let plain = Client::connect(server.addr()).unwrap();
    match plain.version() {
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
    let why = unavailable(Client::connect_with(
        plain_addr,
        Options::new().tls(Tls::new().ca_file(dir.join("ca.pem"))),
    ));
    assert!(why.contains("is that port plaintext"), "{why}");
}
