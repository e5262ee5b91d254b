//! The fault shim (tests/chaos/shim/dlm-chaos-shim.c, an `LD_PRELOAD`
//! library built here with the C compiler): it records how much of each
//! file a member had synced, so that after a SIGKILL the suite can cut
//! exactly the unsynced tail of its data directory (what a power loss
//! could take), and it shifts a member's wall clock on demand.

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

/// Shifts the wall clock of that member by `secs` from the real one.
pub fn jump_clock(data_dir: &Path, secs: i64) -> std::io::Result<()> {
    // In place: the member maps these 8 bytes, and a truncation (as
    // `fs::write` does) would fault its next read of the clock.
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(clock_file(data_dir))?;
    f.write_all(&secs.to_le_bytes())
}

/// Every member's wall clock back to the real one.
pub fn reset_clocks(members: &Members) {
    for m in members.members.values() {
        let f = clock_file(&m.data_dir);
        if f.exists() {
            let _ = jump_clock(&m.data_dir, 0);
        }
    }
}
