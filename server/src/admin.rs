//! What an administrator sees of the lock table: the answers to `Admin`
//! requests `locks` and `lock` (and the dashboard's lock table), as JSON.
//!
//! Only locks: names, holders' IDs, tokens, times and queues. Values are
//! never shown (the server is a blind vault), nor identities' secrets.
//! A listing walks every live lock once and keeps the first
//! [`MAX_LISTED`] names in order, so its cost is bounded by the table's
//! size and its answer by the cap.

use std::collections::BinaryHeap;

use dlm_core::engine::{Engine, LockInfo};
use dlm_core::time::Ttl;
use serde_json::{Value, json};

/// Most locks one listing answers (the rest is counted, and `More` says
/// there are more: narrow the prefix).
pub const MAX_LISTED: usize = 1000;
/// Most waiters shown for one lock (`Waiters` counts them all).
pub const MAX_QUEUE_SHOWN: usize = 1000;

/// Seconds with millisecond precision, as JSON numbers.
fn seconds(t: Ttl) -> Value {
    #[allow(clippy::cast_precision_loss)]
    let s = t.as_millis() as f64 / 1000.0;
    json!(s)
}

fn lock_entry(l: &LockInfo<'_>) -> Value {
    json!({
        "FileName": l.name,
        "ID": l.owner,
        "Identity": l.identity.is_some(),
        "Token": l.token.0,
        "Held": seconds(l.held),
        "Expire": seconds(l.remaining),
        "Waiters": l.waiters,
    })
}

/// `{"Locks":[...],"Count":N,"More":bool}`: the live locks whose names
/// start with `prefix`, in name order, at most `limit` (and at most
/// [`MAX_LISTED`]); `Count` is how many matched.
pub fn locks_json(engine: &Engine, prefix: &str, limit: usize) -> String {
    let limit = limit.clamp(1, MAX_LISTED);
    // The `limit` smallest names: a max-heap that drops its largest.
    let mut keep: BinaryHeap<&str> = BinaryHeap::with_capacity(limit + 1);
    let mut count = 0usize;
    for l in engine.locks().filter(|l| l.name.starts_with(prefix)) {
        count += 1;
        if keep.len() < limit {
            keep.push(l.name);
        } else if keep.peek().is_some_and(|&top| l.name < top) {
            keep.pop();
            keep.push(l.name);
        }
    }
    let list: Vec<Value> = keep
        .into_sorted_vec()
        .into_iter()
        .filter_map(|name| engine.lock_info(name))
        .map(|l| lock_entry(&l))
        .collect();
    let more = count > list.len();
    json!({ "Locks": list, "Count": count, "More": more }).to_string()
}

/// `{"Lock":{...,"Queue":[...]}}`: lock `name`, its holder and its queue
/// (first in line first), or `None` if it is not held.
pub fn lock_json(engine: &Engine, name: &str) -> Option<String> {
    let l = engine.lock_info(name)?;
    let mut entry = lock_entry(&l);
    let queue: Vec<Value> = engine
        .waiters(name)
        .take(MAX_QUEUE_SHOWN)
        .map(|w| {
            json!({
                "ID": w.owner,
                "Identity": w.identity.is_some(),
                "Waited": seconds(w.waited),
                "WaitLeft": seconds(w.wait_left),
                "Expire": seconds(w.ttl),
            })
        })
        .collect();
    if let Some(obj) = entry.as_object_mut() {
        obj.insert("Queue".into(), Value::Array(queue));
    }
    Some(json!({ "Lock": entry }).to_string())
}

/// What the dashboard asks of the lock table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// The locks whose names start with this.
    Locks(String),
    /// One lock and its queue.
    Lock(String),
}

/// The credentials are not an administrator's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotAdmin;

impl crate::host::Host {
    /// Answers an administrator's `query` (the dashboard's, over HTTP):
    /// [`NotAdmin`] if `name` and `secret` are not an administrator's,
    /// `None` for a lock nobody holds, else the JSON of [`locks_json`] or
    /// [`lock_json`].
    pub(crate) fn admin_query(
        &mut self,
        at: std::time::Duration,
        peers: &dyn crate::host::Peers,
        name: &str,
        secret: &str,
        query: &Query,
    ) -> Result<Option<String>, NotAdmin> {
        if !self.identities.verify_admin(name, secret) {
            self.engine
                .stats_mut()
                .incr(dlm_core::stats::Stat::AuthFailed);
            return Err(NotAdmin);
        }
        if self.replica.is_none() {
            // Bring a single server's engine to now, as a request would
            // (a member's keeps the log's time).
            let now = crate::host::engine_time(at);
            let Self {
                engine, deliveries, ..
            } = self;
            engine.advance(now, &mut |ev| {
                deliveries.push(crate::dispatch::Delivery::of(&ev));
            });
            if !self.deliveries.is_empty() {
                self.place_deliveries(at, peers);
            }
        }
        Ok(match query {
            Query::Locks(prefix) => Some(locks_json(&self.engine, prefix, MAX_LISTED)),
            Query::Lock(name) => lock_json(&self.engine, name),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlm_core::engine::{Config, Outcome, Principal};
    use dlm_core::protocol::{Command, Owner, Resource};
    use dlm_core::time::Instant;

    fn lock(e: &mut Engine, t: u64, name: &str, owner: &str, wait: Option<u64>) {
        let c = Command::Lock {
            name: Resource(name),
            owner: Owner(owner),
            ttl: Ttl::from_secs(10),
            wait: wait.map(Ttl::from_millis),
            token: None,
        };
        let out = e.handle(
            Instant::from_millis(t),
            &c,
            Principal::Anonymous,
            0,
            &mut |_| {},
        );
        assert!(matches!(out, Outcome::Reply(_) | Outcome::Queued(_)));
    }

    #[test]
    fn listings_are_sorted_filtered_and_capped() {
        let mut e = Engine::new(Config::default());
        for name in ["jobs/c", "jobs/a", "other", "jobs/b", "jobs\"q"] {
            lock(&mut e, 0, name, "w\"1", None);
        }
        lock(&mut e, 500, "jobs/a", "w2", Some(5000));
        e.advance(Instant::from_millis(1500), &mut |_| {});
        let v: Value = serde_json::from_str(&locks_json(&e, "jobs/", 2)).unwrap();
        assert_eq!(v["Count"], 3);
        assert_eq!(v["More"], true);
        let names: Vec<&str> = v["Locks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["FileName"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["jobs/a", "jobs/b"]);
        let a = &v["Locks"][0];
        assert_eq!(a["ID"], "w\"1");
        assert_eq!(a["Held"], 1.5);
        assert_eq!(a["Expire"], 8.5);
        assert_eq!(a["Waiters"], 1);
        let all: Value = serde_json::from_str(&locks_json(&e, "", MAX_LISTED)).unwrap();
        assert_eq!(
            (all["Count"].as_u64(), all["More"].as_bool()),
            (Some(5), Some(false))
        );

        let one: Value = serde_json::from_str(&lock_json(&e, "jobs/a").unwrap()).unwrap();
        let q = &one["Lock"]["Queue"][0];
        assert_eq!(
            (q["ID"].as_str(), q["Waited"].as_f64()),
            (Some("w2"), Some(1.0))
        );
        assert_eq!(q["WaitLeft"], 4.0);
        assert!(lock_json(&e, "nothing").is_none());
    }
}
