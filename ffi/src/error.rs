//! The client's errors: one enum whose [`kind`](Error::kind) is dlm-core's
//! [`ErrorKind`], the one definition every binding maps to its own idiom
//! (C status codes, Go sentinel errors, JS error codes). The async client
//! dlm-tokio returns this same type. Messages come from there too: `Display` writes the kind's message, then `: ` and the
//! detail, if there is one.

use std::fmt;
use std::io;

use dlm_core::client::{Detail, Error as CoreError, ErrorKind};
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
    /// A semaphore or read/write lock request named a name that is
    /// something else now: an exclusive lock, a semaphore of another size,
    /// or the other kind (the server's words say which). Its kind is
    /// [`ErrorKind::Conflict`].
    Mismatch(String),
    /// A waiting lock's wait ran out.
    Timeout,
    /// The lock was lost: it expired or was taken before it could be
    /// extended or released.
    LockLost,
    /// A blocking call was cancelled. (dlm-tokio cancels by dropping a
    /// call's future, which returns nothing: it never reports this kind.)
    Cancelled,
    /// The server refused the request as malformed or over a limit (its
    /// reason, if it gave one).
    BadRequest(String),
    /// The server is out of memory for new entries.
    NoMemory,
    /// The server could not be reached or the connection failed.
    Unavailable(io::Error),
    /// The server answered something that makes no sense.
    Protocol(String),
    /// A value could not be encoded or decoded (wrong encoder or key).
    Encoding(String),
    /// An argument was invalid.
    InvalidArgument(&'static str),
    /// The operating system refused something the client needs (a thread,
    /// random bytes), or, for dlm-tokio, there is no tokio runtime.
    System(io::Error),
}

impl Error {
    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotOwner => ErrorKind::NotOwner,
            Self::NotFound => ErrorKind::NotFound,
            Self::Conflict { .. } | Self::Mismatch(_) => ErrorKind::Conflict,
            Self::Timeout => ErrorKind::Timeout,
            Self::LockLost => ErrorKind::LockLost,
            Self::Cancelled => ErrorKind::Cancelled,
            Self::BadRequest(_) => ErrorKind::BadRequest,
            Self::NoMemory => ErrorKind::NoMemory,
            Self::Unavailable(_) => ErrorKind::Unavailable,
            Self::Protocol(_) => ErrorKind::Protocol,
            Self::Encoding(_) => ErrorKind::Encoding,
            Self::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Self::System(_) => ErrorKind::System,
        }
    }

    /// What the error says beyond its kind's message (`None` if nothing):
    /// the server's reason, the current revision, the OS error, ...
    pub fn detail(&self) -> Option<String> {
        let text = match self {
            Self::NotOwner
            | Self::NotFound
            | Self::Timeout
            | Self::LockLost
            | Self::Cancelled
            | Self::NoMemory => return None,
            Self::Conflict { current } => format!("current revision {current}"),
            Self::BadRequest(why)
            | Self::Protocol(why)
            | Self::Encoding(why)
            | Self::Mismatch(why) => why.clone(),
            Self::Unavailable(e) | Self::System(e) => e.to_string(),
            Self::InvalidArgument(why) => (*why).to_owned(),
        };
        (!text.is_empty()).then_some(text)
    }

    /// Why TLS refused the connection, if it did: an
    /// [`Unavailable`](Self::Unavailable) from a failed handshake (an
    /// unknown CA, a certificate for another name, ...), which trying
    /// again will not fix.
    pub fn tls_failure(&self) -> Option<crate::TlsFailure> {
        match self {
            Self::Unavailable(e) => crate::tls::failure_of(e),
            _ => None,
        }
    }

    /// An [`Error::System`]: a failure of the operating system, with what
    /// was being done (`"no random bytes: ..."`).
    pub fn system(what: &str, e: impl Into<io::Error>) -> Self {
        let e = e.into();
        Self::System(io::Error::new(e.kind(), format!("{what}: {e}")))
    }
}

impl From<CoreError<'_>> for Error {
    fn from(e: CoreError<'_>) -> Self {
        let detail = || match e.detail {
            Detail::None => String::new(),
            d => d.to_string(),
        };
        match e.kind {
            ErrorKind::NotOwner => Self::NotOwner,
            ErrorKind::NotFound => Self::NotFound,
            ErrorKind::Conflict => match e.detail {
                Detail::Server(m) => Self::Mismatch(m.to_string()),
                _ => Self::Conflict {
                    current: e.revision().unwrap_or(Revision(0)),
                },
            },
            ErrorKind::Timeout => Self::Timeout,
            ErrorKind::LockLost => Self::LockLost,
            ErrorKind::Cancelled => Self::Cancelled,
            ErrorKind::BadRequest => Self::BadRequest(detail()),
            ErrorKind::NoMemory => Self::NoMemory,
            ErrorKind::Unavailable => Self::Unavailable(io::Error::other(detail())),
            ErrorKind::Encoding => Self::Encoding(detail()),
            ErrorKind::InvalidArgument => Self::InvalidArgument(match e.detail {
                Detail::Text(t) => t,
                _ => "",
            }),
            ErrorKind::System => Self::System(io::Error::other(detail())),
            // Protocol, and the kinds only the C ABI has, which dlm-core's
            // client never reports.
            _ => Self::Protocol(detail()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind().message())?;
        if let Some(detail) = self.detail() {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unavailable(e) | Self::System(e) => Some(e),
            _ => None,
        }
    }
}

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_the_kinds_then_the_detail() {
        assert_eq!(Error::NotOwner.to_string(), "held by another owner");
        assert_eq!(Error::NotOwner.detail(), None);
        assert_eq!(
            Error::Conflict {
                current: Revision(2)
            }
            .to_string(),
            "revision conflict: current revision 2"
        );
        assert_eq!(Error::BadRequest(String::new()).to_string(), "bad request");
        let e = Error::Unavailable(io::Error::new(io::ErrorKind::ConnectionRefused, "refused"));
        assert_eq!(e.to_string(), "server unavailable: refused");
        assert_eq!(e.detail().as_deref(), Some("refused"));
        for e in [
            Error::NotOwner,
            Error::Timeout,
            Error::Encoding("x".into()),
            Error::System(io::Error::other("y")),
        ] {
            assert!(e.to_string().starts_with(e.kind().message()));
        }
    }
}
