//! `dlm chart` on a statistics log written by a real server under real
//! traffic (a `dlm war`), as PNG, SVG and HTML; and on a log with nothing
//! to draw.

#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::process::Command;
use std::time::{Duration, Instant};

use dlm_tests::{Server, scratch_dir};

fn dlm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dlm"))
}

/// The sum of statistic `key` over a log's lines.
fn sum_of(log: &str, key: &str) -> u64 {
    log.lines()
        .filter_map(|l| l.splitn(3, ' ').nth(2))
        .flat_map(|body| body.split(", "))
        .filter_map(|pair| pair.split_once(": "))
        .filter(|(k, _)| *k == key)
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

#[test]
fn a_real_log_is_drawn_as_png_svg_and_html() {
    let dir = scratch_dir("chart");
    let log = dir.join("stats.log");
    let server = Server::with_args(&[
        "--stats-interval",
        "200ms",
        "--log-file",
        log.to_str().unwrap(),
    ]);
    // A connection open throughout: every line logs the AConn gauge (a
    // line holds non-zero values only, and a war may start and end
    // between two lines).
    let _idle = server.connect();
    // Two wars, each logged on its own line or more.
    let mut text = String::new();
    for round in 1..=2u64 {
        let war = dlm()
            .env("DLM_SERVER", server.addr().to_string())
            .args(["war", "--fighters", "3", "--rounds", "150"])
            .output()
            .unwrap();
        assert!(war.status.success(), "{war:?}");
        let deadline = Instant::now() + Duration::from_secs(20);
        text = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let locks = sum_of(&text, "Lock");
            if locks >= 150 * round && text.lines().count() as u64 >= round {
                break text;
            }
            assert!(
                Instant::now() < deadline,
                "the log never showed the war:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
    }
    // A line from before the log (JackrabbitDLM logs other lines too).
    std::fs::write(&log, format!("starting up\n{text}")).unwrap();

    let png = dir.join("stats.png");
    let o = dlm()
        .arg("chart")
        .arg(&log)
        .arg("-o")
        .arg(&png)
        .args(["--size", "800x500"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("1 other lines skipped"));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR: width and height, big-endian.
    assert_eq!(&bytes[16..24], &[0, 0, 3, 32, 0, 0, 1, 244]);

    let svg = dir.join("stats.svg");
    assert!(
        dlm()
            .arg("chart")
            .arg(&log)
            .arg("-o")
            .arg(&svg)
            .status()
            .unwrap()
            .success()
    );
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.starts_with("<svg"), "{}", &svg_text[..100]);
    for name in ["Lock", "Unlock", "In", "Out"] {
        assert!(
            svg_text.contains(&format!(">\n{name}\n</text>")),
            "no {name} in the legend"
        );
    }
    assert!(!svg_text.contains("\nAConn\n"), "gauges only when asked");
    assert!(svg_text.contains("<polyline"), "no lines drawn");

    let html = dir.join("stats.html");
    let o = dlm()
        .arg("chart")
        .arg(&log)
        .arg("-o")
        .arg(&html)
        .args(["--stats", "Lock,Unlock,AConn"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("<table>"));
    let total_locks = sum_of(&text, "Lock");
    assert!(
        page.contains(&format!("<tr><td>Lock</td><td>{total_locks}</td>")),
        "the table's Lock total is not the log's {total_locks}"
    );
    assert!(page.contains("<td>AConn</td>"), "a gauge asked for");
    assert!(
        !page.contains("<td>In</td>"),
        "only the statistics asked for"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nothing_to_draw_or_a_bad_output_fails() {
    let dir = scratch_dir("chart-bad");
    let log = dir.join("empty.log");
    std::fs::write(&log, "not a statistics line\n").unwrap();
    let o = dlm()
        .arg("chart")
        .arg(&log)
        .arg("-o")
        .arg(dir.join("x.png"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no statistics lines"));
    std::fs::write(&log, "2026-11-26 00:00:00.000000 Lock: 1\n").unwrap();
    let o = dlm()
        .arg("chart")
        .arg(&log)
        .arg("-o")
        .arg(dir.join("x.jpg"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let o = dlm()
        .arg("chart")
        .arg(dir.join("missing.log"))
        .arg("-o")
        .arg(dir.join("x.svg"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}
