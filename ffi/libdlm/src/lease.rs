//! `dlm_lease`: a held lock's lease without threads or sockets, dlm-core's
//! [`Lease`] behind a handle. The caller passes the time in, asks when to
//! call back, sends the request lines the lease hands out on its own
//! connections, and feeds back the answers; the lease keeps the grant-time
//! estimate, the deadline, the renewal schedule and the lost state, the
//! same rules `dlm_lock` follows with its own thread.
//!
//! ```text
//!   Lock answer ─▶ dlm_lease_new ─▶ dlm_lease
//!   dlm_lease_inspect ─▶ next_timeout_ms ─▶ (your timer) ─▶ dlm_lease_handle_timeout
//!   dlm_lease_poll_request ─▶ line ─▶ (your socket) ─▶ dlm_lease_handle_response
//!                                         (no answer) ─▶ dlm_lease_handle_failure
//! ```

use std::ffi::c_char;

use super::wire::dlm_call;
use super::wire::{call_of, dlm_request, dlm_wire, line, wire_ref, with_copy};
use super::{Fail, boundary, copy_last_error, dlm_status, non_null, put, quiet};
use dlm_core::client::{Acquire, AcquireAll, Action, Done, Error as CoreError, Event, Lease};
use dlm_core::protocol::{Response, Token};
use dlm_core::time::{Instant, Ttl};

/// A held lock's lease. **Not thread-safe**: one call at a time (the
/// caller serialises them, e.g. under a mutex). Times are milliseconds on
/// any monotonic clock of the caller's, the same one for every call.
pub struct dlm_lease {
    pub(crate) lease: Lease,
    pub(crate) name: String,
    /// A request taken from the lease whose line did not fit the caller's
    /// buffer: the next `dlm_lease_poll_request` hands it out first.
    pub(crate) unsent: Option<(Vec<u8>, Action)>,
}

/// What a request handed out by `dlm_lease_poll_request` asks.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum dlm_lease_action {
    /// Nothing to send.
    DLM_LEASE_SEND_NONE = 0,
    /// Extend the grant (asked by `dlm_lease_extend`, or the renewal).
    DLM_LEASE_SEND_EXTEND = 1,
    /// Release the grant (asked by `dlm_lease_release`).
    DLM_LEASE_SEND_RELEASE = 2,
}

/// What an answered request did (`dlm_lease_handle_response`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum dlm_lease_done {
    /// The grant was extended.
    DLM_LEASE_DONE_EXTENDED = 1,
    /// The grant was released.
    DLM_LEASE_DONE_RELEASED = 2,
}

/// Bit of `dlm_lease_info.flags`: the grant has a fencing token.
pub const DLM_LEASE_HAS_TOKEN: u32 = 1;
/// Bit of `dlm_lease_info.flags`: `next_timeout_ms` is set.
pub const DLM_LEASE_HAS_TIMEOUT: u32 = 2;
/// Bit of `dlm_lease_info.flags`: the lock is lost (its deadline passed
/// without a confirmed extension, or the server said it is gone).
pub const DLM_LEASE_LOST: u32 = 4;
/// Bit of `dlm_lease_info.flags`: the server confirmed the release.
pub const DLM_LEASE_RELEASED: u32 = 8;
/// Bit of `dlm_lease_info.flags`: the lease renews itself (until released
/// or lost).
pub const DLM_LEASE_RENEWING: u32 = 16;
/// Bit of `dlm_lease_info.flags`: a request waits to be handed out by
/// `dlm_lease_poll_request`.
pub const DLM_LEASE_HAS_REQUEST: u32 = 32;

/// A lease's state at one instant (`dlm_lease_inspect`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct dlm_lease_info {
    /// `DLM_LEASE_*` bits.
    pub flags: u32,
    /// The fencing token (0 without `DLM_LEASE_HAS_TOKEN`: JackrabbitDLM
    /// gives none; then extensions are plain re-locks, never sent once the
    /// deadline has passed).
    pub token: u64,
    /// The TTL extensions ask for, in milliseconds.
    pub ttl_ms: u64,
    /// When the lock expires at the latest unless extended (no later than
    /// the server's deadline).
    pub deadline_ms: u64,
    /// Milliseconds left at the given time; 0 once lost or released.
    pub remaining_ms: u64,
    /// When to call `dlm_lease_handle_timeout` next (with
    /// `DLM_LEASE_HAS_TIMEOUT`; none once released or lost).
    pub next_timeout_ms: u64,
}

/// Runs `f` on the lease behind `lease` (read only), recording the outcome
/// for this thread.
///
/// # Safety
/// `lease` must be NULL or a live lease not in use by another thread.
unsafe fn with_ref(
    lease: *const dlm_lease,
    f: impl FnOnce(&dlm_lease) -> Result<dlm_status, Fail>,
) -> dlm_status {
    boundary(lease, || {
        // SAFETY: per the caller's contract.
        let l = unsafe { lease.as_ref() }.ok_or_else(|| Fail::null("the lease"))?;
        f(l)
    })
}

/// Runs `f` on the lease behind `lease`, recording the outcome for this
/// thread.
///
/// # Safety
/// `lease` must be NULL or a live lease not in use by another thread.
unsafe fn with(
    lease: *mut dlm_lease,
    f: impl FnOnce(&mut dlm_lease) -> Result<dlm_status, Fail>,
) -> dlm_status {
    boundary(lease.cast_const(), || {
        // SAFETY: per the caller's contract.
        let l = unsafe { lease.as_mut() }.ok_or_else(|| Fail::null("the lease"))?;
        f(l)
    })
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// Reads the server's answer `line` to the lock request `req` (a
/// `DLM_CALL_LOCK`, `DLM_CALL_SEMAPHORE`, `DLM_CALL_READ_LOCK` or
/// `DLM_CALL_WRITE_LOCK`, sent at `sent_ms` and answered at `now_ms`) and
/// makes the lease of the grant (of the hold, which the lease extends and
/// releases by its token). `DLM_LOCK_AUTO_RENEW` in the request's flags
/// makes the lease renew itself. A refusal is `DLM_ERR_NOT_OWNER` after one
/// attempt, `DLM_ERR_TIMEOUT` after a wait that ran out (`NOT_OWNER` if
/// the server answered before the wait could have: it has no queue), and
/// so on; its detail is in `dlm_wire_last_error`. `line` is not modified.
///
/// # Safety
/// `wire` must be a live wire; `req` must point to a valid `dlm_request`;
/// `line` to `line_len` readable bytes; `out` must be writable. Free the
/// lease with `dlm_lease_free`. A semaphore of another size, or a name
/// that is another kind of lock, is `DLM_ERR_CONFLICT`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_lease_new(
    wire: *const dlm_wire,
    req: *const dlm_request,
    sent_ms: u64,
    now_ms: u64,
    line: *const c_char,
    line_len: usize,
    out: *mut *mut dlm_lease,
) -> dlm_status {
    boundary(wire, || {
        // SAFETY: per the contract.
        unsafe { wire_ref(wire) }?;
        non_null(out, "out")?;
        // SAFETY: per the contract.
        let c = unsafe { call_of(req) }?;
        if !c.call.acquires() {
            return Err(Fail::new(
                dlm_status::DLM_ERR_INVALID_ARGUMENT,
                "a lease is read from the answer to a lock",
            ));
        }
        // SAFETY: per the contract.
        let line = unsafe { self::line(line, line_len) }?;
        let auto_renew = c.flags & super::DLM_LOCK_AUTO_RENEW != 0;
        let mut acquire = Acquire::new(c.ttl, Some(c.wait), auto_renew, at(sent_ms));
        if let Some(shape) = c.shape {
            acquire = acquire.with_shape(shape);
        }
        let lease = with_copy(line, |copy| -> Result<Lease, Fail> {
            let (_, r) = Response::parse(copy).map_err(CoreError::from)?;
            Ok(acquire.handle_response(at(now_ms), &r)?)
        })?;
        if c.session.is_some() && lease.token().is_none() {
            // The grant is a plain lock with a TTL, bound to nothing.
            return Err(Fail::new(
                dlm_status::DLM_ERR_BAD_REQUEST,
                "the server ignored Session (a JackrabbitDLM server?)",
            ));
        }
        let handle = Box::new(dlm_lease {
            lease,
            name: c.name.to_owned(),
            unsent: None,
        });
        // SAFETY: `out` is non-null and writable.
        unsafe { *out = Box::into_raw(handle) };
        Ok(dlm_status::DLM_OK)
    })
}

/// Reads the server's answer `line` to the multi-lock request `req` (a
/// `DLM_CALL_LOCK_ALL`, sent at `sent_ms` and answered at `now_ms`) and
/// makes one lease per name, in the order of `req->names`, into `out`
/// (`cap` elements; `req->names_count` are written). Each is an ordinary
/// lock's lease, extended and released by its own token (dlm's clients
/// extend and release them together); `DLM_LOCK_AUTO_RENEW` makes each
/// renew itself. A refusal is `DLM_ERR_NOT_OWNER` after one attempt (no
/// name is taken), `DLM_ERR_TIMEOUT` after a wait that ran out,
/// `DLM_ERR_CONFLICT` for a name that is a semaphore or read/write lock,
/// `DLM_ERR_BAD_REQUEST` from a server without multi-locks; its detail is
/// in `dlm_wire_last_error`. If `cap` is smaller than `req->names_count`,
/// `DLM_ERR_BUFFER_TOO_SMALL` and nothing is made (the locks stay granted:
/// call again with room). `line` is not modified.
///
/// # Safety
/// `wire` must be a live wire; `req` must point to a valid `dlm_request`;
/// `line` to `line_len` readable bytes; `out` to `cap` writable pointers.
/// Free each lease with `dlm_lease_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_lease_new_all(
    wire: *const dlm_wire,
    req: *const dlm_request,
    sent_ms: u64,
    now_ms: u64,
    line: *const c_char,
    line_len: usize,
    out: *mut *mut dlm_lease,
    cap: usize,
) -> dlm_status {
    boundary(wire, || {
        // SAFETY: per the contract.
        unsafe { wire_ref(wire) }?;
        non_null(out, "out")?;
        // SAFETY: per the contract.
        let c = unsafe { call_of(req) }?;
        if c.call != dlm_call::DLM_CALL_LOCK_ALL {
            return Err(Fail::new(
                dlm_status::DLM_ERR_INVALID_ARGUMENT,
                "dlm_lease_new_all reads the answer to a multi-lock",
            ));
        }
        if cap < c.names.len() {
            return Ok(dlm_status::DLM_ERR_BUFFER_TOO_SMALL);
        }
        // SAFETY: per the contract.
        let line = unsafe { self::line(line, line_len) }?;
        let auto_renew = c.flags & super::DLM_LOCK_AUTO_RENEW != 0;
        let wait = (!c.wait.is_zero()).then_some(c.wait);
        let acquire = AcquireAll::new(c.ttl, wait, auto_renew, at(sent_ms));
        let leases = with_copy(line, |copy| -> Result<Vec<Lease>, Fail> {
            let (_, r) = Response::parse(copy).map_err(CoreError::from)?;
            let granted = acquire.handle_response(at(now_ms), &r, c.names.len())?;
            Ok(granted.leases().collect())
        })?;
        for (i, (lease, name)) in leases.into_iter().zip(&c.names).enumerate() {
            let handle = Box::new(dlm_lease {
                lease,
                name: (*name).to_owned(),
                unsent: None,
            });
            // SAFETY: `out` holds `cap >= names` writable pointers.
            unsafe { *out.add(i) = Box::into_raw(handle) };
        }
        Ok(dlm_status::DLM_OK)
    })
}

/// Frees a lease. Nothing is sent: release the grant first
/// (`dlm_lease_release`) unless it is meant to expire. NULL is accepted.
///
/// # Safety
/// `lease` must be NULL or a pointer from `dlm_lease_new` not yet freed,
/// with no call on it still running.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_lease_free(lease: *mut dlm_lease) {
    if !lease.is_null() {
        quiet(|| {
            // SAFETY: created by Box::into_raw in dlm_lease_new.
            drop(unsafe { Box::from_raw(lease) });
            dlm_status::DLM_OK
        });
    }
}

/// Copies into `buf` (NUL-terminated) what the calling thread's most
/// recent libdlm call said beyond its status, if that call was on this
/// lease and failed (see `dlm_client_last_error`). Reading it records
/// nothing.
///
/// # Safety
/// `lease` must be a live lease; `buf` must hold `len` writable bytes;
/// `out_n` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_lease_last_error(
    lease: *const dlm_lease,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> dlm_status {
    quiet(|| {
        if lease.is_null() {
            return dlm_status::DLM_ERR_NULL_PARAMETER;
        }
        // SAFETY: per the contract.
        unsafe { copy_last_error(lease, buf, len, out_n) }
    })
}

/// Writes the lease's state at `now_ms` to `out`. It changes nothing (call
/// `dlm_lease_handle_timeout` first to let a passed deadline lose it).
///
/// # Safety
/// `lease` must be a live lease; `out` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_lease_inspect(
    lease: *const dlm_lease,
    now_ms: u64,
    out: *mut dlm_lease_info,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        with_ref(lease, |l| {
            non_null(out, "out")?;
            let lease = &l.lease;
            let mut flags = 0;
            let mut set = |on: bool, bit: u32| {
                if on {
                    flags |= bit;
                }
            };
            set(lease.token().is_some(), DLM_LEASE_HAS_TOKEN);
            set(lease.poll_timeout().is_some(), DLM_LEASE_HAS_TIMEOUT);
            set(lease.is_lost(), DLM_LEASE_LOST);
            set(lease.is_released(), DLM_LEASE_RELEASED);
            set(lease.is_renewing(), DLM_LEASE_RENEWING);
            set(
                lease.has_request() || l.unsent.is_some(),
                DLM_LEASE_HAS_REQUEST,
            );
            put(
                out,
                dlm_lease_info {
                    flags,
                    token: lease.token().map_or(0, |Token(t)| t),
                    ttl_ms: lease.ttl().as_millis(),
                    deadline_ms: lease.deadline().as_millis(),
                    remaining_ms: lease.remaining(at(now_ms)).as_millis(),
                    next_timeout_ms: lease.poll_timeout().map_or(0, Instant::as_millis),
                },
            );
            Ok(dlm_status::DLM_OK)
        })
    }
}

/// Advances the lease to `now_ms`: a passed deadline loses the lock, a due
/// renewal queues an extension (hand it out with `dlm_lease_poll_request`).
///
/// # Safety
/// `lease` must be a live lease.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_lease_handle_timeout(
    lease: *mut dlm_lease,
    now_ms: u64,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        with(lease, |l| {
            l.lease.handle_timeout(at(now_ms));
            Ok(dlm_status::DLM_OK)
        })
    }
}

/// Asks to extend the grant to `ttl_ms` from when the request is sent
/// (and makes it the TTL renewals ask for); hand the request out with
/// `dlm_lease_poll_request`. `DLM_ERR_LOCK_LOST` if the lock is lost or
/// released (an extension never re-acquires), `DLM_ERR_INVALID_ARGUMENT`
/// for a zero TTL.
///
/// # Safety
/// `lease` must be a live lease.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_lease_extend(
    lease: *mut dlm_lease,
    now_ms: u64,
    ttl_ms: u64,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        with(lease, |l| {
            l.lease.extend(at(now_ms), Ttl::from_millis(ttl_ms))?;
            Ok(dlm_status::DLM_OK)
        })
    }
}

/// Asks to release the grant (also after it was found lost: the server may
/// still hold it) and stops the renewal; hand the request out with
/// `dlm_lease_poll_request`. Writes to `out_queued` (may be NULL) whether
/// there is a release to send: false once the server confirmed one.
///
/// # Safety
/// `lease` must be a live lease; `out_queued` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_lease_release(
    lease: *mut dlm_lease,
    now_ms: u64,
    out_queued: *mut bool,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        with(lease, |l| {
            let queued = l.lease.release(at(now_ms));
            put(out_queued, queued);
            Ok(dlm_status::DLM_OK)
        })
    }
}

/// Writes the next request line the lease wants sent (ending in `\n`, not
/// NUL-terminated) into `buf`, its length into `out_n` and what it asks
/// into `out_action` (may be NULL); `out_n` is 0 and the action
/// `DLM_LEASE_SEND_NONE` if there is nothing to send (one request is in flight
/// at a time). The request is then in flight: answer it with
/// `dlm_lease_handle_response` or `dlm_lease_handle_failure`. If `buf` is
/// too small, returns `DLM_ERR_BUFFER_TOO_SMALL` with the needed length in
/// `out_n`, and the next call hands out the same line. `wire` must be the
/// wire the lock was requested with (the owner ID, framing and credentials
/// of the request).
///
/// # Safety
/// `lease` and `wire` must be live; `buf` must hold `len` writable bytes
/// (or be NULL with `len` 0); `out_n` writable; `out_action` NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_lease_poll_request(
    lease: *mut dlm_lease,
    wire: *const dlm_wire,
    now_ms: u64,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
    out_action: *mut dlm_lease_action,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        with(lease, |l| {
            let w = wire_ref(wire)?;
            non_null(out_n, "out_n")?;
            if buf.is_null() && len > 0 {
                return Err(Fail::null("buf (with a non-zero len)"));
            }
            let (line, action) = match l.unsent.take() {
                Some(unsent) => unsent,
                None => {
                    let Some(pending) = l.lease.poll_request(at(now_ms)) else {
                        *out_n = 0;
                        put(out_action, dlm_lease_action::DLM_LEASE_SEND_NONE);
                        return Ok(dlm_status::DLM_OK);
                    };
                    let mut line = Vec::new();
                    // Writing into a Vec cannot fail.
                    let _ = pending.request(&w.core(), &l.name).write(&mut line);
                    (line, pending.action())
                }
            };
            *out_n = line.len();
            if line.len() > len {
                l.unsent = Some((line, action));
                return Ok(dlm_status::DLM_ERR_BUFFER_TOO_SMALL);
            }
            std::ptr::copy_nonoverlapping(line.as_ptr(), buf.cast::<u8>(), line.len());
            put(
                out_action,
                match action {
                    Action::Extend { .. } => dlm_lease_action::DLM_LEASE_SEND_EXTEND,
                    Action::Release => dlm_lease_action::DLM_LEASE_SEND_RELEASE,
                },
            );
            Ok(dlm_status::DLM_OK)
        })
    }
}

/// Reads the server's answer `line` to the request in flight, received at
/// `now_ms`, and writes what it did to `out_done` (may be NULL). A refusal
/// is its error status, its detail in `dlm_lease_last_error`:
/// `DLM_ERR_LOCK_LOST` if the grant is gone (the lease is then lost). A
/// refused renewal that is not a loss is retried by the lease. `line` is
/// not modified.
///
/// # Safety
/// `lease` must be a live lease; `line` must point to `line_len` readable
/// bytes; `out_done` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_lease_handle_response(
    lease: *mut dlm_lease,
    now_ms: u64,
    line: *const c_char,
    line_len: usize,
    out_done: *mut dlm_lease_done,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        with(lease, |l| {
            let line = self::line(line, line_len)?;
            let done = with_copy(line, |copy| -> Result<Done, Fail> {
                let r = match Response::parse(copy) {
                    Ok((_, r)) => r,
                    Err(e) => {
                        // Not an answer: as good as none.
                        l.lease.handle_failure(at(now_ms));
                        return Err(CoreError::from(e).into());
                    }
                };
                Ok(l.lease.handle_response(at(now_ms), &r)?)
            })?;
            put(
                out_done,
                match done {
                    Done::Extended => dlm_lease_done::DLM_LEASE_DONE_EXTENDED,
                    Done::Released => dlm_lease_done::DLM_LEASE_DONE_RELEASED,
                },
            );
            Ok(dlm_status::DLM_OK)
        })
    }
}

/// Tells the lease the request in flight got no answer (the connection
/// failed or timed out) at `now_ms`. A failed renewal is retried until the
/// deadline; a failed release may be asked for again.
///
/// # Safety
/// `lease` must be a live lease.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_lease_handle_failure(
    lease: *mut dlm_lease,
    now_ms: u64,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        with(lease, |l| {
            // A line that never fitted the caller's buffer is dropped with
            // the request.
            l.unsent = None;
            l.lease.handle_failure(at(now_ms));
            Ok(dlm_status::DLM_OK)
        })
    }
}

/// Writes to `out_lost` whether the lock was lost since the last call:
/// true once, when the loss is first reported (a host runs its "lost"
/// callback then).
///
/// # Safety
/// `lease` must be a live lease; `out_lost` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_lease_poll_event(
    lease: *mut dlm_lease,
    out_lost: *mut bool,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        with(lease, |l| {
            non_null(out_lost, "out_lost")?;
            *out_lost = l.lease.poll_event() == Some(Event::Lost);
            Ok(dlm_status::DLM_OK)
        })
    }
}
