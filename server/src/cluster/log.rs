//! The Raft log of a dlm node: [`LogStore`], raft-rs's [`Storage`], kept in
//! memory and, with a data directory, made durable in raft-engine.
//!
//! ```text
//!          RawNode<LogStore> reads ─┐          ┌─ the loop writes, once per turn:
//!                                   ▼          ▼  append, set_hard_state, set_conf_state,
//!   ┌──────────────── LogStore (a handle; clones share one Inner) ───────────────┐
//!   │ cache: HardState, ConfState, latest Snapshot, entries since it             │
//!   │ staged: one raft-engine LogBatch ──persist(sync)──▶ DIR/raft/ (raft-engine) │
//!   │ install_snapshot / save_snapshot ─────────────────▶ DIR/snap/ (snapfile)   │
//!   └────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! What it owns: the node's log entries since its latest snapshot, its
//! `HardState` and `ConfState`, its latest snapshot, and (with a data
//! directory) their durable copies: raft-engine's files in `DIR/raft/`, the
//! snapshot files in `DIR/snap/` ([`super::snapfile`]), and the
//! node's identity in `DIR/cluster.json` ([`Meta`]).
//!
//! What it must never do:
//! - answer raft-rs from anything but its in-memory cache (reads never touch
//!   the disk, so they cannot fail halfway through a `Ready`);
//! - panic on a write error or on damaged data: writes return `Err` (the
//!   caller stops the node, so nothing that was not persisted is ever
//!   acknowledged), and after one failed write every later [`LogStore::persist`]
//!   fails too;
//! - load a damaged entry: a torn or corrupt tail of the newest log file is
//!   cut by raft-engine and *reported* in [`Recovered::tail_cut`]; damage
//!   anywhere else makes [`LogStore::open`] fail;
//! - decide anything about consensus: it stores what raft-rs hands it.
//!
//! The store is used from one thread (the event loop). raft-rs holds one
//! handle inside `RawNode`, the loop another; the mutex between them is never
//! contended. Its writes to raft-engine are made by its writer thread
//! ([`super::persister`]), in the order they were handed over, so that the
//! loop goes on during an fsync ([`LogStore::persist_async`]). raft-engine itself starts a metrics thread per open store and,
//! while recovering, rayon's global pool; neither touches the store.
//!
//! raft-engine logs through the `log` crate. `tracing_subscriber`'s `init()`
//! (as in `main.rs`) installs tracing-log's `LogTracer`, so its lines reach
//! dlm-server's log with target `raft_engine` (tested in
//! `tests/cluster_log.rs`). It warns "Truncating log file due to broken
//! batch" after *every* unclean stop, because it preallocates files with
//! zeros; only [`Recovered::tail_cut`] (and this module's warning) says that
//! data was actually cut.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read as _};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use raft_engine::{
    Command, Config as EngineConfig, Engine, LogBatch, MessageExt, ReadableSize, RecoveryMode,
};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::persister::{Notify, Persister};
use super::snapfile::{self, DamagedSnapshot};

/// raft-engine's "region": dlm has one Raft group per node.
const GROUP: u64 = 1;
/// raft-engine keys of the two protobuf messages kept beside the entries.
const KEY_HARD_STATE: &[u8] = b"hard_state";
const KEY_CONF_STATE: &[u8] = b"conf_state";
/// raft-engine's folder and the snapshots' folder inside the data directory.
const RAFT_DIR: &str = "raft";
const SNAP_DIR: &str = "snap";
/// raft-engine starts a new file past this size. It bounds what
/// [`LogStore::open`] scans for a damaged tail.
const TARGET_FILE_SIZE: u64 = 16 << 20;
/// raft-engine deletes files holding only compacted entries once its files
/// add up to more than this. Above the node's snapshot interval, so purging
/// finds whole files to delete rather than live entries to rewrite.
const PURGE_THRESHOLD: u64 = 128 << 20;
/// raft-engine's suffixes of the files its recovery may cut (the newest of
/// each queue).
const LOG_SUFFIXES: [&str; 2] = [".raftlog", ".rewrite"];

/// How raft-engine reads our entries' indexes.
#[derive(Clone, Copy)]
struct EntryExt;

impl MessageExt for EntryExt {
    type Entry = Entry;

    fn index(e: &Entry) -> u64 {
        e.index
    }
}

/// The Raft log of a dlm node, in memory and, when opened with a data
/// directory, in raft-engine. A cheap handle: clones share the same log, so
/// `RawNode<LogStore>` reads it while the loop writes it after each `Ready`.
///
/// Writing, once per loop turn: [`append`](Self::append),
/// [`set_hard_state`](Self::set_hard_state),
/// [`set_conf_state`](Self::set_conf_state) (and
/// [`install_snapshot`](Self::install_snapshot) or
/// [`compact`](Self::compact)) stage their changes and update the cache at
/// once; [`persist`](Self::persist) then writes everything staged in one
/// raft-engine batch, synced if asked (group commit), or
/// [`persist_async`](Self::persist_async) hands it to the writer thread
/// and returns a ticket to wait for.
///
/// A new member bootstraps by setting its initial `ConfState` (and
/// persisting it) before creating its `RawNode`; a restarted one creates its
/// `RawNode` with `Config::applied` at the latest snapshot's index, after
/// restoring its engine from [`Storage::snapshot`].
///
/// ```no_run
/// use dlm_server::cluster::log::LogStore;
/// use raft::eraftpb::ConfState;
///
/// let (store, recovered) = LogStore::open(Some("d1".as_ref()))?;
/// println!("{recovered}");
/// if recovered.fresh {
///     store.set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
///     store.persist(true)?;
/// }
/// // RawNode::new(&config, store.clone(), &logger), then once per turn:
/// // store.append(rd.entries())?; store.set_hard_state(hs);
/// // store.persist(rd.must_sync())?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

impl fmt::Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("LogStore")
            .field("durable", &inner.durable.is_some())
            .field("first_index", &inner.first_index())
            .field("last_index", &inner.last_index())
            .field("hard_state", &inner.hard_state)
            .field("failed", &inner.failed)
            .finish_non_exhaustive()
    }
}

/// The state behind every handle.
struct Inner {
    /// raft-engine and the snapshot folder; `None` in memory mode.
    durable: Option<Durable>,
    hard_state: HardState,
    conf_state: ConfState,
    /// The latest snapshot (index 0: none yet).
    snapshot: Snapshot,
    /// Contiguous entries from `first_index()`; usually right after the
    /// snapshot.
    entries: Vec<Entry>,
    /// `hard_state` / `conf_state` changed since the last persist.
    hard_state_dirty: bool,
    conf_state_dirty: bool,
    /// Entries were compacted since the last persist: purge raft-engine's
    /// files after it.
    compacted: bool,
    /// Why an earlier write failed; every later write fails too.
    failed: Option<String>,
    /// The member raft-rs last asked a snapshot for that the one held
    /// cannot serve (too old, or taken before that member was added): the
    /// node takes a new one at its next turn.
    snapshot_wanted: Option<u64>,
}

/// The durable side of a store opened with a data directory.
struct Durable {
    engine: Arc<Engine>,
    /// Everything staged since the last persist.
    batch: LogBatch,
    /// The thread that writes and syncs it.
    writer: Persister,
    /// `DIR/snap/`.
    snap_dir: PathBuf,
}

/// What [`LogStore::open`] found in the data directory.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// The data directory, or `None` in memory mode.
    pub dir: Option<PathBuf>,
    /// Nothing was there: a new node (always true in memory mode).
    pub fresh: bool,
    /// Entries loaded into the log (after the snapshot).
    pub entries: u64,
    /// The log's first and last index (`first_index > last_index` when it
    /// holds no entry).
    pub first_index: u64,
    /// See [`first_index`](Self::first_index).
    pub last_index: u64,
    /// The recovered `HardState`.
    pub hard_state: HardState,
    /// `(index, term)` of the latest snapshot, if any.
    pub snapshot: Option<(u64, u64)>,
    /// Entries dropped because the snapshot already covers them (a crash
    /// between writing a snapshot and compacting the log).
    pub discarded: u64,
    /// raft-engine cut a torn or corrupt tail off its newest file.
    pub tail_cut: Option<TailCut>,
    /// Snapshot files that were damaged and skipped.
    pub damaged_snapshots: Vec<DamagedSnapshot>,
}

/// A damaged tail that raft-engine's recovery cut off a log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailCut {
    /// The file that was cut.
    pub file: PathBuf,
    /// Bytes of data removed (the zeros raft-engine preallocates past its
    /// last write are not counted).
    pub bytes: u64,
}

impl fmt::Display for TailCut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a torn or corrupt tail of {} bytes was cut from {} (the writes in it never completed, \
             or the disk damaged them); the log now ends before it",
            self.bytes,
            self.file.display()
        )
    }
}

impl fmt::Display for Recovered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(dir) = &self.dir else {
            return f.write_str("raft log in memory");
        };
        if self.fresh {
            return write!(f, "new raft log in {}", dir.display());
        }
        write!(
            f,
            "raft log in {}: {} entries ({}..={}), term {}, vote {}, commit {}",
            dir.display(),
            self.entries,
            self.first_index,
            self.last_index,
            self.hard_state.term,
            self.hard_state.vote,
            self.hard_state.commit,
        )?;
        match self.snapshot {
            Some((index, term)) => write!(f, ", snapshot at {index} (term {term})")?,
            None => f.write_str(", no snapshot")?,
        }
        if self.discarded > 0 {
            write!(
                f,
                ", {} entries covered by the snapshot dropped",
                self.discarded
            )?;
        }
        if let Some(cut) = &self.tail_cut {
            write!(f, "; {cut}")?;
        }
        for damaged in &self.damaged_snapshots {
            write!(f, "; damaged snapshot skipped: {damaged}")?;
        }
        Ok(())
    }
}

/// An `io::Error` of kind `InvalidInput`: the caller broke the store's rules.
fn misuse(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// An `io::Error` of kind `InvalidData`: the data on disk is damaged.
fn damaged(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Converts raft-engine's error, keeping the I/O error kind when there is one.
fn engine_error(context: &str, e: raft_engine::Error) -> io::Error {
    let (kind, message) = match e {
        // raft-engine's own I/O errors carry only the call's name ("pwrite"):
        // add what the kind says ("file too large", "no storage space").
        raft_engine::Error::Io(io) => (io.kind(), format!("{io} ({})", io.kind())),
        e @ (raft_engine::Error::Corruption(_)
        | raft_engine::Error::Codec(_)
        | raft_engine::Error::Protobuf(_)) => (io::ErrorKind::InvalidData, e.to_string()),
        e => (io::ErrorKind::Other, e.to_string()),
    };
    io::Error::new(kind, format!("{context}: {message}"))
}

/// The message of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// Runs a raft-engine call that may panic on an I/O error (its `write`
/// panics when fdatasync fails) and turns the panic into an error.
pub(super) fn guarded<T>(
    context: &str,
    f: impl FnOnce() -> raft_engine::Result<T>,
) -> io::Result<T> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.map_err(|e| engine_error(context, e)),
        Err(payload) => Err(io::Error::other(format!(
            "{context}: raft-engine panicked: {}",
            panic_message(payload.as_ref())
        ))),
    }
}

impl Inner {
    fn new(durable: Option<Durable>) -> Inner {
        Inner {
            durable,
            hard_state: HardState::default(),
            conf_state: ConfState::default(),
            snapshot: Snapshot::default(),
            entries: Vec::new(),
            hard_state_dirty: false,
            conf_state_dirty: false,
            snapshot_wanted: None,
            compacted: false,
            failed: None,
        }
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    fn first_index(&self) -> u64 {
        self.entries
            .first()
            .map_or(self.snapshot_index() + 1, |e| e.index)
    }

    fn last_index(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot_index(), |e| e.index)
    }

    /// The term of entry `index`, or `None` outside
    /// `[first_index - 1 (the snapshot), last_index]`.
    fn term(&self, index: u64) -> Result<u64, StorageError> {
        let meta = self.snapshot.get_metadata();
        if index == meta.index {
            return Ok(meta.term);
        }
        let first = self.first_index();
        if index < first {
            return Err(StorageError::Compacted);
        }
        usize::try_from(index - first)
            .ok()
            .and_then(|at| self.entries.get(at))
            .map(|e| e.term)
            .ok_or(StorageError::Unavailable)
    }

    fn check_healthy(&self) -> io::Result<()> {
        match &self.failed {
            Some(why) => Err(io::Error::other(format!(
                "the raft log stopped after a failed write: {why}"
            ))),
            None => Ok(()),
        }
    }

    /// Records a write failure: this store never writes again.
    fn fail(&mut self, e: io::Error) -> io::Error {
        self.failed = Some(e.to_string());
        if let Some(d) = &mut self.durable {
            d.batch = LogBatch::default();
        }
        e
    }
}

impl LogStore {
    /// Opens the log: in memory with `None`, else in `dir` (created with its
    /// parents if missing), recovering the `HardState`, the `ConfState`, the
    /// latest intact snapshot and the entries after it.
    ///
    /// A torn or corrupt tail of raft-engine's newest file is cut (by
    /// raft-engine) and reported in [`Recovered::tail_cut`] and as a warning.
    /// Damaged entries anywhere else, a log that does not reach back to the
    /// snapshot, or a `HardState` that commits entries the log does not hold
    /// make it fail with `ErrorKind::InvalidData`: that node must be rebuilt
    /// from its peers, never started on a damaged log.
    pub fn open(dir: Option<&Path>) -> io::Result<(LogStore, Recovered)> {
        let Some(dir) = dir else {
            let store = LogStore {
                inner: Arc::new(Mutex::new(Inner::new(None))),
            };
            let recovered = Recovered {
                fresh: true,
                first_index: 1,
                ..Recovered::default()
            };
            return Ok((store, recovered));
        };
        open_dir(dir)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // One thread uses the store; a poisoned lock only means an earlier
        // panic elsewhere, and the data stays consistent (every mutation is
        // done before anything that can panic).
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this store writes to a data directory.
    pub fn is_durable(&self) -> bool {
        self.lock().durable.is_some()
    }

    /// The current `HardState` (staged or persisted).
    pub fn hard_state(&self) -> HardState {
        self.lock().hard_state.clone()
    }

    /// The current `ConfState` (staged or persisted).
    pub fn conf_state(&self) -> ConfState {
        self.lock().conf_state.clone()
    }

    /// Whether raft-rs asked for a snapshot that the one held cannot serve
    /// since the last call (the flag is cleared): the node should take a
    /// new one now rather than at its usual interval.
    pub fn take_snapshot_wanted(&self) -> bool {
        self.lock().snapshot_wanted.take().is_some()
    }

    /// The latest snapshot, if any (what a restarting member restores).
    pub fn latest_snapshot(&self) -> Option<Snapshot> {
        let inner = self.lock();
        (inner.snapshot_index() > 0).then(|| inner.snapshot.clone())
    }

    /// `(index, term)` of the latest snapshot, or `(0, 0)` if none.
    pub fn snapshot_index_term(&self) -> (u64, u64) {
        let inner = self.lock();
        let meta = inner.snapshot.get_metadata();
        (meta.index, meta.term)
    }

    /// Stages `entries` (contiguous, from raft-rs's `Ready`) after the log,
    /// first dropping every entry at or after `entries[0].index` (a conflicting
    /// suffix from an older term). `Err` if they would overwrite compacted
    /// entries or leave a gap.
    pub fn append(&self, entries: &[Entry]) -> io::Result<()> {
        let mut inner = self.lock();
        inner.check_healthy()?;
        let Some(head) = entries.first() else {
            return Ok(());
        };
        if let Some(pair) = entries.windows(2).find(|w| w[1].index != w[0].index + 1) {
            return Err(misuse(format!(
                "appended entries are not contiguous: {} then {}",
                pair[0].index, pair[1].index
            )));
        }
        let (first, last) = (inner.first_index(), inner.last_index());
        if head.index < first {
            return Err(misuse(format!(
                "appending at {} would overwrite compacted entries (the log starts at {first})",
                head.index
            )));
        }
        if head.index > last + 1 {
            return Err(misuse(format!(
                "appending at {} would leave a gap after {last}",
                head.index
            )));
        }
        if let Some(d) = &mut inner.durable {
            d.batch
                .add_entries::<EntryExt>(GROUP, entries)
                .map_err(|e| engine_error("staging log entries", e))?;
        }
        let keep = usize::try_from(head.index - first).unwrap_or(usize::MAX);
        inner.entries.truncate(keep);
        inner.entries.extend_from_slice(entries);
        Ok(())
    }

    /// Stages a new `HardState` (`Ready::hs`, or a commit index moved by a
    /// `LightReady`).
    pub fn set_hard_state(&self, hard_state: HardState) {
        let mut inner = self.lock();
        inner.hard_state = hard_state;
        inner.hard_state_dirty = true;
    }

    /// Stages a new commit index, keeping the term and vote.
    pub fn set_commit(&self, commit: u64) {
        let mut inner = self.lock();
        if inner.hard_state.commit != commit {
            inner.hard_state.commit = commit;
            inner.hard_state_dirty = true;
        }
    }

    /// Stages a new `ConfState` (after `apply_conf_change`).
    pub fn set_conf_state(&self, conf_state: ConfState) {
        let mut inner = self.lock();
        inner.conf_state = conf_state;
        inner.conf_state_dirty = true;
    }

    /// Writes everything staged since the last call as one raft-engine batch,
    /// followed by an fdatasync when `sync` (pass `Ready::must_sync()`).
    /// When this returns `Ok(())` with `sync`, all of it (and every earlier
    /// unsynced write) survives a crash. An `Err` is final: the store writes
    /// nothing more, and the node must stop without acknowledging anything
    /// it staged. Memory mode: always `Ok`.
    pub fn persist(&self, sync: bool) -> io::Result<()> {
        match self.persist_async(sync)? {
            Some(ticket) => self.wait(ticket),
            None => Ok(()),
        }
    }

    /// Waits until the write of `ticket` (from
    /// [`persist_async`](Self::persist_async)) is on disk.
    pub fn wait(&self, ticket: u64) -> io::Result<()> {
        let waited = match &self.lock().durable {
            Some(d) => d.writer.wait(ticket),
            None => Ok(ticket),
        };
        waited.map(|_| ()).map_err(|e| self.lock().fail(e))
    }

    /// [`persist`](Self::persist) without waiting: everything staged is
    /// handed to the store's writer thread, and the returned ticket says
    /// when it is on disk (see [`written`](Self::written)); the node must
    /// not send what depends on it before. `None` in memory mode (nothing
    /// to wait for). Writes complete in the order they were handed over.
    pub fn persist_async(&self, sync: bool) -> io::Result<Option<u64>> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.check_healthy()?;
        let Some(d) = &mut inner.durable else {
            inner.hard_state_dirty = false;
            inner.conf_state_dirty = false;
            inner.compacted = false;
            return Ok(None);
        };
        let staged = (|| {
            if inner.hard_state_dirty {
                d.batch
                    .put_message(GROUP, KEY_HARD_STATE.to_vec(), &inner.hard_state)?;
            }
            if inner.conf_state_dirty {
                d.batch
                    .put_message(GROUP, KEY_CONF_STATE.to_vec(), &inner.conf_state)?;
            }
            Ok(())
        })();
        let submitted = staged
            .map_err(|e| engine_error("staging the raft state", e))
            .and_then(|()| {
                let batch = std::mem::take(&mut d.batch);
                d.writer.submit(batch, sync, inner.compacted)
            });
        match submitted {
            Ok(ticket) => {
                inner.hard_state_dirty = false;
                inner.conf_state_dirty = false;
                inner.compacted = false;
                Ok(Some(ticket))
            }
            Err(e) => Err(inner.fail(e)),
        }
    }

    /// The highest ticket of [`persist_async`](Self::persist_async) whose
    /// write is on disk (every earlier one too); 0 in memory mode. An
    /// `Err` is a failed write: final, as for [`persist`](Self::persist).
    pub fn written(&self) -> io::Result<u64> {
        let mut inner = self.lock();
        inner.check_healthy()?;
        let Some(d) = &inner.durable else {
            return Ok(0);
        };
        match d.writer.done() {
            Ok(done) => Ok(done),
            Err(e) => Err(inner.fail(e)),
        }
    }

    /// Sets what the writer thread calls when a write completes (it wakes
    /// the event loop, which then calls [`written`](Self::written)).
    pub fn set_notify(&self, notify: Notify) {
        if let Some(d) = &self.lock().durable {
            d.writer.set_notify(notify);
        }
    }

    /// Installs a snapshot received from the leader (`Ready::snapshot`): the
    /// snapshot file is written durably now; the log's entries are dropped
    /// and the `HardState`/`ConfState` taken from the snapshot, staged for
    /// the next [`persist`](Self::persist). Call it before appending the
    /// same `Ready`'s entries. On `Err` (the file could not be written) the
    /// store is unchanged.
    pub fn install_snapshot(&self, snapshot: Snapshot) -> io::Result<()> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.check_healthy()?;
        let meta = snapshot.get_metadata().clone();
        if meta.index < inner.snapshot_index() {
            return Err(misuse(format!(
                "the snapshot at {} is older than the one held ({})",
                meta.index,
                inner.snapshot_index()
            )));
        }
        let through = inner.last_index().max(meta.index);
        if let Some(d) = &mut inner.durable {
            snapfile::write(&d.snap_dir, &snapshot)?;
            let engine_last = d.engine.last_index(GROUP).unwrap_or(0);
            d.batch.add_command(
                GROUP,
                Command::Compact {
                    index: through.max(engine_last) + 1,
                },
            );
        }
        inner.entries.clear();
        inner.hard_state.term = inner.hard_state.term.max(meta.term);
        inner.hard_state.commit = meta.index;
        inner.hard_state_dirty = true;
        inner.conf_state = meta.get_conf_state().clone();
        inner.conf_state_dirty = true;
        inner.snapshot = snapshot;
        inner.compacted = true;
        Ok(())
    }

    /// Records a snapshot the node took of its state machine at `index`
    /// (its applied index, which must be committed and still in the log),
    /// with the `ConfState` in force at that index. The file is written
    /// durably before this returns; afterwards, [`compact`](Self::compact)
    /// may drop the entries it covers. On `Err` the store is unchanged.
    /// The snapshot (data included) stays in memory for
    /// [`Storage::snapshot`] until the next one replaces it.
    pub fn save_snapshot(
        &self,
        index: u64,
        conf_state: ConfState,
        data: Vec<u8>,
    ) -> io::Result<()> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.check_healthy()?;
        if index <= inner.snapshot_index() {
            return Err(misuse(format!(
                "a snapshot at {index} is not newer than the one held ({})",
                inner.snapshot_index()
            )));
        }
        if index > inner.hard_state.commit {
            return Err(misuse(format!(
                "a snapshot at {index} is past the commit index {}",
                inner.hard_state.commit
            )));
        }
        let term = inner.term(index).map_err(|e| {
            misuse(format!(
                "a snapshot at {index} needs that entry's term: {e}"
            ))
        })?;
        let mut snapshot = Snapshot::default();
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(conf_state);
        snapshot.data = data.into();
        if let Some(d) = &inner.durable {
            snapfile::write(&d.snap_dir, &snapshot)?;
        }
        inner.snapshot = snapshot;
        Ok(())
    }

    /// Drops the entries before `to_index` (staged for the next
    /// [`persist`](Self::persist), after which raft-engine deletes the files
    /// that held only those). Entries after the latest snapshot are never
    /// dropped: `to_index` may be at most the snapshot's index + 1.
    pub fn compact(&self, to_index: u64) -> io::Result<()> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.check_healthy()?;
        let first = inner.first_index();
        if to_index <= first {
            return Ok(());
        }
        let limit = inner.snapshot_index() + 1;
        if to_index > limit {
            return Err(misuse(format!(
                "compacting to {to_index} would drop entries the latest snapshot ({}) does not cover",
                limit - 1
            )));
        }
        let drop = usize::try_from(to_index - first).unwrap_or(usize::MAX);
        inner.entries.drain(..drop.min(inner.entries.len()));
        if let Some(d) = &mut inner.durable {
            d.batch
                .add_command(GROUP, Command::Compact { index: to_index });
        }
        inner.compacted = true;
        Ok(())
    }
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let inner = self.lock();
        Ok(RaftState::new(
            inner.hard_state.clone(),
            inner.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let inner = self.lock();
        let first = inner.first_index();
        if low < first {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > inner.last_index() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let at = |i: u64| usize::try_from(i - first).unwrap_or(usize::MAX);
        let Some(slice) = inner.entries.get(at(low)..at(high)) else {
            return Err(raft::Error::Store(StorageError::Unavailable));
        };
        let max_size = max_size.into();
        let mut out = Vec::new();
        let mut size = 0u64;
        for e in slice {
            size += u64::from(e.compute_size());
            if !out.is_empty() && max_size.is_some_and(|max| size > max) {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.lock().term(idx).map_err(raft::Error::Store)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.lock().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.lock().last_index())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let mut inner = self.lock();
        let index = inner.snapshot_index();
        let cs = inner.snapshot.get_metadata().get_conf_state();
        // A member added after the snapshot was taken is not in its
        // configuration, and raft-rs on that member ignores it (it would
        // wait for ever): such a member needs a newer snapshot.
        let knows_to = cs.voters.contains(&to)
            || cs.learners.contains(&to)
            || cs.voters_outgoing.contains(&to)
            || cs.learners_next.contains(&to);
        if index == 0 || index < request_index || !knows_to {
            // The node takes one at its next turn; raft-rs asks again.
            inner.snapshot_wanted = Some(to);
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(inner.snapshot.clone())
    }
}

/// raft-engine's settings for a dlm node.
fn engine_config(raft_dir: &Path) -> io::Result<EngineConfig> {
    let dir = raft_dir
        .to_str()
        .ok_or_else(|| misuse(format!("{} is not valid UTF-8", raft_dir.display())))?
        .to_owned();
    Ok(EngineConfig {
        dir,
        recovery_mode: RecoveryMode::TolerateTailCorruption,
        target_file_size: ReadableSize(TARGET_FILE_SIZE),
        purge_threshold: ReadableSize(PURGE_THRESHOLD),
        // Recycled files keep an older file's batches past the last write;
        // without recycling, anything non-zero past it is a damaged tail.
        enable_log_recycle: false,
        prefill_for_recycle: false,
        ..EngineConfig::default()
    })
}

/// The newest file of each raft-engine queue (the only ones its recovery
/// may cut) and the end of the last non-zero byte in each. raft-engine
/// preallocates files with zeros, so after a crash a file legitimately ends
/// in zeros; a cut that removes a non-zero byte removed data.
fn scan_tails(raft_dir: &Path) -> io::Result<Vec<(PathBuf, u64)>> {
    let mut newest: [Option<(u64, PathBuf)>; 2] = [None, None];
    for item in fs::read_dir(raft_dir)? {
        let item = item?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        for (slot, suffix) in newest.iter_mut().zip(LOG_SUFFIXES) {
            let Some(seq) = name
                .strip_suffix(suffix)
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<u64>().ok())
            else {
                continue;
            };
            if slot.as_ref().is_none_or(|(s, _)| seq > *s) {
                *slot = Some((seq, item.path()));
            }
        }
    }
    let mut tails = Vec::new();
    for (_, path) in newest.into_iter().flatten() {
        let mut file = File::open(&path)?;
        let mut buf = vec![0u8; 64 << 10];
        let (mut offset, mut end) = (0u64, 0u64);
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            if let Some(last) = buf[..n].iter().rposition(|&b| b != 0) {
                end = offset + last as u64 + 1;
            }
            offset += n as u64;
        }
        tails.push((path, end));
    }
    Ok(tails)
}

fn open_dir(dir: &Path) -> io::Result<(LogStore, Recovered)> {
    let raft_dir = dir.join(RAFT_DIR);
    let snap_dir = dir.join(SNAP_DIR);
    let existed = raft_dir.is_dir();
    fs::create_dir_all(&raft_dir)?;
    fs::create_dir_all(&snap_dir)?;
    if !existed {
        snapfile::sync_dir(dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            snapfile::sync_dir(parent)?;
        }
    }
    let tails = scan_tails(&raft_dir)?;
    let engine = guarded("opening the raft log", || {
        Engine::open(engine_config(&raft_dir).map_err(raft_engine::Error::Io)?)
    })?;
    let mut recovered = Recovered {
        dir: Some(dir.to_owned()),
        ..Recovered::default()
    };
    for (file, nonzero_end) in tails {
        let len = fs::metadata(&file).map_or(0, |m| m.len());
        if nonzero_end > len {
            recovered.tail_cut = Some(TailCut {
                file,
                bytes: nonzero_end - len,
            });
        }
    }

    let loaded = snapfile::load_latest(&snap_dir)?;
    recovered.damaged_snapshots = loaded.damaged;
    let snapshot = loaded.snapshot.unwrap_or_default();
    let (snap_index, snap_term) = {
        let meta = snapshot.get_metadata();
        (meta.index, meta.term)
    };

    let context = |what: &str| format!("reading the {what} in {}", dir.display());
    let stored_hard_state: Option<HardState> = engine
        .get_message(GROUP, KEY_HARD_STATE)
        .map_err(|e| engine_error(&context("HardState"), e))?;
    let stored_conf_state: Option<ConfState> = engine
        .get_message(GROUP, KEY_CONF_STATE)
        .map_err(|e| engine_error(&context("ConfState"), e))?;

    let mut entries = Vec::new();
    if let (Some(first), Some(last)) = (engine.first_index(GROUP), engine.last_index(GROUP)) {
        let fetched = engine
            .fetch_entries_to::<EntryExt>(GROUP, first, last + 1, None, &mut entries)
            .map_err(|e| {
                damaged(format!(
                    "the raft log in {} is damaged (entries {first}..={last}): {e}; \
                     this node must not start on it: move the directory away and rebuild \
                     the node from its peers",
                    dir.display()
                ))
            })?;
        let contiguous = entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.index == first + i as u64);
        if fetched as u64 != last - first + 1 || !contiguous {
            return Err(damaged(format!(
                "the raft log in {} returned {fetched} entries for {first}..={last}",
                dir.display()
            )));
        }
    }
    recovered.fresh = stored_hard_state.is_none() && entries.is_empty() && snap_index == 0;

    // Reconcile the log with the snapshot: a crash between writing a
    // snapshot file and persisting the log's compaction leaves entries the
    // snapshot covers (or, after installing a leader's snapshot, entries of
    // a history it replaced).
    let mut compact_to = None;
    if let (Some(head), Some(tail)) = (entries.first(), entries.last()) {
        let (first, last) = (head.index, tail.index);
        if first > snap_index + 1 {
            return Err(damaged(format!(
                "the raft log in {} starts at {first} but the newest intact snapshot ends at \
                 {snap_index}: entries in between are lost; rebuild the node from its peers",
                dir.display()
            )));
        }
        if first <= snap_index {
            let at = usize::try_from(snap_index - first).unwrap_or(usize::MAX);
            let matches = entries.get(at).is_some_and(|e| e.term == snap_term);
            let keep_from = if last > snap_index && matches {
                at + 1
            } else {
                entries.len()
            };
            recovered.discarded = keep_from as u64;
            entries.drain(..keep_from);
            compact_to = Some(if keep_from == at + 1 {
                snap_index + 1
            } else {
                last.max(snap_index) + 1
            });
        }
    }

    let mut hard_state = stored_hard_state.clone().unwrap_or_default();
    let snapshot_is_newer = snap_index > hard_state.commit;
    hard_state.term = hard_state.term.max(snap_term);
    hard_state.commit = hard_state.commit.max(snap_index);
    let conf_state = match stored_conf_state {
        Some(cs) if !snapshot_is_newer => cs,
        _ => snapshot.get_metadata().get_conf_state().clone(),
    };
    let last_index = entries.last().map_or(snap_index, |e| e.index);
    if hard_state.commit > last_index {
        return Err(damaged(format!(
            "the raft log in {} commits up to {} but holds entries only up to {last_index}; \
             rebuild the node from its peers",
            dir.display(),
            hard_state.commit
        )));
    }

    let mut batch = LogBatch::default();
    if let Some(index) = compact_to {
        batch.add_command(GROUP, Command::Compact { index });
    }
    if stored_hard_state.as_ref() != Some(&hard_state) && !recovered.fresh {
        batch
            .put_message(GROUP, KEY_HARD_STATE.to_vec(), &hard_state)
            .map_err(|e| engine_error("staging the raft state", e))?;
        batch
            .put_message(GROUP, KEY_CONF_STATE.to_vec(), &conf_state)
            .map_err(|e| engine_error("staging the raft state", e))?;
    }
    if !batch.is_empty() {
        guarded("reconciling the raft log with its snapshot", || {
            engine.write(&mut batch, true)
        })?;
    }

    recovered.entries = entries.len() as u64;
    recovered.first_index = entries.first().map_or(snap_index + 1, |e| e.index);
    recovered.last_index = last_index;
    recovered.hard_state = hard_state.clone();
    recovered.snapshot = (snap_index > 0).then_some((snap_index, snap_term));

    if let Some(cut) = &recovered.tail_cut {
        warn!("{cut}");
    }
    for d in &recovered.damaged_snapshots {
        warn!("damaged snapshot file skipped: {d}");
    }
    info!("{recovered}");

    let engine = Arc::new(engine);
    let inner = Inner {
        hard_state,
        conf_state,
        snapshot,
        entries,
        compacted: compact_to.is_some(),
        ..Inner::new(Some(Durable {
            writer: Persister::start(Arc::clone(&engine))?,
            engine,
            batch: LogBatch::default(),
            snap_dir,
        }))
    };
    let store = LogStore {
        inner: Arc::new(Mutex::new(inner)),
    };
    Ok((store, recovered))
}

/// The identity of a data directory, in `DIR/cluster.json`: which cluster
/// and which member of it the directory belongs to. Written at a node's
/// first start, checked at every later one, so a directory is never started
/// as another node or in another cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// The cluster's ID (random at bootstrap, shared by every member).
    pub cluster_id: u64,
    /// This member's Raft ID (`--node`).
    pub node_id: u64,
}

/// `cluster.json` as stored: the cluster ID in hex, so tools that read
/// JSON numbers as doubles do not round it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetaFile {
    format: u32,
    cluster_id: String,
    node_id: u64,
}

impl Meta {
    /// The file name inside the data directory.
    pub const FILE: &'static str = "cluster.json";

    /// Reads `DIR/cluster.json`; `Ok(None)` if there is none.
    pub fn load(dir: &Path) -> io::Result<Option<Meta>> {
        let path = dir.join(Self::FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        let file: MetaFile =
            serde_json::from_str(&text).map_err(|e| damaged(format!("{}: {e}", path.display())))?;
        if file.format != 1 {
            return Err(damaged(format!(
                "{}: unknown format {}",
                path.display(),
                file.format
            )));
        }
        let cluster_id = u64::from_str_radix(&file.cluster_id, 16)
            .map_err(|e| damaged(format!("{}: cluster_id: {e}", path.display())))?;
        Ok(Some(Meta {
            cluster_id,
            node_id: file.node_id,
        }))
    }

    /// Writes `DIR/cluster.json` durably (temporary file, fsync, rename,
    /// fsync of the folder), creating the directory if missing.
    pub fn store(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)?;
        let file = MetaFile {
            format: 1,
            cluster_id: format!("{:016x}", self.cluster_id),
            node_id: self.node_id,
        };
        let mut text = serde_json::to_string_pretty(&file).map_err(io::Error::other)?;
        text.push('\n');
        let tmp = dir.join(format!("{}.tmp", Self::FILE));
        {
            let mut f = File::create(&tmp)?;
            io::Write::write_all(&mut f, text.as_bytes())?;
            f.sync_all()?;
        }
        fs::rename(&tmp, dir.join(Self::FILE))?;
        snapfile::sync_dir(dir)
    }

    /// Checks that `dir` belongs to `expected` (node and cluster), or, at a
    /// node's first start (no `cluster.json` yet), records `expected` there.
    /// A directory of another node or another cluster is refused with an
    /// `ErrorKind::InvalidInput` error that says whose it is.
    pub fn check_or_create(dir: &Path, expected: Meta) -> io::Result<Meta> {
        match Self::load(dir)? {
            None => {
                expected.store(dir)?;
                Ok(expected)
            }
            Some(found) if found == expected => Ok(found),
            Some(found) => {
                let started_as = if found.cluster_id == expected.cluster_id {
                    format!("node {}", expected.node_id)
                } else {
                    format!(
                        "node {} of cluster {:016x}",
                        expected.node_id, expected.cluster_id
                    )
                };
                Err(misuse(format!(
                    "data directory {} belongs to node {} of cluster {:016x}; started as {started_as}",
                    dir.display(),
                    found.node_id,
                    found.cluster_id
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use raft::eraftpb::{ConfChangeV2, EntryType};
    use raft::{Config as RaftConfig, RawNode, StateRole};

    use super::*;

    /// A fresh directory under the system's temporary folder, removed on drop.
    pub(super) struct TempDir(PathBuf);

    impl TempDir {
        pub(super) fn new(what: &str) -> TempDir {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("dlm-log-{what}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            TempDir(path)
        }

        pub(super) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("entry {index} of term {term}").into_bytes().into(),
            ..Entry::default()
        }
    }

    fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        range.map(|i| entry(i, term)).collect()
    }

    fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote,
            commit,
            ..HardState::default()
        }
    }

    fn voters(ids: &[u64]) -> ConfState {
        ConfState::from((ids.to_vec(), vec![]))
    }

    fn open(dir: &Path) -> (LogStore, Recovered) {
        LogStore::open(Some(dir)).expect("open")
    }

    fn all(store: &LogStore) -> Vec<Entry> {
        let (lo, hi) = (
            store.first_index().expect("first"),
            store.last_index().expect("last"),
        );
        store
            .entries(lo, hi + 1, None, GetEntriesContext::empty(false))
            .expect("entries")
    }

    #[test]
    fn round_trip_through_a_reopen() {
        let dir = TempDir::new("round-trip");
        {
            let (store, recovered) = open(&dir.path().join("a/b"));
            assert!(recovered.fresh, "{recovered}");
            assert_eq!((recovered.first_index, recovered.last_index), (1, 0));
            store.append(&entries(1..=5, 1)).expect("append");
            store.set_hard_state(hard_state(1, 1, 3));
            store.set_conf_state(voters(&[1, 2, 3]));
            store.persist(true).expect("persist");
            store.append(&entries(6..=7, 2)).expect("append");
            store.set_commit(6);
            store.persist(false).expect("persist unsynced");
            // An empty turn with sync makes the unsynced write durable.
            store.persist(true).expect("sync");
        }
        let (store, recovered) = open(&dir.path().join("a/b"));
        assert!(!recovered.fresh);
        assert_eq!(recovered.entries, 7);
        assert_eq!((recovered.first_index, recovered.last_index), (1, 7));
        assert!(recovered.tail_cut.is_none(), "{recovered}");
        let state = store.initial_state().expect("state");
        assert_eq!(state.hard_state, hard_state(1, 1, 6));
        assert_eq!(state.conf_state, voters(&[1, 2, 3]));
        let mut expected = entries(1..=5, 1);
        expected.extend(entries(6..=7, 2));
        assert_eq!(all(&store), expected);
        assert_eq!(store.term(6).expect("term"), 2);
        assert_eq!(store.term(0).expect("term of the empty prefix"), 0);
        assert_eq!(
            store.term(8),
            Err(raft::Error::Store(StorageError::Unavailable))
        );
    }

    #[test]
    fn a_conflicting_suffix_is_replaced_on_disk_too() {
        let dir = TempDir::new("conflict");
        {
            let (store, _) = open(dir.path());
            store.append(&entries(1..=10, 1)).expect("append");
            store.set_hard_state(hard_state(1, 0, 4));
            store.persist(true).expect("persist");
            // A new leader of term 2 overwrites from 6 on with a shorter log.
            store.append(&entries(6..=7, 2)).expect("append");
            store.set_hard_state(hard_state(2, 0, 4));
            assert_eq!(store.last_index().expect("last"), 7);
            store.persist(true).expect("persist");
        }
        let (store, _) = open(dir.path());
        let mut expected = entries(1..=5, 1);
        expected.extend(entries(6..=7, 2));
        assert_eq!(all(&store), expected);
        // Appending past the end, or over compacted entries, is refused.
        let gap = store.append(&entries(9..=9, 2)).expect_err("gap");
        assert_eq!(gap.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn entries_respects_max_size_and_bounds() {
        let (store, _) = LogStore::open(None).expect("memory");
        store.append(&entries(1..=5, 1)).expect("append");
        let one = u64::from(entry(1, 1).compute_size());
        let ctx = || GetEntriesContext::empty(false);
        assert_eq!(store.entries(1, 6, one * 2, ctx()).expect("two").len(), 2);
        assert_eq!(
            store.entries(1, 6, 0, ctx()).expect("at least one").len(),
            1
        );
        assert_eq!(store.entries(2, 4, None, ctx()).expect("range").len(), 2);
        assert_eq!(
            store.entries(1, 7, None, ctx()),
            Err(raft::Error::Store(StorageError::Unavailable))
        );
    }

    #[test]
    fn memory_mode_has_the_same_rules() {
        let (store, recovered) = LogStore::open(None).expect("memory");
        assert!(recovered.fresh && recovered.dir.is_none());
        assert!(!store.is_durable());
        store.append(&entries(1..=6, 1)).expect("append");
        store.set_hard_state(hard_state(1, 1, 6));
        store.set_conf_state(voters(&[1]));
        store.persist(true).expect("persist");
        assert_eq!(
            store.snapshot(0, 2),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        );
        let refused = store.compact(3).expect_err("no snapshot covers 1..=2");
        assert_eq!(refused.kind(), io::ErrorKind::InvalidInput);
        assert!(store.take_snapshot_wanted(), "asked for one");
        assert!(!store.take_snapshot_wanted(), "once");
        store
            .save_snapshot(4, voters(&[1, 2]), b"state at 4".to_vec())
            .expect("snapshot");
        store.compact(5).expect("compact");
        assert_eq!(store.first_index().expect("first"), 5);
        assert_eq!(store.term(4).expect("the snapshot's term"), 1);
        assert_eq!(
            store.term(3),
            Err(raft::Error::Store(StorageError::Compacted))
        );
        assert_eq!(
            store.entries(4, 6, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        );
        assert_eq!(
            store.snapshot(0, 2).expect("snapshot").data.as_ref(),
            b"state at 4"
        );
        assert!(!store.take_snapshot_wanted());
        // Member 3 was added after the snapshot: raft-rs on it would ignore
        // a snapshot whose configuration lacks it; a newer one is wanted.
        assert_eq!(
            store.snapshot(0, 3),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        );
        assert!(store.take_snapshot_wanted());
        // Too old for what raft-rs asks: wanted too.
        assert!(store.snapshot(5, 2).is_err());
        assert!(store.take_snapshot_wanted());
        store.persist(true).expect("persist");
    }

    #[test]
    fn compaction_and_snapshot_survive_a_reopen() {
        let dir = TempDir::new("compact");
        {
            let (store, _) = open(dir.path());
            store.append(&entries(1..=100, 1)).expect("append");
            store.set_hard_state(hard_state(1, 1, 90));
            store.set_conf_state(voters(&[1, 2, 3]));
            store.persist(true).expect("persist");
            store
                .save_snapshot(80, voters(&[1, 2, 3]), b"engine at 80".to_vec())
                .expect("snapshot");
            let past = store.save_snapshot(95, voters(&[1]), Vec::new());
            assert_eq!(
                past.expect_err("uncommitted").kind(),
                io::ErrorKind::InvalidInput
            );
            store.compact(81).expect("compact");
            store.persist(true).expect("persist");
            assert_eq!(store.first_index().expect("first"), 81);
        }
        let (store, recovered) = open(dir.path());
        assert_eq!(recovered.snapshot, Some((80, 1)));
        assert_eq!((recovered.first_index, recovered.last_index), (81, 100));
        assert_eq!(recovered.discarded, 0);
        assert_eq!(all(&store), entries(81..=100, 1));
        let snap = store.latest_snapshot().expect("snapshot");
        assert_eq!(snap.get_metadata().index, 80);
        assert_eq!(snap.get_metadata().get_conf_state(), &voters(&[1, 2, 3]));
        assert_eq!(snap.data.as_ref(), b"engine at 80");
    }

    #[test]
    fn a_snapshot_written_before_a_crash_trims_the_log_at_open() {
        let dir = TempDir::new("crash-after-snapshot");
        {
            let (store, _) = open(dir.path());
            store.append(&entries(1..=20, 1)).expect("append");
            store.set_hard_state(hard_state(1, 1, 20));
            store.persist(true).expect("persist");
            store
                .save_snapshot(15, voters(&[1]), b"at 15".to_vec())
                .expect("snapshot");
            // Crash before compact + persist.
        }
        let (store, recovered) = open(dir.path());
        assert_eq!(recovered.discarded, 15, "{recovered}");
        assert_eq!(all(&store), entries(16..=20, 1));
        drop(store);
        let (_, again) = open(dir.path());
        assert_eq!((again.discarded, again.first_index), (0, 16), "{again}");
    }

    #[test]
    fn an_installed_snapshot_replaces_log_and_state() {
        let dir = TempDir::new("install");
        {
            let (store, _) = open(dir.path());
            store.append(&entries(1..=10, 1)).expect("append");
            store.set_hard_state(hard_state(1, 2, 5));
            store.set_conf_state(voters(&[1, 2]));
            store.persist(true).expect("persist");
            let mut snap = Snapshot::default();
            snap.mut_metadata().index = 50;
            snap.mut_metadata().term = 3;
            snap.mut_metadata().set_conf_state(voters(&[1, 2, 3]));
            snap.data = b"leader's engine at 50".to_vec().into();
            store.install_snapshot(snap).expect("install");
            store.append(&entries(51..=52, 3)).expect("append after it");
            store.persist(true).expect("persist");
            assert_eq!(store.first_index().expect("first"), 51);
        }
        let (store, recovered) = open(dir.path());
        assert_eq!(recovered.snapshot, Some((50, 3)));
        assert_eq!(all(&store), entries(51..=52, 3));
        let state = store.initial_state().expect("state");
        assert_eq!(state.hard_state, hard_state(3, 2, 50));
        assert_eq!(state.conf_state, voters(&[1, 2, 3]));
        assert_eq!(store.term(50).expect("term"), 3);
        let old = {
            let mut s = Snapshot::default();
            s.mut_metadata().index = 40;
            s
        };
        assert!(store.install_snapshot(old).is_err());
    }

    #[test]
    fn a_snapshot_installed_just_before_a_crash_wins_over_the_old_log() {
        let dir = TempDir::new("install-crash");
        {
            let (store, _) = open(dir.path());
            store.append(&entries(1..=10, 1)).expect("append");
            store.set_hard_state(hard_state(1, 0, 3));
            store.set_conf_state(voters(&[1, 2]));
            store.persist(true).expect("persist");
            let mut snap = Snapshot::default();
            snap.mut_metadata().index = 8;
            snap.mut_metadata().term = 2; // the log's entry 8 has term 1: another history
            snap.mut_metadata().set_conf_state(voters(&[1, 2, 3]));
            store.install_snapshot(snap).expect("install");
            // Crash before persist.
        }
        let (store, recovered) = open(dir.path());
        assert_eq!(recovered.discarded, 10, "{recovered}");
        assert_eq!(
            (
                store.first_index().expect("f"),
                store.last_index().expect("l")
            ),
            (9, 8)
        );
        let state = store.initial_state().expect("state");
        assert_eq!(state.hard_state, hard_state(2, 0, 8));
        assert_eq!(state.conf_state, voters(&[1, 2, 3]));
        store
            .append(&entries(9..=9, 2))
            .expect("append after the snapshot");
        store.persist(true).expect("persist");
        drop(store);
        let (store, _) = open(dir.path());
        assert_eq!(all(&store), entries(9..=9, 2));
    }

    #[test]
    fn a_damaged_newest_snapshot_falls_back_on_the_previous_one() {
        let dir = TempDir::new("snap-damage");
        let newest;
        {
            let (store, _) = open(dir.path());
            store.append(&entries(1..=30, 1)).expect("append");
            store.set_hard_state(hard_state(1, 1, 30));
            store.persist(true).expect("persist");
            store
                .save_snapshot(10, voters(&[1]), b"at 10".to_vec())
                .expect("10");
            store.compact(11).expect("compact");
            store.persist(true).expect("persist");
            store
                .save_snapshot(20, voters(&[1]), b"at 20".to_vec())
                .expect("20");
            // Not compacted past 10 yet: the log still covers 11..=30.
            newest = dir
                .path()
                .join(SNAP_DIR)
                .join("snap-00000000000000000020.snap");
        }
        let mut bytes = fs::read(&newest).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&newest, bytes).expect("write");
        let (store, recovered) = open(dir.path());
        assert_eq!(recovered.snapshot, Some((10, 1)), "{recovered}");
        assert_eq!(recovered.damaged_snapshots.len(), 1);
        assert!(
            recovered.to_string().contains("checksum mismatch"),
            "{recovered}"
        );
        assert_eq!(all(&store), entries(11..=30, 1));
        let snap = store.latest_snapshot().expect("snap");
        assert_eq!(snap.data.as_ref(), b"at 10");
    }

    #[test]
    fn a_log_that_no_longer_reaches_its_snapshot_is_refused() {
        let dir = TempDir::new("snap-gap");
        {
            let (store, _) = open(dir.path());
            store.append(&entries(1..=30, 1)).expect("append");
            store.set_hard_state(hard_state(1, 1, 30));
            store.persist(true).expect("persist");
            store
                .save_snapshot(20, voters(&[1]), b"at 20".to_vec())
                .expect("20");
            store.compact(21).expect("compact");
            store.persist(true).expect("persist");
        }
        let snap = dir
            .path()
            .join(SNAP_DIR)
            .join("snap-00000000000000000020.snap");
        fs::write(&snap, b"torn").expect("tear");
        let err = LogStore::open(Some(dir.path())).expect_err("entries 1..=20 are gone");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("starts at 21"), "{err}");
    }

    #[test]
    fn meta_refuses_another_node_or_cluster() {
        let dir = TempDir::new("meta");
        let me = Meta {
            cluster_id: 0x8f3a_0000_dead_beef,
            node_id: 2,
        };
        assert_eq!(Meta::load(dir.path()).expect("none"), None);
        assert_eq!(
            Meta::check_or_create(dir.path(), me).expect("first start"),
            me
        );
        assert_eq!(Meta::check_or_create(dir.path(), me).expect("restart"), me);
        let text = fs::read_to_string(dir.path().join(Meta::FILE)).expect("read");
        assert!(text.contains("\"8f3a0000deadbeef\""), "{text}");

        let wrong_node = Meta { node_id: 1, ..me };
        let err = Meta::check_or_create(dir.path(), wrong_node).expect_err("node 1");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            err.to_string(),
            format!(
                "data directory {} belongs to node 2 of cluster 8f3a0000deadbeef; started as node 1",
                dir.path().display()
            )
        );
        let other_cluster = Meta {
            cluster_id: 7,
            ..me
        };
        let err = Meta::check_or_create(dir.path(), other_cluster).expect_err("cluster 7");
        assert!(
            err.to_string()
                .ends_with("started as node 2 of cluster 0000000000000007"),
            "{err}"
        );
        fs::write(dir.path().join(Meta::FILE), "{\"format\":1}").expect("garble");
        let err = Meta::load(dir.path()).expect_err("garbled");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn the_store_can_move_to_the_loop_thread() {
        fn send<T: Send + Sync>() {}
        send::<LogStore>();
        send::<Recovered>();
    }

    #[test]
    fn writes_after_a_failure_keep_failing() {
        let (store, _) = LogStore::open(None).expect("memory");
        let e = store.lock().fail(io::Error::other("disk full"));
        assert_eq!(e.to_string(), "disk full");
        let err = store.persist(true).expect_err("stopped");
        assert!(err.to_string().contains("disk full"), "{err}");
        assert!(store.append(&entries(1..=1, 1)).is_err());
    }

    /// A one-member raft-rs node over `LogStore`: elect, propose, commit,
    /// snapshot, restart from the directory, and keep going.
    #[test]
    fn drives_a_raw_node_across_a_restart() {
        /// Runs the node until it has nothing more to do; returns the data of
        /// the normal entries it applied.
        fn drain(node: &mut RawNode<LogStore>, store: &LogStore) -> Vec<Vec<u8>> {
            let mut applied = Vec::new();
            let mut apply = |entries: Vec<Entry>, node: &mut RawNode<LogStore>| {
                for e in entries {
                    if e.get_entry_type() == EntryType::EntryConfChangeV2 && !e.data.is_empty() {
                        let cc = ConfChangeV2::parse_from_bytes(&e.data).expect("conf change");
                        let cs = node.apply_conf_change(&cc).expect("apply");
                        store.set_conf_state(cs);
                    } else if !e.data.is_empty() {
                        applied.push(e.data.to_vec());
                    }
                }
            };
            while node.has_ready() {
                let mut rd = node.ready();
                assert!(rd.messages().is_empty());
                if !rd.snapshot().is_empty() {
                    store
                        .install_snapshot(rd.snapshot().clone())
                        .expect("install");
                }
                apply(rd.take_committed_entries(), node);
                store.append(rd.entries()).expect("append");
                if let Some(hs) = rd.hs() {
                    store.set_hard_state(hs.clone());
                }
                store.persist(rd.must_sync()).expect("persist");
                let mut light = node.advance(rd);
                if let Some(commit) = light.commit_index() {
                    store.set_commit(commit);
                    store.persist(false).expect("persist commit");
                }
                apply(light.take_committed_entries(), node);
                node.advance_apply();
            }
            applied
        }

        let dir = TempDir::new("raw-node");
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let config = |applied| RaftConfig {
            id: 1,
            election_tick: 10,
            heartbeat_tick: 2,
            applied,
            ..RaftConfig::default()
        };
        let applied_index;
        {
            let (store, _) = open(dir.path());
            store.set_conf_state(voters(&[1]));
            store.persist(true).expect("bootstrap");
            let mut node = RawNode::new(&config(0), store.clone(), &logger).expect("node");
            node.campaign().expect("campaign");
            drain(&mut node, &store);
            assert_eq!(node.raft.state, StateRole::Leader);
            for i in 0..5 {
                node.propose(vec![], format!("cmd {i}").into_bytes())
                    .expect("propose");
            }
            let applied = drain(&mut node, &store);
            assert_eq!(applied.len(), 5);
            applied_index = node.raft.raft_log.applied;
            store
                .save_snapshot(applied_index, store.conf_state(), b"five commands".to_vec())
                .expect("snapshot");
            store.compact(applied_index + 1).expect("compact");
            store.persist(true).expect("persist");
        }
        let (store, recovered) = open(dir.path());
        assert_eq!(
            recovered.snapshot.map(|s| s.0),
            Some(applied_index),
            "{recovered}"
        );
        let mut node =
            RawNode::new(&config(applied_index), store.clone(), &logger).expect("restart");
        node.campaign().expect("campaign");
        drain(&mut node, &store);
        assert_eq!(node.raft.state, StateRole::Leader);
        node.propose(vec![], b"after".to_vec()).expect("propose");
        assert_eq!(drain(&mut node, &store), vec![b"after".to_vec()]);
    }
}
