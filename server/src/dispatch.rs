//! From a request line to its answer: parse, authenticate, apply to the
//! engine; and placing the answers the engine gives waiters on the way
//! (a grant goes to the connection that queued, in its place among that
//! connection's answers), taking back a grant whose client is gone.

use std::time::Duration;

use dlm_core::engine::{ConnId, Event, Outcome, Principal, WaiterId};
use dlm_core::protocol::{
    AdminOp, Command, Framing, Request, RequestError, Response, Status, Token,
};
use dlm_core::stats::Stat;
use dlm_core::time::Ttl;
use tracing::debug;

use crate::conn::{Closing, Held};
use crate::host::{Host, Peers, engine_time};

/// What a client was told about holding a lock, as [`Host::take_journal`](crate::host::Host::take_journal)
/// records it: the truth a checker judges mutual exclusion by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Told {
    /// Connection `slot` was told `owner` holds `name` with `token` for
    /// `ttl` from `at` (a grant, a re-lock or an extension).
    Locked {
        /// The connection the answer went to.
        slot: usize,
        /// The lock.
        name: String,
        /// Its holder.
        owner: String,
        /// The grant's fencing token.
        token: u64,
        /// How long from `at`.
        ttl: Ttl,
        /// When the host decided it.
        at: Duration,
    },
    /// `owner`'s grant of `name` ended with its session at `at`: nobody
    /// else may hold it before `until` (`at`, or later by its lock-delay).
    SessionEnded {
        /// The lock.
        name: String,
        /// Its holder.
        owner: String,
        /// When the session ended.
        at: Duration,
        /// The end of its lock-delay.
        until: Duration,
    },
    /// `owner` released `name` at `at` (answered `Unlocked` with its ID).
    Released {
        /// The lock.
        name: String,
        /// Its former holder.
        owner: String,
        /// When the host decided it.
        at: Duration,
    },
}

/// A waiter's answer, owned, for placing after the engine call.
#[derive(Debug)]
pub(crate) struct Delivery {
    tag: u64,
    waiter: WaiterId,
    line: Vec<u8>,
    /// The lock and token, if the answer is a grant.
    grant: Option<(String, Token)>,
    /// The holder and TTL of a grant (for the journal).
    owner: Option<(String, Ttl)>,
    /// A multi-lock grant's tokens after the first, one per further name
    /// (for the journal, which names them from the engine).
    more: Vec<Token>,
}

impl Delivery {
    /// Copies what the engine said to a waiter.
    pub(crate) fn of(ev: &Event<'_>) -> Self {
        let (_, _, framing) = untag(ev.tag);
        let mut line = Vec::with_capacity(96);
        // Writing to a Vec cannot fail.
        let _ = ev.response.write(framing, &mut line);
        let grant = match (ev.response.status, ev.response.token) {
            (Status::Locked, Some(t)) => Some((ev.name.to_owned(), t)),
            _ => None,
        };
        let owner = match (grant.is_some(), ev.response.id, ev.response.expire) {
            (true, Some(id), Some(ttl)) => Some((id.to_owned(), ttl)),
            _ => None,
        };
        let more = match (&grant, ev.response.tokens) {
            (Some(_), Some(tokens)) => tokens.iter().skip(1).collect(),
            _ => Vec::new(),
        };
        Self {
            tag: ev.tag,
            waiter: ev.waiter,
            line,
            grant,
            owner,
            more,
        }
    }
}

/// `NO`, with why.
fn refusal(why: &'static str) -> Response<'static> {
    let mut r = Response::new(Status::No);
    r.error = Some(dlm_core::protocol::Message::Text(why));
    r
}

/// Encodes a connection slot, its generation and the framing into the
/// engine's waiter tag (with the member's node number in the top 8 bits,
/// set by [`tag_node`]: a cluster member delivers only its own).
pub(crate) fn tag(slot: usize, generation: u32, framing: Framing) -> u64 {
    ((slot as u64) & SLOT_MASK) << 33
        | u64::from(generation) << 1
        | u64::from(framing == Framing::Legacy)
}

/// The engine's name for connection `slot` of `generation` on member
/// `node` (0 on a single server): its waiter tag without the framing,
/// which may change from one line to the next.
pub(crate) fn conn_id(slot: usize, generation: u32, node: u64) -> ConnId {
    ConnId(tag_node(tag(slot, generation, Framing::Plain), node))
}

/// Slots fit 23 bits (8 million connections).
const SLOT_MASK: u64 = (1 << 23) - 1;

/// A tag with member `node`'s number (the low 8 bits of it).
pub(crate) fn tag_node(tag: u64, node: u64) -> u64 {
    tag & !(0xff << 56) | (node & 0xff) << 56
}

/// The member number a tag carries.
pub(crate) fn node_of(tag: u64) -> u64 {
    tag >> 56
}

#[allow(clippy::cast_possible_truncation)]
pub(crate) fn untag(tag: u64) -> (usize, u32, Framing) {
    let framing = if tag & 1 == 1 {
        Framing::Legacy
    } else {
        Framing::Plain
    };
    (
        ((tag >> 33) & SLOT_MASK) as usize,
        (tag >> 1) as u32,
        framing,
    )
}

impl Host {
    /// Parses, authenticates and applies one line of connection `slot`;
    /// its answer goes to the connection's output, waiters' answers to
    /// theirs.
    pub(crate) fn handle_line(
        &mut self,
        slot: usize,
        generation: u32,
        at: Duration,
        line: &mut [u8],
        peers: &dyn Peers,
    ) {
        let now = engine_time(at);
        // Time first: waiters served by what fell due are answered before
        // this request's effect (the engine would do the same inside
        // `handle`; doing it here keeps the journal in the engine's order).
        // Not on a cluster member: its engine takes time only from the
        // log's stamps, like every other member's; this host's own clock
        // (its uptime) would expire locks early on the leader alone, and
        // the members' engines would part (tokens granted twice after a
        // failover, two holders at once).
        if self.replica.is_none() && self.engine.next_deadline().is_some_and(|d| d <= now) {
            let Self {
                engine, deliveries, ..
            } = self;
            engine.advance(now, &mut |ev| deliveries.push(Delivery::of(&ev)));
            self.place_deliveries(at, peers);
            // A grant that fell due may have gone to a waiter of this very
            // connection whose client has left: then it was taken back and
            // the connection closed, its held answers dropped. Answering
            // this line now would put its answer where an earlier
            // request's belonged.
            if self
                .conn(slot)
                .is_none_or(|c| c.generation != generation || c.closing != Closing::No)
            {
                return;
            }
        }
        let watching = self.is_watching(slot, generation);
        let Self {
            engine,
            conns,
            identities,
            limits,
            deliveries,
            journal,
            ..
        } = self;
        let Some(conn) = conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        engine.stats_mut().incr(Stat::In);
        let req = match Request::parse(line, limits) {
            Ok(req) => req,
            Err(rejected) => {
                let stats = engine.stats_mut();
                stats.incr(match rejected.error.status() {
                    Status::BadAction => Stat::BadAction,
                    _ => Stat::BadPayload,
                });
                stats.incr(Stat::Out);
                conn.emit(&Response::rejected(rejected.error), rejected.framing);
                return;
            }
        };
        let framing = req.framing;
        if watching {
            let stats = engine.stats_mut();
            stats.incr(Stat::BadPayload);
            stats.incr(Stat::Out);
            let mut r = Response::new(Status::BadPayload);
            r.error = Some(dlm_core::protocol::Message::Text(
                "this connection is watching: it takes no other request",
            ));
            conn.emit(&r, framing);
            return;
        }
        let principal = match req.credentials {
            None => Principal::Anonymous,
            Some(_) if conn.identities_refused => {
                let stats = engine.stats_mut();
                stats.incr(Stat::AuthFailed);
                stats.incr(Stat::BadPayload);
                stats.incr(Stat::Out);
                let mut r = Response::new(Status::BadPayload);
                r.error = Some(dlm_core::protocol::Message::Text(
                    "identities need TLS on this server; connect to its TLS port",
                ));
                conn.emit(&r, framing);
                return;
            }
            Some(c) => {
                // The secret is this member's to check (or the client
                // certificate stands for the name); the identity's number
                // is the engine's (the same on every member).
                let by_certificate = conn.cert_identity.as_deref() == Some(c.name);
                if let Some(id) = (by_certificate || identities.verify(c.name, c.secret))
                    .then(|| engine.identity(c.name))
                    .flatten()
                {
                    Principal::Identity(id)
                } else {
                    let stats = engine.stats_mut();
                    stats.incr(Stat::AuthFailed);
                    stats.incr(Stat::BadPayload);
                    stats.incr(Stat::Out);
                    conn.emit(&Response::rejected(RequestError::AuthFailed), framing);
                    return;
                }
            }
        };
        if let Command::Watch {
            scope,
            owner,
            since,
        } = req.command
        {
            // Served by this server from what it has applied (any member
            // of a cluster), never through the log.
            self.start_watch(slot, generation, framing, scope, owner.0, principal, since);
            return;
        }
        if let Command::Admin(op) = req.command {
            // Only an administrator; the engine, which cannot tell, only
            // refuses the anonymous.
            let admin = matches!(principal, Principal::Identity(_))
                && req.credentials.is_some_and(|c| identities.is_admin(c.name));
            if !admin {
                let stats = engine.stats_mut();
                stats.incr(Stat::BadPayload);
                stats.incr(Stat::Out);
                conn.emit(&Response::rejected(RequestError::NotAdmin), framing);
                return;
            }
            if self.replica.is_none() {
                // A single server's engine sees time only when asked:
                // bring it to now so times held and left are current (what
                // fell due was handled above). A member's engine keeps the
                // log's time, at most an idle stamp (250 ms) behind.
                engine.advance(now, &mut |ev| deliveries.push(Delivery::of(&ev)));
            }
            let table = match op {
                AdminOp::Locks { prefix } => Some(Some(crate::admin::locks_json(
                    engine,
                    prefix,
                    crate::admin::MAX_LISTED,
                ))),
                AdminOp::Lock { name } => Some(crate::admin::lock_json(engine, &name)),
                // A change of state: the engine's, through the log in a
                // cluster, below.
                AdminOp::Revoke { .. } => None,
            };
            if let Some(found) = table {
                engine.stats_mut().incr(Stat::Out);
                match found {
                    Some(json) => {
                        let mut r = Response::new(Status::Done);
                        r.admin = Some(&json);
                        conn.emit(&r, framing);
                    }
                    None => conn.emit(&Response::new(Status::NotFound), framing),
                }
                if !self.deliveries.is_empty() {
                    self.place_deliveries(at, peers);
                }
                return;
            }
        }
        let waiter_tag = tag_node(
            tag(slot, generation, framing),
            self.replica.as_ref().map_or(0, |r| r.node),
        );
        if let Command::Cluster(op) = req.command {
            engine.stats_mut().incr(Stat::Out);
            let Some(replica) = &mut self.replica else {
                let mut r = Response::new(Status::Done);
                r.cluster = Some("{\"Mode\":\"single\"}");
                conn.emit(&r, framing);
                return;
            };
            match crate::cluster::admin_request(replica, op, waiter_tag, &mut conn.held) {
                Ok(None) => {}
                Ok(Some(json)) => {
                    let mut r = Response::new(Status::Done);
                    r.cluster = Some(&json);
                    conn.emit(&r, framing);
                }
                Err(why) => conn.emit(&refusal(why), framing),
            }
            return;
        }
        if let Some(replica) = &mut self.replica
            && !matches!(req.command, Command::Version | Command::Stats)
        {
            // A cluster member: the request goes through the log and is
            // answered, in its place, when its entry applies; a read is
            // answered, in its place, once the state holds everything
            // committed before it came (read index).
            let ident = match principal {
                Principal::Anonymous => 0,
                Principal::Identity(id) => id.number(),
            };
            if let Err(why) = replica.submit(&req, at, waiter_tag, ident, &mut conn.held) {
                engine.stats_mut().incr(Stat::Out);
                conn.emit(&refusal(why), framing);
            }
            return;
        }
        // A member's engine keeps the log's time: `Version` and `Stats`,
        // answered here outside the log, must not move it to this
        // member's clock (which runs ahead of the log's: an engine moved
        // to it expires locks before the log does, on this member only).
        let now = if self.replica.is_some() {
            engine.now()
        } else {
            now
        };
        let mut sink = |ev: Event<'_>| deliveries.push(Delivery::of(&ev));
        let mut told = Vec::new();
        match engine.handle_in(
            now,
            &req.command,
            principal,
            waiter_tag,
            req.request_id,
            // A member answers `Version` and `Stats` here, outside the
            // log: they must not touch the replicated sessions.
            self.replica.is_none().then_some(ConnId(waiter_tag & !1)),
            req.session,
            &mut sink,
        ) {
            Outcome::Reply(r) => {
                if journal.is_some() {
                    record(slot, &req.command, &r, at, &mut told);
                }
                conn.emit(&r, framing);
                engine.stats_mut().incr(Stat::Out);
            }
            Outcome::Queued(w) if conn.hung_up => {
                // Its client closed its end: it cannot be waiting. (Direct
                // engines only: a replica queues through the log.)
                engine.cancel(w);
                engine.stats_mut().incr(Stat::NotOwner);
                engine.stats_mut().incr(Stat::Out);
                conn.emit(&Response::new(Status::NotOwner), framing);
            }
            Outcome::Queued(w) => conn.held.push_back(Held::Waiting(w, framing)),
        }
        if let Some(journal) = &mut self.journal {
            journal.extend(told);
        }
        if !self.deliveries.is_empty() {
            self.place_deliveries(at, peers);
        }
    }

    /// Puts waiters' answers into their connections. A grant whose client
    /// is gone (or has closed its end) is taken back, which may hand the
    /// lock to the next waiter, whose answer is placed next.
    pub(crate) fn place_deliveries(&mut self, at: Duration, peers: &dyn Peers) {
        let now = engine_time(at);
        while !self.deliveries.is_empty() {
            for d in std::mem::take(&mut self.deliveries) {
                let (slot, generation, _) = untag(d.tag);
                let mine = self
                    .replica
                    .as_ref()
                    .is_none_or(|r| r.node == node_of(d.tag));
                if !mine {
                    // A grant to a waiter of another member's connection:
                    // a former leader's, whose last entries this member
                    // applies as the new leader. That member may have told
                    // its client already; taking the grant back here would
                    // hand the lock to a second holder. It lasts its TTL.
                    continue;
                }
                let live = self
                    .conn(slot)
                    .filter(|c| mine && c.generation == generation)
                    .map(|c| c.hung_up);
                let placed = match live {
                    Some(eof) if d.grant.is_some() && (eof || peers.closed(slot)) => {
                        // Not written into the void: the lock goes on.
                        debug!(slot, "client left as its wait was granted; taking it back");
                        self.close(slot, true);
                        false
                    }
                    Some(_) => self
                        .conn_mut(slot)
                        .is_some_and(|c| c.fill(d.waiter, d.line)),
                    None => false,
                };
                if placed
                    && let (Some(journal), Some((name, token)), Some((owner, ttl))) =
                        (&mut self.journal, &d.grant, &d.owner)
                {
                    // A multi-lock's further names, from the engine (the
                    // answer carries their tokens only).
                    let names: Vec<String> = match self.engine.multi_grant_names(*token) {
                        Some(names) if !d.more.is_empty() => names.map(str::to_owned).collect(),
                        _ => vec![name.clone()],
                    };
                    let tokens = core::iter::once(*token).chain(d.more.iter().copied());
                    for (name, token) in names.into_iter().zip(tokens) {
                        journal.push(Told::Locked {
                            slot,
                            name,
                            owner: owner.clone(),
                            token: token.0,
                            ttl: *ttl,
                            at,
                        });
                    }
                }
                if placed {
                    self.engine.stats_mut().incr(Stat::Out);
                    self.actions.write.push(slot);
                    self.account(slot);
                } else if let Some(g) = d.grant {
                    self.orphans.push(g);
                }
            }
            for (name, token) in std::mem::take(&mut self.orphans) {
                if let Some(r) = &mut self.replica {
                    r.orphaned(name, token);
                    continue;
                }
                let Self {
                    engine, deliveries, ..
                } = self;
                engine.orphaned(now, &name, token, &mut |ev| {
                    deliveries.push(Delivery::of(&ev));
                });
            }
        }
    }
}

/// What a direct answer told a client about holding locks, if anything,
/// added to `told`.
fn record(
    slot: usize,
    command: &Command<'_>,
    r: &Response<'_>,
    at: Duration,
    told: &mut Vec<Told>,
) {
    if let (Command::LockAll { names, owner, .. }, Status::Locked, Some(tokens), Some(ttl)) =
        (command, r.status, r.tokens, r.expire)
    {
        for (name, token) in names.iter().zip(tokens.iter()) {
            told.push(Told::Locked {
                slot,
                name: name.to_owned(),
                owner: owner.0.to_owned(),
                token: token.0,
                ttl,
                at,
            });
        }
        return;
    }
    let one = match (command, r.status, r.token, r.expire, r.id) {
        (
            Command::Lock { name, owner, .. } | Command::Acquire { name, owner, .. },
            Status::Locked,
            Some(token),
            Some(ttl),
            _,
        ) => Some(Told::Locked {
            slot,
            name: name.0.to_owned(),
            owner: owner.0.to_owned(),
            token: token.0,
            ttl,
            at,
        }),
        (Command::Unlock { name, owner, .. }, Status::Unlocked, _, _, Some(_)) => {
            Some(Told::Released {
                name: name.0.to_owned(),
                owner: owner.0.to_owned(),
                at,
            })
        }
        _ => None,
    };
    told.extend(one);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        for (slot, generation, framing) in [
            (0, 0, Framing::Plain),
            (7, 3, Framing::Legacy),
            ((1 << 23) - 1, u32::MAX, Framing::Plain),
        ] {
            let t = tag(slot, generation, framing);
            assert_eq!(untag(t), (slot, generation, framing));
            let n = tag_node(t, 7);
            assert_eq!((untag(n), node_of(n)), ((slot, generation, framing), 7));
        }
    }
}
