//! Requests: parsing (server side) and writing (client side).

use core::fmt;
use core::ops::Deref;

use super::error::{Field, RequestError};
use super::json::{self, Scanner, Span, Value};
use super::out::{BufferTooSmall, Legacy, Out};
use super::{Framing, NumError, Revision, Token, parse_seconds_ms, parse_u64, unframe};
use crate::limits::Limits;
use crate::time::Ttl;

macro_rules! str_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name<'a>(pub &'a str);

        impl<'a> $name<'a> {
            /// The text.
            pub const fn as_str(&self) -> &'a str {
                self.0
            }
        }

        impl Deref for $name<'_> {
            type Target = str;
            fn deref(&self) -> &str {
                self.0
            }
        }

        impl PartialEq<&str> for $name<'_> {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl fmt::Debug for $name<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.0, f)
            }
        }

        impl fmt::Display for $name<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0)
            }
        }
    };
}

str_newtype!(
    /// A resource: a lock name or a data key (`FileName` on the wire).
    Resource
);
str_newtype!(
    /// An owner ID (`ID` on the wire).
    Owner
);

/// `Name` and `Identity`: a claim to be an identity, not yet verified.
/// The server checks the secret; the engine only ever sees the result.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// The identity's name (`Name`).
    pub name: &'a str,
    /// The secret (`Identity`). Never logged: `Debug` redacts it.
    pub secret: &'a str,
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What a request asks for, with exactly the fields its action needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// Acquire or extend a lock.
    Lock {
        /// The lock.
        name: Resource<'a>,
        /// Who asks.
        owner: Owner<'a>,
        /// How long to hold it from now.
        ttl: Ttl,
        /// Queue for up to this long if another owner holds it.
        wait: Option<Ttl>,
        /// Only extend the live grant with this token; never acquire.
        token: Option<Token>,
    },
    /// Take a permit of a counting semaphore, or a read/write lock in one
    /// of its modes, or extend such a hold by its token (`Lock` with
    /// `Permits` or `Mode`, extension). Every acquisition is a hold of its
    /// own with its own token; it is released by `Unlock`.
    Acquire {
        /// The semaphore or read/write lock.
        name: Resource<'a>,
        /// Who asks.
        owner: Owner<'a>,
        /// What the name is, and how it is taken.
        shape: Shape,
        /// How long to hold it from now.
        ttl: Ttl,
        /// Queue for up to this long if it cannot be granted at once.
        wait: Option<Ttl>,
        /// Only extend the live hold with this token; never acquire.
        token: Option<Token>,
    },
    /// Release a lock.
    Unlock {
        /// The lock.
        name: Resource<'a>,
        /// Who asks.
        owner: Owner<'a>,
        /// Only release the grant with this token.
        token: Option<Token>,
    },
    /// Ask whether a lock is held, without acquiring it.
    TestLock {
        /// The lock.
        name: Resource<'a>,
        /// Who asks.
        owner: Owner<'a>,
    },
    /// Store a value.
    Put {
        /// The data key.
        name: Resource<'a>,
        /// Who asks.
        owner: Owner<'a>,
        /// How long to keep it from now.
        ttl: Ttl,
        /// The opaque, already-encoded value.
        data: &'a str,
        /// Compare-and-set: only if the stored revision is this (0: absent).
        revision: Option<Revision>,
    },
    /// Read a value.
    Get {
        /// The data key.
        name: Resource<'a>,
        /// Who asks.
        owner: Owner<'a>,
    },
    /// Delete a value.
    Erase {
        /// The data key.
        name: Resource<'a>,
        /// Who asks.
        owner: Owner<'a>,
    },
    /// Ask for the server's version.
    Version,
    /// Ask for the server's statistics (extension).
    Stats,
    /// Ask about, or change, the cluster's membership (extension; answered
    /// by the server, not the engine).
    Cluster(ClusterOp<'a>),
    /// An administrator's look at the lock table, or a revocation
    /// (extension; needs an identity the server marks `Admin`).
    Admin(AdminOp<'a>),
}

/// How an [`Command::Acquire`] takes its name: what the name is (a
/// semaphore and its size, or a read/write lock) and in which mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    /// One permit of a counting semaphore of `permits` permits (at least
    /// 1; `Permits` on the wire).
    Semaphore {
        /// How many holders the semaphore admits at once.
        permits: u32,
    },
    /// The shared side of a read/write lock (`"Mode":"Read"`).
    Read,
    /// The exclusive side of a read/write lock (`"Mode":"Write"`).
    Write,
}

/// What an `Admin` request asks. The server answers `Locks` and `Lock`
/// from its lock table; `Revoke` changes state, so it goes to the engine
/// like any request (through the log, in a cluster). Values are never
/// shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminOp<'a> {
    /// The live locks whose names start with `prefix` (every lock if it is
    /// empty), in name order.
    Locks {
        /// The start of the names (`FileName`, optional).
        prefix: &'a str,
    },
    /// One live lock: its holder, its grant and its queue.
    Lock {
        /// The lock.
        name: Resource<'a>,
    },
    /// Takes the lock away from its holder, as if it had unlocked it; the
    /// first waiter gets it.
    Revoke {
        /// The lock.
        name: Resource<'a>,
        /// Only if its current grant has this token.
        token: Option<Token>,
    },
}

impl AdminOp<'_> {
    /// The `Op` on the wire.
    pub const fn op(&self) -> &'static str {
        match self {
            Self::Locks { .. } => "locks",
            Self::Lock { .. } => "lock",
            Self::Revoke { .. } => "revoke",
        }
    }
}

/// What a `Cluster` request asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterOp<'a> {
    /// Members, leader, term, commit and applied index, lag.
    Status,
    /// Add member `node` listening for peers at `peer`.
    Add {
        /// Its ID.
        node: u64,
        /// Its peer address (`HOST:PORT`).
        peer: &'a str,
    },
    /// Remove member `node`.
    Remove {
        /// Its ID.
        node: u64,
    },
    /// Hand the leadership to member `node`.
    Transfer {
        /// Its ID.
        node: u64,
    },
}

impl<'a> Command<'a> {
    /// The action's name on the wire.
    pub const fn action(&self) -> &'static str {
        match self {
            Self::Lock { .. } | Self::Acquire { .. } => "Lock",
            Self::Unlock { .. } => "Unlock",
            Self::TestLock { .. } => "TestLock",
            Self::Put { .. } => "Put",
            Self::Get { .. } => "Get",
            Self::Erase { .. } => "Erase",
            Self::Version => "Version",
            Self::Stats => "Stats",
            Self::Cluster(_) => "Cluster",
            Self::Admin(_) => "Admin",
        }
    }

    /// The resource and owner, for actions that have them.
    pub const fn target(&self) -> Option<(Resource<'a>, Owner<'a>)> {
        match *self {
            Self::Lock { name, owner, .. }
            | Self::Acquire { name, owner, .. }
            | Self::Unlock { name, owner, .. }
            | Self::TestLock { name, owner }
            | Self::Put { name, owner, .. }
            | Self::Get { name, owner }
            | Self::Erase { name, owner } => Some((name, owner)),
            Self::Version | Self::Stats | Self::Cluster(_) | Self::Admin(_) => None,
        }
    }

    /// Checks every limit that applies to this command for a caller who is
    /// anonymous (`identity_max_data` is `None`) or authenticated with an
    /// identity allowed `DataStore`s of up to `identity_max_data` bytes.
    ///
    /// The parser calls this for anonymous callers and the engine calls it
    /// again with the verified principal, so a command built by hand is
    /// held to the same rules as one read from the wire.
    pub fn check(
        &self,
        limits: &Limits,
        identity_max_data: Option<usize>,
    ) -> Result<(), RequestError> {
        let limits = limits.clamped();
        let max_ttl = if identity_max_data.is_some() {
            limits.max_ttl
        } else {
            limits.max_ttl_anonymous
        };
        let ttl_ok = |field, ttl: Ttl| {
            if ttl > max_ttl {
                Err(RequestError::OverLimit {
                    field,
                    limit: max_ttl,
                })
            } else {
                Ok(())
            }
        };
        if let Some((name, owner)) = self.target() {
            check_name(Field::FileName, &name, limits.max_name)?;
            check_name(Field::Id, &owner, limits.max_id)?;
        }
        match *self {
            Self::Admin(AdminOp::Locks { prefix }) if prefix.len() > limits.max_name => {
                return Err(RequestError::TooLong {
                    field: Field::FileName,
                    limit: limits.max_name,
                });
            }
            Self::Admin(AdminOp::Lock { name } | AdminOp::Revoke { name, .. }) => {
                check_name(Field::FileName, &name, limits.max_name)?;
            }
            _ => {}
        }
        match *self {
            Self::Acquire {
                shape: Shape::Semaphore { permits: 0 },
                ..
            } => {
                return Err(RequestError::InvalidValue {
                    field: Field::Permits,
                    expected: "an integer from 1 to 4294967295",
                });
            }
            Self::Lock { ttl, wait, .. } | Self::Acquire { ttl, wait, .. } => {
                if ttl.is_zero() {
                    return Err(RequestError::ZeroTtl);
                }
                ttl_ok(Field::Expire, ttl)?;
                if let Some(wait) = wait {
                    ttl_ok(Field::Wait, wait)?;
                }
            }
            Self::Put { ttl, data, .. } => {
                if ttl.is_zero() {
                    return Err(RequestError::ZeroTtl);
                }
                ttl_ok(Field::Expire, ttl)?;
                let limit = identity_max_data.unwrap_or(limits.max_data_anonymous);
                if data.len() > limit {
                    return Err(RequestError::DataTooLarge { limit });
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn check_name(field: Field, s: &str, limit: usize) -> Result<(), RequestError> {
    if s.is_empty() {
        Err(RequestError::EmptyField(field))
    } else if s.len() > limit {
        Err(RequestError::TooLong { field, limit })
    } else {
        Ok(())
    }
}

/// One parsed request line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The framing the line used; the response must use the same.
    pub framing: Framing,
    /// What is asked.
    pub command: Command<'a>,
    /// `Name`/`Identity`, if the request carries them (not yet verified).
    pub credentials: Option<Credentials<'a>>,
    /// `RequestID`, if the request carries one: a resend of a mutating
    /// request with the same ID is applied once (PROTOCOL.md section 8).
    pub request_id: Option<&'a str>,
}

/// The longest `RequestID` accepted, in bytes.
pub const MAX_REQUEST_ID: usize = 64;

impl<'a> Request<'a> {
    /// The same request, carrying `id` as its `RequestID`.
    #[must_use]
    pub const fn with_request_id(mut self, id: &'a str) -> Self {
        self.request_id = Some(id);
        self
    }
}

/// A request that could not be parsed: why, and the framing to answer in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The framing the line appeared to use.
    pub framing: Framing,
    /// What was wrong.
    pub error: RequestError,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl core::error::Error for Rejected {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Number of request fields the parser tracks (the first ten [`Field`]s).
const REQUEST_FIELDS: usize = 16;

struct Fields<'b> {
    buf: &'b [u8],
    values: [Option<Value>; REQUEST_FIELDS],
}

impl<'b> Fields<'b> {
    fn get(&self, field: Field) -> Option<Value> {
        match self.values[field as usize] {
            None | Some(Value::Null) => None,
            v => v,
        }
    }

    fn text(&self, span: Span) -> Result<&'b str, RequestError> {
        core::str::from_utf8(span.of(self.buf)).map_err(|_| RequestError::InvalidUtf8)
    }

    fn string(&self, field: Field) -> Result<Option<&'b str>, RequestError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Str(span)) => self.text(span).map(Some),
            Some(v) => Err(RequestError::WrongType {
                field,
                found: v.kind(),
            }),
        }
    }

    fn required(&self, field: Field) -> Result<&'b str, RequestError> {
        self.string(field)?.ok_or(RequestError::MissingField(field))
    }

    fn seconds(&self, field: Field) -> Result<Option<Ttl>, RequestError> {
        let span = match self.get(field) {
            None => return Ok(None),
            Some(Value::Str(span) | Value::Num(span)) => span,
            Some(v) => {
                return Err(RequestError::WrongType {
                    field,
                    found: v.kind(),
                });
            }
        };
        match parse_seconds_ms(span.of(self.buf)) {
            Ok(ms) => Ok(Some(Ttl::from_millis(ms))),
            Err(NumError::Invalid) => Err(RequestError::InvalidNumber(field)),
            Err(NumError::Negative) => Err(RequestError::Negative(field)),
            Err(NumError::NotFinite) => Err(RequestError::NotFinite(field)),
            Err(NumError::TooLarge) => Err(RequestError::OverLimit {
                field,
                limit: Ttl::from_millis(u64::MAX),
            }),
        }
    }

    /// `Permits` or `Mode`, if either is present (never both).
    fn shape(&self) -> Result<Option<Shape>, RequestError> {
        let permits = self.integer(Field::Permits)?;
        let mode = self.string(Field::Mode)?;
        match (permits, mode) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(RequestError::Exclusive {
                first: Field::Permits,
                second: Field::Mode,
            }),
            (Some(n), None) => match u32::try_from(n) {
                Ok(permits) if permits > 0 => Ok(Some(Shape::Semaphore { permits })),
                _ => Err(RequestError::InvalidValue {
                    field: Field::Permits,
                    expected: "an integer from 1 to 4294967295",
                }),
            },
            (None, Some(m)) if m.eq_ignore_ascii_case("read") => Ok(Some(Shape::Read)),
            (None, Some(m)) if m.eq_ignore_ascii_case("write") => Ok(Some(Shape::Write)),
            (None, Some(_)) => Err(RequestError::InvalidValue {
                field: Field::Mode,
                expected: "Read or Write",
            }),
        }
    }

    fn integer(&self, field: Field) -> Result<Option<u64>, RequestError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Num(span)) => match parse_u64(span.of(self.buf)) {
                Ok(v) => Ok(Some(v)),
                Err(NumError::Negative) => Err(RequestError::Negative(field)),
                Err(_) => Err(RequestError::NotAnInteger(field)),
            },
            Some(v) => Err(RequestError::WrongType {
                field,
                found: v.kind(),
            }),
        }
    }
}

#[derive(Clone, Copy)]
enum Action {
    Lock,
    Unlock,
    TestLock,
    Put,
    Get,
    Erase,
    Version,
    Stats,
    Cluster,
    Admin,
}

impl Action {
    fn from_wire(s: &str) -> Option<Self> {
        const NAMES: [(&str, Action); 10] = [
            ("lock", Action::Lock),
            ("unlock", Action::Unlock),
            ("testlock", Action::TestLock),
            ("put", Action::Put),
            ("get", Action::Get),
            ("erase", Action::Erase),
            ("version", Action::Version),
            ("stats", Action::Stats),
            ("cluster", Action::Cluster),
            ("admin", Action::Admin),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|&(_, a)| a)
    }
}

impl<'a> Request<'a> {
    /// Parses one request line in place (either framing; the trailing
    /// `\n` or `\r\n` may be included). Strings in the result borrow from
    /// `line`, whose contents are rewritten by decoding. Allocates nothing.
    pub fn parse(line: &'a mut [u8], limits: &Limits) -> Result<Self, Rejected> {
        if line.len() > limits.max_line {
            return Err(Rejected {
                framing: Framing::detect(line),
                error: RequestError::LineTooLong {
                    limit: limits.max_line,
                },
            });
        }
        let (framing, text) = unframe(line);
        let reject = |error| Rejected { framing, error };
        let text = text.map_err(|e| reject(RequestError::Encoding(e)))?;
        Self::parse_json(text, framing, limits).map_err(reject)
    }

    fn parse_json(
        text: &'a mut [u8],
        framing: Framing,
        limits: &Limits,
    ) -> Result<Self, RequestError> {
        if text.is_empty() {
            return Err(RequestError::Empty);
        }
        if core::str::from_utf8(text).is_err() {
            return Err(RequestError::InvalidUtf8);
        }
        let mut scanner = Scanner::new(text);
        scanner.begin_object()?;
        let mut values = [None; REQUEST_FIELDS];
        while let Some((key, value)) = scanner.next_member()? {
            if let Some(field) = Field::of_request_key(scanner.bytes(key)) {
                let slot = &mut values[field as usize];
                if slot.is_some() {
                    return Err(RequestError::DuplicateField(field));
                }
                *slot = Some(value);
            }
        }
        let fields = Fields {
            buf: scanner.finish()?,
            values,
        };

        let action = fields.required(Field::Action)?;
        let action = Action::from_wire(action).ok_or(RequestError::UnknownAction)?;
        let credentials = match (fields.string(Field::Name)?, fields.string(Field::Identity)?) {
            (None, None) => None,
            (Some(name), Some(secret)) => Some(Credentials { name, secret }),
            (Some(_), None) => return Err(RequestError::MissingField(Field::Identity)),
            (None, Some(_)) => return Err(RequestError::MissingField(Field::Name)),
        };
        let request_id = match fields.string(Field::RequestId)? {
            Some("") => return Err(RequestError::EmptyField(Field::RequestId)),
            Some(id) if id.len() > MAX_REQUEST_ID => {
                return Err(RequestError::TooLong {
                    field: Field::RequestId,
                    limit: MAX_REQUEST_ID,
                });
            }
            id => id,
        };
        let target = || -> Result<(Resource<'a>, Owner<'a>), RequestError> {
            Ok((
                Resource(fields.required(Field::FileName)?),
                Owner(fields.required(Field::Id)?),
            ))
        };
        let ttl = || {
            fields
                .seconds(Field::Expire)?
                .ok_or(RequestError::MissingField(Field::Expire))
        };
        let command = match action {
            Action::Lock => {
                let (name, owner) = target()?;
                let (ttl, wait, token) = (
                    ttl()?,
                    fields.seconds(Field::Wait)?.filter(|w| !w.is_zero()),
                    fields.integer(Field::Token)?.map(Token),
                );
                match fields.shape()? {
                    None => Command::Lock {
                        name,
                        owner,
                        ttl,
                        wait,
                        token,
                    },
                    Some(shape) => Command::Acquire {
                        name,
                        owner,
                        shape,
                        ttl,
                        wait,
                        token,
                    },
                }
            }
            Action::Unlock => {
                let (name, owner) = target()?;
                Command::Unlock {
                    name,
                    owner,
                    token: fields.integer(Field::Token)?.map(Token),
                }
            }
            Action::TestLock => {
                let (name, owner) = target()?;
                Command::TestLock { name, owner }
            }
            Action::Put => {
                let (name, owner) = target()?;
                Command::Put {
                    name,
                    owner,
                    ttl: ttl()?,
                    data: fields.required(Field::DataStore)?,
                    revision: fields.integer(Field::Revision)?.map(Revision),
                }
            }
            Action::Get => {
                let (name, owner) = target()?;
                Command::Get { name, owner }
            }
            Action::Erase => {
                let (name, owner) = target()?;
                Command::Erase { name, owner }
            }
            Action::Version => Command::Version,
            Action::Stats => Command::Stats,
            Action::Cluster => {
                let node = || {
                    fields
                        .integer(Field::Node)?
                        .ok_or(RequestError::MissingField(Field::Node))
                };
                Command::Cluster(match fields.string(Field::Op)? {
                    None => ClusterOp::Status,
                    Some(op) if op.eq_ignore_ascii_case("status") => ClusterOp::Status,
                    Some(op) if op.eq_ignore_ascii_case("add") => ClusterOp::Add {
                        node: node()?,
                        peer: fields.required(Field::Peer)?,
                    },
                    Some(op) if op.eq_ignore_ascii_case("remove") => {
                        ClusterOp::Remove { node: node()? }
                    }
                    Some(op) if op.eq_ignore_ascii_case("transfer") => {
                        ClusterOp::Transfer { node: node()? }
                    }
                    Some(_) => return Err(RequestError::UnknownAction),
                })
            }
            Action::Admin => {
                let name = || fields.required(Field::FileName).map(Resource);
                Command::Admin(match fields.required(Field::Op)? {
                    op if op.eq_ignore_ascii_case("locks") => AdminOp::Locks {
                        prefix: fields.string(Field::FileName)?.unwrap_or(""),
                    },
                    op if op.eq_ignore_ascii_case("lock") => AdminOp::Lock { name: name()? },
                    op if op.eq_ignore_ascii_case("revoke") => AdminOp::Revoke {
                        name: name()?,
                        token: fields.integer(Field::Token)?.map(Token),
                    },
                    _ => return Err(RequestError::UnknownAction),
                })
            }
        };
        if credentials.is_none() {
            command.check(limits, None)?;
        } else {
            // The identity's data limit is only known once it is verified;
            // everything else is checked now.
            command.check(limits, Some(usize::MAX))?;
        }
        Ok(Request {
            framing,
            command,
            credentials,
            request_id,
        })
    }

    /// Writes this request as one line (with its `\n`) in its framing.
    pub fn write<O: Out + ?Sized>(&self, out: &mut O) -> Result<(), BufferTooSmall> {
        match self.framing {
            Framing::Plain => self.write_json(out)?,
            Framing::Legacy => self.write_json(&mut Legacy(out))?,
        }
        out.put(b"\n")
    }

    fn write_json<O: Out + ?Sized>(&self, out: &mut O) -> Result<(), BufferTooSmall> {
        let legacy = self.framing == Framing::Legacy;
        out.put(b"{\"Action\":\"")?;
        out.put(self.command.action().as_bytes())?;
        out.put(b"\"")?;
        let string = |out: &mut O, key: &str, value: &str| {
            out.put(b",\"")?;
            out.put(key.as_bytes())?;
            out.put(b"\":\"")?;
            json::put_escaped(out, value)?;
            out.put(b"\"")
        };
        let number = |out: &mut O, key: &str, value: u64| {
            out.put(b",\"")?;
            out.put(key.as_bytes())?;
            out.put(b"\":")?;
            json::put_u64(out, value)
        };
        let seconds = |out: &mut O, key: &str, ttl: Ttl| {
            out.put(b",\"")?;
            out.put(key.as_bytes())?;
            out.put(b"\":")?;
            put_seconds(out, ttl)
        };
        match self.command.target() {
            Some((name, owner)) => {
                string(out, "FileName", &name)?;
                string(out, "ID", &owner)?;
            }
            // An `Admin` request's `FileName` is its own (written below).
            None if legacy && matches!(self.command, Command::Admin(_)) => {
                string(out, "ID", "-")?;
            }
            // JackrabbitDLM requires these on every request.
            None if legacy => {
                string(out, "FileName", "-")?;
                string(out, "ID", "-")?;
            }
            None => {}
        }
        match self.command {
            Command::Lock {
                ttl, wait, token, ..
            } => {
                seconds(out, "Expire", ttl)?;
                if let Some(wait) = wait {
                    seconds(out, "Wait", wait)?;
                }
                if let Some(token) = token {
                    number(out, "Token", token.0)?;
                }
            }
            Command::Acquire {
                shape,
                ttl,
                wait,
                token,
                ..
            } => {
                seconds(out, "Expire", ttl)?;
                match shape {
                    Shape::Semaphore { permits } => number(out, "Permits", u64::from(permits))?,
                    Shape::Read => string(out, "Mode", "Read")?,
                    Shape::Write => string(out, "Mode", "Write")?,
                }
                if let Some(wait) = wait {
                    seconds(out, "Wait", wait)?;
                }
                if let Some(token) = token {
                    number(out, "Token", token.0)?;
                }
            }
            Command::Unlock { token, .. } => {
                if legacy {
                    number(out, "Expire", 0)?;
                }
                if let Some(token) = token {
                    number(out, "Token", token.0)?;
                }
            }
            Command::Put {
                ttl,
                data,
                revision,
                ..
            } => {
                seconds(out, "Expire", ttl)?;
                string(out, "DataStore", data)?;
                if let Some(revision) = revision {
                    number(out, "Revision", revision.0)?;
                }
            }
            Command::Cluster(op) => {
                if legacy {
                    number(out, "Expire", 0)?;
                }
                match op {
                    ClusterOp::Status => {}
                    ClusterOp::Add { node, peer } => {
                        string(out, "Op", "add")?;
                        number(out, "Node", node)?;
                        string(out, "Peer", peer)?;
                    }
                    ClusterOp::Remove { node } => {
                        string(out, "Op", "remove")?;
                        number(out, "Node", node)?;
                    }
                    ClusterOp::Transfer { node } => {
                        string(out, "Op", "transfer")?;
                        number(out, "Node", node)?;
                    }
                }
            }
            Command::Admin(op) => {
                if legacy {
                    number(out, "Expire", 0)?;
                }
                string(out, "Op", op.op())?;
                match op {
                    AdminOp::Locks { prefix: "" } => {}
                    AdminOp::Locks { prefix } => string(out, "FileName", prefix)?,
                    AdminOp::Lock { name } => string(out, "FileName", &name)?,
                    AdminOp::Revoke { name, token } => {
                        string(out, "FileName", &name)?;
                        if let Some(token) = token {
                            number(out, "Token", token.0)?;
                        }
                    }
                }
            }
            _ => {
                if legacy {
                    number(out, "Expire", 0)?;
                }
            }
        }
        if let Some(c) = self.credentials {
            string(out, "Name", c.name)?;
            string(out, "Identity", c.secret)?;
        }
        if let Some(id) = self.request_id {
            string(out, "RequestID", id)?;
        }
        out.put(b"}")
    }
}

/// Writes a TTL as seconds with up to three decimals.
pub(crate) fn put_seconds<O: Out + ?Sized>(out: &mut O, ttl: Ttl) -> Result<(), BufferTooSmall> {
    let ms = ttl.as_millis();
    json::put_u64(out, ms / 1000)?;
    let frac = ms % 1000;
    if frac != 0 {
        // `frac < 1000`, so each digit fits a byte.
        #[allow(clippy::cast_possible_truncation)]
        let digits = [
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ];
        let len = if frac % 100 == 0 {
            2
        } else if frac % 10 == 0 {
            3
        } else {
            4
        };
        out.put(&digits[..len])?;
    }
    Ok(())
}
