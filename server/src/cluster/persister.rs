//! The raft log's writer thread: a durable member's writes and fsyncs,
//! done beside its event loop instead of inside it.
//!
//! A member with a data directory used to stop its loop for every fsync
//! (0.2-0.5 ms on our machines, 45% of a busy leader's time): no request
//! was read, no answer written, no follower's acknowledgement stepped
//! meanwhile. With this thread the loop hands each turn's batch over (in
//! order; each gets a ticket) and goes on; the thread writes what has
//! queued up as one batch, syncs once, and reports the highest ticket on
//! disk. Every write of the store goes through it, so there is one writer
//! and one order. Only then does the member tell raft-rs (`on_persist_ready`) and
//! send the messages that had to wait for the write (acknowledgements,
//! votes): nothing is acknowledged before it is on disk, exactly as before.
//!
//! What it must never do: report a number before everything up to it is
//! written and (when any of it asked) synced; write batches out of order;
//! write anything after a failed write (the failure is final and is
//! reported to the loop, which stops the member).

use std::io;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use raft_engine::{Engine, LogBatch};
use tracing::warn;

use super::log::guarded;

/// What the loop is told when a write completes (it wakes the loop).
pub type Notify = Arc<dyn Fn() + Send + Sync>;

/// One turn's write.
struct Job {
    /// Its ticket: one more than the job before it.
    number: u64,
    batch: LogBatch,
    /// It must be synced before it is reported.
    sync: bool,
    /// Entries were compacted: purge raft-engine's old files after it.
    purge: bool,
}

/// What the thread has done.
#[derive(Default)]
struct Progress {
    /// Every job up to this ticket is written (and synced where asked).
    done: u64,
    /// Why a write failed; nothing is written after it.
    failed: Option<String>,
}

/// State shared with the thread.
struct Shared {
    progress: Mutex<Progress>,
    changed: Condvar,
    notify: Mutex<Option<Notify>>,
}

impl Shared {
    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn tell(&self) {
        self.changed.notify_all();
        let notify = self
            .notify
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(notify) = notify {
            notify();
        }
    }
}

/// The writer thread of one durable store.
pub(super) struct Persister {
    jobs: Option<Sender<Job>>,
    shared: Arc<Shared>,
    /// The last ticket handed out.
    submitted: u64,
    thread: Option<JoinHandle<()>>,
}

impl Persister {
    /// Starts the thread writing to `engine`.
    pub(super) fn start(engine: Arc<Engine>) -> io::Result<Persister> {
        let shared = Arc::new(Shared {
            progress: Mutex::new(Progress::default()),
            changed: Condvar::new(),
            notify: Mutex::new(None),
        });
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("dlm-raft-log".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || {
                    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        write_loop(&engine, &rx, &shared);
                    }));
                    if run.is_err() {
                        // Never leave the loop waiting for a write that
                        // will not come: the failure is final, as any.
                        shared.progress().failed =
                            Some("the raft log's writer thread panicked".into());
                        shared.tell();
                    }
                }
            })?;
        Ok(Persister {
            jobs: Some(tx),
            shared,
            submitted: 0,
            thread: Some(thread),
        })
    }

    /// Sets what wakes the loop when a write completes.
    pub(super) fn set_notify(&self, notify: Notify) {
        *self
            .shared
            .notify
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(notify);
    }

    /// Hands `batch` to the thread (synced before it is reported if
    /// `sync`; old files purged after it if `purge`). Returns its ticket:
    /// it is on disk once [`done`](Self::done) reaches it.
    pub(super) fn submit(&mut self, batch: LogBatch, sync: bool, purge: bool) -> io::Result<u64> {
        self.done()?;
        let number = self.submitted + 1;
        let job = Job {
            number,
            batch,
            sync,
            purge,
        };
        let sent = self.jobs.as_ref().is_some_and(|tx| tx.send(job).is_ok());
        if !sent {
            return Err(self
                .done()
                .err()
                .unwrap_or_else(|| io::Error::other("the raft log's writer thread is gone")));
        }
        self.submitted = number;
        Ok(number)
    }

    /// The highest ticket written (every one before it too), or why
    /// writing stopped.
    pub(super) fn done(&self) -> io::Result<u64> {
        let p = self.shared.progress();
        match &p.failed {
            Some(why) => Err(io::Error::other(why.clone())),
            None => Ok(p.done),
        }
    }

    /// Waits until ticket `number` is written.
    pub(super) fn wait(&self, number: u64) -> io::Result<u64> {
        let mut p = self.shared.progress();
        while p.failed.is_none() && p.done < number {
            p = self
                .shared
                .changed
                .wait(p)
                .unwrap_or_else(PoisonError::into_inner);
        }
        match &p.failed {
            Some(why) => Err(io::Error::other(why.clone())),
            None => Ok(p.done),
        }
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has written what it
        // holds; joining it means the engine is released when the store is.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_loop(engine: &Engine, jobs: &Receiver<Job>, shared: &Shared) {
    // A write went out without a sync since the last synced one.
    let mut unsynced = false;
    while let Ok(first) = jobs.recv() {
        // Group commit: everything queued meanwhile goes in one write and
        // one sync.
        let Job {
            mut number,
            mut batch,
            mut sync,
            mut purge,
        } = first;
        let mut merged = Ok(());
        while let Ok(next) = jobs.try_recv() {
            let mut next_batch = next.batch;
            if merged.is_ok() {
                merged = batch.merge(&mut next_batch);
            }
            number = next.number;
            sync |= next.sync;
            purge |= next.purge;
        }
        let written = merged
            .map_err(|e| io::Error::other(format!("merging raft log writes: {e}")))
            .and_then(|()| {
                if !batch.is_empty() {
                    guarded("writing the raft log", || engine.write(&mut batch, sync))?;
                    unsynced = !sync;
                } else if sync && unsynced {
                    guarded("syncing the raft log", || engine.sync())?;
                    unsynced = false;
                }
                Ok(())
            });
        if let Err(e) = written {
            shared.progress().failed = Some(e.to_string());
            shared.tell();
            return;
        }
        shared.progress().done = number;
        shared.tell();
        if purge {
            // Deleting files whose entries are all compacted: a failure
            // here loses nothing, so it is reported, not fatal.
            if let Err(e) = guarded("purging old raft log files", || {
                engine.purge_expired_files()
            }) {
                warn!("{e}");
            }
        }
    }
}
