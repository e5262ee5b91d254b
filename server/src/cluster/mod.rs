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
pub mod persister;
pub mod snapfile;
pub mod snapshot;
pub mod transport;

use std::collections::{HashMap, VecDeque};
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
    /// Connections of this member that sent `Session`: only their close
    /// goes through the log (a connection without a session costs none).
    sessions: std::collections::HashSet<u64>,
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
    /// Reads received this turn, for one read index (Raft's read index: answered
    /// from the state once it holds everything committed when they were
    /// asked, without a log entry).
    reads: Vec<Queued>,
    /// Reads whose read index was asked for, oldest first.
    read_batches: VecDeque<ReadBatch>,
    /// The context of the last read index asked for.
    read_ctx: u64,
    /// Per connection (waiter tag): its reads not answered yet.
    reading: HashMap<u64, u32>,
    /// Reads that may be answered (their index is applied) but whose
    /// connection has its backlog of unread answers: answered, in order,
    /// as it reads (a read answered later still sees everything committed
    /// before it was asked). Without this, a connection that pipelined
    /// 1,000 `Get`s of a large value and read nothing had them all
    /// answered in one go, past every budget (1 GB on a leader, in a test).
    /// By connection (waiter tag), in the order asked.
    pub(crate) ready: HashMap<u64, VecDeque<Queued>>,
    /// Per connection (see [`conn_key`]): its `Get`s sent to the log (a
    /// connection with a session reads through the log) and not applied
    /// yet. Their answers are made when they apply, whether the client
    /// reads or not, so a connection stops being read at
    /// [`MAX_LOGGED_GETS`] (1,000 pipelined `Get`s of a large value made
    /// a leader hold 650 MB, in a test).
    gets_logged: HashMap<u64, u32>,
    /// Those `Get`s in log order: (seq, connection).
    gets_order: VecDeque<(u64, u64)>,
    /// Requests for the log held back behind their connection's
    /// unanswered reads, in the order received: a connection's requests
    /// take effect in order, so no read may see a later request of its
    /// own connection.
    deferred: VecDeque<Queued>,
}

/// Most `Get`s of one connection in the log and not applied yet (see
/// `Replica::gets_logged`): their answers, up to this many of the largest
/// value, are what such a connection can make a member hold at once.
pub const MAX_LOGGED_GETS: usize = 16;

/// A connection's key in per-connection maps: its slot and generation.
fn conn_key(slot: usize, generation: u32) -> u64 {
    (slot as u64) << 32 | u64::from(generation)
}

/// A request waiting for its read index, or held back from the log behind
/// its connection's reads.
#[derive(Debug)]
pub(crate) struct Queued {
    /// The connection's waiter tag.
    pub(crate) tag: u64,
    /// Its answer's place.
    pub(crate) seq: u64,
    /// The identity number the request was verified as (0: anonymous).
    pub(crate) ident: u16,
    /// The request, without credentials.
    pub(crate) line: Vec<u8>,
    /// When it was read (host time).
    pub(crate) at: Duration,
}

/// Reads that wait for one read index.
#[derive(Debug)]
struct ReadBatch {
    /// The read index request's context.
    ctx: u64,
    /// The index to apply before answering, once the leader confirmed it.
    index: Option<u64>,
    reads: Vec<Queued>,
}

/// How a request is served by the leader (see
/// [`Replica::submit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Through the log, this turn.
    Logged,
    /// Through the log, once the connection's earlier reads are answered.
    Deferred,
    /// A read, by read index.
    Read,
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
    /// A connection closed: its session ends.
    SessionEnd(u64),
}

impl Replica {
    /// A member that does not serve yet.
    pub fn new(node: u64) -> Self {
        Self {
            node,
            serving: false,
            batch: RequestBatch::default(),
            outbox: VecDeque::new(),
            sessions: std::collections::HashSet::new(),
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
            reads: Vec::new(),
            read_batches: VecDeque::new(),
            read_ctx: 0,
            reading: HashMap::new(),
            ready: HashMap::new(),
            gets_logged: HashMap::new(),
            gets_order: VecDeque::new(),
            deferred: VecDeque::new(),
        }
    }

    /// Serves `req` (verified as identity number `ident`; 0 = anonymous),
    /// read at host time `at`, for the connection whose waiter tag is
    /// `tag` and whose answers wait in `held`: a read (`Get`, `TestLock`)
    /// by read index unless an earlier request of its connection is still
    /// on its way through the log, anything else through the log (held
    /// back while the connection has reads unanswered, so that a read never
    /// sees a later request of its own connection). Its answer's place goes
    /// into `held`. A refusal to answer at once if it cannot be served.
    pub(crate) fn submit(
        &mut self,
        req: &Request<'_>,
        at: Duration,
        tag: u64,
        ident: u16,
        held: &mut VecDeque<Held>,
    ) -> Result<Route, &'static str> {
        if !self.serving {
            return Err("not the leader");
        }
        let reading = self.reading.get(&tag).copied().unwrap_or(0) as usize;
        let behind = self.deferred.iter().any(|d| d.tag == tag);
        if matches!(req.command, dlm_core::protocol::Command::Session { .. }) {
            // Whatever its route: its connection's close is logged.
            self.sessions.insert(tag & !1);
        }
        // A request of a connection with a session keeps the session
        // alive (a replicated deadline): through the log, even a read.
        let read_only = matches!(
            req.command,
            dlm_core::protocol::Command::Get { .. } | dlm_core::protocol::Command::TestLock { .. }
        ) && !self.sessions.contains(&(tag & !1));
        // Every unanswered place of this connection is one of its reads:
        // nothing it sent before is waiting for the log.
        let only_reads = || {
            held.iter()
                .filter(|h| matches!(h, Held::Pending(..)))
                .count()
                == reading
        };
        let route = if read_only && !behind && only_reads() {
            Route::Read
        } else if reading > 0 || behind {
            Route::Deferred
        } else {
            Route::Logged
        };
        if route == Route::Logged {
            self.log_request(req, at, tag, ident, held)?;
            return Ok(route);
        }
        self.seq += 1;
        let queued = Queued {
            tag,
            seq: self.seq,
            ident,
            line: bare_line(req),
            at,
        };
        if route == Route::Read {
            self.reads.push(queued);
            *self.reading.entry(tag).or_insert(0) += 1;
        } else {
            self.deferred.push_back(queued);
        }
        held.push_back(Held::Pending(self.seq, req.framing));
        Ok(route)
    }

    /// The reads received since the last read index request, as one more:
    /// its context; `None` if there are none, or while the last one is not
    /// confirmed yet (one round in flight at a time: the reads that come
    /// meanwhile share the next, instead of a heartbeat round each).
    pub fn take_reads(&mut self) -> Option<Vec<u8>> {
        if self.reads.is_empty() || self.read_batches.iter().any(|b| b.index.is_none()) {
            return None;
        }
        self.read_ctx += 1;
        self.read_batches.push_back(ReadBatch {
            ctx: self.read_ctx,
            index: None,
            reads: std::mem::take(&mut self.reads),
        });
        Some(self.read_ctx.to_le_bytes().to_vec())
    }

    /// The leader confirmed read index `index` for the reads asked with
    /// `ctx` (raft-rs's `ReadState`): they are answered once `index` is
    /// applied.
    pub fn read_ready(&mut self, ctx: &[u8], index: u64) {
        let Some(ctx) = ctx.try_into().ok().map(u64::from_le_bytes) else {
            return;
        };
        if let Some(b) = self.read_batches.iter_mut().find(|b| b.ctx == ctx) {
            b.index = Some(index);
        }
    }

    /// Whether requests held back behind reads can go to the log now (the
    /// loop then runs its next turn at once).
    pub fn has_released(&self) -> bool {
        self.deferred
            .iter()
            .any(|d| !self.reading.contains_key(&d.tag))
    }

    /// Whether connection `slot` of `generation` has as many `Get`s in the
    /// log, unapplied, as it may: it is not read meanwhile.
    pub(crate) fn gets_full(&self, slot: usize, generation: u32) -> bool {
        self.gets_logged
            .get(&conn_key(slot, generation))
            .is_some_and(|&n| n as usize >= MAX_LOGGED_GETS)
    }

    /// Whether reads wait for their index to be confirmed or applied, or
    /// for their connection to read its answers.
    pub fn reads_waiting(&self) -> bool {
        !self.read_batches.is_empty() || !self.ready.is_empty()
    }

    /// The reads that can be answered now that `applied` is applied; the
    /// caller answers them and then calls [`read_done`](Self::read_done)
    /// for each.
    pub(crate) fn ready_reads(&mut self, applied: u64) -> Vec<Queued> {
        let mut out = Vec::new();
        self.read_batches.retain_mut(|b| {
            if b.index.is_some_and(|i| i <= applied) {
                out.append(&mut b.reads);
                false
            } else {
                true
            }
        });
        out
    }

    /// A read of the connection with waiter tag `tag` was answered.
    pub(crate) fn read_done(&mut self, tag: u64) {
        if let Some(n) = self.reading.get_mut(&tag) {
            *n -= 1;
            if *n == 0 {
                self.reading.remove(&tag);
            }
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
        let line = bare_line(req);
        if matches!(req.command, dlm_core::protocol::Command::Session { .. }) {
            self.sessions.insert(tag & !1);
        }
        self.seq += 1;
        if matches!(req.command, dlm_core::protocol::Command::Get { .. }) {
            let (slot, generation, _) = crate::dispatch::untag(tag);
            let key = conn_key(slot, generation);
            *self.gets_logged.entry(key).or_insert(0) += 1;
            self.gets_order.push_back((self.seq, key));
        }
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
        while let Some(&(s, key)) = self.gets_order.front() {
            if s > seq {
                break;
            }
            self.gets_order.pop_front();
            if let Some(n) = self.gets_logged.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.gets_logged.remove(&key);
                }
            }
        }
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

    /// Connection `conn` closed: its session ends, through the log. (A
    /// member that is not the leader has no client connections; if the
    /// leadership is lost before this is proposed, the session ends by its
    /// TTL instead.)
    pub(crate) fn end_session(&mut self, conn: dlm_core::engine::ConnId) {
        if self.sessions.remove(&conn.0) && self.serving {
            self.outbox.push_back(Change::SessionEnd(conn.0));
        }
    }

    /// A grant could not be delivered, through the log.
    pub(crate) fn orphaned(&mut self, name: String, token: dlm_core::protocol::Token) {
        self.outbox.push_back(Change::Orphaned(name, token.0));
    }

    /// Everything waiting to be proposed, stamped with `stamp`: other
    /// changes first (a cancel must not wait behind a request that would
    /// queue again).
    pub fn take_proposals(&mut self, stamp: u64) -> Vec<Vec<u8>> {
        // Requests held back behind reads now answered join this turn's
        // entry (a connection's stay in order: while one of its requests
        // is held back, so are its later ones).
        if !self.deferred.is_empty() {
            let reading = &self.reading;
            let (go, stay): (VecDeque<Queued>, VecDeque<Queued>) = self
                .deferred
                .drain(..)
                .partition(|d| !reading.contains_key(&d.tag));
            self.deferred = stay;
            for d in go {
                self.batch.push(&Logged {
                    node: self.node,
                    tag: d.tag,
                    seq: d.seq,
                    ident: d.ident,
                    line: &d.line,
                });
            }
        }
        let mut out = Vec::new();
        for c in self.outbox.drain(..) {
            out.push(match c {
                Change::Cancel(waiter) => entry::encode(stamp, &Entry::Cancel { waiter }),
                Change::Orphaned(name, token) => {
                    entry::encode(stamp, &Entry::Orphaned { name: &name, token })
                }
                Change::SessionEnd(conn) => entry::encode(stamp, &Entry::SessionEnd { conn }),
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

    /// Drops what was not proposed and the reads not answered (leadership
    /// lost: the connections that wait for them close).
    pub fn discard(&mut self) {
        self.outbox.clear();
        // Their sessions end by their TTL now.
        self.sessions.clear();
        self.logged_at.clear();
        let _ = self.batch.take(0);
        self.reads.clear();
        self.read_batches.clear();
        self.reading.clear();
        self.ready.clear();
        self.gets_logged.clear();
        self.gets_order.clear();
        self.deferred.clear();
    }
}

/// `req` as the log (or a read) keeps it: without `Name`/`Identity`, so no
/// secret enters the log.
fn bare_line(req: &Request<'_>) -> Vec<u8> {
    let mut line = Vec::with_capacity(96);
    let bare = Request {
        framing: Framing::Plain,
        command: req.command,
        credentials: None,
        request_id: req.request_id,
        session: req.session,
    };
    // Writing to a Vec cannot fail.
    let _ = bare.write(&mut line);
    line
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
    fn reads_go_by_read_index_and_a_connections_order_is_kept() {
        let mut r = Replica::new(1);
        r.serving = true;
        let c = Client::new("t");
        let get = c.get("k");
        let put = c.put("k", Ttl::from_secs(1), "v", None);
        let (a, b) = (10, 20);
        let (mut held_a, mut held_b) = (VecDeque::new(), VecDeque::new());
        let at = Duration::ZERO;
        // Nothing pending on its connection: a read by read index.
        assert_eq!(r.submit(&get, at, a, 0, &mut held_a), Ok(Route::Read));
        // Behind a read: a write waits, and so does what follows it.
        assert_eq!(r.submit(&put, at, a, 0, &mut held_a), Ok(Route::Deferred));
        assert_eq!(r.submit(&get, at, a, 0, &mut held_a), Ok(Route::Deferred));
        // Another connection is not held back; its read behind its own
        // logged write goes through the log.
        assert_eq!(r.submit(&put, at, b, 0, &mut held_b), Ok(Route::Logged));
        assert_eq!(r.submit(&get, at, b, 0, &mut held_b), Ok(Route::Logged));
        assert!(!r.has_released());
        // One read index for the turn's reads; none more while it is out.
        let ctx = r.take_reads().expect("a read index for the read");
        assert_eq!(r.take_proposals(0).len(), 1, "b's requests, not a's");
        assert_eq!(
            r.submit(&get, at, b + 1, 0, &mut VecDeque::new()),
            Ok(Route::Read)
        );
        assert_eq!(r.take_reads(), None, "one round in flight");
        // Confirmed at index 7: answered once 7 is applied.
        r.read_ready(&ctx, 7);
        assert!(r.ready_reads(6).is_empty());
        let ready = r.ready_reads(7);
        assert_eq!(ready.len(), 1);
        assert!(r.take_reads().is_some(), "the next round");
        r.read_done(ready[0].tag);
        // a's held-back requests go to the log now, in order.
        assert!(r.has_released());
        let proposals = r.take_proposals(0);
        assert_eq!(proposals.len(), 1);
        let Ok(entry::Stamped {
            entry: Entry::Requests(reqs),
            ..
        }) = entry::decode(&proposals[0])
        else {
            panic!("a request entry");
        };
        let seqs: Vec<u64> = reqs.iter().map(|q| q.seq).collect();
        assert_eq!(seqs, [2, 3]);
        // A connection with a session: its requests keep the session
        // alive (replicated), so even its reads go through the log.
        let s = 30;
        let mut held_s = VecDeque::new();
        let session = c.session(Ttl::from_secs(5));
        assert_eq!(r.submit(&session, at, s, 0, &mut held_s), Ok(Route::Logged));
        let _ = r.take_proposals(0);
        held_s.clear();
        assert_eq!(r.submit(&get, at, s, 0, &mut held_s), Ok(Route::Logged));
        // Leadership lost: every read and held-back request is dropped.
        r.discard();
        assert!(!r.reads_waiting());
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
