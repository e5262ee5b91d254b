//! The C ABI of libdlm. `include/dlm.h` is generated from this module by
//! cbindgen (see `ffi/README.md` for the conventions).
//!
//! Conventions, after rustls-ffi:
//! - Every function returns a [`dlm_status`]; `DLM_OK` is 0, and status
//!   values are never reused for another meaning.
//! - Handles are opaque (`dlm_options`, `dlm_client`, `dlm_lock`,
//!   `dlm_cancel`), created by a `_new` function and destroyed by the
//!   matching `_free`, which accepts NULL.
//! - Inputs are `const`, byte strings come with their length (no NUL
//!   needed), and out-parameters are written only on success (two
//!   documented exceptions: the needed size on `DLM_ERR_BUFFER_TOO_SMALL`,
//!   the current revision on `DLM_ERR_CONFLICT`).
//! - Text written into a caller's buffer is NUL-terminated; the reported
//!   length excludes the NUL, so the buffer needs one byte more.
//! - A failed call on a client or lock leaves a message for the calling
//!   thread, read with `dlm_client_last_error` / `dlm_lock_last_error`; a
//!   successful call clears it. `dlm_client_new` leaves its message on the
//!   options (`dlm_options_last_error`), there being no client yet.
//! - No panic ever crosses the ABI: every function catches them and returns
//!   `DLM_ERR_PANIC`. (The release profile keeps `panic = "unwind"` for this.)

#![allow(non_camel_case_types, unsafe_code)]

mod cancel;
mod client;
mod lock;
mod options;

use std::collections::HashMap;
use std::ffi::{c_char, c_void};
use std::sync::{Mutex, PoisonError};
use std::thread::ThreadId;

pub use cancel::*;
pub use client::*;
pub use lock::*;
pub use options::*;

use crate::error::Error;

/// The result of every libdlm call. Values are stable and never reused.
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
    /// The server refused the request as malformed or over a limit.
    DLM_ERR_BAD_REQUEST = 10,
    /// The server is out of memory for new entries.
    DLM_ERR_NO_MEMORY = 11,
    /// The server answered something that makes no sense.
    DLM_ERR_PROTOCOL = 12,
    /// The lock was lost (expired, or taken after expiring).
    DLM_ERR_LOCK_LOST = 13,
    /// The output buffer is too small; the needed size was reported.
    DLM_ERR_BUFFER_TOO_SMALL = 14,
    /// A stored value could not be decoded (wrong encoder or key).
    DLM_ERR_ENCODING = 15,
}

impl dlm_status {
    const ALL: [Self; 16] = [
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
    ];

    /// The status with this number; an unknown number is
    /// `DLM_ERR_INVALID_ARGUMENT`.
    pub fn from_u32(n: u32) -> Self {
        Self::ALL
            .into_iter()
            .find(|s| *s as u32 == n)
            .unwrap_or(Self::DLM_ERR_INVALID_ARGUMENT)
    }

    fn text(self) -> &'static std::ffi::CStr {
        match self {
            Self::DLM_OK => c"ok",
            Self::DLM_ERR_NULL_PARAMETER => c"a required pointer argument was NULL",
            Self::DLM_ERR_INVALID_ARGUMENT => c"invalid argument",
            Self::DLM_ERR_PANIC => c"internal error in libdlm",
            Self::DLM_ERR_UNAVAILABLE => c"server unavailable",
            Self::DLM_ERR_TIMEOUT => c"timed out waiting for the lock",
            Self::DLM_ERR_CANCELLED => c"cancelled",
            Self::DLM_ERR_NOT_OWNER => c"held by another owner",
            Self::DLM_ERR_NOT_FOUND => c"no such entry",
            Self::DLM_ERR_CONFLICT => c"revision conflict",
            Self::DLM_ERR_BAD_REQUEST => c"bad request",
            Self::DLM_ERR_NO_MEMORY => c"server out of memory",
            Self::DLM_ERR_PROTOCOL => c"protocol error",
            Self::DLM_ERR_LOCK_LOST => c"the lock was lost",
            Self::DLM_ERR_BUFFER_TOO_SMALL => c"buffer too small",
            Self::DLM_ERR_ENCODING => c"cannot decode value",
        }
    }
}

impl From<&Error> for dlm_status {
    fn from(e: &Error) -> Self {
        match e {
            Error::NotOwner => Self::DLM_ERR_NOT_OWNER,
            Error::NotFound => Self::DLM_ERR_NOT_FOUND,
            Error::Conflict { .. } => Self::DLM_ERR_CONFLICT,
            Error::Timeout => Self::DLM_ERR_TIMEOUT,
            Error::LockLost => Self::DLM_ERR_LOCK_LOST,
            Error::Cancelled => Self::DLM_ERR_CANCELLED,
            Error::BadRequest(_) => Self::DLM_ERR_BAD_REQUEST,
            Error::NoMemory => Self::DLM_ERR_NO_MEMORY,
            Error::Unavailable(_) => Self::DLM_ERR_UNAVAILABLE,
            Error::Protocol(_) => Self::DLM_ERR_PROTOCOL,
            Error::Encoding(_) => Self::DLM_ERR_ENCODING,
            Error::InvalidArgument(_) => Self::DLM_ERR_INVALID_ARGUMENT,
        }
    }
}

/// Runs `f`, turning a panic into `DLM_ERR_PANIC`.
pub(crate) fn boundary(f: impl FnOnce() -> dlm_status) -> dlm_status {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(dlm_status::DLM_ERR_PANIC)
}

/// Early-returns the status of a failed `Result<_, dlm_status>`.
macro_rules! try_status {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(status) => return status,
        }
    };
}
pub(crate) use try_status;

/// Borrows a byte string given as pointer and length. NULL is accepted for
/// an empty string.
///
/// # Safety
/// `ptr` must be NULL (with `len` 0) or point to `len` readable bytes that
/// outlive the borrow.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], dlm_status> {
    if ptr.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(dlm_status::DLM_ERR_NULL_PARAMETER)
        };
    }
    // SAFETY: the caller guarantees `len` readable bytes at `ptr`.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Whether a byte string given as pointer and length is a NULL pointer
/// with a non-zero length, which is `DLM_ERR_NULL_PARAMETER` (NULL with
/// length 0 is the empty string).
pub(crate) fn null_with_len(ptr: *const u8, len: usize) -> bool {
    ptr.is_null() && len > 0
}

/// Borrows a UTF-8 string given as pointer and length.
///
/// # Safety
/// As for [`bytes`].
pub(crate) unsafe fn text<'a>(ptr: *const u8, len: usize) -> Result<&'a str, dlm_status> {
    // SAFETY: forwarded contract.
    let b = unsafe { bytes(ptr, len) }?;
    std::str::from_utf8(b).map_err(|_| dlm_status::DLM_ERR_INVALID_ARGUMENT)
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

/// The last error message per thread, for one handle.
#[derive(Default)]
pub(crate) struct LastError(Mutex<HashMap<ThreadId, String>>);

impl LastError {
    pub(crate) fn set(&self, message: String) {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Bound the table: threads that come and go must not grow it forever.
        if m.len() > 1024 {
            m.clear();
        }
        m.insert(std::thread::current().id(), message);
    }

    /// Records `e` and returns its status.
    pub(crate) fn fail(&self, e: &Error) -> dlm_status {
        self.set(e.to_string());
        e.into()
    }

    /// Records the outcome of a call that ended with `status`: a success
    /// clears the thread's message, a failure without more detail leaves
    /// the status's own description.
    pub(crate) fn record(&self, status: dlm_status) -> dlm_status {
        if status == dlm_status::DLM_OK {
            let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            m.remove(&std::thread::current().id());
        } else {
            self.set(status.text().to_string_lossy().into_owned());
        }
        status
    }

    pub(crate) fn get(&self) -> String {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&std::thread::current().id())
            .cloned()
            .unwrap_or_default()
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

/// Keeps the `c_void` import used on every platform.
pub(crate) type UserData = *mut c_void;
