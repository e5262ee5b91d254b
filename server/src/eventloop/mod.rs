//! The event loop: one thread, one epoll loop, moving bytes between the
//! sockets and the [host](crate::host), in the manner of Redis.
//!
//! ```text
//!   epoll ──▶ ready sockets ──▶ read into the host ──▶ Host answers every line
//!     ▲                                                   │ (and hands locks to waiters)
//!     │                                                   ▼ Actions: write, read, close
//!     └── sleep until the next event, engine or ◀── write every connection's answers,
//!         connection deadline, or statistics line   once per turn
//! ```
//!
//! Why not a tokio task per connection (the first design): on the 2-core
//! machine the issue sets, a task per connection paid for wakers, a mutex
//! around the engine and a channel per waiter, and a trivial tokio server
//! already fell behind Redis at 16 clients (`dlm-bench`, see README). Here
//! a waiter's grant is written into its connection in the same turn as the
//! unlock that freed it, no lock guards the engine, and every connection
//! that became ready in one `epoll_wait` is read, answered and written
//! before the next. tokio still runs the process around it: signals, the
//! `run(listener, shutdown)` entry point, and shutdown.
//!
//! Every rule about connections (limits, timeouts, answer order, memory)
//! is the host's; this file only owns sockets, readiness and the clock.

mod clock;
mod cluster;
mod peer_io;

use std::io::{self, Read as _, Write as _};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use dlm_core::engine::Engine;
use dlm_core::stats::Stat;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token as MioToken, Waker};
use tracing::{debug, info, warn};

use crate::config::Settings;
use crate::host::{Actions, Admission, Host, HostConfig, Peers};
use crate::identity::Identities;
use crate::statslog;
use crate::tls;

/// What a plaintext client reads when it connects to the TLS port.
const PLAINTEXT_ON_TLS: &[u8] =
    b"{\"Status\":\"BadPayload\",\"Error\":\"this port speaks TLS; connect with TLS or to the plaintext port\"}\n";

/// How long shutdown waits for answers to drain.
const DRAIN: Duration = Duration::from_millis(500);
/// How long a stopping leader waits for a follower to take over.
const HANDOVER: Duration = Duration::from_secs(1);
/// After `accept` failed for want of descriptors (or memory): how soon to
/// try again, if no connection closes first.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

const LISTENER: MioToken = MioToken(usize::MAX);
const WAKER: MioToken = MioToken(usize::MAX - 1);
/// The plaintext port beside a TLS client port (`--plaintext-port`).
const PLAIN_LISTENER: MioToken = MioToken(usize::MAX - 3);

/// What the rest of the process asks of the loop.
#[derive(Debug)]
pub(crate) enum Control {
    /// Stop accepting, answer what was received, and return.
    Shutdown,
    /// Re-read the identity directory.
    ReloadIdentities,
    /// An administrator's look at the lock table (the dashboard's): the
    /// answer is `None` if the credentials are not an administrator's.
    Admin {
        /// The identity's name.
        name: String,
        /// Its secret.
        secret: String,
        /// What to show.
        query: crate::admin::Query,
        /// Where the answer goes.
        reply: tokio::sync::oneshot::Sender<Option<AdminAnswer>>,
    },
    /// Re-read the TLS certificate, key and client CA: new connections
    /// get them, open ones keep theirs.
    ReloadTls,
}

/// What the loop answers an administrator's [`Control::Admin`].
#[derive(Debug)]
pub(crate) struct AdminAnswer {
    /// The table's (or lock's) JSON, `None` for a lock nobody holds.
    pub(crate) table: Option<String>,
    /// The cluster's members and their peer addresses.
    pub(crate) members: Vec<(u64, String)>,
}

/// A connection's socket and what epoll watches on it.
struct Sock {
    stream: TcpStream,
    writable_interest: bool,
    /// Its TLS session, on the TLS port.
    tls: Option<Box<TlsSession>>,
    /// Nothing was read yet (a plaintext connection's first bytes are
    /// checked for a TLS hello, a TLS one's for plaintext).
    fresh: bool,
    /// Bytes the client sent before this connection was the host's (a
    /// relayed client adopted when this member became the leader), read
    /// before the socket; and whether its input ended after them.
    replay: Vec<u8>,
    replay_eof: bool,
}

/// rustls's side of a TLS connection.
struct TlsSession {
    conn: rustls::ServerConnection,
    /// The handshake completed.
    handshaken: bool,
    /// The socket reached its end of input.
    eof: bool,
}

/// What stands behind a host connection: a socket, or (on a cluster's
/// leader) a session a follower relays.
enum Endpoint {
    Tcp(Sock),
    Session(cluster::SessionEnd),
}

/// The endpoints, indexed by the host's connection slots.
struct Sockets(Vec<Option<Endpoint>>);

impl Sockets {
    fn get_mut(&mut self, slot: usize) -> Option<&mut Sock> {
        match self.0.get_mut(slot).and_then(Option::as_mut) {
            Some(Endpoint::Tcp(sock)) => Some(sock),
            _ => None,
        }
    }

    fn tls_mut(&mut self, slot: usize) -> Option<&mut TlsSession> {
        self.get_mut(slot).and_then(|s| s.tls.as_deref_mut())
    }

    fn is_tls(&self, slot: usize) -> bool {
        matches!(
            self.0.get(slot).and_then(Option::as_ref),
            Some(Endpoint::Tcp(Sock { tls: Some(_), .. }))
        )
    }

    fn session_mut(&mut self, slot: usize) -> Option<&mut cluster::SessionEnd> {
        match self.0.get_mut(slot).and_then(Option::as_mut) {
            Some(Endpoint::Session(s)) => Some(s),
            _ => None,
        }
    }

    fn put(&mut self, slot: usize, e: Endpoint) {
        if self.0.len() <= slot {
            self.0.resize_with(slot + 1, || None);
        }
        self.0[slot] = Some(e);
    }
}

impl Peers for Sockets {
    fn closed(&self, slot: usize) -> bool {
        let sock = match self.0.get(slot).and_then(Option::as_ref) {
            None => return true,
            // A relayed client's end is the follower's: it says when.
            Some(Endpoint::Session(s)) => return s.eof && s.inbox.is_empty(),
            Some(Endpoint::Tcp(sock)) => sock,
        };
        let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match socket2::SockRef::from(&sock.stream).peek(&mut probe) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ),
        }
    }
}

/// The loop: everything the server serves.
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent flags of the loop (listening, systemd told, TLS policy), not a state machine"
)]
pub(crate) struct EventLoop {
    poll: Poll,
    listener: TcpListener,
    listening: bool,
    /// When to try `accept` again after it failed for want of resources.
    accept_retry: Option<Instant>,
    commands: mpsc::Receiver<Control>,
    sockets: Sockets,
    host: Host,
    actions: Actions,
    /// Connections with answers to write this turn.
    dirty: Vec<usize>,
    identity_dir: Option<PathBuf>,
    max_data_default: usize,
    /// The host's time (see [`clock`]).
    clock: clock::HostClock,
    busy_poll: Duration,
    stats_every: Duration,
    next_stats: Instant,
    log_file: Option<PathBuf>,
    /// This member's cluster side, if it is one.
    cluster: Option<cluster::Cluster>,
    /// This member was removed from its cluster: it stops.
    removed: bool,
    /// Where the loop publishes its metrics (with `--http`).
    metrics: Option<Metrics>,
    /// Whether systemd was told the server is ready (`Type=notify`).
    ready_notified: bool,
    /// The TLS configuration new connections to the client port get
    /// (`None`: that port is plaintext).
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Where it came from, for `SIGHUP`.
    tls_settings: Option<tls::TlsSettings>,
    /// The plaintext port beside the TLS one, if asked for.
    plain_listener: Option<TcpListener>,
    /// Refuse identities on plaintext connections.
    require_tls_for_identities: bool,
}

/// The loop's side of the metrics: what it publishes and what it keeps
/// between snapshots.
struct Metrics {
    shared: crate::metrics::Shared,
    next: Instant,
    /// Counters folded in before each reset by the statistics line.
    totals: dlm_core::stats::Stats,
    latency: crate::metrics::Latency,
    /// When the logged requests answered this turn were read.
    answered: Vec<Duration>,
    memory_budget: u64,
    max_connections: u64,
}

/// The waker for a loop, so other threads can hand it a [`Control`].
#[derive(Clone)]
pub(crate) struct Handle {
    waker: std::sync::Arc<Waker>,
    commands: mpsc::Sender<Control>,
}

impl Handle {
    /// Sends `command` and wakes the loop.
    pub(crate) fn send(&self, command: Control) {
        if self.commands.send(command).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

fn random_key() -> [u64; 2] {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        b.copy_from_slice(&t.as_nanos().to_le_bytes());
    }
    let (a, c) = b.split_at(8);
    [
        u64::from_le_bytes(a.try_into().unwrap_or_default()),
        u64::from_le_bytes(c.try_into().unwrap_or_default()),
    ]
}

/// Fencing tokens start at the wall clock in nanoseconds since 1970, so
/// without a data directory they keep increasing across restarts: the
/// tokens of a run that started at wall time `s` and granted `g` locks
/// end below `s + g` nanoseconds, which the next run's start exceeds
/// unless fewer than `g` nanoseconds (a second per billion grants) passed
/// between the two starts by the wall clock. See README, "Fencing tokens".
pub(crate) fn token_floor() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl EventLoop {
    /// A loop serving `listener` with `settings`: everything that can fail
    /// at start (identities, the log file) fails here, before the server
    /// says it is listening.
    pub(crate) fn new(
        listener: std::net::TcpListener,
        settings: &Settings,
    ) -> io::Result<(Self, Handle)> {
        if let Some(path) = &settings.log_file {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    io::Error::new(e.kind(), format!("log file {}: {e}", path.display()))
                })?;
        }
        let client_addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let tls_config = settings.tls.as_ref().map(tls::server_config).transpose()?;
        let plain_listener = match settings.plaintext_port {
            Some(port) if settings.tls.is_some() => {
                let addr = std::net::SocketAddr::new(listener.local_addr()?.ip(), port);
                let l = std::net::TcpListener::bind(addr)
                    .map_err(|e| io::Error::new(e.kind(), format!("plaintext port {addr}: {e}")))?;
                l.set_nonblocking(true)?;
                let mut l = TcpListener::from_std(l);
                poll.registry()
                    .register(&mut l, PLAIN_LISTENER, Interest::READABLE)?;
                info!(addr = %l.local_addr()?, "plaintext listener on {}", l.local_addr()?);
                Some(l)
            }
            _ => None,
        };
        if let Some(t) = &settings.tls {
            info!(
                cert = %t.cert.display(),
                client_certificates = t.client_ca.is_some(),
                "TLS on the client port"
            );
        }
        let waker = std::sync::Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = mpsc::channel();
        let config = HostConfig {
            limits: settings.limits,
            max_connections: settings.max_connections,
            idle_timeout: settings.idle_timeout,
            connection_memory: settings.connection_memory,
            memory_budget: settings.memory_budget,
            hash_key: random_key(),
            first_token: token_floor(),
            truncating_clock: true,
            clock_jump_slack: clock::JUMP_SLACK,
            watch: settings.watch,
        };
        let mut engine = Engine::new(Host::engine_config(&config));
        let max_data_default = settings.limits.max_data_anonymous;
        let bootstrap = crate::cluster::entry::Bootstrap {
            cluster_id: random_key()[0] | 1,
            hash_key: config.hash_key,
            first_token: config.first_token,
            limits: config.limits,
            memory_budget: config.memory_budget as u64,
            deadline_slack_ms: crate::cluster::node::deadline_slack_ms(),
        };
        let identities = match &settings.identity_dir {
            Some(dir) => {
                let (ids, warnings) = Identities::load(dir, &mut engine, max_data_default, None)
                    .map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("identity directory {}: {e}", dir.display()),
                        )
                    })?;
                for w in warnings {
                    warn!("identity: {w}");
                }
                info!(count = ids.len(), "identities loaded");
                ids
            }
            None => Identities::none(),
        };
        let handle = Handle {
            waker,
            commands: tx,
        };
        let mut host = Host::new(config, engine, identities);
        // Connections are named by slot and generation in the replicated
        // sessions: start the generations where a restarted member's
        // earlier run did not leave them (the low bits of the wall clock).
        #[allow(clippy::cast_possible_truncation)]
        host.seed_generations(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u32),
        );
        let cluster = match &settings.cluster {
            None => None,
            Some(cs) => {
                host.replicate(cs.node);
                let registered: Vec<(String, u64)> = host
                    .identities()
                    .limits()
                    .map(|(n, m)| (n.to_owned(), m as u64))
                    .collect();
                let my_addr = cs.peers.get(&cs.node).copied().ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "this member is not among the peers",
                    )
                })?;
                let peer_listener = std::net::TcpListener::bind(my_addr).map_err(|e| {
                    io::Error::new(e.kind(), format!("peer address {my_addr}: {e}"))
                })?;
                let mut peers = cs.peers.clone();
                // A cluster of one binds any port: record the real one.
                peers.insert(cs.node, peer_listener.local_addr()?);
                let member = crate::cluster::node::Member::new(
                    cs.node,
                    peers.clone(),
                    bootstrap,
                    registered,
                    cs.join,
                    cs.data_dir.as_deref(),
                    &mut host,
                )?;
                info!(
                    node = cs.node,
                    peers = ?cs.peers,
                    "cluster member; waiting for a quorum of {} of {} to elect a leader",
                    cs.peers.len() / 2 + 1,
                    cs.peers.len()
                );
                let mut member = member;
                member.snapshot_every = cs.snapshot_every;
                // The raft log's writer thread wakes this loop when a
                // write is on disk.
                let waker = std::sync::Arc::clone(&handle.waker);
                member.set_notify(std::sync::Arc::new(move || {
                    let _ = waker.wake();
                }));
                // Where clients reach this member, for `Cluster` answers.
                let advertise = match &cs.advertise {
                    Some(a) => Some(a.clone()),
                    None if client_addr.ip().is_unspecified() => {
                        warn!(
                            "listening on {client_addr}: clients cannot be told where this \
                             member is; set --advertise HOST:PORT"
                        );
                        None
                    }
                    None => Some(client_addr.to_string()),
                };
                member.set_client(cs.node, advertise);
                if let Some(t) = &cs.peer_tls {
                    info!(
                        cert = %t.cert.display(),
                        ca = %t.ca.display(),
                        "mutual TLS between members"
                    );
                }
                let mut c = cluster::Cluster::new(
                    member,
                    peer_listener,
                    cs.peer_tls.as_ref(),
                    settings.idle_timeout,
                )?;
                c.data_dir.clone_from(&cs.data_dir);
                Some(c)
            }
        };
        Ok((
            Self {
                poll,
                listener,
                listening: true,
                accept_retry: None,
                commands: rx,
                sockets: Sockets(Vec::new()),
                host,
                actions: Actions::default(),
                dirty: Vec::new(),
                identity_dir: settings.identity_dir.clone(),
                max_data_default,
                clock: clock::HostClock::new(),
                busy_poll: settings.busy_poll,
                stats_every: settings.stats_interval,
                next_stats: Instant::now() + settings.stats_interval,
                log_file: settings.log_file.clone(),
                cluster,
                removed: false,
                metrics: None,
                ready_notified: false,
                tls: tls_config,
                tls_settings: settings.tls.clone(),
                plain_listener,
                require_tls_for_identities: settings.require_tls_for_identities,
            },
            handle,
        ))
        .and_then(|(mut l, h)| {
            l.register_cluster()?;
            Ok((l, h))
        })
    }

    /// Publishes metrics into `shared` from now on (about once a second).
    pub(crate) fn publish_metrics(&mut self, shared: crate::metrics::Shared, settings: &Settings) {
        self.metrics = Some(Metrics {
            shared,
            next: Instant::now(),
            totals: dlm_core::stats::Stats::new(),
            latency: crate::metrics::Latency::default(),
            answered: Vec::new(),
            memory_budget: settings.memory_budget as u64,
            max_connections: settings.max_connections as u64,
        });
        if let Some(replica) = self.host.replica_mut() {
            replica.time_answers(true);
        }
        self.publish();
    }

    /// The count of request lines received since start.
    fn requests_total(&self) -> u64 {
        self.stat_total(dlm_core::stats::Stat::In)
    }

    /// A counter since start (the statistics line resets the engine's).
    fn stat_total(&self, stat: dlm_core::stats::Stat) -> u64 {
        let now = self.host.engine().stats().get(stat);
        self.metrics
            .as_ref()
            .map_or(now, |m| m.totals.get(stat).saturating_add(now))
    }

    /// Requests read but not answered in the turn that read them, since
    /// start: a cluster member's logged requests (timed when they apply),
    /// a single server's queued waits (their wait is `dlm_queue_wait`).
    fn deferred_total(&self) -> u64 {
        match self.host.replica() {
            Some(replica) => replica.logged(),
            None => self.stat_total(dlm_core::stats::Stat::Wait),
        }
    }

    /// Records the latency of the logged requests answered since the last
    /// turn: from reading each to now, when its answer is being written.
    fn record_logged_latency(&mut self) {
        let now = self.now();
        let Some(m) = &mut self.metrics else {
            return;
        };
        let Some(replica) = self.host.replica_mut() else {
            return;
        };
        m.answered.clear();
        replica.take_answered(&mut m.answered);
        for &at in &m.answered {
            let us = u64::try_from(now.saturating_sub(at).as_micros()).unwrap_or(u64::MAX);
            m.latency.record_n(us, 1);
        }
    }

    /// Writes a snapshot for the HTTP side.
    fn publish(&mut self) {
        let ready = self.is_ready();
        let Some(m) = &mut self.metrics else {
            return;
        };
        m.next = Instant::now() + crate::metrics::PUBLISH_EVERY;
        let engine = self.host.engine();
        let mut stats = engine.stats();
        for &s in dlm_core::stats::Stat::ALL {
            if !s.is_gauge() {
                stats.add(s, m.totals.get(s));
            }
        }
        let timings = *engine.timings();
        let holds = crate::metrics::Holds::of(engine);
        let cluster = self.cluster.as_ref().map(|c| {
            let member = &c.member;
            let (commit, applied) = member.indexes();
            let behind = if member.is_leader() {
                member
                    .progress()
                    .into_iter()
                    .map(|(id, matched)| (id, commit.saturating_sub(matched)))
                    .collect()
            } else {
                Vec::new()
            };
            crate::metrics::ClusterView {
                node: member.id(),
                term: member.term(),
                leader: member.leader().unwrap_or(0),
                commit,
                applied,
                members: member
                    .peers()
                    .iter()
                    .map(|(id, a)| (*id, a.to_string()))
                    .collect(),
                behind,
                refused_peers: c.refused_peers,
            }
        });
        m.shared.publish(crate::metrics::Snapshot {
            unix_ms: crate::metrics::unix_ms(SystemTime::now()),
            taken: Instant::now(),
            stats,
            memory_budget: m.memory_budget,
            max_connections: m.max_connections,
            hold: timings.hold,
            queued: timings.queued,
            latency: m.latency,
            ready,
            cluster,
            holds,
        });
    }

    /// Whether the server serves requests: listening and, in a cluster,
    /// a leader known (a follower relays to it).
    fn is_ready(&self) -> bool {
        self.listening
            && !self.removed
            && self
                .cluster
                .as_ref()
                .is_none_or(|c| c.member.leader().is_some())
    }

    /// Tells systemd (`Type=notify`, `$NOTIFY_SOCKET`) that the server
    /// serves, once it does; nothing without a notify socket.
    fn notify_ready_once(&mut self) {
        if self.ready_notified || !self.is_ready() {
            return;
        }
        self.ready_notified = true;
        let status = if self.cluster.is_some() {
            "serving (cluster member, leader known)"
        } else {
            "serving"
        };
        if let Err(e) = sd_notify::notify(
            false,
            &[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status(status),
            ],
        ) {
            warn!("cannot tell systemd the server is ready: {e}");
        }
    }

    fn admin(
        &mut self,
        name: &str,
        secret: &str,
        query: &crate::admin::Query,
    ) -> Option<AdminAnswer> {
        let now = self.now();
        let table = self
            .host
            .admin_query(now, &self.sockets, name, secret, query)
            .ok()?;
        self.apply_actions();
        let members = self.cluster.as_ref().map_or_else(Vec::new, |c| {
            c.member
                .peers()
                .iter()
                .map(|(id, a)| (*id, a.to_string()))
                .collect()
        });
        Some(AdminAnswer { table, members })
    }

    /// The host's time.
    fn now(&self) -> Duration {
        self.clock.now()
    }

    /// Runs until a [`Control::Shutdown`], then answers what was received
    /// (waiters are told their wait is over) and returns.
    pub(crate) fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut shutdown_at: Option<Instant> = None;
        // A leader stopping: until when it waits for a follower to take over.
        let mut handing_over: Option<Instant> = None;
        // After a turn with work, poll without sleeping for `busy_poll`: a
        // request arriving meanwhile is served without the wake-up of a
        // sleeping thread (tens of microseconds in a VM).
        let mut spin_until: Option<Instant> = None;
        loop {
            let mut timeout = self.timeout(shutdown_at);
            if let Some(spin) = spin_until
                && Instant::now() < spin
            {
                timeout = Duration::ZERO;
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            // Request latency, with --http: from here to the answers
            // written, for the lines this turn read and answered (a
            // cluster's logged requests are timed when they apply).
            let turn = self
                .metrics
                .is_some()
                .then(|| (Instant::now(), self.requests_total(), self.deferred_total()));
            for ev in &events {
                if self.cluster.is_some() && self.cluster_event(ev.token(), ev) {
                    continue;
                }
                match ev.token() {
                    LISTENER => self.accept(false),
                    PLAIN_LISTENER => self.accept(true),
                    WAKER => {
                        while let Ok(cmd) = self.commands.try_recv() {
                            match cmd {
                                Control::Shutdown
                                    if shutdown_at.is_none() && handing_over.is_none() =>
                                {
                                    // A leader hands over first, so the
                                    // cluster does not wait out an election.
                                    let transferred = self
                                        .cluster
                                        .as_mut()
                                        .and_then(|c| c.member.transfer_leadership());
                                    if transferred.is_some() {
                                        handing_over = Some(Instant::now() + HANDOVER);
                                    } else {
                                        shutdown_at = Some(Instant::now() + DRAIN);
                                        self.begin_shutdown();
                                    }
                                }
                                Control::Shutdown => {}
                                Control::ReloadIdentities => self.reload_identities(),
                                Control::Admin {
                                    name,
                                    secret,
                                    query,
                                    reply,
                                } => {
                                    let _ = reply.send(self.admin(&name, &secret, &query));
                                }
                                Control::ReloadTls => self.reload_tls(),
                            }
                        }
                    }
                    MioToken(slot) => {
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.readable(slot, ev.is_read_closed());
                        }
                        if ev.is_error() {
                            // Reset: nothing more can be read or written
                            // (a connection not being read, its answers
                            // backed up, would otherwise wait for a read).
                            self.host.failed(slot);
                        }
                        if ev.is_writable() {
                            self.dirty.push(slot);
                        }
                    }
                }
            }
            self.apply_actions();
            if !self.busy_poll.is_zero() && !events.is_empty() {
                spin_until = Some(Instant::now() + self.busy_poll);
            }
            self.timers();
            if let Err(e) = self.cluster_turn() {
                tracing::error!("this member must stop: {e}");
                return Err(e);
            }
            self.notify_ready_once();
            let handed_over = handing_over.is_some_and(|t| {
                Instant::now() >= t || !self.cluster.as_ref().is_some_and(|c| c.member.is_leader())
            });
            if (self.removed || handed_over) && shutdown_at.is_none() {
                handing_over = None;
                shutdown_at = Some(Instant::now() + DRAIN);
                self.begin_shutdown();
            }
            self.flush_dirty();
            self.flush_links();
            if let Some((started, before, deferred_before)) = turn {
                let deferred = self.deferred_total().saturating_sub(deferred_before);
                let n = self
                    .requests_total()
                    .saturating_sub(before)
                    .saturating_sub(deferred);
                if n > 0
                    && let Some(m) = &mut self.metrics
                {
                    let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                    m.latency.record_n(us, n);
                }
                self.record_logged_latency();
            }
            if let Some(at) = shutdown_at
                && (self.host.active() == 0 || Instant::now() >= at)
            {
                self.host.finish_shutdown();
                self.apply_actions();
                if self.log_file.is_some() {
                    self.write_stats();
                }
                return Ok(());
            }
        }
    }

    /// How long `poll` may sleep: until the host's next deadline, the
    /// statistics line, an accept retry, or shutdown's end.
    fn timeout(&self, shutdown_at: Option<Instant>) -> Duration {
        let now = Instant::now();
        let mut at = self.next_stats;
        let due = self.host.next_deadline();
        // While anything is due, wake often enough that the clock may
        // bound each reading's step (see `clock`).
        if let Some(most) = self.clock.before_sleep(due.is_some()) {
            at = at.min(now + most);
        }
        if let Some(next) = due {
            at = at.min(self.clock.instant_of(next));
        }
        for t in [self.accept_retry, shutdown_at].into_iter().flatten() {
            at = at.min(t);
        }
        if let Some(c) = &self.cluster {
            at = at.min(c.next_wake());
        }
        if self.feeding() {
            // A relayed session's requests left from the last turn.
            at = now;
        }
        if self
            .host
            .replica()
            .is_some_and(crate::cluster::Replica::has_released)
        {
            // Requests held back behind reads now answered: to the log.
            at = now;
        }
        if let Some(m) = &self.metrics {
            at = at.min(m.next);
        }
        // Round up to the next millisecond: epoll counts whole ones, and
        // waking early only to sleep again costs a turn.
        at.saturating_duration_since(now) + Duration::from_micros(999)
    }

    /// Tries accepting again on every port, after `accept` failed for want
    /// of resources.
    fn accept_all(&mut self) {
        self.accept_retry = None;
        self.accept(false);
        self.accept(true);
    }

    /// Accepts what waits on the client port, or (`plain`) on the
    /// plaintext port beside a TLS one.
    fn accept(&mut self, plain: bool) {
        if !self.listening {
            return;
        }
        loop {
            let accepted = match (&self.plain_listener, plain) {
                (Some(l), true) => l.accept(),
                (None, true) => return,
                (_, false) => self.listener.accept(),
            };
            match accepted {
                Ok((stream, peer)) => {
                    let tls = if plain { None } else { self.tls.clone() };
                    self.admit(stream, peer, tls);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors and the like: the connections
                    // stay queued in the kernel; try again when one of
                    // ours closes, or shortly (epoll will not say again).
                    if self.accept_retry.is_none() {
                        warn!("accept failed: {e}; retrying");
                    }
                    self.accept_retry = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    fn admit(
        &mut self,
        stream: TcpStream,
        peer: std::net::SocketAddr,
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    ) {
        // A follower relays its clients to the leader.
        let identities_refused = tls.is_none() && self.require_tls_for_identities;
        let Some(mut stream) = self.relay_if_following(stream, tls.as_ref(), identities_refused)
        else {
            return;
        };
        let now = self.now();
        let slot = match self.host.admit(now) {
            Admission::Accepted(slot) => slot,
            Admission::Refused(line) => {
                debug!(%peer, "connection refused");
                // Best effort: the client learns why instead of a reset.
                let _ = stream.write(line);
                return;
            }
        };
        // An eviction to make room closes a socket first.
        self.apply_actions();
        let _ = stream.set_nodelay(true);
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut stream, MioToken(slot), Interest::READABLE)
        {
            warn!("cannot register a connection: {e}");
            self.host.failed(slot);
            self.apply_actions();
            return;
        }
        let session = match tls.map(rustls::ServerConnection::new).transpose() {
            Ok(s) => s.map(|mut conn| {
                conn.set_buffer_limit(Some(tls::SEND_LIMIT));
                Box::new(TlsSession {
                    conn,
                    handshaken: false,
                    eof: false,
                })
            }),
            Err(e) => {
                warn!("cannot start a TLS session: {e}");
                self.host.failed(slot);
                self.apply_actions();
                return;
            }
        };
        if session.is_some() {
            self.host.set_transport(slot, tls::CONN_CHARGE, false);
        } else if self.require_tls_for_identities {
            self.host.set_transport(slot, 0, true);
        }
        self.sockets.put(
            slot,
            Endpoint::Tcp(Sock {
                stream,
                writable_interest: false,
                tls: session,
                fresh: true,
                replay: Vec::new(),
                replay_eof: false,
            }),
        );
    }

    /// Reads what the socket holds into the host, which answers every
    /// complete line. `hung_up`: epoll said the client closed its end.
    fn readable(&mut self, slot: usize, hung_up: bool) {
        let now = self.now();
        if self.sockets.session_mut(slot).is_some() {
            self.feed_session(slot);
            return;
        }
        if self.sockets.is_tls(slot) {
            self.readable_tls(slot, hung_up);
            return;
        }
        self.host.resume(slot, now, &self.sockets);
        while let Some(space) = self.host.read_space(slot) {
            let want = space.len();
            let Some(sock) = self.sockets.get_mut(slot) else {
                break;
            };
            if !sock.replay.is_empty() || sock.replay_eof {
                // What the client sent before the host had it comes first,
                // as far as the host reads now; the rest waits for its
                // next read (it may pause for answers to go out).
                let n = want.min(sock.replay.len());
                space[..n].copy_from_slice(&sock.replay[..n]);
                sock.replay.drain(..n);
                let ended = sock.replay.is_empty() && sock.replay_eof;
                if sock.replay.is_empty() {
                    sock.replay = Vec::new();
                    sock.replay_eof = false;
                }
                if n > 0 {
                    self.host.received(slot, n, now, &self.sockets);
                }
                if ended {
                    self.host.closed_by_peer(slot, now, &self.sockets);
                    break;
                }
                continue;
            }
            match sock.stream.read(space) {
                Ok(0) => {
                    self.host.closed_by_peer(slot, now, &self.sockets);
                    break;
                }
                Ok(n) => {
                    let tls_hello = sock.fresh && tls::looks_like_tls(&space[..n]);
                    sock.fresh = false;
                    if tls_hello {
                        // A TLS client on the plaintext port: it reads a
                        // TLS alert, not a line it cannot parse.
                        debug!(slot, "TLS hello on a plaintext port: refused");
                        let _ = sock.stream.write(tls::ALERT_HANDSHAKE_FAILURE);
                        self.host.engine_mut().stats_mut().incr(Stat::TlsOnPlain);
                        self.host.failed(slot);
                        break;
                    }
                    self.host.received(slot, n, now, &self.sockets);
                    if n < want {
                        // The socket is drained; edge-triggered epoll will
                        // say when more arrives.
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(slot, "connection error: {e}");
                    self.host.failed(slot);
                    break;
                }
            }
        }
        if hung_up {
            // Not read to its end (reading is paused): it still cannot be
            // waiting.
            self.host.hung_up(slot);
        }
    }

    /// Does what the host asked: closes, write-side shutdowns, reads to
    /// resume, writes to make.
    fn apply_actions(&mut self) {
        loop {
            self.host.take_actions(&mut self.actions);
            if self.actions.is_empty() {
                return;
            }
            let mut closed_any = false;
            for &slot in &self.actions.close {
                match self.sockets.0.get_mut(slot).and_then(Option::take) {
                    Some(Endpoint::Tcp(mut sock)) => {
                        let _ = self.poll.registry().deregister(&mut sock.stream);
                        closed_any = true;
                        if sock.tls.as_ref().is_some_and(|t| !t.handshaken) {
                            self.host.engine_mut().stats_mut().incr(Stat::TlsFailed);
                        }
                    }
                    Some(Endpoint::Session(s)) => {
                        if let Some(c) = &mut self.cluster {
                            c.session_closed(&s);
                        }
                    }
                    None => {}
                }
            }
            for &slot in &self.actions.shutdown_write {
                if let Some(sock) = self.sockets.get_mut(slot) {
                    if let Some(t) = &mut sock.tls {
                        t.conn.send_close_notify();
                        while t.conn.wants_write() {
                            if t.conn.write_tls(&mut sock.stream).is_err() {
                                break;
                            }
                        }
                    }
                    let _ = sock.stream.shutdown(std::net::Shutdown::Write);
                }
            }
            self.dirty.extend_from_slice(&self.actions.write);
            let resume = std::mem::take(&mut self.actions.read);
            for slot in &resume {
                self.readable(*slot, false);
            }
            self.actions.read = resume;
            if closed_any && self.accept_retry.is_some() {
                self.accept_all();
            }
        }
    }

    /// Acts on due host deadlines, accept retries and the statistics line.
    fn timers(&mut self) {
        let now = self.now();
        if self.host.next_deadline().is_some_and(|d| d <= now) {
            self.host.timers(now, &self.sockets);
            self.apply_actions();
        }
        if self.accept_retry.is_some_and(|t| Instant::now() >= t) {
            self.accept_all();
        }
        if Instant::now() >= self.next_stats {
            self.next_stats = Instant::now() + self.stats_every;
            self.write_stats();
        }
        if self
            .metrics
            .as_ref()
            .is_some_and(|m| Instant::now() >= m.next)
        {
            self.publish();
        }
    }

    /// Writes every connection's ready answers.
    fn flush_dirty(&mut self) {
        // Flushing may read on (a paused connection resumes), which makes
        // more answers: go round until nothing is left to write.
        while !self.dirty.is_empty() {
            let mut dirty = std::mem::take(&mut self.dirty);
            dirty.sort_unstable();
            dirty.dedup();
            for slot in dirty {
                self.flush(slot);
            }
            self.apply_actions();
        }
    }

    fn flush(&mut self, slot: usize) {
        let now = self.now();
        if self.sockets.session_mut(slot).is_some() {
            self.flush_session(slot);
            return;
        }
        if self.sockets.is_tls(slot) {
            self.flush_tls(slot);
            return;
        }
        loop {
            let out = self.host.output(slot);
            if out.is_empty() {
                break;
            }
            let Some(sock) = self.sockets.get_mut(slot) else {
                return;
            };
            match sock.stream.write(out) {
                Ok(n) => self.host.sent(slot, n, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(slot, "write failed: {e}");
                    self.host.failed(slot);
                    return;
                }
            }
        }
        let Some(blocked) = self.host.flushed(slot, now) else {
            return;
        };
        self.want_writable(slot, blocked);
    }

    /// Asks epoll to say when `slot`'s socket is writable, or stops asking.
    fn want_writable(&mut self, slot: usize, blocked: bool) {
        let Some(sock) = self.sockets.get_mut(slot) else {
            return;
        };
        if blocked != sock.writable_interest {
            sock.writable_interest = blocked;
            let interest = if blocked {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let _ = self
                .poll
                .registry()
                .reregister(&mut sock.stream, MioToken(slot), interest);
        }
    }

    fn begin_shutdown(&mut self) {
        info!("shutting down");
        if self.listening {
            let _ = self.poll.registry().deregister(&mut self.listener);
            if let Some(l) = &mut self.plain_listener {
                let _ = self.poll.registry().deregister(l);
            }
            self.listening = false;
        }
        self.host.begin_shutdown();
        self.apply_actions();
        // /readyz says so at once, and systemd.
        self.publish();
        if self.ready_notified {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        }
    }

    fn reload_tls(&mut self) {
        if let Some(c) = &mut self.cluster {
            c.reload_peer_tls();
        }
        let Some(settings) = &self.tls_settings else {
            return;
        };
        match tls::server_config(settings) {
            Ok(config) => {
                self.tls = Some(config);
                info!("TLS certificate, key and client CA reloaded; open connections keep theirs");
            }
            Err(e) => warn!("cannot reload TLS: {e}; keeping the configuration loaded before"),
        }
    }

    /// Reads what a TLS connection's socket holds through rustls into the
    /// host: the handshake first, then the decrypted lines. The host's
    /// pausing holds here as in plaintext: while it gives no space, the
    /// socket is not read (so rustls's buffers stay within
    /// [`tls::CONN_CHARGE`]).
    fn readable_tls(&mut self, slot: usize, hung_up: bool) {
        let now = self.now();
        self.host.resume(slot, now, &self.sockets);
        // What a relayed client sent (decrypted) before this member led
        // and took its connection comes first.
        loop {
            let Some(sock) = self.sockets.get_mut(slot) else {
                return;
            };
            if sock.replay.is_empty() && !sock.replay_eof {
                break;
            }
            let Some(space) = self.host.read_space(slot) else {
                if hung_up {
                    self.host.hung_up(slot);
                }
                return;
            };
            let n = space.len().min(sock.replay.len());
            space[..n].copy_from_slice(&sock.replay[..n]);
            sock.replay.drain(..n);
            let ended = sock.replay.is_empty() && sock.replay_eof;
            if sock.replay.is_empty() {
                sock.replay = Vec::new();
                sock.replay_eof = false;
            }
            if n > 0 {
                self.host.received(slot, n, now, &self.sockets);
            }
            if ended {
                self.host.closed_by_peer(slot, now, &self.sockets);
                return;
            }
        }
        if let Some(sock) = self.sockets.get_mut(slot)
            && sock.fresh
        {
            let mut first = [0u8; 1];
            match sock.stream.peek(&mut first) {
                Ok(1) if !tls::looks_like_tls(&first) => {
                    // Plaintext on the TLS port: say so in the protocol's
                    // words, which a plaintext client can read.
                    debug!(slot, "plaintext on the TLS port: refused");
                    let _ = sock.stream.write(PLAINTEXT_ON_TLS);
                    self.host.failed(slot);
                    return;
                }
                Ok(_) => sock.fresh = false,
                Err(_) => {}
            }
        }
        let mut drained = false;
        loop {
            // What rustls decrypted goes to the host first.
            let mut ended = false;
            let mut paused = true;
            while let Some(space) = self.host.read_space(slot) {
                let Some(tls) = self.sockets.tls_mut(slot) else {
                    return;
                };
                match tls.conn.reader().read(space) {
                    // Ok(0): close_notify; an error: the end of input
                    // without one (or after a fatal alert).
                    Ok(0) => ended = true,
                    Ok(n) => {
                        self.host.received(slot, n, now, &self.sockets);
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => ended = true,
                }
                paused = false;
                break;
            }
            if ended {
                self.host.closed_by_peer(slot, now, &self.sockets);
                break;
            }
            if paused || drained {
                break;
            }
            let Some(sock) = self.sockets.get_mut(slot) else {
                return;
            };
            let Some(tls) = sock.tls.as_deref_mut() else {
                return;
            };
            if tls.eof {
                break;
            }
            let mut stream = ShortRead {
                inner: &mut sock.stream,
                short: false,
            };
            match tls.conn.read_tls(&mut stream) {
                Ok(0) => tls.eof = true,
                // Less than rustls had room for: the socket is drained, and
                // edge-triggered epoll says when more arrives (reading on
                // would cost a system call that finds nothing, as on the
                // plaintext path).
                Ok(_) => drained = stream.short,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!(slot, "TLS connection error: {e}");
                    self.host.failed(slot);
                    return;
                }
            }
            if let Err(e) = tls.conn.process_new_packets() {
                // rustls queued an alert that says why: send it, close.
                let _ = tls.conn.write_tls(&mut sock.stream);
                debug!(slot, "TLS refused: {e}");
                self.host.failed(slot);
                return;
            }
            if !tls.handshaken && !tls.conn.is_handshaking() {
                tls.handshaken = true;
                let identity = tls
                    .conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(tls::certificate_identity);
                debug!(slot, identity = ?identity, "TLS handshake done");
                self.host.engine_mut().stats_mut().incr(Stat::TlsHandshake);
                self.host.set_certificate_identity(slot, identity);
            } else if tls.eof && !tls.handshaken {
                debug!(slot, "TLS handshake cut short");
                self.host.failed(slot);
                return;
            }
            if self
                .sockets
                .tls_mut(slot)
                .is_some_and(|t| t.conn.wants_write())
            {
                self.dirty.push(slot);
            }
        }
        if hung_up {
            self.host.hung_up(slot);
        }
    }

    /// Encrypts `slot`'s ready answers and writes them, with whatever the
    /// handshake has to say.
    fn flush_tls(&mut self, slot: usize) {
        let now = self.now();
        let mut blocked = false;
        loop {
            let out = self.host.output(slot);
            let Some(sock) = self.sockets.get_mut(slot) else {
                return;
            };
            let Some(tls) = sock.tls.as_deref_mut() else {
                return;
            };
            // rustls takes what fits under its buffer limit.
            let took = if out.is_empty() {
                0
            } else {
                tls.conn.writer().write(out).unwrap_or(0)
            };
            while tls.conn.wants_write() {
                match tls.conn.write_tls(&mut sock.stream) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        blocked = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        debug!(slot, "write failed: {e}");
                        self.host.failed(slot);
                        return;
                    }
                }
            }
            if took > 0 {
                self.host.sent(slot, took, now);
            }
            if blocked || took == 0 {
                break;
            }
        }
        let Some(host_blocked) = self.host.flushed(slot, now) else {
            return;
        };
        self.want_writable(slot, blocked || host_blocked);
    }

    fn reload_identities(&mut self) {
        let Some(dir) = &self.identity_dir else {
            return;
        };
        let host = &mut self.host;
        // A cluster member's engine learns identities only through the
        // log: load them beside it, then propose them.
        let mut scratch = Engine::new(dlm_core::engine::Config::DEFAULT);
        let engine = if self.cluster.is_some() {
            &mut scratch
        } else {
            &mut host.engine
        };
        match Identities::load(dir, engine, self.max_data_default, Some(&host.identities)) {
            Ok((ids, warnings)) => {
                for w in warnings {
                    warn!("identity: {w}");
                }
                info!(count = ids.len(), "identities loaded");
                let list: Vec<(String, u64)> = ids
                    .limits()
                    .map(|(n, m)| (n.to_owned(), m as u64))
                    .collect();
                self.host.set_identities(ids);
                if let Some(c) = &mut self.cluster {
                    c.member.set_identities(list, &self.host);
                }
            }
            Err(e) => warn!(
                "cannot read identity directory {}: {e}; keeping the identities loaded before",
                dir.display()
            ),
        }
    }

    fn write_stats(&mut self) {
        let stats = self.host.engine().stats();
        if let Some(m) = &mut self.metrics {
            // Counters only grow on /metrics: fold them in before the reset.
            for (s, v) in stats.iter() {
                if !s.is_gauge() {
                    m.totals.add(s, v);
                }
            }
        }
        self.host.engine_mut().stats_mut().reset_counters();
        match &self.log_file {
            Some(path) => {
                if let Some(line) = statslog::line(SystemTime::now(), &stats) {
                    let written = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .and_then(|mut f| f.write_all(line.as_bytes()));
                    if let Err(e) = written {
                        warn!("cannot write statistics to {}: {e}", path.display());
                    }
                }
            }
            None => {
                let mut body = String::new();
                let _ = stats.write_log_line(&mut body);
                info!(target: "dlm::stats", "{body}");
            }
        }
    }
}

/// A socket read that tells whether it filled the buffer it was given: a
/// short read of a stream socket means nothing more was waiting.
struct ShortRead<'s> {
    inner: &'s mut TcpStream,
    short: bool,
}

impl io::Read for ShortRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_floor_is_nanoseconds() {
        let a = token_floor();
        let b = token_floor();
        assert!(b >= a);
        // 2020-01-01 in nanoseconds.
        assert!(a > 1_577_836_800_000_000_000);
    }
}
