//! dlm-core's failover machine ([`Machine`]) for the package, with its
//! calls in a [`Table`] under number handles, so that driving it from
//! JavaScript crosses numbers (and, on a connection, one address string),
//! never objects made per request.
//!
//! ```text
//!   index.js                              Failover (one per client)
//!   ────────                              ─────────────────────────
//!   link.put(fo, now, ..) ──────────────▶ start: classify, RequestID, deadline ─▶ call handle
//!                                          (the line as sent is kept for a resend;
//!                                          the deadline left in `out` for the package)
//!   fo.pollConnect(call, now) ──────────▶ -1: connect to fo.address (fo.connectEpoch,
//!                                          within fo.withinMs) | instant to sleep until | throws
//!   fo.connected(epoch) ────────────────▶ ask the new connection for the cluster first?
//!   link.readDiscovery(fo, call, ..) ───▶ discovered(view): use it, or go to the leader
//!   link.answered(fo, call, epoch, now) ▶ Answered (read it) | Refused (send again) | throws
//!   link.answerGrant(fo, call, ..) ─────▶ the same and the read in one call; which it
//!                                          was is left in `out` (the fast path)
//!   fo.handle(call, epoch, outcome, now) ▶ NotSent / Closed / TimedOut / ConnectFailed:
//!                                          true: send again (link.resend) | throws
//! ```
//!
//! Every rule (where to go, the backoff, what may be sent again, the
//! deadline, the give-up) is the machine's; this module only keeps each
//! call with the bytes it was sent as, so that a resend is the same
//! request: the same `RequestID`, a lock's wait cut to what is left.
//! A call leaves the table when it is over: answered, given up (the error
//! is returned), or ended by the package ([`Failover::end`]).

use dlm_core::client::failover::{
    Call, ClusterView, Config, Failover as Machine, Outcome, Refusal, ServerList, Step, Verdict,
};
use dlm_core::client::{ErrorKind, Pending};
use dlm_core::limits::{Limits, NAME_CEILING, TTL_CEILING};
use dlm_core::protocol::{Request, Response, Status};
use dlm_core::time::Ttl;

use crate::error::Error;
use crate::table::Table;
use crate::wire::{self, instant, millis, to_js_instant, to_js_millis};

/// What a resent request is read back with: the line is this client's own,
/// so only what the protocol can represent bounds it.
const RESEND_LIMITS: Limits = Limits {
    max_line: usize::MAX,
    max_name: NAME_CEILING,
    max_id: NAME_CEILING,
    max_data_anonymous: usize::MAX,
    max_ttl_anonymous: TTL_CEILING,
    max_ttl: TTL_CEILING,
};

/// Spare line buffers kept for new calls.
const SPARE: usize = 64;
/// Spare buffers keep at most this much room.
const SPARE_ROOM: usize = 64 << 10;

/// What the package reports of an attempt, as a number.
pub mod outcome {
    /// Connecting failed.
    pub const CONNECT_FAILED: u8 = 0;
    /// The connection failed before the request was written.
    pub const NOT_SENT: u8 = 1;
    /// The connection failed after the request was written.
    pub const CLOSED: u8 = 2;
    /// No answer within the call's time.
    pub const TIMED_OUT: u8 = 3;
}

/// What the package does with a new connection after the discovery
/// answer, as a number.
pub mod discovery {
    /// Use it for the calls.
    pub const USE: u8 = 0;
    /// Close it and ask `pollConnect` again (the leader is elsewhere, or
    /// the server may close it after refusing the question).
    pub const AGAIN: u8 = 1;
}

/// What the package reads of the last call besides its result, from
/// [`Failover::out`]: numbers that would otherwise cost a call each.
pub mod out {
    /// The deadline of the call the last request started
    /// (`performance.now()` milliseconds): what `deadlineMs` would say.
    pub const DEADLINE: usize = 0;
    /// What became of the last answer a fused reader was given
    /// (`Link::answer_*`): one of [`super::answer`].
    pub const ANSWER: usize = 1;
    /// How many numbers there are.
    pub const LEN: usize = 2;
}

/// What became of an answer given to a fused reader, in
/// [`out::ANSWER`].
pub mod answer {
    /// It was the call's, and was read (the result, or the reader's error).
    pub const READ: f64 = 0.0;
    /// A member refused it: skipped, the call is to be sent again.
    pub const REFUSED: f64 = 1.0;
    /// The call gave up (the error is the failover's), or there was no
    /// answer to give it.
    pub const GAVE_UP: f64 = 2.0;
}

/// One call in flight: the machine's state of it, and its line as sent.
#[derive(Debug)]
struct Entry {
    call: Call,
    line: Vec<u8>,
}

/// The failover of one client and its calls.
#[derive(Debug)]
pub struct Failover {
    machine: Machine,
    timeout: Ttl,
    calls: Table<Entry>,
    spare: Vec<Vec<u8>>,
    scratch: Vec<u8>,
    /// The last `Step::Connect`.
    address: String,
    connect_epoch: u64,
    within: Ttl,
    /// See [`out`]; boxed, so its address stays put for the package's
    /// view of it.
    out: Box<[f64; out::LEN]>,
}

impl Failover {
    /// The failover over `servers` (`"host:port"` or `"host:port,..."`, the
    /// syntax of `DLM_SERVER`): calls are over by `timeout_ms` (plus a
    /// lock's wait), give up after `connect_attempts` failed connections
    /// per server, and ask new connections who leads if `discover`.
    /// `seed` is 16 random bytes (jitter, request IDs).
    pub fn new(
        servers: &str,
        timeout_ms: f64,
        connect_attempts: u32,
        discover: bool,
        seed: &[u8],
    ) -> Result<Self, Error> {
        let servers = ServerList::parse(servers)?;
        let timeout = millis("timeoutMs", timeout_ms, false)?;
        let seed: [u8; 16] = seed
            .try_into()
            .map_err(|_| Error::invalid("a failover seed is 16 bytes"))?;
        let config = Config {
            connect_rounds: connect_attempts.max(1),
            discover,
            ..Config::DEFAULT
        };
        Ok(Self {
            machine: Machine::new(servers, config, seed),
            timeout,
            calls: Table::new(),
            spare: Vec::new(),
            scratch: Vec::new(),
            address: String::new(),
            connect_epoch: 0,
            within: Ttl::ZERO,
            out: Box::new([0.0; out::LEN]),
        })
    }

    /// The numbers the last call left besides its result (see [`out`]).
    /// They stay at this address for the failover's life, so the package
    /// reads them through a view of WebAssembly memory, with no call.
    pub fn out(&self) -> &[f64; out::LEN] {
        &self.out
    }

    /// Says what became of the answer a fused reader was given.
    pub(crate) fn set_answer(&mut self, what: f64) {
        self.out[out::ANSWER] = what;
    }

    /// The server in use (`host:port`), for logs.
    pub fn server(&self) -> &str {
        self.machine.server()
    }

    /// Every server known: those given, then the members learned.
    pub fn servers(&self) -> Vec<String> {
        self.machine.servers().map(String::from).collect()
    }

    /// The current epoch: a connection made at another is to a server no
    /// longer in use.
    pub fn epoch(&self) -> u64 {
        self.machine.epoch()
    }

    /// How many calls are in flight.
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Starts the call of `req` at `now_ms`, writes its first attempt to
    /// `out` and keeps the line for a resend; returns the call's handle.
    /// `lease`: the request is a lease's (a release gets its grant's
    /// request ID; an extension ends by the lease's deadline).
    pub fn start(
        &mut self,
        req: &Request<'_>,
        lease: Option<&Pending>,
        now_ms: f64,
        out: &mut Vec<u8>,
    ) -> Result<f64, Error> {
        let now = instant(now_ms);
        let mut call = match lease {
            Some(p) if p.deadline().is_none() => self.machine.start_release(req, now, self.timeout),
            _ => self.machine.start(req, now, self.timeout),
        };
        if let Some(at) = lease.and_then(Pending::deadline) {
            call.limit(at);
        }
        let start = out.len();
        wire::write(&call.request(*req, now), out);
        let mut line = self.spare.pop().unwrap_or_default();
        line.extend_from_slice(out.get(start..).unwrap_or_default());
        let deadline = to_js_instant(call.deadline());
        match self.calls.insert(Entry { call, line }) {
            Ok(handle) => {
                self.out[out::DEADLINE] = deadline;
                Ok(handle)
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// Starts a call that only connects (and discovers), over by the
    /// timeout: for a client that opens a connection up front.
    pub fn start_connect(&mut self, now_ms: f64) -> Result<f64, Error> {
        let call = self.machine.start_connect(instant(now_ms), self.timeout);
        self.calls.insert(Entry {
            call,
            line: Vec::new(),
        })
    }

    /// Writes call `handle`'s request again to `out`, as an attempt at
    /// `now_ms` sends it (the same request ID, a lock's wait cut to what
    /// is left).
    pub fn resend(&mut self, handle: f64, now_ms: f64, out: &mut Vec<u8>) -> Result<(), Error> {
        let entry = self.calls.get(handle).ok_or_else(no_call)?;
        self.scratch.clear();
        self.scratch.extend_from_slice(&entry.line);
        let req = Request::parse(&mut self.scratch, &RESEND_LIMITS)
            .map_err(|_| Error::new(ErrorKind::Protocol, "a call's request does not read back"))?;
        wire::write(&entry.call.request(req, instant(now_ms)), out);
        Ok(())
    }

    /// What to do to get a connection for call `handle` at `now_ms`: -1 to
    /// connect to [`address`](Self::address) within
    /// [`within_ms`](Self::within_ms) (the connection belongs to
    /// [`connect_epoch`](Self::connect_epoch)), or the instant to sleep
    /// until. Giving up is the error (`Unavailable`); the call is over.
    pub fn poll_connect(&mut self, handle: f64, now_ms: f64) -> Result<f64, Error> {
        let entry = self.calls.get_mut(handle).ok_or_else(no_call)?;
        let step = match self.machine.poll_connect(&mut entry.call, instant(now_ms)) {
            Step::Connect {
                addr,
                epoch,
                within,
            } => {
                self.address.clear();
                self.address.push_str(addr);
                self.connect_epoch = epoch;
                self.within = within;
                Ok(-1.0)
            }
            Step::Wait(at) => Ok(to_js_instant(at)),
            Step::GiveUp(e) => Err(Error::from(e)),
        };
        if step.is_err() {
            self.end(handle);
        }
        step
    }

    /// Where the last `poll_connect` said to connect.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The epoch of the last `poll_connect`'s connection.
    pub fn connect_epoch(&self) -> u64 {
        self.connect_epoch
    }

    /// The most the last `poll_connect`'s connection may take.
    pub fn within_ms(&self) -> f64 {
        to_js_millis(self.within)
    }

    /// A connection of `epoch` is up: whether to ask it for the cluster
    /// first ([`Writer::cluster`](crate::wire::Writer::cluster), then
    /// [`discovered`](Self::discovered)).
    pub fn connected(&mut self, epoch: u64) -> bool {
        self.machine.connected(epoch)
    }

    /// The answer `line` to the discovery question on a connection of
    /// `epoch`, for call `handle`: [`discovery::USE`] or
    /// [`discovery::AGAIN`]; a refusal that gives up is the error.
    pub fn discovered(
        &mut self,
        handle: f64,
        epoch: u64,
        now_ms: f64,
        line: &mut [u8],
    ) -> Result<u8, Error> {
        let Ok((_, r)) = Response::parse(line) else {
            // Not an answer a dlm server gives: no view.
            self.machine.discovered(epoch, None);
            return Ok(discovery::AGAIN);
        };
        if let Some(refusal) = Refusal::of(&r) {
            return self
                .verdict(handle, epoch, Outcome::Refused(refusal), now_ms)
                .map(|()| discovery::AGAIN);
        }
        let view = match (r.status, r.cluster) {
            (Status::Done, Some(text)) => ClusterView::parse(text).ok(),
            _ => None,
        };
        let stay = self.machine.discovered(epoch, view.as_ref());
        // A server without the action may close the connection after
        // refusing it: a fresh one, now that it will not be asked again.
        Ok(if stay && view.is_some() {
            discovery::USE
        } else {
            discovery::AGAIN
        })
    }

    /// The answer `line` arrived for call `handle` on a connection of
    /// `epoch`: true if it is the call's to read (the call is over), false
    /// if a member refused it and it is to be sent again; the error if the
    /// call gives up.
    pub fn answered(
        &mut self,
        handle: f64,
        epoch: u64,
        now_ms: f64,
        line: &[u8],
    ) -> Result<bool, Error> {
        match Refusal::of_line(line) {
            Some(refusal) => self
                .verdict(handle, epoch, Outcome::Refused(refusal), now_ms)
                .map(|()| false),
            None => {
                let entry = self.calls.get_mut(handle).ok_or_else(no_call)?;
                self.machine
                    .handle(&mut entry.call, epoch, Outcome::Answered, instant(now_ms));
                self.end(handle);
                Ok(true)
            }
        }
    }

    /// An attempt of call `handle` on a connection of `epoch` failed with
    /// `outcome` ([`outcome`]): `Ok` to send it again, the error if the
    /// call gives up (it is over).
    pub fn handle(
        &mut self,
        handle: f64,
        epoch: u64,
        outcome: u8,
        now_ms: f64,
    ) -> Result<(), Error> {
        let outcome = match outcome {
            outcome::CONNECT_FAILED => Outcome::ConnectFailed,
            outcome::NOT_SENT => Outcome::NotSent,
            outcome::CLOSED => Outcome::Closed,
            outcome::TIMED_OUT => Outcome::TimedOut,
            _ => return Err(Error::invalid("no such outcome")),
        };
        self.verdict(handle, epoch, outcome, now_ms)
    }

    fn verdict(
        &mut self,
        handle: f64,
        epoch: u64,
        outcome: Outcome,
        now_ms: f64,
    ) -> Result<(), Error> {
        let entry = self.calls.get_mut(handle).ok_or_else(no_call)?;
        match self
            .machine
            .handle(&mut entry.call, epoch, outcome, instant(now_ms))
        {
            Verdict::Retry => Ok(()),
            Verdict::Accept => {
                self.end(handle);
                Ok(())
            }
            Verdict::GiveUp(e) => {
                self.end(handle);
                Err(Error::from(e))
            }
        }
    }

    /// When call `handle` must be over (`performance.now()` milliseconds);
    /// 0 for a call that is over.
    pub fn deadline_ms(&self, handle: f64) -> f64 {
        self.calls
            .get(handle)
            .map_or(0.0, |e| to_js_instant(e.call.deadline()))
    }

    /// Ends call `handle` without an answer (cancelled, or its client
    /// closed); whether it was in flight.
    pub fn end(&mut self, handle: f64) -> bool {
        let Some(Entry { mut line, .. }) = self.calls.take(handle) else {
            return false;
        };
        if self.spare.len() < SPARE && line.capacity() <= SPARE_ROOM {
            line.clear();
            self.spare.push(line);
        }
        true
    }
}

fn no_call() -> Error {
    Error::new(ErrorKind::Protocol, "no such call in flight")
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // whole milliseconds
mod tests {
    use super::*;
    use crate::link::Link;
    use crate::wire::Writer;

    fn failover(servers: &str) -> Failover {
        Failover::new(servers, 1000.0, 3, true, &[7; 16]).unwrap()
    }

    fn text(out: &[u8]) -> String {
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn a_resend_is_the_same_request_with_the_wait_that_is_left() {
        let mut fo = failover("127.0.0.1:1");
        let mut link = Link::new(Writer::new("me".into(), false, None).unwrap());
        let put = link
            .put_table(&mut fo, 100.0, "K", 5000.0, b"v", None, None)
            .unwrap();
        let first = text(link.output());
        assert!(first.contains("\"RequestID\":"), "{first}");
        link.clear_output();
        link.resend(&mut fo, put, 400.0).unwrap();
        assert_eq!(text(link.output()), first, "the same ID: applied once");
        link.clear_output();

        let lock = link.lock(&mut fo, 100.0, "L", 5000.0, 2000.0, 0.0).unwrap();
        assert!(text(link.output()).contains("\"Wait\":2"));
        assert_eq!(fo.deadline_ms(lock), 100.0 + 2000.0 + 1000.0);
        link.clear_output();
        link.resend(&mut fo, lock, 1600.0).unwrap();
        let again = text(link.output());
        assert!(again.contains("\"Wait\":0.5"), "{again}");
        assert!(!again.contains("RequestID"), "a lock needs none: {again}");
        assert_eq!(fo.calls(), 2);
        assert!(fo.end(put) && fo.end(lock));
        assert!(!fo.end(put));
        assert_eq!(
            fo.resend(put, 0.0, &mut Vec::new()).unwrap_err().code(),
            "Protocol"
        );
    }

    #[test]
    fn refusals_are_sent_again_and_closed_writes_only_if_the_machine_allows() {
        let mut fo = failover("127.0.0.1:1,127.0.0.1:2");
        let mut link = Link::new(Writer::new("me".into(), true, None).unwrap());
        // Legacy framing: no request IDs, so a Put that may have been
        // applied is not sent again.
        let put = link
            .put(&mut fo, 0.0, "K", 5000.0, "v", None, None)
            .unwrap();
        assert_eq!(fo.poll_connect(put, 0.0), Ok(-1.0));
        assert_eq!(fo.address(), "127.0.0.1:1");
        let epoch = fo.connect_epoch();
        let err = fo.handle(put, epoch, outcome::CLOSED, 10.0).unwrap_err();
        assert_eq!(err.code(), "Unavailable");
        assert_eq!(fo.calls(), 0, "a call that gave up is over");
        assert_eq!(fo.server(), "127.0.0.1:2", "the next member");

        // A read is: a member's refusal sends it again, an answer ends it.
        let get = link.get(&mut fo, 20.0, "K").unwrap();
        assert_eq!(fo.poll_connect(get, 20.0), Ok(-1.0));
        let epoch = fo.connect_epoch();
        link.feed(b"{\"Status\":\"NO\",\"Error\":\"no leader\"}\n{\"Status\":\"Done\"}\n")
            .unwrap();
        assert_eq!(link.answered(&mut fo, get, epoch, 30.0), Ok(false));
        assert_eq!(link.answered(&mut fo, get, epoch, 40.0), Ok(true));
        assert_eq!(fo.calls(), 0);
        // Past its deadline, a call gives up with Unavailable.
        let get = link.get(&mut fo, 50.0, "K").unwrap();
        let err = fo.poll_connect(get, 5000.0).unwrap_err();
        assert_eq!(err.code(), "Unavailable");
        assert_eq!(fo.calls(), 0);
        assert!(Failover::new("nonsense", 1.0, 1, true, &[0; 16]).is_err());
    }

    #[test]
    fn the_fast_path_leaves_the_deadline_and_what_became_of_the_answer() {
        let mut fo = failover("127.0.0.1:1,127.0.0.1:2");
        let mut link = Link::new(Writer::new("me".into(), false, None).unwrap());
        let get = link.get(&mut fo, 100.0, "K").unwrap();
        assert_eq!(fo.out()[out::DEADLINE], fo.deadline_ms(get));
        assert_eq!(fo.out()[out::DEADLINE], 1100.0);
        let lock = link.lock(&mut fo, 200.0, "L", 5000.0, 2000.0, 0.0).unwrap();
        assert_eq!(fo.out()[out::DEADLINE], fo.deadline_ms(lock));
        assert_eq!(fo.poll_connect(get, 200.0), Ok(-1.0));
        let epoch = fo.connect_epoch();

        // A member's refusal: skipped, not read, the call goes on.
        link.feed(b"{\"Status\":\"NO\",\"Error\":\"no leader\"}\n{\"Status\":\"Done\"}\n")
            .unwrap();
        let read = link.answer(&mut fo, get, epoch, 300.0, |_| Ok(7));
        assert_eq!(read, Ok(None));
        assert_eq!(fo.out()[out::ANSWER], answer::REFUSED);
        assert_eq!(fo.calls(), 2);
        // The call's answer: read, the call over.
        let read = link.answer(&mut fo, get, epoch, 400.0, |l| {
            l.next_line().map(|l| l.len())
        });
        assert_eq!(read, Ok(Some(17)));
        assert_eq!(fo.out()[out::ANSWER], answer::READ);
        assert_eq!(fo.calls(), 1);
        // No answer to give it, or a call that is over: the failover's error.
        let err = link
            .answer(&mut fo, lock, epoch, 500.0, |_| Ok(()))
            .unwrap_err();
        assert_eq!(err.code(), "Protocol");
        assert_eq!(fo.out()[out::ANSWER], answer::GAVE_UP);
        link.feed(b"{\"Status\":\"Done\"}\n").unwrap();
        let err = link
            .answer(&mut fo, get, epoch, 500.0, |_| Ok(()))
            .unwrap_err();
        assert_eq!(err.code(), "Protocol");
        assert_eq!(fo.out()[out::ANSWER], answer::GAVE_UP);
        // The reader's own error is the reader's.
        let err = link
            .answer(&mut fo, lock, epoch, 600.0, |_| -> Result<(), Error> {
                Err(Error::invalid("no"))
            })
            .unwrap_err();
        assert_eq!(err.code(), "InvalidArgument");
        assert_eq!(fo.out()[out::ANSWER], answer::READ);
    }

    #[test]
    fn discovery_goes_to_the_leader() {
        let mut fo = failover("127.0.0.1:1");
        let mut link = Link::new(Writer::new("me".into(), false, None).unwrap());
        let call = link.version(&mut fo, 0.0).unwrap();
        assert_eq!(fo.poll_connect(call, 0.0), Ok(-1.0));
        let epoch = fo.connect_epoch();
        assert!(fo.connected(epoch));
        link.feed(
            br#"{"Status":"Done","Cluster":{"Node":1,"Leader":2,"Term":3,"Members":[{"ID":1,"Client":"127.0.0.1:1"},{"ID":2,"Client":"127.0.0.1:2"}]}}
"#,
        )
        .unwrap();
        assert_eq!(
            link.read_discovery(&mut fo, call, epoch, 1.0),
            Ok(discovery::AGAIN)
        );
        assert_eq!(fo.server(), "127.0.0.1:2");
        assert_eq!(fo.servers(), ["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(fo.poll_connect(call, 2.0), Ok(-1.0));
        assert_eq!(fo.address(), "127.0.0.1:2");
    }
}
