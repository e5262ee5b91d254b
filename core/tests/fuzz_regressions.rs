//! The fuzz targets' properties (`core/fuzz/src`, compiled here by
//! `#[path]`), run on stable in every `cargo test`: on every kept crasher
//! (`tests/fuzz-crashers/<target>/`), on every seed
//! (`fuzz/seeds/<target>/`), and on a fixed batch of pseudo-random inputs
//! derived from the seeds, so a regression shows without nightly or
//! libFuzzer.

// A test's `unwrap` is an assertion, in helpers as in `#[test]` functions.
#![allow(clippy::unwrap_used)]

#[path = "../fuzz/src/codec.rs"]
pub mod codec;
#[path = "../fuzz/src/engine.rs"]
pub mod engine;
#[path = "../fuzz/src/request.rs"]
pub mod request;
#[path = "../fuzz/src/response.rs"]
pub mod response;

use std::path::{Path, PathBuf};

/// Every kept crasher and seed of `target`, sorted, with its path.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    for dir in [root.join("tests/fuzz-crashers"), root.join("fuzz/seeds")] {
        let Ok(entries) = std::fs::read_dir(dir.join(target)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let bytes = std::fs::read(&path).unwrap();
            all.push((path, bytes));
        }
    }
    all
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

/// A seed with a few random edits, favouring bytes that matter to JSON.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    const INTERESTING: &[u8] = b"\"\\{}[],:-+.eE0123456789 \tnul/u\r\n\x00\x0c\x7f\x80\xc3\xff";
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let b = if rng.below(3) == 0 {
            rng.byte()
        } else {
            INTERESTING[rng.below(INTERESTING.len())]
        };
        let at = rng.below(data.len() + 1);
        match rng.below(4) {
            0 if at < data.len() => data[at] = b,
            1 => data.insert(at, b),
            2 if at < data.len() => {
                data.remove(at);
            }
            _ => {
                let end = (at + 1 + rng.below(12)).min(data.len());
                let piece = data[at.min(end)..end].to_vec();
                data.splice(at..at, piece);
            }
        }
    }
    data
}

/// Runs `check` on every kept input of `target` and on `extra` mutants of
/// them; returns how many kept inputs there were.
fn replay(target: &str, check: fn(&[u8]), extra: usize) -> usize {
    let kept = inputs(target);
    for (path, bytes) in &kept {
        eprintln!("replaying {}", path.display());
        check(bytes);
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..extra {
        let seed = &kept[i % kept.len()].1;
        let data = mutate(&mut rng, seed);
        eprintln!("mutant {i} of {target}: {data:?}");
        check(&data);
    }
    kept.len()
}

#[test]
fn request_inputs() {
    assert!(replay("request", request::check, 20_000) >= 18);
}

#[test]
fn response_inputs() {
    assert!(replay("response", response::check, 20_000) >= 10);
}

#[test]
fn codec_inputs() {
    assert!(replay("codec", codec::check, 2_000) >= 2);
}

#[test]
fn engine_inputs() {
    assert!(replay("engine", engine::check, 0) >= 4);
    // Every byte string is a program: run fresh random ones too.
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    for i in 0..2_000 {
        let len = 64 + rng.below(1500);
        let data: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        eprintln!("random program {i}: {data:?}");
        engine::check(&data);
    }
}
