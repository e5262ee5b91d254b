//! The cluster: the engine replicated on Raft (raft-rs), one member per
//! `dlm-server --node N --peers ...`.
//!
//! ```text
//!   clients ──▶ any member ──relay──▶ leader's Host ──▶ entries ──▶ raft-rs ──▶ peers
//!                                        ▲ answers, in place          │ committed
//!                                        └──────── apply (every member, same order)
//! ```
//!
//! Every member runs the same engine, fed only by committed entries
//! ([`entry`]): requests (re-serialized without secrets), the passing of
//! time (stamped by the leader, never read from a member's own clock),
//! cancelled waits and undeliverable grants. The leader's host serves
//! every client (its own connections and the ones followers relay); a
//! request's answer waits in its place among its connection's answers
//! until the entry that carries it applies. See `docs/cluster-design.md`
//! for the whole design and README "Cluster" for its guarantees.

pub mod apply;
pub mod entry;
pub mod log;
pub mod node;
pub mod snapfile;
pub mod snapshot;
pub mod transport;

use std::collections::VecDeque;
use std::time::Duration;

use dlm_core::engine::WaiterId;
use dlm_core::protocol::{Framing, Request};

use self::entry::{Entry, Logged, RequestBatch};
use crate::conn::Held;

/// Answers a `Cluster` request at once (its status, as JSON), or queues a
/// membership change for the loop, its answer's place in `held`; refuses
/// what cannot be done.
pub(crate) fn admin_request(
    replica: &mut Replica,
    op: dlm_core::protocol::ClusterOp<'_>,
    tag: u64,
    held: &mut VecDeque<Held>,
) -> Result<Option<String>, &'static str> {
    use dlm_core::protocol::ClusterOp;
    let refuse = |m: &'static str| m;
    let op = match op {
        ClusterOp::Status => return Ok(Some(replica.status.json(replica.node))),
        ClusterOp::Add { node, peer } => {
            let Some(addr) = std::net::ToSocketAddrs::to_socket_addrs(peer)
                .ok()
                .and_then(|mut a| a.next())
            else {
                return Err(refuse("Peer is not an address (HOST:PORT)"));
            };
            if !(1..=255).contains(&node) {
                return Err(refuse("member IDs are 1 to 255"));
            }
            AdminOp::Add(node, addr)
        }
        ClusterOp::Remove { node } => AdminOp::Remove(node),
        ClusterOp::Transfer { node } => AdminOp::Transfer(node),
    };
    if !replica.serving {
        return Err(refuse("not the leader: ask the leader (see Cluster)"));
    }
    replica.seq += 1;
    replica.admin.push_back(Admin {
        op,
        tag,
        seq: replica.seq,
    });
    held.push_back(Held::Pending(
        replica.seq,
        dlm_core::protocol::Framing::Plain,
    ));
    Ok(None)
}

/// What a cluster member's host needs besides the engine: where this
/// member's requests and other changes wait to be proposed.
#[derive(Debug)]
pub struct Replica {
    /// This member's ID.
    pub node: u64,
    /// Whether this member serves clients (it is the leader).
    pub serving: bool,
    /// Requests received this turn, for one entry.
    batch: RequestBatch,
    /// Other changes for the log, unstamped.
    outbox: VecDeque<Change>,
    /// The last request's sequence number.
    seq: u64,
    /// Whether the cluster's first entry has been applied.
    pub bootstrapped: bool,
    /// The cluster's ID, once known (from its first entry).
    pub cluster_id: Option<u64>,
    /// The engine settings of the cluster's first entry.
    pub settings: Option<entry::Bootstrap>,
    /// The stamp of the last entry applied (cluster milliseconds).
    pub applied_stamp: u64,
    /// What `Cluster` answers, as of the last turn.
    pub status: ClusterStatus,
    /// Membership changes asked for, waiting for the loop.
    pub(crate) admin: VecDeque<Admin>,
    /// When each request this member logged and has not applied yet was
    /// read (host time), in sequence order: one entry per answer place
    /// held, so bounded by the connections' held-answer limits.
    logged_at: VecDeque<(u64, Duration)>,
    /// When the requests answered since the loop last asked were read
    /// (see [`take_answered`](Self::take_answered)).
    answered: Vec<Duration>,
    /// Whether to keep those times (the latency histogram is on).
    timing: bool,
}

/// The cluster as a member sees it, for `{"Action":"Cluster"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The leader, if known.
    pub leader: Option<u64>,
    /// The current term.
    pub term: u64,
    /// The highest index known committed, and applied here.
    pub commit: u64,
    /// The highest index applied here.
    pub applied: u64,
    /// Every member: ID, peer address, (as the leader sees it) the index
    /// it has matched, and the address it serves clients on, if known.
    pub members: Vec<(u64, std::net::SocketAddr, Option<u64>, Option<String>)>,
}

/// A membership change or leadership transfer asked for by a client,
/// answered in its place once done (or refused).
#[derive(Clone, Debug)]
pub(crate) struct Admin {
    pub(crate) op: AdminOp,
    pub(crate) tag: u64,
    pub(crate) seq: u64,
}

/// See [`Admin`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AdminOp {
    Add(u64, std::net::SocketAddr),
    Remove(u64),
    Transfer(u64),
}

impl ClusterStatus {
    /// The JSON object `Cluster` answers with.
    pub fn json(&self, node: u64) -> String {
        use std::fmt::Write as _;
        let mut s = String::with_capacity(256);
        let _ = write!(
            s,
            "{{\"Node\":{node},\"Leader\":{},\"Term\":{},\"Commit\":{},\"Applied\":{},\"Members\":[",
            self.leader.unwrap_or(0),
            self.term,
            self.commit,
            self.applied
        );
        for (i, (id, addr, matched, client)) in self.members.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "{{\"ID\":{id},\"Peer\":\"{addr}\"");
            if let Some(client) = client {
                // Checked as host:port when learned: nothing to escape.
                let _ = write!(s, ",\"Client\":\"{client}\"");
            }
            if let Some(m) = matched {
                let lag = self.commit.saturating_sub(*m);
                let _ = write!(s, ",\"Matched\":{m},\"Lag\":{lag}");
            }
            s.push('}');
        }
        s.push_str("]}");
        s
    }
}

/// A change other than requests, waiting to be stamped and proposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A queued request leaves its queue.
    Cancel(u64),
    /// An undeliverable grant is taken back.
    Orphaned(String, u64),
}

impl Replica {
    /// A member that does not serve yet.
    pub fn new(node: u64) -> Self {
        Self {
            node,
            serving: false,
            batch: RequestBatch::default(),
            outbox: VecDeque::new(),
            seq: 0,
            bootstrapped: false,
            cluster_id: None,
            settings: None,
            applied_stamp: 0,
            status: ClusterStatus::default(),
            admin: VecDeque::new(),
            logged_at: VecDeque::new(),
            answered: Vec::new(),
            timing: false,
        }
    }

    /// Logs `req` (verified as identity number `ident`; 0 = anonymous),
    /// read at host time `at`, for the connection whose waiter tag is
    /// `tag`; its answer's place goes into `held`. A refusal to answer at
    /// once if it cannot be logged.
    pub(crate) fn log_request(
        &mut self,
        req: &Request<'_>,
        at: Duration,
        tag: u64,
        ident: u16,
        held: &mut VecDeque<Held>,
    ) -> Result<(), &'static str> {
        if !self.serving {
            return Err("not the leader");
        }
        // The request without `Name`/`Identity`: no secret enters the log.
        let mut line = Vec::with_capacity(96);
        let bare = Request {
            framing: Framing::Plain,
            command: req.command,
            credentials: None,
            request_id: req.request_id,
        };
        // Writing to a Vec cannot fail.
        let _ = bare.write(&mut line);
        self.seq += 1;
        self.batch.push(&Logged {
            node: self.node,
            tag,
            seq: self.seq,
            ident,
            line: &line,
        });
        held.push_back(Held::Pending(self.seq, req.framing));
        if self.timing {
            self.logged_at.push_back((self.seq, at));
        }
        Ok(())
    }

    /// How many requests (and membership changes) this member has sent to
    /// the log: they are answered when they apply, not in the turn that
    /// read them.
    pub fn logged(&self) -> u64 {
        self.seq
    }

    /// Logged request `seq` applied: when it was read, if this member
    /// logged it (earlier ones that never applied are forgotten).
    pub(crate) fn applied(&mut self, seq: u64) -> Option<Duration> {
        while let Some(&(s, at)) = self.logged_at.front() {
            if s > seq {
                break;
            }
            self.logged_at.pop_front();
            if s == seq {
                return Some(at);
            }
        }
        None
    }

    /// Logged request read at `at` was answered.
    pub(crate) fn answered(&mut self, at: Duration) {
        if self.timing {
            self.answered.push(at);
        }
    }

    /// Keeps when logged requests were read and answered, for
    /// [`take_answered`](Self::take_answered) (off by default: nothing is
    /// kept).
    pub fn time_answers(&mut self, on: bool) {
        self.timing = on;
        if !on {
            self.logged_at.clear();
            self.answered.clear();
        }
    }

    /// When the requests answered since the last call were read (host
    /// time), for the request-latency histogram; the list is emptied.
    pub fn take_answered(&mut self, into: &mut Vec<Duration>) {
        into.append(&mut self.answered);
    }

    /// A queued request leaves its queue, through the log.
    pub(crate) fn cancel(&mut self, w: WaiterId) {
        self.outbox.push_back(Change::Cancel(w.get()));
    }

    /// A grant could not be delivered, through the log.
    pub(crate) fn orphaned(&mut self, name: String, token: dlm_core::protocol::Token) {
        self.outbox.push_back(Change::Orphaned(name, token.0));
    }

    /// Everything waiting to be proposed, stamped with `stamp`: other
    /// changes first (a cancel must not wait behind a request that would
    /// queue again).
    pub fn take_proposals(&mut self, stamp: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for c in self.outbox.drain(..) {
            out.push(match c {
                Change::Cancel(waiter) => entry::encode(stamp, &Entry::Cancel { waiter }),
                Change::Orphaned(name, token) => {
                    entry::encode(stamp, &Entry::Orphaned { name: &name, token })
                }
            });
        }
        if !self.batch.is_empty() {
            out.push(self.batch.take(stamp));
        }
        out
    }

    /// Whether anything waits to be proposed.
    pub fn has_proposals(&self) -> bool {
        !self.outbox.is_empty() || !self.batch.is_empty()
    }

    /// Drops what was not proposed (leadership lost).
    pub fn discard(&mut self) {
        self.outbox.clear();
        self.logged_at.clear();
        let _ = self.batch.take(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlm_core::client::Client;
    use dlm_core::time::Ttl;

    fn log(r: &mut Replica, name: &str, at_ms: u64, held: &mut VecDeque<Held>) {
        let req = Client::new("t").lock(name, Ttl::from_secs(1));
        r.log_request(&req, Duration::from_millis(at_ms), 1, 0, held)
            .expect("a serving replica logs");
    }

    #[test]
    fn answered_requests_report_when_they_were_read() {
        let mut r = Replica::new(1);
        r.serving = true;
        r.time_answers(true);
        let mut held = VecDeque::new();
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            log(&mut r, name, 10 * (i as u64 + 1), &mut held);
        }
        assert_eq!(r.logged(), 3);
        // The second applies first (the first was lost): the first is
        // forgotten, never reported.
        assert_eq!(r.applied(2), Some(Duration::from_millis(20)));
        assert_eq!(r.applied(1), None);
        r.answered(Duration::from_millis(20));
        assert_eq!(r.applied(3), Some(Duration::from_millis(30)));
        r.answered(Duration::from_millis(30));
        let mut out = Vec::new();
        r.take_answered(&mut out);
        assert_eq!(out, [Duration::from_millis(20), Duration::from_millis(30)]);
        r.take_answered(&mut out);
        assert_eq!(out.len(), 2, "taken once");
        // Leadership lost: what was logged is forgotten.
        log(&mut r, "d", 40, &mut held);
        r.discard();
        assert_eq!(r.applied(4), None);
    }

    #[test]
    fn nothing_is_kept_unless_timing_is_on() {
        let mut r = Replica::new(1);
        r.serving = true;
        let mut held = VecDeque::new();
        log(&mut r, "a", 10, &mut held);
        assert_eq!(r.applied(1), None);
        r.answered(Duration::from_millis(10));
        let mut out = Vec::new();
        r.take_answered(&mut out);
        assert!(out.is_empty());
        assert!(r.logged_at.is_empty());
    }
}
