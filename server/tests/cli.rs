//! The `dlm-server` binary's command line. (Also makes `cargo test` build
//! the real binary, which the end-to-end tests in `tests/` start.)

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::process::Command;

fn server() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dlm-server"))
}

#[test]
fn help_lists_the_settings() {
    let out = server().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--max-line",
        "--max-data",
        "--max-ttl-anonymous",
        "--max-connections",
        "--idle-timeout",
        "--memory-budget",
        "--identity-dir",
        "--stats-interval",
        "--log-file",
        "[HOST]",
        "[PORT]",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn bad_settings_exit_2_with_a_message() {
    let out = server().args(["--max-line", "lots"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = server()
        .env("DLM_MAX_TTL", "1000d")
        .arg("127.0.0.1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ceiling"));
}

#[test]
fn identity_new_writes_a_private_file_and_refuses_bad_names() {
    let dir = std::env::temp_dir().join(format!("dlm-cli-ident-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = server()
        .args(["identity", "new", "svc", "--identity-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join("svc.cfg");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        path.display().to_string()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let out = server()
        .args(["identity", "new", "../evil", "--identity-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Regression (issue 10): settings that cannot work are refused at start,
/// with a reason, before the server says it is listening.
#[test]
fn unworkable_settings_are_refused_before_listening() {
    let missing = std::env::temp_dir().join(format!("dlm-cli-missing-{}", std::process::id()));
    let log = missing.join("stats.log");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--max-connections".into(), "0".into()],
            "max connections",
        ),
        (vec!["--memory-budget".into(), "0".into()], "memory budget"),
        (vec!["--idle-timeout".into(), "0".into()], "idle timeout"),
        (
            vec!["--stats-interval".into(), "0".into()],
            "stats interval",
        ),
        (
            vec!["--connection-memory".into(), "1KiB".into()],
            "connection memory",
        ),
        (
            vec!["--max-line".into(), "18446744073709551615".into()],
            "max line",
        ),
        (
            vec!["--log-file".into(), log.display().to_string()],
            "does not exist",
        ),
        (
            vec!["--identity-dir".into(), missing.display().to_string()],
            "does not exist",
        ),
    ];
    for (args, says) in cases {
        let out = server()
            .args(["127.0.0.1", "0"])
            .args(&args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stdout.contains("listening"), "{args:?} said listening");
    }
}
