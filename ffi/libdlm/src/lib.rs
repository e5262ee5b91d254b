//! # libdlm
//!
//! The C ABI of dlm's client: `libdlm.so` and `libdlm.a`, over the Rust
//! client (the crate `dlm`, which does the work). `include/dlm.h` is
//! generated from this crate by cbindgen (see `README.md` here for the
//! conventions); `include/dlm.hpp` wraps it for C++17.
//!
//! Conventions, after rustls-ffi:
//! - Every function returns a [`dlm_status`]; `DLM_OK` is 0, and status
//!   values are never reused for another meaning. The statuses are
//!   dlm-core's [`ErrorKind`]s, with their numbers and messages (a test
//!   holds this enum to them).
//! - Handles are opaque (`dlm_options`, `dlm_client`, `dlm_lock`,
//!   `dlm_cancel`), created by a `_new` function and destroyed by the
//!   matching `_free`, which accepts NULL.
//! - Inputs are `const`; text (names, IDs, addresses) is a `const char *`
//!   and binary data (values, keys) a `const void *`, each followed by its
//!   length (no NUL needed), and out-parameters are written only on success (two
//!   documented exceptions: the needed size on `DLM_ERR_BUFFER_TOO_SMALL`,
//!   the current revision on `DLM_ERR_CONFLICT`).
//! - Text written into a caller's buffer is NUL-terminated; the reported
//!   length excludes the NUL, so the buffer needs one byte more.
//! - Every call that returns a status records, for the calling thread, its
//!   outcome: on failure, what the status does not already say (the
//!   detail: "Connection refused (os error 111)"), read with
//!   `dlm_client_last_error` / `dlm_lock_last_error` /
//!   `dlm_options_last_error` on the handle the call was made on; on
//!   success, nothing. One slot per thread, so no lock and no table.
//! - No panic ever crosses the ABI: every function catches them and returns
//!   `DLM_ERR_PANIC`. (The release profile keeps `panic = "unwind"` for this.)

#![allow(non_camel_case_types, unsafe_code)]
// A std crate: the workspace's no_std discipline lints are for dlm-core.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]
#![deny(missing_docs)]

mod cancel;
mod client;
mod failover;
mod lease;
mod lock;
mod options;
mod session;
mod watch;
mod wire;

use std::cell::RefCell;
use std::ffi::{CStr, c_char, c_void};

pub use cancel::*;
pub use client::*;
pub use failover::*;
pub use lease::*;
pub use lock::*;
pub use options::*;
pub use session::*;
pub use watch::*;
pub use wire::*;

use dlm::{Error, ErrorKind};

/// The result of every libdlm call. Values are stable and never reused;
/// each failure is one of dlm-core's error kinds, with its number.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum dlm_status {
    /// Success.
    DLM_OK = 0,
    /// A required pointer argument was NULL.
    DLM_ERR_NULL_PARAMETER = 1,
    /// An argument was invalid (empty name, zero TTL, bad UTF-8, ...).
    DLM_ERR_INVALID_ARGUMENT = 2,
    /// A bug inside libdlm (a caught panic). The handle remains usable.
    DLM_ERR_PANIC = 3,
    /// The server could not be reached, or the connection failed.
    DLM_ERR_UNAVAILABLE = 4,
    /// A waiting lock's wait ran out.
    DLM_ERR_TIMEOUT = 5,
    /// A blocking call was cancelled with `dlm_cancel_trigger`.
    DLM_ERR_CANCELLED = 6,
    /// Another owner holds the lock or entry.
    DLM_ERR_NOT_OWNER = 7,
    /// No such data entry.
    DLM_ERR_NOT_FOUND = 8,
    /// A compare-and-set put found another revision.
    DLM_ERR_CONFLICT = 9,
    /// The server refused the request as malformed or over a limit, or
    /// does not know the action.
    DLM_ERR_BAD_REQUEST = 10,
    /// The server is out of memory for new entries.
    DLM_ERR_NO_MEMORY = 11,
    /// The server answered something that makes no sense.
    DLM_ERR_PROTOCOL = 12,
    /// The lock was lost (expired, or taken after expiring).
    DLM_ERR_LOCK_LOST = 13,
    /// The output buffer is too small; the needed size was reported.
    DLM_ERR_BUFFER_TOO_SMALL = 14,
    /// A value could not be encoded or decoded (wrong encoder or key).
    DLM_ERR_ENCODING = 15,
    /// The operating system refused a resource libdlm needs (a thread for
    /// auto-renewal, random bytes).
    DLM_ERR_SYSTEM = 16,
}

impl dlm_status {
    const ALL: [Self; 17] = [
        Self::DLM_OK,
        Self::DLM_ERR_NULL_PARAMETER,
        Self::DLM_ERR_INVALID_ARGUMENT,
        Self::DLM_ERR_PANIC,
        Self::DLM_ERR_UNAVAILABLE,
        Self::DLM_ERR_TIMEOUT,
        Self::DLM_ERR_CANCELLED,
        Self::DLM_ERR_NOT_OWNER,
        Self::DLM_ERR_NOT_FOUND,
        Self::DLM_ERR_CONFLICT,
        Self::DLM_ERR_BAD_REQUEST,
        Self::DLM_ERR_NO_MEMORY,
        Self::DLM_ERR_PROTOCOL,
        Self::DLM_ERR_LOCK_LOST,
        Self::DLM_ERR_BUFFER_TOO_SMALL,
        Self::DLM_ERR_ENCODING,
        Self::DLM_ERR_SYSTEM,
    ];

    /// The status with this number; an unknown number is
    /// `DLM_ERR_INVALID_ARGUMENT`.
    pub fn from_u32(n: u32) -> Self {
        Self::ALL
            .into_iter()
            .find(|s| *s as u32 == n)
            .unwrap_or(Self::DLM_ERR_INVALID_ARGUMENT)
    }

    /// The status of a failure of this kind.
    pub fn from_kind(kind: ErrorKind) -> Self {
        Self::ALL
            .into_iter()
            .find(|s| *s as u32 == kind.code())
            .unwrap_or(Self::DLM_ERR_PANIC)
    }

    /// The failure this status reports (`None` for `DLM_OK`).
    pub fn kind(self) -> Option<ErrorKind> {
        ErrorKind::from_code(self as u32)
    }

    fn text(self) -> &'static CStr {
        self.kind().map_or(c"ok", ErrorKind::message_c)
    }
}

impl From<&Error> for dlm_status {
    fn from(e: &Error) -> Self {
        Self::from_kind(e.kind())
    }
}

/// How a call failed: its status and what the status does not already say
/// (empty if nothing).
pub(crate) struct Fail {
    status: dlm_status,
    detail: String,
}

impl Fail {
    /// A failure with a fixed detail.
    pub(crate) fn new(status: dlm_status, detail: &str) -> Self {
        Self {
            status,
            detail: detail.to_owned(),
        }
    }

    /// A NULL where `what` must be.
    pub(crate) fn null(what: &str) -> Self {
        Self {
            status: dlm_status::DLM_ERR_NULL_PARAMETER,
            detail: format!("{what} is NULL"),
        }
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Self {
            status: (&e).into(),
            detail: e.detail().unwrap_or_default(),
        }
    }
}

impl From<dlm_status> for Fail {
    fn from(status: dlm_status) -> Self {
        Self {
            status,
            detail: String::new(),
        }
    }
}

/// The outcome of the calling thread's most recent call: on which handle,
/// and, if it failed, its detail.
struct LastError {
    handle: usize,
    detail: String,
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> = const {
        RefCell::new(LastError { handle: 0, detail: String::new() })
    };
}

/// Records the outcome of a call on `handle` for the calling thread.
fn record(handle: *const c_void, detail: &str) {
    // Never fails, never panics: not during thread teardown, not if a
    // callback running inside a call makes a call of its own.
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            slot.handle = handle as usize;
            slot.detail.clear();
            slot.detail.push_str(detail);
        }
    });
}

/// Copies the calling thread's last error into a caller's buffer if its
/// most recent call was on `handle` (else the empty string).
///
/// # Safety
/// As for [`write_text`].
pub(crate) unsafe fn copy_last_error<H>(
    handle: *const H,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> dlm_status {
    let handle = handle.cast::<c_void>();
    let copy = |detail: &str| {
        // SAFETY: forwarded contract.
        unsafe { write_text(detail, buf, len, out_n) }
    };
    LAST_ERROR
        .try_with(|slot| match slot.try_borrow() {
            Ok(slot) if slot.handle == handle as usize => copy(&slot.detail),
            _ => copy(""),
        })
        .unwrap_or_else(|_| copy(""))
}

/// Runs the body of an exported function called on `handle`: turns a
/// panic into `DLM_ERR_PANIC`, and records the outcome as the calling
/// thread's last error (cleared on success, the detail on failure), every
/// time, early returns included.
pub(crate) fn boundary<H>(
    handle: *const H,
    f: impl FnOnce() -> Result<dlm_status, Fail>,
) -> dlm_status {
    let handle = handle.cast::<c_void>();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(Fail {
            status: dlm_status::DLM_ERR_PANIC,
            detail: what,
        })
    });
    match outcome {
        Ok(status) => {
            record(handle, "");
            status
        }
        Err(fail) => {
            record(handle, &fail.detail);
            fail.status
        }
    }
}

/// Runs a function that records nothing (the last-error getters, `_free`):
/// only turns a panic into `DLM_ERR_PANIC`.
pub(crate) fn quiet(f: impl FnOnce() -> dlm_status) -> dlm_status {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(dlm_status::DLM_ERR_PANIC)
}

/// Borrows binary data (a value, a key) given as pointer and length;
/// `what` names it in the error. NULL is accepted for empty data.
///
/// # Safety
/// `ptr` must be NULL (with `len` 0) or point to `len` readable bytes that
/// outlive the borrow.
pub(crate) unsafe fn bytes<'a>(
    ptr: *const c_void,
    len: usize,
    what: &str,
) -> Result<&'a [u8], Fail> {
    let ptr = ptr.cast::<u8>();
    if ptr.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(Fail::null(what))
        };
    }
    // SAFETY: the caller guarantees `len` readable bytes at `ptr`.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Borrows a UTF-8 string given as pointer and length (no NUL needed);
/// `what` names it in the error.
///
/// # Safety
/// As for [`bytes`].
pub(crate) unsafe fn text<'a>(ptr: *const c_char, len: usize, what: &str) -> Result<&'a str, Fail> {
    // SAFETY: forwarded contract.
    let b = unsafe { bytes(ptr.cast(), len, what) }?;
    std::str::from_utf8(b).map_err(|_| {
        Fail::new(
            dlm_status::DLM_ERR_INVALID_ARGUMENT,
            &format!("{what} is not UTF-8"),
        )
    })
}

/// Borrows a name (of a lock or data key): UTF-8 and not empty.
///
/// # Safety
/// As for [`bytes`].
pub(crate) unsafe fn name<'a>(ptr: *const c_char, len: usize) -> Result<&'a str, Fail> {
    // SAFETY: forwarded contract.
    match unsafe { text(ptr, len, "the name") }? {
        "" => Err(Fail::new(
            dlm_status::DLM_ERR_INVALID_ARGUMENT,
            "the name is empty",
        )),
        name => Ok(name),
    }
}

/// Borrows `count` UTF-8 strings given as an array of pointers and an
/// array of their lengths (no NUL needed); `what` names them in errors.
/// Both arrays may be NULL when `count` is 0. Empty strings are passed on
/// (the caller says whether they are allowed).
///
/// # Safety
/// `ptrs` and `lens` must be NULL (with `count` 0) or point to `count`
/// readable elements, each string pointer valid for its length.
pub(crate) unsafe fn texts<'a>(
    ptrs: *const *const c_char,
    lens: *const usize,
    count: usize,
    what: &str,
) -> Result<Vec<&'a str>, Fail> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if ptrs.is_null() || lens.is_null() {
        return Err(Fail::null(what));
    }
    // SAFETY: `count` readable elements in each array, per the contract.
    let (ptrs, lens) = unsafe {
        (
            std::slice::from_raw_parts(ptrs, count),
            std::slice::from_raw_parts(lens, count),
        )
    };
    ptrs.iter()
        .zip(lens)
        // SAFETY: each pointer is valid for its length, per the contract.
        .map(|(&p, &n)| unsafe { text(p, n, what) })
        .collect()
}

/// Fails with `DLM_ERR_NULL_PARAMETER` if `ptr` is NULL; `what` names it.
pub(crate) fn non_null<T>(ptr: *const T, what: &str) -> Result<(), Fail> {
    if ptr.is_null() {
        Err(Fail::null(what))
    } else {
        Ok(())
    }
}

/// Copies `s` into `buf` with a terminating NUL and reports its length
/// (without the NUL) in `out_n`; on a short buffer, reports the needed
/// length and returns `DLM_ERR_BUFFER_TOO_SMALL`.
///
/// # Safety
/// `buf` must point to `len` writable bytes (or be NULL with `len` 0), and
/// `out_n` must be NULL or writable.
pub(crate) unsafe fn write_text(
    s: &str,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> dlm_status {
    if out_n.is_null() || (buf.is_null() && len > 0) {
        return dlm_status::DLM_ERR_NULL_PARAMETER;
    }
    // SAFETY: `out_n` is non-null and writable per the contract.
    unsafe { *out_n = s.len() };
    if len <= s.len() {
        return dlm_status::DLM_ERR_BUFFER_TOO_SMALL;
    }
    // SAFETY: `buf` holds `len > s.len()` writable bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), s.len());
        *buf.add(s.len()) = 0;
    }
    dlm_status::DLM_OK
}

/// Writes `value` through `out`, if `out` is not NULL.
///
/// # Safety
/// `out` must be NULL or valid for writes.
pub(crate) unsafe fn put<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: non-null and writable per the contract.
        unsafe { out.write(value) };
    }
}

/// A static, NUL-terminated description of `status` (never NULL; an
/// unknown value is described as an invalid argument).
#[unsafe(no_mangle)]
pub extern "C" fn dlm_status_string(status: u32) -> *const c_char {
    dlm_status::from_u32(status).text().as_ptr()
}

/// The library's version, `MAJOR.MINOR.PATCH`, static and NUL-terminated.
/// It matches the header's `DLM_VERSION_STRING` when header and library
/// come from the same build.
#[unsafe(no_mangle)]
pub extern "C" fn dlm_version() -> *const c_char {
    const V: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    V.as_ptr().cast()
}

/// A caller's opaque pointer, passed back to its callbacks.
pub(crate) type UserData = *mut c_void;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// `NotOwner` -> `NOT_OWNER`.
    fn screaming(name: &str) -> String {
        let mut out = String::new();
        for (i, c) in name.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_uppercase());
        }
        out
    }

    #[test]
    fn every_status_is_one_of_dlm_cores_error_kinds() {
        assert_eq!(dlm_status::ALL.len(), ErrorKind::ALL.len() + 1);
        for kind in ErrorKind::ALL {
            let status = dlm_status::from_kind(kind);
            assert_eq!(status as u32, kind.code(), "{kind:?}");
            assert_eq!(status.kind(), Some(kind));
            assert_eq!(
                format!("{status:?}"),
                format!("DLM_ERR_{}", screaming(kind.name()))
            );
            // SAFETY: dlm_status_string returns a static C string.
            let text = unsafe { CStr::from_ptr(dlm_status_string(kind.code())) };
            assert_eq!(text, kind.message_c());
        }
        assert_eq!(dlm_status::DLM_OK.kind(), None);
        assert_eq!(dlm_status::from_u32(0), dlm_status::DLM_OK);
        assert_eq!(
            dlm_status::from_u32(u32::MAX),
            dlm_status::DLM_ERR_INVALID_ARGUMENT
        );
    }

    #[test]
    fn the_last_error_is_the_detail_of_this_threads_last_call_on_the_handle() {
        // Two distinct handles, never dereferenced.
        let (a, b) = (
            std::ptr::dangling::<u8>(),
            std::ptr::dangling::<u16>().cast::<u8>(),
        );
        let read = |h: *const u8| {
            let mut buf = [0 as c_char; 64];
            let mut n = 0;
            // SAFETY: a 64-byte buffer and a length to write.
            let s = unsafe { copy_last_error(h, buf.as_mut_ptr(), buf.len(), &raw mut n) };
            assert_eq!(s, dlm_status::DLM_OK);
            // SAFETY: NUL-terminated by copy_last_error.
            unsafe { CStr::from_ptr(buf.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        };
        let s = boundary(a, || {
            Err(Error::Unavailable(std::io::Error::other("refused")).into())
        });
        assert_eq!(s, dlm_status::DLM_ERR_UNAVAILABLE);
        assert_eq!(read(a), "refused", "the detail, not the status again");
        assert_eq!(read(b), "");
        let s = boundary(a, || Err(Fail::null("out")));
        assert_eq!(s, dlm_status::DLM_ERR_NULL_PARAMETER);
        assert_eq!(read(a), "out is NULL");
        assert_eq!(boundary(a, || Ok(dlm_status::DLM_OK)), dlm_status::DLM_OK);
        assert_eq!(read(a), "");
        let s = boundary(b, || -> Result<dlm_status, Fail> { panic!("boom") });
        assert_eq!(s, dlm_status::DLM_ERR_PANIC);
        assert_eq!(read(b), "boom");
        assert_eq!(read(a), "", "a later call on another handle");
        // Another thread's calls leave this thread's alone.
        std::thread::spawn(|| {
            boundary(std::ptr::dangling::<u16>(), || Err(Fail::null("elsewhere")));
        })
        .join()
        .unwrap();
        assert_eq!(read(b), "boom");
    }
}
