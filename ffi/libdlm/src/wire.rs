//! `dlm_wire`: dlm's client without sockets. It writes request lines into a
//! caller's buffer and reads the server's answer lines into typed results,
//! by dlm-core's rules, so a program that does its own I/O (an event loop,
//! Go's netpoller) behaves exactly as `dlm_client` does. Nothing here
//! blocks, reads a clock or touches the network.
//!
//! ```text
//!   dlm_request ─▶ dlm_wire_write ─▶ line ─▶ (your socket) ─▶ server
//!   dlm_answer  ◀─ dlm_wire_read  ◀─ line ◀─ (your socket)
//!   a Lock's answer ─▶ dlm_lease_new ─▶ dlm_lease (see lease.rs)
//! ```

use std::cell::RefCell;
use std::ffi::{c_char, c_void};
use std::sync::Arc;

use super::options::dlm_options;
use super::{Fail, boundary, bytes, copy_last_error, dlm_status, non_null, put, quiet, write_text};
use crate::client::dlm_lock_state;
use dlm::{Encoder, Error, Framing, random_id};
use dlm_core::client::{self as core_client, answer};
use dlm_core::protocol::{
    self as protocol, BufferTooSmall, Credentials, Names, Out, Request, Resource, Response,
    Revision, SessionBind, Shape, SliceOut, Status, Token, WatchScope,
};
use dlm_core::time::Ttl;

/// Which call a `dlm_request` makes (its `call` field).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum dlm_call {
    /// Acquire `name` for `ttl_ms`, waiting up to `wait_ms` in the server's
    /// queue (0: one attempt). Read its answer with `dlm_lease_new`.
    DLM_CALL_LOCK = 1,
    /// Release `name` by name (fenced to `token` if it is not 0).
    DLM_CALL_UNLOCK = 2,
    /// Ask who holds `name`.
    DLM_CALL_TEST_LOCK = 3,
    /// Store `value` under `name` for `ttl_ms` (compare-and-set against
    /// `revision` with `DLM_PUT_IF`).
    DLM_CALL_PUT = 4,
    /// Read `name`.
    DLM_CALL_GET = 5,
    /// Delete `name`.
    DLM_CALL_ERASE = 6,
    /// The server's version string.
    DLM_CALL_VERSION = 7,
    /// The server's statistics.
    DLM_CALL_STATS = 8,
    /// Take one permit of the counting semaphore `name` of `permits`
    /// permits for `ttl_ms`, waiting up to `wait_ms` (as `DLM_CALL_LOCK`).
    /// Each acquisition is a hold of its own with its own token. Read its
    /// answer with `dlm_lease_new`.
    DLM_CALL_SEMAPHORE = 9,
    /// Take the shared (read) side of the read/write lock `name` (as
    /// `DLM_CALL_LOCK`). Read its answer with `dlm_lease_new`.
    DLM_CALL_READ_LOCK = 10,
    /// Take the exclusive (write) side of the read/write lock `name` (as
    /// `DLM_CALL_LOCK`). Read its answer with `dlm_lease_new`.
    DLM_CALL_WRITE_LOCK = 11,
    /// Open the connection's server session with a TTL of `ttl_ms`, or,
    /// if it has one, keep it alive (PROTOCOL.md section 8, "Sessions and
    /// lock-delay"). Send it on the connection the session is to live on,
    /// at least once per TTL; `DLM_LOCK_SESSION` binds a lock sent on that
    /// connection to it. No `name`. A server without sessions
    /// (JackrabbitDLM) is `DLM_ERR_BAD_REQUEST`. With `DLM_LOCK_SESSION`
    /// it is a keep-alive, which never opens a session: if the server
    /// ended it (its TTL passed), the answer is `DLM_ERR_BAD_REQUEST` (the
    /// session and its grants are lost) instead of a new session.
    DLM_CALL_SESSION = 12,
    /// Watch `name` (its lock and its value), or, with `DLM_WATCH_PREFIX`,
    /// every name that starts with `name` (which may then be empty), from
    /// now, or after `revision` with `DLM_WATCH_SINCE` (PROTOCOL.md
    /// section 8, "Watches"). Send it on a connection of its own, with no
    /// request in flight: the connection then only carries event lines
    /// (read each with `dlm_wire_event`). Its answer, read by
    /// `dlm_wire_read`, is the revision the watch starts after
    /// (`out->revision`), or `DLM_ERR_CONFLICT` with the current revision
    /// in `out->revision` if the server no longer keeps the events since
    /// `revision` (read the state again, then watch from there), or
    /// `DLM_ERR_UNAVAILABLE` if this member cannot serve a watch now
    /// (try another, or again later).
    DLM_CALL_WATCH = 13,
    /// Take the `names_count` exclusive locks `names` for `ttl_ms`, all or
    /// none, waiting up to `wait_ms` in every name's queue at once (0: one
    /// attempt); PROTOCOL.md section 8, "Multi-locks". No `name`. Read its
    /// answer with `dlm_lease_new_all`: one lease per name, each extended
    /// and released as a single lock's. A server without multi-locks
    /// (JackrabbitDLM) is `DLM_ERR_BAD_REQUEST`.
    DLM_CALL_LOCK_ALL = 14,
}

impl dlm_call {
    const ALL: [Self; 14] = [
        Self::DLM_CALL_LOCK,
        Self::DLM_CALL_UNLOCK,
        Self::DLM_CALL_TEST_LOCK,
        Self::DLM_CALL_PUT,
        Self::DLM_CALL_GET,
        Self::DLM_CALL_ERASE,
        Self::DLM_CALL_VERSION,
        Self::DLM_CALL_STATS,
        Self::DLM_CALL_SEMAPHORE,
        Self::DLM_CALL_READ_LOCK,
        Self::DLM_CALL_WRITE_LOCK,
        Self::DLM_CALL_SESSION,
        Self::DLM_CALL_WATCH,
        Self::DLM_CALL_LOCK_ALL,
    ];

    fn from_u32(n: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|c| *c as u32 == n)
    }

    /// Whether the call is about a name.
    fn named(self) -> bool {
        !matches!(
            self,
            Self::DLM_CALL_VERSION
                | Self::DLM_CALL_STATS
                | Self::DLM_CALL_SESSION
                | Self::DLM_CALL_LOCK_ALL
        )
    }

    /// Whether the call acquires (its answer makes a lease).
    pub(crate) fn acquires(self) -> bool {
        matches!(
            self,
            Self::DLM_CALL_LOCK
                | Self::DLM_CALL_SEMAPHORE
                | Self::DLM_CALL_READ_LOCK
                | Self::DLM_CALL_WRITE_LOCK
        )
    }

    /// The flags the call accepts.
    fn flags(self) -> u32 {
        match self {
            Self::DLM_CALL_LOCK
            | Self::DLM_CALL_SEMAPHORE
            | Self::DLM_CALL_READ_LOCK
            | Self::DLM_CALL_WRITE_LOCK => super::DLM_LOCK_AUTO_RENEW | DLM_LOCK_SESSION,
            Self::DLM_CALL_PUT => {
                DLM_PUT_IF | DLM_VALUE_STORED | super::DLM_PUT_READERS_ANY | DLM_PUT_READERS
            }
            Self::DLM_CALL_LOCK_ALL => super::DLM_LOCK_AUTO_RENEW,
            Self::DLM_CALL_WATCH => DLM_WATCH_PREFIX | DLM_WATCH_SINCE,
            Self::DLM_CALL_GET => DLM_VALUE_STORED,
            Self::DLM_CALL_SESSION => DLM_LOCK_SESSION,
            _ => 0,
        }
    }
}

/// Flag of a `DLM_CALL_PUT` request: compare-and-set, storing the value
/// only if the stored revision is the request's `revision` (0: only if
/// there is none).
pub const DLM_PUT_IF: u32 = 2;

/// Flag of a `DLM_CALL_PUT` or `DLM_CALL_GET` request: skip the wire's
/// encoder. A put's `value` is then the text to store as it is (UTF-8), and
/// a get hands back the stored text undecoded, for a program that encodes
/// values itself.
pub const DLM_VALUE_STORED: u32 = 4;

/// Flag of an acquiring request (`DLM_CALL_LOCK`, `DLM_CALL_SEMAPHORE`,
/// `DLM_CALL_READ_LOCK`, `DLM_CALL_WRITE_LOCK`): bind the grant to the
/// session of the connection it is sent on (opened by `DLM_CALL_SESSION`
/// there), so that it ends when the session does, or, with a non-zero
/// `lock_delay_ms`, stays closed to everyone for that long first. A
/// server that ignores the binding (JackrabbitDLM) makes `dlm_lease_new`
/// fail with `DLM_ERR_BAD_REQUEST`. On `DLM_CALL_SESSION`: a keep-alive
/// (see there).
pub const DLM_LOCK_SESSION: u32 = 8;

/// Flag of a `DLM_CALL_WATCH` request: `name` is a prefix (empty: every
/// name), not one name.
pub const DLM_WATCH_PREFIX: u32 = 16;

/// Flag of a `DLM_CALL_WATCH` request: resume after `revision` (every
/// event after it first), instead of starting from now.
pub const DLM_WATCH_SINCE: u32 = 32;

/// Flag of a `DLM_CALL_PUT` request (and of `dlm_client_put_shared`): any
/// client may read the value (PROTOCOL.md section 8, "Shared values").
pub const DLM_PUT_READERS_ANY: u32 = 64;

/// Flag of a `DLM_CALL_PUT` request: the `readers_count` identities
/// `readers` may read the value (at most `DLM_MAX_READERS`). Without it,
/// or `DLM_PUT_READERS_ANY`, the value is its owner's alone.
pub const DLM_PUT_READERS: u32 = 128;

/// The most identities a shared value names as readers.
pub const DLM_MAX_READERS: usize = 32;

/// The longest lock-delay a server accepts, in milliseconds.
pub const DLM_MAX_LOCK_DELAY_MS: u64 = 60_000;

/// One call, as `dlm_wire_write` writes it and `dlm_wire_read` reads its
/// answer (pass the same request to both). Zero-initialise it and set what
/// the call needs; the other fields are ignored.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct dlm_request {
    /// Which call: a `dlm_call` value.
    pub call: u32,
    /// `DLM_LOCK_AUTO_RENEW` (a lock; read by `dlm_lease_new`),
    /// `DLM_PUT_IF` (a put), `DLM_VALUE_STORED` (a put or get); 0 for none.
    pub flags: u32,
    /// The lock's name or data key (UTF-8, not empty; not NUL-terminated).
    pub name: *const c_char,
    /// Length of `name` in bytes.
    pub name_len: usize,
    /// A put's value (any bytes; UTF-8 with `DLM_VALUE_STORED`).
    pub value: *const c_void,
    /// Length of `value` in bytes.
    pub value_len: usize,
    /// Time to live of a lock or put, in milliseconds (> 0).
    pub ttl_ms: u64,
    /// How long a lock may wait in the server's queue, in milliseconds
    /// (0: one attempt).
    pub wait_ms: u64,
    /// An unlock's grant (0: whichever grant this owner holds).
    pub token: u64,
    /// The revision a `DLM_PUT_IF` put expects, or the one a
    /// `DLM_WATCH_SINCE` watch resumes after.
    pub revision: u64,
    /// A `DLM_CALL_SEMAPHORE`'s number of permits (>= 1). Read by that
    /// call only, so a program built before this field existed (whose
    /// requests end at `revision`) is read as it was.
    pub permits: u32,
    /// With `DLM_LOCK_SESSION`, how long after the session ends nobody may
    /// take the name, in milliseconds (0: released at once; at most
    /// `DLM_MAX_LOCK_DELAY_MS`). Read with that flag only, so a program
    /// built before this field existed is read as it was.
    pub lock_delay_ms: u64,
    /// A `DLM_CALL_LOCK_ALL`'s lock names (`names_count` pointers, each
    /// to UTF-8 text of `name_lens[i]` bytes). This and the next two are
    /// read by that call only, so a program built before they existed is
    /// read as it was.
    pub names: *const *const c_char,
    /// The lengths of `names`, in bytes.
    pub name_lens: *const usize,
    /// How many `names` (1 to `DLM_MAX_LOCK_ALL`).
    pub names_count: usize,
    /// With `DLM_PUT_READERS`, the identity names that may read the value
    /// (`readers_count` pointers, each of `reader_lens[i]` bytes). This and
    /// the next two are read with that flag only.
    pub readers: *const *const c_char,
    /// The lengths of `readers`, in bytes.
    pub reader_lens: *const usize,
    /// How many `readers`.
    pub readers_count: usize,
}

/// Bit of `dlm_answer.has`: the server sent a fencing token (`token`).
pub const DLM_ANSWER_TOKEN: u32 = 1;
/// Bit of `dlm_answer.has`: the server said how long is left (`ttl_ms`).
pub const DLM_ANSWER_TTL: u32 = 2;
/// Bit of `dlm_answer.has`: the server sent a revision (`revision`).
pub const DLM_ANSWER_REVISION: u32 = 4;

/// What an answer said, as `dlm_wire_read` reads it. Which fields mean
/// something depends on the call; `has` says which of the optional ones
/// the server sent (JackrabbitDLM sends no tokens, revisions or TTLs).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct dlm_answer {
    /// `DLM_ANSWER_TOKEN`, `DLM_ANSWER_TTL` and `DLM_ANSWER_REVISION` bits.
    pub has: u32,
    /// A test-lock's finding.
    pub state: dlm_lock_state,
    /// A test-lock's token, when the lock is this owner's (else 0).
    pub token: u64,
    /// A put's new revision or a get's revision (0 if the server keeps
    /// none); after `DLM_ERR_CONFLICT`, the current revision (0: no entry).
    pub revision: u64,
    /// The time left, in milliseconds, of a test-lock's lock or of a put's
    /// or get's value, when the server said (else 0).
    pub ttl_ms: u64,
    /// How many bytes of `data` a get, version or stats answer filled (the
    /// needed size after `DLM_ERR_BUFFER_TOO_SMALL`).
    pub data_len: usize,
}

/// dlm's client without sockets: one owner ID, its framing, credentials
/// and value encoder. Immutable once made, so **thread-safe**: any number
/// of threads may write and read with it at once.
pub struct dlm_wire {
    id: String,
    framing: Framing,
    credentials: Option<(String, String)>,
    pub(crate) encoder: Arc<dyn Encoder>,
}

impl dlm_wire {
    /// dlm-core's request builder for this owner.
    pub(crate) fn core(&self) -> core_client::Client<'_> {
        let c = core_client::Client::new(&self.id).with_framing(self.framing);
        match &self.credentials {
            Some((name, secret)) => c.with_credentials(Credentials { name, secret }),
            None => c,
        }
    }
}

/// Borrows the wire behind `wire`.
///
/// # Safety
/// `wire` must be NULL or a live pointer from `dlm_wire_new`.
pub(crate) unsafe fn wire_ref<'a>(wire: *const dlm_wire) -> Result<&'a dlm_wire, Fail> {
    // SAFETY: per the caller's contract.
    unsafe { wire.as_ref() }.ok_or_else(|| Fail::null("the wire"))
}

/// A request's fields, checked.
pub(crate) struct Checked<'a> {
    pub(crate) call: dlm_call,
    pub(crate) flags: u32,
    pub(crate) name: &'a str,
    pub(crate) value: &'a [u8],
    pub(crate) ttl: Ttl,
    pub(crate) wait: Ttl,
    pub(crate) token: u64,
    pub(crate) revision: u64,
    /// The semaphore's or read/write lock's shape of an acquiring call
    /// other than `DLM_CALL_LOCK`.
    pub(crate) shape: Option<Shape>,
    /// The session binding of an acquiring call with `DLM_LOCK_SESSION`.
    pub(crate) session: Option<SessionBind>,
    /// A `DLM_CALL_LOCK_ALL`'s names.
    pub(crate) names: Vec<&'a str>,
    /// A put's readers, checked, and their joined form (what the request
    /// borrows).
    pub(crate) readers: dlm::Readers,
    pub(crate) readers_joined: Option<String>,
}

impl Checked<'_> {
    /// The protocol's form of the put's readers (checked by `call_of`;
    /// the owner alone, the strictest, should that ever fail).
    fn wire_readers(&self) -> protocol::Readers<'_> {
        self.readers
            .wire(self.readers_joined.as_deref())
            .unwrap_or(protocol::Readers::Owner)
    }
}

/// The readers of a shared put: any client with `any` (and no names),
/// else the identities `names` (none: the owner alone), checked.
pub(crate) fn readers_of(any: bool, names: &[&str]) -> Result<dlm::Readers, Fail> {
    let readers = match (any, names) {
        (true, []) => dlm::Readers::Any,
        (true, _) => return Err(invalid("readers are either any client or named, not both")),
        (false, []) => dlm::Readers::Owner,
        (false, names) => dlm::Readers::identities(names.iter().copied()),
    };
    readers.check()?;
    Ok(readers)
}

fn invalid(why: &str) -> Fail {
    Fail::new(dlm_status::DLM_ERR_INVALID_ARGUMENT, why)
}

/// Reads and checks the request behind `req`.
///
/// # Safety
/// `req` must be NULL or point to a `dlm_request` whose pointers are valid
/// for their lengths.
pub(crate) unsafe fn call_of<'a>(req: *const dlm_request) -> Result<Checked<'a>, Fail> {
    // SAFETY: per the caller's contract.
    let req = unsafe { req.as_ref() }.ok_or_else(|| Fail::null("the request"))?;
    let call = dlm_call::from_u32(req.call).ok_or_else(|| invalid("unknown call"))?;
    if req.flags & !call.flags() != 0 {
        return Err(invalid("flags this call does not take"));
    }
    let name = if call == dlm_call::DLM_CALL_WATCH && req.flags & DLM_WATCH_PREFIX != 0 {
        // A prefix may be empty (every name).
        // SAFETY: per the caller's contract.
        unsafe { super::text(req.name, req.name_len, "the prefix") }?
    } else if call.named() {
        // SAFETY: per the caller's contract.
        unsafe { super::name(req.name, req.name_len) }?
    } else {
        ""
    };
    let names = if call == dlm_call::DLM_CALL_LOCK_ALL {
        // SAFETY: per the caller's contract (read for this call only).
        let names =
            unsafe { super::texts(req.names, req.name_lens, req.names_count, "the names") }?;
        check_lock_all(&names)?;
        names
    } else {
        Vec::new()
    };
    let readers = if call == dlm_call::DLM_CALL_PUT {
        let named = if req.flags & DLM_PUT_READERS != 0 {
            // SAFETY: per the caller's contract (read with this flag only).
            unsafe {
                super::texts(
                    req.readers,
                    req.reader_lens,
                    req.readers_count,
                    "the readers",
                )
            }?
        } else {
            Vec::new()
        };
        readers_of(req.flags & super::DLM_PUT_READERS_ANY != 0, &named)?
    } else {
        dlm::Readers::Owner
    };
    let readers_joined = readers.joined()?;
    let value = if call == dlm_call::DLM_CALL_PUT {
        // SAFETY: per the caller's contract.
        unsafe { bytes(req.value, req.value_len, "the value") }?
    } else {
        &[]
    };
    let needs_ttl = call.acquires()
        || matches!(
            call,
            dlm_call::DLM_CALL_PUT | dlm_call::DLM_CALL_SESSION | dlm_call::DLM_CALL_LOCK_ALL
        );
    if needs_ttl && req.ttl_ms == 0 {
        return Err(invalid("a TTL must be positive"));
    }
    let shape = match call {
        // `permits` is read for this call only (see dlm_request).
        dlm_call::DLM_CALL_SEMAPHORE if req.permits == 0 => {
            return Err(invalid("a semaphore needs at least 1 permit"));
        }
        dlm_call::DLM_CALL_SEMAPHORE => Some(Shape::Semaphore {
            permits: req.permits,
        }),
        dlm_call::DLM_CALL_READ_LOCK => Some(Shape::Read),
        dlm_call::DLM_CALL_WRITE_LOCK => Some(Shape::Write),
        _ => None,
    };
    let session = if req.flags & DLM_LOCK_SESSION != 0 {
        // `lock_delay_ms` is read with this flag only (see dlm_request).
        if req.lock_delay_ms > DLM_MAX_LOCK_DELAY_MS {
            return Err(invalid("a lock-delay is at most 60 s"));
        }
        Some(SessionBind {
            lock_delay: Ttl::from_millis(req.lock_delay_ms),
        })
    } else {
        None
    };
    Ok(Checked {
        call,
        flags: req.flags,
        name,
        value,
        ttl: Ttl::from_millis(req.ttl_ms),
        wait: Ttl::from_millis(req.wait_ms),
        token: req.token,
        revision: req.revision,
        shape,
        session,
        names,
        readers,
        readers_joined,
    })
}

/// Checks a multi-lock's names as the Rust client does: 1 to
/// `DLM_MAX_LOCK_ALL`, none empty, none twice.
fn check_lock_all(names: &[&str]) -> Result<(), Fail> {
    if names.is_empty() {
        return Err(invalid("a multi-lock needs at least one name"));
    }
    if names.len() > super::DLM_MAX_LOCK_ALL {
        return Err(invalid("a multi-lock takes at most 16 names"));
    }
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(invalid("the name is empty"));
        }
        if names[..i].contains(name) {
            return Err(invalid("a multi-lock names a lock twice"));
        }
    }
    Ok(())
}

/// Counts what would be written: the size a too-small buffer needed.
struct Count(usize);

impl Out for Count {
    fn put(&mut self, bytes: &[u8]) -> Result<(), BufferTooSmall> {
        self.0 += bytes.len();
        Ok(())
    }
}

/// Writes `req`'s line into `buf` and its length into `out_n`, or, if it
/// does not fit, the length it needs (and `DLM_ERR_BUFFER_TOO_SMALL`).
///
/// # Safety
/// `buf` must be NULL with `len` 0 or hold `len` writable bytes; `out_n`
/// must be writable.
pub(crate) unsafe fn write_line(
    req: &Request<'_>,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> dlm_status {
    let slice: &mut [u8] = if len == 0 {
        &mut []
    } else {
        // SAFETY: `len` writable bytes at `buf`, per the contract.
        unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) }
    };
    let mut out = SliceOut::new(slice);
    let (n, status) = match req.write(&mut out) {
        Ok(()) => (out.len(), dlm_status::DLM_OK),
        Err(BufferTooSmall) => {
            let mut count = Count(0);
            // Counting cannot fail.
            let _ = req.write(&mut count);
            (count.0, dlm_status::DLM_ERR_BUFFER_TOO_SMALL)
        }
    };
    // SAFETY: writable per the contract.
    unsafe { *out_n = n };
    status
}

/// Makes a wire from `opts` (NULL for the defaults): its client ID (a
/// random one if none was set), framing, credentials and value encoder.
/// The options' timeouts are not used: the caller does the I/O. `opts` may
/// be freed afterwards.
///
/// # Safety
/// `opts` must be NULL or a live pointer from `dlm_options_new`; `out` must
/// be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_wire_new(
    opts: *const dlm_options,
    out: *mut *mut dlm_wire,
) -> dlm_status {
    boundary(opts, || {
        non_null(out, "out")?;
        // SAFETY: per the contract.
        let options = unsafe { opts.as_ref() }
            .map(|o| o.options.clone())
            .unwrap_or_default();
        let id = match options.client_id {
            Some(id) => id,
            None => random_id()?,
        };
        let wire = Box::new(dlm_wire {
            id,
            framing: options.framing,
            credentials: options.credentials,
            encoder: options.encoder,
        });
        // SAFETY: `out` is non-null and writable.
        unsafe { *out = Box::into_raw(wire) };
        Ok(dlm_status::DLM_OK)
    })
}

/// Frees a wire. Leases read with it need not be freed first. NULL is
/// accepted.
///
/// # Safety
/// `wire` must be NULL or a pointer from `dlm_wire_new` not yet freed, with
/// no call on it still running.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_wire_free(wire: *mut dlm_wire) {
    if !wire.is_null() {
        quiet(|| {
            // SAFETY: created by Box::into_raw in dlm_wire_new.
            drop(unsafe { Box::from_raw(wire) });
            dlm_status::DLM_OK
        });
    }
}

/// Copies into `buf` (NUL-terminated) what the calling thread's most
/// recent libdlm call said beyond its status, if that call was on this
/// wire (`dlm_wire_*`, `dlm_lease_new`) and failed: the server's reason
/// for a bad request, what is wrong with an answer line, ... (see
/// `dlm_client_last_error`). Reading it records nothing.
///
/// # Safety
/// `wire` must be a live wire; `buf` must hold `len` writable bytes;
/// `out_n` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_wire_last_error(
    wire: *const dlm_wire,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> dlm_status {
    quiet(|| {
        if wire.is_null() {
            return dlm_status::DLM_ERR_NULL_PARAMETER;
        }
        // SAFETY: per the contract.
        unsafe { copy_last_error(wire, buf, len, out_n) }
    })
}

/// Copies the wire's owner ID (NUL-terminated) into `buf`.
///
/// # Safety
/// As for `dlm_wire_last_error`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_wire_id(
    wire: *const dlm_wire,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> dlm_status {
    boundary(wire, || {
        // SAFETY: per the contract.
        let w = unsafe { wire_ref(wire) }?;
        // SAFETY: per the contract.
        Ok(unsafe { write_text(&w.id, buf, len, out_n) })
    })
}

/// Writes the request line of `req` (ending in `\n`, not NUL-terminated)
/// into `buf`, and its length into `out_n`. If `buf` is too small, returns
/// `DLM_ERR_BUFFER_TOO_SMALL` with the needed length in `out_n`. A put's
/// value is encoded by the wire's encoder here (unless `DLM_VALUE_STORED`).
/// Nothing is written for an invalid request (empty name, zero TTL, ...).
///
/// Send the line on a connection to the server; a request the server
/// answers at once may be pipelined behind others on the same connection
/// (answers come back in order), but a lock that waits
/// (`wait_ms` > 0) holds back every answer behind it: give it a
/// connection of its own.
///
/// # Safety
/// `wire` must be a live wire; `req` must point to a valid `dlm_request`;
/// `buf` must hold `len` writable bytes (or be NULL with `len` 0); `out_n`
/// must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_wire_write(
    wire: *const dlm_wire,
    req: *const dlm_request,
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
        // SAFETY: per the contract.
        let c = unsafe { call_of(req) }?;
        let text = stored_value(w, &c)?;
        let core = w.core();
        let request = request_of(&core, &c, c.name, text.as_deref().unwrap_or(""))?;
        // SAFETY: per the contract.
        Ok(unsafe { write_line(&request, buf, len, out_n) })
    })
}

/// The text a put stores: its value through the wire's encoder, or as it
/// is with `DLM_VALUE_STORED` (`None` for other calls).
pub(crate) fn stored_value(w: &dlm_wire, c: &Checked<'_>) -> Result<Option<String>, Fail> {
    if c.call != dlm_call::DLM_CALL_PUT {
        return Ok(None);
    }
    if c.flags & DLM_VALUE_STORED == 0 {
        return Ok(Some(w.encoder.encode(c.name, c.value)?));
    }
    std::str::from_utf8(c.value)
        .map(|t| Some(t.to_owned()))
        .map_err(|_| invalid("a value to store as it is must be UTF-8"))
}

/// The request of the checked call `c` on `name`, a put storing `text`
/// (checked by `call_of`, so it fails only for a hand-made `Checked`).
pub(crate) fn request_of<'r>(
    core: &core_client::Client<'r>,
    c: &'r Checked<'r>,
    name: &'r str,
    text: &'r str,
) -> Result<Request<'r>, Fail> {
    let req = match c.call {
        dlm_call::DLM_CALL_LOCK if c.wait.is_zero() => core.lock(name, c.ttl),
        dlm_call::DLM_CALL_LOCK => core.lock_wait(name, c.ttl, c.wait),
        dlm_call::DLM_CALL_SEMAPHORE
        | dlm_call::DLM_CALL_READ_LOCK
        | dlm_call::DLM_CALL_WRITE_LOCK => {
            let wait = (!c.wait.is_zero()).then_some(c.wait);
            match c.shape {
                Some(shape) => core.acquire(name, shape, c.ttl, wait),
                // call_of gives these calls a shape.
                None => core.lock(name, c.ttl),
            }
        }
        dlm_call::DLM_CALL_UNLOCK => core.unlock(name, (c.token > 0).then_some(Token(c.token))),
        dlm_call::DLM_CALL_TEST_LOCK => core.test_lock(name),
        dlm_call::DLM_CALL_PUT => {
            let revision = (c.flags & DLM_PUT_IF != 0).then_some(Revision(c.revision));
            core.put_shared(name, c.ttl, text, revision, c.wire_readers())
        }
        dlm_call::DLM_CALL_GET => core.get(name),
        dlm_call::DLM_CALL_ERASE => core.erase(name),
        dlm_call::DLM_CALL_VERSION => core.version(),
        dlm_call::DLM_CALL_STATS => core.stats(),
        // With DLM_LOCK_SESSION: a keep-alive, which never opens one.
        dlm_call::DLM_CALL_SESSION if c.flags & DLM_LOCK_SESSION != 0 => core.keep_alive(c.ttl),
        dlm_call::DLM_CALL_SESSION => core.session(c.ttl),
        dlm_call::DLM_CALL_WATCH => {
            let scope = if c.flags & DLM_WATCH_PREFIX != 0 {
                WatchScope::Prefix(name)
            } else {
                WatchScope::Name(Resource(name))
            };
            let since = (c.flags & DLM_WATCH_SINCE != 0).then_some(Revision(c.revision));
            core.watch(scope, since)
        }
        dlm_call::DLM_CALL_LOCK_ALL => {
            let names = Names::new(&c.names)
                .ok_or_else(|| invalid("a multi-lock takes at most 16 names"))?;
            core.lock_all(names, c.ttl, (!c.wait.is_zero()).then_some(c.wait))
        }
    };
    Ok(match c.session {
        Some(bind) if c.call.acquires() => req.with_session(bind),
        _ => req,
    })
}

thread_local! {
    /// A copy of the answer line being read (dlm-core decodes it in place,
    /// and the caller's line stays as it was): one buffer per thread,
    /// reused, so reading allocates nothing once warm.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on a mutable copy of `line`.
pub(crate) fn with_copy<T>(line: &[u8], f: impl FnOnce(&mut [u8]) -> T) -> T {
    let mut f = Some(f);
    let reused = SCRATCH.try_with(|cell| {
        // Taken only if no call on this thread is using it (a custom
        // decoder making a call of its own inside this one).
        let mut buf = cell.try_borrow_mut().ok()?;
        buf.clear();
        buf.extend_from_slice(line);
        let f = f.take()?;
        let out = f(&mut buf);
        if buf.capacity() > 1 << 20 {
            // Do not keep a huge answer's buffer for the thread's life.
            *buf = Vec::new();
        }
        Some(out)
    });
    match (reused, f) {
        (Ok(Some(out)), _) => out,
        (_, Some(f)) => f(&mut line.to_vec()),
        // `f` was taken, so its output was returned above.
        (_, None) => unreachable!("the answer was read"),
    }
}

/// Borrows an answer line given as pointer and length.
///
/// # Safety
/// As for [`bytes`].
pub(crate) unsafe fn line<'a>(ptr: *const c_char, len: usize) -> Result<&'a [u8], Fail> {
    // SAFETY: forwarded contract.
    let line = unsafe { bytes(ptr.cast(), len, "the line") }?;
    if line.is_empty() {
        return Err(Fail::new(
            dlm_status::DLM_ERR_PROTOCOL,
            "an empty answer line",
        ));
    }
    Ok(line)
}

/// What a read found: the answer's fields and, for a get, version or
/// stats, the bytes for `data`.
struct Read {
    answer: dlm_answer,
    data: Vec<u8>,
}

impl Read {
    fn new() -> Self {
        Self {
            answer: dlm_answer {
                has: 0,
                state: dlm_lock_state::DLM_LOCK_FREE,
                token: 0,
                revision: 0,
                ttl_ms: 0,
                data_len: 0,
            },
            data: Vec::new(),
        }
    }

    fn ttl(&mut self, ttl: Option<Ttl>) {
        if let Some(t) = ttl {
            self.answer.has |= DLM_ANSWER_TTL;
            self.answer.ttl_ms = t.as_millis();
        }
    }

    fn revision(&mut self, revision: Option<Revision>) {
        if let Some(Revision(r)) = revision {
            self.answer.has |= DLM_ANSWER_REVISION;
            self.answer.revision = r;
        }
    }
}

/// A failure of `dlm_wire_read`: the failure, and the current revision of
/// a compare-and-set conflict.
struct ReadFail {
    fail: Fail,
    conflict: Option<u64>,
}

impl<E: Into<Fail>> From<E> for ReadFail {
    fn from(e: E) -> Self {
        Self {
            fail: e.into(),
            conflict: None,
        }
    }
}

impl From<core_client::Error<'_>> for Fail {
    fn from(e: core_client::Error<'_>) -> Self {
        Error::from(e).into()
    }
}

/// The failure an answer to `Session` or `Watch` other than the expected
/// ones stands for.
fn refusal(r: &Response<'_>) -> Fail {
    let why = r.error.map(|e| e.to_string()).unwrap_or_default();
    let status = match r.status {
        Status::NotOwner => dlm_status::DLM_ERR_NOT_OWNER,
        Status::Conflict => dlm_status::DLM_ERR_CONFLICT,
        Status::No if why.is_empty() => dlm_status::DLM_ERR_NO_MEMORY,
        Status::No => dlm_status::DLM_ERR_UNAVAILABLE,
        Status::BadPayload | Status::BadAction => dlm_status::DLM_ERR_BAD_REQUEST,
        other => {
            return Fail::new(
                dlm_status::DLM_ERR_PROTOCOL,
                &format!("unexpected answer {other:?} {why}"),
            );
        }
    };
    Fail::new(status, &why)
}

/// Reads the answer line `line` to the call `c`.
fn read(w: &dlm_wire, c: &Checked<'_>, line: &mut [u8]) -> Result<Read, ReadFail> {
    let mut out = Read::new();
    if c.call.acquires() {
        return Err(invalid("read the answer to a lock with dlm_lease_new").into());
    }
    if c.call == dlm_call::DLM_CALL_STATS {
        let stats = answer::stats(line)?;
        let mut json = String::from("{");
        for (i, (stat, value)) in stats.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push('"');
            json.push_str(stat.name());
            json.push_str("\":");
            json.push_str(&value.to_string());
        }
        json.push('}');
        out.data = json.into_bytes();
        return Ok(out);
    }
    let (_, r) = Response::parse(line).map_err(core_client::Error::from)?;
    match c.call {
        // Refused above.
        dlm_call::DLM_CALL_LOCK
        | dlm_call::DLM_CALL_SEMAPHORE
        | dlm_call::DLM_CALL_READ_LOCK
        | dlm_call::DLM_CALL_WRITE_LOCK
        | dlm_call::DLM_CALL_STATS => {}
        dlm_call::DLM_CALL_LOCK_ALL => {
            return Err(invalid("read the answer to a multi-lock with dlm_lease_new_all").into());
        }
        dlm_call::DLM_CALL_UNLOCK => {
            if !answer::unlocked(&r)? {
                return Err(Error::NotFound.into());
            }
        }
        dlm_call::DLM_CALL_TEST_LOCK => match answer::lock_state(&r)? {
            core_client::LockState::Free => {}
            core_client::LockState::Mine(grant) => {
                out.answer.state = dlm_lock_state::DLM_LOCK_MINE;
                if let Some(Token(t)) = grant.token {
                    out.answer.has |= DLM_ANSWER_TOKEN;
                    out.answer.token = t;
                }
                out.ttl(grant.ttl);
            }
            core_client::LockState::Taken(left) => {
                out.answer.state = dlm_lock_state::DLM_LOCK_TAKEN;
                out.ttl(left);
            }
        },
        dlm_call::DLM_CALL_PUT => match answer::stored(&r, c.flags & DLM_PUT_IF != 0) {
            Ok(stored) => {
                out.revision(stored.revision);
                out.ttl(stored.ttl);
            }
            Err(e) => {
                return Err(ReadFail {
                    conflict: e.revision().map(|Revision(r)| r),
                    fail: e.into(),
                });
            }
        },
        dlm_call::DLM_CALL_GET => {
            let fetched = answer::fetched(&r)?.ok_or(Error::NotFound)?;
            out.revision(fetched.revision);
            out.ttl(fetched.ttl);
            out.data = if c.flags & DLM_VALUE_STORED == 0 {
                w.encoder.decode(c.name, fetched.data)?
            } else {
                fetched.data.as_bytes().to_vec()
            };
        }
        dlm_call::DLM_CALL_ERASE => {
            if !answer::erased(&r)? {
                return Err(Error::NotFound.into());
            }
        }
        dlm_call::DLM_CALL_VERSION => out.data = answer::version(&r)?.as_bytes().to_vec(),
        dlm_call::DLM_CALL_SESSION => match r.status {
            Status::Done => out.ttl(r.expire),
            Status::BadAction => {
                return Err(Fail::new(
                    dlm_status::DLM_ERR_BAD_REQUEST,
                    "the server has no sessions (a JackrabbitDLM server?)",
                )
                .into());
            }
            _ => return Err(refusal(&r).into()),
        },
        dlm_call::DLM_CALL_WATCH => match (r.status, r.revision) {
            (Status::Done, Some(_)) => out.revision(r.revision),
            (Status::Done, None) => {
                return Err(Fail::new(
                    dlm_status::DLM_ERR_PROTOCOL,
                    "Watch answered without Revision",
                )
                .into());
            }
            (Status::Conflict, current) => {
                let why = r
                    .error
                    .map_or_else(|| "history compacted".into(), |e| e.to_string());
                return Err(ReadFail {
                    fail: Fail::new(
                        dlm_status::DLM_ERR_CONFLICT,
                        &format!("the watch must read the state again: {why}"),
                    ),
                    conflict: Some(current.map_or(0, |Revision(c)| c)),
                });
            }
            (Status::No, _) => {
                let why = r
                    .error
                    .map_or_else(|| "out of memory".into(), |e| e.to_string());
                return Err(Fail::new(
                    dlm_status::DLM_ERR_UNAVAILABLE,
                    &format!("this server cannot serve the watch now: {why}"),
                )
                .into());
            }
            (Status::BadAction, _) => {
                return Err(Fail::new(
                    dlm_status::DLM_ERR_BAD_REQUEST,
                    "the server does not know Watch (JackrabbitDLM, or an older dlm)",
                )
                .into());
            }
            _ => return Err(refusal(&r).into()),
        },
    }
    Ok(out)
}

/// Copies whose value the answer `line` to the get `req` carries: its
/// owner's client ID (NUL-terminated) into `buf`, its length into `out_n`
/// (0, the empty string, if the server did not say: JackrabbitDLM). For a
/// value another owner shared with this wire's identity, that owner's ID
/// (PROTOCOL.md section 8, "Shared values"). Read the value itself with
/// `dlm_wire_read`; a refusal is the same status it returns.
///
/// # Safety
/// `wire` must be a live wire; `req` must point to a valid `dlm_request`
/// (a `DLM_CALL_GET`); `line` to `line_len` readable bytes; `buf` to `len`
/// writable bytes (or NULL with 0); `out_n` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_wire_owner(
    wire: *const dlm_wire,
    req: *const dlm_request,
    line: *const c_char,
    line_len: usize,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> dlm_status {
    boundary(wire, || {
        // SAFETY: per the contract.
        unsafe { wire_ref(wire) }?;
        non_null(out_n, "out_n")?;
        if buf.is_null() && len > 0 {
            return Err(Fail::null("buf (with a non-zero len)"));
        }
        // SAFETY: per the contract.
        let c = unsafe { call_of(req) }?;
        if c.call != dlm_call::DLM_CALL_GET {
            return Err(invalid("an owner is read from the answer to a get"));
        }
        // SAFETY: per the contract.
        let line = unsafe { self::line(line, line_len) }?;
        with_copy(line, |copy| -> Result<dlm_status, Fail> {
            let (_, r) = Response::parse(copy).map_err(core_client::Error::from)?;
            let fetched = answer::fetched(&r)?.ok_or(Error::NotFound)?;
            // SAFETY: per the contract.
            Ok(unsafe { write_text(fetched.owner.unwrap_or(""), buf, len, out_n) })
        })
    })
}

/// Reads the server's answer `line` (one line, with or without its `\n`)
/// to the request `req` (the one given to `dlm_wire_write`), by the rules
/// every dlm client follows, and writes what it said to `out`. `line` is
/// not modified.
///
/// A get's value (decoded by the wire's encoder, or the stored text with
/// `DLM_VALUE_STORED`), a version string and the statistics (a JSON object,
/// e.g. `{"ALock":3,"Lock":12}`) go to `data` (not NUL-terminated), their
/// length to `out->data_len`. With the built-in encoders `line_len` bytes
/// of `data` are always enough; if `data` is too small, returns
/// `DLM_ERR_BUFFER_TOO_SMALL` with only `out->data_len` written (call again
/// with the same line and a larger buffer).
///
/// A refusal is the call's error status (`DLM_ERR_NOT_OWNER`,
/// `DLM_ERR_NOT_FOUND` for a get, erase or unlock of nothing,
/// `DLM_ERR_CONFLICT` with the current revision in `out->revision`, ...),
/// its detail in `dlm_wire_last_error`; an answer that is not a dlm answer
/// is `DLM_ERR_PROTOCOL`. The answer to a lock (or a semaphore's or
/// read/write lock's acquisition) is read by `dlm_lease_new`.
///
/// # Safety
/// `wire` must be a live wire; `req` must point to a valid `dlm_request`;
/// `line` to `line_len` readable bytes; `data` to `data_cap` writable bytes
/// (or be NULL with `data_cap` 0); `out` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_wire_read(
    wire: *const dlm_wire,
    req: *const dlm_request,
    line: *const c_char,
    line_len: usize,
    data: *mut c_void,
    data_cap: usize,
    out: *mut dlm_answer,
) -> dlm_status {
    boundary(wire, || {
        // SAFETY: per the contract.
        let w = unsafe { wire_ref(wire) }?;
        non_null(out, "out")?;
        if data.is_null() && data_cap > 0 {
            return Err(Fail::null("data (with a non-zero data_cap)"));
        }
        // SAFETY: per the contract.
        let c = unsafe { call_of(req) }?;
        // SAFETY: per the contract.
        let line = unsafe { self::line(line, line_len) }?;
        match with_copy(line, |copy| read(w, &c, copy)) {
            Ok(mut r) => {
                r.answer.data_len = r.data.len();
                if r.data.len() > data_cap {
                    // SAFETY: `out` is non-null and writable.
                    unsafe { (*out).data_len = r.data.len() };
                    return Ok(dlm_status::DLM_ERR_BUFFER_TOO_SMALL);
                }
                if !r.data.is_empty() {
                    // SAFETY: `data` holds `data_cap >= r.data.len()` bytes.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            r.data.as_ptr(),
                            data.cast::<u8>(),
                            r.data.len(),
                        );
                    }
                }
                // SAFETY: `out` is non-null and writable.
                unsafe { put(out, r.answer) };
                Ok(dlm_status::DLM_OK)
            }
            Err(ReadFail { fail, conflict }) => {
                if let Some(current) = conflict {
                    // SAFETY: `out` is non-null and writable.
                    unsafe { (*out).revision = current };
                }
                Err(fail)
            }
        }
    })
}
