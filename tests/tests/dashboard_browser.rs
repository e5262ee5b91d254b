//! The dashboard in a real headless browser (Debian's chromium, installed
//! by scripts/setup.sh): it loads from the server alone, draws its charts
//! from live samples, shows the locks the test took (an exclusive lock, a
//! semaphore's holders, a read/write lock's reader and its waiter) to an
//! administrator, and shows no lock to anyone else.
//!
//! Skipped, saying so, only if no chromium is installed.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use dlm_core::client::Client;
use dlm_core::protocol::{Shape, Status};
use dlm_core::stats::Stat;
use dlm_core::time::Ttl;
use dlm_tests::{Server, http_get, new_identity, scratch_dir};

const TTL: Ttl = Ttl::from_secs(120);

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DLM_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// The page's DOM after its scripts ran (5 s of the page's time).
fn dump_dom(browser: &PathBuf, profile: &std::path::Path, url: &str) -> String {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number in attribute `attr` of the element with `id`.
fn attr_of(dom: &str, id: &str, attr: &str) -> Option<f64> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let tag_end = at + dom[at..].find('>')?;
    let tag_start = dom[..at].rfind('<')?;
    let tag = &dom[tag_start..tag_end];
    let v = tag.split(&format!("{attr}=\"")).nth(1)?.split('"').next()?;
    v.parse().ok()
}

#[test]
fn the_dashboard_draws_live_data_and_shows_locks_to_administrators_only() {
    let Some(browser) = chromium() else {
        eprintln!("SKIPPED: no chromium found (scripts/setup.sh installs Debian's chromium)");
        return;
    };
    let dir = scratch_dir("dash-ids");
    let root = new_identity(&dir, "root", true);
    let alice = new_identity(&dir, "alice", false);
    let server = Server::with_args(&[
        "--http",
        "127.0.0.1:0",
        "--identity-dir",
        dir.to_str().unwrap(),
    ]);
    let http = server.http_addr();
    let mut c = server.connect();
    let holder = Client::new("holder-dash");
    let held = c.call(&holder.lock("dash/test-lock", TTL));
    assert_eq!(held.status, Status::Locked);
    // Past 2^53: the page must show it exactly, not as a rounded number.
    let token = held.token.unwrap();
    assert!(token > 1 << 53);
    assert_eq!(
        c.call(&holder.lock("elsewhere", TTL)).status,
        Status::Locked
    );
    // A semaphore of 3 permits held twice, and a read/write lock held by
    // a reader with a writer queued behind it.
    let sem = Shape::Semaphore { permits: 3 };
    for who in ["sem-one", "sem-two"] {
        let r = c.call(&Client::new(who).acquire("dash/pool", sem, TTL, None));
        assert_eq!(r.status, Status::Locked);
    }
    let read = c.call(&Client::new("reader-dash").acquire("dash/table", Shape::Read, TTL, None));
    assert_eq!(read.status, Status::Locked);
    let mut queued = server.connect();
    queued.send(&Client::new("writer-dash").acquire("dash/table", Shape::Write, TTL, Some(TTL)));
    server.wait_for(Duration::from_secs(10), "the writer queued", |s| {
        dlm_tests::stat(s, Stat::AWait) == 1
    });
    // Live data: wait until the server's history has a few samples that
    // include the two locks.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h: serde_json::Value =
            serde_json::from_str(&http_get(http, "/api/history", "").body).unwrap();
        let samples = h.as_array().unwrap();
        if samples.len() >= 3 && samples.last().unwrap()["Stats"]["ALock"] == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no history: {h}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let profile = scratch_dir("chromium-profile");
    let base = format!("http://{http}/");

    let dom = dump_dom(
        &browser,
        &profile,
        &format!("{base}#name=root&secret={root}&prefix=dash/"),
    );
    assert!(
        dom.contains("class=\"pill ok\">serving<"),
        "not serving:\n{dom}"
    );
    for chart in [
        "chart-requests",
        "chart-grants",
        "chart-connections",
        "chart-memory",
    ] {
        let points = attr_of(&dom, chart, "data-points").unwrap_or(0.0);
        assert!(points >= 2.0, "{chart} drew {points} points:\n{dom}");
    }
    assert!(
        dom.contains("live locks 2</span>"),
        "the grants chart does not show the 2 live locks:\n{dom}"
    );
    assert!(
        dom.contains("<td>dash/test-lock</td><td>holder-dash</td>"),
        "{dom}"
    );
    assert!(
        dom.contains(&format!("<td>{token}</td>")),
        "token {token} not shown exactly"
    );
    assert!(
        !dom.contains("<td>elsewhere</td>"),
        "the filter let through another lock"
    );
    assert!(dom.contains("<td>lock</td></tr>"), "no kind column:\n{dom}");
    // Each holder of the semaphore on a row of its own, its size shown.
    assert!(
        dom.contains("<td>dash/pool</td><td>sem-one</td>"),
        "no semaphore row:\n{dom}"
    );
    assert!(
        dom.contains("<td></td><td>sem-two</td>"),
        "no second holder row:\n{dom}"
    );
    assert!(dom.contains("<td>semaphore 2/3</td>"), "{dom}");
    // The read/write lock: its reader and the one waiter.
    assert!(
        dom.contains("<td>dash/table</td><td>reader-dash</td>"),
        "no read/write lock row:\n{dom}"
    );
    assert!(dom.contains("<td>1</td><td>rwlock read</td>"), "{dom}");
    assert!(dom.contains(">3 lock(s)<"), "{dom}");

    let anonymous = dump_dom(&browser, &profile, &base);
    assert!(
        anonymous.contains("Administrator credentials required"),
        "{anonymous}"
    );
    let refused = dump_dom(
        &browser,
        &profile,
        &format!("{base}#name=alice&secret={alice}"),
    );
    assert!(
        refused.contains("Refused: not an administrator"),
        "{refused}"
    );
    for dom in [&anonymous, &refused] {
        assert!(
            !dom.contains("dash/test-lock"),
            "a lock name leaked:\n{dom}"
        );
        assert!(!dom.contains("holder-dash"), "a holder leaked:\n{dom}");
        assert!(
            !dom.contains("sem-one"),
            "a semaphore holder leaked:\n{dom}"
        );
    }
    let _ = std::fs::remove_dir_all(&profile);
    let _ = std::fs::remove_dir_all(&dir);
}
