//! Applying a committed entry to this member's engine, and, on the leader,
//! answering the requests it carries in their places.
//!
//! Every member runs this on the same entries in the same order, so their
//! engines stay identical: time comes only from entry stamps (never going
//! back), identities by the number the leader verified, waiters by the
//! engine's own numbering. Only the member that serves (the leader) turns
//! results into answers and grants into deliveries; the others only keep
//! their engines.

use std::collections::VecDeque;
use std::time::Duration;

use dlm_core::engine::{Config, Engine, Outcome, Principal, WaiterId};
use dlm_core::protocol::{Request, RequestError, Response, Token};
use dlm_core::time::{Instant, Ttl};

use super::entry::{self, Damaged, Entry, Stamped};
use crate::dispatch::{Delivery, node_of, untag};
use crate::host::{Host, Peers};

impl Host {
    /// Makes this host a cluster member's: its engine is fed by
    /// [`apply_entry`](Self::apply_entry) only. A member keeps the watch
    /// history from the start, not from its first watch: a client whose
    /// member failed resumes its watch on whichever member it reaches
    /// next, which must hold the revisions it missed.
    pub fn replicate(&mut self, node: u64) {
        self.replica = Some(super::Replica::new(node));
        self.keep_watch_history();
    }

    /// The cluster state of a member's host.
    pub fn replica(&self) -> Option<&super::Replica> {
        self.replica.as_ref()
    }

    /// The cluster state of a member's host, to serve or stop serving and
    /// to take proposals.
    pub fn replica_mut(&mut self) -> Option<&mut super::Replica> {
        self.replica.as_mut()
    }

    /// Answers the place `seq` of the connection with waiter tag `tag`
    /// (a request this member logged or queued for the loop), if it is
    /// still there.
    pub(crate) fn answer_pending(&mut self, tag: u64, seq: u64, resp: &Response<'_>) {
        let (slot, generation, _) = untag(tag);
        let Some(conn) = self
            .conns
            .get_mut(slot)
            .and_then(Option::as_mut)
            .filter(|c| c.generation == generation)
        else {
            return;
        };
        let Some(framing) = conn.pending_framing(seq) else {
            return;
        };
        let mut out = Vec::with_capacity(128);
        // Writing to a Vec cannot fail.
        let _ = resp.write(framing, &mut out);
        conn.fill_pending(seq, out);
        self.actions.write.push(slot);
        self.account(slot);
    }

    /// Applies one committed entry (a member's host only; nothing happens
    /// on a host that is not a member). A damaged entry is an error: the
    /// member must stop rather than diverge.
    pub fn apply_entry(&mut self, data: &[u8], peers: &dyn Peers) -> Result<(), Damaged> {
        let Stamped { stamp, entry } = entry::decode(data)?;
        let Some(replica) = self.replica.as_mut() else {
            return Ok(());
        };
        // Time never goes back, whoever stamped.
        let stamp = stamp.max(replica.applied_stamp);
        replica.applied_stamp = stamp;
        let (me, serving) = (replica.node, replica.serving);
        let at = Instant::from_millis(stamp);
        let when = Duration::from_millis(stamp);
        match entry {
            Entry::Bootstrap(b) => {
                if !replica.bootstrapped {
                    replica.bootstrapped = true;
                    replica.cluster_id = Some(b.cluster_id);
                    tracing::debug!(node = me, cluster = %format_args!("{:016x}", b.cluster_id), "bootstrap applied: cluster ID known");
                    replica.settings = Some(b);
                    // What was counted before (requests read while the
                    // cluster formed, connections) carries over.
                    let counted = self.engine.stats_mut().clone();
                    self.engine = Engine::new(engine_config(&b));
                    *self.engine.stats_mut() = counted;
                    self.limits = b.limits.clamped();
                }
            }
            Entry::RegisterIdentity { name, max_data } => {
                let max = usize::try_from(max_data).unwrap_or(usize::MAX);
                // Full: the identity stays unknown (its requests fail
                // authentication), the same on every member.
                let _ = self.engine.register_identity(name, max);
            }
            Entry::Advance => {
                let Self {
                    engine, deliveries, ..
                } = self;
                engine.advance(at, &mut |ev| deliveries.push(Delivery::of(&ev)));
            }
            Entry::Cancel { waiter } => {
                self.engine.cancel(WaiterId::from_number(waiter));
            }
            Entry::Orphaned { name, token } => {
                let Self {
                    engine, deliveries, ..
                } = self;
                engine.orphaned(at, name, Token(token), &mut |ev| {
                    deliveries.push(Delivery::of(&ev));
                });
            }
            Entry::SessionEnd { conn } => {
                let Self {
                    engine, deliveries, ..
                } = self;
                engine.end_session(at, dlm_core::engine::ConnId(conn), &mut |ev| {
                    deliveries.push(Delivery::of(&ev));
                });
            }
            Entry::DropWaiters => {
                self.engine.cancel_all_waiters();
            }
            Entry::Requests(requests) => {
                for r in requests {
                    self.apply_request(&r, at, me, serving);
                }
            }
        }
        if serving {
            self.place_deliveries(when, peers);
        } else {
            self.deliveries.clear();
        }
        Ok(())
    }

    /// Answers the reads whose read index is now applied (`applied`), each
    /// in its place, from the state as it is: nothing is logged or changed
    /// for a read (the leader only; see `docs/cluster-design.md`, Reads).
    pub fn answer_reads(&mut self, applied: u64) {
        let Some(replica) = self.replica.as_mut() else {
            return;
        };
        if !replica.reads_waiting() {
            return;
        }
        for r in replica.ready_reads(applied) {
            replica.ready.entry(r.tag).or_default().push_back(r);
        }
        self.answer_ready_reads();
    }

    /// Answers the reads that may be answered, in order, each while its
    /// connection's unread answers are under its backlog (one answer may
    /// cross it, as a line does on a single server); the rest wait for
    /// their connection to read (the loop calls this every turn).
    pub fn answer_ready_reads(&mut self) {
        let Some(replica) = self.replica.as_mut() else {
            return;
        };
        if replica.ready.is_empty() {
            return;
        }
        let tags: Vec<u64> = replica.ready.keys().copied().collect();
        for tag in tags {
            while !self.backlogged_tag(tag) {
                let Some(r) = self
                    .replica
                    .as_mut()
                    .and_then(|rep| rep.ready.get_mut(&tag))
                    .and_then(VecDeque::pop_front)
                else {
                    break;
                };
                self.answer_read(&r);
            }
            if let Some(rep) = self.replica.as_mut()
                && rep.ready.get(&tag).is_some_and(VecDeque::is_empty)
            {
                rep.ready.remove(&tag);
            }
        }
    }

    /// Whether the connection of waiter tag `tag` has a full backlog of
    /// unread answers.
    fn backlogged_tag(&self, tag: u64) -> bool {
        let (slot, generation, _) = untag(tag);
        self.conns
            .get(slot)
            .and_then(Option::as_ref)
            .filter(|c| c.generation == generation)
            .is_some_and(|c| c.backlog_bytes() >= crate::host::MAX_BACKLOG)
    }

    fn answer_read(&mut self, r: &super::Queued) {
        let mut line = r.line.clone();
        let mut limits = self.limits;
        if r.ident != 0 {
            // As in apply_request: the identity's own limits apply.
            limits.max_ttl_anonymous = limits.max_ttl;
            limits.max_data_anonymous = usize::MAX;
        }
        let (slot, generation, _) = untag(r.tag);
        let principal = if r.ident == 0 {
            Some(Principal::Anonymous)
        } else {
            self.engine
                .identity_by_number(r.ident)
                .map(Principal::Identity)
        };
        let Self {
            engine,
            conns,
            replica,
            ..
        } = self;
        if let Some(replica) = replica.as_mut() {
            replica.read_done(r.tag);
        }
        let Some(conn) = conns
            .get_mut(slot)
            .and_then(Option::as_mut)
            .filter(|c| c.generation == generation)
        else {
            return;
        };
        let Some(framing) = conn.pending_framing(r.seq) else {
            return;
        };
        let mut out = Vec::with_capacity(128);
        // Writing to a Vec cannot fail.
        match Request::parse(&mut line, &limits) {
            Ok(req) => {
                let resp = match principal {
                    Some(p) => engine.read(&req.command, p).unwrap_or_else(|| {
                        // Only reads are served by read index.
                        Response::rejected(RequestError::UnknownAction)
                    }),
                    None => Response::rejected(RequestError::AuthFailed),
                };
                let _ = resp.write(framing, &mut out);
            }
            Err(rejected) => {
                let _ = Response::rejected(rejected.error).write(framing, &mut out);
            }
        }
        conn.fill_pending(r.seq, out);
        self.engine.stats_mut().incr(dlm_core::stats::Stat::Out);
        if let Some(replica) = self.replica.as_mut() {
            replica.answered(r.at);
        }
        self.actions.write.push(slot);
        self.account(slot);
    }

    fn apply_request(&mut self, r: &entry::Logged<'_>, at: Instant, me: u64, serving: bool) {
        let mut line = r.line.to_vec();
        let mut limits = self.limits;
        if r.ident != 0 {
            // The line was logged without its credentials: parse it as the
            // identity it was verified as, whose TTL and data limits are
            // not the anonymous ones (the engine checks the identity's own
            // limits again).
            limits.max_ttl_anonymous = limits.max_ttl;
            limits.max_data_anonymous = usize::MAX;
        }
        let ours = serving && r.node == me && node_of(r.tag) == me;
        let (slot, generation, _) = untag(r.tag);
        let principal = if r.ident == 0 {
            Some(Principal::Anonymous)
        } else {
            self.engine
                .identity_by_number(r.ident)
                .map(Principal::Identity)
        };
        let Self {
            engine,
            conns,
            deliveries,
            replica,
            ..
        } = self;
        let read_at = if ours {
            replica.as_mut().and_then(|rep| rep.applied(r.seq))
        } else {
            None
        };
        let conn = conns
            .get_mut(slot)
            .and_then(Option::as_mut)
            .filter(|c| ours && c.generation == generation);
        let framing = conn.as_ref().and_then(|c| c.pending_framing(r.seq));
        let answer = |conn: Option<&mut crate::conn::Conn>, resp: &Response<'_>| {
            if let (Some(conn), Some(framing)) = (conn, framing) {
                let mut out = Vec::with_capacity(96);
                // Writing to a Vec cannot fail.
                let _ = resp.write(framing, &mut out);
                conn.fill_pending(r.seq, out);
            }
        };
        // Checked when it was logged; a request that no longer parses (a
        // member of another version) is refused the same on every member.
        let req = match Request::parse(&mut line, &limits) {
            Ok(req) => req,
            Err(rejected) => {
                answer(conn, &Response::rejected(rejected.error));
                return;
            }
        };
        let Some(principal) = principal else {
            answer(conn, &Response::rejected(RequestError::AuthFailed));
            return;
        };
        let mut sink = |ev: dlm_core::engine::Event<'_>| deliveries.push(Delivery::of(&ev));
        let mut answered = false;
        // The connection's session (its tag without the framing bit, as
        // `dispatch::conn_id` names it when it closes).
        match engine.handle_in(
            at,
            &req.command,
            principal,
            r.tag,
            req.request_id,
            Some(dlm_core::engine::ConnId(r.tag & !1)),
            req.session,
            &mut sink,
        ) {
            Outcome::Reply(resp) => {
                answered = ours;
                answer(conn, &resp);
            }
            Outcome::Queued(w) => {
                let placed = conn.is_some_and(|c| c.pending_queued(r.seq, w));
                if ours && !placed {
                    // Its connection went while it was being logged.
                    if let Some(replica) = replica {
                        replica.cancel(w);
                    }
                }
            }
        }
        if answered {
            self.engine.stats_mut().incr(dlm_core::stats::Stat::Out);
            if let (Some(at), Some(replica)) = (read_at, self.replica.as_mut()) {
                replica.answered(at);
            }
        }
        if ours {
            self.actions.write.push(slot);
            self.account(slot);
            self.resume_after_gets(slot);
        }
    }
}

/// The engine configuration every member runs, from the cluster's first
/// entry.
pub(crate) fn engine_config(b: &super::entry::Bootstrap) -> Config {
    Config {
        limits: b.limits,
        memory_budget: usize::try_from(b.memory_budget).unwrap_or(usize::MAX),
        hash_key: b.hash_key,
        first_token: b.first_token,
        // Every member must run the same value (expiry is replicated
        // state): the one in the log.
        deadline_slack: Ttl::from_millis(b.deadline_slack_ms),
        ..Config::DEFAULT
    }
}
