//! Typed errors for every way a request or a response can be malformed.

use core::fmt;

use super::Status;
use super::json::JsonError;
use crate::codec::DecodeError;
use crate::time::Ttl;

/// A field of a request or response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// `Action`.
    Action,
    /// `FileName`: the lock name or data key.
    FileName,
    /// `ID`: the owner.
    Id,
    /// `Expire`: the TTL in seconds.
    Expire,
    /// `DataStore`: the opaque value.
    DataStore,
    /// `Name`: the identity name.
    Name,
    /// `Identity`: the identity secret.
    Identity,
    /// `Wait`: how long to queue for a lock, in seconds.
    Wait,
    /// `Revision`: compare-and-set revision.
    Revision,
    /// `Token`: fencing token.
    Token,
    /// `RequestID`: makes a mutating request apply once when resent.
    RequestId,
    /// `Op`: what a `Cluster` request asks (extension).
    Op,
    /// `Node`: a cluster member's ID (extension).
    Node,
    /// `Peer`: a cluster member's peer address (extension).
    Peer,
    /// `Permits`: the name is a counting semaphore of this many permits
    /// (extension).
    Permits,
    /// `Mode`: the name is a read/write lock, taken to `Read` (shared) or
    /// `Write` (exclusive) (extension).
    Mode,
    /// `Session`: bind a `Lock`'s grant to the connection's session
    /// (extension).
    Session,
    /// `LockDelay`: seconds nobody may take a session-bound hold's name
    /// after its session ends (extension).
    LockDelay,
    /// `Prefix`: a `Watch` of every name that starts with it (extension).
    Prefix,
    /// `Names`: the locks a `LockAll` takes together (extension).
    Names,
    /// `Readers`: who may read a `Put`'s value besides its owner
    /// (extension).
    Readers,
    /// `Status` (responses).
    Status,
    /// `Error` (responses).
    Error,
    /// `Stats` (responses).
    Stats,
    /// `Event`: what happened (watch events).
    Event,
    /// `Kind`: what kind of name a watch event is about.
    Kind,
    /// `DataRevision`: a value's own revision (watch events).
    DataRevision,
    /// `Tokens`: one fencing token per name of a `LockAll` (responses).
    Tokens,
}

impl Field {
    /// The field's name on the wire.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Action => "Action",
            Self::FileName => "FileName",
            Self::Id => "ID",
            Self::Expire => "Expire",
            Self::DataStore => "DataStore",
            Self::Name => "Name",
            Self::Identity => "Identity",
            Self::Wait => "Wait",
            Self::Revision => "Revision",
            Self::Token => "Token",
            Self::RequestId => "RequestID",
            Self::Op => "Op",
            Self::Node => "Node",
            Self::Peer => "Peer",
            Self::Permits => "Permits",
            Self::Mode => "Mode",
            Self::Session => "Session",
            Self::LockDelay => "LockDelay",
            Self::Prefix => "Prefix",
            Self::Names => "Names",
            Self::Readers => "Readers",
            Self::Status => "Status",
            Self::Error => "Error",
            Self::Stats => "Stats",
            Self::Event => "Event",
            Self::Kind => "Kind",
            Self::DataRevision => "DataRevision",
            Self::Tokens => "Tokens",
        }
    }

    pub(crate) fn of_request_key(key: &[u8]) -> Option<Self> {
        Some(match key {
            b"Action" => Self::Action,
            b"FileName" => Self::FileName,
            b"ID" => Self::Id,
            b"Expire" => Self::Expire,
            b"DataStore" => Self::DataStore,
            b"Name" => Self::Name,
            b"Identity" => Self::Identity,
            b"Wait" => Self::Wait,
            b"Revision" => Self::Revision,
            b"Token" => Self::Token,
            b"RequestID" => Self::RequestId,
            b"Op" => Self::Op,
            b"Node" => Self::Node,
            b"Peer" => Self::Peer,
            b"Permits" => Self::Permits,
            b"Mode" => Self::Mode,
            b"Session" => Self::Session,
            b"LockDelay" => Self::LockDelay,
            b"Prefix" => Self::Prefix,
            b"Names" => Self::Names,
            b"Readers" => Self::Readers,
            _ => return None,
        })
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that can be wrong with a request. Each maps to a protocol
/// [`Status`] (`BadPayload`, or `BadAction` for an unknown action) and its
/// `Display` text is the response's `Error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The line is longer than the limit.
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// The line is blank.
    Empty,
    /// A legacy line is not a valid table encoding.
    Encoding(DecodeError),
    /// The JSON text is not valid UTF-8.
    InvalidUtf8,
    /// The JSON is malformed.
    Json(JsonError),
    /// A known field appears twice.
    DuplicateField(Field),
    /// A field the action needs is absent (or null).
    MissingField(Field),
    /// A field has the wrong JSON type.
    WrongType {
        /// The field.
        field: Field,
        /// What was found, such as "an object".
        found: &'static str,
    },
    /// A name or ID is the empty string.
    EmptyField(Field),
    /// A name or ID is longer than the limit.
    TooLong {
        /// The field.
        field: Field,
        /// The limit in bytes.
        limit: usize,
    },
    /// A number that does not parse.
    InvalidNumber(Field),
    /// A negative TTL, wait, token or revision.
    Negative(Field),
    /// `NaN` or an infinity.
    NotFinite(Field),
    /// `Expire` of zero on `Lock` or `Put`: it would expire at once.
    ZeroTtl,
    /// A TTL or wait over the limit that applies to this request.
    OverLimit {
        /// `Expire` or `Wait`.
        field: Field,
        /// The limit.
        limit: Ttl,
    },
    /// A token or revision that is not an integer in 0..2^64.
    NotAnInteger(Field),
    /// `DataStore` larger than allowed for this request.
    DataTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The `Action` is not one the server knows.
    UnknownAction,
    /// `Name`/`Identity` did not authenticate. Deliberately says nothing
    /// about whether the name exists.
    AuthFailed,
    /// An `Admin` request without an identity the server marks `Admin`
    /// (extension).
    NotAdmin,
    /// A field whose value is none of those allowed (extension).
    InvalidValue {
        /// The field.
        field: Field,
        /// What it may be, such as "Read or Write".
        expected: &'static str,
    },
    /// Two fields that exclude each other (extension).
    Exclusive {
        /// The first.
        first: Field,
        /// The second.
        second: Field,
    },
    /// A field that means something only beside another one (extension).
    Needs {
        /// The field given.
        field: Field,
        /// The field it needs.
        needs: Field,
    },
    /// `Session` on a connection that has opened no session (extension).
    NoSession,
    /// A list with more elements than allowed (`Names`; extension).
    TooMany {
        /// The field.
        field: Field,
        /// The most elements it may have.
        limit: usize,
    },
    /// The same name twice in `Names` (extension).
    Repeated(Field),
    /// `Readers` names more identities than allowed (extension).
    TooManyReaders {
        /// The most names.
        limit: usize,
    },
    /// `Readers` is neither `"Any"`, `"Owner"` nor an array of identity
    /// names (extension).
    InvalidReader,
    /// `DataStore` and the names in `Readers` together are larger than
    /// the caller's limit on a value (extension).
    ReadersTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

impl RequestError {
    /// The status a response to this error carries.
    pub const fn status(&self) -> Status {
        match self {
            Self::UnknownAction => Status::BadAction,
            _ => Status::BadPayload,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LineTooLong { limit } => write!(f, "request line longer than {limit} bytes"),
            Self::Empty => f.write_str("empty request"),
            Self::Encoding(e) => write!(f, "bad table encoding: {e}"),
            Self::InvalidUtf8 => f.write_str("request is not valid UTF-8"),
            Self::Json(e) => write!(f, "malformed JSON: {e}"),
            Self::DuplicateField(field) => write!(f, "duplicate field {field}"),
            Self::MissingField(field) => write!(f, "missing field {field}"),
            Self::WrongType { field, found } => write!(f, "field {field} must not be {found}"),
            Self::EmptyField(field) => write!(f, "field {field} is empty"),
            Self::TooLong { field, limit } => {
                write!(f, "field {field} is longer than {limit} bytes")
            }
            Self::InvalidNumber(field) => write!(f, "field {field} is not a number"),
            Self::Negative(field) => write!(f, "field {field} is negative"),
            Self::NotFinite(field) => write!(f, "field {field} is not finite"),
            Self::ZeroTtl => f.write_str("field Expire must be positive"),
            Self::OverLimit { field, limit } => {
                write!(f, "field {field} is over the limit of {limit} s")
            }
            Self::NotAnInteger(field) => {
                write!(f, "field {field} must be an integer from 0 to 2^64-1")
            }
            Self::DataTooLarge { limit } => write!(f, "DataStore larger than {limit} bytes"),
            Self::UnknownAction => f.write_str("unknown Action"),
            Self::AuthFailed => f.write_str("authentication failed"),
            Self::NotAdmin => f.write_str("an administrator identity is required"),
            Self::InvalidValue { field, expected } => {
                write!(f, "field {field} must be {expected}")
            }
            Self::Exclusive { first, second } => {
                write!(f, "fields {first} and {second} exclude each other")
            }
            Self::Needs { field, needs } => write!(f, "field {field} needs field {needs}"),
            Self::NoSession => {
                f.write_str("no session on this connection: send a Session request first")
            }
            Self::TooMany { field, limit } => {
                write!(f, "field {field} has more than {limit} elements")
            }
            Self::Repeated(field) => write!(f, "field {field} names the same lock twice"),
            Self::TooManyReaders { limit } => {
                write!(f, "field Readers names more than {limit} identities")
            }
            Self::InvalidReader => f.write_str(
                "field Readers must be \"Any\", \"Owner\" or an array of identity names \
                 (1 to 255 letters, digits, '-', '_' or '.', not starting with '.')",
            ),
            Self::ReadersTooLarge { limit } => {
                write!(
                    f,
                    "DataStore and Readers together larger than {limit} bytes"
                )
            }
        }
    }
}

impl core::error::Error for RequestError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Encoding(e) => Some(e),
            Self::Json(e) => Some(e),
            _ => None,
        }
    }
}

impl From<JsonError> for RequestError {
    fn from(e: JsonError) -> Self {
        Self::Json(e)
    }
}

/// Everything that can be wrong with a response line (client side).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// The line is blank.
    Empty,
    /// A legacy line is not a valid table encoding.
    Encoding(DecodeError),
    /// The JSON text is not valid UTF-8.
    InvalidUtf8,
    /// The JSON is malformed.
    Json(JsonError),
    /// A field appears twice.
    DuplicateField(Field),
    /// The `Status` field is absent.
    MissingStatus,
    /// A `Status` this client does not know.
    UnknownStatus,
    /// A field has the wrong JSON type or an unparsable value.
    BadField(Field),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty response"),
            Self::Encoding(e) => write!(f, "bad table encoding in response: {e}"),
            Self::InvalidUtf8 => f.write_str("response is not valid UTF-8"),
            Self::Json(e) => write!(f, "malformed JSON in response: {e}"),
            Self::DuplicateField(field) => write!(f, "duplicate field {field} in response"),
            Self::MissingStatus => f.write_str("response has no Status"),
            Self::UnknownStatus => f.write_str("response has an unknown Status"),
            Self::BadField(field) => write!(f, "response field {field} is malformed"),
        }
    }
}

impl core::error::Error for ResponseError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Encoding(e) => Some(e),
            Self::Json(e) => Some(e),
            _ => None,
        }
    }
}

impl From<JsonError> for ResponseError {
    fn from(e: JsonError) -> Self {
        Self::Json(e)
    }
}
