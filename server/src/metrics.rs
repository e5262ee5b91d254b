//! What the server tells operators: a [`Snapshot`] of its statistics that
//! the event loop publishes about once a second, and its renderings as
//! Prometheus text (through `prometheus-client`) and as the dashboard's
//! JSON.
//!
//! ```text
//!   event loop ── every second ──▶ Arc<Mutex<Snapshot>> ◀── HTTP thread
//!   (counts, never waits)           (copied under the lock)   (renders, serves)
//! ```
//!
//! The loop never waits for an HTTP client: it only copies its counters
//! into the snapshot, and the HTTP side only copies the snapshot out.
//! Counters only grow: the loop adds its statistics into running totals
//! before the periodic log line resets them.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use dlm_core::stats::{Histogram, Stat, Stats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

/// How often the loop publishes a snapshot.
pub const PUBLISH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The upper bounds, in microseconds, of the request latency histogram.
pub const LATENCY_BOUNDS_US: [u64; 14] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// Request latency: from the loop seeing a request's bytes to its answer
/// written to the socket, for requests answered in the turn they arrived
/// (a queued lock's wait is in the queue histogram instead; in a cluster,
/// requests answered once committed are not counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    buckets: [u64; LATENCY_BOUNDS_US.len() + 1],
    sum_us: u64,
}

impl Latency {
    /// Records `n` requests that took `us` microseconds each.
    pub fn record_n(&mut self, us: u64, n: u64) {
        let i = LATENCY_BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        self.buckets[i] = self.buckets[i].saturating_add(n);
        self.sum_us = self.sum_us.saturating_add(us.saturating_mul(n));
    }

    /// How many requests.
    pub fn count(&self) -> u64 {
        self.buckets.iter().fold(0u64, |a, &b| a.saturating_add(b))
    }

    /// `(upper bound in seconds, observations in that bucket)`, bounded
    /// buckets only (the encoder accumulates them and adds `+Inf`).
    fn buckets_seconds(&self) -> Vec<(f64, u64)> {
        LATENCY_BOUNDS_US
            .iter()
            .zip(self.buckets.iter())
            .map(|(&b, &n)| (micros_to_seconds(b), n))
            .collect()
    }
}

#[allow(clippy::cast_precision_loss)]
fn micros_to_seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

#[allow(clippy::cast_precision_loss)]
fn millis_to_seconds(ms: u64) -> f64 {
    ms as f64 / 1e3
}

/// A cluster member's view of its cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// This member's ID.
    pub node: u64,
    /// The current term.
    pub term: u64,
    /// The leader's ID, 0 if none is known.
    pub leader: u64,
    /// The commit index.
    pub commit: u64,
    /// The applied index.
    pub applied: u64,
    /// Members and their peer addresses.
    pub members: Vec<(u64, String)>,
    /// On the leader: how many committed entries each member has yet to
    /// match (0 for the leader itself).
    pub behind: Vec<(u64, u64)>,
    /// Peer connections refused since start (garbage, another cluster,
    /// TLS refused either way, a certificate from another CA).
    pub refused_peers: u64,
}

/// Live holds by kind: exclusive locks, semaphore permits, and the read
/// and write sides of read/write locks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Holds {
    /// Exclusive locks (the `ALock` gauge).
    pub lock: u64,
    /// Held permits of semaphores.
    pub semaphore: u64,
    /// Read holds of read/write locks.
    pub read: u64,
    /// Write holds of read/write locks.
    pub write: u64,
}

impl Holds {
    /// Counts the engine's holds. One pass over the semaphores and
    /// read/write locks (not their holds: a read/write lock's holds are
    /// all reads or one write).
    pub fn of(engine: &dlm_core::engine::Engine) -> Self {
        let mut h = Self {
            lock: engine.stats().get(Stat::ALock),
            ..Self::default()
        };
        for g in engine.groups() {
            let n = g.holds as u64;
            if g.permits.is_some() {
                h.semaphore += n;
            } else if engine.holds(g.name).next().is_some_and(|x| x.write) {
                h.write += n;
            } else {
                h.read += n;
            }
        }
        h
    }
}

/// Everything the HTTP side shows, as of one instant of the loop.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// When it was taken (wall clock, milliseconds since 1970).
    pub unix_ms: u64,
    /// When it was taken (monotonic), for `/healthz`.
    pub taken: Instant,
    /// Counters since the server started (never reset) and gauges now.
    pub stats: Stats,
    /// The engine's memory budget in bytes.
    pub memory_budget: u64,
    /// Most connections.
    pub max_connections: u64,
    /// Lock hold times and queue waits (the engine's, in milliseconds).
    pub hold: Histogram,
    /// Queue waits of granted waiters.
    pub queued: Histogram,
    /// Request latency.
    pub latency: Latency,
    /// Whether the server serves requests (listening and, in a cluster,
    /// a leader known).
    pub ready: bool,
    /// This member's cluster, if it is one.
    pub cluster: Option<ClusterView>,
    /// Live holds by kind.
    pub holds: Holds,
}

impl Snapshot {
    /// An empty snapshot, not ready, taken now.
    pub fn empty() -> Self {
        Self {
            unix_ms: unix_ms(SystemTime::now()),
            taken: Instant::now(),
            stats: Stats::new(),
            memory_budget: 0,
            max_connections: 0,
            hold: Histogram::new(),
            queued: Histogram::new(),
            latency: Latency::default(),
            ready: false,
            cluster: None,
            holds: Holds::default(),
        }
    }
}

/// Milliseconds since 1970.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The snapshot the loop publishes and the HTTP side reads.
#[derive(Clone, Debug)]
pub struct Shared(Arc<Mutex<Snapshot>>);

impl Default for Shared {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Snapshot::empty())))
    }
}

impl Shared {
    /// Replaces the snapshot.
    pub fn publish(&self, s: Snapshot) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = s;
    }

    /// A copy of the latest snapshot.
    pub fn latest(&self) -> Snapshot {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The metric name of a statistic: `dlm_` and its name in snake case
/// (`ExpiredLock` → `dlm_expired_lock`).
pub fn metric_name(stat: Stat) -> String {
    let mut out = String::from("dlm_");
    let mut prev_lower = false;
    for c in stat.name().chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else {
            out.push(c);
            prev_lower = true;
        }
    }
    out
}

/// The gauges under names a Prometheus user expects.
const GAUGES: [(Stat, &str, &str); 6] = [
    (Stat::ALock, "dlm_locks", "Live locks."),
    (Stat::AData, "dlm_values", "Live data entries."),
    (Stat::AWait, "dlm_waiters", "Queued lock requests."),
    (Stat::AConn, "dlm_connections", "Open client connections."),
    (
        Stat::Memory,
        "dlm_memory_used_bytes",
        "Bytes the engine holds, as charged to its memory budget.",
    ),
    (
        Stat::ConnMemory,
        "dlm_connection_memory_bytes",
        "Bytes connections make the server hold (partial lines, unsent answers).",
    ),
];

/// What `/metrics` shows: the latest snapshot, read at each scrape.
#[derive(Debug)]
struct SnapshotCollector(Shared);

fn histogram(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    sum: f64,
    count: u64,
    buckets: &[(f64, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m =
        encoder.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, buckets, None)
}

/// An engine histogram's bounded buckets, each its own count (the
/// encoder accumulates them).
fn engine_histogram(h: &Histogram) -> Vec<(f64, u64)> {
    let mut below = 0u64;
    h.cumulative()
        .map(|(ms, total)| {
            let n = total.saturating_sub(below);
            below = total;
            (millis_to_seconds(ms), n)
        })
        .collect()
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.0.latest();
        for &stat in Stat::ALL.iter().filter(|s| !s.is_gauge()) {
            let c = ConstCounter::new(s.stats.get(stat));
            let name = metric_name(stat);
            let help = format!("{} (the statistics log's {}).", help_of(stat), stat.name());
            c.encode(encoder.encode_descriptor(&name, &help, None, c.metric_type())?)?;
        }
        for (stat, name, help) in GAUGES {
            let g = ConstGauge::new(i64::try_from(s.stats.get(stat)).unwrap_or(i64::MAX));
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        {
            let g = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(
                "dlm_holds",
                "Live holds by kind: exclusive locks, semaphore permits, read and write sides of read/write locks.",
                None,
                g.metric_type(),
            )?;
            for (kind, n) in [
                ("lock", s.holds.lock),
                ("semaphore", s.holds.semaphore),
                ("read", s.holds.read),
                ("write", s.holds.write),
            ] {
                let g = ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX));
                g.encode(family.encode_family(&[("kind", kind)])?)?;
            }
        }
        for (value, name, help) in [
            (
                s.memory_budget,
                "dlm_memory_budget_bytes",
                "The engine's memory budget.",
            ),
            (
                s.max_connections,
                "dlm_max_connections",
                "Most open client connections.",
            ),
            (
                u64::from(s.ready),
                "dlm_ready",
                "1 if the server serves requests.",
            ),
        ] {
            let g = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        histogram(
            &mut encoder,
            "dlm_request_latency",
            "From reading a request to its answer being written; a cluster leader times its requests until they apply. Queued waits are in dlm_queue_wait.",
            micros_to_seconds(s.latency.sum_us),
            s.latency.count(),
            &s.latency.buckets_seconds(),
        )?;
        histogram(
            &mut encoder,
            "dlm_queue_wait",
            "How long granted waiters waited in a lock's queue.",
            millis_to_seconds(s.queued.sum_ms()),
            s.queued.count(),
            &engine_histogram(&s.queued),
        )?;
        histogram(
            &mut encoder,
            "dlm_lock_hold",
            "How long locks were held, from grant to release, expiry or revocation.",
            millis_to_seconds(s.hold.sum_ms()),
            s.hold.count(),
            &engine_histogram(&s.hold),
        )?;
        if let Some(c) = &s.cluster {
            let behind = c.behind.iter().map(|&(_, b)| b).max().unwrap_or(0);
            for (value, name, help) in [
                (c.term, "dlm_cluster_term", "The Raft term."),
                (
                    c.leader,
                    "dlm_cluster_leader",
                    "The leader's ID (0: none known).",
                ),
                (
                    u64::from(c.leader == c.node),
                    "dlm_cluster_is_leader",
                    "1 if this member leads.",
                ),
                (c.commit, "dlm_cluster_commit_index", "The commit index."),
                (c.applied, "dlm_cluster_applied_index", "The applied index."),
                (
                    c.commit.saturating_sub(c.applied),
                    "dlm_cluster_apply_lag",
                    "Committed entries this member has not applied yet.",
                ),
                (
                    behind,
                    "dlm_cluster_commit_lag",
                    "On the leader: committed entries the slowest member has not matched.",
                ),
                (
                    c.members.len() as u64,
                    "dlm_cluster_members",
                    "Members of the cluster.",
                ),
            ] {
                let g = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
            let refused = ConstCounter::new(c.refused_peers);
            refused.encode(encoder.encode_descriptor(
                "dlm_cluster_peer_refused",
                "Peer connections refused: garbage, another cluster, an unknown member, TLS refused either way (a certificate from another CA, a member without TLS).",
                None,
                refused.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// A counter's help text.
fn help_of(stat: Stat) -> &'static str {
    match stat {
        Stat::AuthFailed => "Requests refused because authentication failed",
        Stat::BadAction => "Requests with an unknown action",
        Stat::BadPayload => "Malformed requests and limit violations",
        Stat::Conflict => "Compare-and-set puts that found another revision",
        Stat::ConnEvicted => "Idle connections closed to make room",
        Stat::ConnRefused => "Connections refused because the server was full",
        Stat::Connections => "Connections accepted",
        Stat::DataIn => "Value bytes stored",
        Stat::DataOut => "Value bytes returned",
        Stat::DataOverrun => "Request lines over the line limit",
        Stat::EraseNF => "Erases of a missing entry",
        Stat::Erased => "Entries erased",
        Stat::ExpiredData => "Data entries that expired",
        Stat::ExpiredLock => "Locks that expired",
        Stat::Get => "Successful gets",
        Stat::GetNF => "Gets of a missing entry",
        Stat::GetShared => "Gets of a value shared by another owner",
        Stat::IdleTimeout => "Connections closed for idling mid-line",
        Stat::In => "Request lines received",
        Stat::Lock => "Locks granted",
        Stat::NoMemory => "Requests refused for lack of memory",
        Stat::NotOwner => "Requests answered NotOwner",
        Stat::Out => "Response lines sent",
        Stat::PutNew => "Puts that created an entry",
        Stat::PutUpdate => "Puts that replaced an entry",
        Stat::Relock => "Locks extended by their owner",
        Stat::Replayed => "Resent requests answered from memory",
        Stat::Revoked => "Locks revoked by an administrator",
        Stat::Stats => "Stats requests",
        Stat::TestLock => "TestLocks that found a live lock",
        Stat::TestLockNF => "TestLocks that found none",
        Stat::Unlock => "Locks released",
        Stat::UnlockNF => "Unlocks that found no live lock",
        Stat::Version => "Version requests",
        _ => "A dlm statistic",
    }
}

/// A registry whose only collector reads `shared` at each scrape.
pub fn registry(shared: Shared) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(SnapshotCollector(shared)));
    r
}

/// The Prometheus text exposition (format 0.0.4) of `registry`.
pub fn prometheus_text(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; an encoder error leaves what was
    // written.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, registry);
    out
}

/// The dashboard's sample: every statistic (counters since start), the
/// budget, readiness and the cluster's view, as one JSON object.
pub fn sample_json(s: &Snapshot) -> serde_json::Value {
    let mut stats = serde_json::Map::new();
    for (stat, v) in s.stats.iter() {
        stats.insert(stat.name().to_owned(), v.into());
    }
    let hist = |h: &Histogram| {
        serde_json::json!({
            "Count": h.count(),
            "SumMs": h.sum_ms(),
        })
    };
    let cluster = s.cluster.as_ref().map(|c| {
        serde_json::json!({
            "Node": c.node,
            "Term": c.term,
            "Leader": c.leader,
            "Commit": c.commit,
            "Applied": c.applied,
            "Members": c.members.len(),
            "CommitLag": c.behind.iter().map(|b| b.1).max().unwrap_or(0),
            "PeerRefused": c.refused_peers,
        })
    });
    serde_json::json!({
        "At": s.unix_ms,
        "Stats": stats,
        "MemoryBudget": s.memory_budget,
        "Ready": s.ready,
        "Hold": hist(&s.hold),
        "Queued": hist(&s.queued),
        "Latency": {"Count": s.latency.count(), "SumUs": s.latency.sum_us},
        "Cluster": cluster,
    })
}

/// Keeps the dashboard's last hour: one sample every [`HISTORY_EVERY`],
/// at most [`HISTORY_LEN`].
#[derive(Debug, Default)]
pub struct History {
    /// `(wall clock ms, sample JSON)`, oldest first.
    samples: std::collections::VecDeque<(u64, String)>,
}

/// The dashboard's resolution.
pub const HISTORY_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// An hour of samples.
pub const HISTORY_LEN: usize = 1800;

impl History {
    /// Adds a sample taken at `at_ms` (its JSON text), dropping the oldest
    /// past an hour.
    pub fn push(&mut self, at_ms: u64, sample: String) {
        if self.samples.len() == HISTORY_LEN {
            self.samples.pop_front();
        }
        self.samples.push_back((at_ms, sample));
    }

    /// The samples taken after `after_ms` (wall clock), oldest first, as
    /// a JSON array.
    pub fn since_json(&self, after_ms: u64) -> String {
        let mut out = String::from("[");
        let mut first = true;
        for (_, s) in self.samples.iter().filter(|(at, _)| *at > after_ms) {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(s);
        }
        out.push(']');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_snake_case() {
        assert_eq!(metric_name(Stat::ExpiredLock), "dlm_expired_lock");
        assert_eq!(metric_name(Stat::EraseNF), "dlm_erase_nf");
        assert_eq!(metric_name(Stat::In), "dlm_in");
        assert_eq!(metric_name(Stat::AuthFailed), "dlm_auth_failed");
    }

    #[test]
    fn the_exposition_has_counters_gauges_and_histograms() {
        let shared = Shared::default();
        let mut s = Snapshot::empty();
        s.stats.add(Stat::Lock, 7);
        s.stats.set(Stat::ALock, 3);
        s.memory_budget = 1 << 20;
        s.holds = Holds {
            lock: 3,
            semaphore: 4,
            read: 5,
            write: 1,
        };
        s.hold.record(40);
        s.hold.record(4000);
        s.latency.record_n(30, 2);
        s.cluster = Some(ClusterView {
            node: 2,
            term: 5,
            leader: 2,
            commit: 10,
            applied: 9,
            members: vec![(1, "a".into()), (2, "b".into())],
            behind: vec![(1, 4), (2, 0)],
            refused_peers: 3,
        });
        shared.publish(s);
        let text = prometheus_text(&registry(shared.clone()));
        for want in [
            "# TYPE dlm_lock_total counter\n",
            "# TYPE dlm_waiters gauge\n",
            "dlm_lock_total 7\n",
            "dlm_locks 3\n",
            "dlm_memory_budget_bytes 1048576\n",
            "# TYPE dlm_lock_hold_seconds histogram\n",
            "dlm_lock_hold_seconds_bucket{le=\"0.05\"} 1\n",
            "dlm_lock_hold_seconds_bucket{le=\"5\"} 2\n",
            "dlm_lock_hold_seconds_count 2\n",
            "dlm_lock_hold_seconds_bucket{le=\"3600\"} 2\n",
            "dlm_lock_hold_seconds_bucket{le=\"+Inf\"} 2\n",
            "dlm_lock_hold_seconds_sum 4.04\n",
            "dlm_request_latency_seconds_bucket{le=\"2.5e-05\"} 0\n",
            "dlm_request_latency_seconds_bucket{le=\"5e-05\"} 2\n",
            "dlm_request_latency_seconds_bucket{le=\"1\"} 2\n",
            "dlm_cluster_term 5\n",
            "dlm_cluster_commit_lag 4\n",
            "dlm_cluster_apply_lag 1\n",
            "dlm_cluster_peer_refused_total 3\n",
            "# TYPE dlm_holds gauge\n",
            "dlm_holds{kind=\"lock\"} 3\n",
            "dlm_holds{kind=\"semaphore\"} 4\n",
            "dlm_holds{kind=\"read\"} 5\n",
            "dlm_holds{kind=\"write\"} 1\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        let v = sample_json(&shared.latest());
        assert_eq!(v["Stats"]["Lock"], 7);
        assert_eq!(v["Cluster"]["CommitLag"], 4);
    }

    #[test]
    fn holds_are_counted_by_kind() {
        use dlm_core::engine::{Config, Engine, Principal};
        use dlm_core::protocol::{Command, Owner, Resource, Shape};
        use dlm_core::time::{Instant, Ttl};
        let mut e = Engine::new(Config::default());
        let mut take = |name: &str, owner: &str, shape: Option<Shape>| {
            let (name, owner, ttl) = (Resource(name), Owner(owner), Ttl::from_secs(10));
            let c = match shape {
                Some(shape) => Command::Acquire {
                    name,
                    owner,
                    shape,
                    ttl,
                    wait: None,
                    token: None,
                },
                None => Command::Lock {
                    name,
                    owner,
                    ttl,
                    wait: None,
                    token: None,
                },
            };
            e.handle(
                Instant::from_millis(0),
                &c,
                Principal::Anonymous,
                0,
                &mut |_| {},
            );
        };
        let sem = Some(Shape::Semaphore { permits: 5 });
        take("l1", "a", None);
        take("l2", "a", None);
        take("s", "a", sem);
        take("s", "b", sem);
        take("s", "c", sem);
        take("r", "a", Some(Shape::Read));
        take("r", "b", Some(Shape::Read));
        take("w", "a", Some(Shape::Write));
        take("w", "b", Some(Shape::Write)); // refused: held
        take("w2", "a", Some(Shape::Write));
        assert_eq!(
            Holds::of(&e),
            Holds {
                lock: 2,
                semaphore: 3,
                read: 2,
                write: 2,
            }
        );
    }

    #[test]
    fn history_keeps_an_hour_and_answers_since() {
        let mut h = History::default();
        for at in 0..(HISTORY_LEN as u64 + 5) {
            h.push(at, format!("{{\"At\":{at}}}"));
        }
        let all: Vec<serde_json::Value> = serde_json::from_str(&h.since_json(0)).unwrap();
        assert_eq!(all.len(), HISTORY_LEN, "the oldest five were dropped");
        assert_eq!(all[0]["At"], 5);
        let recent: Vec<serde_json::Value> =
            serde_json::from_str(&h.since_json(HISTORY_LEN as u64 + 2)).unwrap();
        assert_eq!(recent.len(), 2);
    }
}
