//! What an administrator sees of the lock table: the answers to `Admin`
//! requests `locks` and `lock` (and the dashboard's lock table), as JSON.
//!
//! Only locks (exclusive locks, semaphores and read/write locks, each
//! entry with its `Kind`): names, holders' IDs, tokens, times and queues.
//! Values are never shown (the server is a blind vault), nor identities' secrets.
//! A listing walks every live lock once and keeps the first
//! [`MAX_LISTED`] names in order, so its cost is bounded by the table's
//! size and its answer by the cap.

use std::collections::BinaryHeap;

use dlm_core::engine::{Engine, GroupInfo, LockInfo, SessionBinding, WaiterInfo};
use dlm_core::protocol::Token;
use dlm_core::time::Ttl;
use serde_json::{Value, json};

/// Most locks one listing answers (the rest is counted, and `More` says
/// there are more: narrow the prefix).
pub const MAX_LISTED: usize = 1000;
/// Most waiters shown for one lock (`Waiters` counts them all), and most
/// holders shown for one semaphore or read/write lock by `lock`.
pub const MAX_QUEUE_SHOWN: usize = 1000;
/// Most holders shown for each semaphore or read/write lock by a listing
/// (`Holds` counts them all; `lock` shows more).
pub const MAX_HOLDERS_LISTED: usize = 16;

/// Seconds with millisecond precision, as JSON numbers.
fn seconds(t: Ttl) -> Value {
    #[allow(clippy::cast_precision_loss)]
    let s = t.as_millis() as f64 / 1000.0;
    json!(s)
}

fn lock_entry(engine: &Engine, l: &LockInfo<'_>) -> Value {
    let mut v = json!({
        "FileName": l.name,
        "Kind": "lock",
        "ID": l.owner,
        "Identity": l.identity.is_some(),
        "Token": l.token.0,
        "Held": seconds(l.held),
        "Expire": seconds(l.remaining),
        "Waiters": l.waiters,
    });
    session_fields(engine, l.token, &mut v);
    v
}

/// A grant's tie to a session, if it has one: `"Session":true` (with
/// `LockDelay` if it has one) while its session lives, `"Closed":true`
/// while its lock-delay keeps the name shut after the session's end
/// (`Expire` is then the delay left).
fn session_fields(engine: &Engine, token: Token, v: &mut Value) {
    match engine.session_binding(token) {
        Some(SessionBinding::Bound { lock_delay }) => {
            v["Session"] = json!(true);
            if lock_delay.as_millis() > 0 {
                v["LockDelay"] = seconds(lock_delay);
            }
        }
        Some(SessionBinding::Closed) => v["Closed"] = json!(true),
        None => {}
    }
}

/// A semaphore's or read/write lock's entry: its kind, its size, its
/// holds (`Holds` counts them, `Holders` shows the first `shown` in grant
/// order, each with its token and time left),
/// and, as in a lock's entry, `ID`, `Identity`, `Token`, `Held` and
/// `Expire` of its earliest hold (so that a reader of lock entries shows
/// one of its holders), absent while only waiters keep it.
fn group_entry(engine: &Engine, g: &GroupInfo<'_>, shown: usize) -> Value {
    let rw = g.permits.is_none();
    let holders: Vec<Value> = engine
        .holds(g.name)
        .take(shown)
        .map(|h| {
            let mut v = json!({
                "ID": h.owner,
                "Identity": h.identity.is_some(),
                "Token": h.token.0,
                "Held": seconds(h.held),
                "Expire": seconds(h.remaining),
            });
            if rw {
                v["Mode"] = json!(mode(h.write));
            }
            session_fields(engine, h.token, &mut v);
            v
        })
        .collect();
    let mut entry = json!({
        "FileName": g.name,
        "Kind": if rw { "rwlock" } else { "semaphore" },
        "Holds": g.holds,
        "Waiters": g.waiters,
    });
    if let Some(n) = g.permits {
        entry["Permits"] = json!(n);
    }
    if let Some(first) = holders.first() {
        for key in ["ID", "Identity", "Token", "Held", "Expire"] {
            entry[key] = first[key].clone();
        }
        for key in ["Session", "LockDelay", "Closed"] {
            if let Some(v) = first.get(key) {
                entry[key] = v.clone();
            }
        }
    }
    entry["Holders"] = Value::Array(holders);
    entry
}

fn mode(write: bool) -> &'static str {
    if write { "Write" } else { "Read" }
}

/// `{"Locks":[...],"Count":N,"More":bool}`: the live locks, semaphores and
/// read/write locks whose names start with `prefix`, in name order, at
/// most `limit` (and at most [`MAX_LISTED`]); `Count` is how many matched.
pub fn locks_json(engine: &Engine, prefix: &str, limit: usize) -> String {
    let limit = limit.clamp(1, MAX_LISTED);
    // The `limit` smallest names: a max-heap that drops its largest. A
    // name is one kind at a time, so none is counted twice.
    let mut keep: BinaryHeap<&str> = BinaryHeap::with_capacity(limit + 1);
    let mut count = 0usize;
    let names = engine
        .locks()
        .map(|l| l.name)
        .chain(engine.groups().map(|g| g.name))
        .filter(|name| name.starts_with(prefix));
    for name in names {
        count += 1;
        if keep.len() < limit {
            keep.push(name);
        } else if keep.peek().is_some_and(|&top| name < top) {
            keep.pop();
            keep.push(name);
        }
    }
    let list: Vec<Value> = keep
        .into_sorted_vec()
        .into_iter()
        .filter_map(|name| entry(engine, name))
        .collect();
    let more = count > list.len();
    json!({ "Locks": list, "Count": count, "More": more }).to_string()
}

/// The entry of `name`, whatever kind it is, or `None` if nobody holds
/// or waits for it.
fn entry(engine: &Engine, name: &str) -> Option<Value> {
    if let Some(l) = engine.lock_info(name) {
        return Some(lock_entry(engine, &l));
    }
    engine
        .group(name)
        .map(|g| group_entry(engine, &g, MAX_HOLDERS_LISTED))
}

/// `{"Lock":{...,"Queue":[...]}}`: lock (or semaphore, or read/write lock)
/// `name`, its holders and its queue (first in line first; a read/write
/// lock's waiters with their `Mode`), or `None` if nobody holds it (or,
/// for a semaphore or read/write lock, waits for it).
pub fn lock_json(engine: &Engine, name: &str) -> Option<String> {
    let waiter = |w: &WaiterInfo<'_>| {
        json!({
            "ID": w.owner,
            "Identity": w.identity.is_some(),
            "Waited": seconds(w.waited),
            "WaitLeft": seconds(w.wait_left),
            "Expire": seconds(w.ttl),
        })
    };
    let (mut entry, queue): (Value, Vec<Value>) = if let Some(l) = engine.lock_info(name) {
        let queue = engine
            .waiters(name)
            .take(MAX_QUEUE_SHOWN)
            .map(|w| waiter(&w))
            .collect();
        (lock_entry(engine, &l), queue)
    } else {
        let g = engine.group(name)?;
        let rw = g.permits.is_none();
        let queue = engine
            .group_waiters(name)
            .take(MAX_QUEUE_SHOWN)
            .map(|(w, write)| {
                let mut v = waiter(&w);
                if rw {
                    v["Mode"] = json!(mode(write));
                }
                v
            })
            .collect();
        (group_entry(engine, &g, MAX_QUEUE_SHOWN), queue)
    };
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
    use dlm_core::protocol::{Command, Owner, Resource, Shape};
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

    fn acquire(e: &mut Engine, t: u64, name: &str, owner: &str, shape: Shape, wait: Option<u64>) {
        let c = Command::Acquire {
            name: Resource(name),
            owner: Owner(owner),
            shape,
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
    fn semaphores_and_rwlocks_are_listed_with_their_holders() {
        let mut e = Engine::new(Config::default());
        let sem = Shape::Semaphore { permits: 2 };
        lock(&mut e, 0, "x/lock", "l1", None);
        acquire(&mut e, 0, "x/sem", "s1", sem, None);
        acquire(&mut e, 200, "x/sem", "s2", sem, None);
        acquire(&mut e, 300, "x/sem", "s3", sem, Some(5000));
        acquire(&mut e, 0, "x/rw", "r1", Shape::Read, None);
        acquire(&mut e, 100, "x/rw", "r2", Shape::Read, None);
        acquire(&mut e, 400, "x/rw", "w1", Shape::Write, Some(5000));
        acquire(&mut e, 500, "x/rw", "r3", Shape::Read, Some(5000));
        e.advance(Instant::from_millis(1000), &mut |_| {});

        let v: Value = serde_json::from_str(&locks_json(&e, "x/", MAX_LISTED)).unwrap();
        assert_eq!(
            (v["Count"].as_u64(), v["More"].as_bool()),
            (Some(3), Some(false))
        );
        let kinds: Vec<(&str, &str)> = v["Locks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l["FileName"].as_str().unwrap(), l["Kind"].as_str().unwrap()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("x/lock", "lock"),
                ("x/rw", "rwlock"),
                ("x/sem", "semaphore")
            ]
        );

        let s = &v["Locks"][2];
        assert_eq!(
            (s["Permits"].as_u64(), s["Holds"].as_u64()),
            (Some(2), Some(2))
        );
        assert_eq!(s["Waiters"], 1);
        let holders = s["Holders"].as_array().unwrap();
        assert_eq!(holders.len(), 2);
        assert_eq!(
            (holders[0]["ID"].as_str(), holders[0]["Held"].as_f64()),
            (Some("s1"), Some(1.0))
        );
        assert_eq!(
            (holders[1]["ID"].as_str(), holders[1]["Held"].as_f64()),
            (Some("s2"), Some(0.8))
        );
        assert_eq!(holders[1]["Expire"], 9.2);
        let (t1, t2) = (
            holders[0]["Token"].as_u64().unwrap(),
            holders[1]["Token"].as_u64().unwrap(),
        );
        assert!(t1 > 0 && t2 > t1);
        assert!(holders[0].get("Mode").is_none());
        // The earliest hold's fields, where a lock's entry has its holder's.
        assert_eq!(
            (s["ID"].as_str(), s["Token"].as_u64()),
            (Some("s1"), Some(t1))
        );

        let rw = &v["Locks"][1];
        assert!(rw.get("Permits").is_none());
        assert_eq!(
            (rw["Holds"].as_u64(), rw["Waiters"].as_u64()),
            (Some(2), Some(2))
        );
        let modes: Vec<(&str, &str)> = rw["Holders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["ID"].as_str().unwrap(), h["Mode"].as_str().unwrap()))
            .collect();
        assert_eq!(modes, [("r1", "Read"), ("r2", "Read")]);

        // One name: its queue in line order, a read/write lock's with modes.
        let one: Value = serde_json::from_str(&lock_json(&e, "x/rw").unwrap()).unwrap();
        let queue: Vec<(&str, &str, f64)> = one["Lock"]["Queue"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w["ID"].as_str().unwrap(),
                    w["Mode"].as_str().unwrap(),
                    w["Waited"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(queue, [("w1", "Write", 0.6), ("r3", "Read", 0.5)]);
        assert_eq!(one["Lock"]["Queue"][0]["WaitLeft"], 4.4);
        let sem: Value = serde_json::from_str(&lock_json(&e, "x/sem").unwrap()).unwrap();
        assert_eq!(sem["Lock"]["Queue"][0]["ID"], "s3");
        assert!(sem["Lock"]["Queue"][0].get("Mode").is_none());
        assert_eq!(sem["Lock"]["Holders"].as_array().map(Vec::len), Some(2));

        // A listing caps each entry's holders; the single view shows more.
        for i in 0..(MAX_HOLDERS_LISTED + 4) {
            acquire(&mut e, 1000, "y/big", &format!("o{i}"), Shape::Read, None);
        }
        let v: Value = serde_json::from_str(&locks_json(&e, "y/", MAX_LISTED)).unwrap();
        let big = &v["Locks"][0];
        assert_eq!(big["Holds"].as_u64(), Some(MAX_HOLDERS_LISTED as u64 + 4));
        assert_eq!(
            big["Holders"].as_array().map(Vec::len),
            Some(MAX_HOLDERS_LISTED)
        );
        let one: Value = serde_json::from_str(&lock_json(&e, "y/big").unwrap()).unwrap();
        assert_eq!(
            one["Lock"]["Holders"].as_array().map(Vec::len),
            Some(MAX_HOLDERS_LISTED + 4)
        );
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

    #[test]
    fn session_bound_grants_show_their_session_and_their_lock_delay() {
        use dlm_core::engine::ConnId;
        use dlm_core::protocol::SessionBind;
        let mut e = Engine::new(Config::default());
        let conn = ConnId(7);
        let at = Instant::from_millis(1000);
        let session = |e: &mut Engine, c: &Command<'_>, bind: Option<SessionBind>| {
            let out = e.handle_in(
                at,
                c,
                Principal::Anonymous,
                0,
                None,
                Some(conn),
                bind,
                &mut |_| {},
            );
            assert!(matches!(out, Outcome::Reply(_)), "{out:?}");
        };
        session(
            &mut e,
            &Command::Session {
                ttl: Ttl::from_secs(30),
            },
            None,
        );
        let lock = |name| Command::Lock {
            name: Resource(name),
            owner: Owner("me"),
            ttl: Ttl::from_secs(60),
            wait: None,
            token: None,
        };
        let delay = SessionBind {
            lock_delay: Ttl::from_millis(2500),
        };
        session(&mut e, &lock("bound"), Some(delay));
        session(&mut e, &lock("plain"), None);
        session(
            &mut e,
            &Command::Acquire {
                name: Resource("sem"),
                owner: Owner("me"),
                shape: Shape::Semaphore { permits: 2 },
                ttl: Ttl::from_secs(60),
                wait: None,
                token: None,
            },
            Some(SessionBind {
                lock_delay: Ttl::from_millis(0),
            }),
        );
        let listed =
            |e: &Engine| -> Value { serde_json::from_str(&locks_json(e, "", 10)).unwrap() };
        let v = listed(&e);
        let by_name = |v: &Value, n: &str| -> Value {
            v["Locks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["FileName"] == n)
                .cloned()
                .unwrap_or(Value::Null)
        };
        let bound = by_name(&v, "bound");
        assert_eq!(
            (&bound["Session"], &bound["LockDelay"]),
            (&json!(true), &json!(2.5))
        );
        assert!(bound.get("Closed").is_none());
        let plain = by_name(&v, "plain");
        assert!(plain.get("Session").is_none() && plain.get("Closed").is_none());
        let sem = by_name(&v, "sem");
        assert_eq!(sem["Holders"][0]["Session"], true);
        assert!(sem["Holders"][0].get("LockDelay").is_none());
        assert_eq!(sem["Session"], true);

        // The session ends: the bound lock is closed for its delay, the
        // permit released, the plain lock untouched.
        assert!(e.end_session(Instant::from_millis(2000), conn, &mut |_| {}));
        let v = listed(&e);
        let bound = by_name(&v, "bound");
        assert_eq!(
            (&bound["Closed"], &bound["Expire"]),
            (&json!(true), &json!(2.5))
        );
        assert!(bound.get("Session").is_none());
        assert!(by_name(&v, "sem").is_null());
        assert!(by_name(&v, "plain").get("Closed").is_none());
        let one: Value = serde_json::from_str(&lock_json(&e, "bound").unwrap()).unwrap();
        assert_eq!(one["Lock"]["Closed"], true);
    }
}
