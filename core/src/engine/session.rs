//! Sessions: holds that end with their client's connection (PROTOCOL.md
//! section 8, "Sessions and lock-delay").
//!
//! A *session* belongs to one connection, named by the host with a
//! [`ConnId`]. It is opened by a `Session` request with a TTL, and lives
//! while its connection sends something at least once per TTL: every
//! request the engine handles for that connection (through
//! [`Engine::handle_in`]) keeps it alive. It ends when the host says its
//! connection closed ([`Engine::end_session`]) or when its TTL passes
//! without a request, in the engine's own time: a cluster decides both
//! through its log, so every replica ends it at the same entry.
//!
//! A `Lock` with `Session` binds its grant (a lock, or a hold of a
//! semaphore or read/write lock; granted at once or later to its waiter)
//! to the session. When the session ends, each bound grant still live is
//! released, or, with a lock-delay, *closed*: it stays where it is (its
//! holder, its token) until the delay has passed, and nobody may take the
//! name meanwhile, not even its own owner, who can neither extend nor
//! unlock it; then it expires as any hold does and the first waiter gets
//! it with a new token. A waiter of the session still queued when it ends
//! is answered `NotOwner`.
//!
//! Must never end a session but by its connection's end or its TTL, nor
//! let anybody take a closed name before its delay has passed; everything
//! here is engine state (snapshots, memory budget).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;

use super::shared::TIMER_HOLD;
use super::table::KeyHasher;
use super::wheel::{Kind, TimerRef};
use super::{Engine, Event, Outcome, Principal, Storage, WaiterId, widen};
use crate::protocol::{Command, Message, RequestError, Response, SessionBind, Status, Token};
use crate::stats::Stat;
use crate::time::{Instant, Ttl};

/// The host's name for one client connection, unique over the engine's
/// life (a cluster member's number, its start and the connection's slot
/// and generation, for example). The engine only compares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// How a grant is tied to a session ([`Engine::session_binding`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionBinding {
    /// Bound to a live session: released (or closed for `lock_delay`,
    /// if not zero) when it ends.
    Bound {
        /// How long the name stays closed after the session's end.
        lock_delay: Ttl,
    },
    /// Its session ended and its lock-delay runs: nobody may take the
    /// name until the grant expires.
    Closed,
}

/// One grant bound to a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Bound {
    pub(super) name: String,
    /// Lock-delay (milliseconds).
    pub(super) delay: u64,
}

/// One open session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Session {
    /// Its TTL (milliseconds).
    pub(super) ttl: u64,
    /// When it ends unless a request comes (engine milliseconds, slack
    /// included).
    pub(super) deadline: u64,
    /// Grants bound to it, by token. Some may be gone (released or
    /// expired since): they are pruned now and then, and skipped at the end.
    pub(super) holds: BTreeMap<u64, Bound>,
}

/// Every session and the indexes around them.
#[derive(Debug, Default)]
pub(super) struct Sessions {
    pub(super) by_conn: BTreeMap<ConnId, Session>,
    /// `(deadline, connection)`.
    pub(super) timers: BTreeSet<(u64, ConnId)>,
    /// Waiters of a session-bound `Lock`: their session, name and delay.
    pub(super) pending: BTreeMap<u64, (ConnId, String, u64)>,
    /// Grants closed by their lock-delay: token to the end of the delay.
    pub(super) closed: BTreeMap<u64, u64>,
    /// `(end of delay, token)`, to forget closed tokens.
    pub(super) closed_by_time: BTreeSet<(u64, u64)>,
    /// The session each bound grant is bound to, by token.
    pub(super) owner_of: BTreeMap<u64, ConnId>,
    /// Bound grants and pending waiters after the last pruning.
    pub(super) pruned: usize,
    /// The connection of the request being handled.
    pub(super) current: Option<ConnId>,
    /// The `Error` text of the last answer rebuilt by `handle_in`.
    pub(super) text: String,
}

/// Bytes charged for a session.
pub(super) fn session_charge() -> usize {
    core::mem::size_of::<Session>() + 2 * core::mem::size_of::<(u64, ConnId)>() + 64
}

/// Bytes charged for a bound grant or a pending waiter of `name` (the same:
/// a waiter's charge becomes its grant's), and later for its closed token.
pub(super) fn bound_charge(name: &str) -> usize {
    name.len() + core::mem::size_of::<Bound>() + 3 * core::mem::size_of::<(u64, u64)>() + 64
}

/// Bytes charged for a closed token (in both of its indexes).
pub(super) const CLOSED_CHARGE: usize = 3 * core::mem::size_of::<(u64, u64)>() + 64;

/// What `handle_in` keeps of an answer while it binds the grant.
enum Digest {
    Reply {
        status: Status,
        id: bool,
        token: Option<Token>,
        expire: Option<Ttl>,
        error: Option<Result<RequestError, String>>,
    },
    Queued(WaiterId),
}

impl<S: Storage> Engine<S> {
    /// [`handle_once`](Self::handle_once) for a request of connection
    /// `conn` (`None`: a host without sessions): a `Session` request opens
    /// or keeps alive the connection's session, any request of the
    /// connection keeps it alive, and `bind` (a `Lock` with `Session`)
    /// binds its grant to the session, answering `BadPayload` if the
    /// connection has none. See the module docs and PROTOCOL.md section 8.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_in<'s>(
        &'s mut self,
        now: Instant,
        command: &Command<'s>,
        principal: Principal,
        tag: u64,
        request_id: Option<&str>,
        conn: Option<ConnId>,
        bind: Option<SessionBind>,
        events: &mut impl FnMut(Event<'_>),
    ) -> Outcome<'s> {
        let now_ms = now.as_millis().max(self.wheel.elapsed());
        let now = Instant::from_millis(now_ms);
        self.advance(now, events);
        if let Some(c) = conn {
            self.touch_session(now_ms, c);
        }
        self.sessions.current = conn;
        if bind.is_some()
            && matches!(command, Command::Session { .. })
            && !conn.is_some_and(|c| self.sessions.by_conn.contains_key(&c))
        {
            // A keep-alive of a session that has ended (by its TTL, in
            // this engine's time): told, never reopened behind its back.
            self.stats.incr(Stat::BadPayload);
            return Outcome::Reply(Response::rejected(RequestError::NoSession));
        }
        let bind =
            bind.filter(|_| matches!(command, Command::Lock { .. } | Command::Acquire { .. }));
        let (Some(bind), Some((name, owner))) = (bind, command.target()) else {
            return self.handle_once(now, command, principal, tag, request_id, events);
        };
        let Some(c) = conn.filter(|c| self.sessions.by_conn.contains_key(c)) else {
            self.stats.incr(Stat::BadPayload);
            return Outcome::Reply(Response::rejected(RequestError::NoSession));
        };
        if !self.fits(bound_charge(name.0)) {
            return Outcome::Reply(self.no_memory());
        }
        let digest = match self.handle_once(now, command, principal, tag, request_id, events) {
            Outcome::Queued(w) => Digest::Queued(w),
            Outcome::Reply(r) => Digest::Reply {
                status: r.status,
                id: r.id.is_some(),
                token: r.token,
                expire: r.expire,
                error: r.error.map(|m| match m {
                    Message::Request(e) => Ok(e),
                    Message::Text(t) => Err(String::from(t)),
                }),
            },
        };
        let delay = bind.lock_delay.as_millis();
        match digest {
            Digest::Queued(w) => {
                self.bytes += bound_charge(name.0);
                self.sessions
                    .pending
                    .insert(w.get(), (c, String::from(name.0), delay));
                self.prune_sessions();
                Outcome::Queued(w)
            }
            Digest::Reply {
                status,
                id,
                token,
                expire,
                error,
            } => {
                if let (Status::Locked, Some(t)) = (status, token) {
                    self.bind(c, name.0, t.0, delay);
                }
                let mut r = Response::new(status);
                r.id = id.then_some(owner.0);
                r.token = token;
                r.expire = expire;
                r.error = match error {
                    None => None,
                    Some(Ok(e)) => Some(Message::Request(e)),
                    Some(Err(text)) => {
                        self.sessions.text = text;
                        Some(Message::Text(self.sessions.text.as_str()))
                    }
                };
                Outcome::Reply(r)
            }
        }
    }

    /// Connection `conn` closed: its session (if any) ends now, releasing
    /// or closing its grants. Returns whether there was one.
    pub fn end_session(
        &mut self,
        now: Instant,
        conn: ConnId,
        events: &mut impl FnMut(Event<'_>),
    ) -> bool {
        let now = now.as_millis().max(self.wheel.elapsed());
        self.advance(Instant::from_millis(now), events);
        if !self.sessions.by_conn.contains_key(&conn) {
            return false;
        }
        self.stats.incr(Stat::SessionClosed);
        self.finish_session(now, conn, events);
        true
    }

    /// Open sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.by_conn.len()
    }

    /// Whether connection `conn` has a session open.
    pub fn has_session(&self, conn: ConnId) -> bool {
        self.sessions.by_conn.contains_key(&conn)
    }

    /// The live grants bound to `conn`'s session, in token order (as of
    /// the engine's current instant): each name, token and lock-delay.
    pub fn session_grants(&self, conn: ConnId) -> impl Iterator<Item = (&str, Token, Ttl)> + '_ {
        self.sessions
            .by_conn
            .get(&conn)
            .into_iter()
            .flat_map(|s| s.holds.iter())
            .filter(|(t, b)| self.grant_live(&b.name, **t))
            .map(|(t, b)| (b.name.as_str(), Token(*t), Ttl::from_millis(b.delay)))
    }

    /// Whether grant `token` is closed by a lock-delay (its session ended).
    pub fn is_closed(&self, token: Token) -> bool {
        self.sessions.closed.contains_key(&token.0)
    }

    /// How grant `token` is tied to a session, for the administrator's
    /// listings: `None` if it is not (or no longer) bound to a live
    /// session nor closed by a lock-delay.
    pub fn session_binding(&self, token: Token) -> Option<SessionBinding> {
        if self.sessions.closed.contains_key(&token.0) {
            return Some(SessionBinding::Closed);
        }
        let conn = self.sessions.owner_of.get(&token.0)?;
        let bound = self.sessions.by_conn.get(conn)?.holds.get(&token.0)?;
        Some(SessionBinding::Bound {
            lock_delay: Ttl::from_millis(bound.delay),
        })
    }

    /// `Session`: opens the current connection's session with `ttl`, or
    /// sets the TTL of the one it has (and keeps it alive).
    pub(super) fn open_session<'a>(&mut self, now: u64, ttl: Ttl) -> Response<'a> {
        let Some(c) = self.sessions.current else {
            self.stats.incr(Stat::BadPayload);
            return Response::rejected(RequestError::NoSession);
        };
        let deadline = now + ttl.as_millis() + self.slack;
        if let Some(s) = self.sessions.by_conn.get_mut(&c) {
            let old = s.deadline;
            s.ttl = ttl.as_millis();
            s.deadline = deadline;
            self.sessions.timers.remove(&(old, c));
            self.sessions.timers.insert((deadline, c));
        } else {
            if !self.fits(session_charge()) {
                return self.no_memory();
            }
            self.bytes += session_charge();
            self.sessions.by_conn.insert(
                c,
                Session {
                    ttl: ttl.as_millis(),
                    deadline,
                    holds: BTreeMap::new(),
                },
            );
            self.sessions.timers.insert((deadline, c));
        }
        self.stats.incr(Stat::Session);
        let mut r = Response::new(Status::Done);
        r.expire = Some(ttl);
        r
    }

    /// A request of `conn` came at `now`: its session lives a TTL more.
    fn touch_session(&mut self, now: u64, conn: ConnId) {
        let slack = self.slack;
        let Some(s) = self.sessions.by_conn.get_mut(&conn) else {
            return;
        };
        let deadline = now + s.ttl + slack;
        if deadline > s.deadline {
            self.sessions.timers.remove(&(s.deadline, conn));
            s.deadline = deadline;
            self.sessions.timers.insert((deadline, conn));
        }
    }

    /// Binds grant `token` of `name` to `conn`'s session (moving it from
    /// any other session it was bound to).
    fn bind(&mut self, conn: ConnId, name: &str, token: u64, delay: u64) {
        if !self.sessions.by_conn.contains_key(&conn) {
            return;
        }
        match self.sessions.owner_of.insert(token, conn) {
            // Moved from another session: its charge moves with it.
            Some(old) if old != conn => {
                if let Some(s) = self.sessions.by_conn.get_mut(&old) {
                    s.holds.remove(&token);
                }
            }
            Some(_) => {}
            None => self.bytes += bound_charge(name),
        }
        if let Some(s) = self.sessions.by_conn.get_mut(&conn) {
            s.holds.insert(
                token,
                Bound {
                    name: String::from(name),
                    delay,
                },
            );
        }
        self.prune_sessions();
    }

    /// Bound grants and pending waiters, live or not.
    fn session_entries(&self) -> usize {
        self.sessions.owner_of.len() + self.sessions.pending.len()
    }

    /// A waiter was granted `token`: if it was a session-bound `Lock`, its
    /// grant is bound to the session now. Called by every grant to a
    /// waiter.
    pub(super) fn session_granted(&mut self, waiter: u64, token: u64) {
        let Some((c, name, delay)) = self.sessions.pending.remove(&waiter) else {
            return;
        };
        // The waiter's charge becomes the grant's.
        self.bytes -= bound_charge(&name);
        if self.sessions.by_conn.contains_key(&c) {
            self.bind(c, &name, token, delay);
        }
    }

    /// Whether grant `token` of `name` is live (a lock or a hold).
    fn grant_live(&self, name: &str, token: u64) -> bool {
        if let (_, Some(slot)) = self.find_lock(name) {
            return self.timed.locks.get(slot).token == token;
        }
        self.shared
            .groups
            .get(name)
            .is_some_and(|g| g.holds.iter().any(|h| h.token == token))
    }

    /// Whether waiter `id` is still queued.
    fn waiter_live(&self, id: u64) -> bool {
        self.shared.waiters.contains_key(&id)
            || self.multi.waiting.contains_key(&id)
            || self
                .timed
                .waiters
                .find(widen(KeyHasher::int(id)), |w| w.id == id)
                .is_some()
    }

    /// Forgets bound grants that are gone and pending waiters that left,
    /// once there are twice as many as after the last pruning: the cost
    /// is constant per binding, and what a session keeps stays within
    /// twice what is live.
    fn prune_sessions(&mut self) {
        if self.session_entries() <= 2 * self.sessions.pruned + 16 {
            return;
        }
        let mut refund = 0;
        let conns: alloc::vec::Vec<ConnId> = self.sessions.by_conn.keys().copied().collect();
        for c in conns {
            let gone: alloc::vec::Vec<(u64, usize)> = self.sessions.by_conn[&c]
                .holds
                .iter()
                .filter(|(t, b)| !self.grant_live(&b.name, **t))
                .map(|(t, b)| (*t, bound_charge(&b.name)))
                .collect();
            if let Some(s) = self.sessions.by_conn.get_mut(&c) {
                for (t, charge) in gone {
                    s.holds.remove(&t);
                    self.sessions.owner_of.remove(&t);
                    refund += charge;
                }
            }
        }
        let left: alloc::vec::Vec<(u64, usize)> = self
            .sessions
            .pending
            .iter()
            .filter(|(id, _)| !self.waiter_live(**id))
            .map(|(id, (_, name, _))| (*id, bound_charge(name)))
            .collect();
        for (id, charge) in left {
            self.sessions.pending.remove(&id);
            refund += charge;
        }
        self.bytes -= refund;
        self.sessions.pruned = self.session_entries();
    }

    /// Ends session `conn` at `now`: each live bound grant is released, or
    /// closed for its lock-delay; its queued waiters are answered
    /// `NotOwner`.
    pub(super) fn finish_session(
        &mut self,
        now: u64,
        conn: ConnId,
        events: &mut impl FnMut(Event<'_>),
    ) {
        self.finish_sessions(now, &[conn], events);
    }

    /// Ends sessions `conns` together at `now`: every waiter of theirs
    /// leaves first, then their grants are released or closed (so a grant
    /// one of them releases never goes to a waiter of another that ends at
    /// the same instant).
    fn finish_sessions(&mut self, now: u64, conns: &[ConnId], events: &mut impl FnMut(Event<'_>)) {
        let mut ended = alloc::vec::Vec::new();
        for &conn in conns {
            let Some(s) = self.sessions.by_conn.remove(&conn) else {
                continue;
            };
            self.sessions.timers.remove(&(s.deadline, conn));
            self.bytes -= session_charge();
            ended.push(s);
        }
        let waiting: alloc::vec::Vec<u64> = self
            .sessions
            .pending
            .iter()
            .filter(|(_, (c, _, _))| conns.contains(c))
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            if let Some((_, name, _)) = self.sessions.pending.remove(&id) {
                self.bytes -= bound_charge(&name);
                self.time_out_any(now, id, events);
            }
        }
        for s in ended {
            for (token, b) in s.holds {
                self.sessions.owner_of.remove(&token);
                self.bytes -= bound_charge(&b.name);
                self.end_grant(now, &b.name, token, b.delay, events);
            }
        }
    }

    /// Releases grant `token` of `name` if it is live, or with `delay`
    /// closes it until `now + delay`.
    fn end_grant(
        &mut self,
        now: u64,
        name: &str,
        token: u64,
        delay: u64,
        events: &mut impl FnMut(Event<'_>),
    ) {
        if !self.grant_live(name, token) {
            return;
        }
        self.stats.incr(Stat::SessionReleased);
        // A grant whose TTL ran out by now (not yet served by the wheel)
        // is released, never closed: a delay does not outlast the TTL the
        // holder was told.
        let ends = match self.find_lock(name) {
            (_, Some(slot)) => self.timed.locks.get(slot).link.when,
            (_, None) => self
                .shared
                .groups
                .get(name)
                .and_then(|g| g.holds.iter().find(|h| h.token == token))
                .map_or(now, |h| h.when),
        };
        let delay = if ends <= now { 0 } else { delay };
        let until = now + delay + self.slack;
        if let (_, Some(slot)) = self.find_lock(name) {
            let r = TimerRef::new(Kind::Lock, slot);
            if delay == 0 {
                self.note_released(slot);
                self.wheel.remove(&mut self.timed, r);
                self.release_unlinked(slot, now, events);
                return;
            }
            // (A grant nobody was told of, its waiter's connection gone,
            // is still taken back as orphaned: there is no slow holder to
            // keep out.)
            self.wheel.rearm(&mut self.timed, r, until);
        } else {
            if delay == 0 {
                self.note_hold(super::watch::What::Released, name, token);
                self.drop_hold(name, token, now);
                self.pump(name, now, now, events);
                return;
            }
            let Some(h) = self
                .shared
                .groups
                .get_mut(name)
                .and_then(|g| g.holds.iter_mut().find(|h| h.token == token))
            else {
                return;
            };
            let old = h.when;
            h.when = until;
            if let Some(n) = self.shared.timers.remove(&(old, TIMER_HOLD, token)) {
                self.shared.timers.insert((until, TIMER_HOLD, token), n);
            }
        }
        self.bytes += CLOSED_CHARGE;
        self.sessions.closed.insert(token, until);
        self.sessions.closed_by_time.insert((until, token));
    }

    /// Answers queued waiter `id` `NotOwner` (its session ended).
    fn time_out_any(&mut self, now: u64, id: u64, events: &mut impl FnMut(Event<'_>)) {
        if self.time_out_multi_now(now, id, events) {
            return;
        }
        if let Some(name) = self.shared.waiters.get(&id).cloned() {
            self.time_out_shared(&name, id, events);
            self.pump(&name, now, now, events);
            return;
        }
        if let Some(slot) = self
            .timed
            .waiters
            .find(widen(KeyHasher::int(id)), |w| w.id == id)
        {
            self.wheel
                .remove(&mut self.timed, TimerRef::new(Kind::Waiter, slot));
            self.time_out_unlinked(slot, events);
        }
    }

    /// Ends the sessions whose deadline is `at` (or earlier), at `at`.
    pub(super) fn end_sessions_due(&mut self, at: u64, events: &mut impl FnMut(Event<'_>)) {
        let due: alloc::vec::Vec<ConnId> = self
            .sessions
            .timers
            .iter()
            .take_while(|&&(when, _)| when <= at)
            .map(|&(_, c)| c)
            .collect();
        if due.is_empty() {
            return;
        }
        for _ in &due {
            self.stats.incr(Stat::SessionExpired);
        }
        self.finish_sessions(at, &due, events);
    }

    /// Forgets closed tokens whose delay is over by `now` (the grant
    /// itself expired then, and was handed over, in the same `advance`).
    pub(super) fn forget_closed(&mut self, now: u64) {
        while let Some(&(until, token)) = self.sessions.closed_by_time.first() {
            if until > now {
                break;
            }
            self.sessions.closed_by_time.pop_first();
            if self.sessions.closed.remove(&token).is_some() {
                self.bytes -= CLOSED_CHARGE;
            }
        }
    }

    /// The earliest session deadline or end of a delay.
    pub(super) fn next_session_deadline(&self) -> Option<u64> {
        let a = self.sessions.timers.first().map(|&(w, _)| w);
        let b = self.sessions.closed_by_time.first().map(|&(w, _)| w);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
