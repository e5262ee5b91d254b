//! The module's one error type, and how it crosses into JavaScript.
//!
//! Every exported function returns `Result<_, Error>`; wasm-bindgen throws
//! the `Err` through [`From<Error> for JsValue`](Error#impl-From<Error>-for-JsValue),
//! which builds an instance of the package's own `DlmError` subclasses
//! (`wasm/js/errors.js`) with a `code` property, so Node code can branch on
//! `err.code` or `instanceof` and never sees a bare string.

use core::fmt;

use dlm_core::client::Refusal;
use dlm_core::codec::DecodeError;
use dlm_core::protocol::ResponseError;
use dlm_core::seal::SealError;

/// Everything the module can refuse or fail with. The JavaScript layer adds
/// the errors only it can see (`Unavailable`, `Cancelled`, `NotFound`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// Another owner holds the lock or entry (or the token is stale).
    NotOwner,
    /// A compare-and-set `Put` found this revision (0: no entry).
    Conflict {
        /// The stored revision.
        current: u64,
    },
    /// A waiting lock's wait ran out.
    Timeout,
    /// The lock is gone: an extension or release found it expired or taken.
    LockLost,
    /// The server refused the request as malformed or over a limit.
    BadRequest(String),
    /// The server is out of memory for new entries.
    NoMemory,
    /// The server answered something that makes no sense.
    Protocol(String),
    /// A stored value could not be decoded (wrong encoder or key).
    Encoding(String),
    /// An argument was invalid; nothing was sent.
    InvalidArgument(String),
}

impl Error {
    /// The stable code JavaScript sees as `err.code`.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::NotOwner => "NotOwner",
            Self::Conflict { .. } => "Conflict",
            Self::Timeout => "Timeout",
            Self::LockLost => "LockLost",
            Self::BadRequest(_) => "BadRequest",
            Self::NoMemory => "NoMemory",
            Self::Protocol(_) => "Protocol",
            Self::Encoding(_) => "Encoding",
            Self::InvalidArgument(_) => "InvalidArgument",
        }
    }

    /// An invalid argument.
    pub(crate) fn invalid(why: impl Into<String>) -> Self {
        Self::InvalidArgument(why.into())
    }

    /// Maps the server's refusal of a request.
    pub(crate) fn refused(r: Refusal<'_>) -> Self {
        match r {
            Refusal::NotOwner => Self::NotOwner,
            Refusal::Conflict(current) => Self::Conflict { current: current.0 },
            Refusal::BadRequest(m) => {
                Self::BadRequest(m.map_or_else(String::new, |m| m.to_string()))
            }
            Refusal::NoMemory => Self::NoMemory,
            Refusal::Unexpected(s) => Self::Protocol(format!("unexpected status {s}")),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotOwner => f.write_str("held by another owner"),
            Self::Conflict { current } => {
                write!(f, "revision conflict (current revision {current})")
            }
            Self::Timeout => f.write_str("timed out waiting for the lock"),
            Self::LockLost => f.write_str("the lock was lost"),
            Self::BadRequest(why) if why.is_empty() => f.write_str("bad request"),
            Self::BadRequest(why) => write!(f, "bad request: {why}"),
            Self::NoMemory => f.write_str("server out of memory"),
            Self::Protocol(why) => write!(f, "protocol error: {why}"),
            Self::Encoding(why) => write!(f, "cannot decode value: {why}"),
            Self::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
        }
    }
}

impl core::error::Error for Error {}

impl From<ResponseError> for Error {
    fn from(e: ResponseError) -> Self {
        Self::Protocol(e.to_string())
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Self::Encoding(e.to_string())
    }
}

impl From<SealError> for Error {
    fn from(e: SealError) -> Self {
        Self::Encoding(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlm_core::protocol::{Message, Revision, Status};

    #[test]
    fn refusals_map_to_codes() {
        let code = |r| Error::refused(r).code();
        assert_eq!(code(Refusal::NotOwner), "NotOwner");
        assert_eq!(code(Refusal::Conflict(Revision(4))), "Conflict");
        assert_eq!(code(Refusal::NoMemory), "NoMemory");
        assert_eq!(code(Refusal::BadRequest(None)), "BadRequest");
        assert_eq!(code(Refusal::Unexpected(Status::Done)), "Protocol");
        assert_eq!(
            Error::refused(Refusal::Conflict(Revision(4))),
            Error::Conflict { current: 4 }
        );
        assert_eq!(
            Error::refused(Refusal::BadRequest(Some(Message::Text("too long")))).to_string(),
            "bad request: too long"
        );
        assert_eq!(Error::BadRequest(String::new()).to_string(), "bad request");
    }
}
