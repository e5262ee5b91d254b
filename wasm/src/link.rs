//! One connection's bytes, both ways, kept in WebAssembly memory so that a
//! call crosses into JavaScript as little as possible.
//!
//! ```text
//!  requests: link.put(..) ─┐
//!            link.get(..) ─┼─▶ out ──a few times a turn──▶ socket.write
//!      link.lease_request ─┘
//!  answers:  socket 'data' ──feed(chunk): n complete lines──▶ input
//!            input ──read_stored() / read_fetched() / read_grant() ..., one line each──▶ plain values
//! ```
//!
//! Requests are appended to one output buffer, which the package takes
//! and writes a few times a turn of the event loop (one system call for
//! many requests: once as many wait as are in flight, and at the turn's
//! end). Answers are fed in as chunks arrive; `feed`
//! says how many complete lines there are, and each `read_*` reads the
//! oldest one as the answer to its kind of request, in place, returning
//! the result as numbers or bytes (a `Get`'s value already decoded) and
//! keeping what else the answer said (revision, token, TTL) for the
//! getters. No per-answer objects, no text decoded that nobody asked for.
//!
//! Nothing here touches JavaScript: `bindings` exports it, and the host
//! tests run it through dlm-core's engine.

use dlm_core::client::ErrorKind;
use dlm_core::time::Ttl;

use crate::error::Error;
use crate::failover::{Failover, answer};
use crate::wire::{
    self, Acquisition, AcquisitionAll, Decode, Fetched, Lease, LockState, Sealer, Writer,
};

/// The longest answer line accepted from a server, in bytes.
pub const MAX_ANSWER: usize = 64 << 20;

/// Buffers keep at most this much room once emptied, so one large value
/// does not pin its size in memory for the connection's life.
const KEEP: usize = 64 << 10;

/// Empties `v`, keeping its room up to [`KEEP`].
fn empty(v: &mut Vec<u8>) {
    v.clear();
    if v.capacity() > KEEP {
        v.shrink_to(KEEP);
    }
}

/// One connection's request and answer buffers, for one owner.
#[derive(Debug)]
pub struct Link {
    writer: Writer,
    /// Requests not yet taken for the socket.
    out: Vec<u8>,
    /// Received bytes; `input[read..]` is not yet read.
    input: Vec<u8>,
    read: usize,
    /// Where the incomplete line at the end of `input` starts.
    partial: usize,
    /// The longest answer accepted ([`MAX_ANSWER`]).
    max_answer: usize,
    /// Encoded values, reused.
    text: String,
    /// What the last answer said besides its result.
    revision: u64,
    token: Option<u64>,
    ttl: Option<Ttl>,
    /// The owner the last `Get` named, if the server said.
    owner: Option<String>,
}

impl Link {
    /// A link for `writer`'s owner.
    pub fn new(writer: Writer) -> Self {
        Self {
            writer,
            out: Vec::new(),
            input: Vec::new(),
            read: 0,
            partial: 0,
            max_answer: MAX_ANSWER,
            text: String::new(),
            revision: 0,
            token: None,
            ttl: None,
            owner: None,
        }
    }

    /// The owner's request writer.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    // ---- requests: each starts a call in `fo` at `now_ms` and appends its
    // first attempt to the output (one whole line, or nothing), returning
    // the call's handle.

    /// `Lock` for `ttl_ms`, queueing up to `wait_ms` (0: one attempt), of
    /// `shape` (0: the exclusive lock; see `wire::shape`).
    pub fn lock(
        &mut self,
        fo: &mut Failover,
        now_ms: f64,
        name: &str,
        ttl_ms: f64,
        wait_ms: f64,
        shape: f64,
    ) -> Result<f64, Error> {
        let out = &mut self.out;
        Acquisition::new(ttl_ms, wait_ms, false, 0.0, shape)?
            .request(&self.writer, name, |r| fo.start(r, None, now_ms, out))?
    }

    /// `LockAll` of `names` for `ttl_ms`, queueing up to `wait_ms` (0: one
    /// attempt): all or none.
    pub fn lock_all(
        &mut self,
        fo: &mut Failover,
        now_ms: f64,
        names: &[String],
        ttl_ms: f64,
        wait_ms: f64,
    ) -> Result<f64, Error> {
        let out = &mut self.out;
        AcquisitionAll::new(ttl_ms, wait_ms, false, 0.0)?
            .request(&self.writer, names, |r| fo.start(r, None, now_ms, out))?
    }

    /// `Unlock` by name, fenced to `token` if given.
    pub fn unlock(
        &mut self,
        fo: &mut Failover,
        now_ms: f64,
        name: &str,
        token: Option<u64>,
    ) -> Result<f64, Error> {
        let out = &mut self.out;
        self.writer
            .unlock(name, token, |r| fo.start(r, None, now_ms, out))?
    }

    /// `TestLock`.
    pub fn test_lock(&mut self, fo: &mut Failover, now_ms: f64, name: &str) -> Result<f64, Error> {
        let out = &mut self.out;
        self.writer
            .test_lock(name, |r| fo.start(r, None, now_ms, out))?
    }

    /// `Put` of text an encoder made.
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &mut self,
        fo: &mut Failover,
        now_ms: f64,
        name: &str,
        ttl_ms: f64,
        data: &str,
        revision: Option<u64>,
        readers: Option<&str>,
    ) -> Result<f64, Error> {
        let out = &mut self.out;
        self.writer
            .put(name, ttl_ms, data, revision, readers, |r| {
                fo.start(r, None, now_ms, out)
            })?
    }

    /// `Put` of bytes through the table codec.
    #[allow(clippy::too_many_arguments)]
    pub fn put_table(
        &mut self,
        fo: &mut Failover,
        now_ms: f64,
        name: &str,
        ttl_ms: f64,
        plain: &[u8],
        revision: Option<u64>,
        readers: Option<&str>,
    ) -> Result<f64, Error> {
        wire::encode_table_into(plain, &mut self.text);
        let out = &mut self.out;
        let put = self
            .writer
            .put(name, ttl_ms, &self.text, revision, readers, |r| {
                fo.start(r, None, now_ms, out)
            });
        self.trim_text();
        put?
    }

    /// `Put` of bytes sealed under `sealer`'s key with `nonce`.
    #[allow(clippy::too_many_arguments)]
    pub fn put_sealed(
        &mut self,
        fo: &mut Failover,
        now_ms: f64,
        sealer: &Sealer,
        nonce: &[u8],
        name: &str,
        ttl_ms: f64,
        plain: &[u8],
        revision: Option<u64>,
        readers: Option<&str>,
    ) -> Result<f64, Error> {
        sealer.seal_into(nonce, name, plain, &mut self.text)?;
        let out = &mut self.out;
        let put = self
            .writer
            .put(name, ttl_ms, &self.text, revision, readers, |r| {
                fo.start(r, None, now_ms, out)
            });
        self.trim_text();
        put?
    }

    /// Lets a large value's encoding go (see [`KEEP`]).
    fn trim_text(&mut self) {
        if self.text.capacity() > KEEP {
            self.text = String::new();
        }
    }

    /// `Get`.
    pub fn get(&mut self, fo: &mut Failover, now_ms: f64, name: &str) -> Result<f64, Error> {
        let out = &mut self.out;
        self.writer.get(name, |r| fo.start(r, None, now_ms, out))?
    }

    /// `Erase`.
    pub fn erase(&mut self, fo: &mut Failover, now_ms: f64, name: &str) -> Result<f64, Error> {
        let out = &mut self.out;
        self.writer
            .erase(name, |r| fo.start(r, None, now_ms, out))?
    }

    /// `Version`.
    pub fn version(&mut self, fo: &mut Failover, now_ms: f64) -> Result<f64, Error> {
        let out = &mut self.out;
        self.writer.version(|r| fo.start(r, None, now_ms, out))
    }

    /// `Stats`.
    pub fn stats(&mut self, fo: &mut Failover, now_ms: f64) -> Result<f64, Error> {
        let out = &mut self.out;
        self.writer.stats(|r| fo.start(r, None, now_ms, out))
    }

    /// The request `lease` wants sent for the lock `name` at `now_ms`, if
    /// any, as a call (a renewal ends by the lease's deadline; a release
    /// carries its grant's request ID): the call's handle, or `None`.
    pub fn lease_request(
        &mut self,
        fo: &mut Failover,
        lease: &mut Lease,
        now_ms: f64,
        name: &str,
    ) -> Result<Option<f64>, Error> {
        let out = &mut self.out;
        lease
            .poll_request(now_ms, &self.writer, name, |r, pending| {
                fo.start(r, Some(pending), now_ms, out)
            })
            .transpose()
    }

    /// Call `handle`'s request again, as an attempt at `now_ms` sends it.
    pub fn resend(&mut self, fo: &mut Failover, handle: f64, now_ms: f64) -> Result<(), Error> {
        fo.resend(handle, now_ms, &mut self.out)
    }

    /// The discovery question (`{"Action":"Cluster"}`), not a call of its
    /// own: its answer is read by [`read_discovery`](Self::read_discovery).
    pub fn cluster(&mut self) {
        let out = &mut self.out;
        self.writer.cluster(|r| wire::write(r, out));
    }

    // ---- the output

    /// The requests appended since the output was last cleared.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Forgets the output (it was taken), keeping the buffer.
    pub fn clear_output(&mut self) {
        empty(&mut self.out);
    }

    // ---- answers

    /// Appends received bytes; returns how many more complete lines there
    /// are to read. An incomplete line longer than [`MAX_ANSWER`] fails
    /// with `Protocol` (the connection should be closed).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<u32, Error> {
        if self.read == self.input.len() {
            empty(&mut self.input);
            self.partial = 0;
            self.read = 0;
        } else if self.read > 0 {
            // Keep only what is unread: at most one incomplete line, as the
            // package reads every complete line before the next chunk.
            self.input.drain(..self.read);
            self.partial -= self.read;
            self.read = 0;
        }
        let start = self.input.len();
        self.input.extend_from_slice(chunk);
        let Some(last) = chunk.iter().rposition(|&b| b == b'\n') else {
            return self.check_partial().map(|()| 0);
        };
        self.partial = start + last + 1;
        // Chunks are a few KiB: no crate needed to count fast.
        #[allow(clippy::naive_bytecount)]
        let lines = chunk.iter().filter(|&&b| b == b'\n').count();
        self.check_partial()?;
        Ok(u32::try_from(lines).unwrap_or(u32::MAX))
    }

    fn check_partial(&self) -> Result<(), Error> {
        if self.input.len() - self.partial > self.max_answer {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!("an answer longer than {} bytes", self.max_answer),
            ));
        }
        Ok(())
    }

    /// The owner's writer and the output, for requests that are no call
    /// of the failover (a session's, a watch's: on a connection of their
    /// own).
    pub(crate) fn writer_and_output(&mut self) -> (&Writer, &mut Vec<u8>) {
        (&self.writer, &mut self.out)
    }

    /// Whether a complete line waits to be read.
    pub(crate) fn has_line(&self) -> bool {
        self.input
            .get(self.read..self.partial)
            .is_some_and(|unread| unread.contains(&b'\n'))
    }

    /// The oldest complete line not yet read (without its newline),
    /// marked read.
    pub(crate) fn next_line(&mut self) -> Result<&mut [u8], Error> {
        let unread = self.input.get(self.read..self.partial).unwrap_or_default();
        let Some(len) = unread.iter().position(|&b| b == b'\n') else {
            return Err(Error::new(ErrorKind::Protocol, "no answer to read"));
        };
        let start = self.read;
        self.read = start + len + 1;
        Ok(self.input.get_mut(start..start + len).unwrap_or_default())
    }

    /// Whether the oldest answer is call `handle`'s to read, arrived at
    /// `now_ms` on a connection of `epoch` ([`Failover::answered`]): true
    /// to read it with the call's reader; false if it was a member's
    /// refusal (skipped: send the call again); the error if the call gives
    /// up.
    pub fn answered(
        &mut self,
        fo: &mut Failover,
        handle: f64,
        epoch: u64,
        now_ms: f64,
    ) -> Result<bool, Error> {
        let unread = self.input.get(self.read..self.partial).unwrap_or_default();
        let Some(len) = unread.iter().position(|&b| b == b'\n') else {
            return Err(Error::new(ErrorKind::Protocol, "no answer to read"));
        };
        let line = unread.get(..len).unwrap_or_default();
        let answered = fo.answered(handle, epoch, now_ms, line)?;
        if !answered {
            self.skip()?;
        }
        Ok(answered)
    }

    /// The fast path of an answer: [`answered`](Self::answered) and, if
    /// the answer is the call's, `read` of it, in one call from the
    /// package. `Ok(None)` if a member refused it (skipped: send the call
    /// again). What became of it is left in `fo`'s
    /// [`out::ANSWER`](crate::failover::out::ANSWER), so the package tells
    /// the call's giving up (the failover's error) from the reader's error
    /// without asking.
    pub fn answer<T>(
        &mut self,
        fo: &mut Failover,
        handle: f64,
        epoch: u64,
        now_ms: f64,
        read: impl FnOnce(&mut Self) -> Result<T, Error>,
    ) -> Result<Option<T>, Error> {
        fo.set_answer(answer::GAVE_UP);
        if !self.answered(fo, handle, epoch, now_ms)? {
            fo.set_answer(answer::REFUSED);
            return Ok(None);
        }
        fo.set_answer(answer::READ);
        read(self).map(Some)
    }

    /// Reads the answer to the discovery question for call `handle` on a
    /// connection of `epoch` ([`Failover::discovered`]).
    pub fn read_discovery(
        &mut self,
        fo: &mut Failover,
        handle: f64,
        epoch: u64,
        now_ms: f64,
    ) -> Result<u8, Error> {
        let line = self.next_line()?;
        fo.discovered(handle, epoch, now_ms, line)
    }

    /// Reads the answer to a `Lock` (made by [`lock`](Self::lock) with the
    /// same `ttl_ms` and `wait_ms`, sent at `sent_ms`), received at
    /// `now_ms`: the lease. Fails with `NotOwner`, or `Timeout` if a wait
    /// ran out.
    pub fn read_grant(
        &mut self,
        ttl_ms: f64,
        wait_ms: f64,
        auto_renew: bool,
        sent_ms: f64,
        now_ms: f64,
        shape: f64,
    ) -> Result<Lease, Error> {
        let acquisition = Acquisition::new(ttl_ms, wait_ms, auto_renew, sent_ms, shape);
        let line = self.next_line()?;
        acquisition?.finish(now_ms, line)
    }

    /// Reads the answer to a `LockAll` of `count` names (made by
    /// [`lock_all`](Self::lock_all) with the same `ttl_ms` and `wait_ms`,
    /// sent at `sent_ms`), received at `now_ms`: one lease per name, in
    /// the order of the request. Fails with `NotOwner`, or `Timeout` if a
    /// wait ran out.
    #[allow(clippy::too_many_arguments)]
    pub fn read_grant_all(
        &mut self,
        ttl_ms: f64,
        wait_ms: f64,
        auto_renew: bool,
        sent_ms: f64,
        now_ms: f64,
        count: usize,
    ) -> Result<Vec<Lease>, Error> {
        let acquisition = AcquisitionAll::new(ttl_ms, wait_ms, auto_renew, sent_ms);
        let line = self.next_line()?;
        acquisition?.finish(now_ms, count, line)
    }

    /// Reads the answer to the request `lease` has in flight (see
    /// [`lease_request`](Self::lease_request)). Fails with `LockLost` if
    /// the grant is gone.
    pub fn read_lease(&mut self, lease: &mut Lease, now_ms: f64) -> Result<(), Error> {
        match self.next_line() {
            Ok(line) => lease.handle_response(now_ms, line).map(|_| ()),
            Err(e) => {
                lease.handle_failure(now_ms);
                Err(e)
            }
        }
    }

    /// Reads the oldest answer and ignores it (its request's lease is gone).
    pub fn skip(&mut self) -> Result<(), Error> {
        self.next_line().map(|_| ())
    }

    /// Reads the answer to an `Unlock` by name: whether a lock was released.
    pub fn read_released(&mut self) -> Result<bool, Error> {
        wire::released(self.next_line()?)
    }

    /// Reads the answer to `TestLock`; the token and TTL are kept for
    /// [`token`](Self::token) and [`ttl`](Self::ttl).
    pub fn read_lock_state(&mut self) -> Result<LockState, Error> {
        let state = wire::lock_state(self.next_line()?)?;
        (self.token, self.ttl) = match state {
            LockState::Free => (None, None),
            LockState::Mine(token, ttl) => (token, ttl),
            LockState::Taken(ttl) => (None, ttl),
        };
        Ok(state)
    }

    /// Reads the answer to a `Put` (`compared`: whether it carried a
    /// revision): the new revision (0 from a server that keeps none).
    pub fn read_stored(&mut self, compared: bool) -> Result<u64, Error> {
        let (revision, ttl) = wire::stored(self.next_line()?, compared)?;
        self.revision = revision;
        self.ttl = Some(ttl);
        Ok(revision)
    }

    /// Reads the answer to a `Get`: the value's bytes, decoded as asked,
    /// or `None` if there is no entry. Its revision and TTL are kept for
    /// [`revision`](Self::revision) and [`ttl`](Self::ttl).
    pub fn read_fetched(&mut self, decode: Decode<'_>) -> Result<Option<Vec<u8>>, Error> {
        Ok(wire::fetched(self.next_line()?, decode)?.map(
            |Fetched {
                 value,
                 revision,
                 ttl,
                 owner,
             }| {
                self.revision = revision;
                self.ttl = Some(ttl);
                self.owner = owner;
                value
            },
        ))
    }

    /// Reads the answer to `Erase`: whether there was an entry.
    pub fn read_erased(&mut self) -> Result<bool, Error> {
        wire::erased(self.next_line()?)
    }

    /// Reads the answer to `Version`.
    pub fn read_version(&mut self) -> Result<String, Error> {
        wire::version(self.next_line()?)
    }

    /// Reads the answer to `Stats`.
    pub fn read_stats(&mut self) -> Result<Vec<(&'static str, u64)>, Error> {
        wire::stats(self.next_line()?)
    }

    /// The revision of the last value stored or read.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The token of the last `TestLock` that found the lock ours, if the
    /// server gives tokens.
    pub fn token(&self) -> Option<u64> {
        self.token
    }

    /// The TTL the last answer read said, if it said one.
    pub fn ttl(&self) -> Option<Ttl> {
        self.ttl
    }

    /// The owner's ID of the value the last `Get` read, if the server
    /// said (the caller's own, or a sharer's).
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // exact whole milliseconds
mod tests {
    use super::*;
    use crate::failover::Failover;

    fn failover() -> Failover {
        Failover::new("127.0.0.1:37373", 10_000.0, 3, true, &[7; 16]).unwrap()
    }
    use crate::wire::encode_table;
    use dlm_core::engine::{Config, Engine, Outcome, Principal};
    use dlm_core::limits::Limits;
    use dlm_core::protocol::Request;
    use dlm_core::time::Instant;

    fn link(id: &str, legacy: bool) -> Link {
        Link::new(Writer::new(id.into(), legacy, None).unwrap())
    }

    /// Plays the server: runs every request `link` has written through the
    /// engine at `now` and feeds all the answers back at once, as one
    /// chunk. Returns how many complete answers `feed` reported.
    fn serve(engine: &mut Engine, now: u64, link: &mut Link) -> u32 {
        let out = link.output().to_vec();
        link.clear_output();
        let mut answers = Vec::new();
        for line in out.split_inclusive(|&b| b == b'\n') {
            let mut line = line.to_vec();
            let req = Request::parse(&mut line, &Limits::DEFAULT).unwrap();
            let now = Instant::from_millis(now);
            match engine.handle(now, &req.command, Principal::Anonymous, 0, &mut |_| {}) {
                Outcome::Reply(r) => r.write(req.framing, &mut answers).unwrap(),
                Outcome::Queued(_) => panic!("the engine queued a request that should be answered"),
            }
        }
        link.feed(&answers).unwrap()
    }

    /// Feeds one answer line (a newline is added).
    fn answer(link: &mut Link, text: &str) {
        assert_eq!(link.feed(format!("{text}\n").as_bytes()), Ok(1));
    }

    #[test]
    fn lock_all_is_all_or_none_with_a_lease_per_name() {
        let mut fo = failover();
        let mut e = Engine::new(Config::default());
        let mut a = link("a", false);
        let mut b = link("b", false);
        let names = ["M1".to_owned(), "M2".to_owned()];

        b.lock(&mut fo, 0.0, "M2", 1000.0, 0.0, 0.0).unwrap();
        serve(&mut e, 0, &mut b);
        let mut held = b.read_grant(1000.0, 0.0, false, 0.0, 0.0, 0.0).unwrap();
        a.lock_all(&mut fo, 0.0, &names, 1000.0, 0.0).unwrap();
        serve(&mut e, 1, &mut a);
        let err = a
            .read_grant_all(1000.0, 0.0, false, 1.0, 1.0, 2)
            .unwrap_err();
        assert_eq!(err.code(), "NotOwner");
        // Nothing taken: M1 is free.
        a.test_lock(&mut fo, 0.0, "M1").unwrap();
        serve(&mut e, 1, &mut a);
        assert_eq!(a.read_lock_state(), Ok(LockState::Free));

        assert!(held.release(2.0));
        b.lease_request(&mut fo, &mut held, 2.0, "M2").unwrap();
        serve(&mut e, 2, &mut b);
        b.read_lease(&mut held, 2.0).unwrap();
        a.lock_all(&mut fo, 3.0, &names, 1000.0, 0.0).unwrap();
        serve(&mut e, 3, &mut a);
        let leases = a.read_grant_all(1000.0, 0.0, false, 3.0, 3.0, 2).unwrap();
        assert_eq!(leases.len(), 2);
        let tokens: Vec<_> = leases.iter().map(|l| l.token().unwrap()).collect();
        assert_ne!(tokens[0], tokens[1]);
        for (name, token) in names.iter().zip(&tokens) {
            a.test_lock(&mut fo, 4.0, name).unwrap();
            serve(&mut e, 4, &mut a);
            assert!(matches!(a.read_lock_state(), Ok(LockState::Mine(Some(t), _)) if t == *token));
        }

        // Refused before anything is written.
        for bad in [
            &[][..],
            &["X".to_owned(), "X".to_owned()][..],
            &[String::new()][..],
        ] {
            let err = a.lock_all(&mut fo, 0.0, bad, 1000.0, 0.0).unwrap_err();
            assert_eq!(err.code(), "InvalidArgument");
        }
        let many: Vec<String> = (0..17).map(|i| format!("N{i}")).collect();
        assert_eq!(
            a.lock_all(&mut fo, 0.0, &many, 1000.0, 0.0)
                .unwrap_err()
                .code(),
            "InvalidArgument"
        );
        assert!(a.output().is_empty());
    }

    #[test]
    fn shared_values_name_their_owner_and_bad_readers_are_refused() {
        let mut fo = failover();
        let mut e = Engine::new(Config::default());
        let mut a = link("a", false);
        let mut b = link("b", false);
        a.put(&mut fo, 0.0, "S", 1000.0, "v", None, Some(""))
            .unwrap();
        serve(&mut e, 0, &mut a);
        assert_eq!(a.read_stored(false), Ok(1));
        b.get(&mut fo, 0.0, "S").unwrap();
        serve(&mut e, 0, &mut b);
        assert_eq!(b.read_fetched(Decode::Text), Ok(Some(b"v".to_vec())));
        assert_eq!(b.owner(), Some("a"));
        // Private again.
        a.put(&mut fo, 0.0, "S", 1000.0, "w", None, None).unwrap();
        serve(&mut e, 0, &mut a);
        assert_eq!(a.read_stored(false), Ok(2));
        b.get(&mut fo, 0.0, "S").unwrap();
        serve(&mut e, 0, &mut b);
        assert_eq!(b.read_fetched(Decode::Text).unwrap_err().code(), "NotOwner");

        for bad in ["a,", ",a", "a b", ".hidden", "x,y,,z"] {
            let err = a
                .put(&mut fo, 0.0, "S", 1000.0, "v", None, Some(bad))
                .unwrap_err();
            assert_eq!(err.code(), "InvalidArgument", "{bad}");
        }
        let many = vec!["r"; 33].join(",");
        assert_eq!(
            a.put(&mut fo, 0.0, "S", 1000.0, "v", None, Some(&many))
                .unwrap_err()
                .code(),
            "InvalidArgument"
        );
        assert!(a.output().is_empty());
        a.put(&mut fo, 0.0, "S", 1000.0, "v", None, Some("alice,bob"))
            .unwrap();
        assert!(!a.output().is_empty());
    }

    #[test]
    fn every_request_round_trips_through_the_engine() {
        let mut fo = failover();
        for legacy in [false, true] {
            let mut e = Engine::new(Config::default());
            let mut a = link("a", legacy);
            let mut b = link("b", legacy);

            a.lock(&mut fo, 0.0, "L", 1000.0, 0.0, 0.0).unwrap();
            assert_eq!(serve(&mut e, 0, &mut a), 1);
            let mut lease = a.read_grant(1000.0, 0.0, false, 0.0, 0.0, 0.0).unwrap();
            let token = lease.token().unwrap();
            assert_eq!(lease.remaining_ms(0.0), 1000.0);
            b.lock(&mut fo, 0.0, "L", 1000.0, 0.0, 0.0).unwrap();
            serve(&mut e, 1, &mut b);
            let err = b.read_grant(1000.0, 0.0, false, 1.0, 1.0, 0.0).unwrap_err();
            assert_eq!(err.code(), "NotOwner");

            a.test_lock(&mut fo, 0.0, "L").unwrap();
            serve(&mut e, 1, &mut a);
            assert_eq!(
                a.read_lock_state(),
                Ok(LockState::Mine(Some(token), Some(Ttl::from_millis(999))))
            );
            assert_eq!(
                (a.token(), a.ttl()),
                (Some(token), Some(Ttl::from_millis(999)))
            );
            b.test_lock(&mut fo, 0.0, "L").unwrap();
            serve(&mut e, 1, &mut b);
            assert!(matches!(b.read_lock_state(), Ok(LockState::Taken(Some(_)))));

            lease.extend(2.0, 5000.0).unwrap();
            assert!(
                a.lease_request(&mut fo, &mut lease, 2.0, "L")
                    .unwrap()
                    .is_some()
            );
            assert!(
                a.lease_request(&mut fo, &mut lease, 2.0, "L")
                    .unwrap()
                    .is_none(),
                "one at a time"
            );
            serve(&mut e, 2, &mut a);
            assert_eq!(a.read_lease(&mut lease, 2.0), Ok(()));
            assert_eq!(lease.remaining_ms(2.0), 5000.0);

            b.unlock(&mut fo, 0.0, "L", None).unwrap();
            serve(&mut e, 3, &mut b);
            assert_eq!(b.read_released().unwrap_err().code(), "NotOwner");
            assert!(lease.release(3.0));
            assert!(
                a.lease_request(&mut fo, &mut lease, 3.0, "L")
                    .unwrap()
                    .is_some()
            );
            serve(&mut e, 3, &mut a);
            assert_eq!(a.read_lease(&mut lease, 3.0), Ok(()));
            assert!(lease.is_released());
            a.unlock(&mut fo, 0.0, "L", Some(token)).unwrap();
            a.test_lock(&mut fo, 0.0, "L").unwrap();
            assert_eq!(serve(&mut e, 3, &mut a), 2, "two answers in one chunk");
            assert_eq!(a.read_released(), Ok(false));
            assert_eq!(a.read_lock_state(), Ok(LockState::Free));

            // Values: table-encoded in the module, or text an encoder made.
            a.put_table(&mut fo, 0.0, "K", 60_000.0, b"hello", None, None)
                .unwrap();
            a.put(
                &mut fo,
                0.0,
                "K",
                60_000.0,
                &encode_table(b"hello"),
                Some(7),
                None,
            )
            .unwrap();
            a.get(&mut fo, 0.0, "K").unwrap();
            a.get(&mut fo, 0.0, "K").unwrap();
            b.get(&mut fo, 0.0, "K").unwrap();
            assert_eq!(serve(&mut e, 4, &mut a), 4);
            assert_eq!(a.read_stored(false), Ok(1));
            assert_eq!((a.revision(), a.ttl()), (1, Some(Ttl::from_millis(60_000))));
            let err = a.read_stored(true).unwrap_err();
            assert_eq!((err.code(), err.current()), ("Conflict", Some(1)));
            assert_eq!(a.read_fetched(Decode::Table), Ok(Some(b"hello".to_vec())));
            assert_eq!((a.revision(), a.ttl()), (1, Some(Ttl::from_millis(60_000))));
            assert_eq!(
                a.read_fetched(Decode::Text),
                Ok(Some(encode_table(b"hello").into_bytes()))
            );
            serve(&mut e, 5, &mut b);
            assert_eq!(
                b.read_fetched(Decode::Table).unwrap_err().code(),
                "NotOwner"
            );

            a.erase(&mut fo, 0.0, "K").unwrap();
            a.erase(&mut fo, 0.0, "K").unwrap();
            a.get(&mut fo, 0.0, "K").unwrap();
            a.version(&mut fo, 0.0).unwrap();
            serve(&mut e, 6, &mut a);
            assert_eq!(a.read_erased(), Ok(true));
            assert_eq!(a.read_erased(), Ok(false));
            assert_eq!(a.read_fetched(Decode::Table), Ok(None));
            assert!(a.read_version().unwrap().contains("JackrabbitDLM"));
            assert_eq!(
                a.read_version().unwrap_err().code(),
                "Protocol",
                "nothing left"
            );
        }
    }

    #[test]
    fn sealed_values_are_sealed_and_opened_in_the_module() {
        let mut fo = failover();
        let mut e = Engine::new(Config::default());
        let mut a = link("a", false);
        let sealer = Sealer::new(&[9; 32]).unwrap();
        a.put_sealed(
            &mut fo, 0.0, &sealer, &[1; 24], "S", 1000.0, b"secret", None, None,
        )
        .unwrap();
        a.get(&mut fo, 0.0, "S").unwrap();
        a.get(&mut fo, 0.0, "S").unwrap();
        a.get(&mut fo, 0.0, "S").unwrap();
        serve(&mut e, 0, &mut a);
        assert_eq!(a.read_stored(false), Ok(1));
        assert_eq!(
            a.read_fetched(Decode::Sealed(&sealer, "S")),
            Ok(Some(b"secret".to_vec()))
        );
        let text = a.read_fetched(Decode::Text).unwrap().unwrap();
        assert_eq!(
            text,
            dlm_core::seal::seal(&[9; 32], &[1; 24], "S", b"secret").into_bytes()
        );
        // Read under another name: the name is bound to the value.
        assert_eq!(
            a.read_fetched(Decode::Sealed(&sealer, "T"))
                .unwrap_err()
                .code(),
            "Encoding"
        );
        assert_eq!(
            a.put_sealed(
                &mut fo, 0.0, &sealer, &[1; 23], "S", 1000.0, b"x", None, None
            )
            .unwrap_err()
            .code(),
            "InvalidArgument"
        );
        assert!(
            a.output().is_empty(),
            "nothing written for a refused request"
        );
    }

    #[test]
    fn answers_split_anywhere_are_read_whole() {
        let mut fo = failover();
        let mut a = link("a", false);
        let text =
            b"{\"Status\":\"Done\",\"Revision\":3}\n{\"Status\":\"Unlocked\",\"ID\":\"a\"}\n";
        for cut in 0..text.len() {
            let (x, y) = text.split_at(cut);
            let n = a.feed(x).unwrap() + a.feed(y).unwrap();
            assert_eq!(n, 2, "cut at {cut}");
            assert_eq!(a.read_stored(false), Ok(3));
            assert_eq!(a.read_released(), Ok(true));
            assert!(a.read_released().is_err());
        }
        // Byte by byte.
        let mut n = 0;
        for b in text {
            n += a.feed(&[*b]).unwrap();
        }
        assert_eq!(n, 2);
        assert_eq!(a.read_stored(false), Ok(3));
        assert_eq!(a.read_released(), Ok(true));
        // What was read is dropped at the next feed, and a large answer's
        // room with it.
        a.feed(b"").unwrap();
        assert!(a.input.is_empty());
        let big = format!(
            "{{\"Status\":\"Done\",\"DataStore\":\"{}\"}}\n",
            "a^".repeat(1 << 20)
        );
        assert_eq!(a.feed(big.as_bytes()), Ok(1));
        assert_eq!(a.read_fetched(Decode::Table), Ok(Some(vec![b'{'; 1 << 20])));
        a.feed(b"").unwrap();
        assert!(a.input.capacity() <= KEEP);
        a.put_table(&mut fo, 0.0, "K", 1000.0, &vec![0; 1 << 20], None, None)
            .unwrap();
        assert!(a.output().len() > 2 << 20);
        a.clear_output();
        assert!(a.out.capacity() <= KEEP && a.text.capacity() <= KEEP);
    }

    #[test]
    fn an_endless_answer_is_refused() {
        assert_eq!(link("a", false).max_answer, MAX_ANSWER);
        let mut a = link("a", false);
        a.max_answer = 1 << 10;
        let chunk = [b'x'; 1 << 8];
        for _ in 0..4 {
            assert_eq!(a.feed(&chunk), Ok(0));
        }
        assert_eq!(a.feed(b"x").unwrap_err().code(), "Protocol");
        let mut b = link("b", false);
        b.max_answer = 1 << 10;
        assert_eq!(b.feed(b"{}\n"), Ok(1));
        assert_eq!(b.feed(&[b'y'; 1 << 10]), Ok(0));
        assert_eq!(b.feed(b"\n{}\n"), Ok(2));
        assert!(b.read_version().is_err());
        assert!(b.read_version().is_err());
        assert!(b.read_version().is_err());
    }

    #[test]
    fn a_lease_is_lost_at_its_deadline_and_a_refused_extension_says_so() {
        let mut fo = failover();
        let mut a = link("a", false);
        a.lock(&mut fo, 0.0, "L", 100.0, 0.0, 0.0).unwrap();
        answer(&mut a, r#"{"Status":"Locked","Token":5,"Expire":0.1}"#);
        let mut lease = a.read_grant(100.0, 0.0, false, 10.4, 12.0, 0.0).unwrap();
        assert_eq!(lease.poll_timeout(), Some(110.0));
        lease.handle_timeout(110.0);
        assert!(lease.is_lost());
        assert!(lease.poll_lost());
        assert!(!lease.poll_lost());
        assert_eq!(lease.extend(111.0, 100.0).unwrap_err().code(), "LockLost");

        answer(&mut a, r#"{"Status":"Locked","Token":5}"#);
        let mut lease = a.read_grant(100.0, 0.0, false, 10.4, 12.0, 0.0).unwrap();
        lease.extend(20.0, 100.0).unwrap();
        a.clear_output();
        assert!(
            a.lease_request(&mut fo, &mut lease, 20.0, "L")
                .unwrap()
                .is_some()
        );
        let line = String::from_utf8(a.output().to_vec()).unwrap();
        assert!(line.contains(r#""Token":5"#), "{line}");
        answer(&mut a, r#"{"Status":"NotOwner"}"#);
        let e = a.read_lease(&mut lease, 21.0).unwrap_err();
        assert_eq!(e.code(), "LockLost");
        assert!(lease.poll_lost());
    }

    #[test]
    fn nonsense_is_no_answer_and_an_extension_may_be_asked_again() {
        let mut fo = failover();
        let mut a = link("a", false);
        answer(&mut a, r#"{"Status":"Locked","Token":5}"#);
        let mut lease = a.read_grant(1000.0, 0.0, false, 0.0, 0.0, 0.0).unwrap();
        lease.extend(1.0, 1000.0).unwrap();
        assert!(
            a.lease_request(&mut fo, &mut lease, 1.0, "L")
                .unwrap()
                .is_some()
        );
        answer(&mut a, "garbage");
        assert_eq!(
            a.read_lease(&mut lease, 2.0).unwrap_err().code(),
            "Protocol"
        );
        assert!(!lease.is_lost());
        // No line at all: the same.
        lease.extend(3.0, 1000.0).unwrap();
        assert!(
            a.lease_request(&mut fo, &mut lease, 3.0, "L")
                .unwrap()
                .is_some()
        );
        assert_eq!(
            a.read_lease(&mut lease, 3.0).unwrap_err().code(),
            "Protocol"
        );
        assert!(!lease.has_request());
    }

    #[test]
    fn a_request_that_could_not_be_sent_failed() {
        let mut fo = failover();
        let mut a = link("a", false);
        answer(&mut a, r#"{"Status":"Locked","Token":5}"#);
        let mut lease = a.read_grant(1000.0, 0.0, true, 0.0, 0.0, 0.0).unwrap();
        // A renewal with no connection: retried a tenth of the TTL later.
        lease.handle_timeout(400.0);
        assert!(lease.has_request());
        lease.handle_unsent(400.0);
        assert!(!lease.has_request());
        assert_eq!(lease.poll_timeout(), Some(500.0));
        // A release with no connection: nothing more until asked again.
        assert!(lease.release(450.0));
        lease.handle_unsent(450.0);
        assert!(!lease.has_request() && !lease.is_released() && !lease.is_lost());
        assert!(lease.release(460.0));
        assert!(
            a.lease_request(&mut fo, &mut lease, 460.0, "L")
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn jackrabbit_answers() {
        let mut a = link("a", true);
        // No token, no Expire: a lease at the asked TTL, with no token.
        answer(&mut a, r#"{"Status":"Locked","ID":"a"}"#);
        let lease = a.read_grant(1000.0, 0.0, true, 0.0, 1.0, 0.0).unwrap();
        assert_eq!((lease.token(), lease.ttl_ms()), (None, 1000.0));
        // A wait answered at once: no queue there, so not a timeout.
        answer(&mut a, r#"{"Status":"NotOwner"}"#);
        let e = a
            .read_grant(1000.0, 5000.0, false, 0.0, 3.0, 0.0)
            .unwrap_err();
        assert_eq!(e.code(), "NotOwner");
        answer(&mut a, r#"{"Status":"NotOwner"}"#);
        let e = a
            .read_grant(1000.0, 5000.0, false, 0.0, 5000.0, 0.0)
            .unwrap_err();
        assert_eq!(e.code(), "Timeout");
        // Put: no revision; a compare-and-set that was not compared fails.
        let done = r#"{"Status":"Done","ID":"a"}"#;
        answer(&mut a, done);
        assert_eq!(a.read_stored(false), Ok(0));
        assert_eq!(a.ttl(), Some(Ttl::ZERO));
        answer(&mut a, done);
        assert_eq!(a.read_stored(true).unwrap_err().code(), "Protocol");
    }

    #[test]
    fn refusals_and_garbage() {
        let mut a = link("a", false);
        for (text, wait, code) in [
            (r#"{"Status":"NotOwner"}"#, 200.0, "Timeout"),
            (r#"{"Status":"NotOwner"}"#, 0.0, "NotOwner"),
            (r#"{"Status":"NO"}"#, 200.0, "NoMemory"),
            ("", 0.0, "Protocol"),
            ("not json", 0.0, "Protocol"),
            (r#"{"Status":"Bogus"}"#, 0.0, "Protocol"),
        ] {
            answer(&mut a, text);
            let e = a
                .read_grant(1000.0, wait, false, 0.0, 250.0, 0.0)
                .unwrap_err();
            assert_eq!(e.code(), code, "{text}");
        }
        answer(
            &mut a,
            r#"{"Status":"BadPayload","Error":"field Expire must be positive"}"#,
        );
        let e = a.read_grant(1000.0, 0.0, false, 0.0, 0.0, 0.0).unwrap_err();
        assert_eq!(e.to_string(), "bad request: field Expire must be positive");
        answer(
            &mut a,
            r#"{"Status":"Done","Stats":{"AWait":2,"Lock":5,"Unknown":1}}"#,
        );
        let s = a.read_stats().unwrap();
        assert!(s.contains(&("AWait", 2)) && s.contains(&("Lock", 5)));
        answer(&mut a, r#"{"Status":"Done"}"#);
        assert_eq!(a.read_stats().unwrap_err().code(), "Protocol");
        answer(&mut a, r#"{"Status":"BadAction"}"#);
        assert_eq!(a.read_stats().unwrap_err().code(), "BadRequest");
        // A value the table codec cannot read is an Encoding error, read
        // as text it is what was stored.
        answer(
            &mut a,
            r#"{"Status":"Done","DataStore":"a^2","Revision":1}"#,
        );
        assert_eq!(
            a.read_fetched(Decode::Table).unwrap_err().code(),
            "Encoding"
        );
        answer(
            &mut a,
            r#"{"Status":"Done","DataStore":"a^2","Revision":1}"#,
        );
        assert_eq!(a.read_fetched(Decode::Text), Ok(Some(b"a^2".to_vec())));
    }

    #[test]
    fn bad_arguments_are_refused_before_anything_is_written() {
        let mut fo = failover();
        let mut a = link("a", false);
        for (ttl, wait) in [
            (0.0, 0.0),
            (-1.0, 0.0),
            (f64::NAN, 0.0),
            (f64::INFINITY, 0.0),
            (1.0, -1.0),
            (1e300, 0.0),
        ] {
            assert_eq!(
                a.lock(&mut fo, 0.0, "L", ttl, wait, 0.0)
                    .unwrap_err()
                    .code(),
                "InvalidArgument",
                "{ttl} {wait}"
            );
        }
        assert_eq!(
            a.lock(&mut fo, 0.0, "", 1.0, 0.0, 0.0).unwrap_err().code(),
            "InvalidArgument"
        );
        assert_eq!(
            a.put(&mut fo, 0.0, "K", 0.0, "", None, None)
                .unwrap_err()
                .code(),
            "InvalidArgument"
        );
        assert_eq!(
            a.put_table(&mut fo, 0.0, "", 1.0, b"", None, None)
                .unwrap_err()
                .code(),
            "InvalidArgument"
        );
        for f in [Link::get, Link::erase, Link::test_lock] {
            assert_eq!(
                f(&mut a, &mut fo, 0.0, "").unwrap_err().code(),
                "InvalidArgument"
            );
        }
        assert!(a.output().is_empty());
        assert!(Writer::new(String::new(), false, None).is_err());
        assert!(Writer::new("a".into(), false, Some(("n".into(), String::new()))).is_err());
        // Fractions of a millisecond round up, as the protocol does.
        a.lock(&mut fo, 0.0, "L", 0.2, 1500.5, 0.0).unwrap();
        let text = String::from_utf8(a.output().to_vec()).unwrap();
        assert!(text.contains(r#""Expire":0.001"#), "{text}");
        assert!(text.contains(r#""Wait":1.501"#), "{text}");
        assert!(text.ends_with('\n'));
    }
}
