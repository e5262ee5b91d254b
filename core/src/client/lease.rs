//! The lock lease: a sans-I/O state machine for one held lock, in the
//! manner of quinn-proto's connection. It never reads a clock or touches a
//! socket: the host passes `now` in, asks when to wake up, sends the
//! requests the lease hands out, and feeds back their answers.
//!
//! ```text
//!             ┌──────── poll_timeout() ◀── when to call handle_timeout(now)
//!   host ─────┼──────── poll_request(now) ─▶ Pending ─request()─▶ line ─▶ socket
//!  (timers,   ├──────── handle_response(now, &Response) ◀─ line ◀── socket
//!   sockets)  ├──────── handle_failure(now)   (no answer: connection failed)
//!             └──────── poll_event() ─▶ Event::Lost (once)
//! ```
//!
//! What it owns, so that no binding writes it again:
//!
//! - **the grant-time estimate**: the server granted somewhere between the
//!   request and its answer, so the TTL is counted from the request, which
//!   keeps the lease's deadline no later than the server's. After a wait
//!   the server grants just before it answers, so the TTL counts from the
//!   answer less [`WAIT_GRANT_SLACK`] (never before the request);
//! - **the deadline**: once it passes without a confirmed extension the
//!   lock can no longer be assumed held and the lease is lost;
//! - **the renewal schedule** of an auto-renewed lock: an extension every
//!   third of the TTL, and, while extensions fail without an answer (the
//!   server unreachable), a retry every tenth of the TTL (10 ms to 1 s)
//!   until the deadline;
//! - **the lost state**, reported once as [`Event::Lost`]: the deadline
//!   passed, or an extension or release found the grant gone. A lost lease
//!   never comes back: an extension answered after the deadline is given
//!   back with a release.
//!
//! One request is in flight at a time; hosts serialize a lock's calls.
//!
//! **Across a failover** (a cluster's leader fails; see
//! [`failover`](super::failover)) the lease does not change its rules,
//! because none of them depends on which member answers:
//!
//! - the grant lives in the replicated engine, so the new leader knows it,
//!   with its token. An extension is a `Lock` with that `Token`: the new
//!   leader extends it (same token) if it is still live, and refuses it if
//!   it is not; it never grants anew. Hosts send each extension through a
//!   failover [`Call`](super::Call) limited to the lease's deadline
//!   ([`Pending::deadline`]), which moves to the next member, waits for
//!   the election and sends the extension again as often as needed;
//! - a connection that drops, a member that answers it has no leader, no
//!   answer at all: none of these loses the lock. Only the cluster saying
//!   the grant is gone (a refused extension or release: it expired, was
//!   released, or another owner holds it) or the lease's own deadline
//!   passing without a confirmed extension does;
//! - meanwhile the holder's TTL keeps running on its own clock:
//!   [`Lease::remaining`] is what it may still count on. A holder must
//!   assume the lock ends at its deadline even if no member could be
//!   asked, and stop acting on it before then. The cluster may in fact
//!   keep it longer (its clock does not count the election: the grace of
//!   the cluster, README "A cluster"), which only delays the next holder,
//!   never the reverse. What protects the resource against a holder that
//!   is slower than its deadline is the fencing token: every later grant
//!   has a greater one, so the resource refuses the old holder's writes
//!   once it has seen a newer token;
//! - a release is an `Unlock` fenced to the token; hosts send it through
//!   [`Failover::start_release`](super::failover::Failover::start_release),
//!   which gives it the request ID of that grant
//!   ([`RequestId::for_unlock`](super::failover::RequestId::for_unlock)),
//!   so a release sent again after a lost answer is applied once and still
//!   reads as released.
//!
//! **Without a fencing token** (JackrabbitDLM grants none) an extension is
//! a plain re-lock, which that server would grant even after the lock
//! expired. The lease therefore never sends one once its own deadline has
//! passed, and a release is an unlock by owner ID.
//!
//! The whole life of an auto-renewed lock, on a simulated clock:
//!
//! ```
//! use dlm_core::client::{Acquire, Client, Event};
//! use dlm_core::protocol::{Response, Status, Token};
//! use dlm_core::time::{Instant, Ttl};
//!
//! let client = Client::new("worker-7");
//! let at = |ms| Instant::from_millis(ms);
//! let locked = |token| {
//!     let mut r = Response::new(Status::Locked);
//!     r.token = Some(Token(token));
//!     r.expire = Some(Ttl::from_millis(3000));
//!     r
//! };
//!
//! // Acquire: the request is sent at 0 ms and answered at 5 ms.
//! let acquire = Acquire::new(Ttl::from_millis(3000), None, true, at(0));
//! let _line = acquire.request(&client, "jobs");
//! let mut lease = acquire.handle_response(at(5), &locked(7)).unwrap();
//! assert_eq!(lease.deadline(), at(3000));
//!
//! // The host sleeps until the lease needs it: the renewal, a third in.
//! assert_eq!(lease.poll_timeout(), Some(at(1000)));
//! lease.handle_timeout(at(1000));
//! let extension = lease.poll_request(at(1000)).unwrap();
//! let _line = extension.request(&client, "jobs");
//! lease.handle_response(at(1002), &locked(7)).unwrap();
//! assert_eq!(lease.deadline(), at(4000));
//!
//! // The server goes away: retries until the deadline, then lost.
//! lease.handle_timeout(at(2000));
//! lease.poll_request(at(2000)).unwrap();
//! lease.handle_failure(at(2000));
//! while let Some(t) = lease.poll_timeout() {
//!     lease.handle_timeout(t);
//!     if lease.poll_request(t).is_some() {
//!         lease.handle_failure(t);
//!     }
//! }
//! assert_eq!(lease.poll_event(), Some(Event::Lost));
//! assert!(lease.is_lost());
//! ```

use super::answer::{self, Grant};
use super::errors::{Error, ErrorKind};
use super::request::Client;
use crate::protocol::{Names, Request, Response, Shape, Token};
use crate::time::{Instant, Ttl};

/// After a wait, the grant is taken to have happened this long before the
/// answer arrived: an allowance for the answer's trip.
pub const WAIT_GRANT_SLACK: Ttl = Ttl::from_millis(50);

/// Shortest pause between retries of a failed renewal.
const RETRY_MIN: Ttl = Ttl::from_millis(10);
/// Longest pause between retries of a failed renewal.
const RETRY_MAX: Ttl = Ttl::from_millis(1000);

/// One attempt to acquire a lock, from its request to its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acquire {
    ttl: Ttl,
    wait: Option<Ttl>,
    auto_renew: bool,
    sent: Instant,
    shape: Option<Shape>,
}

impl Acquire {
    /// An acquisition of a lock for `ttl`, queueing up to `wait` in the
    /// server (`None` or zero: one attempt), whose request is sent at
    /// `sent`. With `auto_renew`, the lease it yields renews itself.
    pub const fn new(ttl: Ttl, wait: Option<Ttl>, auto_renew: bool, sent: Instant) -> Self {
        let wait = match wait {
            Some(w) if !w.is_zero() => Some(w),
            _ => None,
        };
        Self {
            ttl,
            wait,
            auto_renew,
            sent,
            shape: None,
        }
    }

    /// The same acquisition, of one hold of a semaphore or read/write lock
    /// (`Lock` with `Permits` or `Mode`) instead of an exclusive lock. Its
    /// lease extends that hold by its token.
    #[must_use]
    pub const fn with_shape(mut self, shape: Shape) -> Self {
        self.shape = Some(shape);
        self
    }

    /// The semaphore or read/write lock shape, if it is one.
    pub const fn shape(&self) -> Option<Shape> {
        self.shape
    }

    /// The TTL asked for.
    pub const fn ttl(&self) -> Ttl {
        self.ttl
    }

    /// The wait asked for, if any.
    pub const fn wait(&self) -> Option<Ttl> {
        self.wait
    }

    /// The `Lock` request to send.
    pub fn request<'r, 'a: 'r>(&self, client: &Client<'a>, name: &'r str) -> Request<'r> {
        match (self.shape, self.wait) {
            (Some(shape), wait) => client.acquire(name, shape, self.ttl, wait),
            (None, Some(wait)) => client.lock_wait(name, self.ttl, wait),
            (None, None) => client.lock(name, self.ttl),
        }
    }

    /// Reads the answer, received at `now`: the lease, or why there is
    /// none. A refused wait is a timeout, unless the server answered before
    /// the wait could have run out: then it has no wait queue
    /// (JackrabbitDLM) and the refusal is [`ErrorKind::NotOwner`].
    pub fn handle_response<'a>(&self, now: Instant, r: &Response<'a>) -> Result<Lease, Error<'a>> {
        let grant = match answer::acquired(r, self.wait.is_some()) {
            Ok(grant) => grant,
            Err(mut e) => {
                if let (ErrorKind::Timeout, Some(wait)) = (e.kind, self.wait) {
                    // Our instants are whole milliseconds: allow one.
                    let elapsed = now.saturating_since(self.sent).as_millis();
                    if elapsed.saturating_add(1) < wait.as_millis() {
                        e = Error::text(
                            ErrorKind::NotOwner,
                            "the server answered at once: it has no wait queue",
                        );
                    }
                }
                return Err(e);
            }
        };
        let granted = match self.wait {
            None => self.sent,
            Some(_) => Instant::from_millis(
                now.as_millis()
                    .saturating_sub(WAIT_GRANT_SLACK.as_millis())
                    .max(self.sent.as_millis()),
            ),
        };
        let lease = Lease::new(grant, self.ttl, granted, self.auto_renew);
        Ok(match self.shape {
            Some(shape) => lease.with_shape(shape),
            None => lease,
        })
    }
}

/// One attempt to take several locks at once (`LockAll`), from its
/// request to its answer: each name granted gets a [`Lease`] of its own,
/// renewed and released as a single lock's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcquireAll {
    one: Acquire,
}

impl AcquireAll {
    /// An acquisition of several locks for `ttl`, queueing up to `wait`
    /// (`None` or zero: one attempt), whose request is sent at `sent`.
    /// With `auto_renew`, the leases renew themselves.
    pub const fn new(ttl: Ttl, wait: Option<Ttl>, auto_renew: bool, sent: Instant) -> Self {
        Self {
            one: Acquire::new(ttl, wait, auto_renew, sent),
        }
    }

    /// The TTL asked for.
    pub const fn ttl(&self) -> Ttl {
        self.one.ttl
    }

    /// The wait asked for, if any.
    pub const fn wait(&self) -> Option<Ttl> {
        self.one.wait
    }

    /// The `LockAll` request to send.
    pub fn request<'r, 'a: 'r>(&self, client: &Client<'a>, names: Names<'r>) -> Request<'r> {
        client.lock_all(names, self.one.ttl, self.one.wait)
    }

    /// Reads the answer to a request of `names` names, received at `now`:
    /// the grant (see [`answer::acquired_all`]), from which
    /// [`GrantedAll::leases`] makes one lease per name. A refused wait is a
    /// timeout, unless the server refused before the wait could have run
    /// out (a name the caller holds already is refused at once, with the
    /// server's words): then it is [`ErrorKind::NotOwner`].
    pub fn handle_response<'a>(
        &self,
        now: Instant,
        r: &Response<'a>,
        names: usize,
    ) -> Result<GrantedAll<'a>, Error<'a>> {
        let grant = match answer::acquired_all(r, names, self.one.wait.is_some()) {
            Ok(grant) => grant,
            Err(mut e) => {
                if let (ErrorKind::Timeout, Some(wait)) = (e.kind, self.one.wait) {
                    // Our instants are whole milliseconds: allow one.
                    let elapsed = now.saturating_since(self.one.sent).as_millis();
                    if r.error.is_some() || elapsed.saturating_add(1) < wait.as_millis() {
                        e.kind = ErrorKind::NotOwner;
                    }
                }
                return Err(e);
            }
        };
        let granted = match self.one.wait {
            None => self.one.sent,
            Some(_) => Instant::from_millis(
                now.as_millis()
                    .saturating_sub(WAIT_GRANT_SLACK.as_millis())
                    .max(self.one.sent.as_millis()),
            ),
        };
        Ok(GrantedAll {
            grant,
            granted,
            ttl: self.one.ttl,
            auto_renew: self.one.auto_renew,
        })
    }
}

/// A granted `LockAll`, ready to become one lease per name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantedAll<'a> {
    grant: answer::GrantAll<'a>,
    granted: Instant,
    ttl: Ttl,
    auto_renew: bool,
}

impl<'a> GrantedAll<'a> {
    /// The fencing tokens, one per name, in the order of the request.
    pub fn tokens(&self) -> impl Iterator<Item = Token> + 'a {
        self.grant.tokens.iter()
    }

    /// One lease per name, in the order of the request: each extends and
    /// releases its name by its own token.
    pub fn leases(&self) -> impl Iterator<Item = Lease> + 'a {
        let (ttl, granted, auto_renew, answered) =
            (self.ttl, self.granted, self.auto_renew, self.grant.ttl);
        self.grant.tokens.iter().map(move |t| {
            Lease::new(
                Grant {
                    token: Some(t),
                    ttl: answered,
                },
                ttl,
                granted,
                auto_renew,
            )
        })
    }
}

/// What a lease reports to its host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The lock is lost: its deadline passed without a confirmed
    /// extension, or an extension or release found it gone. Reported once.
    Lost,
}

/// A request the lease wants sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Extend the grant to `ttl` from now.
    Extend {
        /// The new time to live.
        ttl: Ttl,
        /// Whether the lease's own renewal asked for it (not the user).
        auto: bool,
    },
    /// Release the grant.
    Release,
}

/// A request handed out by [`Lease::poll_request`], now in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    action: Action,
    token: Option<Token>,
    deadline: Option<Instant>,
    shape: Option<Shape>,
}

impl Pending {
    /// What is asked.
    pub const fn action(&self) -> Action {
        self.action
    }

    /// When sending it stops being worth it: the lease's deadline, for an
    /// extension (past it the lock is lost whatever the answer); `None`
    /// for a release. Hosts end the call by then
    /// ([`Call::limit`](super::Call::limit)), so that a renewal stuck in a
    /// failover never delays the report of a loss.
    pub const fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The request to send for the lock `name`: an extension by token (a
    /// plain re-lock without one), or an unlock fenced to the token.
    pub fn request<'r, 'a: 'r>(&self, client: &Client<'a>, name: &'r str) -> Request<'r> {
        match (self.action, self.token) {
            (Action::Extend { ttl, .. }, Some(token)) => match self.shape {
                Some(shape) => client.extend_hold(name, shape, ttl, token),
                None => client.extend(name, ttl, token),
            },
            (Action::Extend { ttl, .. }, None) => client.lock(name, ttl),
            (Action::Release, token) => client.unlock(name, token),
        }
    }
}

/// What an answered request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Done {
    /// The grant was extended.
    Extended,
    /// The grant was released.
    Released,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InFlight {
    action: Action,
    sent: Instant,
}

/// One held lock's lease; see the [module documentation](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    token: Option<Token>,
    /// A hold of a semaphore or read/write lock, not an exclusive lock.
    shape: Option<Shape>,
    ttl: Ttl,
    deadline: Instant,
    auto_renew: bool,
    /// Lost: the deadline passed, or the server said the grant is gone.
    lost: Loss,
    /// Released: the server confirmed a release (or that nothing was left).
    released: bool,
    /// A request waiting to be handed out.
    next: Option<Action>,
    in_flight: Option<InFlight>,
    /// When the renewal wants to extend next (auto-renew only).
    renew_at: Option<Instant>,
}

/// Whether the lock is lost, and whether the host was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loss {
    No,
    Unreported,
    Reported,
}

impl Lease {
    /// A lease for `grant`, asked for `ttl` and granted (by the host's
    /// estimate) at `granted`. The deadline is `granted` plus the shorter
    /// of `ttl` and the TTL the server answered.
    pub fn new(grant: Grant, ttl: Ttl, granted: Instant, auto_renew: bool) -> Self {
        let ttl = grant.ttl.map_or(ttl, |t| t.min(ttl));
        Self {
            token: grant.token,
            shape: None,
            ttl,
            deadline: granted.saturating_add(ttl),
            auto_renew,
            lost: Loss::No,
            released: false,
            next: None,
            in_flight: None,
            renew_at: auto_renew.then(|| granted.saturating_add(third(ttl))),
        }
    }

    /// The same lease, of a hold of a semaphore or read/write lock taken
    /// as `shape`: its extensions say so.
    #[must_use]
    pub const fn with_shape(mut self, shape: Shape) -> Self {
        self.shape = Some(shape);
        self
    }

    /// The fencing token; `None` if the server gives none.
    pub const fn token(&self) -> Option<Token> {
        self.token
    }

    /// The TTL extensions ask for (the last one confirmed).
    pub const fn ttl(&self) -> Ttl {
        self.ttl
    }

    /// When the lock expires at the latest unless extended, on the host's
    /// clock (no later than the server's).
    pub const fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the lock is lost (also after a release found it gone).
    pub fn is_lost(&self) -> bool {
        self.lost != Loss::No
    }

    /// Whether the lock was released (the server answered the release).
    pub const fn is_released(&self) -> bool {
        self.released
    }

    /// Neither lost nor released.
    fn held(&self) -> bool {
        self.lost == Loss::No && !self.released
    }

    /// Whether the lease renews itself, now and until released or lost:
    /// its host should keep running for it.
    pub fn is_renewing(&self) -> bool {
        self.auto_renew && self.held() && self.next != Some(Action::Release)
    }

    /// Time left at `now` before the lock expires unless extended; zero
    /// once lost or released.
    pub fn remaining(&self, now: Instant) -> Ttl {
        if self.held() {
            self.deadline.saturating_since(now)
        } else {
            Ttl::ZERO
        }
    }

    /// Whether a request waits to be handed out by
    /// [`poll_request`](Self::poll_request).
    pub fn has_request(&self) -> bool {
        self.in_flight.is_none() && self.next.is_some()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be
    /// called: the deadline, or the next renewal if sooner. `None` once
    /// released or lost.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.held() {
            return None;
        }
        match self.renew_at {
            Some(at) if self.in_flight.is_none() && self.next.is_none() => {
                Some(at.min(self.deadline))
            }
            _ => Some(self.deadline),
        }
    }

    /// Advances to `now`: a passed deadline loses the lock, a due renewal
    /// queues an extension.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.held() {
            return;
        }
        if now >= self.deadline {
            self.lose();
            return;
        }
        if let Some(at) = self.renew_at
            && now >= at
            && self.in_flight.is_none()
            && self.next.is_none()
        {
            self.renew_at = None;
            self.next = Some(Action::Extend {
                ttl: self.ttl,
                auto: true,
            });
        }
    }

    /// Asks to extend the grant to `ttl` from when the request is sent.
    /// Fails at once with [`ErrorKind::LockLost`] if the lock is lost or
    /// released (an extension never re-acquires), or
    /// [`ErrorKind::InvalidArgument`] for a zero TTL.
    pub fn extend(&mut self, now: Instant, ttl: Ttl) -> Result<(), Error<'static>> {
        self.handle_timeout(now);
        if self.released {
            Err(Error::text(ErrorKind::LockLost, "it was released"))
        } else if self.is_lost() {
            Err(Error::new(ErrorKind::LockLost))
        } else if ttl.is_zero() {
            Err(Error::text(
                ErrorKind::InvalidArgument,
                "a TTL must be positive",
            ))
        } else {
            if self.next != Some(Action::Release) {
                self.next = Some(Action::Extend { ttl, auto: false });
            }
            Ok(())
        }
    }

    /// Asks to release the grant (also after it was found lost: the server
    /// may still hold it, and an unlock fenced to the token is harmless).
    /// Stops the renewal. Returns false if it was released already, and
    /// there is nothing to send.
    pub fn release(&mut self, now: Instant) -> bool {
        self.handle_timeout(now);
        if self.released {
            return false;
        }
        self.renew_at = None;
        self.next = Some(Action::Release);
        true
    }

    /// The next request to send, if any, marked in flight from `now`.
    /// Nothing while another is in flight.
    pub fn poll_request(&mut self, now: Instant) -> Option<Pending> {
        if self.in_flight.is_some() {
            return None;
        }
        self.handle_timeout(now);
        let action = self.next.take()?;
        if let Action::Extend { .. } = action
            && !self.held()
        {
            // Lost while it waited: an extension never re-acquires.
            return None;
        }
        self.in_flight = Some(InFlight { action, sent: now });
        Some(Pending {
            action,
            token: self.token,
            shape: self.shape,
            deadline: match action {
                Action::Extend { .. } => Some(self.deadline),
                Action::Release => None,
            },
        })
    }

    /// Reads the answer, received at `now`, to the request in flight.
    pub fn handle_response<'a>(
        &mut self,
        now: Instant,
        r: &Response<'a>,
    ) -> Result<Done, Error<'a>> {
        let Some(flight) = self.in_flight.take() else {
            return Err(Error::text(ErrorKind::Protocol, "an answer to no request"));
        };
        match flight.action {
            Action::Extend { ttl, .. } => match answer::extended(r) {
                Ok(grant) => self.extended(now, flight.sent, ttl, grant),
                Err(e) if e.kind == ErrorKind::LockLost => {
                    self.lose();
                    Err(e)
                }
                Err(e) => {
                    self.retry_later(now);
                    Err(e)
                }
            },
            Action::Release => match answer::released_lock(r) {
                Ok(()) => {
                    self.released = true;
                    Ok(Done::Released)
                }
                Err(e) if e.kind == ErrorKind::LockLost => {
                    self.lose();
                    self.released = true;
                    Err(e)
                }
                Err(e) => Err(e),
            },
        }
    }

    fn extended<'a>(
        &mut self,
        now: Instant,
        sent: Instant,
        ttl: Ttl,
        grant: Grant,
    ) -> Result<Done, Error<'a>> {
        if let (Some(ours), Some(theirs)) = (self.token, grant.token)
            && ours != theirs
        {
            self.retry_later(now);
            return Err(Error::text(
                ErrorKind::Protocol,
                "the extension was granted with another token",
            ));
        }
        if self.released {
            Ok(Done::Extended)
        } else if self.is_lost() {
            // The deadline passed while the extension was in flight and
            // the loss was reported: give the grant back rather than hold
            // it unseen.
            if self.next.is_none() {
                self.next = Some(Action::Release);
            }
            Err(Error::text(
                ErrorKind::LockLost,
                "it expired while being extended",
            ))
        } else {
            let ttl = grant.ttl.map_or(ttl, |t| t.min(ttl));
            self.ttl = ttl;
            self.deadline = sent.saturating_add(ttl);
            if self.auto_renew && self.next != Some(Action::Release) {
                self.renew_at = Some(sent.saturating_add(third(ttl)));
            }
            Ok(Done::Extended)
        }
    }

    /// The request in flight got no answer (the connection failed or timed
    /// out). A failed renewal is retried until the deadline; a failed
    /// release may be asked for again.
    pub fn handle_failure(&mut self, now: Instant) {
        if let Some(InFlight {
            action: Action::Extend { .. },
            ..
        }) = self.in_flight.take()
        {
            self.retry_later(now);
        }
    }

    /// The next event, once each.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.lost == Loss::Unreported {
            self.lost = Loss::Reported;
            Some(Event::Lost)
        } else {
            None
        }
    }

    fn lose(&mut self) {
        if self.held() {
            self.lost = Loss::Unreported;
            self.renew_at = None;
            if let Some(Action::Extend { .. }) = self.next {
                self.next = None;
            }
        }
    }

    /// Schedules the next renewal attempt after a failed one.
    fn retry_later(&mut self, now: Instant) {
        if self.auto_renew && self.held() && self.next != Some(Action::Release) {
            let pause = Ttl::from_millis(self.ttl.as_millis() / 10).clamp(RETRY_MIN, RETRY_MAX);
            self.renew_at = Some(now.saturating_add(pause).min(self.deadline));
        }
    }
}

/// A third of a TTL, the renewal period.
fn third(ttl: Ttl) -> Ttl {
    Ttl::from_millis(ttl.as_millis() / 3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Status;
    use alloc::string::String;
    use alloc::vec::Vec;

    const NAME: &str = "jobs";

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn ttl(ms: u64) -> Ttl {
        Ttl::from_millis(ms)
    }

    fn client() -> Client<'static> {
        Client::new("me")
    }

    fn locked(token: Option<u64>, expire: Option<u64>) -> Response<'static> {
        let mut r = Response::new(Status::Locked);
        r.id = Some("me");
        r.token = token.map(Token);
        r.expire = expire.map(Ttl::from_millis);
        r
    }

    fn unlocked(id: bool) -> Response<'static> {
        let mut r = Response::new(Status::Unlocked);
        r.id = id.then_some("me");
        r
    }

    fn line(p: &Pending) -> String {
        let mut out = Vec::new();
        p.request(&client(), NAME).write(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// A lease granted at 0 ms for 3 s, token 7, renewing itself.
    fn renewing() -> Lease {
        Acquire::new(ttl(3000), None, true, at(0))
            .handle_response(at(4), &locked(Some(7), Some(3000)))
            .unwrap()
    }

    #[test]
    fn a_lock_all_refused_at_once_despite_its_wait_is_not_owner() {
        let acq = AcquireAll::new(ttl(3000), Some(ttl(5000)), false, at(100));
        // Refused at once, with why: a name is held by this ID already.
        let mut now = Response::new(Status::NotOwner);
        now.error = Some(crate::protocol::Message::Text(
            "lock \"a\" is already held by this ID",
        ));
        let e = acq.handle_response(at(103), &now, 2).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotOwner);
        assert!(matches!(e.detail, crate::client::Detail::Server(_)));
        // The same words at the end of the wait: still the server's refusal.
        let e = acq.handle_response(at(5200), &now, 2).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotOwner);
        // The wait ran out: a timeout.
        let out = Response::new(Status::NotOwner);
        let e = acq.handle_response(at(5101), &out, 2).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout);
        // Without a wait: not the owner.
        let once = AcquireAll::new(ttl(3000), None, false, at(100));
        let e = once.handle_response(at(103), &out, 2).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotOwner);
    }

    #[test]
    fn the_ttl_counts_from_the_request_or_after_a_wait_from_the_answer() {
        let lease = Acquire::new(ttl(3000), None, false, at(100))
            .handle_response(at(180), &locked(Some(1), Some(3000)))
            .unwrap();
        assert_eq!(lease.deadline(), at(3100));
        assert_eq!(lease.remaining(at(1100)), ttl(2000));
        // After a wait: the answer less the slack, never before the request.
        let waited = Acquire::new(ttl(3000), Some(ttl(10_000)), false, at(100));
        let lease = waited
            .handle_response(at(5100), &locked(Some(2), Some(3000)))
            .unwrap();
        assert_eq!(lease.deadline(), at(5050 + 3000));
        let lease = waited
            .handle_response(at(120), &locked(Some(2), Some(3000)))
            .unwrap();
        assert_eq!(lease.deadline(), at(3100));
        // A server that grants less than asked is believed; one that says
        // nothing (JackrabbitDLM) is taken at the asked TTL.
        let short = Acquire::new(ttl(3000), None, false, at(0))
            .handle_response(at(1), &locked(Some(3), Some(1000)))
            .unwrap();
        assert_eq!(short.deadline(), at(1000));
        let silent = Acquire::new(ttl(3000), None, false, at(0))
            .handle_response(at(1), &locked(None, None))
            .unwrap();
        assert_eq!((silent.deadline(), silent.token()), (at(3000), None));
    }

    #[test]
    fn a_refused_wait_is_a_timeout_unless_answered_at_once() {
        let not_owner = Response::new(Status::NotOwner);
        let once = Acquire::new(ttl(1000), None, false, at(0));
        assert_eq!(
            once.handle_response(at(3), &not_owner).unwrap_err().kind,
            ErrorKind::NotOwner
        );
        let wait = Acquire::new(ttl(1000), Some(ttl(500)), false, at(0));
        assert_eq!(
            wait.handle_response(at(499), &not_owner).unwrap_err().kind,
            ErrorKind::Timeout
        );
        // JackrabbitDLM ignores Wait and refuses at once.
        let e = wait.handle_response(at(20), &not_owner).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotOwner);
        // A zero wait is one attempt.
        assert_eq!(
            Acquire::new(ttl(1), Some(Ttl::ZERO), false, at(0)).wait(),
            None
        );
        let mut out = Vec::new();
        wait.request(&client(), NAME).write(&mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("\"Wait\":0.5"));
    }

    #[test]
    fn renewal_runs_every_third_of_the_ttl() {
        let mut lease = renewing();
        assert!(lease.is_renewing());
        assert_eq!(lease.poll_timeout(), Some(at(1000)));
        lease.handle_timeout(at(999));
        assert_eq!(lease.poll_request(at(999)), None);
        lease.handle_timeout(at(1000));
        let p = lease.poll_request(at(1000)).unwrap();
        assert_eq!(
            p.action(),
            Action::Extend {
                ttl: ttl(3000),
                auto: true
            }
        );
        assert!(line(&p).contains("\"Token\":7"), "{}", line(&p));
        // While it is in flight, only the deadline matters.
        assert_eq!(lease.poll_timeout(), Some(at(3000)));
        assert_eq!(lease.poll_request(at(1001)), None);
        assert_eq!(
            lease.handle_response(at(1010), &locked(Some(7), Some(3000))),
            Ok(Done::Extended)
        );
        assert_eq!(lease.deadline(), at(4000));
        assert_eq!(lease.poll_timeout(), Some(at(2000)));
        assert_eq!(lease.poll_event(), None);
    }

    #[test]
    fn failed_renewals_retry_until_the_deadline_then_the_lock_is_lost_once() {
        let mut lease = renewing();
        let mut now = 1000;
        let mut attempts = Vec::new();
        while let Some(t) = lease.poll_timeout() {
            now = t.as_millis();
            lease.handle_timeout(t);
            if let Some(p) = lease.poll_request(t) {
                attempts.push(now);
                assert!(matches!(p.action(), Action::Extend { auto: true, .. }));
                lease.handle_failure(t);
            }
        }
        // Every tenth of the TTL (300 ms) after the first, then lost at the
        // deadline, which no retry passes.
        assert_eq!(attempts, [1000, 1300, 1600, 1900, 2200, 2500, 2800]);
        assert_eq!(now, 3000);
        assert!(lease.is_lost());
        assert_eq!(lease.remaining(at(2999)), Ttl::ZERO);
        assert_eq!(lease.poll_event(), Some(Event::Lost));
        assert_eq!(lease.poll_event(), None);
        assert_eq!(
            lease.extend(at(3001), ttl(1000)).unwrap_err().kind,
            ErrorKind::LockLost
        );
        assert_eq!(lease.poll_request(at(3001)), None);
    }

    #[test]
    fn retries_are_between_10_ms_and_1_s() {
        for (ttl_ms, pause) in [(50, 10), (60_000, 1000)] {
            let mut lease = Acquire::new(ttl(ttl_ms), None, true, at(0))
                .handle_response(at(0), &locked(Some(1), None))
                .unwrap();
            let t = lease.poll_timeout().unwrap();
            lease.handle_timeout(t);
            lease.poll_request(t).unwrap();
            lease.handle_failure(t);
            assert_eq!(lease.poll_timeout(), Some(at(t.as_millis() + pause)));
        }
    }

    #[test]
    fn a_refused_extension_loses_the_lock_for_good() {
        let mut lease = renewing();
        lease.extend(at(10), ttl(5000)).unwrap();
        let p = lease.poll_request(at(10)).unwrap();
        assert_eq!(
            p.action(),
            Action::Extend {
                ttl: ttl(5000),
                auto: false
            }
        );
        let e = lease
            .handle_response(at(12), &Response::new(Status::NotOwner))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::LockLost);
        assert!(lease.is_lost());
        assert_eq!(lease.poll_event(), Some(Event::Lost));
        assert_eq!(lease.poll_timeout(), None);
        assert!(!lease.is_renewing());
        // A release may still be sent; the server says what became of it.
        assert!(lease.release(at(20)));
        let p = lease.poll_request(at(20)).unwrap();
        assert_eq!(p.action(), Action::Release);
        assert!(line(&p).contains("\"Action\":\"Unlock\""));
        let e = lease.handle_response(at(21), &unlocked(false)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::LockLost);
        assert!(lease.is_released() && lease.is_lost());
        assert_eq!(lease.poll_event(), None, "reported once");
    }

    #[test]
    fn other_refusals_of_a_renewal_are_retried() {
        let mut lease = renewing();
        lease.handle_timeout(at(1000));
        lease.poll_request(at(1000)).unwrap();
        let e = lease
            .handle_response(at(1001), &Response::new(Status::No))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NoMemory);
        assert!(!lease.is_lost());
        assert_eq!(lease.poll_timeout(), Some(at(1301)));
    }

    #[test]
    fn an_extension_answered_after_the_deadline_is_given_back() {
        let mut lease = Acquire::new(ttl(300), None, false, at(0))
            .handle_response(at(1), &locked(Some(9), Some(300)))
            .unwrap();
        lease.extend(at(290), ttl(300)).unwrap();
        let _in_flight = lease.poll_request(at(290)).unwrap();
        lease.handle_timeout(at(300));
        assert_eq!(lease.poll_event(), Some(Event::Lost));
        let e = lease
            .handle_response(at(305), &locked(Some(9), Some(300)))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::LockLost);
        let back = lease.poll_request(at(305)).unwrap();
        assert_eq!(back.action(), Action::Release);
        assert_eq!(
            lease.handle_response(at(306), &unlocked(true)),
            Ok(Done::Released)
        );
        assert_eq!(lease.poll_event(), None);
    }

    #[test]
    fn a_release_that_finds_the_lock_gone_is_a_loss() {
        let mut lease = renewing();
        assert!(lease.release(at(10)));
        lease.poll_request(at(10)).unwrap();
        let e = lease.handle_response(at(11), &unlocked(false)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::LockLost);
        assert!(lease.is_lost() && lease.is_released());
        assert_eq!(lease.poll_event(), Some(Event::Lost));
        assert!(!lease.release(at(12)));
    }

    #[test]
    fn a_release_is_final_only_once_answered() {
        let mut lease = renewing();
        assert!(lease.release(at(10)));
        assert!(!lease.is_renewing());
        assert_eq!(lease.poll_timeout(), Some(at(3000)));
        lease.poll_request(at(10)).unwrap();
        // No answer: still held, and the release may be asked again.
        lease.handle_failure(at(11));
        assert!(!lease.is_released());
        assert_eq!(lease.poll_request(at(12)), None);
        assert!(lease.release(at(12)));
        let p = lease.poll_request(at(12)).unwrap();
        assert!(line(&p).contains("\"Token\":7"));
        assert_eq!(
            lease.handle_response(at(13), &unlocked(true)),
            Ok(Done::Released)
        );
        assert!(lease.is_released());
        assert!(!lease.release(at(14)), "nothing more to send");
        assert_eq!(lease.poll_timeout(), None);
        assert_eq!(lease.remaining(at(14)), Ttl::ZERO);
        assert_eq!(
            lease.extend(at(14), ttl(1000)).unwrap_err().kind,
            ErrorKind::LockLost
        );
        assert_eq!(lease.poll_event(), None);
    }

    #[test]
    fn without_a_token_extensions_are_re_locks_and_never_sent_late() {
        let mut lease = Acquire::new(ttl(900), None, true, at(0))
            .handle_response(at(1), &locked(None, None))
            .unwrap();
        lease.handle_timeout(at(300));
        let p = lease.poll_request(at(300)).unwrap();
        let text = line(&p);
        assert!(
            text.contains("\"Action\":\"Lock\"") && !text.contains("Token"),
            "{text}"
        );
        assert_eq!(
            lease.handle_response(at(301), &locked(None, None)),
            Ok(Done::Extended)
        );
        assert_eq!(lease.deadline(), at(1200));
        // A manual extension asked for before the deadline but handed out
        // after it is dropped: a re-lock then could take the lock anew.
        lease.extend(at(1199), ttl(900)).unwrap();
        assert_eq!(lease.poll_request(at(1200)), None);
        assert!(lease.is_lost());
        // The release is by owner ID.
        assert!(lease.release(at(1201)));
        let p = lease.poll_request(at(1201)).unwrap();
        assert!(!line(&p).contains("Token"));
    }

    #[test]
    fn a_manual_extension_moves_the_renewal_and_zero_is_refused() {
        let mut lease = renewing();
        assert_eq!(
            lease.extend(at(5), Ttl::ZERO).unwrap_err().kind,
            ErrorKind::InvalidArgument
        );
        lease.extend(at(500), ttl(6000)).unwrap();
        assert_eq!(lease.poll_timeout(), Some(at(3000)));
        lease.poll_request(at(500)).unwrap();
        lease
            .handle_response(at(502), &locked(Some(7), Some(6000)))
            .unwrap();
        assert_eq!(lease.deadline(), at(6500));
        assert_eq!(lease.ttl(), ttl(6000));
        assert_eq!(lease.poll_timeout(), Some(at(2500)));
        // A token that is not ours is nonsense, not an extension.
        lease.extend(at(600), ttl(6000)).unwrap();
        lease.poll_request(at(600)).unwrap();
        let e = lease
            .handle_response(at(601), &locked(Some(8), None))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol);
        assert_eq!(lease.deadline(), at(6500));
        // An answer with nothing in flight is nonsense too.
        let e = lease
            .handle_response(at(602), &locked(Some(7), None))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol);
    }

    #[test]
    fn without_renewal_the_deadline_alone_loses_the_lock() {
        let mut lease = Acquire::new(ttl(100), None, false, at(0))
            .handle_response(at(1), &locked(Some(1), Some(100)))
            .unwrap();
        assert!(!lease.is_renewing());
        assert_eq!(lease.poll_timeout(), Some(at(100)));
        lease.handle_timeout(at(99));
        assert!(!lease.is_lost());
        lease.handle_timeout(at(100));
        assert!(lease.is_lost());
        assert_eq!(lease.poll_event(), Some(Event::Lost));
    }
}
