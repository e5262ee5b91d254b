//! `dlm` over TLS against a real TLS server: the --tls-* options, and the
//! exit status and message of a refused handshake.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dlm_tests::Server;

fn pki(clients: &[&str]) -> PathBuf {
    dlm_tests::dev_pki("cli-tls", clients)
}

fn tls_server(dir: &Path, extra: &[&str]) -> Server {
    dlm_tests::tls_server(&dir.join("server.pem"), &dir.join("server.key"), extra)
}

/// `dlm` against `server` by the name localhost.
fn dlm(server: &Server) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dlm"));
    c.env("DLM_SERVER", format!("localhost:{}", server.addr().port()));
    c.env_remove("DLM_ID");
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn data_commands_over_tls() {
    let dir = pki(&[]);
    let server = tls_server(&dir, &[]);
    let ca = dir.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let o = run(dlm(&server).args(["--tls-ca", ca, "--id", "me", "put", "k", "secret value"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(dlm(&server).args(["--tls-ca", ca, "--id", "me", "get", "k"]));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "secret value");
    let o = run(dlm(&server).env("DLM_TLS_CA", ca).args(["stats"]));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.lines().any(|l| l == "TlsHandshake: 3"), "{out}");
}

#[test]
fn refused_handshakes_exit_69_saying_why() {
    let dir = pki(&[]);
    let other = pki(&[]);
    let server = tls_server(&dir, &[]);
    let o = run(dlm(&server).args([
        "--tls-ca",
        other.join("ca.pem").to_str().unwrap(),
        "version",
    ]));
    assert_eq!(o.status.code(), Some(69));
    assert!(stderr(&o).contains("unknown CA"), "{}", stderr(&o));
    let o = run(dlm(&server).args([
        "--tls-ca",
        dir.join("ca.pem").to_str().unwrap(),
        "--tls-server-name",
        "db.example",
        "version",
    ]));
    assert_eq!(o.status.code(), Some(69));
    assert!(stderr(&o).contains("name mismatch"), "{}", stderr(&o));
}

#[test]
fn a_client_certificate_is_presented_when_given() {
    let dir = pki(&["app"]);
    let ca = dir.join("ca.pem");
    let server = tls_server(&dir, &["--tls-client-ca", ca.to_str().unwrap()]);
    let ca = ca.to_str().unwrap();
    let o = run(dlm(&server).args([
        "--tls-ca",
        ca,
        "--tls-cert",
        dir.join("app.pem").to_str().unwrap(),
        "--tls-key",
        dir.join("app.key").to_str().unwrap(),
        "version",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(dlm(&server).args(["--tls-ca", ca, "version"]));
    assert_eq!(o.status.code(), Some(69));
    assert!(
        stderr(&o).contains("refused our client certificate"),
        "{}",
        stderr(&o)
    );
}
