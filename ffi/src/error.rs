//! The client's errors: one enum, with a `kind` that every binding maps to
//! its own idiom (C status codes, Go sentinel errors, JS error codes).

use std::fmt;
use std::io;

use dlm_core::protocol::Revision;

/// Everything a dlm call can fail with.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Another owner holds the lock or entry (or a token was stale).
    NotOwner,
    /// No such data entry.
    NotFound,
    /// A compare-and-set `put` found another revision.
    Conflict {
        /// The stored revision (0: there is no entry).
        current: Revision,
    },
    /// A waiting lock's wait ran out.
    Timeout,
    /// The lock was lost: it expired or was taken before it could be
    /// extended or released.
    LockLost,
    /// A blocking call was cancelled.
    Cancelled,
    /// The server refused the request as malformed or over a limit.
    BadRequest(String),
    /// The server is out of memory for new entries.
    NoMemory,
    /// The server could not be reached or the connection failed.
    Unavailable(io::Error),
    /// The server answered something that makes no sense.
    Protocol(String),
    /// A stored value could not be decoded (wrong encoder or key).
    Encoding(String),
    /// An argument was invalid.
    InvalidArgument(&'static str),
}

/// The kind of an [`Error`], without its details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`Error::NotOwner`].
    NotOwner,
    /// See [`Error::NotFound`].
    NotFound,
    /// See [`Error::Conflict`].
    Conflict,
    /// See [`Error::Timeout`].
    Timeout,
    /// See [`Error::LockLost`].
    LockLost,
    /// See [`Error::Cancelled`].
    Cancelled,
    /// See [`Error::BadRequest`].
    BadRequest,
    /// See [`Error::NoMemory`].
    NoMemory,
    /// See [`Error::Unavailable`].
    Unavailable,
    /// See [`Error::Protocol`].
    Protocol,
    /// See [`Error::Encoding`].
    Encoding,
    /// See [`Error::InvalidArgument`].
    InvalidArgument,
}

impl Error {
    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotOwner => ErrorKind::NotOwner,
            Self::NotFound => ErrorKind::NotFound,
            Self::Conflict { .. } => ErrorKind::Conflict,
            Self::Timeout => ErrorKind::Timeout,
            Self::LockLost => ErrorKind::LockLost,
            Self::Cancelled => ErrorKind::Cancelled,
            Self::BadRequest(_) => ErrorKind::BadRequest,
            Self::NoMemory => ErrorKind::NoMemory,
            Self::Unavailable(_) => ErrorKind::Unavailable,
            Self::Protocol(_) => ErrorKind::Protocol,
            Self::Encoding(_) => ErrorKind::Encoding,
            Self::InvalidArgument(_) => ErrorKind::InvalidArgument,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotOwner => f.write_str("held by another owner"),
            Self::NotFound => f.write_str("no such entry"),
            Self::Conflict { current } => {
                write!(f, "revision conflict (current revision {current})")
            }
            Self::Timeout => f.write_str("timed out waiting for the lock"),
            Self::LockLost => f.write_str("the lock was lost"),
            Self::Cancelled => f.write_str("cancelled"),
            Self::BadRequest(why) => write!(f, "bad request: {why}"),
            Self::NoMemory => f.write_str("server out of memory"),
            Self::Unavailable(e) => write!(f, "server unavailable: {e}"),
            Self::Protocol(why) => write!(f, "protocol error: {why}"),
            Self::Encoding(why) => write!(f, "cannot decode value: {why}"),
            Self::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unavailable(e) => Some(e),
            _ => None,
        }
    }
}

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
