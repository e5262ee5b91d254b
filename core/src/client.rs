//! A sans-I/O client: builds request lines and reads responses into typed
//! results. It never touches a socket; libdlm, the WASM module and the
//! server's tests move the bytes.
//!
//! ```text
//!   Client::lock(..) ─▶ Request ─write─▶ bytes ──▶ (your socket) ──▶ server
//!   Grant ◀─ Response::grant() ◀─ Response::parse ◀─ line ◀── (your socket)
//! ```
//!
//! A whole round trip, with the engine standing in for the server:
//!
//! ```
//! use dlm_core::client::Client;
//! use dlm_core::engine::{Config, Engine, Outcome, Principal};
//! use dlm_core::limits::Limits;
//! use dlm_core::protocol::{Request, Response};
//! use dlm_core::time::{Instant, Ttl};
//!
//! let client = Client::new("worker-7");
//! let mut line = Vec::new();
//! client.lock("jobs", Ttl::from_secs(30)).write(&mut line).unwrap();
//!
//! // ... the server side ...
//! let mut engine = Engine::new(Config::default());
//! let req = Request::parse(&mut line, &Limits::DEFAULT).unwrap();
//! let mut answer = Vec::new();
//! if let Outcome::Reply(r) = engine.handle(Instant::ZERO, &req.command, Principal::Anonymous, 0, &mut |_| {}) {
//!     r.write(req.framing, &mut answer).unwrap();
//! }
//!
//! // ... and back on the client.
//! let (_, response) = Response::parse(&mut answer).unwrap();
//! let grant = response.grant().unwrap();
//! assert_eq!(grant.ttl, Ttl::from_secs(30));
//! ```

use core::fmt;

use crate::protocol::{
    Command, Credentials, Framing, Message, Owner, Request, Resource, Response, Revision, Status,
    Token,
};
use crate::time::Ttl;

/// Builds requests for one owner ID.
#[derive(Clone, Copy, Debug)]
pub struct Client<'a> {
    id: &'a str,
    framing: Framing,
    credentials: Option<Credentials<'a>>,
}

impl<'a> Client<'a> {
    /// A client that sends plain JSON as owner `id`.
    pub const fn new(id: &'a str) -> Self {
        Self {
            id,
            framing: Framing::Plain,
            credentials: None,
        }
    }

    /// Sends in this framing (legacy to talk to a JackrabbitDLM server).
    #[must_use]
    pub const fn with_framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// Authenticates every request as an identity.
    #[must_use]
    pub const fn with_credentials(mut self, credentials: Credentials<'a>) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The owner ID.
    pub const fn id(&self) -> &'a str {
        self.id
    }

    /// The framing in use.
    pub const fn framing(&self) -> Framing {
        self.framing
    }

    /// A request for `command` with this client's framing and credentials.
    pub const fn request<'r>(&self, command: Command<'r>) -> Request<'r>
    where
        'a: 'r,
    {
        Request {
            framing: self.framing,
            command,
            credentials: self.credentials,
        }
    }

    /// A `Lock` of `name` by this client's owner.
    fn lock_request<'r>(
        &self,
        name: &'r str,
        ttl: Ttl,
        wait: Option<Ttl>,
        token: Option<Token>,
    ) -> Request<'r>
    where
        'a: 'r,
    {
        self.request(Command::Lock {
            name: Resource(name),
            owner: Owner(self.id),
            ttl,
            wait,
            token,
        })
    }

    /// `Lock`: acquire `name` for `ttl`, one attempt.
    pub fn lock<'r>(&self, name: &'r str, ttl: Ttl) -> Request<'r>
    where
        'a: 'r,
    {
        self.lock_request(name, ttl, None, None)
    }

    /// `Lock` with `Wait`: queue for up to `wait` if another owner holds it.
    pub fn lock_wait<'r>(&self, name: &'r str, ttl: Ttl, wait: Ttl) -> Request<'r>
    where
        'a: 'r,
    {
        self.lock_request(name, ttl, (!wait.is_zero()).then_some(wait), None)
    }

    /// `Lock` with `Token`: extend the grant `token` to `ttl` from now;
    /// never acquires a lost lock.
    pub fn extend<'r>(&self, name: &'r str, ttl: Ttl, token: Token) -> Request<'r>
    where
        'a: 'r,
    {
        self.lock_request(name, ttl, None, Some(token))
    }

    /// `Unlock`, optionally fenced to one grant.
    pub fn unlock<'r>(&self, name: &'r str, token: Option<Token>) -> Request<'r>
    where
        'a: 'r,
    {
        self.request(Command::Unlock {
            name: Resource(name),
            owner: Owner(self.id),
            token,
        })
    }

    /// `TestLock`.
    pub fn test_lock<'r>(&self, name: &'r str) -> Request<'r>
    where
        'a: 'r,
    {
        self.request(Command::TestLock {
            name: Resource(name),
            owner: Owner(self.id),
        })
    }

    /// `Put` of an already-encoded value, optionally compare-and-set.
    pub fn put<'r>(
        &self,
        name: &'r str,
        ttl: Ttl,
        data: &'r str,
        revision: Option<Revision>,
    ) -> Request<'r>
    where
        'a: 'r,
    {
        self.request(Command::Put {
            name: Resource(name),
            owner: Owner(self.id),
            ttl,
            data,
            revision,
        })
    }

    /// `Get`.
    pub fn get<'r>(&self, name: &'r str) -> Request<'r>
    where
        'a: 'r,
    {
        self.request(Command::Get {
            name: Resource(name),
            owner: Owner(self.id),
        })
    }

    /// `Erase`.
    pub fn erase<'r>(&self, name: &'r str) -> Request<'r>
    where
        'a: 'r,
    {
        self.request(Command::Erase {
            name: Resource(name),
            owner: Owner(self.id),
        })
    }

    /// `Version`.
    pub fn version(&self) -> Request<'a> {
        self.request(Command::Version)
    }

    /// `Stats`.
    pub fn stats(&self) -> Request<'a> {
        self.request(Command::Stats)
    }
}

/// A lock held: its fencing token and how long it lasts from the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The fencing token.
    pub token: Token,
    /// Time to live from when the server answered.
    pub ttl: Ttl,
}

/// What `TestLock` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockState {
    /// Nobody holds it.
    Free,
    /// This client holds it.
    Mine(Grant),
    /// Someone else holds it, for about this long.
    Taken(Option<Ttl>),
}

/// A value stored by `Put`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Its revision.
    pub revision: Revision,
    /// Its time to live.
    pub ttl: Ttl,
}

/// A value read by `Get`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fetched<'a> {
    /// The stored (encoded) text.
    pub data: &'a str,
    /// Its revision.
    pub revision: Option<Revision>,
    /// Its remaining time to live.
    pub ttl: Option<Ttl>,
}

/// Why the server did not do what was asked, in terms every binding maps
/// to its own error idiom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal<'a> {
    /// Another owner holds the lock or entry (or the token is stale).
    NotOwner,
    /// Compare-and-set found this revision (0: absent).
    Conflict(Revision),
    /// The request was malformed or over a limit; the server's reason.
    BadRequest(Option<Message<'a>>),
    /// The server is out of memory for new entries.
    NoMemory,
    /// A status that makes no sense for the request.
    Unexpected(Status),
}

impl fmt::Display for Refusal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotOwner => f.write_str("held by another owner"),
            Self::Conflict(r) => write!(f, "revision conflict (current revision {r})"),
            Self::BadRequest(Some(m)) => write!(f, "bad request: {m}"),
            Self::BadRequest(None) => f.write_str("bad request"),
            Self::NoMemory => f.write_str("server out of memory"),
            Self::Unexpected(s) => write!(f, "unexpected status {s}"),
        }
    }
}

impl core::error::Error for Refusal<'_> {}

impl<'a> Response<'a> {
    fn refusal(&self) -> Refusal<'a> {
        match self.status {
            Status::NotOwner => Refusal::NotOwner,
            Status::Conflict => Refusal::Conflict(self.revision.unwrap_or(Revision(0))),
            Status::BadPayload | Status::BadAction => Refusal::BadRequest(self.error),
            Status::No => Refusal::NoMemory,
            other => Refusal::Unexpected(other),
        }
    }

    /// The answer to `Lock` (or an extension): the grant.
    pub fn grant(&self) -> Result<Grant, Refusal<'a>> {
        match (self.status, self.token) {
            (Status::Locked, Some(token)) => Ok(Grant {
                token,
                ttl: self.expire.unwrap_or(Ttl::ZERO),
            }),
            (Status::Locked, None) => Err(Refusal::Unexpected(Status::Locked)),
            _ => Err(self.refusal()),
        }
    }

    /// The answer to `Unlock`: whether this call released a lock (false if
    /// there was no live lock).
    pub fn released(&self) -> Result<bool, Refusal<'a>> {
        match self.status {
            Status::Unlocked => Ok(self.id.is_some()),
            _ => Err(self.refusal()),
        }
    }

    /// The answer to `TestLock`.
    pub fn lock_state(&self) -> Result<LockState, Refusal<'a>> {
        match self.status {
            Status::Unlocked => Ok(LockState::Free),
            Status::Locked => self.grant().map(LockState::Mine),
            Status::NotOwner => Ok(LockState::Taken(self.expire)),
            _ => Err(self.refusal()),
        }
    }

    /// The answer to `Put`.
    pub fn stored(&self) -> Result<Stored, Refusal<'a>> {
        match self.status {
            Status::Done => Ok(Stored {
                revision: self.revision.unwrap_or(Revision(0)),
                ttl: self.expire.unwrap_or(Ttl::ZERO),
            }),
            _ => Err(self.refusal()),
        }
    }

    /// The answer to `Get`: the value, or `None` if there is none.
    pub fn fetched(&self) -> Result<Option<Fetched<'a>>, Refusal<'a>> {
        match (self.status, self.data) {
            (Status::Done, Some(data)) => Ok(Some(Fetched {
                data,
                revision: self.revision,
                ttl: self.expire,
            })),
            (Status::NotFound | Status::NoData, _) => Ok(None),
            (Status::Done, None) => Err(Refusal::Unexpected(Status::Done)),
            _ => Err(self.refusal()),
        }
    }

    /// The answer to `Erase`: whether an entry was erased.
    pub fn erased(&self) -> Result<bool, Refusal<'a>> {
        match self.status {
            Status::Done => Ok(true),
            Status::NotFound => Ok(false),
            _ => Err(self.refusal()),
        }
    }

    /// The answer to `Version`: the server's version string.
    pub fn version(&self) -> Result<&'a str, Refusal<'a>> {
        match (self.status, self.id) {
            (Status::Version, Some(v)) => Ok(v),
            _ => Err(self.refusal()),
        }
    }
}
