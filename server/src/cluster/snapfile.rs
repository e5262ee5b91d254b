//! Snapshot files: the latest Raft snapshots of a node, one file each, in
//! the `snap/` folder of its data directory.
//!
//! This module owns the file format and the rules that make a snapshot
//! durable: write a temporary file, fsync it, rename it into place, fsync
//! the folder. It keeps the newest two snapshots, so that a damaged newest
//! one can fall back on the one before. It never decides when a snapshot is
//! taken or what is in it ([`LogStore`](super::log::LogStore) and the node
//! do), and it never returns a snapshot whose checksum does not match.
//!
//! ```text
//! snap/snap-00000000000000004096.snap
//!   0  magic     8 bytes  "dlmsnap" + format version (1)
//!   8  body_len  u64 LE
//!  16  crc32     u32 LE   of bytes 0..16 and of the body
//!  20  body      the protobuf `eraftpb::Snapshot` (metadata + data)
//! ```

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::Snapshot;

/// The first 8 bytes of every snapshot file; the last one is the format version.
const MAGIC: [u8; 8] = *b"dlmsnap\x01";
/// Bytes before the body: magic, body length, checksum.
const HEADER_LEN: usize = 20;
/// Name prefix and suffix of a snapshot file; the index sits in between.
const PREFIX: &str = "snap-";
const SUFFIX: &str = ".snap";
/// Suffix of a file being written (removed at open if a crash left it).
const TMP_SUFFIX: &str = ".tmp";
/// Suffix a damaged snapshot file is renamed to, so it is reported once
/// and kept for inspection rather than read again.
const DAMAGED_SUFFIX: &str = ".damaged";

/// A snapshot file that could not be used (torn, corrupt or unreadable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedSnapshot {
    /// Where the file is now (renamed with a `.damaged` suffix when possible).
    pub path: PathBuf,
    /// What was wrong with it.
    pub reason: String,
}

impl fmt::Display for DamagedSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// What [`load_latest`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The newest intact snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// Newer files that were damaged and skipped, newest first.
    pub damaged: Vec<DamagedSnapshot>,
}

/// The file name of the snapshot at `index` (zero-padded, so names sort
/// like indexes).
fn file_name(index: u64) -> String {
    format!("{PREFIX}{index:020}{SUFFIX}")
}

/// The index in a snapshot file's name, or `None` for any other file.
fn index_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Encodes a snapshot as the bytes of a snapshot file.
pub fn encode(snapshot: &Snapshot) -> io::Result<Vec<u8>> {
    let body = snapshot
        .write_to_bytes()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out);
    crc.update(&body);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes the bytes of a snapshot file; `Err` says why they are not a
/// whole, intact snapshot.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, String> {
    let Some((header, body)) = bytes.split_at_checked(HEADER_LEN) else {
        return Err(format!("{} bytes, shorter than the header", bytes.len()));
    };
    let (magic, rest) = header.split_at(8);
    if magic != MAGIC {
        return Err("not a dlm snapshot file (bad magic or format version)".into());
    }
    let (len, crc) = rest.split_at(8);
    let len = u64::from_le_bytes(len.try_into().map_err(|_| "short header")?);
    let crc = u32::from_le_bytes(crc.try_into().map_err(|_| "short header")?);
    if len != body.len() as u64 {
        return Err(format!(
            "torn: the header announces {len} bytes of body, the file holds {}",
            body.len()
        ));
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[..16]);
    hasher.update(body);
    if hasher.finalize() != crc {
        return Err("checksum mismatch".into());
    }
    Snapshot::parse_from_bytes(body).map_err(|e| format!("undecodable body: {e}"))
}

/// Makes a folder's entries (a created, renamed or removed file) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `snapshot` durably into `dir` (temporary file, fsync, rename,
/// fsync of the folder), then removes all but the newest two snapshot
/// files. Returns the file's path. When this returns `Ok`, the snapshot
/// survives a crash.
pub fn write(dir: &Path, snapshot: &Snapshot) -> io::Result<PathBuf> {
    let index = snapshot.get_metadata().index;
    let bytes = encode(snapshot)?;
    let path = dir.join(file_name(index));
    let tmp = dir.join(format!("{}{TMP_SUFFIX}", file_name(index)));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    prune(dir, 2)?;
    Ok(path)
}

/// The snapshot files in `dir`, newest first.
fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    for item in fs::read_dir(dir)? {
        let item = item?;
        if let Some(index) = item.file_name().to_str().and_then(index_of) {
            files.push((index, item.path()));
        }
    }
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    Ok(files)
}

/// Removes all but the newest `keep` snapshot files.
fn prune(dir: &Path, keep: usize) -> io::Result<()> {
    let mut removed = false;
    for (_, path) in list(dir)?.into_iter().skip(keep) {
        fs::remove_file(path)?;
        removed = true;
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Reads the newest intact snapshot in `dir`. Leftover temporary files (a
/// crash while writing) are removed; a damaged file is renamed with a
/// `.damaged` suffix, reported in [`Loaded::damaged`], and the next older
/// one is tried. `Err` only for I/O errors on the folder itself.
pub fn load_latest(dir: &Path) -> io::Result<Loaded> {
    let mut loaded = Loaded::default();
    for item in fs::read_dir(dir)? {
        let item = item?;
        let name = item.file_name();
        if name.to_str().is_some_and(|n| n.ends_with(TMP_SUFFIX)) {
            fs::remove_file(item.path())?;
        }
    }
    for (index, path) in list(dir)? {
        let reason = match read(&path) {
            Ok(snapshot) if snapshot.get_metadata().index == index => {
                loaded.snapshot = Some(snapshot);
                break;
            }
            Ok(snapshot) => format!(
                "holds the snapshot at index {}, not {index} as its name says",
                snapshot.get_metadata().index
            ),
            Err(reason) => reason,
        };
        let mut damaged = path.clone().into_os_string();
        damaged.push(DAMAGED_SUFFIX);
        let damaged = PathBuf::from(damaged);
        let path = match fs::rename(&path, &damaged) {
            Ok(()) => damaged,
            Err(_) => path,
        };
        loaded.damaged.push(DamagedSnapshot { path, reason });
    }
    if !loaded.damaged.is_empty() {
        sync_dir(dir)?;
    }
    Ok(loaded)
}

/// Reads and checks one snapshot file.
fn read(path: &Path) -> Result<Snapshot, String> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| format!("unreadable: {e}"))?;
    decode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::ConfState;

    fn snapshot(index: u64, data: &[u8]) -> Snapshot {
        let mut s = Snapshot::default();
        s.mut_metadata().index = index;
        s.mut_metadata().term = 3;
        s.mut_metadata()
            .set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        s.data = data.to_vec().into();
        s
    }

    #[test]
    fn every_damage_is_detected() {
        let good = encode(&snapshot(7, b"engine bytes")).expect("encode");
        assert_eq!(
            decode(&good).expect("intact").data.as_ref(),
            b"engine bytes"
        );
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            assert!(decode(&bad).is_err(), "flip at {at}");
        }
    }

    #[test]
    fn names_sort_like_indexes() {
        assert_eq!(index_of(&file_name(42)), Some(42));
        assert_eq!(index_of(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(index_of("snap-42.snap"), None);
        assert_eq!(index_of("snap-00000000000000000042.snap.tmp"), None);
        assert!(file_name(9) < file_name(10));
    }
}
