//! The event loop's cluster side: peer connections (links out, dials in),
//! client connections relayed to the leader (on a follower), the sessions
//! followers relay (on the leader), and one Raft turn per loop turn.
//!
//! ```text
//!   follower: client ──▶ Relay ──Forward──▶ leader: Session ─▶ Host (as a connection)
//!             client ◀── Relay ◀──Reply───          Session ◀─ Host output
//! ```
//!
//! Only moves bytes and frames; the rules are the host's ([`Host`]) and
//! raft-rs's ([`Member`]).

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Token as MioToken};
use protobuf::Message as _;
use tracing::{debug, info, warn};

use super::{Endpoint, EventLoop};
use crate::cluster::node::{Member, Outbound, RoleChange};
use crate::cluster::transport::{self, Frame, FrameReader};
use crate::host::Admission;

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
    /// Bytes forwarded and not yet taken by the host (it was not reading).
    pub(super) inbox: Vec<u8>,
    /// The client closed its end.
    pub(super) eof: bool,
    eof_told: bool,
}

/// An outgoing peer connection.
struct Link {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    /// Frames to write, and how much of them was written.
    out: Vec<u8>,
    written: usize,
    connected: bool,
    next_dial: Instant,
}

/// An accepted peer connection.
struct Inbound {
    stream: TcpStream,
    reader: FrameReader,
    /// The member, once it said hello.
    node: Option<u64>,
}

/// A client connection a follower relays to the leader.
struct Relay {
    stream: TcpStream,
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
    next_session: u64,
    outbound: Outbound,
    /// Refused peer connections (garbage, wrong cluster).
    pub(super) refused_peers: u64,
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
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("member", &self.member)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// The cluster state for `member`, accepting peers on `listener`.
    pub(super) fn new(member: Member, listener: std::net::TcpListener) -> io::Result<Self> {
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
            next_session: 1,
            outbound: Outbound::default(),
            refused_peers: 0,
            data_dir: None,
            meta_checked: false,
            fatal: None,
            next_wait_report: Instant::now() + WAIT_REPORT_FIRST,
            formed: false,
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
        self.send(s.node, Frame::Close { session: s.session });
    }

    /// The leader, if it is another member and its link is up (a relay
    /// waits rather than forward into a dead link).
    fn reachable_leader(&self) -> Option<u64> {
        let l = self.member.leader().filter(|l| *l != self.member.id())?;
        self.links.get(&l).filter(|link| link.connected).map(|_| l)
    }

    /// Queues a frame on the link to `node`.
    fn send(&mut self, node: u64, frame: Frame<'_>) {
        let Some(link) = self.links.get_mut(&node) else {
            return;
        };
        if link.out.len() - link.written > LINK_BUFFER {
            warn!(peer = node, "link backed up: dropping it (raft retries)");
            link.stream = None;
            link.connected = false;
            link.out.clear();
            link.written = 0;
            self.member.unreachable(node);
            return;
        }
        transport::encode(&mut link.out, frame);
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
            if ev.is_error() || ev.is_read_closed() {
                self.drop_link(node);
            } else {
                self.flush_link(node);
            }
        } else if (INBOUND_BASE..RELAY_BASE).contains(&t) {
            self.read_inbound(t - INBOUND_BASE);
        } else if (RELAY_BASE..usize::MAX - 16).contains(&t) {
            let i = t - RELAY_BASE;
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                self.read_relay(i);
            }
            if ev.is_writable() {
                self.flush_relay(i);
            }
        } else {
            return false;
        }
        true
    }

    /// A new client connection: relayed if this member follows. Returns
    /// the stream back if the host should take it.
    pub(super) fn relay_if_following(&mut self, stream: TcpStream) -> Option<TcpStream> {
        let Some(c) = &mut self.cluster else {
            return Some(stream);
        };
        if c.member.is_leader() {
            return Some(stream);
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
        let session = c.next_session;
        c.next_session += 1;
        let relay = Relay {
            stream,
            session,
            bound: None,
            pending: Vec::new(),
            out: Vec::new(),
            written: 0,
            eof: false,
            closing: false,
            since: Instant::now(),
            writable_interest: false,
        };
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
                Ok((mut stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let i = c
                        .inbound
                        .iter()
                        .position(Option::is_none)
                        .unwrap_or(c.inbound.len());
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, MioToken(INBOUND_BASE + i), Interest::READABLE)
                        .is_err()
                    {
                        continue;
                    }
                    let conn = Inbound {
                        stream,
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
            let _ = self.poll.registry().deregister(&mut conn.stream);
            if let Some(why) = why {
                c.refused_peers += 1;
                warn!(peer = ?conn.node, "peer connection refused: {why}");
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

    fn read_inbound(&mut self, i: usize) {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut closed = false;
        {
            let Some(conn) = self
                .cluster
                .as_mut()
                .and_then(|c| c.inbound.get_mut(i))
                .and_then(Option::as_mut)
            else {
                return;
            };
            loop {
                match conn.stream.read(&mut chunk) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => conn.reader.push(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
        }
        // Take the frames out, then act on them (acting needs the loop).
        let mut frames: Vec<OwnedFrame> = Vec::new();
        let mut refuse = None;
        if let Some(c) = &mut self.cluster
            && let Some(conn) = c.inbound.get_mut(i).and_then(Option::as_mut)
        {
            loop {
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
            OwnedFrame::Forward { session, bytes } => {
                if !c.member.is_leader() {
                    c.send(node, Frame::Close { session });
                    return Ok(());
                }
                let slot = match c.sessions.get(&(node, session)) {
                    Some(slot) => *slot,
                    None => {
                        let now = self.start.elapsed();
                        match self.host.admit(now) {
                            Admission::Accepted(slot) => {
                                self.apply_actions();
                                let Some(c) = &mut self.cluster else {
                                    return Ok(());
                                };
                                c.sessions.insert((node, session), slot);
                                self.sockets.put(
                                    slot,
                                    Endpoint::Session(SessionEnd {
                                        node,
                                        session,
                                        inbox: Vec::new(),
                                        eof: false,
                                        eof_told: false,
                                    }),
                                );
                                slot
                            }
                            Admission::Refused(line) => {
                                let Some(c) = &mut self.cluster else {
                                    return Ok(());
                                };
                                c.send(
                                    node,
                                    Frame::Reply {
                                        session,
                                        bytes: line,
                                    },
                                );
                                c.send(node, Frame::Close { session });
                                return Ok(());
                            }
                        }
                    }
                };
                if let Some(s) = self.sockets.session_mut(slot) {
                    s.inbox.extend_from_slice(&bytes);
                }
                self.feed_session(slot);
            }
            OwnedFrame::Eof { session } => {
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

    /// Feeds a relayed session's forwarded bytes to the host.
    pub(super) fn feed_session(&mut self, slot: usize) {
        let now = self.start.elapsed();
        self.host.resume(slot, now, &self.sockets);
        loop {
            let Some(s) = self.sockets.session_mut(slot) else {
                return;
            };
            if s.inbox.is_empty() {
                if s.eof && !s.eof_told {
                    s.eof_told = true;
                    self.host.closed_by_peer(slot, now, &self.sockets);
                }
                return;
            }
            let Some(space) = self.host.read_space(slot) else {
                return;
            };
            let Some(s) = self.sockets.session_mut(slot) else {
                return;
            };
            let n = space.len().min(s.inbox.len());
            space[..n].copy_from_slice(&s.inbox[..n]);
            s.inbox.drain(..n);
            self.host.received(slot, n, now, &self.sockets);
        }
    }

    /// Sends a session's answers back to its follower.
    pub(super) fn flush_session(&mut self, slot: usize) {
        let now = self.start.elapsed();
        let Some(s) = self.sockets.session_mut(slot) else {
            return;
        };
        let (node, session) = (s.node, s.session);
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

    fn read_relay(&mut self, i: usize) {
        let mut chunk = vec![0u8; 64 * 1024];
        let Some(c) = &mut self.cluster else {
            return;
        };
        let leader = c.reachable_leader();
        let Some(r) = c.relays.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let mut got = Vec::new();
        let mut failed = false;
        loop {
            match r.stream.read(&mut chunk) {
                Ok(0) => {
                    r.eof = true;
                    break;
                }
                Ok(n) => {
                    got.extend_from_slice(&chunk[..n]);
                    if got.len() > 1 << 20 {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            self.close_relay(i);
            return;
        }
        let (session, eof) = (r.session, r.eof);
        let mut sends: Vec<(u64, OwnedFrame)> = Vec::new();
        match (r.bound, leader) {
            (None, Some(l)) => {
                r.bound = Some(l);
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
        for (to, f) in &sends {
            c.send(*to, f.frame());
        }
        if done {
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
        let blocked = r.written < r.out.len();
        if !blocked {
            r.out.clear();
            r.written = 0;
            if r.closing {
                self.close_relay(i);
                return;
            }
        }
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
    }

    fn close_relay(&mut self, i: usize) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        if let Some(mut r) = c.relays.get_mut(i).and_then(Option::take) {
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
        match TcpStream::connect(link.addr) {
            Ok(mut s) => {
                let _ = s.set_nodelay(true);
                if self
                    .poll
                    .registry()
                    .register(
                        &mut s,
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
            let _ = self.poll.registry().deregister(&mut s);
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

    fn flush_link(&mut self, node: u64) {
        let mut failed = false;
        if let Some(link) = self.cluster.as_mut().and_then(|c| c.links.get_mut(&node))
            && let Some(s) = link.stream.as_mut()
        {
            while link.written < link.out.len() {
                match s.write(&link.out[link.written..]) {
                    Ok(n) => {
                        link.written += n;
                        link.connected = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            if link.written == link.out.len() {
                link.out.clear();
                link.written = 0;
            }
        }
        if failed {
            self.drop_link(node);
        }
    }

    /// One Raft turn: ticks, proposals, the Ready, messages out, and what a
    /// change of leader means for connections. Fails only when this member
    /// must stop (a damaged entry, a storage error).
    pub(super) fn cluster_turn(&mut self) -> io::Result<()> {
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
        let change = c.member.drive(&mut self.host, &self.sockets, &mut out)?;
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
        Ok(())
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
                // leader, so it could not learn it any other way).
                transport::encode(&mut link.out, Frame::Goodbye);
                let _ = s.write_all(&link.out[link.written..]);
                let _ = self.poll.registry().deregister(&mut s);
            }
        }
        for (id, addr) in peers {
            if id != me && !c.links.contains_key(&id) {
                c.links.insert(
                    id,
                    Link {
                        addr,
                        stream: None,
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
                // (its own clients and relayed sessions) closes.
                for slot in 0..self.sockets.0.len() {
                    if self.sockets.0[slot].is_some() {
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
            if r.bound.is_none() && !r.closing {
                r.bound = Some(l);
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
        let _ = self.poll.registry().deregister(&mut r.stream);
        let now = self.start.elapsed();
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
        self.sockets.put(
            slot,
            Endpoint::Tcp(super::Sock {
                stream: r.stream,
                writable_interest: false,
                // Cluster members serve plaintext only (TLS is refused
                // with a cluster at start).
                tls: None,
                fresh: false,
                // What it sent while no leader was known is read first,
                // as the host takes it (all of it, however long the host
                // pauses reading for answers to go out).
                replay: r.pending,
                replay_eof: r.eof,
            }),
        );
        self.readable(slot, false);
    }

    /// Relayed clients that waited too long for a leader are told so.
    fn expire_relays(&mut self) {
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
        }
    }
}
