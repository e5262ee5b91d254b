//! Failover: which cluster member to talk to, when to try another, what
//! may be sent again, and when to give up. A sans-I/O state machine like
//! the [lease](super::lease): it never opens a socket, reads a clock or
//! draws a random number of its own. The host passes `now` in, connects
//! where it is told, reports what happened, and sleeps when it is told to;
//! the randomness of the backoff's jitter and of request IDs comes from a
//! seed the host draws once.
//!
//! ```text
//!   host                               Failover (one per client)          Call (one per request)
//!   ────                               ─────────────────────────          ──────────────────────
//!   start(&req, now, timeout) ───────▶ classifies, attaches a RequestID ─▶ deadline, resend rule
//!   poll_connect(&mut call, now) ────▶ Connect{addr, epoch, within}
//!                                      | Wait(until) | GiveUp(error)
//!   connect(addr) ok ────────────────▶ connected(epoch) ─▶ discover first?
//!     {"Action":"Cluster"} answer ───▶ discovered(epoch, view) ─▶ stay, or go to the leader
//!   write call.request(req, now) ...
//!   what happened ───────────────────▶ handle(&mut call, epoch, Outcome, now)
//!                                      ─▶ Accept | Retry | GiveUp(error)
//! ```
//!
//! What it owns, so that no binding writes it again:
//!
//! - **the server list**: parsed once from `"host:port,host:port"`
//!   ([`ServerList`]; the `DLM_SERVER` variable has the same syntax), plus
//!   the members learned from the cluster itself;
//! - **where to go**: the member in use ([`Failover::server`], for logs),
//!   the next one in turn after a failure, and the leader once a member
//!   said who leads. A member learns its cluster's client addresses from
//!   `{"Action":"Cluster"}` (each member's `Client`, PROTOCOL.md section
//!   8): on a connection to a member it has not asked since the last
//!   change, the machine asks for *discovery* first and, if another member
//!   leads, moves there. A follower would relay the client's requests
//!   anyway; going to the leader saves a hop and means that only the
//!   leader's failure, not a follower's, interrupts the client;
//! - **the backoff**: after a failure the next member is tried at once,
//!   once each; beyond that, connections wait [`Config::backoff_min`],
//!   doubling up to [`Config::backoff_max`], each pause between half and
//!   all of that (jitter, so that clients that failed together do not come
//!   back together). An answer resets it;
//! - **the deadline** of each call: the caller's timeout (plus a lock's
//!   wait) from when it started. Every connection and read is given at
//!   most what is left ([`Step::Connect`]'s `within`,
//!   [`Call::remaining`]), a pause that would end past it gives up at
//!   once, and a lock's wait is sent again with only what is left of it;
//! - **the resend rule** ([`Resend`]): a request whose connection failed
//!   after it was written may have been applied. It is sent again only if
//!   applying it twice is harmless: reads; `Lock` (a re-lock by the same
//!   owner keeps its grant and token, and a lost grant answers the truth);
//!   and `Put`, `Erase`, `Unlock` carrying a `RequestID`, which the server
//!   applies once. The machine attaches a fresh one to every `Put`,
//!   `Erase` and `Unlock` in plain framing ([`Failover::start`]); the
//!   release of a held lock's grant ([`Failover::start_release`], for a
//!   lease's release) gets the ID of that grant (`u.<token>`), so a
//!   release asked for again after a failed call is still applied once,
//!   while an `Unlock` a tool sends by name and token is its own request
//!   (a second one answers that the lock is gone). Anything else (a
//!   legacy-framed write to a JackrabbitDLM server, a membership change)
//!   is sent again only if it provably never left: the connection failed
//!   before a byte was written ([`Outcome::NotSent`]);
//! - **the verdict on each outcome**: a refused connection, a connection
//!   closed mid-call, no answer in time, or a member's `NO` saying it
//!   cannot serve now ([`Refusal`]: no leader, not the leader, full,
//!   stopping; never applied) move on or give up; any other answer is the
//!   call's to read. Giving up is [`ErrorKind::Unavailable`]: no member
//!   answered within the timeout.
//!
//! ## Driving it
//!
//! Every binding drives it the same way; the blocking Rust client
//! (`ffi/src/client.rs`) is the reference:
//!
//! 1. Once per client: [`ServerList::parse`] the address(es),
//!    [`Failover::new`] with [`Config`] and 16 random bytes. Keep it behind
//!    the client's lock if calls run on several threads; hold the lock only
//!    around these calls, never across I/O.
//! 2. Per request: `let mut call = failover.start(&req, now, timeout)`.
//!    For a lock's renewal, [`Call::limit`] it to the lease's deadline
//!    ([`Pending::deadline`](super::Pending::deadline)).
//! 3. Take a pooled connection made at [`Failover::epoch`] (drop pooled
//!    connections of any other epoch), or ask [`Failover::poll_connect`]:
//!    connect to `addr` within `within` (and your own connect timeout),
//!    sleep until `Wait`'s instant, or fail with `GiveUp`'s error. A failed
//!    connection is `handle(.., Outcome::ConnectFailed, ..)`.
//! 4. On a new connection, if [`Failover::connected`] says so, send
//!    `{"Action":"Cluster"}` on it first and pass the parsed
//!    [`ClusterView`] (or `None` if the server has no such action) to
//!    [`Failover::discovered`]; if it returns false, close the connection
//!    and go back to 3 (the leader is elsewhere). An I/O failure here is
//!    [`Outcome::NotSent`] for the call.
//! 5. Write [`Call::request`]`(req, now)` (the request with its ID and the
//!    wait that is left), read the answer with at most
//!    [`Call::remaining`] as the time limit, and report:
//!    [`Outcome::NotSent`] if the write failed before its first byte went
//!    out, `Closed` if the connection failed after, `TimedOut`, or
//!    `Refused(r)` / `Answered` for an answer ([`Refusal::of`] tells
//!    which). On [`Verdict::Accept`] read the answer as usual (the
//!    [`answer`](super::answer) readers, the lease); on `Retry` go back
//!    to 3; on `GiveUp` return its error.
//!
//! The async clients (Node over WebAssembly, async Rust, Go) drive the
//! same calls from their event loops: steps 3 to 5 are one task per
//! request, `Wait` is a timer, and nothing here blocks.
//!
//! ## What a client sees of a failover
//!
//! When the leader fails, its connections (and those followers relayed to
//! it) close: calls in flight see [`Outcome::Closed`] and are sent again
//! to the next member, which holds them until a new leader is elected and
//! then relays them (or answers them itself if it is elected). A lock's
//! wait queued on the failed leader is queued again on the new one with
//! what is left of its wait: the order of waiters is kept within a
//! leader's term, not across it. A held lock is extended by its token
//! through the new leader; see the [lease](super::lease) for what a holder
//! may assume meanwhile.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::errors::{Error, ErrorKind};
use crate::protocol::json::{JsonError, Scanner, Value};
use crate::protocol::{
    ClusterOp, Command, Framing, Message, Request, Response, Status, Token, parse_u64,
};
use crate::time::{Instant, Ttl};

/// Most servers a list may name, and most members learned from a cluster.
pub const MAX_SERVERS: usize = 64;

/// Longest `host:port` accepted, in bytes.
pub const MAX_ADDRESS: usize = 255;

fn invalid(why: &'static str) -> Error<'static> {
    Error::text(ErrorKind::InvalidArgument, why)
}

/// Checks one `host:port`: a host (a name, an IPv4 address or a bracketed
/// IPv6 one, of ASCII letters, digits and `.-_[]:%`), a colon, a port from
/// 1 to 65535. What passes needs no escaping in JSON.
pub fn check_address(a: &str) -> Result<(), Error<'static>> {
    if a.len() > MAX_ADDRESS {
        return Err(invalid("a server address is longer than 255 bytes"));
    }
    if !a
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-_[]:%".contains(&b))
    {
        return Err(invalid(
            "a server address may hold only letters, digits and .-_[]:%",
        ));
    }
    let Some((host, port)) = a.rsplit_once(':') else {
        return Err(invalid("a server address is not host:port"));
    };
    let port_ok = !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && parse_u64(port.as_bytes()).is_ok_and(|p| (1..=65535).contains(&p));
    if !port_ok {
        return Err(invalid("a server address has no port from 1 to 65535"));
    }
    let bracketed = host.len() > 2 && host.starts_with('[') && host.ends_with(']');
    if host.is_empty() || (host.contains(':') && !bracketed) {
        return Err(invalid(
            "a server address has no host (write IPv6 addresses as [addr]:port)",
        ));
    }
    Ok(())
}

/// The servers a client was given: one `host:port`, or several separated
/// by commas (`"10.0.0.1:37373, 10.0.0.2:37373"`; spaces around entries
/// and empty entries are ignored, duplicates kept once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerList {
    addrs: Vec<String>,
}

impl ServerList {
    /// Parses a list; [`ErrorKind::InvalidArgument`] says what is wrong.
    pub fn parse(text: &str) -> Result<Self, Error<'static>> {
        Self::from_addresses(text.split(','))
    }

    /// A list of single addresses (each `host:port`).
    pub fn from_addresses<S: AsRef<str>>(
        addrs: impl IntoIterator<Item = S>,
    ) -> Result<Self, Error<'static>> {
        let mut list: Vec<String> = Vec::new();
        for a in addrs {
            let a = a.as_ref().trim();
            if a.is_empty() {
                continue;
            }
            check_address(a)?;
            if !list.iter().any(|x| x == a) {
                if list.len() == MAX_SERVERS {
                    return Err(invalid("more than 64 servers"));
                }
                list.push(a.into());
            }
        }
        if list.is_empty() {
            return Err(invalid("no server address given"));
        }
        Ok(Self { addrs: list })
    }

    /// The addresses, in the order given.
    pub fn as_slice(&self) -> &[String] {
        &self.addrs
    }

    /// How many there are (at least one).
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Always false: a list names at least one server.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }
}

/// A `RequestID` (PROTOCOL.md section 8): makes a `Put`, `Erase` or
/// `Unlock` apply once however often it is sent. At most 40 ASCII bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId {
    len: u8,
    buf: [u8; 40],
}

impl RequestId {
    fn from_bytes(parts: &[&[u8]]) -> Self {
        let mut id = Self {
            len: 0,
            buf: [0; 40],
        };
        for p in parts {
            for &b in *p {
                if usize::from(id.len) < id.buf.len() {
                    id.buf[usize::from(id.len)] = b;
                    id.len += 1;
                }
            }
        }
        id
    }

    /// The ID of the release of the grant `token`: every `Unlock` of that
    /// grant by its owner is the same intent, so it is applied once even
    /// when asked for again after a call that failed.
    pub fn for_unlock(token: Token) -> Self {
        let mut digits = [0u8; 20];
        let n = decimal(token.0, &mut digits);
        Self::from_bytes(&[b"u.", &digits[20 - n..]])
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written into it.
        core::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.as_str())
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writes `n` in decimal at the end of `out`; returns how many digits.
fn decimal(mut n: u64, out: &mut [u8; 20]) -> usize {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return out.len() - i;
        }
    }
}

/// Makes [`RequestId`]s: a random prefix (from the host's seed, 22
/// URL-safe characters for 128 bits) and a counter, so that no two calls,
/// of this client or any other, share one, without a random draw per call.
#[derive(Clone, Debug)]
pub struct RequestIds {
    prefix: [u8; 22],
    next: u64,
}

impl RequestIds {
    /// A generator seeded with 16 random bytes.
    pub fn new(seed: [u8; 16]) -> Self {
        const URL_SAFE: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bits = u128::from_le_bytes(seed);
        let mut prefix = [0u8; 22];
        for (i, c) in prefix.iter_mut().enumerate() {
            *c = URL_SAFE[((bits >> (6 * i)) & 63) as usize];
        }
        Self { prefix, next: 1 }
    }

    /// The next ID.
    pub fn next_id(&mut self) -> RequestId {
        let mut digits = [0u8; 20];
        let n = decimal(self.next, &mut digits);
        self.next = self.next.wrapping_add(1);
        RequestId::from_bytes(&[&self.prefix, b".", &digits[20 - n..]])
    }
}

/// Whether a request may be sent again after its connection failed once
/// it may have been written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resend {
    /// Applying it twice is harmless (a read, a `Lock`), or the server
    /// applies it once (it carries a `RequestID`).
    Always,
    /// Only if it provably never left ([`Outcome::NotSent`]).
    IfUnsent,
}

impl Resend {
    /// The rule for `req`, as it will be sent.
    pub fn of(req: &Request<'_>) -> Self {
        match req.command {
            Command::Get { .. }
            | Command::TestLock { .. }
            | Command::Version
            | Command::Stats
            | Command::Cluster(ClusterOp::Status)
            // A re-lock by the same owner keeps its grant (same token) and
            // an extension by token never acquires: a second application
            // answers the truth of the moment, never a second grant.
            | Command::Lock { .. }
            // Likewise a `LockAll` whose names the owner already holds,
            // every one of them, is a re-lock of them all.
            | Command::LockAll { .. }
            // An extension of a semaphore's or read/write lock's hold by
            // its token never acquires. A new acquisition is a hold of its
            // own each time: sent twice, it could hold twice (the second
            // until its TTL runs out), so only if it never left.
            | Command::Acquire { token: Some(_), .. } => Self::Always,
            Command::Put { .. } | Command::Erase { .. } | Command::Unlock { .. }
                if req.request_id.is_some() =>
            {
                Self::Always
            }
            _ => Self::IfUnsent,
        }
    }
}

/// A member's `NO` that says it cannot serve now: the request was not
/// applied, and another try (there or elsewhere) may work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `no leader`: the member found no leader to relay to (an election).
    NoLeader,
    /// `not the leader`: a member that has just lost the leadership.
    NotLeader,
    /// `server full`: too many connections.
    Full,
    /// `server shutting down`.
    Stopping,
}

impl Refusal {
    /// The refusal `r` is, if it is one.
    pub fn of(r: &Response<'_>) -> Option<Self> {
        let (Status::No, Some(Message::Text(why))) = (r.status, r.error) else {
            return None;
        };
        [
            ("no leader", Self::NoLeader),
            ("not the leader", Self::NotLeader),
            ("server full", Self::Full),
            ("server shutting down", Self::Stopping),
        ]
        .into_iter()
        .find(|(prefix, _)| why.starts_with(prefix))
        .map(|(_, r)| r)
    }

    /// The refusal an answer line is, if it is one, without disturbing the
    /// line (for hosts that hand the raw line on, as `Stats` readers do).
    pub fn of_line(line: &[u8]) -> Option<Self> {
        // Members write these in plain JSON whatever the client's framing.
        let start = line.iter().position(|b| !b.is_ascii_whitespace())?;
        if !line[start..].starts_with(b"{\"Status\":\"NO\"") {
            return None;
        }
        let mut copy = Vec::from(line);
        let (_, r) = Response::parse(&mut copy).ok()?;
        Self::of(&r)
    }

    /// What it says.
    pub const fn text(self) -> &'static str {
        match self {
            Self::NoLeader => "no leader: the cluster cannot serve now",
            Self::NotLeader => "the member is no longer the leader",
            Self::Full => "server full: too many connections",
            Self::Stopping => "server shutting down",
        }
    }
}

/// One member as `{"Action":"Cluster"}` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// Its member ID.
    pub id: u64,
    /// The address it serves clients on (`Client`), if it said.
    pub client: Option<String>,
}

/// What a client needs of the `Cluster` answer: who leads, and where each
/// member serves clients.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// A single server, not a cluster (`{"Mode":"single"}`).
    pub single: bool,
    /// The member that answered.
    pub node: Option<u64>,
    /// The leader, if there is one.
    pub leader: Option<u64>,
    /// The term.
    pub term: u64,
    /// The members (at most [`MAX_SERVERS`]).
    pub members: Vec<MemberView>,
}

impl ClusterView {
    /// Reads the `Cluster` object of an answer (its JSON text,
    /// [`Response::cluster`]). Members without a valid `Client` address
    /// are kept without one.
    pub fn parse(json: &str) -> Result<Self, Error<'static>> {
        let bad = |_| {
            Error::text(
                ErrorKind::Protocol,
                "the Cluster answer is not the expected JSON object",
            )
        };
        let mut text = Vec::from(json.as_bytes());
        let mut scanner = Scanner::new(&mut text);
        scanner.begin_object().map_err(bad)?;
        let mut view = Self::default();
        let number = |v: Value, buf: &[u8]| match v {
            Value::Num(span) => parse_u64(span.of(buf)).ok(),
            _ => None,
        };
        while let Some((key, value)) = scanner.next_member().map_err(bad)? {
            let key: Vec<u8> = Vec::from(scanner.bytes(key));
            match (key.as_slice(), value) {
                (b"Mode", Value::Str(s)) => view.single = scanner.bytes(s) == b"single",
                (b"Node", v) => view.node = number(v, scanner.whole()),
                (b"Leader", v) => {
                    view.leader = number(v, scanner.whole()).filter(|l| *l != 0);
                }
                (b"Term", v) => view.term = number(v, scanner.whole()).unwrap_or(0),
                (b"Members", Value::Array(span)) => {
                    let members = &mut view.members;
                    scanner
                        .for_each_element(span, |sub, element| {
                            let Value::Object(obj) = element else {
                                return Ok::<(), JsonError>(());
                            };
                            let (mut id, mut client) = (None, None);
                            sub.for_each_nested(obj, |k, v, buf| {
                                match (k, v) {
                                    (b"ID", v) => id = number(v, buf),
                                    (b"Client", Value::Str(s)) => {
                                        client = core::str::from_utf8(s.of(buf))
                                            .ok()
                                            .filter(|a| check_address(a).is_ok())
                                            .map(String::from);
                                    }
                                    _ => {}
                                }
                                Ok::<(), JsonError>(())
                            })?;
                            if let Some(id) = id
                                && members.len() < MAX_SERVERS
                            {
                                members.push(MemberView { id, client });
                            }
                            Ok(())
                        })
                        .map_err(bad)?;
                }
                _ => {}
            }
        }
        scanner.finish().map_err(bad)?;
        Ok(view)
    }

    /// The client address of the leader, if known.
    pub fn leader_address(&self) -> Option<&str> {
        let leader = self.leader?;
        self.members
            .iter()
            .find(|m| m.id == leader)
            .and_then(|m| m.client.as_deref())
    }
}

/// The failover's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The first pause once every known member failed in a row.
    pub backoff_min: Ttl,
    /// The longest pause.
    pub backoff_max: Ttl,
    /// One call gives up after this many failed connections per known
    /// server (at least 1), even with time left: a client told about
    /// servers that are all down says so quickly.
    pub connect_rounds: u32,
    /// Ask new connections for the cluster and go to its leader. Off for
    /// legacy framing (JackrabbitDLM has no `Cluster` action).
    pub discover: bool,
}

impl Config {
    /// 25 ms doubling to 1 s, 3 rounds, discovery on.
    pub const DEFAULT: Self = Self {
        backoff_min: Ttl::from_millis(25),
        backoff_max: Ttl::from_millis(1000),
        connect_rounds: 3,
        discover: true,
    };
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What became of one attempt of a call, as the host saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Connecting failed (refused, unreachable, timed out): nothing sent.
    ConnectFailed,
    /// The connection failed before any byte of the request was written
    /// (or while asking for the cluster, before the request).
    NotSent,
    /// The connection failed (closed, reset) after the request was
    /// written, or partly written, before a whole answer came back: it may
    /// have been applied.
    Closed,
    /// No whole answer within the call's time limit: it may have been
    /// applied.
    TimedOut,
    /// A member refused it without applying it ([`Refusal::of`]).
    Refused(Refusal),
    /// Any other answer: the call's to read.
    Answered,
}

/// What the host does after [`Failover::handle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Read the answer: the call is over.
    Accept,
    /// Send it again: back to [`Failover::poll_connect`].
    Retry,
    /// Fail the call with this error.
    GiveUp(Error<'static>),
}

/// What the host does next to get a connection for a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// Connect to `addr`, taking at most `within` (and the host's own
    /// connect timeout); remember `epoch` for [`Failover::connected`] and
    /// [`Failover::handle`], and pool the connection under it.
    Connect {
        /// `host:port`.
        addr: &'a str,
        /// The epoch the connection belongs to.
        epoch: u64,
        /// What is left of the call's time.
        within: Ttl,
    },
    /// Sleep until this instant (backoff), then ask again.
    Wait(Instant),
    /// Fail the call with this error.
    GiveUp(Error<'static>),
}

/// Why an attempt failed, for the error a call gives up with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    Connect,
    NotSent,
    Closed,
    TimedOut,
    Refused(Refusal),
}

impl Failure {
    const fn text(self) -> &'static str {
        match self {
            Self::Connect => "no server could be connected to",
            Self::NotSent => "the connection failed before the request was sent",
            Self::Closed => "the connection closed before the answer",
            Self::TimedOut => "no answer within the timeout",
            Self::Refused(r) => r.text(),
        }
    }
}

/// One request's passage through the failover: its deadline, its resend
/// rule and request ID, what went wrong so far. Made by
/// [`Failover::start`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    deadline: Instant,
    wait_until: Option<Instant>,
    rule: Resend,
    request_id: Option<RequestId>,
    connect_failures: u32,
    maybe_sent: bool,
    last: Option<Failure>,
    attempts: u32,
}

impl Call {
    /// When the call must be over.
    pub const fn deadline(&self) -> Instant {
        self.deadline
    }

    /// What is left of its time at `now`: the most a connection or a read
    /// may take.
    pub const fn remaining(&self, now: Instant) -> Ttl {
        self.deadline.saturating_since(now)
    }

    /// Ends the call by `at` at the latest (a lock's renewal, by the
    /// lease's deadline: past it, an extension is worth nothing).
    pub fn limit(&mut self, at: Instant) {
        self.deadline = self.deadline.min(at);
        if let Some(w) = &mut self.wait_until {
            *w = (*w).min(at);
        }
    }

    /// Whether it may be sent again after it may have been written.
    pub const fn resend(&self) -> Resend {
        self.rule
    }

    /// The `RequestID` it carries, if any.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_ref().map(RequestId::as_str)
    }

    /// How many times it was sent, or tried to be, so far.
    pub const fn attempts(&self) -> u32 {
        self.attempts
    }

    /// `req` as this attempt sends it at `now`: with the call's
    /// `RequestID`, and a lock's `Wait` cut to what is left of it (none
    /// left: one attempt).
    pub fn request<'r>(&'r self, mut req: Request<'r>, now: Instant) -> Request<'r> {
        if req.request_id.is_none()
            && let Some(id) = &self.request_id
        {
            req.request_id = Some(id.as_str());
        }
        if let (
            Command::Lock { wait, .. }
            | Command::Acquire { wait, .. }
            | Command::LockAll { wait, .. },
            Some(until),
        ) = (&mut req.command, self.wait_until)
        {
            let left = until.saturating_since(now);
            *wait = (!left.is_zero()).then_some(left);
        }
        req
    }
}

/// A server the failover knows: given, or learned from the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Known {
    addr: String,
    /// Its member ID, once a `Cluster` answer named it.
    member: Option<u64>,
}

/// The failover state of one client; see the [module documentation](self).
#[derive(Clone, Debug)]
pub struct Failover {
    /// The servers given (the first `seeds`), then the members learned.
    servers: Vec<Known>,
    seeds: usize,
    /// The one in use.
    current: usize,
    /// Bumped whenever `current` changes: connections of another epoch are
    /// to a server no longer in use.
    epoch: u64,
    /// Whether the member in use was asked for the cluster since chosen.
    discovered: bool,
    leader: Option<u64>,
    /// Failed attempts in a row, of any call.
    failures: u32,
    /// What went wrong last, of any call.
    last: Option<Failure>,
    /// No connection before this (the backoff).
    not_before: Instant,
    rng: u64,
    ids: RequestIds,
    config: Config,
}

impl Failover {
    /// The failover over `servers`, seeded with 16 random bytes (the
    /// jitter and the request IDs come from them).
    pub fn new(servers: ServerList, config: Config, seed: [u8; 16]) -> Self {
        let lo = u64::from_le_bytes([
            seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7],
        ]);
        let hi = u64::from_le_bytes([
            seed[8], seed[9], seed[10], seed[11], seed[12], seed[13], seed[14], seed[15],
        ]);
        let seeds = servers.addrs.len();
        Self {
            servers: servers
                .addrs
                .into_iter()
                .map(|addr| Known { addr, member: None })
                .collect(),
            seeds,
            current: 0,
            epoch: 0,
            discovered: false,
            leader: None,
            failures: 0,
            last: None,
            not_before: Instant::ZERO,
            rng: (lo ^ hi.rotate_left(17)) | 1,
            ids: RequestIds::new(seed),
            config: Config {
                connect_rounds: config.connect_rounds.max(1),
                backoff_max: config.backoff_max.max(config.backoff_min),
                ..config
            },
        }
    }

    /// The server in use (`host:port`): what logs should say.
    pub fn server(&self) -> &str {
        &self.servers[self.current].addr
    }

    /// Every server known: those given, then the members learned.
    pub fn servers(&self) -> impl Iterator<Item = &str> {
        self.servers.iter().map(|k| k.addr.as_str())
    }

    /// The current epoch: connections made at another are to a server no
    /// longer in use.
    pub const fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The leader's member ID, as last learned.
    pub const fn leader(&self) -> Option<u64> {
        self.leader
    }

    /// The settings.
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// Starts a call of `req` at `now`, to be over by `now + timeout` (plus
    /// a lock's wait). A `Put`, `Erase` or `Unlock` in plain framing gets a
    /// fresh `RequestID` here unless it has one; send it with
    /// [`Call::request`].
    pub fn start(&mut self, req: &Request<'_>, now: Instant, timeout: Ttl) -> Call {
        self.start_call(req, now, timeout, false)
    }

    /// As [`start`](Self::start), for the release of a held lock's grant
    /// (a lease's [`Action::Release`](super::Action::Release)): an
    /// `Unlock` fenced to a token gets the ID of that grant
    /// ([`RequestId::for_unlock`]), the same for every release of it, so
    /// that one asked for again after a call that failed is still applied
    /// once and reads as released.
    pub fn start_release(&mut self, req: &Request<'_>, now: Instant, timeout: Ttl) -> Call {
        self.start_call(req, now, timeout, true)
    }

    fn start_call(&mut self, req: &Request<'_>, now: Instant, timeout: Ttl, release: bool) -> Call {
        let mut request_id = None;
        if req.framing == Framing::Plain && req.request_id.is_none() {
            match req.command {
                Command::Unlock {
                    token: Some(token), ..
                } if release => request_id = Some(RequestId::for_unlock(token)),
                Command::Put { .. } | Command::Erase { .. } | Command::Unlock { .. } => {
                    request_id = Some(self.ids.next_id());
                }
                _ => {}
            }
        }
        let wait = match req.command {
            Command::Lock {
                wait: Some(w),
                token: None,
                ..
            }
            | Command::Acquire {
                wait: Some(w),
                token: None,
                ..
            }
            | Command::LockAll { wait: Some(w), .. }
                if !w.is_zero() =>
            {
                Some(w)
            }
            _ => None,
        };
        let rule = if request_id.is_some() {
            Resend::Always
        } else {
            Resend::of(req)
        };
        Call {
            deadline: now
                .saturating_add(wait.unwrap_or(Ttl::ZERO))
                .saturating_add(timeout),
            wait_until: wait.map(|w| now.saturating_add(w)),
            rule,
            request_id,
            connect_failures: 0,
            maybe_sent: false,
            last: None,
            attempts: 0,
        }
    }

    /// A call that only connects (and discovers), to be over by
    /// `now + timeout`: for a client that opens a connection up front.
    pub fn start_connect(&mut self, now: Instant, timeout: Ttl) -> Call {
        Call {
            deadline: now.saturating_add(timeout),
            wait_until: None,
            rule: Resend::Always,
            request_id: None,
            connect_failures: 0,
            maybe_sent: false,
            last: None,
            attempts: 0,
        }
    }

    /// What to do to get a connection for `call` at `now`.
    pub fn poll_connect(&mut self, call: &mut Call, now: Instant) -> Step<'_> {
        if now >= call.deadline {
            return Step::GiveUp(self.give_up(call));
        }
        if self.not_before > now {
            if self.not_before >= call.deadline {
                // The pause would end past the deadline: say so now.
                return Step::GiveUp(self.give_up(call));
            }
            return Step::Wait(self.not_before);
        }
        Step::Connect {
            addr: &self.servers[self.current].addr,
            epoch: self.epoch,
            within: call.remaining(now),
        }
    }

    /// A connection made for `epoch` is up. Returns whether to ask it for
    /// the cluster (`{"Action":"Cluster"}`) before the call's request, and
    /// pass the answer to [`discovered`](Self::discovered).
    pub fn connected(&mut self, epoch: u64) -> bool {
        self.config.discover && epoch == self.epoch && !self.discovered
    }

    /// What the member reached at `epoch` said of the cluster: its view,
    /// or `None` if it could not say (no such action). Learns the members'
    /// client addresses and the leader. Returns whether to keep using this
    /// connection: false if the leader is another member (the epoch moved
    /// to it) or the connection is of a past epoch.
    pub fn discovered(&mut self, epoch: u64, view: Option<&ClusterView>) -> bool {
        if epoch != self.epoch {
            return false;
        }
        self.discovered = true;
        let Some(view) = view.filter(|v| !v.single) else {
            return true;
        };
        self.learn(view);
        let Some(leader) = view.leader else {
            return true;
        };
        match self.servers.iter().position(|k| k.member == Some(leader)) {
            Some(i) if i != self.current => {
                self.current = i;
                self.epoch += 1;
                false
            }
            _ => true,
        }
    }

    /// Learns the members and their client addresses from `view`; the
    /// server in use stays known even if the view does not name it.
    fn learn(&mut self, view: &ClusterView) {
        let in_use = self.servers[self.current].addr.clone();
        self.servers.truncate(self.seeds);
        for k in &mut self.servers {
            k.member = None;
        }
        for m in &view.members {
            let Some(addr) = &m.client else { continue };
            if let Some(k) = self.servers.iter_mut().find(|k| &k.addr == addr) {
                k.member = Some(m.id);
            } else if self.servers.len() < self.seeds + MAX_SERVERS {
                self.servers.push(Known {
                    addr: addr.clone(),
                    member: Some(m.id),
                });
            }
        }
        self.current = match self.servers.iter().position(|k| k.addr == in_use) {
            Some(i) => i,
            None => {
                self.servers.push(Known {
                    addr: in_use,
                    member: None,
                });
                self.servers.len() - 1
            }
        };
        self.leader = view.leader;
    }

    /// Reports what became of an attempt of `call` on a connection of
    /// `epoch`, at `now`; says what to do next.
    pub fn handle(
        &mut self,
        call: &mut Call,
        epoch: u64,
        outcome: Outcome,
        now: Instant,
    ) -> Verdict {
        let failure = match outcome {
            Outcome::Answered => {
                self.failures = 0;
                call.attempts += 1;
                return Verdict::Accept;
            }
            Outcome::Refused(r) => {
                call.attempts += 1;
                Failure::Refused(r)
            }
            Outcome::ConnectFailed => {
                call.connect_failures += 1;
                Failure::Connect
            }
            Outcome::NotSent => Failure::NotSent,
            Outcome::Closed => {
                call.attempts += 1;
                call.maybe_sent = true;
                Failure::Closed
            }
            Outcome::TimedOut => {
                call.attempts += 1;
                call.maybe_sent = true;
                Failure::TimedOut
            }
        };
        call.last = Some(failure);
        self.failed(epoch, failure, now);
        if call.maybe_sent && call.rule == Resend::IfUnsent {
            return Verdict::GiveUp(Error::text(
                ErrorKind::Unavailable,
                "the connection failed after the request was sent: it may have been \
                 applied, and without a request ID it is not sent again",
            ));
        }
        let cap = self
            .config
            .connect_rounds
            .saturating_mul(u32::try_from(self.servers.len()).unwrap_or(u32::MAX));
        if failure == Failure::TimedOut || call.connect_failures >= cap || now >= call.deadline {
            return Verdict::GiveUp(self.give_up(call));
        }
        Verdict::Retry
    }

    /// The error `call` gives up with: what went wrong with it last, or
    /// with another call if nothing did with it (it never had its turn).
    fn give_up(&self, call: &Call) -> Error<'static> {
        let why = call.last.or(self.last).unwrap_or(Failure::TimedOut);
        Error::text(ErrorKind::Unavailable, why.text())
    }

    /// A failure of the server in use at `epoch`: move on (unless another
    /// call already did), and count it for the backoff.
    fn failed(&mut self, epoch: u64, failure: Failure, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        self.last = Some(failure);
        if epoch == self.epoch {
            self.discovered = false;
            // A member without a leader is alive and relays to the next
            // one as soon as it is elected: stay. Anything else: the next.
            if failure != Failure::Refused(Refusal::NoLeader) {
                self.current = (self.current + 1) % self.servers.len();
                self.epoch += 1;
            }
        }
        let pause = self.backoff();
        self.not_before = self.not_before.max(now.saturating_add(pause));
    }

    /// The pause before the next connection: none while each server has
    /// had one try since the last answer; then doubling, with jitter.
    fn backoff(&mut self) -> Ttl {
        let n = u32::try_from(self.servers.len()).unwrap_or(u32::MAX);
        if self.failures <= n {
            return Ttl::ZERO;
        }
        let doublings = (self.failures - n - 1).min(20);
        let full = self
            .config
            .backoff_min
            .as_millis()
            .saturating_mul(1 << doublings)
            .min(self.config.backoff_max.as_millis());
        let half = full / 2;
        Ttl::from_millis(half + self.random() % (full - half + 1))
    }

    /// xorshift64*: jitter needs spread, not secrecy.
    fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests;
