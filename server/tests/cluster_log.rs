//! The cluster's Raft log on a damaged or failing disk: torn and corrupt
//! tails are cut and reported, damage elsewhere refuses to open, a write
//! error is an `Err` (never a panic), and raft-engine's own warnings reach
//! `tracing`. Plus a micro-benchmark of synced writes (`--ignored`).

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss
)]

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dlm_server::cluster::log::{LogStore, Recovered};
use raft::eraftpb::{ConfState, Entry, HardState};
use raft::{GetEntriesContext, Storage};

/// A fresh directory under the system's temporary folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("dlm-cluster-log-{what}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn entry(index: u64) -> Entry {
    Entry {
        index,
        term: 1,
        data: format!("<entry {index:05} of term 1>").into_bytes().into(),
        ..Entry::default()
    }
}

fn hard_state(commit: u64) -> HardState {
    HardState {
        term: 1,
        vote: 1,
        commit,
        ..HardState::default()
    }
}

fn all_entries(store: &LogStore) -> Vec<Entry> {
    let first = store.first_index().expect("first");
    let last = store.last_index().expect("last");
    store
        .entries(first, last + 1, None, GetEntriesContext::empty(false))
        .expect("entries")
}

/// raft-engine's append files in `dir/raft`, oldest first.
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("raft"))
        .expect("raft dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "raftlog"))
        .collect();
    files.sort();
    files
}

/// Copies a data directory (without raft-engine's LOCK file), as a crash
/// would leave it or as a test wants to damage it.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for item in fs::read_dir(from).expect("read dir") {
        let item = item.expect("dir entry");
        let target = to.join(item.file_name());
        if item.file_type().expect("type").is_dir() {
            copy_dir(&item.path(), &target);
        } else if item.file_name() != "LOCK" {
            fs::copy(item.path(), target).expect("copy");
        }
    }
}

/// A data directory holding `BATCHES` synced batches of 1 to 3 entries,
/// each batch with a `HardState` committing the previous batch, written
/// with a reopen after each so that `ends[i]` is the exact byte offset at
/// which batch `i` ends in the (single) log file; `ends[0]` is the end of
/// the file's header.
struct Template {
    dir: TempDir,
    batches: Vec<Vec<Entry>>,
    ends: Vec<u64>,
}

const BATCHES: usize = 24;

impl Template {
    fn build() -> Template {
        let dir = TempDir::new("template");
        let mut batches = Vec::new();
        let mut ends = Vec::new();
        let mut next = 1;
        drop(LogStore::open(Some(dir.path())).expect("create"));
        let files = log_files(dir.path());
        assert_eq!(files.len(), 1, "{files:?}");
        ends.push(fs::metadata(&files[0]).expect("len").len());
        for b in 0..BATCHES {
            let (store, recovered) = LogStore::open(Some(dir.path())).expect("reopen");
            assert!(recovered.tail_cut.is_none(), "{recovered}");
            let n = 1 + (b as u64 % 3);
            let batch: Vec<Entry> = (next..next + n).map(entry).collect();
            next += n;
            store.append(&batch).expect("append");
            store.set_hard_state(hard_state(next - n - 1));
            store.persist(true).expect("persist");
            drop(store);
            assert_eq!(log_files(dir.path()), files, "one file throughout");
            ends.push(fs::metadata(&files[0]).expect("len").len());
            batches.push(batch);
        }
        Template { dir, batches, ends }
    }

    fn file_in(&self, copy: &Path) -> PathBuf {
        let name = log_files(self.dir.path())[0]
            .file_name()
            .expect("name")
            .to_owned();
        copy.join("raft").join(name)
    }

    /// Opens a copy of the template after `damage` changed its log file.
    fn open_damaged(&self, damage: impl FnOnce(&mut Vec<u8>)) -> io::Result<(LogStore, Recovered)> {
        let copy = TempDir::new("damaged");
        copy_dir(self.dir.path(), copy.path());
        let file = self.file_in(copy.path());
        let mut bytes = fs::read(&file).expect("read");
        damage(&mut bytes);
        fs::write(&file, &bytes).expect("write");
        let opened = LogStore::open(Some(copy.path()));
        // The store keeps its files open; the copy is removed when it drops.
        if let Ok((store, _)) = &opened {
            let _ = all_entries(store);
        }
        drop(copy);
        opened
    }

    /// The entries and `HardState` of the first `k` batches.
    fn prefix(&self, k: usize) -> (Vec<Entry>, HardState) {
        let entries: Vec<Entry> = self.batches[..k].iter().flatten().cloned().collect();
        let hs = if k == 0 {
            HardState::default()
        } else {
            hard_state(self.batches[k - 1][0].index - 1)
        };
        (entries, hs)
    }
}

/// Cutting the log file anywhere never yields a damaged or partial batch:
/// the log is always a whole-batch prefix with its matching `HardState`,
/// and a cut inside a batch is reported.
#[test]
fn a_torn_tail_is_cut_at_a_batch_and_reported() {
    let t = Template::build();
    let total = *t.ends.last().expect("ends");
    let tail_from = t.ends[t.ends.len() - 4];
    let offsets: Vec<u64> = (0..tail_from)
        .step_by(23)
        .chain(tail_from..total)
        .chain(t.ends.iter().copied())
        .collect();
    let original = fs::read(&log_files(t.dir.path())[0]).expect("read");
    let usize_of = |n: u64| usize::try_from(n).expect("usize");
    let (mut reported, mut clean) = (0, 0);
    for cut in offsets {
        let (store, recovered) = t
            .open_damaged(|b| b.truncate(usize::try_from(cut).expect("usize")))
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let whole = t.ends[1..].iter().filter(|&&end| end <= cut).count();
        let (entries, hs) = t.prefix(whole);
        assert_eq!(all_entries(&store), entries, "cut at {cut}");
        assert_eq!(store.hard_state(), hs, "cut at {cut}");
        assert_eq!(recovered.entries, entries.len() as u64);
        if cut >= t.ends[0] {
            // A batch begins with its length, big-endian: a cut that keeps
            // only its leading zero bytes looks like preallocated space, and
            // indeed loses nothing.
            let kept = &original[usize_of(t.ends[whole])..usize_of(cut)];
            let mid_batch = kept.iter().any(|&b| b != 0);
            assert_eq!(
                recovered.tail_cut.is_some(),
                mid_batch,
                "cut at {cut} (batches end at {:?}): {recovered}",
                t.ends
            );
            if mid_batch {
                reported += 1;
                // Trailing zeros of the partial batch are not counted.
                let bytes = recovered.tail_cut.as_ref().map_or(0, |c| c.bytes);
                assert!(
                    bytes > 0 && bytes <= cut - t.ends[whole],
                    "cut at {cut}: {bytes}"
                );
            } else {
                clean += 1;
            }
        }
    }
    println!(
        "{reported} cuts inside a batch reported; {clean} cuts at a batch boundary \
         (or keeping only a header's leading zeros) lost nothing and were not"
    );
    assert!(reported > 100 && clean > BATCHES, "{reported} / {clean}");
}

/// A flipped byte in the last batches: the damaged batch and everything
/// after it are cut and reported, or opening fails; the log is never
/// returned with a damaged entry.
#[test]
fn a_corrupt_tail_is_cut_and_reported_never_loaded() {
    let t = Template::build();
    let total = *t.ends.last().expect("ends");
    let from = t.ends[t.ends.len() - 3];
    let (all, last_hs) = t.prefix(BATCHES);
    let (mut cut, mut refused, mut harmless) = (0, 0, 0);
    for at in from..total {
        let at = usize::try_from(at).expect("usize");
        match t.open_damaged(|b| b[at] ^= 0x20) {
            Ok((store, recovered)) => {
                let entries = all_entries(&store);
                if let Some(tail) = &recovered.tail_cut {
                    cut += 1;
                    let whole = t.ends[1..]
                        .iter()
                        .position(|&end| end > at as u64)
                        .expect("inside a batch");
                    let (expected, hs) = t.prefix(whole);
                    assert_eq!(entries, expected, "flip at {at}: {recovered}");
                    assert_eq!(store.hard_state(), hs, "flip at {at}");
                    let lost = total - t.ends[whole];
                    assert!(tail.bytes > 0 && tail.bytes <= lost, "flip at {at}: {tail}");
                } else {
                    // Only a byte no checksum covers and no reader uses.
                    harmless += 1;
                    assert_eq!(entries, all, "flip at {at}: {recovered}");
                    assert_eq!(store.hard_state(), last_hs, "flip at {at}");
                }
            }
            Err(e) => {
                refused += 1;
                assert_eq!(e.kind(), io::ErrorKind::InvalidData, "flip at {at}: {e}");
            }
        }
    }
    println!("flips near the tail: {cut} cut and reported, {refused} refused, {harmless} harmless");
    assert!(cut > 0);
}

/// A flipped byte inside an entry in the middle of the log: raft-engine
/// checks only the last batch at open, so the damage shows when the entries
/// are read, which `LogStore::open` does: it refuses to open.
#[test]
fn a_corrupt_entry_in_the_middle_refuses_to_open() {
    let t = Template::build();
    let middle = &t.batches[BATCHES / 2][0];
    let needle = middle.data.to_vec();
    let err = t
        .open_damaged(|b| {
            let at = b
                .windows(needle.len())
                .position(|w| w == needle)
                .expect("the entry's bytes are in the file");
            b[at + 3] ^= 0x01;
        })
        .expect_err("a damaged entry must not load");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    assert!(err.to_string().contains("is damaged"), "{err}");
    println!("{err}");
}

/// A crash leaves raft-engine's preallocated zeros after the last write:
/// that is not damage, nothing is reported, every synced entry is there.
/// Non-zero bytes there (a write torn by the crash) are reported.
#[test]
fn a_crash_image_opens_whole_and_a_torn_write_in_it_is_reported() {
    let dir = TempDir::new("crash");
    let image = TempDir::new("crash-image");
    let (store, _) = LogStore::open(Some(dir.path())).expect("open");
    let entries: Vec<Entry> = (1..=50).map(entry).collect();
    for chunk in entries.chunks(5) {
        store.append(chunk).expect("append");
        store.set_hard_state(hard_state(chunk[0].index));
        store.persist(true).expect("persist");
    }
    copy_dir(dir.path(), image.path());
    drop(store);
    let file = log_files(image.path()).pop().expect("log file");
    let len = fs::metadata(&file).expect("len").len();
    let bytes = fs::read(&file).expect("read");
    let data_end = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    // raft-engine preallocates with fallocate where the file system has it.
    println!("crash image: {data_end} bytes of data, file of {len} bytes");

    let torn = TempDir::new("crash-torn");
    copy_dir(image.path(), torn.path());
    {
        let (store, recovered) = LogStore::open(Some(image.path())).expect("crash image");
        assert!(recovered.tail_cut.is_none(), "{recovered}");
        assert_eq!(all_entries(&store), entries);
        assert_eq!(store.hard_state(), hard_state(46));
    }
    // A batch header and part of a batch that never completed.
    let torn_file = log_files(torn.path()).pop().expect("log file");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(&torn_file)
        .expect("open");
    io::Seek::seek(&mut f, io::SeekFrom::Start(data_end as u64)).expect("seek");
    f.write_all(&[0x5a; 40]).expect("write");
    drop(f);
    let (store, recovered) = LogStore::open(Some(torn.path())).expect("torn image");
    assert_eq!(
        recovered.tail_cut.as_ref().map(|c| c.bytes),
        Some(40),
        "{recovered}"
    );
    assert_eq!(all_entries(&store), entries);
}

/// Writes handed to the store's writer thread without waiting (what a
/// durable member does every turn) complete in the order they were handed
/// over, even when a later one replaces a suffix of an earlier one that is
/// still queued; the tickets say when each is on disk, the loop is woken
/// for it, and a reopen finds exactly the log the turns left.
#[test]
fn writes_handed_to_the_writer_thread_land_in_order() {
    let dir = TempDir::new("async-writes");
    let wakes = Arc::new(AtomicU64::new(0));
    let mut expected: Vec<Entry> = Vec::new();
    let mut last_hs = HardState::default();
    {
        let (store, _) = LogStore::open(Some(dir.path())).expect("open");
        let counter = Arc::clone(&wakes);
        store.set_notify(Arc::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        }));
        let mut tickets = Vec::new();
        let mut next = 1u64;
        for turn in 0..300u64 {
            // Every fifth turn a new term replaces the last three entries
            // (a conflicting suffix), possibly while they are still queued.
            let (from, term) = if turn % 5 == 4 && next > 4 {
                (next - 3, 2 + turn)
            } else {
                (next, 1)
            };
            let batch: Vec<Entry> = (from..from + 4)
                .map(|i| Entry { term, ..entry(i) })
                .collect();
            store.append(&batch).expect("append");
            expected.truncate(usize::try_from(from - 1).expect("index"));
            expected.extend(batch);
            next = from + 4;
            last_hs = HardState {
                term: 2 + turn,
                ..hard_state(from)
            };
            store.set_hard_state(last_hs.clone());
            let ticket = store
                .persist_async(turn % 3 == 0)
                .expect("handed over")
                .expect("a durable store gives tickets");
            tickets.push(ticket);
        }
        assert!(tickets.windows(2).all(|w| w[1] > w[0]), "tickets only grow");
        let last = *tickets.last().expect("tickets");
        store.wait(last).expect("written");
        assert!(store.written().expect("no failure") >= last);
        assert!(wakes.load(Ordering::Relaxed) > 0, "the loop is woken");
        assert_eq!(all_entries(&store), expected);
    }
    let (store, recovered) = LogStore::open(Some(dir.path())).expect("reopen");
    assert_eq!(all_entries(&store), expected, "{recovered}");
    assert_eq!(recovered.hard_state, last_hs);

    let (memory, _) = LogStore::open(None).expect("memory");
    memory.append(&[entry(1)]).expect("append");
    assert_eq!(
        memory.persist_async(true).expect("memory"),
        None,
        "in memory nothing waits"
    );
}

/// Environment variable that turns `write_errors_surface_as_err` into the
/// child process that runs with a small file-size limit.
const CHILD: &str = "DLM_CLUSTER_LOG_WRITE_ERROR_CHILD";

/// A write the file system refuses (here: `RLIMIT_FSIZE`, so a file cannot
/// grow past 256 KiB and `write` fails with `EFBIG`, like a full disk fails
/// with `ENOSPC`) comes back as `Err` from `persist`, never as a panic, and
/// every later write fails too. Runs in a child process, since the limit
/// is process-wide.
#[test]
fn write_errors_surface_as_err() {
    if let Some(dir) = std::env::var_os(CHILD) {
        write_error_child(Path::new(&dir));
        return;
    }
    let dir = TempDir::new("write-error");
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "write_errors_surface_as_err",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, dir.path())
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {stdout}\n{stderr}");
    assert!(
        stdout.contains("persist failed after"),
        "{stdout}\n{stderr}"
    );
    println!("{stdout}");
}

fn write_error_child(dir: &Path) {
    // SAFETY: ignoring SIGXFSZ (so an oversized write returns EFBIG instead
    // of killing the process) and lowering this process's own soft limit
    // touch no memory of ours; nothing else runs in this child.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &raw mut limit), 0);
        limit.rlim_cur = 256 << 10;
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &raw const limit), 0);
    }
    let (store, _) = LogStore::open(Some(dir)).expect("open");
    let mut index = 1;
    let mut failure = None;
    // Incompressible data: raft-engine compresses batches past 8 KiB.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut noise = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed.to_le_bytes()[0]
            })
            .collect()
    };
    for turn in 0..1000 {
        let batch: Vec<Entry> = (index..index + 16)
            .map(|i| Entry {
                data: noise(1024).into(),
                ..entry(i)
            })
            .collect();
        index += 16;
        store
            .append(&batch)
            .expect("staging never touches the disk");
        store.set_hard_state(hard_state(index - 17));
        if let Err(e) = store.persist(true) {
            failure = Some((turn, e));
            break;
        }
    }
    let (turn, e) = failure.expect("a 256 KiB file limit must stop the writes");
    println!("persist failed after {turn} turns: {e}");
    let again = store
        .persist(true)
        .expect_err("a failed store stays failed");
    println!("then: {again}");
    assert!(
        again.to_string().contains("stopped after a failed write"),
        "{again}"
    );
    assert!(store.append(&[entry(index)]).is_err());
    assert!(
        store
            .save_snapshot(1, ConfState::default(), vec![0; 1 << 20])
            .is_err()
    );
}

/// raft-engine logs through the `log` crate; a `tracing` subscriber set up
/// with `init`/`try_init` (as `main` does) also installs tracing-log's
/// `LogTracer`, so its warnings reach dlm-server's log beside ours.
#[test]
fn raft_engine_warnings_reach_tracing() {
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the only subscriber of this test binary");

    let t = Template::build();
    let (_, recovered) = t
        .open_damaged(|b| {
            let len = b.len();
            b.truncate(len - 3);
        })
        .expect("open");
    assert!(recovered.tail_cut.is_some(), "{recovered}");
    let text = String::from_utf8_lossy(
        &capture
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned();
    assert!(
        text.contains("Truncating log file"),
        "raft-engine's own warning: {text}"
    );
    assert!(text.contains("torn or corrupt tail"), "ours: {text}");
}

/// Synced-batch latency of `LogStore::persist(true)` for 1, 64 and 256
/// entries of 64 bytes plus a `HardState`, beside the raw fdatasync latency
/// of the same disk at the same time (this VM's fsync speed varies a lot).
/// `cargo test -p dlm-server --test cluster_log -- --ignored --nocapture`
#[test]
#[ignore = "a benchmark: run with --ignored --nocapture"]
fn synced_write_latency() {
    fn report(what: &str, mut samples: Vec<f64>) {
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        println!(
            "{what:<40} p50 {:7.3} ms  p99 {:7.3} ms  mean {:7.3} ms",
            at(0.5),
            at(0.99),
            mean
        );
    }
    let dir = TempDir::new("bench");
    let rounds = 300;
    let probe = |label: &str| {
        let path = dir.path().join("probe");
        let mut f = fs::File::create(&path).expect("probe");
        let block = vec![7u8; 4096];
        let samples = (0..rounds)
            .map(|_| {
                let start = Instant::now();
                f.write_all(&block).expect("write");
                f.sync_data().expect("fdatasync");
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        report(label, samples);
        let _ = fs::remove_file(path);
    };
    probe("raw 4 KiB write + fdatasync (before)");
    for per_batch in [1u64, 64, 256] {
        let (store, _) =
            LogStore::open(Some(&dir.path().join(format!("log{per_batch}")))).expect("open");
        let mut index = 1;
        let mut synced = Vec::new();
        let mut unsynced = Vec::new();
        for round in 0..rounds * 2 {
            let batch: Vec<Entry> = (index..index + per_batch)
                .map(|i| Entry {
                    index: i,
                    term: 1,
                    data: vec![b'x'; 64].into(),
                    ..Entry::default()
                })
                .collect();
            index += per_batch;
            let start = Instant::now();
            store.append(&batch).expect("append");
            store.set_hard_state(hard_state(index - 1));
            let sync = round % 2 == 0;
            store.persist(sync).expect("persist");
            let ms = start.elapsed().as_secs_f64() * 1e3;
            if sync {
                synced.push(ms);
            } else {
                unsynced.push(ms);
            }
        }
        report(&format!("persist(sync), {per_batch} entries/batch"), synced);
        report(
            &format!("persist(no sync), {per_batch} entries/batch"),
            unsynced,
        );
    }
    probe("raw 4 KiB write + fdatasync (after)");
}
