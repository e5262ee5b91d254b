//! The fault shim (tests/chaos/shim/dlm-chaos-shim.c, an `LD_PRELOAD`
//! library built here with the C compiler): it records how much of each
//! file a member had synced, so that after a SIGKILL the suite can cut
//! exactly the unsynced tail of its data directory (what a power loss
//! could take), and it shifts a member's wall clock, and jumps forward or
//! stalls its monotonic clock, on demand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::members::Members;
use super::rng::Rng;

/// The shim's C source.
pub fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("chaos/shim/dlm-chaos-shim.c")
}

/// Builds the shim into `out` (a `.so`) with `cc`.
pub fn build(out: &Path) -> Result<PathBuf, String> {
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
        .arg(out)
        .arg(source())
        .arg("-ldl")
        .status()
        .map_err(|e| format!("cannot run cc: {e}"))?;
    if status.success() {
        Ok(out.to_path_buf())
    } else {
        Err("cc failed on the shim".into())
    }
}

/// The sync record of the member whose data directory is `data_dir`.
pub fn sync_log(data_dir: &Path) -> PathBuf {
    data_dir.with_extension("synced")
}

/// The clock-offset file of that member.
pub fn clock_file(data_dir: &Path) -> PathBuf {
    data_dir.with_extension("clock")
}

/// The synced length of every file, from a sync record (the last line for
/// a path wins).
pub fn synced_lengths(record: &str) -> BTreeMap<PathBuf, u64> {
    let mut m = BTreeMap::new();
    for line in record.lines() {
        if let Some((path, len)) = line.rsplit_once('\t')
            && let Ok(len) = len.parse::<u64>()
        {
            m.insert(PathBuf::from(path), len);
        }
    }
    m
}

/// After a SIGKILL: cuts every file of `data_dir` that the member synced
/// at least once back to a point between its last synced length and its
/// current length (drawn from `rng`), as a power loss would; files it
/// never synced are left alone (nothing acknowledged can be in them).
/// Clears the record (the restarted member writes a new one). Returns the
/// bytes cut.
pub fn cut_unsynced_tail(data_dir: &Path, rng: &mut Rng) -> std::io::Result<u64> {
    let record_path = sync_log(data_dir);
    let record = std::fs::read_to_string(&record_path).unwrap_or_default();
    let synced = synced_lengths(&record);
    let mut cut = 0;
    for (path, len) in synced {
        if !path.starts_with(data_dir) {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let size = meta.len();
        if size <= len {
            continue;
        }
        let keep = rng.range(len, size);
        let f = std::fs::OpenOptions::new().write(true).open(&path)?;
        f.set_len(keep)?;
        cut += size - keep;
    }
    std::fs::write(&record_path, b"")?;
    Ok(cut)
}

/// The size of a clock file: the wall-clock offset (s), the monotonic
/// offset (ns) and the monotonic ceiling (ns, 0 for none), each an `i64`.
pub const CLOCK_FILE_LEN: u64 = 24;

/// Creates the clock file of that member (every clock real) unless it is
/// there already with its full length. The member maps it: it must exist,
/// whole, before the member starts.
pub fn init_clock(data_dir: &Path) -> std::io::Result<()> {
    let f = clock_file(data_dir);
    if std::fs::metadata(&f).is_ok_and(|m| m.len() == CLOCK_FILE_LEN) {
        return Ok(());
    }
    std::fs::write(f, [0u8; 24])
}

fn write_word(data_dir: &Path, word: u64, value: i64) -> std::io::Result<()> {
    // In place: the member maps these bytes, and a truncation (as
    // `fs::write` does) would fault its next read of the clock.
    use std::os::unix::fs::FileExt as _;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(clock_file(data_dir))?;
    f.write_all_at(&value.to_le_bytes(), word * 8)
}

fn read_word(data_dir: &Path, word: u64) -> std::io::Result<i64> {
    use std::os::unix::fs::FileExt as _;
    let f = std::fs::File::open(clock_file(data_dir))?;
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, word * 8)?;
    Ok(i64::from_le_bytes(b))
}

/// The machine's real `CLOCK_MONOTONIC`, in nanoseconds (the clock the
/// shim shifts; this process is not under the shim).
pub fn real_monotonic_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes the timespec we own.
    #[allow(unsafe_code)]
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts);
    }
    ts.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec)
}

/// Shifts the wall clock of that member by `secs` from the real one.
pub fn jump_clock(data_dir: &Path, secs: i64) -> std::io::Result<()> {
    write_word(data_dir, 0, secs)
}

/// Jumps that member's monotonic clocks forward by `ns` more.
pub fn jump_monotonic(data_dir: &Path, ns: i64) -> std::io::Result<()> {
    let off = read_word(data_dir, 1)?;
    write_word(data_dir, 1, off.saturating_add(ns.max(0)))
}

/// Stops that member's monotonic clocks where they read now; returns the
/// real monotonic time of the stop (for [`end_stall`]).
pub fn stall_monotonic(data_dir: &Path) -> std::io::Result<i64> {
    let off = read_word(data_dir, 1)?;
    let now = real_monotonic_ns();
    write_word(data_dir, 2, now.saturating_add(off).max(1))?;
    Ok(now)
}

/// Lets that member's monotonic clocks go on from where they stopped at
/// real monotonic time `since` (the time the stall took never counts).
pub fn end_stall(data_dir: &Path, since: i64) -> std::io::Result<()> {
    let off = read_word(data_dir, 1)?;
    let stalled = real_monotonic_ns().saturating_sub(since).max(0);
    // Offset first, then the ceiling off: in between, the clock reads at
    // most the ceiling, and the lowered offset brings it to about the
    // ceiling, so it never goes back.
    write_word(data_dir, 1, off.saturating_sub(stalled))?;
    write_word(data_dir, 2, 0)
}

/// Every member's wall clock back to the real one, and every stall ended
/// (a monotonic clock cannot go back: its offset stays).
pub fn reset_clocks(members: &Members) {
    for m in members.members.values() {
        let f = clock_file(&m.data_dir);
        if f.exists() {
            let _ = jump_clock(&m.data_dir, 0);
            if read_word(&m.data_dir, 2).is_ok_and(|c| c != 0) {
                // An unfinished stall: let the clock run on from its
                // ceiling (ceiling - offset is when it stopped).
                let since = read_word(&m.data_dir, 2)
                    .unwrap_or(0)
                    .saturating_sub(read_word(&m.data_dir, 1).unwrap_or(0));
                let _ = end_stall(&m.data_dir, since);
            }
        }
    }
}
