//! The module's one error type, and how it crosses into JavaScript.
//!
//! An [`Error`] is one of dlm-core's [`ErrorKind`]s (the one definition of
//! every binding's errors: names, numbers, messages) with its detail.
//! Every exported function returns `Result<_, Error>`; wasm-bindgen throws
//! the `Err` through [`From<Error> for JsValue`](Error#impl-From<Error>-for-JsValue),
//! which builds an instance of the package's own `DlmError` subclasses
//! (`wasm/js/errors.js`) whose `code` is the kind's name, so Node code can
//! branch on `err.code` or `instanceof` and never sees a bare string.

use core::fmt;

use dlm_core::client::{Detail, Error as CoreError, ErrorKind};
use dlm_core::codec::DecodeError;
use dlm_core::protocol::ResponseError;

/// A failure: its kind and what more there is to say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    detail: String,
    /// The stored revision, for [`ErrorKind::Conflict`].
    current: Option<u64>,
}

impl Error {
    /// An error of `kind` with `detail` (empty: nothing to add).
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            current: None,
        }
    }

    /// An invalid argument; nothing was sent.
    pub(crate) fn invalid(why: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, why)
    }

    /// The same error with a revision: the stored one for a conflict,
    /// the last one sent for a watch the server ended.
    pub(crate) const fn with_current(mut self, revision: u64) -> Self {
        self.current = Some(revision);
        self
    }

    /// The kind.
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The stable code JavaScript sees as `err.code`: the kind's name.
    pub const fn code(&self) -> &'static str {
        self.kind.name()
    }

    /// The stored revision a compare-and-set found, for a conflict.
    pub const fn current(&self) -> Option<u64> {
        self.current
    }
}

impl From<CoreError<'_>> for Error {
    fn from(e: CoreError<'_>) -> Self {
        Self {
            kind: e.kind,
            detail: match e.detail {
                Detail::None => String::new(),
                d => d.to_string(),
            },
            current: e.revision().map(|r| r.0),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.message())?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl core::error::Error for Error {}

impl From<ResponseError> for Error {
    fn from(e: ResponseError) -> Self {
        CoreError::from(e).into()
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Self::new(ErrorKind::Encoding, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlm_core::protocol::{Message, Revision};

    #[test]
    fn core_errors_keep_their_kind_detail_and_revision() {
        let e = Error::from(CoreError {
            kind: ErrorKind::Conflict,
            detail: Detail::Revision(Revision(4)),
        });
        assert_eq!((e.code(), e.current()), ("Conflict", Some(4)));
        assert_eq!(e.to_string(), "revision conflict: current revision 4");
        let e = Error::from(CoreError {
            kind: ErrorKind::BadRequest,
            detail: Detail::Server(Message::Text("too long")),
        });
        assert_eq!(e.to_string(), "bad request: too long");
        assert_eq!(
            Error::new(ErrorKind::BadRequest, "").to_string(),
            "bad request"
        );
        assert_eq!(Error::invalid("x").code(), "InvalidArgument");
    }
}
