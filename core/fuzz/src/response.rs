//! `Response::parse` and `Response::parse_stats` on arbitrary bytes:
//! whatever parses must write back and parse again to the same thing.

use dlm_core::protocol::{Framing, Response, Status};

/// Checks one input.
///
/// # Panics
///
/// On any violation of the properties above.
pub fn check(data: &[u8]) {
    let mut line = data.to_vec();
    if let Ok((framing, resp)) = Response::parse(&mut line) {
        assert_eq!(resp.stats, None);
        for f in [framing, Framing::Plain, Framing::Legacy] {
            let mut out = Vec::new();
            resp.write(f, &mut out).expect("a Vec never fills");
            assert!(out.ends_with(b"\n") && !out[..out.len() - 1].contains(&b'\n'));
            let mut again = out.clone();
            let back = Response::parse(&mut again);
            assert_eq!(
                back,
                Ok((f, resp)),
                "rewritten as {:?}",
                String::from_utf8_lossy(&out)
            );
        }
    }
    let mut line = data.to_vec();
    if let Ok(stats) = Response::parse_stats(&mut line) {
        let mut resp = Response::new(Status::Done);
        resp.stats = Some(&stats);
        for f in [Framing::Plain, Framing::Legacy] {
            let mut out = Vec::new();
            resp.write(f, &mut out).expect("a Vec never fills");
            assert_eq!(Response::parse_stats(&mut out), Ok(stats.clone()));
        }
    }
}
