//! A picture of a run that a person reads at a glance (SVG): the faults,
//! who led, when no key/value operation succeeded (unavailability), and
//! every lock grant's lease per name, on one time axis.

#![allow(clippy::cast_precision_loss)] // seconds for people to read

use std::fmt::Write as _;

use super::history::{Fault, Grant, KvOp, KvOutput, LeaderSample};
use super::kv::fault_color;

/// Gaps longer than this without a successful key/value operation count
/// as unavailability.
pub const GAP_NS: u64 = 500_000_000;

/// The intervals (start, end) with no successful key/value operation for
/// longer than [`GAP_NS`], between `from` and `to`.
pub fn unavailability(ops: &[KvOp], from: u64, to: u64) -> Vec<(u64, u64)> {
    let mut ok: Vec<u64> = ops
        .iter()
        .filter(|o| matches!(o.output, KvOutput::Answer { .. }))
        .map(|o| o.ret)
        .collect();
    ok.sort_unstable();
    let mut gaps = Vec::new();
    let mut last = from;
    for t in ok.into_iter().chain(std::iter::once(to)) {
        if t > last + GAP_NS {
            gaps.push((last, t));
        }
        last = last.max(t);
    }
    gaps
}

const COLORS: [&str; 6] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1",
];

/// The SVG.
pub fn svg(
    duration: u64,
    faults: &[Fault],
    leaders: &[LeaderSample],
    gaps: &[(u64, u64)],
    grants: &[Grant],
    names: &[&str],
) -> String {
    let width = 1400.0;
    let left = 110.0;
    let row = 26.0;
    let rows = 3 + names.len();
    let height = 40.0 + row * rows as f64 + 30.0;
    let span = duration.max(1) as f64;
    let x = |t: u64| left + (width - left - 10.0) * (t.min(duration) as f64 / span);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let label = |s: &mut String, r: usize, text: &str| {
        let y = 40.0 + row * r as f64 + 16.0;
        let _ = writeln!(s, "<text x=\"4\" y=\"{y}\">{text}</text>");
    };
    let bar = |s: &mut String, r: usize, a: u64, b: u64, color: &str, title: &str| {
        let y = 40.0 + row * r as f64 + 3.0;
        let w = (x(b) - x(a)).max(1.0);
        let _ = writeln!(
            s,
            "<rect x=\"{:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{color}\" \
             stroke=\"#555\" stroke-width=\"0.3\"><title>{title}</title></rect>",
            x(a),
            row - 6.0
        );
    };
    // Axis: a tick per second (or per 10 s on long runs).
    let step = if duration > 120_000_000_000 {
        10_000_000_000
    } else {
        1_000_000_000
    };
    let mut t = 0;
    while t <= duration {
        let _ = writeln!(
            s,
            "<line x1=\"{0:.1}\" y1=\"30\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"#eee\"/>\
             <text x=\"{0:.1}\" y=\"24\" text-anchor=\"middle\" fill=\"#777\">{2}s</text>",
            x(t),
            height - 20.0,
            t / 1_000_000_000
        );
        t += step;
    }
    label(&mut s, 0, "faults");
    for f in faults {
        bar(
            &mut s,
            0,
            f.start,
            f.end,
            fault_color(&f.kind),
            &format!("{}: {}", f.kind, escape(&f.detail)),
        );
    }
    label(&mut s, 1, "leader");
    for w in leaders.windows(2) {
        let l = w[0].leader;
        let color = if l == 0 {
            "#ffffff"
        } else {
            COLORS[usize::try_from(l).unwrap_or(0) % COLORS.len()]
        };
        bar(&mut s, 1, w[0].at, w[1].at, color, &format!("leader {l}"));
    }
    label(&mut s, 2, "unavailable");
    for (a, b) in gaps {
        bar(
            &mut s,
            2,
            *a,
            *b,
            "#333333",
            &format!("no operation succeeded for {:.2}s", (*b - *a) as f64 / 1e9),
        );
    }
    for (i, name) in names.iter().enumerate() {
        label(&mut s, 3 + i, &format!("lock {name}"));
        for g in grants.iter().filter(|g| g.name == *name) {
            let color = COLORS[usize::try_from(g.client).unwrap_or(0) % COLORS.len()];
            bar(
                &mut s,
                3 + i,
                g.ret,
                g.lease_end.max(g.ret),
                color,
                &format!("{} token {}", escape(&g.owner), g.token),
            );
        }
    }
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"{}\" fill=\"#555\">faults: red kill, orange pause, blue \
         partition/delay, purple clock; leader: colour per member (white: none); locks: one \
         bar per lease, colour per client</text>\n</svg>",
        height - 6.0
    );
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
