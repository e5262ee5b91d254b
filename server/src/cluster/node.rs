//! One member's Raft: raft-rs's `RawNode` driven by the event loop (tick,
//! step, propose, then one `Ready` per turn), the cluster clock that stamps
//! entries, and what a change of leader means for the host.
//!
//! Never applies anything itself: committed entries go to
//! [`Host::apply_entry`](crate::host::Host::apply_entry), in order, after
//! the entries they follow are persisted (raft-rs's Ready contract: send
//! `messages`, persist, send `persisted_messages`, apply, advance; with a
//! data directory its asynchronous form: the write goes to the store's
//! writer thread, and `persisted_messages` wait until it reports the write
//! on disk).

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use raft::prelude::{ConfChangeV2, ConfState, Entry, EntryType, Message, Snapshot};
use raft::{Config, RawNode, StateRole};
use tracing::{info, warn};

use super::entry::{self, Bootstrap, Entry as Logged};
use super::log::LogStore;
use super::{Admin, AdminOp, ClusterStatus};
use crate::host::{Host, Peers};
use dlm_core::protocol::{Message as Text, Response, Status};

/// How often raft-rs is ticked.
pub const TICK: Duration = Duration::from_millis(20);

/// Ticks a member that applied its own removal waits, still removed, before
/// it stops (two election timeouts).
const REMOVED_GRACE_TICKS: usize = 2 * ELECTION_TICKS;
/// Ticks without a leader's heartbeat before a follower campaigns (200 to
/// 400 ms, randomized by raft-rs).
pub const ELECTION_TICKS: usize = 10;
/// Ticks between a leader's heartbeats.
pub const HEARTBEAT_TICKS: usize = 2;
/// How often an idle leader stamps the time into the log, so that a
/// leader's death loses at most this much of the clock (every TTL runs on
/// the stamps: what is not stamped is given to every holder as grace).
pub const STAMP_EVERY: u64 = 250;
/// Entries kept before a snapshot's index, for followers slightly behind
/// (at most this share of the snapshot interval).
const KEEP_BEHIND: u64 = 2_000;

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

/// The most one reading of the leader's clock may add to the cluster's
/// time. The loop reads it every turn, and a turn comes at least every
/// [`TICK`]; a longer gap between two readings (the process stalled, or
/// its monotonic clock jumped forward) counts as this much. A jump of the
/// leader's clock therefore brings every deadline at most this much
/// closer (the engine's deadline slack, [`CLOCK_JUMP_SLACK`], absorbs
/// several), while a stall of the whole leader only makes leases last
/// longer (never shorter) than their TTL on the holders' clocks.
pub const MAX_CLOCK_STEP: Duration = TICK;

/// What every cluster deadline (lock, data, wait) gets on top of its TTL
/// for jumps of the leader's clock: [`MAX_CLOCK_STEP`] for each of ten
/// jumps within one TTL. A holder counting its TTL from when it sent its
/// request keeps all of it through them.
pub const CLOCK_JUMP_SLACK: Duration = MAX_CLOCK_STEP.saturating_mul(10);

/// The deadline slack a new cluster writes into its first entry (every
/// member then runs that value, whatever its build): 1 ms for the leader's
/// clock truncating to milliseconds, and [`CLOCK_JUMP_SLACK`].
pub fn deadline_slack_ms() -> u64 {
    1 + u64::try_from(CLOCK_JUMP_SLACK.as_millis()).unwrap_or(0)
}

/// Leader-stamped time: the cluster's clock exists only as entry stamps.
/// A new leader continues from the last stamp it applied, so the time of an
/// election is never counted against anyone's TTL. It follows the leader's
/// monotonic clock in steps of at most [`MAX_CLOCK_STEP`] per reading, so
/// that a jump of that clock (a member's monotonic clock is not trusted
/// more than its wall clock) cannot expire every lock at once.
#[derive(Clone, Copy, Debug)]
struct ClusterClock {
    /// Cluster time at the last reading, in microseconds.
    micros: u64,
    /// When the leader's clock was last read.
    at: Instant,
}

impl ClusterClock {
    fn new(base_ms: u64, at: Instant) -> Self {
        Self {
            micros: base_ms.saturating_mul(1000),
            at,
        }
    }

    /// Reads the leader's clock at `now`: the cluster time, milliseconds.
    fn read(&mut self, now: Instant) -> u64 {
        let step = now.saturating_duration_since(self.at).min(MAX_CLOCK_STEP);
        self.micros = self
            .micros
            .saturating_add(u64::try_from(step.as_micros()).unwrap_or(0));
        self.at = now.max(self.at);
        self.micros / 1000
    }
}

/// What is left of a turn's `Ready` after
/// [`Member::drive_begin`]: its write, and the role change seen.
struct DriveStep {
    ready: Option<raft::Ready>,
    change: Option<RoleChange>,
    /// The `Ready` was handled whole (its write handed to the writer
    /// thread): only the turn's end is left.
    handed_over: bool,
}

/// A `Ready` whose write the store's writer thread has not finished.
struct Unwritten {
    /// The store's ticket for it.
    ticket: u64,
    /// raft-rs's number of the `Ready`.
    number: u64,
    /// What may be sent only once it is on disk (acknowledgements, votes).
    messages: Vec<Message>,
}

/// This member's Raft.
pub struct Member {
    raw: RawNode<LogStore>,
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
    /// Ticks since this member applied its own removal, while no later
    /// entry added it back. A member removed and added again under the
    /// same ID (a rejoin) replays both while it catches up: it stops only
    /// if it stays removed for a while (the leader stops sending to a
    /// member truly removed, so nothing would add it back).
    removed_ticks: Option<usize>,
    /// Applied entries between snapshots.
    pub snapshot_every: u64,
    /// Holds no history and has not heard from a leader yet.
    fresh: bool,
    /// The term this member last led.
    led_term: u64,
    /// A leadership transfer answered last turn, started this turn: its
    /// answer goes out to the links before the target's `TimeoutNow`, so
    /// that the new leader relays it before closing the old leader's
    /// sessions.
    transfer_next: Option<u64>,
    /// Writes handed to the store's writer thread and not yet on disk
    /// (a member with a data directory): what waits for each.
    unwritten: VecDeque<Unwritten>,
    /// Where members serve clients (this one's `--advertise`, the others'
    /// from their `Hello`), for `Cluster` answers: clients find the leader
    /// with it.
    clients: BTreeMap<u64, String>,
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
    /// the cluster's leader (which added it) to bring it up to date. With a
    /// data directory, what it held before is recovered (the engine from
    /// the latest snapshot, the entries after it replayed as they are
    /// committed) and kept there.
    pub fn new(
        id: u64,
        mut peers: BTreeMap<u64, SocketAddr>,
        bootstrap: Bootstrap,
        identities: Vec<(String, u64)>,
        join: bool,
        data_dir: Option<&std::path::Path>,
        host: &mut Host,
    ) -> io::Result<Self> {
        if let Some(dir) = data_dir
            && let Some(meta) = super::log::Meta::load(dir)?
            && meta.node_id != id
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "data directory {} belongs to node {} of cluster {:016x}; started as node {id}",
                    dir.display(),
                    meta.node_id,
                    meta.cluster_id
                ),
            ));
        }
        let (storage, recovered) = LogStore::open(data_dir)?;
        if recovered.dir.is_some() {
            info!("{recovered}");
        }
        let mut applied = 0;
        let fresh = recovered.fresh && recovered.last_index == 0;
        if recovered.fresh {
            // A new cluster starts with every listed member voting; a
            // member that joins starts with the others (not itself: it
            // votes once the leader's entry adding it applies).
            let voters: Vec<u64> = peers
                .keys()
                .copied()
                .filter(|p| !join || *p != id)
                .collect();
            storage.set_conf_state(ConfState::from((voters, vec![])));
            storage.persist(true)?;
        } else if let Some(snap) = storage.latest_snapshot()
            && !snap.data.is_empty()
        {
            applied = snap.get_metadata().index;
            restore(host, &snap.data, &mut peers)?;
            info!(index = applied, "state restored from the latest snapshot");
        }
        let config = Config {
            applied,
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
        // Members the log knows of (added since --peers was written) keep
        // the addresses their entries or snapshot gave.
        let voters = raw.raft.prs().conf().voters().ids();
        peers.retain(|p, _| voters.contains(*p) || *p == id || join);
        raw.set_batch_append(true);
        // The commit index rides on the next append or heartbeat instead of
        // a message of its own.
        raw.skip_bcast_commit(true);
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
            removed_ticks: None,
            snapshot_every: 20_000,
            fresh,
            led_term: 0,
            transfer_next: None,
            unwritten: VecDeque::new(),
            clients: BTreeMap::new(),
        })
    }

    /// Sets what the store's writer thread calls when a write completes
    /// (a durable member): it must wake the loop that drives this member.
    pub fn set_notify(&self, notify: super::persister::Notify) {
        self.raw.store().set_notify(notify);
    }

    /// Records where member `id` serves clients (`None`: it cannot say).
    pub fn set_client(&mut self, id: u64, addr: Option<String>) {
        match addr {
            Some(a) => {
                self.clients.insert(id, a);
            }
            None => {
                self.clients.remove(&id);
            }
        }
    }

    /// Where member `id` serves clients, if known.
    pub fn client(&self, id: u64) -> Option<&str> {
        self.clients.get(&id).map(String::as_str)
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
        if self.transfer_next.is_some() {
            // A transfer starts on the next turn, at once.
            return Instant::now();
        }
        self.next_tick
    }

    /// Ticks for the time that passed (catching up after a stall).
    pub fn tick(&mut self, now: Instant) {
        let mut n = 0;
        while now >= self.next_tick && n < 2 * ELECTION_TICKS {
            self.raw.tick();
            if let Some(t) = &mut self.removed_ticks {
                *t += 1;
                if *t >= REMOVED_GRACE_TICKS {
                    self.removed = true;
                }
            }
            self.next_tick += TICK;
            n += 1;
        }
        if now >= self.next_tick {
            self.next_tick = now + TICK;
        }
    }

    /// A message from a peer.
    pub fn step(&mut self, m: Message) -> io::Result<()> {
        use raft::prelude::MessageType;
        let last = self.raw.raft.raft_log.last_index();
        match m.get_msg_type() {
            // The leader believes this member holds entries it does not:
            // it lost its data (a member without --data-dir restarted, or
            // a data directory was wiped). Raft cannot run on that; stop.
            MessageType::MsgHeartbeat if m.commit > last => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "this member lost its data: the leader (member {}) holds it committed to \
                         index {} but it has {last}; remove it from the cluster and add it back \
                         (dlm cluster remove {id}, then add), starting it with --join",
                        m.from,
                        m.commit,
                        id = self.id
                    ),
                ));
            }
            // A member that holds nothing and never heard from a leader does
            // not vote for a candidate with history: it may have lost its
            // own (a new cluster's first candidates have none).
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
                if self.fresh && m.index > 0 =>
            {
                tracing::debug!(
                    from = m.from,
                    "vote request ignored: this member has no history"
                );
                return Ok(());
            }
            MessageType::MsgAppend | MessageType::MsgSnapshot | MessageType::MsgHeartbeat => {
                self.fresh = false;
            }
            _ => {}
        }
        if let Err(e) = self.raw.step(m) {
            tracing::debug!("raft step: {e}");
        }
        Ok(())
    }

    /// A peer could not be reached.
    pub fn unreachable(&mut self, peer: u64) {
        self.raw.report_unreachable(peer);
    }

    /// The connection to `peer` closed. If it was the leader, its process
    /// most likely ended (a crash closes its sockets; a partition does not,
    /// and is left to the election timeout): the surviving member with the
    /// lowest ID campaigns at once, as a leader handing over would ask it
    /// to, instead of waiting out the timeout. Raft's safety is the same
    /// for any election; at worst a live leader is replaced.
    pub fn peer_closed(&mut self, peer: u64) {
        if self.is_leader() || self.leader != peer || peer == 0 {
            return;
        }
        let first = self.peers.keys().copied().filter(|p| *p != peer).min();
        if first != Some(self.id) {
            return;
        }
        info!(
            node = self.id,
            leader = peer,
            "the leader's connection closed: campaigning now"
        );
        let mut m = Message::default();
        m.set_msg_type(raft::prelude::MessageType::MsgTimeoutNow);
        m.from = peer;
        m.to = self.id;
        m.term = self.raw.raft.term;
        if let Err(e) = self.raw.step(m) {
            tracing::debug!("campaign: {e}");
        }
    }

    /// The cluster time a leader stamps with now.
    fn stamp(&mut self, host: &Host) -> u64 {
        let applied = host.replica().map_or(0, |r| r.applied_stamp);
        let now = Instant::now();
        self.clock
            .as_mut()
            .map_or(applied, |c| c.read(now).max(applied))
    }

    /// Proposes what the host has for the log (the leader only), and an
    /// `Advance` when something falls due on the cluster clock.
    pub fn propose_from(&mut self, host: &mut Host) {
        if !self.is_leader() {
            return;
        }
        let stamp = self.stamp(host);
        // This turn's reads first, as one read index request (the index is
        // this leader's commit index now, before this turn's proposals).
        self.ask_reads(host);
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

    /// Asks one read index for the reads waiting (the leader only; see
    /// [`Replica::take_reads`](super::Replica::take_reads)); whether it
    /// did. raft-rs ignores a read index until the leader has committed an
    /// entry of its term: until then they wait.
    fn ask_reads(&mut self, host: &mut Host) -> bool {
        if !self.is_leader() || !self.raw.raft.commit_to_current_term() {
            return false;
        }
        let Some(ctx) = host.replica_mut().and_then(super::Replica::take_reads) else {
            return false;
        };
        self.raw.read_index(ctx);
        true
    }

    /// Starts the membership changes and transfers clients asked for (the
    /// leader only; raft-rs takes one membership change at a time).
    pub fn admin_from(&mut self, host: &mut Host) {
        if let Some(node) = self.transfer_next.take()
            && self.is_leader()
        {
            self.raw.transfer_leader(node);
        }
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
                    self.transfer_next = Some(node);
                    info!(
                        node = self.id,
                        to = node,
                        "handing the leadership over, as asked"
                    );
                    host.answer_pending(a.tag, a.seq, &Response::new(Status::Done));
                }
                AdminOp::Add(node, addr) => {
                    if self.peers.contains_key(&node) {
                        refuse(
                            host,
                            if self.raw.raft.has_pending_conf() {
                                "already a member as far as this leader has applied its log (a membership change may still be pending): try again"
                            } else {
                                "already a member"
                            },
                        );
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
                        // A leader just elected knows the members only up to
                        // what it has applied: one added in its log's
                        // unapplied tail is a member already.
                        refuse(
                            host,
                            if self.raw.raft.has_pending_conf() {
                                "not a member as far as this leader has applied its log (a membership change may still be pending): try again"
                            } else {
                                "not a member"
                            },
                        );
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
                .map(|(id, addr)| {
                    (
                        *id,
                        *addr,
                        matched.get(id).copied(),
                        self.clients.get(id).cloned(),
                    )
                })
                .collect(),
        };
        if let Some(r) = host.replica_mut() {
            r.status = status;
        }
    }

    /// Handles raft-rs's `Ready`: messages out, entries persisted (in
    /// memory, or handed to the store's writer thread), committed entries
    /// applied to `host`. Returns a change of role, if any, after
    /// applying (the caller closes connections on a lost leadership).
    ///
    /// A durable member's messages that may go before its write (a
    /// leader's appends, heartbeats, a follower's answers to heartbeats)
    /// go to `send_now` at once, to be on the wire during the fsync, as do
    /// those that waited for a write now on disk; the rest go to `out`.
    pub fn drive(
        &mut self,
        host: &mut Host,
        peers: &dyn Peers,
        out: &mut Outbound,
        send_now: &mut dyn FnMut(Vec<Message>),
    ) -> io::Result<Option<RoleChange>> {
        let step = self.drive_begin(host, peers, out, send_now)?;
        self.drive_finish(host, peers, out, send_now, step)
    }

    /// The first half of a turn's `Ready`: what a durable member's writer
    /// thread finished noted (raft-rs told, the messages that waited for
    /// it sent), messages out, confirmed read indexes noted, a snapshot
    /// installed, and the entries already committed applied to `host`
    /// (their answers made). A durable member then hands the write over
    /// to its writer thread and is done; in memory, what is left (the
    /// write and what it commits) is in the returned [`DriveStep`] for
    /// [`drive_finish`](Self::drive_finish).
    ///
    /// A durable member's messages that may go before its write (a
    /// leader's appends, heartbeats, a follower's answers to heartbeats)
    /// are handed to `send_now`, to be on the wire during the fsync:
    /// followers persist while the leader does (as etcd does), and a read
    /// index round is not held behind a member's fsync.
    fn drive_begin(
        &mut self,
        host: &mut Host,
        peers: &dyn Peers,
        out: &mut Outbound,
        send_now: &mut dyn FnMut(Vec<Message>),
    ) -> io::Result<DriveStep> {
        let change = self.role_change(host);
        let durable = self.raw.store().is_durable();
        if durable {
            self.note_written(send_now)?;
        }
        if !self.raw.has_ready() {
            return Ok(DriveStep {
                ready: None,
                change,
                handed_over: false,
            });
        }
        let mut rd = self.raw.ready();
        // Messages first: followers persist while this member does.
        if durable {
            send_now(rd.take_messages());
        } else {
            out.messages.extend(rd.take_messages());
        }
        // Read indexes the leader confirmed (a quorum heard from since the
        // reads were asked): they are answered once applied, below.
        if let Some(replica) = host.replica_mut() {
            for rs in rd.take_read_states() {
                replica.read_ready(&rs.request_ctx, rs.index);
            }
        }
        if !rd.snapshot().is_empty() {
            if durable {
                // The snapshot's files follow every write before them.
                self.wait_written(send_now)?;
            }
            self.install(host, rd.snapshot().clone())?;
        }
        self.apply(host, peers, rd.take_committed_entries())?;
        if durable {
            self.hand_over(rd, send_now)?;
            return Ok(DriveStep {
                ready: None,
                change,
                handed_over: true,
            });
        }
        Ok(DriveStep {
            ready: Some(rd),
            change,
            handed_over: false,
        })
    }

    /// A durable member's write of `rd` (entries, hard state), handed to
    /// the store's writer thread: the loop goes on during the fsync, and
    /// what must wait for the write (`persisted_messages`: a follower's
    /// acknowledgements, votes) is kept until
    /// [`note_written`](Self::note_written) sees it on disk. raft-rs does
    /// not count this member's new entries as stored (for its commit
    /// index) before then either, and hands out committed entries only
    /// once they are on this member's disk too.
    fn hand_over(
        &mut self,
        mut rd: raft::Ready,
        send_now: &mut dyn FnMut(Vec<Message>),
    ) -> io::Result<()> {
        let store = self.raw.mut_store().clone();
        if !rd.entries().is_empty() {
            store.append(rd.entries())?;
        }
        if let Some(hs) = rd.hs() {
            store.set_hard_state(hs.clone());
        }
        let messages = rd.take_persisted_messages();
        let number = rd.number();
        let snapshot = !rd.snapshot().is_empty();
        let ticket = store.persist_async(rd.must_sync())?;
        self.raw.advance_append_async(rd);
        if let Some(ticket) = ticket {
            self.unwritten.push_back(Unwritten {
                ticket,
                number,
                messages,
            });
            if snapshot {
                // raft-rs counts an installed snapshot as applied only
                // once it is stored: this one write is waited for.
                store.wait(ticket)?;
                self.release(ticket, send_now);
            }
        }
        self.raw.advance_apply();
        Ok(())
    }

    /// Tells raft-rs which `Ready`s the writer thread has put on disk, and
    /// sends what waited for them.
    fn note_written(&mut self, send_now: &mut dyn FnMut(Vec<Message>)) -> io::Result<()> {
        let written = self.raw.store().written()?;
        self.release(written, send_now);
        Ok(())
    }

    /// Waits until every `Ready` handed over is on disk.
    fn wait_written(&mut self, send_now: &mut dyn FnMut(Vec<Message>)) -> io::Result<()> {
        // An empty write queued behind the others: done when they are.
        let store = self.raw.store().clone();
        if let Some(ticket) = store.persist_async(false)? {
            store.wait(ticket)?;
            self.release(ticket, send_now);
        }
        Ok(())
    }

    /// Hands raft-rs every `Ready` written up to ticket `written`, and
    /// sends what waited for them, in order.
    fn release(&mut self, written: u64, send_now: &mut dyn FnMut(Vec<Message>)) {
        let mut number = None;
        while let Some(u) = self.unwritten.front_mut() {
            if u.ticket > written {
                break;
            }
            number = Some(u.number);
            let messages = std::mem::take(&mut u.messages);
            self.unwritten.pop_front();
            if !messages.is_empty() {
                send_now(messages);
            }
        }
        if let Some(number) = number {
            self.step_down_if_removed();
            self.raw.on_persist_ready(number);
        }
    }

    /// A leader that applied its own removal steps down before raft-rs
    /// hears of a stored write: raft-rs (0.7) then updates the leader's own
    /// progress, which a removed leader no longer has, and panics (in the
    /// chaos suite, a leader asked to remove itself while its writes were
    /// on their way to disk). Removed, it could not lead for long anyway:
    /// it stops by itself ([`REMOVED_GRACE_TICKS`]) and the others elect a
    /// leader among themselves.
    fn step_down_if_removed(&mut self) {
        if self.raw.raft.state == StateRole::Leader && self.raw.raft.prs().get(self.id).is_none() {
            let term = self.raw.raft.term;
            self.raw.raft.become_follower(term, raft::INVALID_ID);
            info!(
                node = self.id,
                term, "no longer a member: stepping down as the leader"
            );
        }
    }

    /// The second half: in memory, this turn's entries and state written,
    /// the messages that had to wait for it, and what that committed
    /// applied; then, for every member, the turn's end (reads answered, a
    /// snapshot taken when due, the role and status noted).
    fn drive_finish(
        &mut self,
        host: &mut Host,
        peers: &dyn Peers,
        out: &mut Outbound,
        send_now: &mut dyn FnMut(Vec<Message>),
        step: DriveStep,
    ) -> io::Result<Option<RoleChange>> {
        let DriveStep {
            ready,
            change,
            handed_over,
        } = step;
        if let Some(mut rd) = ready {
            // In memory: written at once.
            let store = self.raw.mut_store().clone();
            let appends = !rd.entries().is_empty();
            if appends {
                store.append(rd.entries())?;
            }
            if let Some(hs) = rd.hs() {
                store.set_hard_state(hs.clone());
            }
            store.persist(rd.must_sync())?;
            out.messages.extend(rd.take_persisted_messages());
            if appends {
                // Not otherwise: the step down closes this turn's
                // connections, and with them the answer to the removal.
                self.step_down_if_removed();
            }
            let mut light = self.raw.advance(rd);
            if let Some(commit) = light.commit_index() {
                store.set_commit(commit);
            }
            out.messages.extend(light.take_messages());
            self.apply(host, peers, light.take_committed_entries())?;
            self.raw.advance_apply();
        } else if !handed_over {
            return Ok(change);
        }
        host.answer_reads(self.raw.raft.raft_log.applied);
        self.maybe_snapshot(host)?;
        let change = change.or_else(|| self.role_change(host));
        self.update_status(host);
        if change.is_none() && self.ask_reads(host) {
            // Reads that came while the last read index was in flight:
            // their round starts now, not on the next event.
            return self.drive(host, peers, out, send_now);
        }
        Ok(change)
    }

    fn install(&mut self, host: &mut Host, snap: Snapshot) -> io::Result<()> {
        restore(host, &snap.data, &mut self.peers)?;
        info!(
            node = self.id,
            index = snap.get_metadata().index,
            "installed the leader's snapshot"
        );
        self.raw.mut_store().install_snapshot(snap)
    }

    /// Every `snapshot_every` applied entries: a snapshot of the state
    /// (with the members' addresses), and the log compacted behind it.
    fn maybe_snapshot(&mut self, host: &Host) -> io::Result<()> {
        let applied = self.raw.raft.raft_log.applied;
        let store = self.raw.mut_store().clone();
        let (last, _) = store.snapshot_index_term();
        let wanted = store.take_snapshot_wanted();
        if applied <= last || (applied < last + self.snapshot_every && !wanted) {
            return Ok(());
        }
        let mut data = Vec::with_capacity(1024);
        data.extend_from_slice(&u32::try_from(self.peers.len()).unwrap_or(0).to_le_bytes());
        for (id, addr) in &self.peers {
            let a = addr.to_string();
            data.extend_from_slice(&id.to_le_bytes());
            data.push(u8::try_from(a.len()).unwrap_or(0));
            data.extend_from_slice(a.as_bytes());
        }
        data.extend_from_slice(&host.cluster_snapshot());
        let cs = self.raw.raft.prs().conf().to_conf_state();
        store.save_snapshot(applied, cs, data)?;
        let keep = KEEP_BEHIND.min(self.snapshot_every / 10);
        store.compact(applied.saturating_sub(keep).max(1))?;
        tracing::debug!(
            node = self.id,
            index = applied,
            "snapshot taken, log compacted"
        );
        Ok(())
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
                    self.raw.mut_store().set_conf_state(cs);
                    self.membership_applied(host, &cc, &e.context);
                }
                EntryType::EntryConfChange => {
                    let mut cc = raft::prelude::ConfChange::default();
                    protobuf::Message::merge_from_bytes(&mut cc, &e.data)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    let cs = self.raw.apply_conf_change(&cc).map_err(raft_error)?;
                    self.raw.mut_store().set_conf_state(cs);
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
                            if node == self.id {
                                self.removed_ticks = None;
                            }
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
                        self.removed_ticks = Some(0);
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
            self.clock = Some(ClusterClock::new(base, Instant::now()));
            self.advance_pending = false;
            self.led_term = term;
            info!(
                node = self.id,
                term, "won the election: a quorum voted for this member"
            );
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
            let why = if term > self.led_term && leader != 0 {
                format!("member {leader} leads term {term}")
            } else if term > self.led_term {
                format!("another member campaigns in term {term}")
            } else {
                "no quorum heard from within an election timeout".to_owned()
            };
            info!(node = self.id, term, "lost the leadership: {why}");
        } else if role == StateRole::Candidate || role == StateRole::PreCandidate {
            info!(
                node = self.id,
                term, "campaigning: no leader heard from within an election timeout"
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

/// Restores a member's state from snapshot data: the members' addresses,
/// then the host's state.
fn restore(host: &mut Host, data: &[u8], peers: &mut BTreeMap<u64, SocketAddr>) -> io::Result<()> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("snapshot: {what}"));
    let count = data
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| bad("members"))?;
    let mut rest = &data[4..];
    let mut table = BTreeMap::new();
    for _ in 0..count {
        let id = rest
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .ok_or_else(|| bad("member"))?;
        let len = usize::from(*rest.get(8).ok_or_else(|| bad("member"))?);
        let addr = rest
            .get(9..9 + len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .ok_or_else(|| bad("member address"))?;
        table.insert(id, addr);
        rest = &rest[9 + len..];
    }
    host.restore_cluster_snapshot(rest)
        .map_err(|d| io::Error::new(io::ErrorKind::InvalidData, d))?;
    for (id, addr) in table {
        peers.entry(id).or_insert(addr);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostConfig;
    use crate::identity::Identities;
    use dlm_core::engine::Engine;

    struct Open;

    impl Peers for Open {
        fn closed(&self, _: usize) -> bool {
            false
        }
    }

    /// Members of one cluster (in memory, or each with a data directory
    /// under `dir`), their hosts, and the messages between them, driven by
    /// hand.
    struct Sim {
        members: BTreeMap<u64, (Member, Host)>,
        wire: Vec<Message>,
    }

    impl Sim {
        fn new(n: u64, dir: Option<&std::path::Path>) -> Self {
            let peers: BTreeMap<u64, SocketAddr> = (1..=n)
                .map(|id| {
                    (
                        id,
                        SocketAddr::from(([127, 0, 0, 1], 7000 + u16::try_from(id).unwrap())),
                    )
                })
                .collect();
            let config = HostConfig::default();
            let bootstrap = Bootstrap {
                cluster_id: 0x5eed,
                hash_key: config.hash_key,
                first_token: config.first_token,
                limits: config.limits,
                memory_budget: config.memory_budget as u64,
                deadline_slack_ms: deadline_slack_ms(),
            };
            let members = (1..=n)
                .map(|id| {
                    let config = HostConfig::default();
                    let engine = Engine::new(Host::engine_config(&config));
                    let mut host = Host::new(config, engine, Identities::none());
                    host.replicate(id);
                    let data = dir.map(|d| d.join(id.to_string()));
                    let m = Member::new(
                        id,
                        peers.clone(),
                        bootstrap,
                        Vec::new(),
                        false,
                        data.as_deref(),
                        &mut host,
                    )
                    .unwrap();
                    (id, (m, host))
                })
                .collect();
            Self {
                members,
                wire: Vec::new(),
            }
        }

        /// One turn of every member, then every message sent delivered.
        fn turn(&mut self) {
            for (m, host) in self.members.values_mut() {
                m.admin_from(host);
                m.propose_from(host);
                let mut out = Outbound::default();
                let mut now = Vec::new();
                m.drive(host, &Open, &mut out, &mut |msgs| now.extend(msgs))
                    .unwrap();
                // A durable member's writes are on disk by the turn's end
                // (raft-rs told at once): the next turn sees them done.
                m.wait_written(&mut |msgs| now.extend(msgs)).unwrap();
                self.wire.extend(now);
                self.wire.extend(out.messages);
            }
            for msg in std::mem::take(&mut self.wire) {
                if let Some((m, _)) = self.members.get_mut(&msg.to) {
                    m.step(msg).unwrap();
                }
            }
        }

        fn member(&mut self, id: u64) -> &mut Member {
            &mut self.members.get_mut(&id).unwrap().0
        }
    }

    /// The scenario of [`a_leader_that_applied_its_own_removal_steps_down`]
    /// in a cluster of three, in memory or durable (`dir`).
    fn leader_removes_itself(dir: Option<&std::path::Path>) {
        let mut sim = Sim::new(3, dir);
        assert_eq!(sim.member(1).raw.store().is_durable(), dir.is_some());
        sim.member(1).raw.campaign().unwrap();
        for _ in 0..20 {
            sim.turn();
        }
        assert!(sim.member(1).is_leader());
        let (_, host) = sim.members.get_mut(&1).unwrap();
        host.replica_mut().unwrap().admin.push_back(Admin {
            op: AdminOp::Remove(1),
            tag: 0,
            seq: 0,
        });
        // Entries go on being proposed (an idle leader stamps the time):
        // one is stored after the removal applies.
        let mut applied = false;
        for _ in 0..40 {
            let m = sim.member(1);
            if m.is_leader() {
                let data = entry::encode(0, &Logged::DropWaiters);
                let _ = m.raw.propose(Vec::new(), data);
            }
            sim.turn();
            applied |= !sim.member(1).peers().contains_key(&1);
        }
        assert!(applied, "the removal never applied");
        assert!(!sim.member(1).is_leader());
        for id in [2, 3] {
            assert!(!sim.member(id).peers().contains_key(&1));
        }
    }

    /// raft-rs unwraps a leader's own progress when one of its writes is
    /// stored; a leader that applied its own removal has none. It steps
    /// down first: no panic, and the others go on.
    #[test]
    fn a_leader_that_applied_its_own_removal_steps_down() {
        leader_removes_itself(None);
        let dir = std::env::temp_dir().join(format!("dlm-self-removal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        leader_removes_itself(Some(&dir));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_cluster_clock_follows_the_leader_in_bounded_steps() {
        let t0 = Instant::now();
        let mut c = ClusterClock::new(1_000, t0);
        // Readings a tick apart or closer count in full.
        let mut at = t0;
        for _ in 0..50 {
            at += Duration::from_millis(10);
            c.read(at);
        }
        assert_eq!(c.read(at), 1_500);
        // A gap of 5 s (a jump of the clock, or a stall) counts one step.
        at += Duration::from_secs(5);
        assert_eq!(c.read(at), 1_500 + 20);
        // A reading earlier than the last never takes time back.
        assert_eq!(c.read(t0 + Duration::from_millis(5_450)), 1_520);
        assert_eq!(c.read(at + Duration::from_millis(5)), 1_525);
    }
}
