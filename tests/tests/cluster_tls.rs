//! A cluster with TLS: clients over TLS through any member (a follower
//! ends their TLS and relays to the leader), mutual TLS between members,
//! and members that cannot prove they belong refused.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use dlm_tests::cluster::{Cluster, field};
use dlm_tests::{Conn, Server, binary, eventually, http_get, metric, scratch_dir};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};

const LONG: Duration = Duration::from_secs(20);
const STATUS: &str = r#"{"Action":"Cluster"}"#;

/// `dlm-server tls new` with client and member certificates.
fn pki(what: &str, clients: &[&str], members: &[u64]) -> PathBuf {
    let dir = scratch_dir(what).join("pki");
    let mut cmd = Command::new(binary("dlm-server", "dlm-server"));
    cmd.args(["tls", "new"]).arg(&dir);
    for c in clients {
        cmd.args(["--client", c]);
    }
    for m in members {
        cmd.args(["--member", &m.to_string()]);
    }
    let out = cmd.output().expect("run dlm-server tls new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn path(p: &Path) -> String {
    p.to_str().expect("a UTF-8 path").to_owned()
}

/// The peer TLS arguments of a member, from `dir` (`{id}`: its own).
fn peer_args(dir: &Path) -> Vec<String> {
    vec![
        "--peer-tls-cert".into(),
        path(&dir.join("member-{id}.pem")),
        "--peer-tls-key".into(),
        path(&dir.join("member-{id}.key")),
        "--peer-tls-ca".into(),
        path(&dir.join("members-ca.pem")),
    ]
}

fn client_config(ca: &Path, cert: &Path, key: &Path) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("ca file") {
        roots.add(c.expect("ca cert")).expect("add ca");
    }
    let certs = CertificateDer::pem_file_iter(cert)
        .expect("client cert")
        .collect::<Result<Vec<_>, _>>()
        .expect("client cert");
    let key = PrivateKeyDer::from_pem_file(key).expect("client key");
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .expect("client auth");
    Arc::new(config)
}

/// A line client over TLS (checking the server's name: 127.0.0.1).
struct TlsConn {
    stream: BufReader<StreamOwned<ClientConnection, TcpStream>>,
}

impl TlsConn {
    fn open(addr: SocketAddr, config: &Arc<ClientConfig>) -> std::io::Result<Self> {
        let mut tcp = TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(LONG))?;
        let name = ServerName::IpAddress(addr.ip().into());
        let mut conn = ClientConnection::new(config.clone(), name).expect("client connection");
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        Ok(Self {
            stream: BufReader::new(StreamOwned::new(conn, tcp)),
        })
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

/// The `Cluster` answer through member `id` over TLS, retried while a
/// leader change closes relayed connections.
fn status(c: &Cluster, id: u64, config: &Arc<ClientConfig>) -> String {
    let mut answer = None;
    eventually(LONG, &format!("member {id} never answered"), || {
        answer = TlsConn::open(c.member(id).addr(), config)
            .and_then(|mut t| t.call(STATUS))
            .ok();
        answer.is_some()
    });
    answer.unwrap_or_default()
}

/// The leader every running member (of `ids`) agrees on, over TLS.
fn leader(c: &Cluster, ids: &[u64], config: &Arc<ClientConfig>) -> u64 {
    let mut agreed = 0;
    eventually(LONG, "a leader agreed on over TLS", || {
        let seen: Vec<u64> = ids
            .iter()
            .map(|id| field(&status(c, *id, config), "\"Leader\":"))
            .collect();
        agreed = seen[0];
        agreed != 0 && seen.iter().all(|s| *s == agreed) && ids.contains(&agreed)
    });
    agreed
}

/// A counter from member `s`'s `/metrics` (0 if absent).
fn counter(s: &Server, name: &str) -> f64 {
    metric(&http_get(s.http_addr(), "/metrics", "").body, name).unwrap_or(0.0)
}

fn plaintext_addr(s: &Server) -> SocketAddr {
    let mut found = None;
    eventually(LONG, "the plaintext port logged", || {
        let log = s.log();
        found = log
            .split("plaintext listener on ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .and_then(|a| a.parse().ok());
        found.is_some()
    });
    found.unwrap()
}

fn new_identity(dir: &Path, name: &str) -> String {
    let out = Command::new(binary("dlm-server", "dlm-server"))
        .args(["identity", "new", name, "--identity-dir"])
        .arg(dir)
        .output()
        .expect("identity new");
    assert!(out.status.success());
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.cfg"))).unwrap())
            .unwrap();
    cfg["Identity"].as_str().unwrap().to_owned()
}

fn lock(item: &str, id: &str, name: &str, secret: &str) -> String {
    format!(
        r#"{{"Action":"Lock","FileName":"{item}","ID":"{id}","Expire":"60","Name":"{name}","Identity":"{secret}"}}"#
    )
}

#[test]
fn a_tls_cluster_serves_tls_clients_through_any_member_and_fails_over() {
    let dir = pki("cluster-tls", &["alice", "bob"], &[1, 2, 3]);
    let ids = scratch_dir("cluster-tls-ids");
    let alice_secret = new_identity(&ids, "alice");
    new_identity(&ids, "bob");
    let mut args = vec![
        "--tls-cert".to_owned(),
        path(&dir.join("server.pem")),
        "--tls-key".into(),
        path(&dir.join("server.key")),
        "--tls-client-ca".into(),
        path(&dir.join("ca.pem")),
        "--identity-dir".into(),
        path(&ids),
        "--plaintext-port".into(),
        "0".into(),
        "--require-tls-for-identities".into(),
        "--http".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend(peer_args(&dir));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut c = Cluster::start(3, &args);
    let ca = dir.join("ca.pem");
    let alice = client_config(&ca, &dir.join("alice.pem"), &dir.join("alice.key"));
    let bob = client_config(&ca, &dir.join("bob.pem"), &dir.join("bob.key"));
    let first = leader(&c, &[1, 2, 3], &alice);
    let followers = c.followers(first);
    let f = followers[0];

    // Through a follower: alice's certificate stands for alice there as
    // on the leader (no secret), and the lock is the leader's.
    let mut via = TlsConn::open(c.member(f).addr(), &alice).unwrap();
    let r = via.call(&lock("a", "alice-app", "alice", "")).unwrap();
    assert!(r.contains("\"Locked\""), "{r}");
    let mut on_leader = TlsConn::open(c.member(first).addr(), &alice).unwrap();
    let r = on_leader
        .call(
            r#"{"Action":"TestLock","FileName":"a","ID":"alice-app","Name":"alice","Identity":""}"#,
        )
        .unwrap();
    assert!(r.contains("\"Locked\""), "{r}");
    // Bob's certificate does not stand for alice, through a follower
    // either; alice's secret still works for bob's connection.
    let mut bob_via = TlsConn::open(c.member(followers[1]).addr(), &bob).unwrap();
    let r = bob_via.call(&lock("b", "bob-app", "alice", "")).unwrap();
    assert!(r.contains("BadPayload"), "{r}");
    let r = bob_via
        .call(&lock("b", "bob-app", "alice", &alice_secret))
        .unwrap();
    assert!(r.contains("\"Locked\""), "{r}");

    // A follower's plaintext port refuses identities in clear (the leader
    // was told), and serves anonymous requests.
    let mut plain = Conn::open(plaintext_addr(c.member(f)));
    plain.send_raw(format!("{}\n", lock("p", "p", "alice", &alice_secret)).as_bytes());
    let r = String::from_utf8(plain.recv_line().unwrap()).unwrap();
    assert!(r.contains("need TLS"), "{r}");
    plain.send_raw(b"{\"Action\":\"Version\"}\n");
    let r = String::from_utf8(plain.recv_line().unwrap()).unwrap();
    assert!(r.contains("Version"), "{r}");

    // Plaintext to the TLS port of the leader and of a follower: told,
    // closed and counted by the member it reached.
    for id in [first, f] {
        let before = counter(c.member(id), "dlm_tls_failed_total");
        let mut p = c.member(id).connect();
        p.send_raw(b"{\"Action\":\"Version\"}\n");
        let r = String::from_utf8(p.recv_line().expect("a refusal")).unwrap();
        assert!(r.contains("speaks TLS"), "member {id}: {r}");
        assert!(p.closed_within(LONG));
        eventually(LONG, "the refusal counted", || {
            counter(c.member(id), "dlm_tls_failed_total") > before
        });
    }
    // Nothing else was affected.
    assert!(via.call(STATUS).unwrap().contains("\"Leader\""));

    // A client of the whole cluster over TLS (the `dlm` crate) rides
    // through the leader's death.
    let tls = dlm::Tls::new()
        .ca_file(&ca)
        .client_cert(dir.join("alice.pem"), dir.join("alice.key"));
    let all = c
        .members
        .values()
        .map(|m| m.addr().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let client = dlm::Client::connect_with(all.as_str(), dlm::Options::new().tls(tls)).unwrap();
    client.put("k", b"before", Duration::from_secs(60)).unwrap();
    drop((via, on_leader, bob_via));
    c.kill(first);
    let rest = c.followers(first);
    let next = leader(&c, &rest, &alice);
    assert_ne!(next, first);
    let mut got = None;
    eventually(LONG, "the client reads through the new leader", || {
        got = client.get("k").ok().flatten();
        got.is_some()
    });
    assert_eq!(got.unwrap().data, b"before");
    client.put("k", b"after", Duration::from_secs(60)).unwrap();
    // Alice's lock moved with the cluster, to the new leader.
    let mut t = TlsConn::open(c.member(next).addr(), &alice).unwrap();
    let r = t
        .call(
            r#"{"Action":"TestLock","FileName":"a","ID":"alice-app","Name":"alice","Identity":""}"#,
        )
        .unwrap();
    assert!(r.contains("\"Locked\""), "{r}");
}

#[test]
fn members_without_the_clusters_certificates_are_refused() {
    let dir = pki("cluster-peer-tls", &["alice"], &[1, 2, 3]);
    let other = pki("cluster-peer-tls-other", &[], &[3]);
    let mut args = vec!["--http".to_owned(), "127.0.0.1:0".into()];
    args.extend(peer_args(&dir));
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut c = Cluster::prepare(3, &args_ref);
    c.boot(1, false);
    c.boot(2, false);

    // Member 3 with a certificate from another CA (trusting only that
    // CA): neither side accepts the other.
    let mut foreign = vec!["--http".to_owned(), "127.0.0.1:0".into()];
    foreign.extend(peer_args(&other));
    c.extra = foreign;
    c.boot(3, false);
    let mut l = 0;
    eventually(LONG, "members 1 and 2 agree on a leader", || {
        let seen = [1, 2].map(|id| field(&c.status(id), "\"Leader\":"));
        l = seen[0];
        l != 0 && seen[1] == l
    });
    for id in [1, 2] {
        eventually(LONG, "member 3's certificate refused", || {
            c.member(id).log().contains("UnknownIssuer")
                || c.member(id).log().contains("unknown issuer")
        });
    }
    eventually(LONG, "the refusals counted by the leader", || {
        counter(c.member(l), "dlm_cluster_peer_refused_total") >= 2.0
    });
    eventually(LONG, "member 3 refused the others", || {
        c.member(3).log().contains("peer connection refused")
    });
    // The two serve; member 3 never received an entry.
    let r = c.member(l).connect().call(
        &dlm_core::client::Client::new("x").lock("after", dlm_core::time::Ttl::from_secs(60)),
    );
    assert_eq!(r.status, dlm_core::protocol::Status::Locked);
    assert!(
        counter(c.member(3), "dlm_cluster_leader") < 1.0,
        "member 3 knows no leader"
    );
    assert!(!c.member(3).log().contains("cluster ID known"));
    c.kill(3);

    // Member 3 without peer TLS: refused, and says why.
    c.extra = vec!["--http".to_owned(), "127.0.0.1:0".into()];
    c.boot(3, false);
    eventually(LONG, "a plaintext member refused", || {
        c.member(l)
            .log()
            .contains("not TLS: this member's peer connections are mutual TLS")
    });
    eventually(LONG, "the plaintext member refused a TLS hello", || {
        c.member(3)
            .log()
            .contains("a TLS hello: the other member uses peer TLS")
    });
    assert!(
        counter(c.member(3), "dlm_cluster_leader") < 1.0,
        "member 3 knows no leader"
    );
    assert!(!c.member(3).log().contains("cluster ID known"));
    c.kill(3);

    // Member 3 with another member's certificate (from the cluster's
    // CA): refused both ways, its dialers checking the name in it.
    c.extra = vec![
        "--peer-tls-cert".to_owned(),
        path(&dir.join("member-2.pem")),
        "--peer-tls-key".into(),
        path(&dir.join("member-2.key")),
        "--peer-tls-ca".into(),
        path(&dir.join("members-ca.pem")),
    ];
    c.boot(3, false);
    eventually(LONG, "an impostor refused", || {
        c.member(l)
            .log()
            .contains("but its certificate is member 2's")
    });
    assert!(!c.member(3).log().contains("cluster ID known"));
    c.kill(3);

    // With the cluster's own certificate it joins and catches up.
    c.extra = args;
    c.boot(3, false);
    eventually(LONG, "member 3 caught up", || {
        c.member(3).log().contains("cluster ID known")
            && counter(c.member(3), "dlm_cluster_leader") > 0.0
    });
    let r = c
        .member(3)
        .connect()
        .call(&dlm_core::client::Client::new("x").test_lock("after"));
    assert_eq!(r.status, dlm_core::protocol::Status::Locked);
    // SIGHUP re-reads the peer files; the links stay up.
    c.member(l).signal(libc::SIGHUP);
    eventually(LONG, "the peer files reloaded", || {
        c.member(l)
            .log()
            .contains("peer TLS certificate, key and CA reloaded")
    });
    let r = c
        .member(3)
        .connect()
        .call(&dlm_core::client::Client::new("x").test_lock("after"));
    assert_eq!(r.status, dlm_core::protocol::Status::Locked);
}

#[test]
fn tls_requests_sent_before_any_leader_are_answered_and_stalled_handshakes_closed() {
    const N: usize = 300;
    let dir = pki("cluster-tls-early", &["alice"], &[1, 2, 3]);
    let ids = scratch_dir("cluster-tls-early-ids");
    new_identity(&ids, "alice");
    let mut args = vec![
        "--tls-cert".to_owned(),
        path(&dir.join("server.pem")),
        "--tls-key".into(),
        path(&dir.join("server.key")),
        "--tls-client-ca".into(),
        path(&dir.join("ca.pem")),
        "--identity-dir".into(),
        path(&ids),
        "--idle-timeout".into(),
        "1s".into(),
        "--http".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend(peer_args(&dir));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut c = Cluster::prepare(3, &args);
    c.boot(1, false);
    let alice = client_config(
        &dir.join("ca.pem"),
        &dir.join("alice.pem"),
        &dir.join("alice.key"),
    );
    // A handshake that never finishes, on a member without a leader: it
    // runs into the idle timeout, counted.
    let before = counter(c.member(1), "dlm_tls_failed_total");
    let mut stalled = c.member(1).connect();
    stalled.send_raw(&[0x16, 0x03, 0x01]);
    assert!(stalled.closed_within(LONG), "a stalled handshake is closed");
    eventually(LONG, "the stalled handshake counted", || {
        counter(c.member(1), "dlm_tls_failed_total") > before
    });
    // Member 1 knows no leader: it ends the TLS itself and holds the
    // requests (as alice, by her certificate) until one is elected (the
    // others start at once: a relay waits 2 s for a leader).
    let mut early = TlsConn::open(c.member(1).addr(), &alice).unwrap();
    let s = early.stream.get_mut();
    for i in 0..N {
        let line = format!(
            r#"{{"Action":"Put","FileName":"k{i}","ID":"early","Expire":"60","DataStore":"v","Name":"alice","Identity":""}}"#
        );
        s.write_all(line.as_bytes()).unwrap();
        s.write_all(b"\n").unwrap();
    }
    s.flush().unwrap();
    // A peer connection that never finishes its handshake (so never says
    // hello) is refused after the idle timeout, said and counted.
    let mut silent = Conn::open(SocketAddr::from(([127, 0, 0, 1], c.peers[&1])));
    silent.send_raw(&[0x16, 0x03, 0x01]);
    c.boot(2, false);
    c.boot(3, false);
    assert!(silent.closed_within(LONG), "a silent peer is closed");
    eventually(LONG, "the silent peer refused and said so", || {
        c.member(1)
            .log()
            .contains("no hello (or TLS handshake) within")
    });
    for i in 0..N {
        let mut answer = String::new();
        early.stream.read_line(&mut answer).unwrap();
        assert!(answer.contains("\"Done\""), "answer {i}: {answer}");
    }
    let l = leader(&c, &[1, 2, 3], &alice);
    eprintln!("member {l} leads (1: it adopted the connection, else relayed it)");
    let r = TlsConn::open(c.member(l).addr(), &alice)
        .unwrap()
        .call(r#"{"Action":"Get","FileName":"k299","ID":"early","Name":"alice","Identity":""}"#)
        .unwrap();
    assert!(r.contains("\"Done\""), "{r}");
}
