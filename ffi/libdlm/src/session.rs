//! `dlm_session`: a server session on a connection of its own, and
//! `dlm_session_lock`, a lock bound to it (PROTOCOL.md section 8,
//! "Sessions and lock-delay").

use std::ffi::{c_char, c_void};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::client::{client_ref, dlm_client};
use super::lock::dlm_lost_fn;
use super::wire::DLM_MAX_LOCK_DELAY_MS;
use super::{Fail, boundary, copy_last_error, dlm_status, non_null, put, quiet};
use dlm::{Error, Session, SessionLock};

/// A server session: a connection of its own, kept alive by a libdlm
/// thread (a keep-alive every third of its TTL) until it is closed or
/// freed. Locks taken with `dlm_session_acquire` are bound to it: when it
/// ends (closed, freed, its connection lost, or this process stopped or
/// paused past its TTL), the server releases them, or keeps their names
/// closed to everyone for their lock-delay first. There is no failover: a
/// session lives and dies with its connection; once lost, take its locks
/// as gone and open a new one. **Thread-safe**; its calls take turns.
pub struct dlm_session {
    session: Mutex<Option<Session>>,
}

/// A lock bound to a `dlm_session`. **Thread-safe**; its calls take
/// turns. Freeing it releases it if still held.
pub struct dlm_session_lock {
    lock: Mutex<Option<SessionLock>>,
    token: u64,
}

struct Callback {
    f: unsafe extern "C" fn(*mut c_void),
    userdata: *mut c_void,
}

// SAFETY: the C caller promises (dlm_client_session's contract) that the
// callback and its userdata may be used from libdlm's keep-alive thread.
unsafe impl Send for Callback {}
// SAFETY: as above.
unsafe impl Sync for Callback {}

impl Callback {
    fn call(&self) {
        // SAFETY: per dlm_client_session's contract.
        unsafe { (self.f)(self.userdata) };
    }
}

/// Opens a server session with a TTL of `ttl_ms` on a connection of its
/// own (to the cluster's leader). libdlm keeps it alive, every third of
/// the TTL, on a thread of its own; the server ends it, releasing its
/// locks, when that connection closes or nothing reaches it for `ttl_ms`.
/// `on_lost(userdata)` (may be NULL) runs once, on that thread, if a
/// keep-alive finds the session lost. A server without sessions
/// (JackrabbitDLM) is `DLM_ERR_BAD_REQUEST`.
///
/// # Safety
/// `client` must be a live client; `on_lost` and `userdata` usable from
/// another thread until the session is freed; `out` writable. Free the
/// session with `dlm_session_free` before the client.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_client_session(
    client: *const dlm_client,
    ttl_ms: u64,
    on_lost: dlm_lost_fn,
    userdata: *mut c_void,
    out: *mut *mut dlm_session,
) -> dlm_status {
    boundary(client, || {
        // SAFETY: per the contract.
        let c = unsafe { client_ref(client) }?;
        non_null(out, "out")?;
        if ttl_ms == 0 {
            return Err(Fail::new(
                dlm_status::DLM_ERR_INVALID_ARGUMENT,
                "a TTL must be positive",
            ));
        }
        let session = c.client.session(Duration::from_millis(ttl_ms))?;
        if let Some(f) = on_lost {
            let cb = Callback { f, userdata };
            session.on_lost(move || cb.call());
        }
        let handle = Box::new(dlm_session {
            session: Mutex::new(Some(session)),
        });
        // SAFETY: `out` is non-null and writable.
        unsafe { *out = Box::into_raw(handle) };
        Ok(dlm_status::DLM_OK)
    })
}

/// Borrows the session behind `session`.
///
/// # Safety
/// `session` must be NULL or a live pointer from `dlm_client_session`.
unsafe fn session_ref<'a>(session: *const dlm_session) -> Result<&'a dlm_session, Fail> {
    // SAFETY: per the caller's contract.
    unsafe { session.as_ref() }.ok_or_else(|| Fail::null("the session"))
}

/// The failure of a call on a closed session.
fn closed() -> Fail {
    Fail::new(dlm_status::DLM_ERR_LOCK_LOST, "the session is closed")
}

/// Acquires `name` for `ttl_ms`, bound to the session: it ends at the
/// first of its TTL and the session's end (it is not renewed: ask a TTL
/// as long as you need it). With `wait_ms` 0 one attempt
/// (`DLM_ERR_NOT_OWNER` if held); otherwise it waits up to `wait_ms` in
/// the server's queue (`DLM_ERR_TIMEOUT`); keep the wait shorter than the
/// session's TTL, since the keep-alive waits for it. `lock_delay_ms` (at
/// most 60000): after the session ends, nobody may take the name for that
/// long, not even this client. `DLM_ERR_LOCK_LOST` if the session is
/// lost or closed; `DLM_ERR_BAD_REQUEST` if the server ignored the
/// binding (JackrabbitDLM).
///
/// # Safety
/// `session` must be a live session; `name` must point to `name_len`
/// bytes; `out` writable. Free the lock with `dlm_session_lock_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_session_acquire(
    session: *const dlm_session,
    name: *const c_char,
    name_len: usize,
    ttl_ms: u64,
    wait_ms: u64,
    lock_delay_ms: u64,
    out: *mut *mut dlm_session_lock,
) -> dlm_status {
    boundary(session, || {
        // SAFETY: per the contract.
        let s = unsafe { session_ref(session) }?;
        non_null(out, "out")?;
        // SAFETY: per the contract.
        let name = unsafe { super::name(name, name_len) }?;
        if ttl_ms == 0 {
            return Err(Fail::new(
                dlm_status::DLM_ERR_INVALID_ARGUMENT,
                "a TTL must be positive",
            ));
        }
        if lock_delay_ms > DLM_MAX_LOCK_DELAY_MS {
            return Err(Fail::new(
                dlm_status::DLM_ERR_INVALID_ARGUMENT,
                "a lock-delay is at most 60 s",
            ));
        }
        let guard = s.session.lock().unwrap_or_else(PoisonError::into_inner);
        let session = guard.as_ref().ok_or_else(closed)?;
        let lock = session
            .lock(name)
            .ttl(Duration::from_millis(ttl_ms))
            .wait(Duration::from_millis(wait_ms))
            .lock_delay(Duration::from_millis(lock_delay_ms))
            .acquire()?;
        let handle = Box::new(dlm_session_lock {
            token: lock.token().0,
            lock: Mutex::new(Some(lock)),
        });
        // SAFETY: `out` is non-null and writable.
        unsafe { *out = Box::into_raw(handle) };
        Ok(dlm_status::DLM_OK)
    })
}

/// Whether the session is lost: its connection broke or a keep-alive
/// failed (the server ends it, if it has not yet, and its locks with it),
/// or it was closed.
///
/// # Safety
/// `session` must be a live session; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_session_is_lost(
    session: *const dlm_session,
    out: *mut bool,
) -> dlm_status {
    boundary(session, || {
        // SAFETY: per the contract.
        let s = unsafe { session_ref(session) }?;
        non_null(out, "out")?;
        let guard = s.session.lock().unwrap_or_else(PoisonError::into_inner);
        let lost = guard.as_ref().is_none_or(Session::is_lost);
        // SAFETY: `out` is non-null and writable.
        unsafe { put(out, lost) };
        Ok(dlm_status::DLM_OK)
    })
}

/// Ends the session now: its keep-alive stops and its connection closes,
/// so the server releases every lock bound to it (or closes each for its
/// lock-delay). Waits for a call on the session in progress. Idempotent;
/// later acquisitions fail with `DLM_ERR_LOCK_LOST`.
///
/// # Safety
/// `session` must be a live session.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_session_close(session: *const dlm_session) -> dlm_status {
    boundary(session, || {
        // SAFETY: per the contract.
        let s = unsafe { session_ref(session) }?;
        let taken = s
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(session) = taken {
            session.close();
        }
        Ok(dlm_status::DLM_OK)
    })
}

/// Copies into `buf` (NUL-terminated) what the calling thread's most
/// recent libdlm call said beyond its status, if that call was on this
/// session and failed (see `dlm_client_last_error`).
///
/// # Safety
/// `session` must be a live session; `buf` must hold `len` writable
/// bytes; `out_n` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_session_last_error(
    session: *const dlm_session,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> dlm_status {
    quiet(|| {
        if session.is_null() {
            return dlm_status::DLM_ERR_NULL_PARAMETER;
        }
        // SAFETY: per the contract.
        unsafe { copy_last_error(session, buf, len, out_n) }
    })
}

/// Ends the session (as `dlm_session_close`) and frees it. Its locks'
/// handles may be freed before or after. NULL is accepted.
///
/// # Safety
/// `session` must be NULL or a pointer from `dlm_client_session` not yet
/// freed, with no call on it still running.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_session_free(session: *mut dlm_session) {
    if !session.is_null() {
        quiet(|| {
            // SAFETY: created by Box::into_raw in dlm_client_session.
            drop(unsafe { Box::from_raw(session) });
            dlm_status::DLM_OK
        });
    }
}

/// Borrows the lock behind `lock`.
///
/// # Safety
/// `lock` must be NULL or a live pointer from `dlm_session_acquire`.
unsafe fn lock_ref<'a>(lock: *const dlm_session_lock) -> Result<&'a dlm_session_lock, Fail> {
    // SAFETY: per the caller's contract.
    unsafe { lock.as_ref() }.ok_or_else(|| Fail::null("the lock"))
}

/// The grant's fencing token: pass it to whatever the lock protects.
///
/// # Safety
/// `lock` must be a live session lock; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_session_lock_token(
    lock: *const dlm_session_lock,
    out: *mut u64,
) -> dlm_status {
    boundary(lock, || {
        // SAFETY: per the contract.
        let l = unsafe { lock_ref(lock) }?;
        non_null(out, "out")?;
        // SAFETY: `out` is non-null and writable.
        unsafe { put(out, l.token) };
        Ok(dlm_status::DLM_OK)
    })
}

/// Releases the lock (by its token, on the session's connection).
/// Idempotent: releasing again returns `DLM_OK`. `DLM_ERR_LOCK_LOST` if
/// the session is lost or closed (the server releases it, or keeps it
/// closed for its lock-delay), `DLM_ERR_NOT_OWNER` if it had expired.
///
/// # Safety
/// `lock` must be a live session lock.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_session_lock_release(lock: *const dlm_session_lock) -> dlm_status {
    boundary(lock, || {
        // SAFETY: per the contract.
        let l = unsafe { lock_ref(lock) }?;
        let taken = l.lock.lock().unwrap_or_else(PoisonError::into_inner).take();
        match taken {
            Some(held) => held
                .unlock()
                .map(|()| dlm_status::DLM_OK)
                .map_err(|e| match e {
                    Error::LockLost => Fail::new(
                        dlm_status::DLM_ERR_LOCK_LOST,
                        "the session is lost or closed",
                    ),
                    e => e.into(),
                }),
            None => Ok(dlm_status::DLM_OK),
        }
    })
}

/// Copies into `buf` (NUL-terminated) what the calling thread's most
/// recent libdlm call said beyond its status, if that call was on this
/// lock and failed (see `dlm_client_last_error`).
///
/// # Safety
/// `lock` must be a live session lock; `buf` must hold `len` writable
/// bytes; `out_n` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_session_lock_last_error(
    lock: *const dlm_session_lock,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> dlm_status {
    quiet(|| {
        if lock.is_null() {
            return dlm_status::DLM_ERR_NULL_PARAMETER;
        }
        // SAFETY: per the contract.
        unsafe { copy_last_error(lock, buf, len, out_n) }
    })
}

/// Frees the lock handle, releasing the lock first if still held (best
/// effort; use `dlm_session_lock_release` to learn the outcome). NULL is
/// accepted.
///
/// # Safety
/// `lock` must be NULL or a pointer from `dlm_session_acquire` not yet
/// freed, with no call on it still running.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_session_lock_free(lock: *mut dlm_session_lock) {
    if !lock.is_null() {
        quiet(|| {
            // SAFETY: created by Box::into_raw in dlm_session_acquire.
            let l = unsafe { Box::from_raw(lock) };
            let held = l.lock.into_inner().unwrap_or_else(PoisonError::into_inner);
            if let Some(held) = held {
                let _ = held.unlock();
            }
            dlm_status::DLM_OK
        });
    }
}
