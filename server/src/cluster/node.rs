//! One member's Raft: raft-rs's `RawNode` driven by the event loop (tick,
//! step, propose, then one `Ready` per turn), the cluster clock that stamps
//! entries, and what a change of leader means for the host.
//!
//! Never applies anything itself: committed entries go to
//! [`Host::apply_entry`](crate::host::Host::apply_entry), in order, after
//! the entries they follow are persisted (raft-rs's Ready contract: send
//! `messages`, persist, send `persisted_messages`, apply, advance).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use raft::prelude::{ConfChangeV2, ConfState, Entry, EntryType, Message, Snapshot};
use raft::storage::MemStorage;
use raft::{Config, RawNode, StateRole};
use tracing::{info, warn};

use super::entry::{self, Bootstrap, Entry as Logged};
use super::{Admin, AdminOp, ClusterStatus};
use crate::host::{Host, Peers};
use dlm_core::protocol::{Message as Text, Response, Status};

/// How often raft-rs is ticked.
pub const TICK: Duration = Duration::from_millis(20);
/// Ticks without a leader's heartbeat before a follower campaigns (200 to
/// 400 ms, randomized by raft-rs).
pub const ELECTION_TICKS: usize = 10;
/// Ticks between a leader's heartbeats.
pub const HEARTBEAT_TICKS: usize = 2;
/// How often an idle leader stamps the time into the log, so that a
/// leader's death loses at most this much of the clock (every TTL runs on
/// the stamps: what is not stamped is given to every holder as grace).
pub const STAMP_EVERY: u64 = 250;

/// What a turn of the member produced for the transport.
#[derive(Debug, Default)]
pub struct Outbound {
    /// Raft messages to send, each to its `to`.
    pub messages: Vec<Message>,
}

/// A change of role seen during a turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleChange {
    /// This member became the leader.
    Leading,
    /// This member stopped leading (or another member leads now).
    Following {
        /// The leader, if known.
        leader: Option<u64>,
    },
}

/// Leader-stamped time: the cluster's clock exists only as entry stamps.
/// A new leader continues from the last stamp it applied, so the time of an
/// election is never counted against anyone's TTL.
#[derive(Clone, Copy, Debug)]
struct ClusterClock {
    base: u64,
    at: Instant,
}

impl ClusterClock {
    fn now(&self) -> u64 {
        self.base + u64::try_from(self.at.elapsed().as_millis()).unwrap_or(u64::MAX / 2)
    }
}

/// This member's Raft.
pub struct Member {
    raw: RawNode<MemStorage>,
    id: u64,
    peers: BTreeMap<u64, SocketAddr>,
    next_tick: Instant,
    clock: Option<ClusterClock>,
    role: StateRole,
    leader: u64,
    /// An `Advance` proposed and not yet applied (at most one in flight).
    advance_pending: bool,
    /// The stamp of the last entry this leader proposed.
    last_stamp: u64,
    /// What this member sets up a new cluster with.
    bootstrap: Bootstrap,
    /// Identities (name, `MaxSize`) the leader registers through the log.
    identities: Vec<(String, u64)>,
    /// Membership changes proposed, answered when they apply.
    changes: Vec<Admin>,
    /// This member was removed from the cluster: it must stop.
    pub removed: bool,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("leader", &self.leader)
            .finish_non_exhaustive()
    }
}

/// raft-rs logs through slog; route it to our `tracing` output.
struct SlogToTracing;

impl slog::Drain for SlogToTracing {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        let msg = record.msg().to_string();
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "dlm::raft", "{msg}");
            }
            slog::Level::Warning => tracing::warn!(target: "dlm::raft", "{msg}"),
            slog::Level::Info => tracing::debug!(target: "dlm::raft", "{msg}"),
            _ => tracing::trace!(target: "dlm::raft", "{msg}"),
        }
        Ok(())
    }
}

#[allow(clippy::needless_pass_by_value)] // used as map_err(raft_error)
fn raft_error(e: raft::Error) -> io::Error {
    io::Error::other(format!("raft: {e}"))
}

impl Member {
    /// A member `id` of a cluster whose members are `peers` (this one
    /// included), starting a new cluster with `bootstrap` if none exists.
    /// With `join`, it starts with no membership of its own and waits for
    /// the cluster's leader (which added it) to bring it up to date.
    pub fn new(
        id: u64,
        peers: BTreeMap<u64, SocketAddr>,
        bootstrap: Bootstrap,
        identities: Vec<(String, u64)>,
        join: bool,
    ) -> io::Result<Self> {
        // A new cluster starts with every listed member voting; a member
        // that joins starts with the others (not itself: it votes once the
        // leader's entry adding it applies).
        let voters: Vec<u64> = peers
            .keys()
            .copied()
            .filter(|p| !join || *p != id)
            .collect();
        let storage = MemStorage::new_with_conf_state(ConfState::from((voters, vec![])));
        let config = Config {
            id,
            election_tick: ELECTION_TICKS,
            heartbeat_tick: HEARTBEAT_TICKS,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Config::default()
        };
        config.validate().map_err(raft_error)?;
        let logger = slog::Logger::root(slog::Fuse(SlogToTracing), slog::o!());
        let mut raw = RawNode::new(&config, storage, &logger).map_err(raft_error)?;
        raw.set_batch_append(true);
        Ok(Self {
            raw,
            id,
            peers,
            next_tick: Instant::now() + TICK,
            clock: None,
            role: StateRole::Follower,
            leader: 0,
            advance_pending: false,
            last_stamp: 0,
            bootstrap,
            identities,
            changes: Vec::new(),
            removed: false,
        })
    }

    /// This member's ID.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The members and their peer addresses.
    pub fn peers(&self) -> &BTreeMap<u64, SocketAddr> {
        &self.peers
    }

    /// The leader, if known.
    pub fn leader(&self) -> Option<u64> {
        (self.leader != 0).then_some(self.leader)
    }

    /// Whether this member leads.
    pub fn is_leader(&self) -> bool {
        self.role == StateRole::Leader
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// Commit and applied indexes.
    pub fn indexes(&self) -> (u64, u64) {
        (
            self.raw.raft.raft_log.committed,
            self.raw.raft.raft_log.applied,
        )
    }

    /// Each member's replication progress (matched index) as the leader
    /// sees it.
    pub fn progress(&self) -> Vec<(u64, u64)> {
        self.raw
            .raft
            .prs()
            .iter()
            .map(|(id, p)| (*id, p.matched))
            .collect()
    }

    /// When the next tick is due.
    pub fn next_tick(&self) -> Instant {
        self.next_tick
    }

    /// Ticks for the time that passed (catching up after a stall).
    pub fn tick(&mut self, now: Instant) {
        let mut n = 0;
        while now >= self.next_tick && n < 2 * ELECTION_TICKS {
            self.raw.tick();
            self.next_tick += TICK;
            n += 1;
        }
        if now >= self.next_tick {
            self.next_tick = now + TICK;
        }
    }

    /// A message from a peer.
    pub fn step(&mut self, m: Message) {
        if let Err(e) = self.raw.step(m) {
            tracing::debug!("raft step: {e}");
        }
    }

    /// A peer could not be reached.
    pub fn unreachable(&mut self, peer: u64) {
        self.raw.report_unreachable(peer);
    }

    /// The cluster time a leader stamps with now.
    fn stamp(&self, host: &Host) -> u64 {
        let applied = host.replica().map_or(0, |r| r.applied_stamp);
        self.clock.map_or(applied, |c| c.now().max(applied))
    }

    /// Proposes what the host has for the log (the leader only), and an
    /// `Advance` when something falls due on the cluster clock.
    pub fn propose_from(&mut self, host: &mut Host) {
        if !self.is_leader() {
            return;
        }
        let stamp = self.stamp(host);
        let Some(replica) = host.replica_mut() else {
            return;
        };
        for data in replica.take_proposals(stamp) {
            self.last_stamp = stamp;
            if let Err(e) = self.raw.propose(Vec::new(), data) {
                warn!("proposal dropped: {e}");
            }
        }
        let due = host
            .engine()
            .next_deadline()
            .is_some_and(|d| d.as_millis() <= stamp)
            || stamp >= self.last_stamp + STAMP_EVERY;
        if due && !self.advance_pending {
            self.last_stamp = stamp;
            let data = entry::encode(stamp, &Logged::Advance);
            if self.raw.propose(Vec::new(), data).is_ok() {
                self.advance_pending = true;
            }
        }
    }

    /// Starts the membership changes and transfers clients asked for (the
    /// leader only; raft-rs takes one membership change at a time).
    pub fn admin_from(&mut self, host: &mut Host) {
        let Some(replica) = host.replica_mut() else {
            return;
        };
        let asked: Vec<Admin> = replica.admin.drain(..).collect();
        for a in asked {
            let refuse = |host: &mut Host, m: &'static str| {
                let mut r = Response::new(Status::No);
                r.error = Some(Text::Text(m));
                host.answer_pending(a.tag, a.seq, &r);
            };
            if !self.is_leader() {
                refuse(host, "not the leader any more");
                continue;
            }
            match a.op {
                AdminOp::Transfer(node) => {
                    if !self.peers.contains_key(&node) || node == self.id {
                        refuse(host, "no such other member");
                        continue;
                    }
                    self.raw.transfer_leader(node);
                    info!(
                        node = self.id,
                        to = node,
                        "handing the leadership over, as asked"
                    );
                    host.answer_pending(a.tag, a.seq, &Response::new(Status::Done));
                }
                AdminOp::Add(node, addr) => {
                    if self.peers.contains_key(&node) {
                        refuse(host, "already a member");
                        continue;
                    }
                    let mut cc = raft::prelude::ConfChangeSingle::default();
                    cc.set_change_type(raft::prelude::ConfChangeType::AddNode);
                    cc.node_id = node;
                    let mut v2 = ConfChangeV2::default();
                    v2.set_changes(vec![cc].into());
                    match self
                        .raw
                        .propose_conf_change(addr.to_string().into_bytes(), v2)
                    {
                        Ok(()) => self.changes.push(a),
                        Err(_) => refuse(host, "another membership change is in progress"),
                    }
                }
                AdminOp::Remove(node) => {
                    if !self.peers.contains_key(&node) {
                        refuse(host, "not a member");
                        continue;
                    }
                    if self.peers.len() == 1 {
                        refuse(host, "the last member cannot be removed");
                        continue;
                    }
                    let mut cc = raft::prelude::ConfChangeSingle::default();
                    cc.set_change_type(raft::prelude::ConfChangeType::RemoveNode);
                    cc.node_id = node;
                    let mut v2 = ConfChangeV2::default();
                    v2.set_changes(vec![cc].into());
                    match self.raw.propose_conf_change(Vec::new(), v2) {
                        Ok(()) => self.changes.push(a),
                        Err(_) => refuse(host, "another membership change is in progress"),
                    }
                }
            }
        }
    }

    /// Copies the cluster's state where `Cluster` requests read it.
    fn update_status(&self, host: &mut Host) {
        let leading = self.is_leader();
        let matched: BTreeMap<u64, u64> = if leading {
            self.progress().into_iter().collect()
        } else {
            BTreeMap::new()
        };
        let status = ClusterStatus {
            leader: self.leader(),
            term: self.term(),
            commit: self.raw.raft.raft_log.committed,
            applied: self.raw.raft.raft_log.applied,
            members: self
                .peers
                .iter()
                .map(|(id, addr)| (*id, *addr, matched.get(id).copied()))
                .collect(),
        };
        if let Some(r) = host.replica_mut() {
            r.status = status;
        }
    }

    /// Handles raft-rs's `Ready`: messages out, entries persisted (in
    /// memory here), committed entries applied to `host`. Returns a change
    /// of role, if any, after applying (the caller closes connections on
    /// a lost leadership).
    pub fn drive(
        &mut self,
        host: &mut Host,
        peers: &dyn Peers,
        out: &mut Outbound,
    ) -> io::Result<Option<RoleChange>> {
        let change = self.role_change(host);
        if !self.raw.has_ready() {
            return Ok(change);
        }
        let mut rd = self.raw.ready();
        out.messages.extend(rd.take_messages());
        if !rd.snapshot().is_empty() {
            self.install(host, rd.snapshot().clone())?;
        }
        self.apply(host, peers, rd.take_committed_entries())?;
        if !rd.entries().is_empty() {
            self.raw
                .mut_store()
                .wl()
                .append(rd.entries())
                .map_err(raft_error)?;
        }
        if let Some(hs) = rd.hs() {
            self.raw.mut_store().wl().set_hardstate(hs.clone());
        }
        out.messages.extend(rd.take_persisted_messages());
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().wl().mut_hard_state().commit = commit;
        }
        out.messages.extend(light.take_messages());
        self.apply(host, peers, light.take_committed_entries())?;
        self.raw.advance_apply();
        let change = change.or_else(|| self.role_change(host));
        self.update_status(host);
        Ok(change)
    }

    fn install(&mut self, host: &mut Host, snap: Snapshot) -> io::Result<()> {
        let _ = host;
        self.raw
            .mut_store()
            .wl()
            .apply_snapshot(snap)
            .map_err(raft_error)
    }

    fn apply(&mut self, host: &mut Host, peers: &dyn Peers, entries: Vec<Entry>) -> io::Result<()> {
        for e in entries {
            match e.get_entry_type() {
                EntryType::EntryNormal => {
                    if e.data.is_empty() {
                        // A new leader's empty entry.
                        continue;
                    }
                    if let Ok(s) = entry::decode(&e.data)
                        && s.entry == Logged::Advance
                    {
                        self.advance_pending = false;
                    }
                    host.apply_entry(&e.data, peers)
                        .map_err(|d| io::Error::new(io::ErrorKind::InvalidData, d))?;
                }
                EntryType::EntryConfChangeV2 => {
                    let mut cc = ConfChangeV2::default();
                    protobuf::Message::merge_from_bytes(&mut cc, &e.data)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    let cs = self.raw.apply_conf_change(&cc).map_err(raft_error)?;
                    self.raw.mut_store().wl().set_conf_state(cs);
                    self.membership_applied(host, &cc, &e.context);
                }
                EntryType::EntryConfChange => {
                    let mut cc = raft::prelude::ConfChange::default();
                    protobuf::Message::merge_from_bytes(&mut cc, &e.data)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    let cs = self.raw.apply_conf_change(&cc).map_err(raft_error)?;
                    self.raw.mut_store().wl().set_conf_state(cs);
                }
            }
        }
        Ok(())
    }

    /// A membership change applied: the peer table follows, and the client
    /// who asked for it is answered.
    fn membership_applied(&mut self, host: &mut Host, cc: &ConfChangeV2, context: &[u8]) {
        for c in cc.get_changes() {
            let node = c.node_id;
            match c.get_change_type() {
                raft::prelude::ConfChangeType::AddNode
                | raft::prelude::ConfChangeType::AddLearnerNode => {
                    let addr = std::str::from_utf8(context)
                        .ok()
                        .and_then(|a| a.parse::<SocketAddr>().ok());
                    match addr {
                        Some(addr) => {
                            info!(node = self.id, added = node, %addr, "member added");
                            self.peers.insert(node, addr);
                        }
                        None => warn!(
                            node = self.id,
                            added = node,
                            "member added without an address"
                        ),
                    }
                }
                raft::prelude::ConfChangeType::RemoveNode => {
                    info!(node = self.id, removed = node, "member removed");
                    self.peers.remove(&node);
                    if node == self.id {
                        self.removed = true;
                    }
                }
            }
            let done: Vec<Admin> = {
                let (done, keep): (Vec<Admin>, Vec<Admin>) = std::mem::take(&mut self.changes)
                    .into_iter()
                    .partition(|a| match a.op {
                        AdminOp::Add(n, _) | AdminOp::Remove(n) => n == node,
                        AdminOp::Transfer(_) => false,
                    });
                self.changes = keep;
                done
            };
            for a in done {
                host.answer_pending(a.tag, a.seq, &Response::new(Status::Done));
            }
        }
    }

    /// Notices a change of role or leader; on winning, sets up the clock
    /// and proposes what a new leader's term starts with.
    fn role_change(&mut self, host: &mut Host) -> Option<RoleChange> {
        let (role, leader) = (self.raw.raft.state, self.raw.raft.leader_id);
        if role == self.role && leader == self.leader {
            return None;
        }
        let was = self.role;
        self.role = role;
        self.leader = leader;
        let term = self.raw.raft.term;
        if role == StateRole::Leader {
            let base = host.replica().map_or(0, |r| r.applied_stamp);
            self.clock = Some(ClusterClock {
                base,
                at: Instant::now(),
            });
            self.advance_pending = false;
            info!(node = self.id, term, "won the election: leading");
            let mut first = Vec::new();
            if !host.replica().is_some_and(|r| r.bootstrapped) {
                first.push(entry::encode(base, &Logged::Bootstrap(self.bootstrap)));
            }
            first.push(entry::encode(base, &Logged::DropWaiters));
            for (name, max_data) in &self.identities {
                first.push(entry::encode(
                    base,
                    &Logged::RegisterIdentity {
                        name,
                        max_data: *max_data,
                    },
                ));
            }
            for data in first {
                if let Err(e) = self.raw.propose(Vec::new(), data) {
                    warn!("proposal dropped: {e}");
                }
            }
            if let Some(r) = host.replica_mut() {
                r.serving = true;
            }
            return Some(RoleChange::Leading);
        }
        if was == StateRole::Leader {
            info!(
                node = self.id,
                term,
                leader = (leader != 0).then_some(leader),
                "lost the leadership (a higher term, or no quorum)"
            );
        } else if leader != 0 {
            info!(node = self.id, term, leader, "following");
        }
        self.clock = None;
        if let Some(r) = host.replica_mut() {
            r.serving = false;
            r.discard();
        }
        Some(RoleChange::Following {
            leader: (leader != 0).then_some(leader),
        })
    }

    /// The identities changed (SIGHUP): a leader registers them through the
    /// log now; a follower will when it leads.
    pub fn set_identities(&mut self, identities: Vec<(String, u64)>, host: &Host) {
        if self.is_leader() {
            let stamp = self.stamp(host);
            for (name, max_data) in &identities {
                let data = entry::encode(
                    stamp,
                    &Logged::RegisterIdentity {
                        name,
                        max_data: *max_data,
                    },
                );
                if let Err(e) = self.raw.propose(Vec::new(), data) {
                    warn!("proposal dropped: {e}");
                }
            }
        }
        self.identities = identities;
    }

    /// Hands the leadership to the most up-to-date follower (graceful
    /// shutdown). Returns the transferee, if any.
    pub fn transfer_leadership(&mut self) -> Option<u64> {
        if !self.is_leader() {
            return None;
        }
        let best = self
            .progress()
            .into_iter()
            .filter(|(id, _)| *id != self.id)
            .max_by_key(|(_, matched)| *matched)
            .map(|(id, _)| id)?;
        info!(
            node = self.id,
            to = best,
            "handing the leadership over before stopping"
        );
        self.raw.transfer_leader(best);
        Some(best)
    }
}
