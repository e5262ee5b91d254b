//! The event loop's cluster side: peer connections (links out, dials in),
//! client connections relayed to the leader (on a follower), the sessions
//! followers relay (on the leader), and one Raft turn per loop turn.
//!
//! ```text
//!   follower: client ──▶ Relay ──Forward──▶ leader: Session ─▶ Host (as a connection)
//!             client ◀── Relay ◀──Reply───          Session ◀─ Host output
//! ```
//!
//! Only moves bytes and frames; the rules are the host's ([`Host`](crate::host::Host)) and
//! raft-rs's ([`Member`]).
//!
//! With TLS on the client port, a follower ends its clients' TLS itself
//! and relays their plaintext to the leader over the members' mutual TLS
//! (`--peer-tls-*`, required then), telling the leader first what the
//! client's certificate stands for ([`Frame::Session`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Token as MioToken};
use protobuf::Message as _;
use tracing::{debug, info, warn};

use super::peer_io::{PeerStream, ReadEnd};
use super::{Endpoint, EventLoop, TlsSession};
use crate::cluster::node::{Member, Outbound, RoleChange};
use crate::cluster::transport::{self, Frame, FrameReader};
use crate::host::Admission;
use dlm_core::stats::Stat;

/// Token of the peer listener.
pub(super) const PEER_LISTENER: MioToken = MioToken(usize::MAX - 2);
/// Tokens of links (outgoing peer connections): base + member ID.
const LINK_BASE: usize = 1 << 40;
/// Tokens of accepted peer connections: base + index.
const INBOUND_BASE: usize = 1 << 41;
/// Tokens of relayed client connections: base + index.
const RELAY_BASE: usize = 1 << 42;
/// How long a dial may stay unanswered, and the least time between dials.
const DIAL_RETRY: Duration = Duration::from_millis(100);
/// How long a member waits for a leader before saying which peers it waits for.
const WAIT_REPORT_FIRST: Duration = Duration::from_secs(2);
/// How often it says so again while no leader is known.
const WAIT_REPORT_EVERY: Duration = Duration::from_secs(5);
/// The least time an accepted peer connection has to say hello (its TLS
/// handshake included) before it is refused; otherwise the idle timeout.
const HELLO_AT_LEAST: Duration = Duration::from_secs(1);
/// How long a peer refusal, once logged, is not logged again.
const REFUSAL_QUIET: Duration = Duration::from_secs(30);
/// Most bytes waiting on one link before it is dropped (raft retries).
const LINK_BUFFER: usize = 64 << 20;
/// How long a relayed client waits for a leader before it is told.
const NO_LEADER_GRACE: Duration = Duration::from_secs(2);
/// The refusal a relayed client gets when no leader appears.
const NO_LEADER: &[u8] =
    b"{\"Status\":\"NO\",\"Error\":\"no leader: the cluster cannot serve now\"}\n";

/// A session a follower relays, as the leader's host sees it.
#[derive(Debug)]
pub(super) struct SessionEnd {
    /// The follower.
    pub(super) node: u64,
    /// Its number on the follower.
    pub(super) session: u64,
    /// Bytes forwarded and not yet taken by the host (it was not reading,
    /// or this turn's share was fed): at most [`SESSION_INBOX`].
    pub(super) inbox: Vec<u8>,
    /// The client closed its end.
    pub(super) eof: bool,
    eof_told: bool,
    /// Bytes fed to the host in turn `fed_turn`.
    fed: usize,
    fed_turn: u64,
}

/// Most bytes of one relayed session the leader feeds its host in one
/// loop turn: a client pipelining megabytes through a follower cannot
/// hold the loop (and the Raft ticks in it) for longer than that takes;
/// the rest goes on at the next turns.
const FEED_PER_TURN: usize = 64 * 1024;

/// Most bytes a relayed session may have forwarded and not yet taken by
/// the leader's host (its requests wait behind a queued one, or arrive
/// faster than they are served): past it the session is cut off, with a
/// reason. A client on a follower is not slowed by its own socket as one
/// on the leader is, so this is its bound instead.
const SESSION_INBOX: usize = 4 << 20;

/// How long a closed relayed session's number is kept, at most, for its
/// follower's `Eof` (frames of a member come in order, so it comes
/// within a round trip unless that member died), and how many.
const CLOSED_KEPT: Duration = Duration::from_secs(60);
const MAX_CLOSED_KEPT: usize = 65_536;

/// What a relayed session cut off for [`SESSION_INBOX`] is told.
const INBOX_FULL: &str = "too many requests unread by the leader (more than 4 MiB forwarded through this member and not yet served): connection closed; pipeline less";

/// An outgoing peer connection.
struct Link {
    addr: SocketAddr,
    stream: Option<PeerStream>,
    /// What the other member sends back on it (TLS records only: its
    /// frames come on its own link); read and dropped.
    reader: FrameReader,
    /// Why the last dial was refused (said once, not at every retry).
    last_refusal: Option<String>,
    /// Frames to write, and how much of them was written.
    out: Vec<u8>,
    written: usize,
    connected: bool,
    next_dial: Instant,
}

impl Link {
    /// More than [`LINK_PAUSE`] waits to be written: what would queue
    /// behind it (relayed clients' requests, relayed sessions' answers)
    /// waits until it drains.
    fn backed_up(&self) -> bool {
        self.out.len() - self.written > LINK_PAUSE
    }
}

/// An accepted peer connection.
struct Inbound {
    stream: PeerStream,
    /// Where it comes from (its IP: the port changes at every dial).
    from: std::net::IpAddr,
    /// When it was accepted.
    since: Instant,
    reader: FrameReader,
    /// The member, once it said hello.
    node: Option<u64>,
}

/// A client connection a follower relays to the leader.
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent facts of one connection (its input ended, it is closing, epoll watches writes, its first bytes were checked, its transport's policy), not a state machine"
)]
struct Relay {
    stream: TcpStream,
    /// Its TLS session, if it came to the TLS port (this member ends it).
    tls: Option<Box<TlsSession>>,
    /// What the client certificate stands for, once the handshake is done.
    cert_identity: Option<String>,
    /// A plaintext client on a member that refuses identities in clear.
    identities_refused: bool,
    /// Nothing was read yet (the first bytes are checked).
    fresh: bool,
    session: u64,
    /// The leader it was first forwarded to.
    bound: Option<u64>,
    /// Bytes not yet forwarded (no leader yet).
    pending: Vec<u8>,
    /// Bytes for the client, and how much was written.
    out: Vec<u8>,
    written: usize,
    eof: bool,
    closing: bool,
    since: Instant,
    writable_interest: bool,
    /// Its requests are not read while its answers back up (past
    /// [`RELAY_BACKLOG`] unwritten), as the host does with its own
    /// connections.
    read_paused: bool,
    /// Since when its answers wait for it to read (it is closed when that
    /// lasts the idle timeout, as the host closes its own connections).
    blocked_since: Option<Instant>,
    /// Closing after its last answer: its write side is shut and what it
    /// still sends is read and dropped until it closes, this instant or
    /// [`crate::host::LINGER_BYTES`], so that it reads that answer rather
    /// than a reset (a socket closed with unread input resets).
    linger: Option<(Instant, usize)>,
    /// Whether its first line said what it is yet.
    opening: Opening,
    /// What it is charged to the connection budget (its buffers).
    charged: usize,
    /// Not read while the connection budget is spent.
    starved: bool,
}

impl Relay {
    /// Bytes it holds, as charged to the connection budget
    /// (`--connection-memory`), as one of the host's own connections is.
    fn charge(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.pending.capacity()
            + self.out.capacity()
            + if self.tls.is_some() {
                crate::tls::CONN_CHARGE
            } else {
                0
            }
    }
}

/// Brings what relay `r` is charged to the host's connection budget up to
/// date.
fn recharge(host: &mut crate::host::Host, r: &mut Relay) {
    let now = r.charge();
    if now != r.charged {
        host.recharge(r.charged, now);
        r.charged = now;
    }
}

/// Most bytes of answers a relayed client may leave unread before the
/// follower stops reading its requests (the host's own bound,
/// [`crate::host::MAX_BACKLOG`]).
const RELAY_BACKLOG: usize = crate::host::MAX_BACKLOG;

/// Most bytes of answers a relayed client may leave unread at all
/// (answers to requests forwarded before reading paused, a few large
/// values among them, may pass [`RELAY_BACKLOG`]): past it the client is
/// cut off, as the host cuts off a client that reads nothing for its idle
/// timeout.
const RELAY_OUT_MAX: usize = 8 << 20;

/// What a relayed connection's first line said: a connection that opens
/// with a `Watch` is served by this member from what it has applied,
/// every other is relayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opening {
    /// Not complete yet: nothing is forwarded.
    Unknown,
    /// Not a watch (or too long in coming): relayed.
    Relayed,
}

/// How long a relay waits for a client's first line to tell a watch from
/// other requests before it relays what came (the leader's idle timeout
/// then applies).
const FIRST_LINE_WAIT: Duration = Duration::from_secs(10);

/// Whether the first line of what a client sent is a `Watch` (this
/// member serves it), or `None` while that line is incomplete.
fn opens_with_watch(pending: &[u8], eof: bool) -> Option<bool> {
    let line = match pending.iter().position(|&b| b == b'\n') {
        Some(end) => &pending[..end],
        None if eof => pending,
        None if pending.len() > 1 << 20 => return Some(false),
        None => return None,
    };
    let mut copy = line.to_vec();
    Some(matches!(
        dlm_core::protocol::Request::parse(&mut copy, &dlm_core::limits::Limits::DEFAULT),
        Ok(r) if matches!(r.command, dlm_core::protocol::Command::Watch { .. })
    ))
}

/// The cluster state of an event loop.
pub(super) struct Cluster {
    pub(super) member: Member,
    listener: TcpListener,
    links: BTreeMap<u64, Link>,
    inbound: Vec<Option<Inbound>>,
    relays: Vec<Option<Relay>>,
    /// Relayed sessions on this leader: (follower, session) -> host slot.
    sessions: HashMap<(u64, u64), usize>,
    /// Relayed sessions this leader closed, until their follower's `Eof`
    /// (or [`CLOSED_KEPT`]): bytes still in flight for one are dropped,
    /// not taken for a new connection's.
    closed_sessions: HashMap<(u64, u64), Instant>,
    next_session: u64,
    outbound: Outbound,
    /// Refused peer connections (garbage, wrong cluster, TLS refused
    /// either way).
    pub(super) refused_peers: u64,
    /// Mutual TLS between members: its files (for `SIGHUP`) and configs.
    peer_tls: Option<(crate::tls::PeerTlsSettings, crate::tls::PeerTls)>,
    /// How long a relayed client's TLS handshake may take, and (at least
    /// a second) an accepted peer connection's hello.
    idle_timeout: Duration,
    /// Refusal reasons logged, and when.
    refusals_said: HashMap<String, Instant>,
    /// The data directory, whose `cluster.json` is written (or checked)
    /// once the cluster's ID is known.
    pub(super) data_dir: Option<std::path::PathBuf>,
    meta_checked: bool,
    /// Why this member must stop, once it must.
    fatal: Option<io::Error>,
    /// When to say again that this member waits for its peers (while no
    /// leader is known).
    next_wait_report: Instant,
    /// Whether a leader was ever known (the first one is announced).
    formed: bool,
    /// Loop turns, counted (a relayed session's feeding share is per turn).
    turn: u64,
    /// Relayed sessions with bytes left after their share of a turn.
    feeding: Vec<usize>,
    /// Relayed clients with bytes left after their share of a turn.
    reading: Vec<usize>,
    /// Relayed clients not read while their leader's link is backed up.
    link_waiters: Vec<usize>,
    /// Relayed clients not read while the connection budget is spent.
    starved_relays: Vec<usize>,
    /// Relayed sessions (on the leader) not fed while the link to their
    /// follower is backed up.
    session_waiters: BTreeSet<usize>,
    /// Where sockets are read into, kept between reads (a zeroed 64 KiB
    /// per read was a tenth of a follower's CPU when relaying).
    scratch: Box<[u8]>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("member", &self.member)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// The cluster state for `member`, accepting peers on `listener`,
    /// with mutual TLS between members if `peer_tls` is given.
    pub(super) fn new(
        member: Member,
        listener: std::net::TcpListener,
        peer_tls: Option<&crate::tls::PeerTlsSettings>,
        idle_timeout: Duration,
    ) -> io::Result<Self> {
        let peer_tls = match peer_tls {
            Some(settings) => Some((settings.clone(), crate::tls::peer_config(settings)?)),
            None => None,
        };
        listener.set_nonblocking(true)?;
        let links = member
            .peers()
            .iter()
            .filter(|(id, _)| **id != member.id())
            .map(|(id, addr)| {
                (
                    *id,
                    Link {
                        addr: *addr,
                        stream: None,
                        reader: FrameReader::default(),
                        last_refusal: None,
                        out: Vec::new(),
                        written: 0,
                        connected: false,
                        next_dial: Instant::now(),
                    },
                )
            })
            .collect();
        Ok(Self {
            member,
            listener: TcpListener::from_std(listener),
            links,
            inbound: Vec::new(),
            relays: Vec::new(),
            sessions: HashMap::new(),
            closed_sessions: HashMap::new(),
            next_session: 1,
            outbound: Outbound::default(),
            refused_peers: 0,
            peer_tls,
            idle_timeout,
            refusals_said: HashMap::new(),
            data_dir: None,
            meta_checked: false,
            fatal: None,
            next_wait_report: Instant::now() + WAIT_REPORT_FIRST,
            formed: false,
            turn: 0,
            feeding: Vec::new(),
            reading: Vec::new(),
            link_waiters: Vec::new(),
            starved_relays: Vec::new(),
            session_waiters: BTreeSet::new(),
            scratch: vec![0u8; 64 * 1024].into_boxed_slice(),
        })
    }

    /// Says, every few seconds while no leader is known, which peers this
    /// member waits for (so that an operator starting members one by one
    /// sees why nothing is served yet), and announces the first leader.
    fn report_waiting(&mut self, now: Instant) {
        if let Some(leader) = self.member.leader() {
            if !self.formed {
                self.formed = true;
                info!(
                    leader,
                    term = self.member.term(),
                    "the cluster has a leader"
                );
            }
            self.next_wait_report = now + WAIT_REPORT_FIRST;
            return;
        }
        if now < self.next_wait_report {
            return;
        }
        self.next_wait_report = now + WAIT_REPORT_EVERY;
        let (up, down): (Vec<_>, Vec<_>) = self.links.iter().partition(|(_, l)| l.connected);
        let list = |v: &[(&u64, &Link)]| {
            v.iter()
                .map(|(id, l)| format!("{id} ({})", l.addr))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if down.is_empty() {
            info!(
                reachable = %list(&up),
                "no leader yet: every peer is reachable, an election is under way"
            );
        } else {
            info!(
                waiting_for = %list(&down),
                reachable = %list(&up),
                "no leader yet: waiting for peers that are not up (a majority must be)"
            );
        }
    }

    /// The earliest instant the loop must wake for the cluster.
    pub(super) fn next_wake(&self) -> Instant {
        let mut at = self.member.next_tick();
        for l in self.links.values() {
            if l.stream.is_none() {
                at = at.min(l.next_dial);
            }
        }
        at
    }

    /// A session of the leader's host closed: tell the follower.
    pub(super) fn session_closed(&mut self, s: &SessionEnd) {
        self.sessions.remove(&(s.node, s.session));
        if !s.eof {
            let now = Instant::now();
            if self.closed_sessions.len() >= MAX_CLOSED_KEPT {
                self.closed_sessions
                    .retain(|_, at| now.duration_since(*at) < CLOSED_KEPT);
            }
            if self.closed_sessions.len() < MAX_CLOSED_KEPT {
                self.closed_sessions.insert((s.node, s.session), now);
            }
        }
        self.send(s.node, Frame::Close { session: s.session });
    }

    /// The leader, if it is another member and its link is up (a relay
    /// waits rather than forward into a dead link).
    fn reachable_leader(&self) -> Option<u64> {
        let l = self.member.leader().filter(|l| *l != self.member.id())?;
        self.links.get(&l).filter(|link| link.connected).map(|_| l)
    }

    /// Reads the peer TLS files again (`SIGHUP`): connections made from
    /// now on use them, open ones keep theirs.
    pub(super) fn reload_peer_tls(&mut self) {
        let Some((settings, config)) = &mut self.peer_tls else {
            return;
        };
        match crate::tls::peer_config(settings) {
            Ok(c) => {
                *config = c;
                info!(
                    "peer TLS certificate, key and CA reloaded; open peer connections keep theirs"
                );
            }
            Err(e) => warn!("cannot reload peer TLS: {e}; keeping the configuration loaded before"),
        }
    }

    /// Notes a refused peer connection: counted, and logged with its
    /// reason (a reason said in the last [`REFUSAL_QUIET`] only at debug
    /// level: a refused member redials ten times a second).
    fn refused(&mut self, peer: Option<u64>, why: &str) {
        self.refused_peers += 1;
        let now = Instant::now();
        if self.refusals_said.len() > 64 {
            self.refusals_said.clear();
        }
        match self.refusals_said.get(why) {
            Some(at) if now.duration_since(*at) < REFUSAL_QUIET => {
                debug!(peer = ?peer, "peer connection refused: {why}");
            }
            _ => {
                warn!(peer = ?peer, "peer connection refused: {why}");
                self.refusals_said.insert(why.to_owned(), now);
            }
        }
    }

    /// Queues a frame on the link to `node`.
    fn send(&mut self, node: u64, frame: Frame<'_>) {
        if self.drop_if_backed_up(node) {
            return;
        }
        if let Some(link) = self.links.get_mut(&node) {
            transport::encode(&mut link.out, frame);
        }
    }

    /// Drops the link to `node` if more than [`LINK_BUFFER`] waits on it
    /// (raft sends again once it is redialed); whether it did.
    fn drop_if_backed_up(&mut self, node: u64) -> bool {
        let Some(link) = self.links.get_mut(&node) else {
            return false;
        };
        if link.out.len() - link.written <= LINK_BUFFER {
            return false;
        }
        warn!(peer = node, "link backed up: dropping it (raft retries)");
        link.stream = None;
        link.connected = false;
        link.out.clear();
        link.written = 0;
        self.member.unreachable(node);
        true
    }
}

impl EventLoop {
    /// Registers the cluster's listener.
    pub(super) fn register_cluster(&mut self) -> io::Result<()> {
        if let Some(c) = &mut self.cluster {
            self.poll
                .registry()
                .register(&mut c.listener, PEER_LISTENER, Interest::READABLE)?;
        }
        Ok(())
    }

    /// Whether `token` is the cluster's; handles it if so.
    pub(super) fn cluster_event(&mut self, token: MioToken, ev: &mio::event::Event) -> bool {
        let MioToken(t) = token;
        if token == PEER_LISTENER {
            self.accept_peers();
        } else if (LINK_BASE..INBOUND_BASE).contains(&t) {
            let node = (t - LINK_BASE) as u64;
            if self.link_is_tls(node) {
                // Its records first: the handshake, or the alert that
                // says why the other member refuses this one.
                if self.read_link(node) {
                    self.flush_link(node);
                }
            } else if ev.is_error() || ev.is_read_closed() {
                self.drop_link(node);
            } else {
                self.flush_link(node);
            }
        } else if (INBOUND_BASE..RELAY_BASE).contains(&t) {
            self.read_inbound(t - INBOUND_BASE, ev.is_read_closed() || ev.is_error());
        } else if (RELAY_BASE..usize::MAX - 16).contains(&t) {
            let i = t - RELAY_BASE;
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                self.read_relay(i, ev.is_read_closed() || ev.is_error());
            }
            if ev.is_writable() {
                self.flush_relay(i);
            }
        } else {
            return false;
        }
        true
    }

    /// A new client connection: relayed if this member follows (ending
    /// its TLS here, with `tls`; `identities_refused`: a plaintext client
    /// that may not use identities). Returns the stream back if the host
    /// should take it.
    pub(super) fn relay_if_following(
        &mut self,
        stream: TcpStream,
        tls: Option<&std::sync::Arc<rustls::ServerConfig>>,
        identities_refused: bool,
    ) -> Option<TcpStream> {
        let Some(c) = &mut self.cluster else {
            return Some(stream);
        };
        if c.member.is_leader() {
            return Some(stream);
        }
        // Relayed clients count against --max-connections with this
        // member's own (watchers): a flood of connections to a follower
        // is refused as the leader would refuse it, before it holds a
        // descriptor or a buffer here.
        let relayed = c.relays.iter().filter(|r| r.is_some()).count();
        if relayed + self.host.active() >= self.host.max_connections() {
            self.host.engine_mut().stats_mut().incr(Stat::ConnRefused);
            debug!("relayed connection refused: this member is full");
            let mut stream = stream;
            // Best effort: the client learns why instead of a reset.
            let _ = stream.write(crate::host::FULL);
            return None;
        }
        let i = c
            .relays
            .iter()
            .position(Option::is_none)
            .unwrap_or(c.relays.len());
        let mut stream = stream;
        let _ = stream.set_nodelay(true);
        if self
            .poll
            .registry()
            .register(&mut stream, MioToken(RELAY_BASE + i), Interest::READABLE)
            .is_err()
        {
            return None;
        }
        let tls = match tls.map(|t| rustls::ServerConnection::new(t.clone())) {
            None => None,
            Some(Ok(mut conn)) => {
                conn.set_buffer_limit(Some(crate::tls::SEND_LIMIT));
                Some(Box::new(TlsSession {
                    conn,
                    handshaken: false,
                    eof: false,
                }))
            }
            Some(Err(e)) => {
                warn!("cannot start a TLS session: {e}");
                let _ = self.poll.registry().deregister(&mut stream);
                return None;
            }
        };
        let session = c.next_session;
        c.next_session += 1;
        let relay = Relay {
            stream,
            tls,
            cert_identity: None,
            identities_refused,
            fresh: true,
            session,
            bound: None,
            pending: Vec::new(),
            out: Vec::new(),
            written: 0,
            eof: false,
            closing: false,
            since: Instant::now(),
            writable_interest: false,
            read_paused: false,
            blocked_since: None,
            linger: None,
            opening: Opening::Unknown,
            charged: 0,
            starved: false,
        };
        let mut relay = relay;
        recharge(&mut self.host, &mut relay);
        if i == c.relays.len() {
            c.relays.push(Some(relay));
        } else {
            c.relays[i] = Some(relay);
        }
        None
    }

    fn accept_peers(&mut self) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        loop {
            match c.listener.accept() {
                Ok((stream, from)) => {
                    let _ = stream.set_nodelay(true);
                    let i = c
                        .inbound
                        .iter()
                        .position(Option::is_none)
                        .unwrap_or(c.inbound.len());
                    let mut stream = match PeerStream::accepted(
                        stream,
                        c.peer_tls.as_ref().map(|(_, t)| &t.server),
                    ) {
                        Ok(s) => s,
                        Err(e) => {
                            warn!("peer connection: {e}");
                            continue;
                        }
                    };
                    // A TLS handshake writes too.
                    let interest = if stream.is_tls() {
                        Interest::READABLE | Interest::WRITABLE
                    } else {
                        Interest::READABLE
                    };
                    if self
                        .poll
                        .registry()
                        .register(&mut stream.stream, MioToken(INBOUND_BASE + i), interest)
                        .is_err()
                    {
                        continue;
                    }
                    let conn = Inbound {
                        stream,
                        from: from.ip(),
                        since: Instant::now(),
                        reader: FrameReader::default(),
                        node: None,
                    };
                    if i == c.inbound.len() {
                        c.inbound.push(Some(conn));
                    } else {
                        c.inbound[i] = Some(conn);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!("peer accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn close_inbound(&mut self, i: usize, why: Option<&str>) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        if let Some(mut conn) = c.inbound.get_mut(i).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut conn.stream.stream);
            if let Some(why) = why {
                c.refused(conn.node, &format!("from {}: {why}", conn.from));
            }
            // The sessions that member relayed end with it.
            if let Some(node) = conn.node {
                c.member.peer_closed(node);
                let gone: Vec<usize> = c
                    .sessions
                    .iter()
                    .filter(|((n, _), _)| *n == node)
                    .map(|(_, slot)| *slot)
                    .collect();
                for slot in gone {
                    self.host.failed(slot);
                }
            }
        }
    }

    /// Reads an inbound peer connection (`hung_up`: epoll said it closed
    /// its end, so it is read to that end).
    fn read_inbound(&mut self, i: usize, hung_up: bool) {
        let closed;
        let mut refuse = None;
        {
            let Some(c) = self.cluster.as_mut() else {
                return;
            };
            let chunk = &mut c.scratch;
            let Some(conn) = c.inbound.get_mut(i).and_then(Option::as_mut) else {
                return;
            };
            let was_handshaken = conn.stream.handshaken();
            match conn.stream.read_into(&mut conn.reader, chunk, hung_up) {
                ReadEnd::Open => closed = false,
                ReadEnd::Closed => closed = true,
                ReadEnd::Refused(why) => {
                    closed = true;
                    refuse = Some(why);
                }
            }
            if !was_handshaken && conn.stream.handshaken() && refuse.is_none() {
                debug!(
                    certificate = conn.stream.peer_subject().as_deref().unwrap_or(""),
                    "peer TLS handshake done"
                );
            }
        }
        // Take the frames out, then act on them (acting needs the loop).
        let mut frames: Vec<OwnedFrame> = Vec::new();
        if let Some(c) = &mut self.cluster
            && let Some(conn) = c.inbound.get_mut(i).and_then(Option::as_mut)
        {
            while refuse.is_none() {
                match conn.reader.next_frame() {
                    Ok(Some(f)) => frames.push(OwnedFrame::of(f)),
                    Ok(None) => break,
                    Err(e) => {
                        refuse = Some(e.to_string());
                        break;
                    }
                }
            }
            conn.reader.compact();
        }
        for f in frames {
            if let Err(why) = self.inbound_frame(i, f) {
                refuse = Some(why);
                break;
            }
        }
        if let Some(why) = refuse {
            self.close_inbound(i, Some(&why));
        } else if closed {
            self.close_inbound(i, None);
        }
    }

    fn inbound_frame(&mut self, i: usize, f: OwnedFrame) -> Result<(), String> {
        let Some(c) = &mut self.cluster else {
            return Ok(());
        };
        let Some(conn) = c.inbound.get_mut(i).and_then(Option::as_mut) else {
            return Ok(());
        };
        let mine = self.host.replica().and_then(|r| r.cluster_id);
        let Some(node) = conn.node else {
            return match f {
                OwnedFrame::Hello {
                    cluster,
                    node,
                    client,
                } => {
                    // 0: not known yet (a member that has not applied the
                    // cluster's first entry).
                    if let Some(mine) = mine
                        && cluster != 0
                        && cluster != mine
                    {
                        return Err(format!(
                            "member {node} belongs to cluster {cluster:016x}, not {mine:016x}"
                        ));
                    }
                    if node == c.member.id() || !c.member.peers().contains_key(&node) {
                        return Err(format!("member {node} is not a peer of this cluster"));
                    }
                    conn.stream.check_member(node)?;
                    conn.node = Some(node);
                    // Where it serves clients, if it said (and it reads as
                    // an address: it goes into `Cluster` answers).
                    let client = std::str::from_utf8(&client)
                        .ok()
                        .filter(|a| dlm_core::client::failover::check_address(a).is_ok())
                        .map(str::to_owned);
                    debug!(peer = node, client = ?client, "peer connected");
                    c.member.set_client(node, client);
                    Ok(())
                }
                _ => Err("no hello first".into()),
            };
        };
        let peer_is_tls = conn.stream.is_tls();
        match f {
            OwnedFrame::Hello { .. } => return Err("a second hello".into()),
            OwnedFrame::Raft(bytes) => {
                let m = raft::prelude::Message::parse_from_bytes(&bytes)
                    .map_err(|e| format!("raft message: {e}"))?;
                if m.from != node {
                    return Err(format!(
                        "raft message from {} on {node}'s connection",
                        m.from
                    ));
                }
                if let Err(e) = c.member.step(m) {
                    c.fatal.get_or_insert(e);
                }
            }
            OwnedFrame::Session {
                session,
                identities_refused,
                cert_identity,
            } => {
                // Only a member that proved itself with a certificate
                // may say what a client's certificate stands for.
                let cert_identity = match std::str::from_utf8(&cert_identity) {
                    _ if cert_identity.is_empty() => None,
                    Ok(name) if crate::identity::valid_name(name) => Some(name.to_owned()),
                    _ => return Err("a session frame with an invalid identity name".into()),
                };
                if cert_identity.is_some() && !peer_is_tls {
                    return Err("a certificate identity over a plaintext peer connection".into());
                }
                let Some(slot) = self.session_slot(node, session) else {
                    return Ok(());
                };
                self.host.set_transport(slot, 0, identities_refused);
                self.host.set_certificate_identity(slot, cert_identity);
            }
            OwnedFrame::Forward { session, bytes } => {
                let Some(slot) = self.session_slot(node, session) else {
                    return Ok(());
                };
                let Some(s) = self.sockets.session_mut(slot) else {
                    return Ok(());
                };
                if s.inbox.len() + bytes.len() > SESSION_INBOX {
                    debug!(
                        peer = node,
                        session, "relayed session cut off: too much unread"
                    );
                    s.inbox = Vec::new();
                    self.host.refuse_and_close(slot, INBOX_FULL);
                    self.apply_actions();
                    return Ok(());
                }
                s.inbox.extend_from_slice(&bytes);
                self.feed_session(slot);
            }
            OwnedFrame::Eof { session } => {
                c.closed_sessions.remove(&(node, session));
                if let Some(slot) = c.sessions.get(&(node, session)).copied() {
                    if let Some(s) = self.sockets.session_mut(slot) {
                        s.eof = true;
                    }
                    self.feed_session(slot);
                }
            }
            OwnedFrame::Reply { session, bytes } => {
                if let Some(i) = c
                    .relays
                    .iter()
                    .position(|r| r.as_ref().is_some_and(|r| r.session == session))
                {
                    if let Some(r) = c.relays[i].as_mut() {
                        r.out.extend_from_slice(&bytes);
                    }
                    self.flush_relay(i);
                }
            }
            OwnedFrame::Close { session } => {
                if let Some(i) = c
                    .relays
                    .iter()
                    .position(|r| r.as_ref().is_some_and(|r| r.session == session))
                {
                    if let Some(r) = c.relays[i].as_mut() {
                        r.closing = true;
                    }
                    self.flush_relay(i);
                }
            }
            OwnedFrame::Goodbye => {
                info!(by = node, "this member was removed from the cluster");
                c.member.removed = true;
            }
        }
        Ok(())
    }

    /// The host slot of `node`'s relayed `session`, opened on its first
    /// frame; `None` (and the follower told) if this member does not lead
    /// or the host is full.
    fn session_slot(&mut self, node: u64, session: u64) -> Option<usize> {
        let c = self.cluster.as_mut()?;
        if !c.member.is_leader() {
            c.send(node, Frame::Close { session });
            return None;
        }
        if let Some(slot) = c.sessions.get(&(node, session)) {
            return Some(*slot);
        }
        if c.closed_sessions.contains_key(&(node, session)) {
            // Sent before its follower learnt it was closed: dropped.
            return None;
        }
        let now = self.now();
        match self.host.admit(now) {
            Admission::Accepted(slot) => {
                self.apply_actions();
                let c = self.cluster.as_mut()?;
                c.sessions.insert((node, session), slot);
                self.sockets.put(
                    slot,
                    Endpoint::Session(SessionEnd {
                        node,
                        session,
                        inbox: Vec::new(),
                        eof: false,
                        eof_told: false,
                        fed: 0,
                        fed_turn: 0,
                    }),
                );
                Some(slot)
            }
            Admission::Refused(line) => {
                let c = self.cluster.as_mut()?;
                c.send(
                    node,
                    Frame::Reply {
                        session,
                        bytes: line,
                    },
                );
                c.send(node, Frame::Close { session });
                None
            }
        }
    }

    /// Feeds a relayed session's forwarded bytes to the host.
    pub(super) fn feed_session(&mut self, slot: usize) {
        let now = self.now();
        let turn = self.cluster.as_ref().map_or(0, |c| c.turn);
        self.host.resume(slot, now, &self.sockets);
        loop {
            let Some(s) = self.sockets.session_mut(slot) else {
                return;
            };
            if let Some(c) = &mut self.cluster
                && c.links.get(&s.node).is_some_and(Link::backed_up)
            {
                // Its answers would queue behind what its follower has not
                // taken yet (and ahead of the Raft messages to it): fed
                // again once the link has drained (`cluster_turn`), as the
                // host stops reading a client that does not read.
                c.session_waiters.insert(slot);
                return;
            }
            if s.fed_turn != turn {
                s.fed_turn = turn;
                s.fed = 0;
            }
            if s.inbox.is_empty() {
                if s.eof && !s.eof_told {
                    s.eof_told = true;
                    self.host.closed_by_peer(slot, now, &self.sockets);
                }
                return;
            }
            let share = FEED_PER_TURN.saturating_sub(s.fed);
            if share == 0 {
                // The rest at the next turn (which comes at once).
                if let Some(c) = &mut self.cluster
                    && !c.feeding.contains(&slot)
                {
                    c.feeding.push(slot);
                }
                return;
            }
            let Some(space) = self.host.read_space(slot) else {
                return;
            };
            let Some(s) = self.sockets.session_mut(slot) else {
                return;
            };
            let n = space.len().min(s.inbox.len()).min(share);
            space[..n].copy_from_slice(&s.inbox[..n]);
            s.inbox.drain(..n);
            if s.inbox.is_empty() && s.inbox.capacity() > FEED_PER_TURN {
                s.inbox = Vec::new();
            }
            s.fed += n;
            self.host.received(slot, n, now, &self.sockets);
        }
    }

    /// Whether a relayed session (on the leader) or client (on a
    /// follower) has bytes left for the next turn.
    pub(super) fn feeding(&self) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| !c.feeding.is_empty() || !c.reading.is_empty())
    }

    /// Sends a session's answers back to its follower.
    pub(super) fn flush_session(&mut self, slot: usize) {
        let now = self.now();
        let Some(s) = self.sockets.session_mut(slot) else {
            return;
        };
        let (node, session) = (s.node, s.session);
        if let Some(c) = &mut self.cluster
            && c.links.get(&node).is_some_and(Link::backed_up)
        {
            // The follower has not taken what was sent: the answers stay
            // with the session, which counts them as unread (so the host
            // stops answering its next lines past its backlog, as for a
            // client that does not read), until the link drains.
            c.session_waiters.insert(slot);
            return;
        }
        let out = self.host.output(slot);
        let n = out.len();
        if n > 0
            && let Some(c) = &mut self.cluster
        {
            c.send(
                node,
                Frame::Reply {
                    session,
                    bytes: out,
                },
            );
        }
        self.host.sent(slot, n, now);
        let _ = self.host.flushed(slot, now);
    }

    fn read_relay(&mut self, i: usize, hung_up: bool) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        let leader = c.reachable_leader();
        let Some(r) = c.relays.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if let Some((until, dropped)) = &mut r.linger {
            // Read and dropped until the client closes its end.
            let mut end = Instant::now() >= *until || *dropped > crate::host::LINGER_BYTES;
            let mut sink = [0u8; 16 * 1024];
            while !end {
                match r.stream.read(&mut sink) {
                    Ok(0) => end = true,
                    Ok(n) => *dropped += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => end = true,
                }
                end |= *dropped > crate::host::LINGER_BYTES;
            }
            if end {
                self.close_relay(i);
            }
            return;
        }
        if r.closing {
            // Its last answers go out; what else it sends is not wanted.
            return;
        }
        if r.out.len() - r.written >= RELAY_BACKLOG {
            // Read again when its answers have gone out (`flush_relay`).
            r.read_paused = true;
            return;
        }
        if let Some(link) = r.bound.and_then(|l| c.links.get(&l))
            && link.backed_up()
        {
            // Read again when the link has drained (`cluster_turn`).
            if !c.link_waiters.contains(&i) {
                c.link_waiters.push(i);
            }
            return;
        }
        if r.charged > crate::host::CONN_BASE && self.host.connection_memory_spent() {
            // Read again when there is memory (`cluster_turn`), as the host
            // does with its own connections.
            if !r.starved {
                r.starved = true;
                c.starved_relays.push(i);
            }
            return;
        }
        let chunk = &mut c.scratch;
        let mut got = Vec::new();
        // Whether it failed (and closes), and what to count.
        let mut failed: Result<(), Option<Stat>> = Ok(());
        if r.fresh {
            let mut first = [0u8; 1];
            if let Ok(1) = r.stream.peek(&mut first) {
                r.fresh = false;
                let tls_hello = crate::tls::looks_like_tls(&first);
                if r.tls.is_some() && !tls_hello {
                    debug!("plaintext on the TLS port of a follower: refused");
                    let _ = r.stream.write(super::PLAINTEXT_ON_TLS);
                    failed = Err(Some(Stat::TlsFailed));
                } else if r.tls.is_none() && tls_hello {
                    debug!("TLS hello on a plaintext port of a follower: refused");
                    let _ = r.stream.write(crate::tls::ALERT_HANDSHAKE_FAILURE);
                    failed = Err(Some(Stat::TlsOnPlain));
                }
            }
        }
        if failed.is_ok() {
            failed = match r.tls.as_deref_mut() {
                None => read_plain(&mut r.stream, chunk, &mut got, &mut r.eof, hung_up),
                Some(tls) => read_tls(tls, &mut r.stream, chunk, &mut got, &mut r.eof),
            };
        }
        // Stopped at this turn's share, not at the socket's end: the rest
        // next turn (epoll will not say it again).
        let more = failed.is_ok() && !r.eof && got.len() > RELAY_READ;
        if let Some(t) = r.tls.as_deref_mut()
            && failed.is_ok()
            && !t.handshaken
            && !t.conn.is_handshaking()
        {
            t.handshaken = true;
            r.cert_identity = t
                .conn
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(crate::tls::certificate_identity);
            debug!(identity = ?r.cert_identity, "TLS handshake done (relayed client)");
            self.host.engine_mut().stats_mut().incr(Stat::TlsHandshake);
        }
        if let Err(stat) = failed {
            if let Some(stat) = stat {
                self.host.engine_mut().stats_mut().incr(stat);
            }
            self.close_relay(i);
            return;
        }
        let ready = r.tls.as_ref().is_none_or(|t| t.handshaken);
        if r.opening == Opening::Unknown {
            // Held back until its first line says whether it watches.
            r.pending.append(&mut got);
            match opens_with_watch(&r.pending, r.eof) {
                Some(true) => {
                    self.adopt_relay(i);
                    return;
                }
                Some(false) => r.opening = Opening::Relayed,
                None => {}
            }
        }
        let (session, eof) = (r.session, r.eof);
        let mut sends: Vec<(u64, OwnedFrame)> = Vec::new();
        match (
            r.bound,
            leader.filter(|_| ready && r.opening == Opening::Relayed),
        ) {
            (None, Some(l)) => {
                r.bound = Some(l);
                if let Some(f) = r.session_frame() {
                    sends.push((l, f));
                }
                let mut bytes = std::mem::take(&mut r.pending);
                bytes.extend_from_slice(&got);
                if !bytes.is_empty() {
                    sends.push((l, OwnedFrame::Forward { session, bytes }));
                }
                if eof {
                    sends.push((l, OwnedFrame::Eof { session }));
                }
            }
            (Some(l), _) => {
                if !got.is_empty() {
                    sends.push((
                        l,
                        OwnedFrame::Forward {
                            session,
                            bytes: got,
                        },
                    ));
                }
                if eof {
                    sends.push((l, OwnedFrame::Eof { session }));
                }
            }
            (None, None) => {
                // Bounded like a line: more is refused with the rest.
                if r.pending.len() + got.len() > 1 << 20 {
                    r.out.extend_from_slice(NO_LEADER);
                    r.closing = true;
                } else {
                    r.pending.extend_from_slice(&got);
                }
            }
        }
        let done = r.eof && r.bound.is_none() && r.pending.is_empty();
        let cut_short = r.eof && !ready;
        for (to, f) in &sends {
            c.send(*to, f.frame());
        }
        if more && !c.reading.contains(&i) {
            c.reading.push(i);
        }
        if cut_short {
            debug!("TLS handshake cut short (relayed client)");
            self.host.engine_mut().stats_mut().incr(Stat::TlsFailed);
            self.close_relay(i);
        } else if done {
            self.close_relay(i);
        } else {
            self.flush_relay(i);
        }
    }

    fn flush_relay(&mut self, i: usize) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        let Some(r) = c.relays.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let start = r.written;
        let mut blocked = false;
        if let Some(tls) = r.tls.as_deref_mut() {
            // rustls takes what fits under its limit; its records go out
            // as the socket takes them (the handshake's too).
            loop {
                let took = if r.written < r.out.len() {
                    tls.conn.writer().write(&r.out[r.written..]).unwrap_or(0)
                } else {
                    0
                };
                r.written += took;
                while tls.conn.wants_write() {
                    match tls.conn.write_tls(&mut r.stream) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            blocked = true;
                            break;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            self.close_relay(i);
                            return;
                        }
                    }
                }
                if blocked || took == 0 {
                    break;
                }
            }
        } else {
            while r.written < r.out.len() {
                match r.stream.write(&r.out[r.written..]) {
                    Ok(n) => r.written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        self.close_relay(i);
                        return;
                    }
                }
            }
        }
        let blocked = blocked || r.written < r.out.len();
        // Progress: only a client that reads nothing for the idle timeout
        // is dropped, not one that reads slowly.
        let progressed = r.written > start;
        if !blocked {
            r.out.clear();
            r.written = 0;
            if r.out.capacity() > RELAY_BACKLOG {
                r.out = Vec::new();
            }
            if r.closing && r.linger.is_none() {
                if r.eof {
                    self.close_relay(i);
                } else {
                    // Its last answer is out: end the stream there (TLS:
                    // with its close_notify), and drop what the client
                    // still sends until it closes.
                    if let Some(t) = r.tls.as_deref_mut() {
                        t.conn.send_close_notify();
                        while t.conn.wants_write() {
                            if t.conn.write_tls(&mut r.stream).is_err() {
                                break;
                            }
                        }
                    }
                    let _ = r.stream.shutdown(std::net::Shutdown::Write);
                    r.linger = Some((Instant::now() + crate::host::LINGER, 0));
                    self.read_relay(i, true);
                }
                return;
            }
        } else if r.written >= RELAY_BACKLOG.min(r.out.len() / 2) {
            // What was written leaves the buffer.
            r.out.drain(..r.written);
            r.written = 0;
        }
        if !blocked || progressed {
            r.blocked_since = None;
        }
        if blocked && r.blocked_since.is_none() {
            r.blocked_since = Some(Instant::now());
        }
        if r.out.len() - r.written > RELAY_OUT_MAX
            || (r.out.len() - r.written > RELAY_BACKLOG && self.host.connection_memory_spent())
        {
            // Its answers come from the leader whether it reads or not:
            // one that leaves this many unread goes (sooner once the
            // connection budget is spent).
            debug!("relayed client cut off: it leaves too many answers unread");
            self.close_relay(i);
            return;
        }
        recharge(&mut self.host, r);
        let resume = r.read_paused && r.out.len() - r.written < RELAY_BACKLOG;
        if blocked != r.writable_interest {
            r.writable_interest = blocked;
            let interest = if blocked {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let _ =
                self.poll
                    .registry()
                    .reregister(&mut r.stream, MioToken(RELAY_BASE + i), interest);
        }
        if resume {
            r.read_paused = false;
            // Edge-triggered: what came meanwhile is read now.
            self.read_relay(i, true);
        }
    }

    fn close_relay(&mut self, i: usize) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        if let Some(mut r) = c.relays.get_mut(i).and_then(Option::take) {
            self.host.recharge(r.charged, 0);
            if let Some(t) = r.tls.as_deref_mut()
                && t.handshaken
                && r.linger.is_none()
            {
                t.conn.send_close_notify();
                while t.conn.wants_write() {
                    if t.conn.write_tls(&mut r.stream).is_err() {
                        break;
                    }
                }
            }
            let _ = self.poll.registry().deregister(&mut r.stream);
            if let Some(l) = r.bound
                && !r.eof
            {
                c.send(l, Frame::Eof { session: r.session });
            }
        }
    }

    fn dial(&mut self, node: u64) {
        let cluster_id = self.host.replica().and_then(|r| r.cluster_id).unwrap_or(0);
        let Some(c) = &mut self.cluster else {
            return;
        };
        let id = c.member.id();
        let client = c.member.client(id).unwrap_or("").as_bytes().to_vec();
        let Some(link) = c.links.get_mut(&node) else {
            return;
        };
        if link.stream.is_some() || Instant::now() < link.next_dial {
            return;
        }
        link.next_dial = Instant::now() + DIAL_RETRY;
        let tls = c.peer_tls.as_ref().map(|(_, t)| &t.client);
        match TcpStream::connect(link.addr)
            .map_err(|e| e.to_string())
            .and_then(|s| PeerStream::dialed(s, tls, node, link.addr))
        {
            Ok(mut s) => {
                let _ = s.stream.set_nodelay(true);
                if self
                    .poll
                    .registry()
                    .register(
                        &mut s.stream,
                        MioToken(LINK_BASE + usize::try_from(node).unwrap_or(0)),
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .is_ok()
                {
                    link.stream = Some(s);
                    link.connected = false;
                    // Whatever was queued while disconnected is stale.
                    link.out.clear();
                    link.written = 0;
                    transport::encode(
                        &mut link.out,
                        Frame::Hello {
                            cluster: cluster_id,
                            node: id,
                            client: &client,
                        },
                    );
                }
            }
            Err(e) => debug!(peer = node, "dial failed: {e}"),
        }
    }

    fn drop_link(&mut self, node: u64) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        if let Some(link) = c.links.get_mut(&node)
            && let Some(mut s) = link.stream.take()
        {
            let _ = self.poll.registry().deregister(&mut s.stream);
            if link.connected {
                info!(peer = node, "peer link lost; redialing");
            }
            link.connected = false;
            link.out.clear();
            link.written = 0;
            c.member.unreachable(node);
            c.member.peer_closed(node);
        }
    }

    /// Whether the link to `node` speaks TLS.
    fn link_is_tls(&self, node: u64) -> bool {
        self.cluster
            .as_ref()
            .and_then(|c| c.links.get(&node))
            .and_then(|l| l.stream.as_ref())
            .is_some_and(PeerStream::is_tls)
    }

    /// Reads what came back on a TLS link (handshake records, or an alert
    /// saying why the other member refuses this one). Whether the link
    /// stays.
    fn read_link(&mut self, node: u64) -> bool {
        let Some(c) = &mut self.cluster else {
            return false;
        };
        let chunk = &mut c.scratch;
        let Some(link) = c.links.get_mut(&node) else {
            return false;
        };
        let Some(s) = link.stream.as_mut() else {
            return false;
        };
        let end = s.read_into(&mut link.reader, chunk, true);
        // Frames never come this way: whatever decrypted is dropped.
        link.reader = FrameReader::default();
        match end {
            ReadEnd::Open => true,
            ReadEnd::Closed => {
                self.drop_link(node);
                false
            }
            ReadEnd::Refused(why) => {
                let why = format!("dialing member {node} at {}: {why}", link.addr);
                c.refused_peers += 1;
                // Said once per reason, not at every redial.
                if link.last_refusal.as_deref() == Some(why.as_str()) {
                    debug!(peer = node, "peer connection refused: {why}");
                } else {
                    warn!(peer = node, "peer connection refused: {why}");
                    link.last_refusal = Some(why);
                }
                self.drop_link(node);
                false
            }
        }
    }

    fn flush_link(&mut self, node: u64) {
        let mut failed = false;
        if let Some(link) = self.cluster.as_mut().and_then(|c| c.links.get_mut(&node))
            && let Some(s) = link.stream.as_mut()
        {
            while link.written < link.out.len() {
                match s.write(&link.out[link.written..]) {
                    Ok(0) => break,
                    Ok(n) => {
                        link.written += n;
                        // Plaintext: the socket took bytes, so it is
                        // connected. TLS: once the handshake is done.
                        if s.handshaken() {
                            if !link.connected && s.is_tls() {
                                debug!(peer = node, "peer TLS link up");
                                link.last_refusal = None;
                            }
                            link.connected = true;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            if !failed && s.flush().is_err() {
                failed = true;
            }
            if !link.connected && s.is_tls() && s.handshaken() {
                link.connected = true;
                link.last_refusal = None;
            }
            compact(&mut link.out, &mut link.written);
        }
        if failed {
            self.drop_link(node);
        }
    }

    /// Writes what waits on each link now: relayed answers queued after
    /// the turn's link flush (the loop writes answers last) would
    /// otherwise wait for the next wake-up, up to a tick when nothing
    /// else comes.
    pub(super) fn flush_links(&mut self) {
        let pending: Vec<u64> = self
            .cluster
            .as_ref()
            .map(|c| {
                c.links
                    .iter()
                    .filter(|(_, l)| l.written < l.out.len())
                    .map(|(&n, _)| n)
                    .collect()
            })
            .unwrap_or_default();
        for node in pending {
            self.flush_link(node);
        }
    }

    /// One Raft turn: ticks, proposals, the Ready, messages out, and what a
    /// change of leader means for connections. Fails only when this member
    /// must stop (a damaged entry, a storage error).
    pub(super) fn cluster_turn(&mut self) -> io::Result<()> {
        let Some(c) = &mut self.cluster else {
            return Ok(());
        };
        c.turn += 1;
        // Relayed clients whose leader's link has drained read again.
        let drained: Vec<usize> = {
            let mut waiting = std::mem::take(&mut c.link_waiters);
            let backed_up = |c: &Cluster, i: usize| {
                let to = c
                    .relays
                    .get(i)
                    .and_then(Option::as_ref)
                    .and_then(|r| r.bound);
                to.and_then(|l| c.links.get(&l))
                    .is_some_and(Link::backed_up)
            };
            let (still, go): (Vec<usize>, Vec<usize>) =
                waiting.drain(..).partition(|&i| backed_up(c, i));
            c.link_waiters = still;
            go
        };
        if !c.starved_relays.is_empty() && !self.host.connection_memory_spent() {
            for i in std::mem::take(&mut c.starved_relays) {
                if let Some(r) = c.relays.get_mut(i).and_then(Option::as_mut) {
                    r.starved = false;
                    c.reading.push(i);
                }
            }
        }
        // Relayed sessions whose follower's link has drained send their
        // answers and are fed again.
        let fed_again: Vec<usize> = {
            let waiting = std::mem::take(&mut c.session_waiters);
            let mut still = BTreeSet::new();
            let mut go = Vec::new();
            for slot in waiting {
                let backed_up = self
                    .sockets
                    .session_mut(slot)
                    .map(|s| s.node)
                    .and_then(|node| c.links.get(&node))
                    .is_some_and(Link::backed_up);
                if backed_up {
                    still.insert(slot);
                } else {
                    go.push(slot);
                }
            }
            c.session_waiters = still;
            go
        };
        // Relayed sessions' (and clients') bytes left from the last turn:
        // their next share.
        let again = std::mem::take(&mut c.reading);
        let feeding = std::mem::take(&mut c.feeding);
        for slot in fed_again {
            self.flush_session(slot);
            self.feed_session(slot);
        }
        for slot in feeding {
            self.feed_session(slot);
        }
        for i in again.into_iter().chain(drained) {
            self.read_relay(i, true);
        }
        self.apply_actions();
        let Some(c) = &mut self.cluster else {
            return Ok(());
        };
        if let Some(e) = c.fatal.take() {
            return Err(e);
        }
        let now = Instant::now();
        c.report_waiting(now);
        c.member.tick(now);
        c.member.admin_from(&mut self.host);
        c.member.propose_from(&mut self.host);
        let mut out = std::mem::take(&mut c.outbound);
        // Messages that may go before this turn's fsync go now: written to
        // each link at once (what does not fit stays for the flush below;
        // a failed link is dropped there).
        let mut backed_up = Vec::new();
        let change = c
            .member
            .drive(&mut self.host, &self.sockets, &mut out, &mut |m| {
                send_now(&mut c.links, &mut backed_up, &m);
            })?;
        for node in backed_up {
            c.drop_if_backed_up(node);
        }
        // Reads held while their connection did not read: those that may
        // go now.
        self.host.answer_ready_reads();
        let Some(c) = &mut self.cluster else {
            return Ok(());
        };
        for m in out.messages.drain(..) {
            let to = m.to;
            match m.write_to_bytes() {
                Ok(bytes) => c.send(to, Frame::Raft(&bytes)),
                Err(e) => warn!("cannot encode a raft message: {e}"),
            }
        }
        c.outbound = out;
        if !c.meta_checked
            && let (Some(dir), Some(cluster_id)) =
                (&c.data_dir, self.host.replica().and_then(|r| r.cluster_id))
        {
            c.meta_checked = true;
            crate::cluster::log::Meta::check_or_create(
                dir,
                crate::cluster::log::Meta {
                    cluster_id,
                    node_id: c.member.id(),
                },
            )?;
        }
        if c.member.removed && !self.removed {
            info!("removed from the cluster: stopping");
            self.removed = true;
        }
        if let Some(change) = change {
            self.leader_changed(change);
        }
        self.sync_links();
        self.apply_actions();
        let nodes: Vec<u64> = self
            .cluster
            .as_ref()
            .map(|c| c.links.keys().copied().collect())
            .unwrap_or_default();
        for node in nodes {
            self.dial(node);
            self.flush_link(node);
        }
        self.bind_waiting_relays();
        self.expire_relays();
        self.expire_silent_peers();
        Ok(())
    }

    /// Accepted peer connections that did not say hello (or finish their
    /// TLS handshake) in time are refused: they hold no slot for ever.
    fn expire_silent_peers(&mut self) {
        let Some(c) = &self.cluster else {
            return;
        };
        let within = c.idle_timeout.max(HELLO_AT_LEAST);
        let silent: Vec<usize> = c
            .inbound
            .iter()
            .enumerate()
            .filter_map(|(i, conn)| {
                let conn = conn.as_ref()?;
                (conn.node.is_none() && conn.since.elapsed() >= within).then_some(i)
            })
            .collect();
        for i in silent {
            self.close_inbound(
                i,
                Some("no hello (or TLS handshake) within the idle timeout"),
            );
        }
    }

    /// Links follow the membership: one to every other member.
    fn sync_links(&mut self) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        let me = c.member.id();
        let peers = c.member.peers().clone();
        let gone: Vec<u64> = c
            .links
            .keys()
            .filter(|id| !peers.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            if let Some(mut link) = c.links.remove(&id)
                && let Some(mut s) = link.stream.take()
            {
                // Tell it, so that it stops (it no longer hears from the
                // leader, so it could not learn it any other way): best
                // effort, what the socket takes now.
                transport::encode(&mut link.out, Frame::Goodbye);
                let _ = s.write(&link.out[link.written..]);
                s.close_notify();
                let _ = self.poll.registry().deregister(&mut s.stream);
            }
        }
        for (id, addr) in peers {
            if id != me && !c.links.contains_key(&id) {
                c.links.insert(
                    id,
                    Link {
                        addr,
                        stream: None,
                        reader: FrameReader::default(),
                        last_refusal: None,
                        out: Vec::new(),
                        written: 0,
                        connected: false,
                        next_dial: Instant::now(),
                    },
                );
            }
        }
    }

    /// Connections served for, or relayed to, another leader end: their
    /// waits and answers in flight died with that leader's term.
    fn leader_changed(&mut self, change: RoleChange) {
        match change {
            RoleChange::Leading => {
                info!("serving clients as the leader");
            }
            RoleChange::Following { leader } => {
                // This member no longer serves: every connection it served
                // (its own clients and relayed sessions) closes, but for
                // its watchers: any member serves those.
                for slot in 0..self.sockets.0.len() {
                    if self.sockets.0[slot].is_some() && !self.host.watches_slot(slot) {
                        self.host.failed(slot);
                    }
                }
                if let Some(c) = &mut self.cluster {
                    c.sessions.clear();
                }
                let _ = leader;
            }
        }
        // Relays bound to a leader that is no longer it close; unbound ones
        // go to the new leader (or, if it is this member, to the host).
        let Some(c) = &mut self.cluster else {
            return;
        };
        let leader = c.member.leader();
        let me = c.member.id();
        let mut close = Vec::new();
        let mut adopt = Vec::new();
        for (i, r) in c.relays.iter().enumerate() {
            let Some(r) = r else { continue };
            match r.bound {
                Some(b) if Some(b) != leader => close.push(i),
                None if leader == Some(me) => adopt.push(i),
                _ => {}
            }
        }
        for i in close {
            self.close_relay(i);
        }
        for i in adopt {
            self.adopt_relay(i);
        }
        self.bind_waiting_relays();
    }

    /// Relays that waited for a leader go to it once its link is up.
    fn bind_waiting_relays(&mut self) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        let Some(l) = c.reachable_leader() else {
            return;
        };
        let mut sends = Vec::new();
        for r in c.relays.iter_mut().flatten() {
            if r.opening == Opening::Unknown && r.since.elapsed() >= FIRST_LINE_WAIT {
                r.opening = Opening::Relayed;
            }
            // A TLS client is bound once its handshake told what its
            // certificate stands for.
            let ready = r.tls.as_ref().is_none_or(|t| t.handshaken);
            if r.bound.is_none() && !r.closing && ready && r.opening == Opening::Relayed {
                r.bound = Some(l);
                sends.extend(r.session_frame());
                let bytes = std::mem::take(&mut r.pending);
                if !bytes.is_empty() {
                    sends.push(OwnedFrame::Forward {
                        session: r.session,
                        bytes,
                    });
                }
                if r.eof {
                    sends.push(OwnedFrame::Eof { session: r.session });
                }
                recharge(&mut self.host, r);
            }
        }
        for f in &sends {
            c.send(l, f.frame());
        }
    }

    /// A relayed client that never reached a leader, now that this member
    /// leads: the host takes its connection and what it sent.
    fn adopt_relay(&mut self, i: usize) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        let Some(mut r) = c.relays.get_mut(i).and_then(Option::take) else {
            return;
        };
        self.host.recharge(r.charged, 0);
        let _ = self.poll.registry().deregister(&mut r.stream);
        let now = self.now();
        let slot = match self.host.admit(now) {
            Admission::Accepted(slot) => slot,
            Admission::Refused(line) => {
                let _ = r.stream.write(line);
                return;
            }
        };
        self.apply_actions();
        if self
            .poll
            .registry()
            .register(&mut r.stream, MioToken(slot), Interest::READABLE)
            .is_err()
        {
            self.host.failed(slot);
            return;
        }
        // What the relay knew of its client, the host knows now.
        if let Some(t) = &r.tls {
            self.host
                .set_transport(slot, crate::tls::CONN_CHARGE, false);
            if t.handshaken {
                self.host
                    .set_certificate_identity(slot, r.cert_identity.take());
            }
        } else if r.identities_refused {
            self.host.set_transport(slot, 0, true);
        }
        self.sockets.put(
            slot,
            Endpoint::Tcp(super::Sock {
                stream: r.stream,
                writable_interest: false,
                // Its TLS session, handshake done or under way.
                tls: r.tls,
                fresh: r.fresh,
                // What it sent while no leader was known is read first,
                // as the host takes it (all of it, however long the host
                // pauses reading for answers to go out).
                replay: r.pending,
                replay_eof: r.eof,
            }),
        );
        self.readable(slot, false);
    }

    /// Relayed clients that waited too long for a leader are told so;
    /// a TLS handshake that does not finish within the idle timeout is
    /// closed (and counted).
    fn expire_relays(&mut self) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        let stalled: Vec<usize> = c
            .relays
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let r = r.as_ref()?;
                let t = r.tls.as_ref()?;
                (!t.handshaken && r.since.elapsed() >= c.idle_timeout).then_some(i)
            })
            .collect();
        for i in stalled {
            debug!("TLS handshake stalled (relayed client): closed");
            self.host.engine_mut().stats_mut().incr(Stat::TlsFailed);
            self.close_relay(i);
        }
        let Some(c) = &mut self.cluster else {
            return;
        };
        let unread: Vec<usize> = c
            .relays
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let r = r.as_ref()?;
                let lingered = r.linger.is_some_and(|(until, _)| Instant::now() >= until);
                let unread = r
                    .blocked_since
                    .is_some_and(|since| since.elapsed() >= c.idle_timeout);
                (lingered || unread).then_some(i)
            })
            .collect();
        for i in unread {
            debug!("relayed client read none of its answers for the idle timeout: closed");
            self.close_relay(i);
        }
        let Some(c) = &mut self.cluster else {
            return;
        };
        if c.member.leader().is_some() {
            return;
        }
        let mut due = Vec::new();
        for (i, r) in c.relays.iter_mut().enumerate() {
            if let Some(r) = r
                && r.bound.is_none()
                && !r.closing
                && r.since.elapsed() >= NO_LEADER_GRACE
                && !r.pending.is_empty()
            {
                r.out.extend_from_slice(NO_LEADER);
                r.closing = true;
                due.push(i);
            }
        }
        for i in due {
            self.flush_relay(i);
        }
    }
}

/// The most a relayed client's bytes are read in one turn (the rest at
/// the next turn), so that a client pipelining megabytes holds neither
/// this member's loop nor the link to the leader.
const RELAY_READ: usize = 64 * 1024;

/// Relayed clients are not read while more than this waits on the link
/// to the leader (TCP's own backpressure, carried through): the link's
/// Raft messages are not held behind a flood, nor is the link dropped for
/// [`LINK_BUFFER`].
const LINK_PAUSE: usize = 4 << 20;

/// Reads a plaintext relayed client: `Err` if the connection failed.
/// Writes raft messages that may go before this turn's fsync to their
/// links at once (what does not fit stays for the flush at the end of the
/// turn; a link past [`LINK_BUFFER`] is noted in `backed_up`, to drop).
fn send_now(
    links: &mut BTreeMap<u64, Link>,
    backed_up: &mut Vec<u64>,
    messages: &[raft::prelude::Message],
) {
    for m in messages {
        let Some(link) = links.get_mut(&m.to) else {
            continue;
        };
        if link.out.len() - link.written > LINK_BUFFER {
            backed_up.push(m.to);
            continue;
        }
        match m.write_to_bytes() {
            Ok(bytes) => transport::encode(&mut link.out, Frame::Raft(&bytes)),
            Err(e) => warn!("cannot encode a raft message: {e}"),
        }
    }
    for link in links.values_mut() {
        if let Some(s) = link.stream.as_mut().filter(|_| link.connected) {
            while link.written < link.out.len() {
                match s.write(&link.out[link.written..]) {
                    // Full (or TLS holding what it took): the flush at
                    // the end of the turn goes on.
                    Ok(0) => break,
                    Ok(n) => link.written += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            // A failure shows again, and is handled, there.
            let _ = s.flush();
        }
        compact(&mut link.out, &mut link.written);
    }
}

/// Drops the bytes of `out` already written. Under steady load a link's
/// buffer never empties, so its written part must go before it is
/// wholly written: it was kept until then, and a leader answering a
/// follower's clients faster than the follower took them held every byte
/// it had sent (950 MB in a test) while its unsent part stayed under the
/// limit.
fn compact(out: &mut Vec<u8>, written: &mut usize) {
    if *written == out.len() {
        out.clear();
        *written = 0;
        if out.capacity() > LINK_PAUSE {
            *out = Vec::new();
        }
    } else if *written >= 64 * 1024 && *written * 2 >= out.len() {
        out.drain(..*written);
        *written = 0;
    }
}

fn read_plain(
    stream: &mut TcpStream,
    chunk: &mut [u8],
    got: &mut Vec<u8>,
    eof: &mut bool,
    hung_up: bool,
) -> Result<(), Option<Stat>> {
    loop {
        match stream.read(chunk) {
            Ok(0) => {
                *eof = true;
                return Ok(());
            }
            Ok(n) => {
                got.extend_from_slice(&chunk[..n]);
                // A short read drained the socket: edge-triggered epoll
                // says when more arrives (one read a turn, not two; a
                // client that closed its end is read to that end).
                if got.len() > RELAY_READ || (n < chunk.len() && !hung_up) {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(None),
        }
    }
}

/// Reads a TLS relayed client through rustls: the handshake, then its
/// plaintext into `got`. `Err` if the connection failed (a refused
/// handshake: `TlsFailed` to count, after rustls's alert is sent).
fn read_tls(
    tls: &mut TlsSession,
    stream: &mut TcpStream,
    chunk: &mut [u8],
    got: &mut Vec<u8>,
    eof: &mut bool,
) -> Result<(), Option<Stat>> {
    let refused = || Err(Some(Stat::TlsFailed));
    loop {
        let drained = match tls.conn.read_tls(stream) {
            Ok(0) => {
                tls.eof = true;
                false
            }
            Ok(_) => false,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                return if tls.handshaken { Err(None) } else { refused() };
            }
        };
        if let Err(e) = tls.conn.process_new_packets() {
            // rustls queued an alert that says why: send it, close.
            let _ = tls.conn.write_tls(stream);
            debug!("TLS refused (relayed client): {e}");
            return refused();
        }
        loop {
            match tls.conn.reader().read(chunk) {
                Ok(0) => {
                    *eof = true;
                    break;
                }
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    *eof = true;
                    break;
                }
            }
        }
        if tls.eof {
            *eof = true;
        }
        if drained || *eof || got.len() > RELAY_READ {
            return Ok(());
        }
    }
}

impl Relay {
    /// What the leader must know of this client before its bytes, if
    /// anything.
    fn session_frame(&self) -> Option<OwnedFrame> {
        if self.tls.is_none() && !self.identities_refused {
            return None;
        }
        Some(OwnedFrame::Session {
            session: self.session,
            identities_refused: self.identities_refused,
            cert_identity: self
                .cert_identity
                .as_deref()
                .unwrap_or("")
                .as_bytes()
                .to_vec(),
        })
    }
}

/// A frame with its bytes owned (taken out of the reader before acting).
enum OwnedFrame {
    Hello {
        cluster: u64,
        node: u64,
        client: Vec<u8>,
    },
    Raft(Vec<u8>),
    Forward {
        session: u64,
        bytes: Vec<u8>,
    },
    Eof {
        session: u64,
    },
    Reply {
        session: u64,
        bytes: Vec<u8>,
    },
    Close {
        session: u64,
    },
    Goodbye,
    Session {
        session: u64,
        identities_refused: bool,
        cert_identity: Vec<u8>,
    },
}

impl OwnedFrame {
    fn frame(&self) -> Frame<'_> {
        match self {
            Self::Hello {
                cluster,
                node,
                client,
            } => Frame::Hello {
                cluster: *cluster,
                node: *node,
                client,
            },
            Self::Raft(b) => Frame::Raft(b),
            Self::Forward { session, bytes } => Frame::Forward {
                session: *session,
                bytes,
            },
            Self::Eof { session } => Frame::Eof { session: *session },
            Self::Reply { session, bytes } => Frame::Reply {
                session: *session,
                bytes,
            },
            Self::Close { session } => Frame::Close { session: *session },
            Self::Goodbye => Frame::Goodbye,
            Self::Session {
                session,
                identities_refused,
                cert_identity,
            } => Frame::Session {
                session: *session,
                identities_refused: *identities_refused,
                cert_identity,
            },
        }
    }

    fn of(f: Frame<'_>) -> Self {
        match f {
            Frame::Hello {
                cluster,
                node,
                client,
            } => Self::Hello {
                cluster,
                node,
                client: client.to_vec(),
            },
            Frame::Raft(b) => Self::Raft(b.to_vec()),
            Frame::Forward { session, bytes } => Self::Forward {
                session,
                bytes: bytes.to_vec(),
            },
            Frame::Eof { session } => Self::Eof { session },
            Frame::Reply { session, bytes } => Self::Reply {
                session,
                bytes: bytes.to_vec(),
            },
            Frame::Close { session } => Self::Close { session },
            Frame::Goodbye => Self::Goodbye,
            Frame::Session {
                session,
                identities_refused,
                cert_identity,
            } => Self::Session {
                session,
                identities_refused,
                cert_identity: cert_identity.to_vec(),
            },
        }
    }
}
