//! Requests: parsing (server side) and writing (client side).

use core::fmt;
use core::ops::Deref;

use super::error::{Field, RequestError};
use super::json::{self, JoinError, Scanner, Span, Value};
use super::out::{BufferTooSmall, Legacy, Out};
use super::readers::{MAX_READERS, ReaderNames, Readers, valid_identity_bytes};
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
        /// Who may read it besides its owner (`Readers`, extension).
        readers: Readers<'a>,
    },
    /// Read a value: the caller's own, or one whose readers admit it.
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
    /// Open the connection's session, or keep it alive and set its TTL
    /// (extension; PROTOCOL.md section 8, "Sessions").
    Session {
        /// How long the session lives without a request on its connection.
        ttl: Ttl,
    },
    /// Take several exclusive locks at once, all or none (extension;
    /// PROTOCOL.md section 8, "Multi-locks"). Each name is then an
    /// ordinary lock with its own token: extended and released one by one.
    LockAll {
        /// The locks, distinct, in the order their tokens are answered.
        names: Names<'a>,
        /// Who asks.
        owner: Owner<'a>,
        /// How long to hold every one of them from now.
        ttl: Ttl,
        /// Queue for up to this long if any of them is held or awaited.
        wait: Option<Ttl>,
    },
    /// Subscribe this connection to the changes of a name or of every
    /// name with a prefix (extension; answered by the server, which
    /// writes event lines to the connection from then on).
    Watch {
        /// What to watch.
        scope: WatchScope<'a>,
        /// Who asks: only the owner's own changes show its `ID` and value.
        owner: Owner<'a>,
        /// Resume: every change after this revision, then the live ones.
        since: Option<Revision>,
    },
}

/// The most names one `LockAll` may take.
pub const MAX_LOCK_ALL: usize = 16;

/// The names of a [`Command::LockAll`]: at most [`MAX_LOCK_ALL`], in the
/// order of the request. [`Command::check`] requires at least one, each
/// within the name limit, no two alike.
///
/// Two words wide whatever the count, so that every [`Command`] stays
/// small: a list the caller keeps, or, from the parser, the names packed
/// in place in the request line (see [`Request::parse`]).
#[derive(Clone, Copy)]
pub struct Names<'a>(Packing<'a>);

#[derive(Clone, Copy)]
enum Packing<'a> {
    /// The caller's list.
    List(&'a [&'a str]),
    /// The parser's: each name's bytes followed by `0xFF`, a byte UTF-8
    /// text never has; `len` names.
    Packed { bytes: &'a [u8], len: u8 },
}

/// What follows each packed name.
const PACKED_END: u8 = 0xFF;

impl<'a> Names<'a> {
    /// These names, or `None` if there are more than [`MAX_LOCK_ALL`].
    pub fn new(names: &'a [&'a str]) -> Option<Self> {
        (names.len() <= MAX_LOCK_ALL).then_some(Self(Packing::List(names)))
    }

    /// Names packed by the parser: `bytes` holds `len` names, each
    /// followed by [`PACKED_END`]; `None` unless each is UTF-8.
    fn packed(bytes: &'a [u8], len: usize) -> Option<Self> {
        let len = u8::try_from(len)
            .ok()
            .filter(|&n| usize::from(n) <= MAX_LOCK_ALL)?;
        let names = Self(Packing::Packed { bytes, len });
        let ok = bytes.last().is_none_or(|&b| b == PACKED_END)
            && bytes
                .split(|&b| b == PACKED_END)
                .take(usize::from(len))
                .all(|n| core::str::from_utf8(n).is_ok());
        ok.then_some(names)
    }

    /// How many.
    pub fn len(&self) -> usize {
        match self.0 {
            Packing::List(l) => l.len(),
            Packing::Packed { len, .. } => usize::from(len),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The names, in request order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let (list, bytes, len): (&'a [&'a str], &'a [u8], usize) = match self.0 {
            Packing::List(l) => (l, &[], 0),
            Packing::Packed { bytes, len } => (&[], bytes, usize::from(len)),
        };
        list.iter().copied().chain(
            bytes
                .split(|&b| b == PACKED_END)
                .take(len)
                // Checked when packed.
                .map(|n| core::str::from_utf8(n).unwrap_or_default()),
        )
    }

    /// Copies the names into `out` (room for every one) and returns them
    /// as a slice, for a caller that needs one.
    pub fn to_slice<'o>(&self, out: &'o mut [&'a str; MAX_LOCK_ALL]) -> &'o [&'a str] {
        let mut n = 0;
        for (slot, name) in out.iter_mut().zip(self.iter()) {
            *slot = name;
            n += 1;
        }
        &out[..n]
    }
}

impl PartialEq for Names<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Names<'_> {}

impl fmt::Debug for Names<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A `Lock` (or `Lock` with `Permits` or `Mode`) bound to the session of
/// its connection (`"Session": true`, extension): the grant ends when the
/// session does, and then nobody may take the name for `lock_delay`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SessionBind {
    /// How long the name stays closed to everyone after the session ends
    /// (`LockDelay`; zero: it is released at once).
    pub lock_delay: Ttl,
}

/// What a [`Command::Watch`] covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchScope<'a> {
    /// One name (`FileName`), in both namespaces (its lock and its value).
    Name(Resource<'a>),
    /// Every name that starts with this (`Prefix`; empty: every name).
    Prefix(&'a str),
}

impl WatchScope<'_> {
    /// Whether a change of `name` is in scope.
    pub fn covers(&self, name: &str) -> bool {
        match self {
            Self::Name(n) => n.0 == name,
            Self::Prefix(p) => name.starts_with(p),
        }
    }
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
            Self::Session { .. } => "Session",
            Self::Watch { .. } => "Watch",
            Self::LockAll { .. } => "LockAll",
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
            Self::Version
            | Self::Stats
            | Self::Cluster(_)
            | Self::Admin(_)
            | Self::Session { .. }
            | Self::Watch { .. }
            | Self::LockAll { .. } => None,
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
            Self::Watch { scope, owner, .. } => {
                match scope {
                    WatchScope::Name(name) => check_name(Field::FileName, &name, limits.max_name)?,
                    WatchScope::Prefix(p) if p.len() > limits.max_name => {
                        return Err(RequestError::TooLong {
                            field: Field::Prefix,
                            limit: limits.max_name,
                        });
                    }
                    WatchScope::Prefix(_) => {}
                }
                check_name(Field::Id, &owner, limits.max_id)?;
            }
            Self::LockAll { names, owner, .. } => {
                if names.is_empty() {
                    return Err(RequestError::EmptyField(Field::Names));
                }
                for (i, name) in names.iter().enumerate() {
                    check_name(Field::Names, name, limits.max_name)?;
                    if names.iter().take(i).any(|n| n == name) {
                        return Err(RequestError::Repeated(Field::Names));
                    }
                }
                check_name(Field::Id, &owner, limits.max_id)?;
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
            Self::Lock { ttl, wait, .. }
            | Self::Acquire { ttl, wait, .. }
            | Self::LockAll { ttl, wait, .. } => {
                if ttl.is_zero() {
                    return Err(RequestError::ZeroTtl);
                }
                ttl_ok(Field::Expire, ttl)?;
                if let Some(wait) = wait {
                    ttl_ok(Field::Wait, wait)?;
                }
            }
            Self::Session { ttl } => {
                if ttl.is_zero() {
                    return Err(RequestError::ZeroTtl);
                }
                ttl_ok(Field::Expire, ttl)?;
            }
            Self::Put {
                ttl, data, readers, ..
            } => {
                if ttl.is_zero() {
                    return Err(RequestError::ZeroTtl);
                }
                ttl_ok(Field::Expire, ttl)?;
                let limit = identity_max_data.unwrap_or(limits.max_data_anonymous);
                if data.len() > limit {
                    return Err(RequestError::DataTooLarge { limit });
                }
                if data.len().saturating_add(readers.stored_len()) > limit {
                    return Err(RequestError::ReadersTooLarge { limit });
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
    /// `Session` (and `LockDelay`) of a `Lock`: its grant is bound to the
    /// connection's session (extension).
    pub session: Option<SessionBind>,
}

/// The longest `LockDelay` accepted (as Consul's): a name closed longer
/// than this after its holder's session ended would look lost.
pub const MAX_LOCK_DELAY: Ttl = Ttl::from_secs(60);

/// The longest `RequestID` accepted, in bytes.
pub const MAX_REQUEST_ID: usize = 64;

impl<'a> Request<'a> {
    /// The same request, carrying `id` as its `RequestID`.
    #[must_use]
    pub const fn with_request_id(mut self, id: &'a str) -> Self {
        self.request_id = Some(id);
        self
    }

    /// The same request, bound to its connection's session.
    #[must_use]
    pub const fn with_session(mut self, bind: SessionBind) -> Self {
        self.session = Some(bind);
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

/// Number of request fields the parser tracks (the [`Field`]s before
/// `Status`).
const REQUEST_FIELDS: usize = 21;

struct Fields<'b> {
    buf: &'b [u8],
    values: [Option<Value>; REQUEST_FIELDS],
    /// `Readers` of a `Put` given as an array: its names, joined in place.
    reader_names: Option<Span>,
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

    /// `Session` and `LockDelay`: a binding on a `Lock` whose `Session` is
    /// `true`; on a `Session` request, `true` asks to keep alive the
    /// session the connection has (never to open one: a keep-alive); ignored
    /// on other actions and when `false`. `LockDelay` without it is an
    /// error (and means nothing on a keep-alive).
    fn session(
        &self,
        command: &Command<'_>,
        limits: &Limits,
    ) -> Result<Option<SessionBind>, RequestError> {
        let on = match self.get(Field::Session) {
            None | Some(Value::Bool(false)) => false,
            Some(Value::Bool(true)) => true,
            Some(v) => {
                return Err(RequestError::WrongType {
                    field: Field::Session,
                    found: v.kind(),
                });
            }
        };
        if matches!(command, Command::Session { .. }) {
            return Ok(on.then_some(SessionBind {
                lock_delay: Ttl::ZERO,
            }));
        }
        if on && matches!(command, Command::LockAll { .. }) {
            // Not bound to sessions (yet): refused rather than ignored.
            return Err(RequestError::InvalidValue {
                field: Field::Session,
                expected: "false on LockAll (multi-locks are not bound to sessions)",
            });
        }
        if !matches!(command, Command::Lock { .. } | Command::Acquire { .. }) {
            return Ok(None);
        }
        let delay = self.seconds(Field::LockDelay)?;
        match (on, delay) {
            (false, None) => Ok(None),
            (false, Some(_)) => Err(RequestError::Needs {
                field: Field::LockDelay,
                needs: Field::Session,
            }),
            (true, delay) => {
                let lock_delay = delay.unwrap_or(Ttl::ZERO);
                let limit = MAX_LOCK_DELAY.min(limits.clamped().max_ttl);
                if lock_delay > limit {
                    return Err(RequestError::OverLimit {
                        field: Field::LockDelay,
                        limit,
                    });
                }
                Ok(Some(SessionBind { lock_delay }))
            }
        }
    }

    /// `Readers`: absent (or `null`, or `[]`) or `"Owner"`: the owner
    /// alone; `"Any"` (case-insensitive); an array of identity names.
    fn readers(&self) -> Result<Readers<'b>, RequestError> {
        if let Some(span) = self.reader_names {
            if span.start == span.end {
                return Ok(Readers::Owner);
            }
            return ReaderNames::new(self.text(span)?).map(Readers::Named);
        }
        match self.string(Field::Readers)? {
            None => Ok(Readers::Owner),
            Some(s) if s.eq_ignore_ascii_case("owner") => Ok(Readers::Owner),
            Some(s) if s.eq_ignore_ascii_case("any") => Ok(Readers::Any),
            Some(_) => Err(RequestError::InvalidReader),
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

/// Where a `LockAll`'s `Names` are in the line, packed, and how many.
struct NameSpans {
    packed: Span,
    len: usize,
}

/// Reads `Names` if the request is a `LockAll` whose `Names` is an
/// array: every element must be a string, and reading stops with an error
/// at the first past [`MAX_LOCK_ALL`].
fn read_names(
    scanner: &mut Scanner<'_>,
    values: &[Option<Value>; REQUEST_FIELDS],
) -> Result<Option<NameSpans>, RequestError> {
    let lock_all = matches!(
        values[Field::Action as usize],
        Some(Value::Str(a)) if scanner.bytes(a).eq_ignore_ascii_case(b"lockall")
    );
    let (true, Some(Value::Array(span))) = (lock_all, values[Field::Names as usize]) else {
        return Ok(None);
    };
    let mut spans = [Span { start: 0, end: 0 }; MAX_LOCK_ALL];
    let mut len = 0;
    scanner.for_each_element(span, |_, v| {
        let Value::Str(s) = v else {
            return Err(RequestError::InvalidValue {
                field: Field::Names,
                expected: "an array of strings",
            });
        };
        let Some(slot) = spans.get_mut(len) else {
            return Err(RequestError::TooMany {
                field: Field::Names,
                limit: MAX_LOCK_ALL,
            });
        };
        *slot = s;
        len += 1;
        Ok(())
    })?;
    // Packed where the array was, so that `Names` stays two words.
    let packed = scanner.pack(span.start, &spans[..len], PACKED_END);
    Ok(Some(NameSpans { packed, len }))
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
    Session,
    Watch,
    LockAll,
}

impl Action {
    fn from_wire(s: &str) -> Option<Self> {
        const NAMES: [(&str, Action); 13] = [
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
            ("session", Action::Session),
            ("watch", Action::Watch),
            ("lockall", Action::LockAll),
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
        // A `LockAll`'s names, read (and unescaped in place) while the
        // buffer is still writable; at most `MAX_LOCK_ALL` are kept.
        let names = read_names(&mut scanner, &values)?;
        // The names of a `Put`'s `Readers` array are joined in place
        // before the buffer turns read-only (any other action ignores it).
        let mut reader_names = None;
        if let (Some(Value::Array(span)), Some(Value::Str(action))) = (
            values[Field::Readers as usize],
            values[Field::Action as usize],
        ) {
            if scanner.bytes(action).eq_ignore_ascii_case(b"put") {
                let joined = scanner
                    .join_strings(span, b',', MAX_READERS, valid_identity_bytes)
                    .map_err(|e| match e {
                        JoinError::Json(e) => RequestError::Json(e),
                        JoinError::TooMany => RequestError::TooManyReaders { limit: MAX_READERS },
                        JoinError::Element => RequestError::InvalidReader,
                    })?;
                reader_names = Some(joined);
            }
        }
        let fields = Fields {
            buf: scanner.finish()?,
            values,
            reader_names,
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
                    readers: fields.readers()?,
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
            Action::Session => Command::Session { ttl: ttl()? },
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
            Action::LockAll => {
                let list = match (&names, fields.get(Field::Names)) {
                    (Some(n), _) => Names::packed(n.packed.of(fields.buf), n.len)
                        .ok_or(RequestError::InvalidUtf8)?,
                    (None, None) => return Err(RequestError::MissingField(Field::Names)),
                    (None, Some(v)) => {
                        return Err(RequestError::WrongType {
                            field: Field::Names,
                            found: v.kind(),
                        });
                    }
                };
                let wait = fields.seconds(Field::Wait)?.filter(|w| !w.is_zero());
                Command::LockAll {
                    names: list,
                    owner: Owner(fields.required(Field::Id)?),
                    ttl: ttl()?,
                    wait,
                }
            }
            Action::Watch => {
                let scope = match (
                    fields.string(Field::FileName)?,
                    fields.string(Field::Prefix)?,
                ) {
                    (Some(_), Some(_)) => {
                        return Err(RequestError::Exclusive {
                            first: Field::FileName,
                            second: Field::Prefix,
                        });
                    }
                    (Some(name), None) => WatchScope::Name(Resource(name)),
                    (None, Some(prefix)) => WatchScope::Prefix(prefix),
                    (None, None) => return Err(RequestError::MissingField(Field::FileName)),
                };
                Command::Watch {
                    scope,
                    owner: Owner(fields.required(Field::Id)?),
                    since: fields.integer(Field::Revision)?.map(Revision),
                }
            }
        };
        let session = fields.session(&command, limits)?;
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
            session,
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
            None if matches!(
                self.command,
                Command::Watch { .. } | Command::LockAll { .. }
            ) => {}
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
            Command::Session { ttl } => seconds(out, "Expire", ttl)?,
            Command::LockAll {
                names,
                owner,
                ttl,
                wait,
            } => {
                out.put(b",\"Names\":[")?;
                for (i, name) in names.iter().enumerate() {
                    out.put(if i == 0 { b"\"" } else { b",\"" })?;
                    json::put_escaped(out, name)?;
                    out.put(b"\"")?;
                }
                out.put(b"]")?;
                string(out, "ID", &owner)?;
                seconds(out, "Expire", ttl)?;
                if let Some(wait) = wait {
                    seconds(out, "Wait", wait)?;
                }
            }
            Command::Put {
                ttl,
                data,
                revision,
                readers,
                ..
            } => {
                seconds(out, "Expire", ttl)?;
                string(out, "DataStore", data)?;
                if let Some(revision) = revision {
                    number(out, "Revision", revision.0)?;
                }
                match readers {
                    Readers::Owner => {}
                    Readers::Any => string(out, "Readers", "Any")?,
                    Readers::Named(names) => {
                        out.put(b",\"Readers\":[")?;
                        for (i, name) in names.iter().enumerate() {
                            if i > 0 {
                                out.put(b",")?;
                            }
                            // Identity names need no escapes.
                            out.put(b"\"")?;
                            out.put(name.as_bytes())?;
                            out.put(b"\"")?;
                        }
                        out.put(b"]")?;
                    }
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
            Command::Watch {
                scope,
                owner,
                since,
            } => {
                match scope {
                    WatchScope::Name(name) => string(out, "FileName", &name)?,
                    WatchScope::Prefix(p) => string(out, "Prefix", p)?,
                }
                string(out, "ID", &owner)?;
                if let Some(since) = since {
                    number(out, "Revision", since.0)?;
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
        if let Some(bind) = self.session {
            out.put(b",\"Session\":true")?;
            if !bind.lock_delay.is_zero() {
                seconds(out, "LockDelay", bind.lock_delay)?;
            }
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
