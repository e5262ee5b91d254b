//! From a request line to its answer: parse, authenticate, apply to the
//! engine; and placing the answers the engine gives waiters on the way
//! (a grant goes to the connection that queued, in its place among that
//! connection's answers), taking back a grant whose client is gone.

use dlm_core::engine::{Event, Outcome, Principal, WaiterId};
use dlm_core::protocol::{Framing, Request, RequestError, Response, Status, Token};
use dlm_core::stats::Stat;
use dlm_core::time::Instant;
use tracing::debug;

use crate::conn::Held;
use crate::host::{Host, Peers};

/// A waiter's answer, owned, for placing after the engine call.
#[derive(Debug)]
pub(crate) struct Delivery {
    tag: u64,
    waiter: WaiterId,
    line: Vec<u8>,
    /// The lock and token, if the answer is a grant.
    grant: Option<(String, Token)>,
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
        Self {
            tag: ev.tag,
            waiter: ev.waiter,
            line,
            grant,
        }
    }
}

/// Encodes a connection slot, its generation and the framing into the
/// engine's waiter tag.
pub(crate) fn tag(slot: usize, generation: u32, framing: Framing) -> u64 {
    (slot as u64) << 33 | u64::from(generation) << 1 | u64::from(framing == Framing::Legacy)
}

#[allow(clippy::cast_possible_truncation)]
pub(crate) fn untag(tag: u64) -> (usize, u32, Framing) {
    let framing = if tag & 1 == 1 {
        Framing::Legacy
    } else {
        Framing::Plain
    };
    ((tag >> 33) as usize, (tag >> 1) as u32, framing)
}

impl Host {
    /// Parses, authenticates and applies one line of connection `slot`;
    /// its answer goes to the connection's output, waiters' answers to
    /// theirs.
    pub(crate) fn handle_line(
        &mut self,
        slot: usize,
        generation: u32,
        now: Instant,
        line: &mut [u8],
        peers: &dyn Peers,
    ) {
        let Self {
            engine,
            conns,
            identities,
            limits,
            deliveries,
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
        let principal = match req.credentials {
            None => Principal::Anonymous,
            Some(c) => {
                if let Some(id) = identities.verify(c.name, c.secret) {
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
        let mut sink = |ev: Event<'_>| deliveries.push(Delivery::of(&ev));
        let waiter_tag = tag(slot, generation, framing);
        match engine.handle(now, &req.command, principal, waiter_tag, &mut sink) {
            Outcome::Reply(r) => {
                conn.emit(&r, framing);
                engine.stats_mut().incr(Stat::Out);
            }
            Outcome::Queued(w) => conn.held.push_back(Held::Waiting(w, framing)),
        }
        if !self.deliveries.is_empty() {
            self.place_deliveries(now, peers);
        }
    }

    /// Puts waiters' answers into their connections. A grant whose client
    /// is gone (or has closed its end) is taken back, which may hand the
    /// lock to the next waiter, whose answer is placed next.
    pub(crate) fn place_deliveries(&mut self, now: Instant, peers: &dyn Peers) {
        while !self.deliveries.is_empty() {
            for d in std::mem::take(&mut self.deliveries) {
                let (slot, generation, _) = untag(d.tag);
                let live = self
                    .conn(slot)
                    .filter(|c| c.generation == generation)
                    .map(|c| c.peer_eof);
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
                if placed {
                    self.engine.stats_mut().incr(Stat::Out);
                    self.actions.write.push(slot);
                    self.account(slot);
                } else if let Some(g) = d.grant {
                    self.orphans.push(g);
                }
            }
            for (name, token) in std::mem::take(&mut self.orphans) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        for (slot, generation, framing) in [
            (0, 0, Framing::Plain),
            (7, 3, Framing::Legacy),
            (1 << 30, u32::MAX, Framing::Plain),
        ] {
            assert_eq!(
                untag(tag(slot, generation, framing)),
                (slot, generation, framing)
            );
        }
    }
}
