//! `dlm_failover`: dlm-core's failover machine for programs that do their
//! own I/O (over `dlm_wire` and `dlm_lease`): which cluster member to talk
//! to, when to try another, how long to pause (backoff with jitter), what
//! may be sent again, and when to give up. It never opens a socket, reads
//! a clock or sleeps: the caller connects where it is told, sleeps when it
//! is told to and reports what happened. Every rule is dlm-core's
//! (`core/src/client/failover.rs`, "Driving it"); nothing is decided here.
//!
//! ```text
//!   dlm_failover_start(req) / _start_lease(lease) ─▶ dlm_failover_call
//!   loop:
//!     dlm_failover_poll_connect ─▶ CONNECT addr (epoch, within) | WAIT until | error: give up
//!       (a pooled connection of dlm_failover_epoch may be used instead)
//!     connect failed            ─▶ dlm_failover_handle(DLM_OUTCOME_CONNECT_FAILED)
//!     dlm_failover_connected?   ─▶ send dlm_failover_discovery_line, then
//!                                  dlm_failover_discovered(answer): stay, or back to the loop
//!     dlm_failover_call_write   ─▶ the line for this attempt (request ID, wait left)
//!     dlm_failover_handle(outcome, answer) ─▶ accept | retry | error: give up
//! ```
//!
//! A `dlm_failover` is **not thread-safe**: serialise calls on it (a mutex
//! held only around them, never across I/O). A `dlm_failover_call` belongs
//! to one request and is used by one thread at a time. Times are
//! milliseconds on the caller's monotonic clock, the same for every call
//! (and for the leases).

use std::ffi::c_char;

use super::lease::dlm_lease;
use super::wire::{
    Checked, call_of, dlm_call, dlm_request, line, request_of, stored_value, wire_ref,
};
use super::{Fail, boundary, dlm_status, non_null, put, quiet, text, write_text};
use crate::wire::{dlm_wire, write_line};
use dlm_core::client::failover::{
    self, Call, ClusterView, Failover, Outcome, Refusal, ServerList, Step, Verdict,
};
use dlm_core::client::{Action, Error as CoreError, Pending};
use dlm_core::protocol::{ClusterOp, Request, Response, SessionBind, Shape, Status};
use dlm_core::time::{Instant, Ttl};

/// The failover state of one client: the servers given and learned, the
/// one in use, the backoff. Made by `dlm_failover_new`; not thread-safe.
pub struct dlm_failover {
    failover: Failover,
}

/// One request's passage through the failover (its deadline, resend rule
/// and request ID), made by `dlm_failover_start`, `dlm_failover_start_lease`
/// or `dlm_failover_start_connect`; freed with `dlm_failover_call_free`.
pub struct dlm_failover_call {
    call: Call,
    what: What,
}

/// What a call sends, owned, so that each attempt writes it again.
enum What {
    /// A `dlm_request`.
    Request(Owned),
    /// A lease's extension or release of the lock `name`.
    Lease { pending: Pending, name: String },
    /// Nothing: a call that only connects.
    Connect,
}

/// A `dlm_request`'s checked fields, owned; a put's value already stored
/// as text (encoded once, sent as is by every attempt).
struct Owned {
    call: dlm_call,
    flags: u32,
    name: String,
    text: String,
    ttl: Ttl,
    wait: Ttl,
    token: u64,
    revision: u64,
    shape: Option<Shape>,
    session: Option<SessionBind>,
    names: Vec<String>,
    readers: dlm::Readers,
    readers_joined: Option<String>,
}

impl Owned {
    fn of(c: &Checked<'_>, text: Option<String>) -> Self {
        Self {
            call: c.call,
            flags: c.flags,
            name: c.name.to_owned(),
            text: text.unwrap_or_default(),
            ttl: c.ttl,
            wait: c.wait,
            token: c.token,
            revision: c.revision,
            shape: c.shape,
            session: c.session,
            names: c.names.iter().map(|n| (*n).to_owned()).collect(),
            readers: c.readers.clone(),
            readers_joined: c.readers_joined.clone(),
        }
    }

    fn checked(&self) -> Checked<'_> {
        Checked {
            call: self.call,
            flags: self.flags,
            name: &self.name,
            value: &[],
            ttl: self.ttl,
            wait: self.wait,
            token: self.token,
            revision: self.revision,
            shape: self.shape,
            session: self.session,
            names: self.names.iter().map(String::as_str).collect(),
            readers: self.readers.clone(),
            readers_joined: self.readers_joined.clone(),
        }
    }
}

/// The failover's settings (`dlm_failover_new`); zero-initialise it for
/// dlm-core's defaults, or set what differs.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct dlm_failover_config {
    /// The first pause once every known member failed in a row, in
    /// milliseconds (0: 25).
    pub backoff_min_ms: u64,
    /// The longest pause, in milliseconds (0: 1000).
    pub backoff_max_ms: u64,
    /// A call gives up after this many failed connections per known server
    /// (0: 3).
    pub connect_rounds: u32,
    /// Non-zero: do not ask new connections who leads (for JackrabbitDLM
    /// servers, which have no `Cluster` action).
    pub no_discovery: u32,
}

/// What `dlm_failover_poll_connect` tells the caller to do.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum dlm_failover_step_kind {
    /// Connect to the address written, within `within_ms` (and the
    /// caller's own connect timeout); the connection belongs to `epoch`.
    DLM_FAILOVER_CONNECT = 1,
    /// Sleep until `until_ms` (backoff), then ask again.
    DLM_FAILOVER_WAIT = 2,
}

/// The step `dlm_failover_poll_connect` says to take.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct dlm_failover_step {
    /// Connect or wait.
    pub kind: dlm_failover_step_kind,
    /// The epoch a new connection belongs to (`DLM_FAILOVER_CONNECT`).
    pub epoch: u64,
    /// What is left of the call's time (`DLM_FAILOVER_CONNECT`).
    pub within_ms: u64,
    /// Until when to sleep (`DLM_FAILOVER_WAIT`).
    pub until_ms: u64,
}

/// What became of one attempt of a call (`dlm_failover_handle`'s
/// `outcome`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum dlm_failover_outcome {
    /// Connecting failed (refused, unreachable, timed out): nothing sent.
    DLM_OUTCOME_CONNECT_FAILED = 1,
    /// The connection failed before any byte of the request was written
    /// (or while asking it who leads).
    DLM_OUTCOME_NOT_SENT = 2,
    /// The connection failed after the request was (perhaps partly)
    /// written, before a whole answer: it may have been applied.
    DLM_OUTCOME_CLOSED = 3,
    /// No whole answer within the call's time: it may have been applied.
    DLM_OUTCOME_TIMED_OUT = 4,
    /// An answer line came (pass it): a member's refusal to serve now (no
    /// leader, not the leader, full, stopping) is told apart here.
    DLM_OUTCOME_ANSWERED = 5,
}

/// Longest `host:port` the failover hands out, in bytes; a buffer of one
/// more byte always holds it (with its NUL).
pub const DLM_FAILOVER_ADDRESS_MAX: usize = 255;
const _: () = assert!(DLM_FAILOVER_ADDRESS_MAX == failover::MAX_ADDRESS);

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// The failure a call gives up with.
fn give_up(e: &CoreError<'static>) -> Fail {
    Fail::from(dlm::Error::from(*e))
}

/// Runs `f` on the failover behind `fo`, recording the outcome for this
/// thread.
///
/// # Safety
/// `fo` must be NULL or a live failover not in use by another thread.
unsafe fn with(
    fo: *mut dlm_failover,
    f: impl FnOnce(&mut Failover) -> Result<dlm_status, Fail>,
) -> dlm_status {
    boundary(fo.cast_const(), || {
        // SAFETY: per the caller's contract.
        let fo = unsafe { fo.as_mut() }.ok_or_else(|| Fail::null("the failover"))?;
        f(&mut fo.failover)
    })
}

/// Borrows the call behind `call`.
///
/// # Safety
/// `call` must be NULL or a live call not in use by another thread.
unsafe fn call_mut<'a>(call: *mut dlm_failover_call) -> Result<&'a mut dlm_failover_call, Fail> {
    // SAFETY: per the caller's contract.
    unsafe { call.as_mut() }.ok_or_else(|| Fail::null("the call"))
}

/// Hands a new call to the caller.
///
/// # Safety
/// `out` must be non-null and writable.
unsafe fn hand_out(out: *mut *mut dlm_failover_call, call: Call, what: What) {
    // SAFETY: per the caller's contract.
    unsafe { *out = Box::into_raw(Box::new(dlm_failover_call { call, what })) };
}

/// Makes the failover over `servers` (`"host:port"`, or several separated
/// by commas, as `DLM_SERVER` holds them), with `config` (NULL for the
/// defaults) and 16 random bytes at `seed` (the backoff's jitter and the
/// request IDs come from them; draw them from the system's generator).
/// `DLM_ERR_INVALID_ARGUMENT` if the list is not valid; what is wrong
/// with it is read with `dlm_failover_last_error(NULL, ...)` (the call was
/// on no failover yet).
///
/// # Safety
/// `servers` must point to `servers_len` readable bytes; `config` must be
/// NULL or readable; `seed` must point to 16 readable bytes; `out` must be
/// writable. Free the failover with `dlm_failover_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_failover_new(
    servers: *const c_char,
    servers_len: usize,
    config: *const dlm_failover_config,
    seed: *const u8,
    out: *mut *mut dlm_failover,
) -> dlm_status {
    boundary(std::ptr::null::<dlm_failover>(), || {
        non_null(out, "out")?;
        non_null(seed, "seed")?;
        // SAFETY: per the contract.
        let list = unsafe { text(servers, servers_len, "the server list") }?;
        let list = ServerList::parse(list).map_err(|e| give_up(&e))?;
        let mut cfg = failover::Config::DEFAULT;
        // SAFETY: per the contract.
        if let Some(c) = unsafe { config.as_ref() } {
            if c.backoff_min_ms > 0 {
                cfg.backoff_min = Ttl::from_millis(c.backoff_min_ms);
            }
            if c.backoff_max_ms > 0 {
                cfg.backoff_max = Ttl::from_millis(c.backoff_max_ms);
            }
            if c.connect_rounds > 0 {
                cfg.connect_rounds = c.connect_rounds;
            }
            cfg.discover = c.no_discovery == 0;
        }
        let mut bytes = [0u8; 16];
        // SAFETY: 16 readable bytes at `seed`, per the contract.
        unsafe { std::ptr::copy_nonoverlapping(seed, bytes.as_mut_ptr(), 16) };
        let fo = Box::new(dlm_failover {
            failover: Failover::new(list, cfg, bytes),
        });
        // SAFETY: `out` is non-null and writable.
        unsafe { *out = Box::into_raw(fo) };
        Ok(dlm_status::DLM_OK)
    })
}

/// Frees a failover. Its calls need not be freed first (they do not point
/// at it). NULL is accepted.
///
/// # Safety
/// `fo` must be NULL or a pointer from `dlm_failover_new` not yet freed,
/// with no call on it still running.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_failover_free(fo: *mut dlm_failover) {
    if !fo.is_null() {
        quiet(|| {
            // SAFETY: created by Box::into_raw in dlm_failover_new.
            drop(unsafe { Box::from_raw(fo) });
            dlm_status::DLM_OK
        });
    }
}

/// Frees a call. NULL is accepted.
///
/// # Safety
/// `call` must be NULL or a pointer from a `dlm_failover_start*` function
/// not yet freed, not in use by another thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_failover_call_free(call: *mut dlm_failover_call) {
    if !call.is_null() {
        quiet(|| {
            // SAFETY: created by Box::into_raw in hand_out.
            drop(unsafe { Box::from_raw(call) });
            dlm_status::DLM_OK
        });
    }
}

/// Copies into `buf` (NUL-terminated) what the calling thread's most
/// recent call on this failover (or on NULL: `dlm_failover_new`) said
/// beyond its status: why a call gave up, what is wrong with a server
/// list. Reading it records nothing.
///
/// # Safety
/// `buf` must hold `len` writable bytes; `out_n` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_failover_last_error(
    fo: *const dlm_failover,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> dlm_status {
    // SAFETY: forwarded contract.
    quiet(|| unsafe { super::copy_last_error(fo, buf, len, out_n) })
}

/// Copies the server in use (`host:port`, NUL-terminated) into `buf`: the
/// cluster's leader once a member said who it is. For logs.
///
/// # Safety
/// `fo` must be a live failover; `buf` must hold `len` writable bytes;
/// `out_n` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_failover_server(
    fo: *mut dlm_failover,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe { with(fo, |f| Ok(write_text(f.server(), buf, len, out_n))) }
}

/// Writes the current epoch to `out`: a connection made at another epoch
/// is to a server no longer in use (close it rather than pool it).
///
/// # Safety
/// `fo` must be a live failover; `out` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_failover_epoch(fo: *mut dlm_failover, out: *mut u64) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        with(fo, |f| {
            non_null(out, "out")?;
            *out = f.epoch();
            Ok(dlm_status::DLM_OK)
        })
    }
}

/// Starts a call of `req` (a `dlm_request`, as for `dlm_wire_write`) at
/// `now_ms`, to be over by `now_ms + timeout_ms` (plus a lock's wait). A
/// put, erase or unlock gets a request ID here, so that the server applies
/// it once however often it is sent; a put's value is encoded here, once.
/// Write each attempt with `dlm_failover_call_write`.
///
/// # Safety
/// `fo` and `wire` must be live; `req` must point to a valid
/// `dlm_request`; `out` must be writable. Free the call with
/// `dlm_failover_call_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_failover_start(
    fo: *mut dlm_failover,
    wire: *const dlm_wire,
    req: *const dlm_request,
    now_ms: u64,
    timeout_ms: u64,
    out: *mut *mut dlm_failover_call,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        with(fo, |f| {
            let w = wire_ref(wire)?;
            non_null(out, "out")?;
            let c = call_of(req)?;
            let owned = Owned::of(&c, stored_value(w, &c)?);
            let core = w.core();
            let checked = owned.checked();
            let request = request_of(&core, &checked, &owned.name, &owned.text)?;
            let call = f.start(&request, at(now_ms), Ttl::from_millis(timeout_ms));
            hand_out(out, call, What::Request(owned));
            Ok(dlm_status::DLM_OK)
        })
    }
}

/// Starts a call of the request the lease wants sent (an extension or a
/// release; `out_action` says which, and `*out` is NULL with
/// `DLM_LEASE_SEND_NONE` if there is none). The request is then in flight:
/// answer it with `dlm_lease_handle_response` (an accepted answer) or
/// `dlm_lease_handle_failure` (the call gave up). An extension's call ends
/// by the lease's deadline at the latest (past it the lock is lost
/// anyway); a release carries the grant's own request ID, so asking for
/// it again after a failed call still releases it once.
///
/// # Safety
/// `fo`, `lease` and `wire` must be live (the wire the lock was requested
/// with), none in use by another thread; `out` must be writable;
/// `out_action` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_failover_start_lease(
    fo: *mut dlm_failover,
    lease: *mut dlm_lease,
    wire: *const dlm_wire,
    now_ms: u64,
    timeout_ms: u64,
    out: *mut *mut dlm_failover_call,
    out_action: *mut super::lease::dlm_lease_action,
) -> dlm_status {
    use super::lease::dlm_lease_action as A;
    // SAFETY: forwarded contract.
    unsafe {
        with(fo, |f| {
            let w = wire_ref(wire)?;
            non_null(out, "out")?;
            let l = lease.as_mut().ok_or_else(|| Fail::null("the lease"))?;
            // A line handed out by dlm_lease_poll_request that did not fit
            // its buffer: this call replaces it.
            l.unsent = None;
            let Some(pending) = l.lease.poll_request(at(now_ms)) else {
                *out = std::ptr::null_mut();
                put(out_action, A::DLM_LEASE_SEND_NONE);
                return Ok(dlm_status::DLM_OK);
            };
            let core = w.core();
            let request = pending.request(&core, &l.name);
            let now = at(now_ms);
            let timeout = Ttl::from_millis(timeout_ms);
            let (mut call, action) = match pending.action() {
                Action::Release => (
                    f.start_release(&request, now, timeout),
                    A::DLM_LEASE_SEND_RELEASE,
                ),
                Action::Extend { .. } => {
                    (f.start(&request, now, timeout), A::DLM_LEASE_SEND_EXTEND)
                }
            };
            if let Some(deadline) = pending.deadline() {
                call.limit(deadline);
            }
            let name = l.name.clone();
            hand_out(out, call, What::Lease { pending, name });
            put(out_action, action);
            Ok(dlm_status::DLM_OK)
        })
    }
}

/// Starts a call that only connects (and asks who leads), to be over by
/// `now_ms + timeout_ms`: for a client that opens a connection up front.
///
/// # Safety
/// `fo` must be live; `out` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_failover_start_connect(
    fo: *mut dlm_failover,
    now_ms: u64,
    timeout_ms: u64,
    out: *mut *mut dlm_failover_call,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        with(fo, |f| {
            non_null(out, "out")?;
            let call = f.start_connect(at(now_ms), Ttl::from_millis(timeout_ms));
            hand_out(out, call, What::Connect);
            Ok(dlm_status::DLM_OK)
        })
    }
}

/// Says what to do to get a connection for `call` at `now_ms`, in `out`:
/// connect to the address written into `addr` (NUL-terminated; `addr_len`
/// must be at least `DLM_FAILOVER_ADDRESS_MAX + 1`), or wait. Giving up is
/// the call's error status (`DLM_ERR_UNAVAILABLE`: no member answered
/// within the time), its detail in `dlm_failover_last_error`.
///
/// # Safety
/// `fo` and `call` must be live; `addr` must hold `addr_len` writable
/// bytes; `out` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_failover_poll_connect(
    fo: *mut dlm_failover,
    call: *mut dlm_failover_call,
    now_ms: u64,
    addr: *mut c_char,
    addr_len: usize,
    out: *mut dlm_failover_step,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        with(fo, |f| {
            let c = call_mut(call)?;
            non_null(out, "out")?;
            non_null(addr, "addr")?;
            if addr_len <= DLM_FAILOVER_ADDRESS_MAX {
                return Err(Fail::new(
                    dlm_status::DLM_ERR_BUFFER_TOO_SMALL,
                    "addr needs DLM_FAILOVER_ADDRESS_MAX + 1 bytes",
                ));
            }
            let step = match f.poll_connect(&mut c.call, at(now_ms)) {
                Step::Connect {
                    addr: a,
                    epoch,
                    within,
                } => {
                    let mut n = 0;
                    let s = write_text(a, addr, addr_len, &raw mut n);
                    if s != dlm_status::DLM_OK {
                        return Ok(s);
                    }
                    dlm_failover_step {
                        kind: dlm_failover_step_kind::DLM_FAILOVER_CONNECT,
                        epoch,
                        within_ms: within.as_millis(),
                        until_ms: 0,
                    }
                }
                Step::Wait(until) => dlm_failover_step {
                    kind: dlm_failover_step_kind::DLM_FAILOVER_WAIT,
                    epoch: 0,
                    within_ms: 0,
                    until_ms: until.as_millis(),
                },
                Step::GiveUp(e) => return Err(give_up(&e)),
            };
            *out = step;
            Ok(dlm_status::DLM_OK)
        })
    }
}

/// A connection made for `epoch` is up: writes to `out_ask` whether to
/// ask it who leads first (send `dlm_failover_discovery_line`, hand the
/// answer to `dlm_failover_discovered`).
///
/// # Safety
/// `fo` must be live; `out_ask` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_failover_connected(
    fo: *mut dlm_failover,
    epoch: u64,
    out_ask: *mut bool,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        with(fo, |f| {
            non_null(out_ask, "out_ask")?;
            *out_ask = f.connected(epoch);
            Ok(dlm_status::DLM_OK)
        })
    }
}

/// Writes the request that asks a member who leads (`{"Action":"Cluster"}`
/// with the wire's credentials) into `buf`, its length into `out_n`
/// (`DLM_ERR_BUFFER_TOO_SMALL` with the needed length if it does not fit).
///
/// # Safety
/// `wire` must be live; `buf` must hold `len` writable bytes (or be NULL
/// with `len` 0); `out_n` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_failover_discovery_line(
    wire: *const dlm_wire,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> dlm_status {
    boundary(wire, || {
        // SAFETY: per the contract.
        let w = unsafe { wire_ref(wire) }?;
        non_null(out_n, "out_n")?;
        if buf.is_null() && len > 0 {
            return Err(Fail::null("buf (with a non-zero len)"));
        }
        let req = w.core().cluster(ClusterOp::Status);
        // SAFETY: per the contract.
        Ok(unsafe { write_line(&req, buf, len, out_n) })
    })
}

/// What the member reached at `epoch` answered (`line`) to the discovery
/// request, for `call` at `now_ms`. Writes to `out_stay` whether to use
/// this connection for the call: false if the leader is another member
/// (the epoch moved there), or the member could not say (a server without
/// the action may close the connection: open another), or it refused to
/// serve now; then close it and go back to `dlm_failover_poll_connect`.
/// A refusal that ends the call is its error status.
///
/// # Safety
/// `fo` and `call` must be live; `line` must point to `line_len` readable
/// bytes; `out_stay` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_failover_discovered(
    fo: *mut dlm_failover,
    call: *mut dlm_failover_call,
    epoch: u64,
    line: *const c_char,
    line_len: usize,
    now_ms: u64,
    out_stay: *mut bool,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        with(fo, |f| {
            let c = call_mut(call)?;
            non_null(out_stay, "out_stay")?;
            let line = self::line(line, line_len)?;
            let mut copy = line.to_vec();
            let parsed = Response::parse(&mut copy).ok().map(|(_, r)| r);
            if let Some(refusal) = parsed.as_ref().and_then(Refusal::of) {
                return match f.handle(&mut c.call, epoch, Outcome::Refused(refusal), at(now_ms)) {
                    Verdict::GiveUp(e) => Err(give_up(&e)),
                    Verdict::Retry | Verdict::Accept => {
                        *out_stay = false;
                        Ok(dlm_status::DLM_OK)
                    }
                };
            }
            let view = match parsed {
                Some(r) if r.status == Status::Done => {
                    r.cluster.and_then(|t| ClusterView::parse(t).ok())
                }
                _ => None,
            };
            let stay = f.discovered(epoch, view.as_ref());
            *out_stay = stay && view.is_some();
            Ok(dlm_status::DLM_OK)
        })
    }
}

/// Writes the line of this attempt of `call` at `now_ms` (its request ID,
/// a lock's wait cut to what is left of it) into `buf`, its length into
/// `out_n` (`DLM_ERR_BUFFER_TOO_SMALL` with the needed length if it does
/// not fit), and what is left of the call's time into `out_remaining_ms`
/// (may be NULL): the most the answer may take. `wire` must be the one the
/// call was started with.
///
/// # Safety
/// `call` and `wire` must be live; `buf` must hold `len` writable bytes
/// (or be NULL with `len` 0); `out_n` must be writable; `out_remaining_ms`
/// NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_failover_call_write(
    call: *mut dlm_failover_call,
    wire: *const dlm_wire,
    now_ms: u64,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
    out_remaining_ms: *mut u64,
) -> dlm_status {
    boundary(call.cast_const(), || {
        // SAFETY: per the contract.
        let c = unsafe { call_mut(call) }?;
        // SAFETY: per the contract.
        let w = unsafe { wire_ref(wire) }?;
        non_null(out_n, "out_n")?;
        if buf.is_null() && len > 0 {
            return Err(Fail::null("buf (with a non-zero len)"));
        }
        let core = w.core();
        let now = at(now_ms);
        let checked;
        let request: Request<'_> = match &c.what {
            What::Request(owned) => {
                checked = owned.checked();
                request_of(&core, &checked, &owned.name, &owned.text)?
            }
            What::Lease { pending, name } => pending.request(&core, name),
            What::Connect => {
                return Err(Fail::new(
                    dlm_status::DLM_ERR_INVALID_ARGUMENT,
                    "a connect call sends no request",
                ));
            }
        };
        let attempt = c.call.request(request, now);
        // SAFETY: per the contract.
        let s = unsafe { write_line(&attempt, buf, len, out_n) };
        // SAFETY: per the contract.
        unsafe { put(out_remaining_ms, c.call.remaining(now).as_millis()) };
        Ok(s)
    })
}

/// What is left of `call`'s time at `now_ms`, into `out_ms`.
///
/// # Safety
/// `call` must be live; `out_ms` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_failover_call_remaining(
    call: *const dlm_failover_call,
    now_ms: u64,
    out_ms: *mut u64,
) -> dlm_status {
    boundary(call, || {
        // SAFETY: per the contract.
        let c = unsafe { call.as_ref() }.ok_or_else(|| Fail::null("the call"))?;
        non_null(out_ms, "out_ms")?;
        // SAFETY: non-null and writable per the contract.
        unsafe { *out_ms = c.call.remaining(at(now_ms)).as_millis() };
        Ok(dlm_status::DLM_OK)
    })
}

/// Reports what became of an attempt of `call` on a connection of
/// `epoch`, at `now_ms` (with the answer `line` for
/// `DLM_OUTCOME_ANSWERED`; NULL otherwise), and writes to `out_retry`
/// whether to send it again (back to `dlm_failover_poll_connect`; false:
/// read the answer, the call is over). Giving up is the call's error
/// status (`DLM_ERR_UNAVAILABLE`), its detail in `dlm_failover_last_error`:
/// no member answered in time, or the request may have been applied and
/// cannot be sent again.
///
/// # Safety
/// `fo` and `call` must be live; `line` must be NULL (with `line_len` 0)
/// or point to `line_len` readable bytes; `out_retry` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_failover_handle(
    fo: *mut dlm_failover,
    call: *mut dlm_failover_call,
    epoch: u64,
    outcome: u32,
    line: *const c_char,
    line_len: usize,
    now_ms: u64,
    out_retry: *mut bool,
) -> dlm_status {
    use dlm_failover_outcome as O;
    // SAFETY: forwarded contract.
    unsafe {
        with(fo, |f| {
            let c = call_mut(call)?;
            non_null(out_retry, "out_retry")?;
            let outcome = match outcome {
                n if n == O::DLM_OUTCOME_CONNECT_FAILED as u32 => Outcome::ConnectFailed,
                n if n == O::DLM_OUTCOME_NOT_SENT as u32 => Outcome::NotSent,
                n if n == O::DLM_OUTCOME_CLOSED as u32 => Outcome::Closed,
                n if n == O::DLM_OUTCOME_TIMED_OUT as u32 => Outcome::TimedOut,
                n if n == O::DLM_OUTCOME_ANSWERED as u32 => {
                    let line = self::line(line, line_len)?;
                    match Refusal::of_line(line) {
                        Some(r) => Outcome::Refused(r),
                        None => Outcome::Answered,
                    }
                }
                _ => {
                    return Err(Fail::new(
                        dlm_status::DLM_ERR_INVALID_ARGUMENT,
                        "unknown outcome",
                    ));
                }
            };
            match f.handle(&mut c.call, epoch, outcome, at(now_ms)) {
                Verdict::Accept => *out_retry = false,
                Verdict::Retry => *out_retry = true,
                Verdict::GiveUp(e) => return Err(give_up(&e)),
            }
            Ok(dlm_status::DLM_OK)
        })
    }
}
