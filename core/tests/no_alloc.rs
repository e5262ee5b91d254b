//! Proves that the protocol's hot paths allocate nothing and that the
//! engine's lock paths allocate only what a new lock must.
//!
//! A test binary without the test harness (`harness = false`): it installs a
//! global allocator that counts every allocation, runs each check between
//! two readings of the counter, prints what it checked and exits non-zero if
//! any count is off. Everything runs on the main thread, so the counts are
//! exactly the code's own.
//!
//! What is counted:
//!
//! - `Request::parse`, `Request::write`, `Response::write`,
//!   `Response::parse` and `Response::parse_stats` into and out of
//!   caller-provided buffers, for every action and status in both framings,
//!   with escaped strings, credentials and error responses: **zero**.
//! - The engine (with `Heap` storage, once warmed up): re-lock (extend),
//!   `TestLock`, refusals, `Get` and a whole parse-handle-write round trip:
//!   **zero**; an unlock-then-lock cycle whose lock reuses the freed slot:
//!   **exactly one**, the allocation holding the new lock's name and owner
//!   (a `ThinPair`); a `Put` that replaces a value: exactly one, the value.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};
use std::alloc::System;
use std::process::ExitCode;

use dlm_core::client::Client;
use dlm_core::engine::{Config, Engine, Outcome, Principal};
use dlm_core::limits::Limits;
use dlm_core::protocol::{
    Command, Credentials, Framing, Owner, Request, Resource, Response, Revision, SliceOut, Status,
    Token,
};
use dlm_core::stats::{Stat, Stats};
use dlm_core::time::{Instant, Ttl};

/// Counts allocations (including reallocations and zeroed ones) and
/// deallocations, then defers to the system allocator.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static DEALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees are ours; counting has no effect on
// the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        DEALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Runs `f` and returns how many allocations and deallocations it made.
fn counted<R>(f: impl FnOnce() -> R) -> (usize, usize, R) {
    let a = ALLOCATIONS.load(Ordering::SeqCst);
    let d = DEALLOCATIONS.load(Ordering::SeqCst);
    let r = core::hint::black_box(f());
    let a = ALLOCATIONS.load(Ordering::SeqCst) - a;
    let d = DEALLOCATIONS.load(Ordering::SeqCst) - d;
    (a, d, r)
}

/// The results so far.
#[derive(Default)]
struct Report {
    passed: usize,
    failed: usize,
}

impl Report {
    /// Records one check: `what` made `got` allocations and should have
    /// made `want`; `ok` is any other condition the check asserts.
    fn check(&mut self, what: &str, want: usize, got: usize, ok: bool) {
        if got == want && ok {
            self.passed += 1;
            println!("ok    {what}: {got} allocations");
        } else {
            self.failed += 1;
            println!("FAIL  {what}: {got} allocations (want {want}), result ok: {ok}");
        }
    }
}

/// A line buffer on the stack, as a server's connection would own it.
struct Line {
    buf: [u8; 4096],
    len: usize,
}

impl Line {
    fn new() -> Self {
        Self {
            buf: [0; 4096],
            len: 0,
        }
    }

    fn set(&mut self, bytes: &[u8]) {
        self.buf[..bytes.len()].copy_from_slice(bytes);
        self.len = bytes.len();
    }

    fn bytes(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
}

fn framings() -> [(Framing, &'static str); 2] {
    [(Framing::Plain, "plain"), (Framing::Legacy, "legacy")]
}

fn requests(report: &mut Report) {
    let names = ["jobs", "q\"uote\\back/slash", "é😀\u{1}\n\t\u{7f}"];
    let client = Client::new("worker \"7\"\u{2028}");
    let secret = Credentials {
        name: "svc\u{0}",
        secret: "s\\ecret",
    };
    let ttl = Ttl::from_millis(1_500);
    for (framing, label) in framings() {
        let c = client.with_framing(framing);
        for name in names {
            let all = [
                c.lock(name, ttl),
                c.lock_wait(name, ttl, Ttl::from_millis(250)),
                c.extend(name, ttl, Token(u64::MAX)),
                c.unlock(name, None),
                c.unlock(name, Some(Token(9))),
                c.test_lock(name),
                c.put(name, Ttl::from_secs(60), "a^\"x\\", Some(Revision(3))),
                c.get(name),
                c.erase(name),
                c.version(),
                c.stats(),
                c.with_credentials(secret)
                    .put(name, Ttl::from_secs(7200), name, None),
            ];
            for req in all {
                let mut out = [0u8; 4096];
                let (a, _, written) = counted(|| {
                    let mut sink = SliceOut::new(&mut out);
                    req.write(&mut sink).map(|()| sink.len())
                });
                let Ok(n) = written else {
                    report.check("request fits its buffer", 0, a, false);
                    continue;
                };
                let what = format!("write {label} {} {name:?}", req.command.action());
                report.check(&what, 0, a, true);

                let mut line = Line::new();
                line.set(&out[..n]);
                let (a, _, same) = counted(|| {
                    Request::parse(line.bytes(), &Limits::DEFAULT).is_ok_and(|back| back == req)
                });
                let what = format!("parse {label} {} {name:?}", req.command.action());
                report.check(&what, 0, a, same);
            }
        }
    }
}

fn rejections(report: &mut Report) {
    let deep = format!(
        r#"{{"Action":"Version","x":{}{}}}"#,
        "[".repeat(40),
        "]".repeat(40)
    );
    let long_name = format!(
        r#"{{"Action":"Get","FileName":"{}","ID":"i"}}"#,
        "n".repeat(1025)
    );
    let bad: [(&str, &[u8]); 13] = [
        ("unknown action", br#"{"Action":"Nope"}"#),
        (
            "missing field",
            br#"{"Action":"Lock","FileName":"f","ID":"i"}"#,
        ),
        (
            "zero ttl",
            br#"{"Action":"Lock","FileName":"f","ID":"i","Expire":0}"#,
        ),
        (
            "over limit",
            br#"{"Action":"Lock","FileName":"f","ID":"i","Expire":"3543.5"}"#,
        ),
        (
            "wrong type",
            br#"{"Action":"Get","FileName":{"a":[1]},"ID":"i"}"#,
        ),
        ("invalid utf-8", b"{\"Action\":\"Get\xff\"}"),
        (
            "bad escape",
            br#"{"Action":"Get","FileName":"\ud800","ID":"i"}"#,
        ),
        ("duplicate", br#"{"Action":"Get","ID":"a","ID":"b"}"#),
        ("trailing", br#"{"Action":"Version"} x"#),
        ("bad encoding", b"a^1"),
        ("empty", b"\r\n"),
        ("too deep", deep.as_bytes()),
        ("too long", long_name.as_bytes()),
    ];
    for (what, bytes) in bad {
        let mut line = Line::new();
        line.set(bytes);
        let (a, _, rejected) = counted(|| Request::parse(line.bytes(), &Limits::DEFAULT).err());
        let Some(rejected) = rejected else {
            report.check(what, 0, a, false);
            continue;
        };
        report.check(&format!("parse rejects {what}"), 0, a, true);
        for (framing, label) in framings() {
            let mut out = [0u8; 1024];
            let (a, _, r) = counted(|| {
                let mut sink = SliceOut::new(&mut out);
                Response::rejected(rejected.error)
                    .write(framing, &mut sink)
                    .map(|()| sink.len())
            });
            let ok = r.is_ok_and(|n| {
                let mut line = Line::new();
                line.set(&out[..n]);
                Response::parse(line.bytes()).is_ok_and(|(_, back)| {
                    back.status == rejected.error.status() && back.error.is_some()
                })
            });
            report.check(&format!("write {label} error for {what}"), 0, a, ok);
        }
    }
}

fn responses(report: &mut Report) {
    let mut stats = Stats::new();
    for (i, &s) in Stat::ALL.iter().enumerate() {
        stats.set(s, u64::try_from(i).unwrap_or(0) * 1_000_000_007);
    }
    for status in Status::ALL {
        let mut full = Response::new(status);
        full.id = Some("own\"er\\\u{1}é");
        full.data = Some("a^\u{2028}\"");
        full.token = Some(Token(u64::MAX));
        full.expire = Some(Ttl::from_millis(1_234_567));
        full.revision = Some(Revision(42));
        for (framing, label) in framings() {
            for (resp, kind) in [(Response::new(status), "bare"), (full, "full")] {
                let mut out = [0u8; 2048];
                let (a, _, r) = counted(|| {
                    let mut sink = SliceOut::new(&mut out);
                    resp.write(framing, &mut sink).map(|()| sink.len())
                });
                report.check(&format!("write {label} {kind} {status}"), 0, a, r.is_ok());
                let Ok(n) = r else { continue };
                let mut line = Line::new();
                line.set(&out[..n]);
                let (a, _, same) = counted(|| {
                    Response::parse(line.bytes())
                        .is_ok_and(|(f, back)| f == framing && back == resp)
                });
                report.check(&format!("parse {label} {kind} {status}"), 0, a, same);
            }
        }
    }
    for (framing, label) in framings() {
        let mut resp = Response::new(Status::Done);
        resp.stats = Some(&stats);
        let mut out = [0u8; 4096];
        let (a, _, r) = counted(|| {
            let mut sink = SliceOut::new(&mut out);
            resp.write(framing, &mut sink).map(|()| sink.len())
        });
        report.check(&format!("write {label} Stats reply"), 0, a, r.is_ok());
        let Ok(n) = r else { continue };
        let mut line = Line::new();
        line.set(&out[..n]);
        let (a, _, back) = counted(|| Response::parse_stats(line.bytes()));
        report.check(
            &format!("parse_stats {label}"),
            0,
            a,
            back.as_ref() == Ok(&stats),
        );
    }
}

fn reply<'e>(engine: &'e mut Engine, now: u64, command: &Command<'e>) -> Option<Response<'e>> {
    match engine.handle(
        Instant::from_millis(now),
        command,
        Principal::Anonymous,
        0,
        &mut |_| {},
    ) {
        Outcome::Reply(r) => Some(r),
        Outcome::Queued(_) => None,
    }
}

fn status_of(engine: &mut Engine, now: u64, command: &Command<'_>) -> Option<Status> {
    reply(engine, now, command).map(|r| r.status)
}

fn token_of(engine: &mut Engine, now: u64, command: &Command<'_>) -> Option<Token> {
    reply(engine, now, command).and_then(|r| r.token)
}

fn engine(report: &mut Report) {
    let lock = |name, owner| Command::Lock {
        name: Resource(name),
        owner: Owner(owner),
        ttl: Ttl::from_secs(30),
        wait: None,
        token: None,
    };
    let unlock = |name, owner| Command::Unlock {
        name: Resource(name),
        owner: Owner(owner),
        token: None,
    };
    let others: Vec<String> = (0..32).map(|i| format!("other-{i}")).collect();
    let mut eng = Engine::new(Config::default());
    // Warm up: other locks around, and one lock taken, released and taken
    // again, so the tables and the free list have their capacity.
    for name in &others {
        status_of(&mut eng, 0, &lock(name, "someone"));
    }
    status_of(&mut eng, 0, &lock("jobs", "w1"));
    status_of(&mut eng, 0, &unlock("jobs", "w1"));
    let token = token_of(&mut eng, 0, &lock("jobs", "w1"));

    let mut now = 1;
    let (a, _, ok) = counted(|| {
        (0..100).all(|_| {
            now += 10;
            token_of(&mut eng, now, &lock("jobs", "w1")) == token
        })
    });
    report.check("engine: 100 re-locks (extend)", 0, a, ok);

    let extend = Command::Lock {
        name: Resource("jobs"),
        owner: Owner("w1"),
        ttl: Ttl::from_secs(30),
        wait: None,
        token,
    };
    let (a, _, s) = counted(|| status_of(&mut eng, now, &extend));
    report.check(
        "engine: extend with the grant's token",
        0,
        a,
        s == Some(Status::Locked),
    );
    let test = Command::TestLock {
        name: Resource("jobs"),
        owner: Owner("w2"),
    };
    let (a, _, s) = counted(|| status_of(&mut eng, now, &test));
    report.check(
        "engine: TestLock of another's lock",
        0,
        a,
        s == Some(Status::NotOwner),
    );
    let (a, _, s) = counted(|| status_of(&mut eng, now, &lock("jobs", "w2")));
    report.check(
        "engine: Lock refused (NotOwner)",
        0,
        a,
        s == Some(Status::NotOwner),
    );
    let (a, _, s) = counted(|| status_of(&mut eng, now, &unlock("jobs", "w2")));
    report.check(
        "engine: Unlock refused (NotOwner)",
        0,
        a,
        s == Some(Status::NotOwner),
    );

    // Unlock then lock, the new lock reusing the slot just freed: the one
    // allocation is the new lock's name and owner.
    let locks = eng.lock_count();
    let (a, d, s) = counted(|| status_of(&mut eng, now, &unlock("jobs", "w1")));
    report.check(
        "engine: unlock frees and allocates nothing",
        0,
        a,
        s == Some(Status::Unlocked) && d == 1 && eng.lock_count() == locks - 1,
    );
    let (a, _, s) = counted(|| status_of(&mut eng, now, &lock("jobs", "w2")));
    report.check(
        "engine: lock of a freed name (one key)",
        1,
        a,
        s == Some(Status::Locked),
    );
    let cycles = 1_000;
    let (a, d, ok) = counted(|| {
        (0..cycles).all(|i| {
            let (old, new) = if i % 2 == 0 {
                ("w2", "w1")
            } else {
                ("w1", "w2")
            };
            now += 1;
            status_of(&mut eng, now, &unlock("jobs", old)) == Some(Status::Unlocked)
                && status_of(&mut eng, now, &lock("jobs", new)) == Some(Status::Locked)
        })
    });
    report.check(
        &format!("engine: {cycles} unlock-then-lock cycles (one key each)"),
        cycles,
        a,
        ok && d == cycles && eng.lock_count() == locks,
    );
    // The freed slot taken by another name.
    let owner = if cycles % 2 == 0 { "w2" } else { "w1" };
    let (a, _, ok) = counted(|| {
        (0..cycles).all(|i| {
            let (old, new) = if i % 2 == 0 {
                ("jobs", "tasks")
            } else {
                ("tasks", "jobs")
            };
            now += 1;
            status_of(&mut eng, now, &unlock(old, owner)) == Some(Status::Unlocked)
                && status_of(&mut eng, now, &lock(new, owner)) == Some(Status::Locked)
        })
    });
    report.check(
        &format!("engine: {cycles} unlock-then-lock cycles alternating names"),
        cycles,
        a,
        ok && eng.lock_count() == locks,
    );

    // Data: a read allocates nothing, a replacing write its new value only.
    let put = |data| Command::Put {
        name: Resource("cfg"),
        owner: Owner("w1"),
        ttl: Ttl::from_secs(60),
        data,
        revision: None,
        readers: dlm_core::protocol::Readers::Owner,
    };
    status_of(&mut eng, now, &put("v1"));
    let get = Command::Get {
        name: Resource("cfg"),
        owner: Owner("w1"),
    };
    let (a, _, s) = counted(|| reply(&mut eng, now, &get).and_then(|r| r.data.map(str::len)));
    report.check("engine: Get", 0, a, s == Some(2));
    let (a, d, s) = counted(|| status_of(&mut eng, now, &put("v2-longer")));
    report.check(
        "engine: Put replacing a value (the value)",
        1,
        a,
        s == Some(Status::Done) && d == 1,
    );

    // A server's whole path for a re-lock: parse, handle, write.
    let mut request = Vec::new();
    Client::new(owner)
        .with_framing(Framing::Legacy)
        .lock("jobs", Ttl::from_secs(30))
        .write(&mut request)
        .unwrap_or_default();
    let mut line = Line::new();
    let mut out = [0u8; 1024];
    let (a, _, ok) = counted(|| {
        (0..100).all(|_| {
            line.set(&request);
            now += 1;
            let Ok(req) = Request::parse(line.bytes(), eng.limits()) else {
                return false;
            };
            let framing = req.framing;
            let Outcome::Reply(r) = eng.handle(
                Instant::from_millis(now),
                &req.command,
                Principal::Anonymous,
                0,
                &mut |_| {},
            ) else {
                return false;
            };
            let mut sink = SliceOut::new(&mut out);
            r.status == Status::Locked && r.write(framing, &mut sink).is_ok()
        })
    });
    report.check(
        "server path: 100 legacy re-locks parsed, handled, written",
        0,
        a,
        ok,
    );
    let stats = Command::Stats;
    let (a, _, ok) = counted(|| {
        let Some(r) = reply(&mut eng, now, &stats) else {
            return false;
        };
        let mut sink = SliceOut::new(&mut out);
        r.write(Framing::Plain, &mut sink).is_ok()
    });
    report.check("server path: Stats handled and written", 0, a, ok);
}

fn main() -> ExitCode {
    let mut report = Report::default();
    // Make sure the counter counts: this must be seen.
    let (a, _, v) = counted(|| vec![1u8; 3]);
    report.check("the counter sees a Vec", 1, a, v.len() == 3);

    requests(&mut report);
    rejections(&mut report);
    responses(&mut report);
    engine(&mut report);

    println!(
        "\nno_alloc: {} passed, {} failed",
        report.passed, report.failed
    );
    if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
