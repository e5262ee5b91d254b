//! `Request::parse` on arbitrary bytes. Whatever parses must write back
//! and parse again to the same request; whatever is rejected must be
//! answerable; tighter limits never accept what the defaults refuse.

use dlm_core::limits::Limits;
use dlm_core::protocol::{Framing, Request, Response, SliceOut};
use dlm_core::time::Ttl;

const TIGHT: Limits = Limits {
    max_line: 512,
    max_name: 8,
    max_id: 6,
    max_data_anonymous: 16,
    max_ttl_anonymous: Ttl::from_secs(2),
    max_ttl: Ttl::from_secs(60),
};

/// Checks one input.
///
/// # Panics
///
/// On any violation of the properties above.
pub fn check(data: &[u8]) {
    let mut line = data.to_vec();
    let parsed = Request::parse(&mut line, &Limits::DEFAULT);
    let mut tight_line = data.to_vec();
    if let Ok(tight) = Request::parse(&mut tight_line, &TIGHT) {
        assert_eq!(
            parsed,
            Ok(tight),
            "tight limits accepted what the defaults refused"
        );
    }
    match parsed {
        Ok(req) => {
            let mut out = Vec::new();
            req.write(&mut out).expect("a Vec never fills");
            assert!(out.ends_with(b"\n") && !out[..out.len() - 1].contains(&b'\n'));
            assert_eq!(Framing::detect(&out), req.framing);
            // The rewrite may be a few bytes longer than the input (a
            // placeholder, `1e3` as `1000`): only the line limit is lifted.
            let relaxed = Limits {
                max_line: usize::MAX,
                ..Limits::DEFAULT
            };
            let mut again = out.clone();
            let back = Request::parse(&mut again, &relaxed);
            assert_eq!(
                back,
                Ok(req),
                "rewritten as {:?}",
                String::from_utf8_lossy(&out)
            );
            // Writing into any shorter buffer fails cleanly.
            for n in [0, 1, out.len() / 2, out.len() - 1] {
                let mut buf = vec![0u8; n];
                assert!(req.write(&mut SliceOut::new(&mut buf)).is_err());
            }
        }
        Err(rejected) => {
            let mut out = Vec::new();
            Response::rejected(rejected.error)
                .write(rejected.framing, &mut out)
                .expect("a Vec never fills");
            let (framing, resp) = Response::parse(&mut out).expect("a rejection parses");
            assert_eq!(framing, rejected.framing);
            assert_eq!(resp.status, rejected.error.status());
            assert!(resp.error.is_some());
        }
    }
}
