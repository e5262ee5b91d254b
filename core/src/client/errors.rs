//! The client's errors, defined once for every binding.
//!
//! [`ErrorKind`] is the list of ways a client call can fail, each with its
//! stable number, its name and its message. The bindings derive their own
//! idiom from it and tests hold them to it:
//!
//! | binding | derived from [`ErrorKind`] | held by |
//! |---|---|---|
//! | C (`dlm_status`) | `DLM_ERR_<NAME>` = [`code`](ErrorKind::code); `dlm_status_string` = [`message`](ErrorKind::message) | a unit test in `ffi/libdlm/src` |
//! | Go (`ffi/go/errors_gen.go`) | `Err<Name>` = `errors.New("dlm: " + message)`, and the status-to-sentinel switch | generated; `ffi/libdlm/tests/header.rs` fails on drift |
//! | JavaScript (`wasm/js/errors.js`) | `<Name>Error` with `code` = [`name`](ErrorKind::name), default message | `wasm/js/test/errors.test.js`, against the module's `errorKinds()` |
//! | Rust (`dlm::Error`, `dlm-wasm`) | `kind()` returns this very type | the compiler |
//!
//! A number is never reused for another meaning; new kinds get new numbers.
//!
//! [`Error`] is one failure: a kind and what more there is to say
//! ([`Detail`]). The rules that turn a server's answer into an [`Error`]
//! for a given call (a refused wait is a timeout, a refused extension is a
//! lost lock, ...) are in [`answer`](super::answer).

use core::ffi::CStr;
use core::fmt;

use crate::codec::DecodeError;
use crate::protocol::{Message, ResponseError, Revision, Status};

/// Every way a client call can fail. The discriminant is the stable number
/// C sees as its `dlm_status` (0 is success and no kind).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A required pointer argument was NULL. Only the C ABI reports it (Go
    /// folds it into `InvalidArgument`).
    NullParameter = 1,
    /// An argument was invalid (empty name, zero TTL, bad UTF-8, ...);
    /// nothing was sent.
    InvalidArgument = 2,
    /// A bug inside the library: a panic caught at the C ABI. Only C
    /// reports it (Go as `ErrInternal`).
    Panic = 3,
    /// The server could not be reached, or the connection failed or gave no
    /// answer in time.
    Unavailable = 4,
    /// A waiting lock's wait ran out.
    Timeout = 5,
    /// A waiting call was cancelled.
    Cancelled = 6,
    /// Another owner holds the lock or entry.
    NotOwner = 7,
    /// No such data entry (or no live lock, for an unlock by name).
    NotFound = 8,
    /// A compare-and-set put found another revision.
    Conflict = 9,
    /// The server refused the request as malformed, over a limit, or
    /// failed authentication, or does not know the action.
    BadRequest = 10,
    /// The server is out of memory for new entries.
    NoMemory = 11,
    /// The server answered something that makes no sense for the call.
    Protocol = 12,
    /// The lock was lost: it expired, or was released or taken, before an
    /// extension or release.
    LockLost = 13,
    /// An output buffer is too small. Only the C ABI reports it.
    BufferTooSmall = 14,
    /// A value could not be encoded or decoded (another encoder or key
    /// wrote it, or a custom encoder failed).
    Encoding = 15,
    /// The operating system refused something the client needs (a thread,
    /// random bytes).
    System = 16,
}

impl ErrorKind {
    /// Every kind, in the order of their numbers.
    pub const ALL: [Self; 16] = [
        Self::NullParameter,
        Self::InvalidArgument,
        Self::Panic,
        Self::Unavailable,
        Self::Timeout,
        Self::Cancelled,
        Self::NotOwner,
        Self::NotFound,
        Self::Conflict,
        Self::BadRequest,
        Self::NoMemory,
        Self::Protocol,
        Self::LockLost,
        Self::BufferTooSmall,
        Self::Encoding,
        Self::System,
    ];

    /// The stable number (C's `dlm_status`; never 0, which is success).
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The kind with this number, if there is one.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    /// The name: JavaScript's `err.code`, Go's `Err<Name>`, and, in
    /// upper snake case, C's `DLM_ERR_<NAME>`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::NullParameter => "NullParameter",
            Self::InvalidArgument => "InvalidArgument",
            Self::Panic => "Panic",
            Self::Unavailable => "Unavailable",
            Self::Timeout => "Timeout",
            Self::Cancelled => "Cancelled",
            Self::NotOwner => "NotOwner",
            Self::NotFound => "NotFound",
            Self::Conflict => "Conflict",
            Self::BadRequest => "BadRequest",
            Self::NoMemory => "NoMemory",
            Self::Protocol => "Protocol",
            Self::LockLost => "LockLost",
            Self::BufferTooSmall => "BufferTooSmall",
            Self::Encoding => "Encoding",
            Self::System => "System",
        }
    }

    /// The message, NUL-terminated for C (`dlm_status_string`).
    pub const fn message_c(self) -> &'static CStr {
        match self {
            Self::NullParameter => c"a required pointer argument was NULL",
            Self::InvalidArgument => c"invalid argument",
            Self::Panic => c"internal error in libdlm",
            Self::Unavailable => c"server unavailable",
            Self::Timeout => c"timed out waiting for the lock",
            Self::Cancelled => c"cancelled",
            Self::NotOwner => c"held by another owner",
            Self::NotFound => c"no such entry",
            Self::Conflict => c"revision conflict",
            Self::BadRequest => c"bad request",
            Self::NoMemory => c"server out of memory",
            Self::Protocol => c"protocol error",
            Self::LockLost => c"the lock was lost",
            Self::BufferTooSmall => c"buffer too small",
            Self::Encoding => c"cannot encode or decode value",
            Self::System => c"the operating system refused a resource",
        }
    }

    /// The message: what every binding says for this kind, lower case and
    /// without a full stop, so that details can follow after a colon.
    pub fn message(self) -> &'static str {
        // Every message above is ASCII.
        self.message_c().to_str().unwrap_or_default()
    }

    /// Whether only the C ABI reports this kind (a NULL pointer, a caught
    /// panic, a short buffer): the other bindings have no such failure.
    pub const fn c_only(self) -> bool {
        matches!(
            self,
            Self::NullParameter | Self::Panic | Self::BufferTooSmall
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// What an [`Error`] has to say beyond its kind's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Detail<'a> {
    /// Nothing: the kind says it all.
    None,
    /// The stored revision a compare-and-set found (0: there is no entry).
    Revision(Revision),
    /// The server's own words (a `BadPayload`'s `Error`).
    Server(Message<'a>),
    /// What is wrong with the answer line.
    Response(ResponseError),
    /// A status that makes no sense for the call.
    Status(Status),
    /// A stored value the table codec cannot decode, and why.
    Table(DecodeError),
    /// A fixed explanation.
    Text(&'static str),
}

impl fmt::Display for Detail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => Ok(()),
            Self::Revision(r) => write!(f, "current revision {r}"),
            Self::Server(m) => m.fmt(f),
            Self::Response(e) => e.fmt(f),
            Self::Status(s) => write!(f, "unexpected status {s}"),
            Self::Table(e) => write!(f, "not written with the table encoder ({e})"),
            Self::Text(t) => f.write_str(t),
        }
    }
}

/// One failure of a client call: its kind and, where there is one, its
/// detail. `Display` writes the kind's message, then `: ` and the detail.
/// It borrows from the answer line; bindings copy what they keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error<'a> {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What more there is to say.
    pub detail: Detail<'a>,
}

impl Error<'_> {
    /// An error with nothing to add to its kind's message.
    pub const fn new(kind: ErrorKind) -> Self {
        Self {
            kind,
            detail: Detail::None,
        }
    }

    /// An error with a fixed explanation.
    pub const fn text(kind: ErrorKind, text: &'static str) -> Self {
        Self {
            kind,
            detail: Detail::Text(text),
        }
    }

    /// Whether there is a detail to show after the kind's message.
    pub const fn has_detail(&self) -> bool {
        !matches!(self.detail, Detail::None)
    }

    /// The revision a compare-and-set found, for [`ErrorKind::Conflict`].
    pub const fn revision(&self) -> Option<Revision> {
        match self.detail {
            Detail::Revision(r) => Some(r),
            _ => None,
        }
    }
}

impl fmt::Display for Error<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.message())?;
        if self.has_detail() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl core::error::Error for Error<'_> {}

impl From<ResponseError> for Error<'_> {
    /// An answer line that does not parse is a protocol error.
    fn from(e: ResponseError) -> Self {
        Self {
            kind: ErrorKind::Protocol,
            detail: Detail::Response(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn codes_are_stable_and_dense() {
        // Released numbers: never change one of these.
        let expected = [
            (ErrorKind::NullParameter, 1),
            (ErrorKind::InvalidArgument, 2),
            (ErrorKind::Panic, 3),
            (ErrorKind::Unavailable, 4),
            (ErrorKind::Timeout, 5),
            (ErrorKind::Cancelled, 6),
            (ErrorKind::NotOwner, 7),
            (ErrorKind::NotFound, 8),
            (ErrorKind::Conflict, 9),
            (ErrorKind::BadRequest, 10),
            (ErrorKind::NoMemory, 11),
            (ErrorKind::Protocol, 12),
            (ErrorKind::LockLost, 13),
            (ErrorKind::BufferTooSmall, 14),
            (ErrorKind::Encoding, 15),
            (ErrorKind::System, 16),
        ];
        assert_eq!(expected.len(), ErrorKind::ALL.len());
        for (kind, code) in expected {
            assert_eq!(kind.code(), code);
            assert_eq!(ErrorKind::from_code(code), Some(kind));
        }
        assert_eq!(ErrorKind::from_code(0), None);
        assert_eq!(ErrorKind::from_code(17), None);
    }

    #[test]
    fn names_and_messages_are_distinct_and_clean() {
        for a in ErrorKind::ALL {
            assert!(!a.message().is_empty());
            assert!(a.message().is_ascii());
            assert_eq!(a.to_string(), a.message());
            assert!(a.name().bytes().all(|b| b.is_ascii_alphabetic()));
            for b in ErrorKind::ALL {
                if a != b {
                    assert_ne!(a.name(), b.name());
                    assert_ne!(a.message(), b.message());
                }
            }
        }
    }

    #[test]
    fn display_adds_the_detail_after_the_message() {
        assert_eq!(
            Error::new(ErrorKind::NotOwner).to_string(),
            "held by another owner"
        );
        let e = Error {
            kind: ErrorKind::Conflict,
            detail: Detail::Revision(Revision(3)),
        };
        assert_eq!(e.to_string(), "revision conflict: current revision 3");
        assert_eq!(e.revision(), Some(Revision(3)));
        let e = Error {
            kind: ErrorKind::BadRequest,
            detail: Detail::Server(Message::Text("field Expire must be positive")),
        };
        assert_eq!(e.to_string(), "bad request: field Expire must be positive");
        assert_eq!(e.detail.to_string(), "field Expire must be positive");
    }
}
