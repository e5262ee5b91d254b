//! Memory per live lock: fills an engine with a million locks (12-character
//! names, 40-character owner IDs) and reports the bytes held per lock beyond
//! its name and ID, counted by the allocator and from the process's RSS.
//!
//! `cargo bench -p dlm-core --bench memory`; figures in core/README.md.

// Bench code: panicking on a broken expectation is fine here.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::cast_precision_loss
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use dlm_core::engine::{Config, Engine, Outcome, Principal};
use dlm_core::protocol::{Command, Owner, Resource};
use dlm_core::time::{Instant, Ttl};

struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn rss_kib() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // and expects a quick run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: usize = if quick { 10_000 } else { 1_000_000 };
    let names: Vec<String> = (0..n).map(|i| format!("lock-{i:07}")).collect();
    let owners: Vec<String> = (0..n).map(|i| format!("{i:0>40}")).collect();
    let mut engine = Engine::new(Config {
        memory_budget: usize::MAX,
        ..Config::default()
    });
    let (bytes0, rss0) = (LIVE_BYTES.load(Ordering::Relaxed), rss_kib());
    for i in 0..n {
        let lock = Command::Lock {
            name: Resource(&names[i]),
            owner: Owner(&owners[i]),
            ttl: Ttl::from_secs(3000),
            wait: None,
            token: None,
        };
        let Outcome::Reply(r) = engine.handle(
            Instant::from_millis(1),
            &lock,
            Principal::Anonymous,
            0,
            &mut |_| {},
        ) else {
            unreachable!()
        };
        assert!(r.token.is_some());
    }
    let bytes = LIVE_BYTES.load(Ordering::Relaxed) - bytes0;
    let rss = (rss_kib() - rss0) * 1024;
    let payload = 52.0_f64;
    println!("{n} live locks, 12-byte names, 40-byte IDs ({payload} bytes of payload each)");
    println!(
        "  allocated: {:.1} bytes/lock, {:.1} beyond name and ID",
        bytes as f64 / n as f64,
        bytes as f64 / n as f64 - payload
    );
    println!(
        "  RSS:       {:.1} bytes/lock, {:.1} beyond name and ID",
        rss as f64 / n as f64,
        rss as f64 / n as f64 - payload
    );
    println!(
        "  engine's own estimate (memory budget): {} bytes/lock",
        engine.memory_used() / n
    );
}
