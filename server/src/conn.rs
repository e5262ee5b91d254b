//! One connection's state without its socket: the input it sent that is
//! not yet answered ([`LineBuffer`]), the answers it has not read yet, the
//! answers held behind one of its queued lock requests, and how it is
//! ending.
//!
//! Nothing here reads a socket or a clock: the [host](crate::host) moves
//! bytes in and out and passes the time. Every buffer a client can make the
//! server hold is here, and [`Conn::charge`] counts it.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::Duration;

use dlm_core::engine::WaiterId;
use dlm_core::protocol::{Framing, Response};

/// Most bytes asked of one read.
pub const READ_CHUNK: usize = 64 * 1024;
/// Least room offered to one read.
pub const MIN_READ: usize = 4096;

/// The input of a connection: bytes received and not yet answered, split
/// into lines. Sans-I/O: the caller reads into [`space`](Self::space),
/// reports how much arrived with [`commit`](Self::commit), and takes
/// complete lines with [`next_line`](Self::next_line).
///
/// It never holds more than one line's limit (plus one byte, to see an
/// overrun): a line over the limit is reported as soon as it is certain,
/// before the rest of it is read.
#[derive(Debug, Default)]
pub struct LineBuffer {
    /// Initialised storage; `buf[start..filled]` is input not yet taken.
    buf: Vec<u8>,
    start: usize,
    filled: usize,
    /// `buf[start..scanned]` is known to hold no newline.
    scanned: usize,
}

/// What [`LineBuffer::next_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A complete line (without its `\n`) at this range of
    /// [`LineBuffer::bytes_mut`].
    Line(Range<usize>),
    /// No complete line yet.
    Partial,
    /// The line being received is longer than the limit.
    Overrun,
}

impl LineBuffer {
    /// Room to read into: at least [`MIN_READ`] bytes (more while a long
    /// line arrives, at most [`READ_CHUNK`]), never more than the line
    /// `limit` allows the buffer to hold. Moves unread input to the front
    /// first.
    pub fn space(&mut self, limit: usize) -> &mut [u8] {
        let want = self.prepare(limit);
        &mut self.buf[self.filled..self.filled + want]
    }

    /// Makes the room [`space`](Self::space) offers, so its storage can
    /// be accounted for before it is read into; returns its size.
    pub fn prepare(&mut self, limit: usize) -> usize {
        let want = self.want(limit);
        self.compact();
        if self.buf.len() < self.filled + want {
            self.buf.resize(self.filled + want, 0);
        }
        want
    }

    /// The room made by the last [`prepare`](Self::prepare).
    pub fn spare(&mut self, want: usize) -> &mut [u8] {
        let end = (self.filled + want).min(self.buf.len());
        &mut self.buf[self.filled..end]
    }

    /// How many bytes [`space`](Self::space) would offer.
    fn want(&self, limit: usize) -> usize {
        let pending = self.filled - self.start;
        let room = (limit + 1).saturating_sub(pending).clamp(1, READ_CHUNK);
        room.min(pending.max(MIN_READ))
    }

    /// The capacity [`space`](Self::space) would need, for the caller's
    /// memory accounting before it asks.
    pub fn capacity_needed(&self, limit: usize) -> usize {
        (self.filled - self.start + self.want(limit)).max(self.buf.capacity())
    }

    /// `n` bytes were read into the last [`space`](Self::space).
    pub fn commit(&mut self, n: usize) {
        self.filled = (self.filled + n).min(self.buf.len());
    }

    /// The next complete line, if any, taking it out of the buffer; or
    /// whether the line being received is over `limit`.
    pub fn next_line(&mut self, limit: usize) -> Next {
        let from = self.scanned.max(self.start);
        if let Some(i) = memchr::memchr(b'\n', &self.buf[from..self.filled]) {
            let end = from + i;
            let line = self.start..end;
            self.start = end + 1;
            self.scanned = self.start;
            if end - line.start > limit {
                return Next::Overrun;
            }
            return Next::Line(line);
        }
        self.scanned = self.filled;
        if self.filled - self.start > limit {
            Next::Overrun
        } else {
            Next::Partial
        }
    }

    /// The buffer's bytes, for parsing a line in place.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Bytes received and not yet taken as lines.
    pub fn pending(&self) -> usize {
        self.filled - self.start
    }

    /// Whether input not yet looked at for a newline is buffered.
    pub fn unscanned(&self) -> bool {
        self.scanned.max(self.start) < self.filled
    }

    /// Ends a last line that arrived without its newline.
    pub fn terminate(&mut self) {
        if self.filled > self.start {
            if self.buf.len() <= self.filled {
                self.buf.push(b'\n');
            } else {
                self.buf[self.filled] = b'\n';
            }
            self.filled += 1;
        }
    }

    /// Moves the unread input to the front, and gives back a big buffer
    /// once it is empty.
    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        self.buf.copy_within(self.start..self.filled, 0);
        self.scanned -= self.start.min(self.scanned);
        self.filled -= self.start;
        self.start = 0;
    }

    /// Frees storage beyond what the pending input needs.
    pub fn shrink(&mut self) {
        if self.pending() == 0 && self.buf.capacity() > READ_CHUNK {
            self.buf = Vec::new();
            self.start = 0;
            self.filled = 0;
            self.scanned = 0;
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Bytes of storage held.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

/// A place among a connection's answers that is not written yet.
#[derive(Debug)]
pub(crate) enum Held {
    /// A queued lock request's place.
    Waiting(WaiterId, Framing),
    /// The place of a request sent to the replicated log, answered when
    /// its entry applies (a cluster's leader), by its sequence number.
    Pending(u64, Framing),
    /// An answer ready to go once everything before it went.
    Ready(Vec<u8>),
}

/// How a connection is ending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Closing {
    /// Still serving.
    No,
    /// Write what is ready, then close.
    AfterFlush,
    /// An oversized line was answered: discard input until `until`, then
    /// close.
    Linger { until: Duration },
}

/// One connection, without its socket.
// Independent per-connection flags, not a state in disguise.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug)]
pub(crate) struct Conn {
    /// Slot generation: a waiter's tag names slot and generation, so a
    /// grant never reaches a later connection that reused the slot.
    pub(crate) generation: u32,
    pub(crate) input: LineBuffer,
    /// Answers ready to write, and how much of them was written.
    pub(crate) out: Vec<u8>,
    pub(crate) written: usize,
    /// Answers behind a queued waiter, in order, and their bytes.
    pub(crate) held: VecDeque<Held>,
    pub(crate) held_bytes: usize,
    /// When the current partial line began (or the connection opened,
    /// until its first line arrives).
    pub(crate) partial_since: Option<Duration>,
    /// When a write last could not complete.
    pub(crate) blocked_since: Option<Duration>,
    /// When the client last sent something or was answered.
    pub(crate) last_active: Duration,
    /// Reading stopped because too many answers wait.
    pub(crate) paused: bool,
    /// Reading stopped until connection memory frees up.
    pub(crate) starved: bool,
    /// The write side was shut down (after an overrun's answer went out).
    pub(crate) write_shut: bool,
    /// The client closed its end and the end of its input was read; the
    /// connection closes once what it sent is answered.
    pub(crate) peer_eof: bool,
    /// The client closed its write side (its input may not all be read
    /// yet): it cannot be waiting any more.
    pub(crate) hung_up: bool,
    /// Whether a deadline of this connection is in the heap (at most one
    /// is, so the heap never outgrows the connections).
    pub(crate) armed: bool,
    pub(crate) closing: Closing,
    /// Bytes thrown away while lingering.
    pub(crate) discarded: usize,
    /// What [`charge`](Self::charge) said when last accounted.
    pub(crate) charged: usize,
    /// What the transport holds for this connection beyond these buffers
    /// (TLS state and buffers), charged with them.
    pub(crate) transport_bytes: usize,
    /// The identity this connection's client certificate stands for.
    pub(crate) cert_identity: Option<Box<str>>,
    /// Requests carrying an identity are refused (plaintext connection,
    /// `--require-tls-for-identities`).
    pub(crate) identities_refused: bool,
}

impl Conn {
    pub(crate) fn new(generation: u32, now: Duration) -> Self {
        Self {
            generation,
            input: LineBuffer::default(),
            out: Vec::new(),
            written: 0,
            held: VecDeque::new(),
            held_bytes: 0,
            partial_since: Some(now),
            blocked_since: None,
            last_active: now,
            paused: false,
            starved: false,
            write_shut: false,
            peer_eof: false,
            hung_up: false,
            armed: false,
            closing: Closing::No,
            discarded: 0,
            charged: 0,
            transport_bytes: 0,
            cert_identity: None,
            identities_refused: false,
        }
    }

    /// Bytes this connection makes the server hold: its buffers'
    /// storage, the answers held behind a waiter, and its own record.
    pub(crate) fn charge(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.transport_bytes
            + self.input.capacity()
            + self.out.capacity()
            + self.held_bytes
            + self.held.capacity() * std::mem::size_of::<Held>()
    }

    /// Queues an answer in request order: written next, or held behind a
    /// waiter.
    pub(crate) fn emit(&mut self, response: &Response<'_>, framing: Framing) {
        // Writing to a Vec cannot fail.
        if self.held.is_empty() {
            let _ = response.write(framing, &mut self.out);
        } else {
            let mut line = Vec::new();
            let _ = response.write(framing, &mut line);
            self.hold(line);
        }
    }

    fn hold(&mut self, line: Vec<u8>) {
        self.held_bytes += line.capacity();
        self.held.push_back(Held::Ready(line));
    }

    /// Puts a waiter's answer in its place; false if it has none.
    pub(crate) fn fill(&mut self, waiter: WaiterId, line: Vec<u8>) -> bool {
        self.resolve(|h| matches!(h, Held::Waiting(w, _) if *w == waiter), line)
    }

    /// Puts the answer of logged request `seq` in its place; false if it
    /// has none.
    pub(crate) fn fill_pending(&mut self, seq: u64, line: Vec<u8>) -> bool {
        self.resolve(|h| matches!(h, Held::Pending(s, _) if *s == seq), line)
    }

    /// The logged request `seq` queued as `waiter`: its place now waits
    /// for the grant. False if it has no place (the connection moved on).
    pub(crate) fn pending_queued(&mut self, seq: u64, waiter: WaiterId) -> bool {
        let Some(h) = self
            .held
            .iter_mut()
            .find(|h| matches!(h, Held::Pending(s, _) if *s == seq))
        else {
            return false;
        };
        if let Held::Pending(_, framing) = *h {
            *h = Held::Waiting(waiter, framing);
        }
        true
    }

    /// The framing of logged request `seq`'s place, if it has one.
    pub(crate) fn pending_framing(&self, seq: u64) -> Option<Framing> {
        self.held.iter().find_map(|h| match h {
            Held::Pending(s, f) if *s == seq => Some(*f),
            _ => None,
        })
    }

    fn resolve(&mut self, find: impl Fn(&Held) -> bool, line: Vec<u8>) -> bool {
        let Some(slot) = self.held.iter_mut().find(|h| find(h)) else {
            return false;
        };
        self.held_bytes += line.capacity();
        *slot = Held::Ready(line);
        while let Some(Held::Ready(_)) = self.held.front() {
            if let Some(Held::Ready(line)) = self.held.pop_front() {
                self.held_bytes -= line.capacity();
                self.out.extend_from_slice(&line);
            }
        }
        if self.held.is_empty() && self.held.capacity() > 64 {
            self.held = VecDeque::new();
        }
        true
    }

    /// Takes every held entry out, returning the waiters among them.
    pub(crate) fn take_held(&mut self) -> Vec<(WaiterId, Framing)> {
        self.held_bytes = 0;
        std::mem::take(&mut self.held)
            .into_iter()
            .filter_map(|h| match h {
                Held::Waiting(w, f) => Some((w, f)),
                Held::Pending(..) | Held::Ready(_) => None,
            })
            .collect()
    }

    pub(crate) fn pending_output(&self) -> bool {
        self.written < self.out.len()
    }

    /// Answers written but not yet read by the client, or held.
    pub(crate) fn backlog_bytes(&self) -> usize {
        self.out.len() - self.written + self.held_bytes
    }

    /// Nothing in flight either way: no partial line, no answer to write
    /// or hold, no queued request. Such a connection may be evicted.
    pub(crate) fn idle(&self) -> bool {
        self.closing == Closing::No
            && self.input.pending() == 0
            && !self.pending_output()
            && self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lb: &mut LineBuffer, limit: usize, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let space = lb.space(limit);
            let n = space.len().min(rest.len());
            space[..n].copy_from_slice(&rest[..n]);
            lb.commit(n);
            rest = &rest[n..];
        }
    }

    fn lines(lb: &mut LineBuffer, limit: usize) -> (Vec<Vec<u8>>, Next) {
        let mut out = Vec::new();
        loop {
            match lb.next_line(limit) {
                Next::Line(r) => out.push(lb.bytes_mut()[r].to_vec()),
                other => return (out, other),
            }
        }
    }

    #[test]
    fn splits_lines_across_reads() {
        let mut lb = LineBuffer::default();
        feed(&mut lb, 100, b"ab");
        assert_eq!(lines(&mut lb, 100), (vec![], Next::Partial));
        feed(&mut lb, 100, b"c\nde\n\nf");
        assert_eq!(
            lines(&mut lb, 100),
            (
                vec![b"abc".to_vec(), b"de".to_vec(), b"".to_vec()],
                Next::Partial
            )
        );
        assert_eq!(lb.pending(), 1);
        lb.terminate();
        assert_eq!(lines(&mut lb, 100), (vec![b"f".to_vec()], Next::Partial));
        assert_eq!(lb.pending(), 0);
    }

    #[test]
    fn never_holds_more_than_a_line_and_sees_the_overrun_early() {
        let mut lb = LineBuffer::default();
        let limit = 10_000;
        let mut sent = 0;
        loop {
            let space = lb.space(limit);
            let n = space.len();
            space.fill(b'x');
            lb.commit(n);
            sent += n;
            assert!(lb.pending() <= limit + 1, "holds {}", lb.pending());
            match lb.next_line(limit) {
                Next::Partial => {}
                Next::Overrun => break,
                Next::Line(_) => panic!("no newline was sent"),
            }
        }
        assert_eq!(sent, limit + 1);
    }

    #[test]
    fn a_complete_line_over_the_limit_is_an_overrun() {
        let mut lb = LineBuffer::default();
        feed(&mut lb, 5, b"123456\n");
        assert_eq!(lb.next_line(5), Next::Overrun);
        let mut lb = LineBuffer::default();
        feed(&mut lb, 5, b"12345\n");
        assert_eq!(lb.next_line(5), Next::Line(0..5));
    }

    #[test]
    fn big_buffers_are_given_back() {
        let mut lb = LineBuffer::default();
        let line = vec![b'y'; 200_000];
        feed(&mut lb, 1 << 20, &line);
        feed(&mut lb, 1 << 20, b"\n");
        assert!(matches!(lb.next_line(1 << 20), Next::Line(_)));
        assert!(lb.capacity() > READ_CHUNK);
        lb.shrink();
        assert_eq!(lb.capacity(), 0);
    }

    #[test]
    fn held_answers_are_counted_and_released_in_order() {
        use dlm_core::engine::{Config, Engine, Outcome, Principal};
        use dlm_core::protocol::{Command, Owner, Resource};
        use dlm_core::time::{Instant, Ttl};
        let mut engine = Engine::new(Config::default());
        let lock = |owner| Command::Lock {
            name: Resource("l"),
            owner: Owner(owner),
            ttl: Ttl::from_secs(1),
            wait: Some(Ttl::from_secs(1)),
            token: None,
        };
        let mut sink = |_: dlm_core::engine::Event<'_>| {};
        engine.handle(
            Instant::ZERO,
            &lock("a"),
            Principal::Anonymous,
            0,
            &mut sink,
        );
        let Outcome::Queued(w) = engine.handle(
            Instant::ZERO,
            &lock("b"),
            Principal::Anonymous,
            0,
            &mut sink,
        ) else {
            panic!("b should queue");
        };
        let mut c = Conn::new(1, Duration::ZERO);
        c.held.push_back(Held::Waiting(w, Framing::Plain));
        c.emit(
            &Response::new(dlm_core::protocol::Status::Done),
            Framing::Plain,
        );
        assert!(c.held_bytes > 0);
        assert!(!c.pending_output());
        assert!(c.fill(w, b"first\n".to_vec()));
        assert_eq!(c.held_bytes, 0);
        assert!(c.out.starts_with(b"first\n"));
        assert!(c.out.ends_with(b"\"Done\"}\n"));
    }
}
