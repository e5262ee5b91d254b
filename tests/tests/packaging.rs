//! Keeping the server running: the systemd unit passes
//! `systemd-analyze verify`, the packaged configuration starts a server,
//! and readiness (`Type=notify`) is sent only once the server serves; in
//! a cluster, only once a leader is known.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dlm_core::client::Client;
use dlm_core::protocol::Status;
use dlm_core::time::Ttl;
use dlm_tests::{Server, binary, scratch_dir};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_unit_verifies_and_asks_for_what_it_must() {
    let unit = std::fs::read_to_string(repo().join("packaging/dlm-server.service")).unwrap();
    for line in [
        "Type=notify",
        "Restart=on-failure",
        "User=dlm",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    let Ok(which) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED: systemd-analyze not installed (Debian's systemd package has it)");
        return;
    };
    assert!(which.status.success());
    // Verified with the binary this build made in place of /usr/bin's.
    let dir = scratch_dir("unit");
    let server = binary("dlm-server", "dlm-server");
    let local = unit.replace("/usr/bin/dlm-server", server.to_str().unwrap());
    let path = dir.join("dlm-server.service");
    std::fs::write(&path, local).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Warnings about the unit itself name its file; others (the host's
    // own units) are not ours.
    let ours: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("dlm-server.service"))
        .collect();
    assert!(out.status.success() && ours.is_empty(), "{said}");
    // The check can fail: a broken unit is reported.
    let broken = dir.join("broken.service");
    std::fs::write(&broken, unit.replace("Type=notify", "Type=notfy")).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&broken)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("notfy"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A notify socket like systemd's, and the environment that names it.
fn notify_socket(dir: &Path) -> (UnixDatagram, PathBuf) {
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    (sock, path)
}

fn messages(sock: &UnixDatagram, wait: Option<Duration>) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    match wait {
        Some(w) => {
            sock.set_nonblocking(false).unwrap();
            sock.set_read_timeout(Some(w)).unwrap();
            if let Ok(n) = sock.recv(&mut buf) {
                out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        None => {
            sock.set_nonblocking(true).unwrap();
            while let Ok(n) = sock.recv(&mut buf) {
                out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    }
    out
}

#[test]
fn the_packaged_configuration_serves_and_tells_systemd_when_ready() {
    let dir = scratch_dir("packaged");
    std::fs::create_dir_all(dir.join("identities")).unwrap();
    let config = std::fs::read_to_string(repo().join("packaging/dlm-server.toml"))
        .unwrap()
        .replace("port = 37373", "port = 0")
        .replace("\"127.0.0.1:9373\"", "\"127.0.0.1:0\"")
        .replace(
            "/etc/dlm/identities",
            dir.join("identities").to_str().unwrap(),
        )
        .replace(
            "/var/log/dlm/stats.log",
            dir.join("stats.log").to_str().unwrap(),
        );
    let path = dir.join("dlm-server.toml");
    std::fs::write(&path, config).unwrap();
    let (sock, sock_path) = notify_socket(&dir);
    let server = Server::with_command(
        |c| {
            c.env("NOTIFY_SOCKET", &sock_path);
        },
        &["--config", path.to_str().unwrap()],
    );
    let got = messages(&sock, Some(Duration::from_secs(20)));
    assert!(
        got.first()
            .is_some_and(|m| m.lines().any(|l| l == "READY=1")),
        "no READY=1: {got:?}"
    );
    // Ready means serving.
    let mut c = server.connect();
    let w = Client::new("unit");
    assert_eq!(
        c.call(&w.lock("after-ready", Ttl::from_secs(5))).status,
        Status::Locked
    );
    assert_eq!(
        dlm_tests::http_get(server.http_addr(), "/readyz", "").status,
        200
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_cluster_member_is_ready_only_once_a_leader_is_known() {
    let dir = scratch_dir("notify-cluster");
    let ports: Vec<u16> = (0..3).map(|_| dlm_tests::cluster::free_port()).collect();
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let (sock, sock_path) = notify_socket(&dir);
    let first = Server::with_command(
        |c| {
            c.env("NOTIFY_SOCKET", &sock_path);
        },
        &["--node", "1", "--peers", &peers],
    );
    // Alone, it cannot elect a leader: it says so, and is not ready.
    let mut c = first.connect();
    c.send_raw(b"{\"Action\":\"Cluster\"}\n");
    let status = String::from_utf8(c.recv_line().unwrap()).unwrap();
    assert!(status.contains("no leader"), "{status}");
    assert!(messages(&sock, None).is_empty(), "ready without a leader");
    // With a quorum, a leader is elected: now it is ready.
    let _second = Server::with_args(&["--node", "2", "--peers", &peers]);
    let _third = Server::with_args(&["--node", "3", "--peers", &peers]);
    let got = messages(&sock, Some(Duration::from_secs(30)));
    assert!(
        got.first().is_some_and(|m| m.contains("READY=1")),
        "no READY=1 once a leader exists: {got:?}"
    );
    let mut c = first.connect();
    c.send_raw(b"{\"Action\":\"Cluster\"}\n");
    let status = String::from_utf8(c.recv_line().unwrap()).unwrap();
    assert!(status.contains("\"Status\":\"Done\""), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_debian_package_holds_everything_and_its_binaries_serve() {
    if Command::new("dpkg-deb").arg("--version").output().is_err() {
        eprintln!("SKIPPED: dpkg-deb not installed (scripts/setup.sh installs dpkg)");
        return;
    }
    let dir = scratch_dir("deb");
    let out = Command::new(repo().join("scripts/make-deb.sh"))
        .arg(dir.join("out"))
        .env("DLM_PROFILE", "dev")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make-deb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    let run = |args: &[&str]| {
        let o = Command::new("dpkg-deb")
            .args(args)
            .arg(&deb)
            .output()
            .unwrap();
        assert!(o.status.success(), "dpkg-deb {args:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let contents = run(&["--contents"]);
    for path in [
        "./usr/bin/dlm-server",
        "./usr/bin/dlm",
        "./lib/systemd/system/dlm-server.service",
        "./etc/dlm/dlm-server.toml",
        "./usr/lib/dlm/lib/libdlm.so.0.1.0",
        "./usr/lib/dlm/lib/libdlm.a",
        "./usr/lib/dlm/include/dlm.h",
        "./usr/lib/dlm/include/dlm.hpp",
        "./usr/lib/dlm/lib/pkgconfig/dlm.pc",
        "pkgconfig/dlm.pc -> /usr/lib/dlm/lib/pkgconfig/dlm.pc",
    ] {
        assert!(
            contents.contains(path),
            "the package lacks {path}:\n{contents}"
        );
    }
    let conffiles = run(&["--info"]);
    assert!(conffiles.contains("Package: dlm"), "{conffiles}");
    let ctrl = dir.join("ctrl");
    let o = Command::new("dpkg-deb")
        .arg("--control")
        .arg(&deb)
        .arg(&ctrl)
        .status()
        .unwrap();
    assert!(o.success());
    assert_eq!(
        std::fs::read_to_string(ctrl.join("conffiles")).unwrap(),
        "/etc/dlm/dlm-server.toml\n"
    );
    let postinst = std::fs::read_to_string(ctrl.join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system") && postinst.contains("/etc/dlm/identities"));
    let sh = Command::new("sh")
        .arg("-n")
        .arg(ctrl.join("postinst"))
        .status()
        .unwrap();
    assert!(sh.success(), "postinst is not valid sh");

    // Unpacked (not installed: that needs a machine of its own), the
    // package's own binaries and configuration serve.
    let root = dir.join("root");
    let o = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()
        .unwrap();
    assert!(o.success());
    let pc = std::fs::read_to_string(root.join("usr/lib/dlm/lib/pkgconfig/dlm.pc")).unwrap();
    assert!(pc.starts_with("prefix=/usr/lib/dlm\n"), "{pc}");
    std::fs::create_dir_all(dir.join("identities")).unwrap();
    let config = std::fs::read_to_string(root.join("etc/dlm/dlm-server.toml"))
        .unwrap()
        .replace("port = 37373", "port = 0")
        .replace("\"127.0.0.1:9373\"", "\"127.0.0.1:0\"")
        .replace(
            "/etc/dlm/identities",
            dir.join("identities").to_str().unwrap(),
        )
        .replace(
            "/var/log/dlm/stats.log",
            dir.join("stats.log").to_str().unwrap(),
        );
    std::fs::write(dir.join("dlm-server.toml"), config).unwrap();
    let mut child = Command::new(root.join("usr/bin/dlm-server"))
        .arg("--config")
        .arg(dir.join("dlm-server.toml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().to_owned();
    let o = Command::new(root.join("usr/bin/dlm"))
        .env("DLM_SERVER", &addr)
        .args([
            "lock",
            "packaged",
            "-w",
            "5",
            "--",
            "sh",
            "-c",
            "test -n \"$DLM_LOCK_TOKEN\"",
        ])
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(o.status.success(), "the packaged dlm could not lock: {o:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
