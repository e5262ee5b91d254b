//! `jackrabbit-standin [HOST:PORT]`: the JackrabbitDLM stand-in of
//! `dlm_tests::jackrabbit`, for the Go and Node.js tests. It prints
//! `jackrabbit-standin listening on HOST:PORT` once it accepts, and runs
//! until it is killed or its stdin closes.

// A std test binary: the workspace's no_std lints are for dlm-core.
#![allow(clippy::std_instead_of_core)]

use std::io::{Read as _, Write as _};

use dlm_tests::jackrabbit::Jackrabbit;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let server = Jackrabbit::on(&addr);
    let mut out = std::io::stdout();
    let _ = writeln!(out, "jackrabbit-standin listening on {}", server.addr());
    let _ = out.flush();
    // Until the test that started it lets go of our stdin (or kills us).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}
