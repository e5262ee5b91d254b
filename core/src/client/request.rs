//! Request building: [`Client`] turns calls into [`Request`]s for one
//! owner ID, in its framing and with its credentials. Writing a request
//! borrows the caller's strings and allocates nothing.

use crate::protocol::{
    Command, Credentials, Framing, Names, Owner, Readers, Request, Resource, Revision, Shape, Token,
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
            request_id: None,
            session: None,
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

    /// `Session`: open this connection's session with `ttl`, or keep it
    /// alive and set its TTL (PROTOCOL.md section 8, "Sessions and
    /// lock-delay"). Bind a lock to it with
    /// [`Request::with_session`](crate::protocol::Request::with_session).
    pub fn session<'r>(&self, ttl: Ttl) -> Request<'r>
    where
        'a: 'r,
    {
        self.request(Command::Session { ttl })
    }

    /// `Session` with `"Session": true`: keeps alive the session this
    /// connection has and sets its TTL, but never opens one. If the
    /// session already ended (its TTL passed while the client was paused,
    /// say), the answer is `BadPayload` ("no session on this connection")
    /// instead of a new session silently taking its place: the client
    /// learns that its session, and every grant bound to it, is lost.
    pub fn keep_alive<'r>(&self, ttl: Ttl) -> Request<'r>
    where
        'a: 'r,
    {
        self.request(Command::Session { ttl })
            .with_session(crate::protocol::SessionBind {
                lock_delay: Ttl::ZERO,
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

    /// `LockAll`: take every one of `names` for `ttl`, all or none,
    /// queueing up to `wait` in every name's queue at once (`None` or
    /// zero: one attempt). PROTOCOL.md section 8, "Multi-locks".
    pub fn lock_all<'r>(&self, names: Names<'r>, ttl: Ttl, wait: Option<Ttl>) -> Request<'r>
    where
        'a: 'r,
    {
        self.request(Command::LockAll {
            names,
            owner: Owner(self.id),
            ttl,
            wait: wait.filter(|w| !w.is_zero()),
        })
    }

    /// `Lock` with `Token`: extend the grant `token` to `ttl` from now;
    /// never acquires a lost lock.
    pub fn extend<'r>(&self, name: &'r str, ttl: Ttl, token: Token) -> Request<'r>
    where
        'a: 'r,
    {
        self.lock_request(name, ttl, None, Some(token))
    }

    /// `Lock` with `Permits` or `Mode`: take one hold of the semaphore or
    /// read/write lock `name` for `ttl`, queueing up to `wait` if it cannot
    /// be granted at once (`None` or zero: one attempt). Each acquisition
    /// is a hold of its own, with its own token.
    pub fn acquire<'r>(
        &self,
        name: &'r str,
        shape: Shape,
        ttl: Ttl,
        wait: Option<Ttl>,
    ) -> Request<'r>
    where
        'a: 'r,
    {
        self.request(Command::Acquire {
            name: Resource(name),
            owner: Owner(self.id),
            shape,
            ttl,
            wait: wait.filter(|w| !w.is_zero()),
            token: None,
        })
    }

    /// `Lock` with `Permits` or `Mode` and `Token`: extend the hold
    /// `token` to `ttl` from now; never acquires a lost hold.
    pub fn extend_hold<'r>(
        &self,
        name: &'r str,
        shape: Shape,
        ttl: Ttl,
        token: Token,
    ) -> Request<'r>
    where
        'a: 'r,
    {
        self.request(Command::Acquire {
            name: Resource(name),
            owner: Owner(self.id),
            shape,
            ttl,
            wait: None,
            token: Some(token),
        })
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

    /// `Put` of an already-encoded value, optionally compare-and-set,
    /// readable by its owner alone.
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
        self.put_shared(name, ttl, data, revision, Readers::Owner)
    }

    /// [`put`](Self::put) of a value that `readers` may also read
    /// (PROTOCOL.md section 8, "Shared values"). A JackrabbitDLM server
    /// ignores `Readers`: its values stay their owner's.
    pub fn put_shared<'r>(
        &self,
        name: &'r str,
        ttl: Ttl,
        data: &'r str,
        revision: Option<Revision>,
        readers: Readers<'r>,
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
            readers,
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

    /// `Cluster`: the cluster's state, or a membership change.
    pub fn cluster<'r>(&self, op: crate::protocol::ClusterOp<'r>) -> Request<'r>
    where
        'a: 'r,
    {
        self.request(Command::Cluster(op))
    }

    /// `Admin`: an administrator's look at the lock table, or a
    /// revocation (the client must carry an administrator identity's
    /// credentials).
    pub fn admin<'r>(&self, op: crate::protocol::AdminOp<'r>) -> Request<'r>
    where
        'a: 'r,
    {
        self.request(Command::Admin(op))
    }

    /// A `Watch` of `scope` (a name or a prefix) by this client's owner,
    /// resuming after revision `since` if given. The connection that sends
    /// it takes no other request afterwards: it only reads event lines.
    pub fn watch<'r>(
        &self,
        scope: crate::protocol::WatchScope<'r>,
        since: Option<Revision>,
    ) -> Request<'r>
    where
        'a: 'r,
    {
        self.request(Command::Watch {
            scope,
            owner: Owner(self.id),
            since,
        })
    }
}
