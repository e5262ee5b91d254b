//! `dlm_lock`: a held lock, or a held permit of a semaphore or side of a
//! read/write lock, or several locks taken together (a multi-lock).

use std::ffi::{c_char, c_void};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::cancel::dlm_cancel;
use super::client::{client_ref, dlm_client};
use super::{Fail, boundary, copy_last_error, dlm_status, non_null, quiet, texts};
use dlm::{Error, Lock, MultiLock};

/// The most names `dlm_client_lock_all` takes at once.
pub const DLM_MAX_LOCK_ALL: usize = 16;

/// Flag for `dlm_client_lock`: extend the lock in the background every
/// third of its TTL until it is released or freed.
pub const DLM_LOCK_AUTO_RENEW: u32 = 1;

/// Called once when the lock is found lost: on libdlm's renewal thread when
/// auto-renewal fails for good, or on the calling thread inside the
/// `dlm_lock_*` call that finds the lock gone (an extension or release the
/// server refused, or any call after the lock's deadline passed). Must not
/// call back into the same `dlm_lock`.
pub type dlm_lost_fn = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

/// A held lock, or several taken together by `dlm_client_lock_all`.
/// **Thread-safe**: its functions may be called from several threads
/// (they take turns). Freeing it releases the lock (every lock) if still
/// held.
pub struct dlm_lock {
    lock: Mutex<Held>,
}

/// What a `dlm_lock` holds.
enum Held {
    One(Lock),
    All(MultiLock),
}

impl Held {
    /// The first (or only) fencing token; 0 if the server gives none.
    fn token(&self) -> u64 {
        match self {
            Self::One(l) => l.token().map_or(0, |t| t.0),
            Self::All(m) => m.tokens().first().copied().flatten().map_or(0, |t| t.0),
        }
    }

    /// Every fencing token, in the order of the names (0 where none).
    fn tokens(&self) -> Vec<u64> {
        match self {
            Self::One(l) => vec![l.token().map_or(0, |t| t.0)],
            Self::All(m) => m.tokens().iter().map(|t| t.map_or(0, |t| t.0)).collect(),
        }
    }

    /// Time left before the (first) lock expires unless extended.
    fn remaining(&self) -> Duration {
        match self {
            Self::One(l) => l.remaining(),
            Self::All(m) => m.remaining(),
        }
    }

    /// Whether the lock (any of them) is known lost.
    fn is_lost(&self) -> bool {
        match self {
            Self::One(l) => l.is_lost(),
            Self::All(m) => m.is_lost(),
        }
    }

    /// Extends every lock held, as the Rust client does.
    fn extend(&mut self, ttl: Duration) -> Result<(), Error> {
        match self {
            Self::One(l) => l.extend(ttl),
            Self::All(m) => m.extend(ttl),
        }
    }

    /// Releases every lock held, as the Rust client does.
    fn release(&mut self) -> Result<(), Error> {
        match self {
            Self::One(l) => l.release(),
            Self::All(m) => m.release(),
        }
    }
}

/// Boxes `held` into a new handle at `out`.
///
/// # Safety
/// `out` must be non-null and writable.
unsafe fn hand_out(held: Held, out: *mut *mut dlm_lock) {
    let handle = Box::new(dlm_lock {
        lock: Mutex::new(held),
    });
    // SAFETY: per the contract.
    unsafe { *out = Box::into_raw(handle) };
}

struct Callback {
    f: unsafe extern "C" fn(*mut c_void),
    userdata: *mut c_void,
}

impl Callback {
    fn call(&self) {
        // SAFETY: the caller of dlm_client_lock promised the callback may be
        // called from this thread with this userdata.
        unsafe { (self.f)(self.userdata) };
    }
}

// SAFETY: the C caller promises (dlm_client_lock's contract) that the
// callback and its userdata may be used from libdlm's renewal thread.
unsafe impl Send for Callback {}
// SAFETY: as above.
unsafe impl Sync for Callback {}

/// Which request `acquire` makes.
#[derive(Clone, Copy)]
enum Kind {
    Lock,
    Semaphore(u32),
    Read,
    Write,
}

/// The body of `dlm_client_lock` and its semaphore and read/write lock
/// siblings.
///
/// # Safety
/// As for `dlm_client_lock`.
#[allow(clippy::too_many_arguments)]
unsafe fn acquire(
    kind: Kind,
    client: *const dlm_client,
    name: *const c_char,
    name_len: usize,
    ttl_ms: u64,
    wait_ms: u64,
    flags: u32,
    cancel: *const dlm_cancel,
    on_lost: dlm_lost_fn,
    userdata: *mut c_void,
    out: *mut *mut dlm_lock,
) -> dlm_status {
    boundary(client, || {
        // SAFETY: per the contract.
        let c = unsafe { client_ref(client) }?;
        non_null(out, "out")?;
        if flags & !DLM_LOCK_AUTO_RENEW != 0 {
            return Err(Fail::new(
                dlm_status::DLM_ERR_INVALID_ARGUMENT,
                "unknown flags",
            ));
        }
        // SAFETY: per the contract.
        let name = unsafe { super::name(name, name_len) }?;
        let req = match kind {
            Kind::Lock => c.client.lock(name),
            Kind::Semaphore(permits) => c.client.semaphore(name, permits),
            Kind::Read => c.client.read_lock(name),
            Kind::Write => c.client.write_lock(name),
        };
        let mut req = req
            .ttl(Duration::from_millis(ttl_ms))
            .wait(Duration::from_millis(wait_ms))
            .auto_renew(flags & DLM_LOCK_AUTO_RENEW != 0);
        // SAFETY: per the contract.
        if let Some(cancel) = unsafe { cancel.as_ref() } {
            req = req.cancel(&cancel.token);
        }
        if let Some(f) = on_lost {
            let cb = Callback { f, userdata };
            req = req.on_lost(move || cb.call());
        }
        let lock = req.acquire()?;
        // SAFETY: `out` is non-null and writable.
        unsafe { hand_out(Held::One(lock), out) };
        Ok(dlm_status::DLM_OK)
    })
}

/// Acquires `name` for `ttl_ms` milliseconds.
///
/// With `wait_ms` 0, one attempt: `DLM_ERR_NOT_OWNER` if another owner
/// holds it. Otherwise the call waits in the server's first-come,
/// first-served queue up to `wait_ms`, then fails with `DLM_ERR_TIMEOUT`;
/// another thread can abort the wait with `dlm_cancel_trigger` on `cancel`
/// (`DLM_ERR_CANCELLED`). `flags` may hold `DLM_LOCK_AUTO_RENEW`.
/// `on_lost(userdata)` (may be NULL) runs once if the lock is found lost
/// (see [`dlm_lost_fn`]).
///
/// # Safety
/// `client` must be a live client; `name` must point to `name_len` bytes;
/// `cancel` NULL or a live cancel handle; `on_lost` and `userdata` usable
/// from another thread until the lock is freed; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_client_lock(
    client: *const dlm_client,
    name: *const c_char,
    name_len: usize,
    ttl_ms: u64,
    wait_ms: u64,
    flags: u32,
    cancel: *const dlm_cancel,
    on_lost: dlm_lost_fn,
    userdata: *mut c_void,
    out: *mut *mut dlm_lock,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        acquire(
            Kind::Lock,
            client,
            name,
            name_len,
            ttl_ms,
            wait_ms,
            flags,
            cancel,
            on_lost,
            userdata,
            out,
        )
    }
}

/// Takes one permit of the counting semaphore `name` of `permits` permits
/// (at least 1) for `ttl_ms` milliseconds, as `dlm_client_lock` takes a
/// lock (the same wait, cancel, flags and lost callback). Each acquisition
/// is a hold of its own with its own fencing token (the same client may
/// hold several permits); its `dlm_lock` extends and releases that hold
/// only. Waiters are served first come, first served. The size is fixed by
/// the first use while anyone holds or waits: another size, or a name that
/// is another kind of lock, fails with `DLM_ERR_CONFLICT` (its detail in
/// `dlm_client_last_error`); `permits` 0 is `DLM_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// As for `dlm_client_lock`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_client_semaphore(
    client: *const dlm_client,
    name: *const c_char,
    name_len: usize,
    permits: u32,
    ttl_ms: u64,
    wait_ms: u64,
    flags: u32,
    cancel: *const dlm_cancel,
    on_lost: dlm_lost_fn,
    userdata: *mut c_void,
    out: *mut *mut dlm_lock,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        acquire(
            Kind::Semaphore(permits),
            client,
            name,
            name_len,
            ttl_ms,
            wait_ms,
            flags,
            cancel,
            on_lost,
            userdata,
            out,
        )
    }
}

/// Takes the shared (read) side of the read/write lock `name`, as
/// `dlm_client_lock` takes a lock: held beside other readers, never beside
/// a writer. Waiters form one first-come, first-served queue, so a writer
/// that waits is served before readers that come after it. A name that is
/// another kind of lock fails with `DLM_ERR_CONFLICT`.
///
/// # Safety
/// As for `dlm_client_lock`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_client_read_lock(
    client: *const dlm_client,
    name: *const c_char,
    name_len: usize,
    ttl_ms: u64,
    wait_ms: u64,
    flags: u32,
    cancel: *const dlm_cancel,
    on_lost: dlm_lost_fn,
    userdata: *mut c_void,
    out: *mut *mut dlm_lock,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        acquire(
            Kind::Read,
            client,
            name,
            name_len,
            ttl_ms,
            wait_ms,
            flags,
            cancel,
            on_lost,
            userdata,
            out,
        )
    }
}

/// Takes the exclusive (write) side of the read/write lock `name`, as
/// `dlm_client_lock` takes a lock: held alone. A name that is another kind
/// of lock fails with `DLM_ERR_CONFLICT`.
///
/// # Safety
/// As for `dlm_client_lock`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_client_write_lock(
    client: *const dlm_client,
    name: *const c_char,
    name_len: usize,
    ttl_ms: u64,
    wait_ms: u64,
    flags: u32,
    cancel: *const dlm_cancel,
    on_lost: dlm_lost_fn,
    userdata: *mut c_void,
    out: *mut *mut dlm_lock,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        acquire(
            Kind::Write,
            client,
            name,
            name_len,
            ttl_ms,
            wait_ms,
            flags,
            cancel,
            on_lost,
            userdata,
            out,
        )
    }
}

/// Takes the `count` exclusive locks `names` (each `name_lens[i]` bytes)
/// for `ttl_ms` milliseconds, **all or none** (PROTOCOL.md section 8,
/// "Multi-locks"): one `dlm_lock` for the set, whose fencing tokens, one
/// per name in the order given, `dlm_lock_tokens` reads (distinct, and
/// above every token before them). Each name is then an ordinary lock of
/// its own; `dlm_lock_extend` extends every one (each by its token),
/// `dlm_lock_release` and `dlm_lock_free` release every one.
///
/// With `wait_ms` 0, one attempt: `DLM_ERR_NOT_OWNER` (nothing taken) if
/// any name is held or awaited by another, or already held by this
/// client. Otherwise the set waits in every name's queue at once, and is
/// granted all together when first in line on each, up to `wait_ms`
/// (`DLM_ERR_TIMEOUT`); `cancel` aborts the wait (`DLM_ERR_CANCELLED`).
/// `flags` may hold `DLM_LOCK_AUTO_RENEW` (every lock renewed); `on_lost`
/// runs once if any of them is found lost. From 1 to `DLM_MAX_LOCK_ALL`
/// distinct names, else `DLM_ERR_INVALID_ARGUMENT`; a name that is a
/// semaphore or read/write lock is `DLM_ERR_CONFLICT`; a server without
/// multi-locks (JackrabbitDLM) is `DLM_ERR_BAD_REQUEST`.
///
/// # Safety
/// `client` must be a live client; `names` and `name_lens` must point to
/// `count` elements, each name to its length in readable bytes; `cancel`,
/// `on_lost`, `userdata` and `out` as for `dlm_client_lock`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_client_lock_all(
    client: *const dlm_client,
    names: *const *const c_char,
    name_lens: *const usize,
    count: usize,
    ttl_ms: u64,
    wait_ms: u64,
    flags: u32,
    cancel: *const dlm_cancel,
    on_lost: dlm_lost_fn,
    userdata: *mut c_void,
    out: *mut *mut dlm_lock,
) -> dlm_status {
    boundary(client, || {
        // SAFETY: per the contract.
        let c = unsafe { client_ref(client) }?;
        non_null(out, "out")?;
        if flags & !DLM_LOCK_AUTO_RENEW != 0 {
            return Err(Fail::new(
                dlm_status::DLM_ERR_INVALID_ARGUMENT,
                "unknown flags",
            ));
        }
        // SAFETY: per the contract.
        let names = unsafe { texts(names, name_lens, count, "the names") }?;
        let mut req = c
            .client
            .lock_all(&names)
            .ttl(Duration::from_millis(ttl_ms))
            .wait(Duration::from_millis(wait_ms))
            .auto_renew(flags & DLM_LOCK_AUTO_RENEW != 0);
        // SAFETY: per the contract.
        if let Some(cancel) = unsafe { cancel.as_ref() } {
            req = req.cancel(&cancel.token);
        }
        if let Some(f) = on_lost {
            let cb = Callback { f, userdata };
            req = req.on_lost(move || cb.call());
        }
        let all = req.acquire()?;
        // SAFETY: `out` is non-null and writable.
        unsafe { hand_out(Held::All(all), out) };
        Ok(dlm_status::DLM_OK)
    })
}

/// Runs `f` on the lock, recording the outcome for this thread.
///
/// # Safety
/// `lock` must be NULL or a live lock.
unsafe fn with(
    lock: *const dlm_lock,
    f: impl FnOnce(&mut Held) -> Result<(), Error>,
) -> dlm_status {
    boundary(lock, || {
        // SAFETY: per the contract.
        let l = unsafe { lock.as_ref() }.ok_or_else(|| Fail::null("the lock"))?;
        let mut guard = l.lock.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)?;
        Ok(dlm_status::DLM_OK)
    })
}

/// Writes what `f` reads from the lock to `out`, which must not be NULL.
///
/// # Safety
/// `lock` must be NULL or a live lock; `out` NULL or writable.
unsafe fn read_into<T>(
    lock: *const dlm_lock,
    out: *mut T,
    f: impl FnOnce(&Held) -> T,
) -> dlm_status {
    if out.is_null() {
        return boundary(lock, || Err(Fail::null("out")));
    }
    // SAFETY: forwarded contract; `out` is non-null.
    unsafe {
        with(lock, |l| {
            *out = f(l);
            Ok(())
        })
    }
}

/// The grant's fencing token: pass it to whatever the lock protects. 0 if
/// the server gives no tokens (JackrabbitDLM): nothing can fence then, and
/// extensions are plain re-locks, sent only before the lock's deadline.
/// Of a multi-lock, its first name's (see `dlm_lock_tokens`).
///
/// # Safety
/// `lock` must be a live lock; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_lock_token(lock: *const dlm_lock, out: *mut u64) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe { read_into(lock, out, Held::token) }
}

/// Copies the fencing tokens into `out` (`cap` elements), one per name in
/// the order given to `dlm_client_lock_all` (one for any other lock), and
/// their number into `out_count`. If `cap` is too small, returns
/// `DLM_ERR_BUFFER_TOO_SMALL` with only `out_count` written.
///
/// # Safety
/// `lock` must be a live lock; `out` must hold `cap` writable elements
/// (or be NULL with `cap` 0); `out_count` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_lock_tokens(
    lock: *const dlm_lock,
    out: *mut u64,
    cap: usize,
    out_count: *mut usize,
) -> dlm_status {
    boundary(lock, || {
        // SAFETY: per the contract.
        let l = unsafe { lock.as_ref() }.ok_or_else(|| Fail::null("the lock"))?;
        non_null(out_count, "out_count")?;
        if out.is_null() && cap > 0 {
            return Err(Fail::null("out (with a non-zero cap)"));
        }
        let tokens = l
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tokens();
        // SAFETY: `out_count` is non-null and writable.
        unsafe { *out_count = tokens.len() };
        if tokens.len() > cap {
            return Ok(dlm_status::DLM_ERR_BUFFER_TOO_SMALL);
        }
        // SAFETY: `out` holds `cap >= tokens.len()` writable elements.
        unsafe { std::ptr::copy_nonoverlapping(tokens.as_ptr(), out, tokens.len()) };
        Ok(dlm_status::DLM_OK)
    })
}

/// Milliseconds left before the lock (of a multi-lock, the first of its
/// locks) expires unless extended, by this process's clock; 0 once lost
/// or released.
///
/// # Safety
/// `lock` must be a live lock; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_lock_remaining_ms(lock: *const dlm_lock, out: *mut u64) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        read_into(lock, out, |l| {
            u64::try_from(l.remaining().as_millis()).unwrap_or(u64::MAX)
        })
    }
}

/// Whether the lock (of a multi-lock, any of its locks) is known lost: its
/// deadline passed without a confirmed extension (auto-renewal failing, or
/// none asked for), or an extension or release found it gone.
///
/// # Safety
/// `lock` must be a live lock; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_lock_is_lost(lock: *const dlm_lock, out: *mut bool) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe { read_into(lock, out, Held::is_lost) }
}

/// Extends this grant to `ttl_ms` from now. Never re-acquires: a lock that
/// expired or was released gives `DLM_ERR_LOCK_LOST`. A multi-lock
/// extends every lock, each by its token, and returns the first failure.
///
/// # Safety
/// `lock` must be a live lock.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_lock_extend(lock: *const dlm_lock, ttl_ms: u64) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe { with(lock, |l| l.extend(Duration::from_millis(ttl_ms))) }
}

/// Releases the lock (every lock of a multi-lock, returning the first
/// failure). Idempotent: releasing again returns `DLM_OK`.
/// `DLM_ERR_LOCK_LOST` if it had expired before this release.
///
/// # Safety
/// `lock` must be a live lock.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_lock_release(lock: *const dlm_lock) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe { with(lock, Held::release) }
}

/// Copies into `buf` (NUL-terminated) what the calling thread's most
/// recent libdlm call said beyond its status, if that call was on this lock
/// and failed (see `dlm_client_last_error`). Reading it records nothing.
///
/// # Safety
/// `lock` must be a live lock; `buf` must hold `len` writable bytes;
/// `out_n` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_lock_last_error(
    lock: *const dlm_lock,
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
/// effort; use `dlm_lock_release` to learn the outcome). NULL is accepted.
///
/// # Safety
/// `lock` must be NULL or a pointer from `dlm_client_lock` (or
/// `dlm_client_semaphore`, `dlm_client_read_lock`, `dlm_client_write_lock`,
/// `dlm_client_lock_all`)
/// not yet freed, with no call on it still running.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_lock_free(lock: *mut dlm_lock) {
    if !lock.is_null() {
        quiet(|| {
            // SAFETY: created by Box::into_raw in dlm_client_lock.
            drop(unsafe { Box::from_raw(lock) });
            dlm_status::DLM_OK
        });
    }
}
