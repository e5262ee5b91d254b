//! A member's state as a Raft snapshot, and back: what a lagging or new
//! member installs instead of replaying the log, and what lets the log be
//! compacted.
//!
//! Layout: `version u8 | applied_stamp u64 | bootstrapped u8 | the cluster's
//! first entry (its settings) | the engine's snapshot`. The engine is
//! restored at the snapshot's own instant, so deadlines are what they were
//! on the member that took it; counters never go back.

use super::entry::{self, Bootstrap, Damaged, Entry, Stamped};
use crate::host::Host;
use dlm_core::engine::Engine;

const VERSION: u8 = 1;

impl Host {
    /// This member's state as snapshot data (a cluster member only).
    pub fn cluster_snapshot(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        let (stamp, settings) = self
            .replica
            .as_ref()
            .map_or((0, None), |r| (r.applied_stamp, r.settings));
        out.extend_from_slice(&stamp.to_le_bytes());
        match settings {
            Some(b) => {
                out.push(1);
                let first = entry::encode(stamp, &Entry::Bootstrap(b));
                out.extend_from_slice(&u32::try_from(first.len()).unwrap_or(0).to_le_bytes());
                out.extend_from_slice(&first);
            }
            None => out.push(0),
        }
        out.extend_from_slice(&self.engine.snapshot_to_vec());
        out
    }

    /// Replaces this member's state with a snapshot's.
    pub fn restore_cluster_snapshot(&mut self, data: &[u8]) -> Result<(), Damaged> {
        let bad = |what| Damaged(what);
        let (&version, rest) = data.split_first().ok_or(bad("empty snapshot"))?;
        if version != VERSION {
            return Err(bad("snapshot version"));
        }
        let stamp = rest
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .ok_or(bad("snapshot stamp"))?;
        let (&has, mut rest) = rest[8..].split_first().ok_or(bad("snapshot settings"))?;
        let settings: Option<Bootstrap> = if has == 1 {
            let len = rest
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
                .ok_or(bad("snapshot settings"))? as usize;
            let first = rest.get(4..4 + len).ok_or(bad("snapshot settings"))?;
            rest = &rest[4 + len..];
            match entry::decode(first)? {
                Stamped {
                    entry: Entry::Bootstrap(b),
                    ..
                } => Some(b),
                _ => return Err(bad("snapshot settings")),
            }
        } else {
            None
        };
        let at = Engine::<dlm_core::engine::Heap>::snapshot_instant(rest)
            .map_err(|_| bad("engine snapshot"))?;
        let mut engine = match &settings {
            Some(b) => Engine::new(super::apply::engine_config(b)),
            None => Engine::new(dlm_core::engine::Config::DEFAULT),
        };
        engine
            .restore(at, rest)
            .map_err(|_| bad("engine snapshot"))?;
        self.engine = engine;
        if let Some(b) = &settings {
            self.limits = b.limits.clamped();
        }
        if let Some(r) = &mut self.replica {
            r.applied_stamp = stamp;
            r.bootstrapped = settings.is_some();
            r.cluster_id = settings.map(|b| b.cluster_id);
            r.settings = settings;
        }
        Ok(())
    }
}
