//! Watches (PROTOCOL.md section 8, "Watches"): `dlm_event`, read from an
//! event line by `dlm_wire_event` (sans-I/O), or from a `dlm_watch`, a
//! subscription over a connection of its own that reconnects and resumes
//! by itself.

use std::ffi::{c_char, c_void};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::client::{client_ref, dlm_client};
use super::wire::{DLM_VALUE_STORED, DLM_WATCH_PREFIX, DLM_WATCH_SINCE, dlm_wire, wire_ref};
use super::{Fail, boundary, copy_last_error, dlm_status, non_null, put, quiet};
use dlm::{Error, Event, Subject, Watch, What};
use dlm_core::protocol::{Response, WatchEvent};

/// What happened, in a `dlm_event`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum dlm_event_what {
    /// A lock, a semaphore permit or a read/write hold was granted (at
    /// once or to a waiter).
    DLM_EVENT_GRANTED = 1,
    /// It was released (by its holder, an administrator, or taken back
    /// from a client that had gone).
    DLM_EVENT_RELEASED = 2,
    /// Its TTL (or lock-delay) ran out.
    DLM_EVENT_EXPIRED = 3,
    /// A value was stored (created or replaced).
    DLM_EVENT_PUT = 4,
    /// A value was erased by its owner.
    DLM_EVENT_ERASED = 5,
}

/// To what kind of name it happened, in a `dlm_event`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum dlm_event_kind {
    /// An exclusive lock.
    DLM_KIND_LOCK = 1,
    /// A permit of a semaphore (of `permits` permits).
    DLM_KIND_SEMAPHORE = 2,
    /// The shared (read) side of a read/write lock.
    DLM_KIND_READ = 3,
    /// The exclusive (write) side of a read/write lock.
    DLM_KIND_WRITE = 4,
    /// A data entry (a value).
    DLM_KIND_DATA = 5,
}

/// Bit of `dlm_event.has`: the event carries the grant's fencing token.
pub const DLM_EVENT_HAS_TOKEN: u32 = 1;
/// Bit of `dlm_event.has`: the owner (`owner`) is shown (this client may
/// read it: its own entries).
pub const DLM_EVENT_HAS_OWNER: u32 = 2;
/// Bit of `dlm_event.has`: the value (`value`) is shown (a put this
/// client may read).
pub const DLM_EVENT_HAS_VALUE: u32 = 4;
/// Bit of `dlm_event.has`: the value's own revision (`data_revision`).
pub const DLM_EVENT_HAS_DATA_REVISION: u32 = 8;

/// One change, as a watcher is told it. Text and value are not
/// NUL-terminated; they point into the buffer given to `dlm_wire_event`,
/// or into the `dlm_watch` that read it (valid until the next call on it).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct dlm_event {
    /// The change's revision: the same on every member of a cluster, and
    /// greater than every revision before it. Resume after it.
    pub revision: u64,
    /// What happened.
    pub what: dlm_event_what,
    /// To what kind of name.
    pub kind: dlm_event_kind,
    /// `DLM_EVENT_HAS_*` bits: which of the optional fields are set.
    pub has: u32,
    /// A semaphore's number of permits (`DLM_KIND_SEMAPHORE`; else 0).
    pub permits: u32,
    /// The grant's fencing token (locks and holds).
    pub token: u64,
    /// The value's own revision (`DLM_EVENT_PUT`).
    pub data_revision: u64,
    /// The lock name or data key (UTF-8).
    pub name: *const c_char,
    /// Length of `name` in bytes.
    pub name_len: usize,
    /// The owner ID (UTF-8), if shown; else NULL.
    pub owner: *const c_char,
    /// Length of `owner` in bytes.
    pub owner_len: usize,
    /// The value, decoded by the encoder (or the stored text with
    /// `DLM_VALUE_STORED`), if shown; else NULL.
    pub value: *const c_void,
    /// Length of `value` in bytes.
    pub value_len: usize,
}

/// An event's fields, owning its text.
struct Owned {
    revision: u64,
    what: What,
    subject: Subject,
    token: Option<u64>,
    data_revision: Option<u64>,
    name: String,
    owner: Option<String>,
    value: Option<Vec<u8>>,
}

impl From<Event> for Owned {
    fn from(e: Event) -> Self {
        Self {
            revision: e.revision,
            what: e.what,
            subject: e.subject,
            token: e.token.map(|t| t.0),
            data_revision: e.data_revision.map(|r| r.0),
            name: e.name,
            owner: e.owner,
            value: e.value,
        }
    }
}

impl Owned {
    /// The event, pointing into `self`.
    fn view(&self) -> dlm_event {
        let (what, kind, permits) = codes(self.what, self.subject);
        let mut has = 0;
        if self.token.is_some() {
            has |= DLM_EVENT_HAS_TOKEN;
        }
        if self.owner.is_some() {
            has |= DLM_EVENT_HAS_OWNER;
        }
        if self.value.is_some() {
            has |= DLM_EVENT_HAS_VALUE;
        }
        if self.data_revision.is_some() {
            has |= DLM_EVENT_HAS_DATA_REVISION;
        }
        let owner = self.owner.as_deref();
        let value = self.value.as_deref();
        dlm_event {
            revision: self.revision,
            what,
            kind,
            has,
            permits,
            token: self.token.unwrap_or(0),
            data_revision: self.data_revision.unwrap_or(0),
            name: self.name.as_ptr().cast(),
            name_len: self.name.len(),
            owner: owner.map_or(std::ptr::null(), |o| o.as_ptr().cast()),
            owner_len: owner.map_or(0, str::len),
            value: value.map_or(std::ptr::null(), |v| v.as_ptr().cast()),
            value_len: value.map_or(0, <[u8]>::len),
        }
    }
}

/// The C codes of an event's `what` and `subject`, and its permits.
fn codes(what: What, subject: Subject) -> (dlm_event_what, dlm_event_kind, u32) {
    let what = match what {
        What::Granted => dlm_event_what::DLM_EVENT_GRANTED,
        What::Released => dlm_event_what::DLM_EVENT_RELEASED,
        What::Expired => dlm_event_what::DLM_EVENT_EXPIRED,
        What::Put => dlm_event_what::DLM_EVENT_PUT,
        What::Erased => dlm_event_what::DLM_EVENT_ERASED,
    };
    let (kind, permits) = match subject {
        Subject::Lock => (dlm_event_kind::DLM_KIND_LOCK, 0),
        Subject::Semaphore(n) => (dlm_event_kind::DLM_KIND_SEMAPHORE, n),
        Subject::ReadWrite { write: false } => (dlm_event_kind::DLM_KIND_READ, 0),
        Subject::ReadWrite { write: true } => (dlm_event_kind::DLM_KIND_WRITE, 0),
        Subject::Data => (dlm_event_kind::DLM_KIND_DATA, 0),
    };
    (what, kind, permits)
}

/// Reads one line from a watching connection (after the answer to its
/// `DLM_CALL_WATCH`): an event, written to `out`, its name, owner and
/// value copied one after the other into `data` (which `out`'s pointers
/// then point into; `out->name_len + out->owner_len + out->value_len`
/// bytes). A value is decoded by the wire's encoder, or, with
/// `DLM_VALUE_STORED` in `flags`, left as the stored text. If `data` is
/// too small, returns `DLM_ERR_BUFFER_TOO_SMALL` with the needed size in
/// `*out_needed` (with the built-in encoders, `line_len` bytes are always
/// enough). `line` is not modified.
///
/// A line that is not an event is the server's last word on the watch:
/// `DLM_ERR_UNAVAILABLE` with its reason in `dlm_wire_last_error` (a
/// watcher that read too slowly is cut off, "watch cut off: too many
/// events unread"; a member that installed a snapshot or is stopping says
/// so), and, if the line says it, the last revision sent in
/// `out->revision`. The connection then closes: resume on a new one with
/// `DLM_WATCH_SINCE` and the last revision read.
///
/// # Safety
/// `wire` must be a live wire; `line` must point to `line_len` readable
/// bytes; `data` to `data_cap` writable bytes (or be NULL with `data_cap`
/// 0); `out` and `out_needed` must be writable (`out_needed` may be NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_wire_event(
    wire: *const dlm_wire,
    flags: u32,
    line: *const c_char,
    line_len: usize,
    data: *mut c_void,
    data_cap: usize,
    out: *mut dlm_event,
    out_needed: *mut usize,
) -> dlm_status {
    boundary(wire, || {
        // SAFETY: per the contract.
        let w = unsafe { wire_ref(wire) }?;
        non_null(out, "out")?;
        if data.is_null() && data_cap > 0 {
            return Err(Fail::null("data (with a non-zero data_cap)"));
        }
        if flags & !DLM_VALUE_STORED != 0 {
            return Err(Fail::new(
                dlm_status::DLM_ERR_INVALID_ARGUMENT,
                "unknown flags",
            ));
        }
        // SAFETY: per the contract.
        let line = unsafe { super::wire::line(line, line_len) }?;
        if !WatchEvent::is_event(line) {
            return super::wire::with_copy(line, |copy| {
                let (why, revision) = match Response::parse(copy) {
                    Ok((_, r)) => (
                        r.error.map_or_else(
                            || format!("the server ended the watch ({:?})", r.status),
                            |e| format!("the server ended the watch: {e}"),
                        ),
                        r.revision,
                    ),
                    _ => ("a line that is neither an event nor an answer".into(), None),
                };
                if let Some(r) = revision {
                    // SAFETY: `out` is non-null and writable.
                    unsafe { (*out).revision = r.0 };
                }
                Err(Fail::new(dlm_status::DLM_ERR_UNAVAILABLE, &why))
            });
        }
        let owned = super::wire::with_copy(line, |copy| -> Result<Owned, Fail> {
            let e = WatchEvent::parse(copy).map_err(|e| {
                Fail::new(
                    dlm_status::DLM_ERR_PROTOCOL,
                    &format!("a bad event line: {e}"),
                )
            })?;
            let value = match e.value {
                Some(v) if flags & DLM_VALUE_STORED != 0 => Some(v.as_bytes().to_vec()),
                Some(v) => Some(w.encoder.decode(e.name, v)?),
                None => None,
            };
            Ok(Owned {
                revision: e.revision,
                what: e.what,
                subject: e.subject,
                token: e.token.map(|t| t.0),
                data_revision: e.data_revision.map(|r| r.0),
                name: e.name.to_owned(),
                owner: e.owner.map(str::to_owned),
                value,
            })
        })?;
        let owner = owned.owner.as_deref().unwrap_or("").as_bytes();
        let value = owned.value.as_deref().unwrap_or(&[]);
        let needed = owned.name.len() + owner.len() + value.len();
        // SAFETY: NULL or writable per the contract.
        unsafe { put(out_needed, needed) };
        if needed > data_cap {
            return Ok(dlm_status::DLM_ERR_BUFFER_TOO_SMALL);
        }
        let mut event = owned.view();
        let base = data.cast::<u8>();
        let mut at = 0;
        let mut place = |part: &[u8]| -> *const u8 {
            let p = base.wrapping_add(at);
            if !part.is_empty() {
                // SAFETY: `data` holds `data_cap >= needed` bytes, and the
                // parts together are `needed` bytes.
                unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), p, part.len()) };
            }
            at += part.len();
            p
        };
        event.name = place(owned.name.as_bytes()).cast();
        let o = place(owner);
        if owned.owner.is_some() {
            event.owner = o.cast();
        }
        let v = place(value);
        if owned.value.is_some() {
            event.value = v.cast();
        }
        // SAFETY: `out` is non-null and writable.
        unsafe { put(out, event) };
        Ok(dlm_status::DLM_OK)
    })
}

/// A watch: a subscription to the changes of a name or a prefix, over a
/// connection of its own (see `dlm_client_watch`). Its calls take turns;
/// an event read by `dlm_watch_next` points into it until the next call
/// on it.
pub struct dlm_watch {
    state: Mutex<State>,
}

struct State {
    watch: Watch,
    last: Option<Owned>,
}

/// Subscribes to the changes of `scope` (a name, or with
/// `DLM_WATCH_PREFIX` in `flags` every name that starts with it; an
/// empty prefix is every name): locks, semaphore permits and read/write
/// holds granted, released or expired, values put, erased or expired,
/// each with its revision. With `DLM_WATCH_SINCE`, every event after
/// `since` comes first (resuming without a gap), else only changes from
/// now. The watch has a connection of its own, to any member of the
/// client's servers (a follower serves watches too).
///
/// On success `*out_revision` (if not NULL) is the revision the watch
/// starts after. If the server no longer keeps the events since `since`
/// (or `since` is ahead of it), the call fails with `DLM_ERR_CONFLICT`
/// and `*out_revision` is the current revision: read the state again,
/// then watch from that revision. A server without watches is
/// `DLM_ERR_BAD_REQUEST`; no server reachable `DLM_ERR_UNAVAILABLE`.
///
/// # Safety
/// `client` must be a live client; `scope` must point to `scope_len`
/// bytes (or be NULL with `scope_len` 0); `out_revision` NULL or
/// writable; `out` writable. Free the watch with `dlm_watch_free` before
/// the client.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_client_watch(
    client: *const dlm_client,
    scope: *const c_char,
    scope_len: usize,
    flags: u32,
    since: u64,
    out_revision: *mut u64,
    out: *mut *mut dlm_watch,
) -> dlm_status {
    boundary(client, || {
        // SAFETY: per the contract.
        let c = unsafe { client_ref(client) }?;
        non_null(out, "out")?;
        if flags & !(DLM_WATCH_PREFIX | DLM_WATCH_SINCE) != 0 {
            return Err(Fail::new(
                dlm_status::DLM_ERR_INVALID_ARGUMENT,
                "unknown flags",
            ));
        }
        let builder = if flags & DLM_WATCH_PREFIX != 0 {
            // SAFETY: per the contract.
            let prefix = unsafe { super::text(scope, scope_len, "the prefix") }?;
            c.client.watch_prefix(prefix)
        } else {
            // SAFETY: per the contract.
            let name = unsafe { super::name(scope, scope_len) }?;
            c.client.watch_name(name)?
        };
        let builder = if flags & DLM_WATCH_SINCE != 0 {
            builder.since(since)
        } else {
            builder
        };
        let watch = match builder.start() {
            Ok(w) => w,
            Err(e) => return Err(conflict(e, out_revision)),
        };
        // SAFETY: NULL or writable per the contract.
        unsafe { put(out_revision, watch.revision().unwrap_or(0)) };
        let handle = Box::new(dlm_watch {
            state: Mutex::new(State { watch, last: None }),
        });
        // SAFETY: `out` is non-null and writable.
        unsafe { *out = Box::into_raw(handle) };
        Ok(dlm_status::DLM_OK)
    })
}

/// The failure of a watch's call; a lost history writes the current
/// revision through `current` (if not NULL) and says what to do.
fn conflict(e: Error, current: *mut u64) -> Fail {
    match e {
        Error::Conflict { current: now } => {
            // SAFETY: the callers' contracts: NULL or writable.
            unsafe { put(current, now.0) };
            Fail::new(
                dlm_status::DLM_ERR_CONFLICT,
                &format!(
                    "the server no longer keeps the events since then: read the state again \
                     (current revision {})",
                    now.0
                ),
            )
        }
        e => e.into(),
    }
}

/// Borrows the watch behind `watch`.
///
/// # Safety
/// `watch` must be NULL or a live pointer from `dlm_client_watch`.
unsafe fn watch_ref<'a>(watch: *const dlm_watch) -> Result<&'a dlm_watch, Fail> {
    // SAFETY: per the caller's contract.
    unsafe { watch.as_ref() }.ok_or_else(|| Fail::null("the watch"))
}

/// Waits up to `timeout_ms` for the watch's next event and writes it to
/// `out` (its name, owner and value point into the watch, valid until the
/// next call on it). `UINT64_MAX` waits as long as it takes; 0 only
/// takes an event already received. Events come in the order of their
/// revisions, each once.
///
/// `DLM_ERR_TIMEOUT`: none came in time (call again). When the
/// connection fails, or the server cuts the watcher off because it read
/// too slowly, the watch reconnects (to any of the client's servers) and
/// resumes after the last revision it gave, by itself, missing nothing.
/// If the server no longer keeps those events, the call fails with
/// `DLM_ERR_CONFLICT` and `out->revision` is the current revision: the
/// watch has missed changes, so read the state again; the next call goes
/// on from the current revision. `DLM_ERR_UNAVAILABLE` if no server took
/// the watch again (the next call tries again).
///
/// # Safety
/// `watch` must be a live watch; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_watch_next(
    watch: *const dlm_watch,
    timeout_ms: u64,
    out: *mut dlm_event,
) -> dlm_status {
    boundary(watch, || {
        // SAFETY: per the contract.
        let w = unsafe { watch_ref(watch) }?;
        non_null(out, "out")?;
        let mut s = w.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.last = None;
        let forever = timeout_ms == u64::MAX
            || Instant::now()
                .checked_add(Duration::from_millis(timeout_ms))
                .is_none();
        let next = if forever {
            s.watch.next_event().map(Some)
        } else {
            s.watch.next_timeout(Duration::from_millis(timeout_ms))
        };
        // SAFETY: `out` is non-null and writable.
        let current = unsafe { &raw mut (*out).revision };
        match next {
            Ok(Some(e)) => {
                let owned = Owned::from(e);
                // SAFETY: `out` is non-null and writable.
                unsafe { put(out, owned.view()) };
                s.last = Some(owned);
                Ok(dlm_status::DLM_OK)
            }
            Ok(None) => Err(Fail::new(
                dlm_status::DLM_ERR_TIMEOUT,
                "no event within the timeout",
            )),
            Err(e) => Err(conflict(e, current)),
        }
    })
}

/// The last revision the watch gave (or, before its first event, the one
/// it started after): what to resume from with `DLM_WATCH_SINCE`. 0 after
/// `DLM_ERR_CONFLICT` until the watch is subscribed again.
///
/// # Safety
/// `watch` must be a live watch; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_watch_revision(watch: *const dlm_watch, out: *mut u64) -> dlm_status {
    boundary(watch, || {
        // SAFETY: per the contract.
        let w = unsafe { watch_ref(watch) }?;
        non_null(out, "out")?;
        let s = w.state.lock().unwrap_or_else(PoisonError::into_inner);
        // SAFETY: `out` is non-null and writable.
        unsafe { put(out, s.watch.revision().unwrap_or(0)) };
        Ok(dlm_status::DLM_OK)
    })
}

/// Copies into `buf` (NUL-terminated) what the calling thread's most
/// recent libdlm call said beyond its status, if that call was on this
/// watch and failed (see `dlm_client_last_error`).
///
/// # Safety
/// `watch` must be a live watch; `buf` must hold `len` writable bytes;
/// `out_n` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_watch_last_error(
    watch: *const dlm_watch,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> dlm_status {
    quiet(|| {
        if watch.is_null() {
            return dlm_status::DLM_ERR_NULL_PARAMETER;
        }
        // SAFETY: per the contract.
        unsafe { copy_last_error(watch, buf, len, out_n) }
    })
}

/// Ends the watch (its connection closes) and frees it. NULL is accepted.
///
/// # Safety
/// `watch` must be NULL or a pointer from `dlm_client_watch` not yet
/// freed, with no call on it still running.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_watch_free(watch: *mut dlm_watch) {
    if !watch.is_null() {
        quiet(|| {
            // SAFETY: created by Box::into_raw in dlm_client_watch.
            drop(unsafe { Box::from_raw(watch) });
            dlm_status::DLM_OK
        });
    }
}
