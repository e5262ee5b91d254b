//! The pure half of the module: request lines out, typed answers in, and the
//! value encoders, all over dlm-core. Nothing here touches JavaScript, so
//! it is tested on the host like any Rust code; `bindings` only converts.

use dlm_core::client::{
    self as core_client, Acquire, Done, Event, Lease as CoreLease, LockState as CoreLockState,
    answer, value,
};
use dlm_core::protocol::{Credentials, Framing, Request, Response, Revision, Token};
use dlm_core::time::{Instant, Ttl};
use dlm_core::{codec, seal};

use crate::error::Error;

/// The longest TTL or wait a caller may pass, in milliseconds: 2^53, the
/// largest integer a JavaScript number holds exactly. The server's own
/// limits are far lower and it says so (`BadRequest`).
const MAX_MS: f64 = 9_007_199_254_740_992.0;

/// Milliseconds from JavaScript as a [`Ttl`], rounded up to a whole
/// millisecond (as the protocol rounds seconds up). `what` names the
/// argument in the error.
pub(crate) fn millis(what: &str, ms: f64, allow_zero: bool) -> Result<Ttl, Error> {
    if !(0.0..=MAX_MS).contains(&ms) {
        return Err(Error::invalid(format!(
            "{what} must be a finite number of milliseconds from 0 to 2^53, not {ms}"
        )));
    }
    if ms == 0.0 && !allow_zero {
        return Err(Error::invalid(format!("{what} must be positive")));
    }
    // In range and non-negative (checked above), so the cast is exact after
    // rounding up.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = ms.ceil() as u64;
    Ok(Ttl::from_millis(ms))
}

/// Milliseconds for JavaScript (exact below 2^53, which covers every TTL a
/// server grants).
#[allow(clippy::cast_precision_loss)]
pub(crate) fn to_js_millis(ttl: Ttl) -> f64 {
    ttl.as_millis() as f64
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        Err(Error::invalid("a name must not be empty"))
    } else {
        Ok(())
    }
}

fn write(req: &Request<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec grows it; it cannot run out of room.
    let _ = req.write(&mut out);
    out
}

/// Builds request lines for one owner ID (dlm-core's [`core_client::Client`],
/// owning its strings so JavaScript can keep it).
#[derive(Clone, Debug)]
pub struct Writer {
    id: String,
    framing: Framing,
    credentials: Option<(String, String)>,
}

impl Writer {
    /// A writer for owner `id`, in legacy framing if asked, authenticating
    /// as an identity if `credentials` (name, secret) are given.
    pub fn new(
        id: String,
        legacy: bool,
        credentials: Option<(String, String)>,
    ) -> Result<Self, Error> {
        if id.is_empty() {
            return Err(Error::invalid("a client ID must not be empty"));
        }
        if let Some((name, secret)) = &credentials
            && (name.is_empty() || secret.is_empty())
        {
            return Err(Error::invalid("an identity needs both a name and a secret"));
        }
        Ok(Self {
            id,
            framing: if legacy {
                Framing::Legacy
            } else {
                Framing::Plain
            },
            credentials,
        })
    }

    /// The owner ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn core(&self) -> core_client::Client<'_> {
        let c = core_client::Client::new(&self.id).with_framing(self.framing);
        match &self.credentials {
            Some((name, secret)) => c.with_credentials(Credentials { name, secret }),
            None => c,
        }
    }

    /// `Unlock`, fenced to grant `token` if given.
    pub fn unlock(&self, name: &str, token: Option<u64>) -> Result<Vec<u8>, Error> {
        check_name(name)?;
        Ok(write(&self.core().unlock(name, token.map(Token))))
    }

    /// `TestLock`.
    pub fn test_lock(&self, name: &str) -> Result<Vec<u8>, Error> {
        check_name(name)?;
        Ok(write(&self.core().test_lock(name)))
    }

    /// `Put` of an encoded value; compare-and-set if `revision` is given.
    pub fn put(
        &self,
        name: &str,
        ttl_ms: f64,
        data: &str,
        revision: Option<u64>,
    ) -> Result<Vec<u8>, Error> {
        check_name(name)?;
        let ttl = millis("ttlMs", ttl_ms, false)?;
        Ok(write(&self.core().put(
            name,
            ttl,
            data,
            revision.map(Revision),
        )))
    }

    /// `Get`.
    pub fn get(&self, name: &str) -> Result<Vec<u8>, Error> {
        check_name(name)?;
        Ok(write(&self.core().get(name)))
    }

    /// `Erase`.
    pub fn erase(&self, name: &str) -> Result<Vec<u8>, Error> {
        check_name(name)?;
        Ok(write(&self.core().erase(name)))
    }

    /// `Version`.
    pub fn version(&self) -> Vec<u8> {
        write(&self.core().version())
    }

    /// `Stats`.
    pub fn stats(&self) -> Vec<u8> {
        write(&self.core().stats())
    }
}

fn parse(line: &mut [u8]) -> Result<Response<'_>, Error> {
    Ok(Response::parse(line)?.1)
}

/// Milliseconds on JavaScript's monotonic clock (`performance.now()`) as an
/// [`Instant`], rounded down (so a request's send time is never later than
/// it was, and a deadline counted from it never later than the server's).
pub fn instant(ms: f64) -> Instant {
    if ms.is_finite() && ms > 0.0 {
        // Finite, positive and at most 2^53: the cast is exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let ms = ms.floor().min(MAX_MS) as u64;
        Instant::from_millis(ms)
    } else {
        Instant::ZERO
    }
}

/// An instant for JavaScript, in `performance.now()` milliseconds.
#[allow(clippy::cast_precision_loss)]
pub fn to_js_instant(at: Instant) -> f64 {
    at.as_millis() as f64
}

/// One acquisition of a lock: dlm-core's [`Acquire`], from its request to
/// its answer.
#[derive(Clone, Copy, Debug)]
pub struct Acquisition(Acquire);

impl Acquisition {
    /// A lock for `ttl_ms`, queueing up to `wait_ms` (0: one attempt),
    /// renewing itself if `auto_renew`; the request is sent at `now_ms`.
    pub fn new(ttl_ms: f64, wait_ms: f64, auto_renew: bool, now_ms: f64) -> Result<Self, Error> {
        let ttl = millis("ttlMs", ttl_ms, false)?;
        let wait = millis("waitMs", wait_ms, true)?;
        Ok(Self(Acquire::new(
            ttl,
            Some(wait),
            auto_renew,
            instant(now_ms),
        )))
    }

    /// Whether it waits in the server's queue.
    pub fn waits(&self) -> bool {
        self.0.wait().is_some()
    }

    /// The `Lock` request line for `name`.
    pub fn request(&self, writer: &Writer, name: &str) -> Result<Vec<u8>, Error> {
        check_name(name)?;
        Ok(write(&self.0.request(&writer.core(), name)))
    }

    /// Reads the answer, received at `now_ms`: the lease, or why there is
    /// none (`NotOwner`; `Timeout` if a wait ran out).
    pub fn finish(&self, now_ms: f64, line: &mut [u8]) -> Result<Lease, Error> {
        let r = parse(line)?;
        Ok(Lease(self.0.handle_response(instant(now_ms), &r)?))
    }
}

/// A held lock's lease: dlm-core's [`CoreLease`], with JavaScript's
/// numbers. The package's `Lock` drives it with `setTimeout` and sockets.
#[derive(Clone, Debug)]
pub struct Lease(CoreLease);

impl Lease {
    /// The fencing token (`None` from a server that gives none).
    pub fn token(&self) -> Option<u64> {
        self.0.token().map(|Token(t)| t)
    }

    /// The TTL extensions ask for, in milliseconds.
    pub fn ttl_ms(&self) -> f64 {
        to_js_millis(self.0.ttl())
    }

    /// Whether the lock is lost.
    pub fn is_lost(&self) -> bool {
        self.0.is_lost()
    }

    /// Whether the lock was released.
    pub fn is_released(&self) -> bool {
        self.0.is_released()
    }

    /// Whether the lease renews itself (keep the process alive for it).
    pub fn is_renewing(&self) -> bool {
        self.0.is_renewing()
    }

    /// Whether a request waits to be sent.
    pub fn has_request(&self) -> bool {
        self.0.has_request()
    }

    /// Milliseconds left at `now_ms` before the lock expires unless
    /// extended; 0 once lost or released.
    pub fn remaining_ms(&self, now_ms: f64) -> f64 {
        to_js_millis(self.0.remaining(instant(now_ms)))
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<f64> {
        self.0.poll_timeout().map(to_js_instant)
    }

    /// Advances to `now_ms`.
    pub fn handle_timeout(&mut self, now_ms: f64) {
        self.0.handle_timeout(instant(now_ms));
    }

    /// Asks to extend to `ttl_ms`; fails with `LockLost` if the lock is
    /// lost or released.
    pub fn extend(&mut self, now_ms: f64, ttl_ms: f64) -> Result<(), Error> {
        let ttl = millis("ttlMs", ttl_ms, false)?;
        Ok(self.0.extend(instant(now_ms), ttl)?)
    }

    /// Asks to release; false if released already.
    pub fn release(&mut self, now_ms: f64) -> bool {
        self.0.release(instant(now_ms))
    }

    /// The next request line to send for the lock `name`, if any.
    pub fn poll_request(&mut self, now_ms: f64, writer: &Writer, name: &str) -> Option<Vec<u8>> {
        let pending = self.0.poll_request(instant(now_ms))?;
        Some(write(&pending.request(&writer.core(), name)))
    }

    /// Reads the answer to the request in flight: `"extended"` or
    /// `"released"`, or the error (`LockLost` if the grant is gone).
    pub fn handle_response(&mut self, now_ms: f64, line: &mut [u8]) -> Result<&'static str, Error> {
        let now = instant(now_ms);
        let r = match Response::parse(line) {
            Ok((_, r)) => r,
            Err(e) => {
                // Nonsense is no answer: the request may be asked again.
                self.0.handle_failure(now);
                return Err(e.into());
            }
        };
        match self.0.handle_response(now, &r)? {
            Done::Extended => Ok("extended"),
            Done::Released => Ok("released"),
        }
    }

    /// The request in flight got no answer.
    pub fn handle_failure(&mut self, now_ms: f64) {
        self.0.handle_failure(instant(now_ms));
    }

    /// `"lost"`, once, when the lock is lost.
    pub fn poll_event(&mut self) -> Option<&'static str> {
        self.0.poll_event().map(|Event::Lost| "lost")
    }
}

/// What a `TestLock` found, for JavaScript.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockState {
    /// Nobody holds it.
    Free,
    /// This client holds it: the token (if the server gives them) and the
    /// time left (if it said).
    Mine(Option<u64>, Option<Ttl>),
    /// Someone else holds it, for about this long if the server said.
    Taken(Option<Ttl>),
}

/// The answer to `Unlock` by name: whether a lock was released.
pub fn released(line: &mut [u8]) -> Result<bool, Error> {
    Ok(answer::unlocked(&parse(line)?)?)
}

/// The answer to `TestLock`.
pub fn lock_state(line: &mut [u8]) -> Result<LockState, Error> {
    Ok(match answer::lock_state(&parse(line)?)? {
        CoreLockState::Free => LockState::Free,
        CoreLockState::Mine(g) => LockState::Mine(g.token.map(|Token(t)| t), g.ttl),
        CoreLockState::Taken(ttl) => LockState::Taken(ttl),
    })
}

/// What `Put` stored: the new revision (0 from a server that keeps none)
/// and its TTL (zero if the server did not say). `compared`: whether the
/// `Put` carried a revision.
pub fn stored(line: &mut [u8], compared: bool) -> Result<(u64, Ttl), Error> {
    let s = answer::stored(&parse(line)?, compared)?;
    Ok((s.revision.map_or(0, |r| r.0), s.ttl.unwrap_or(Ttl::ZERO)))
}

/// A value read by `Get`, still encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The stored text.
    pub data: String,
    /// Its revision (0 if the server sent none).
    pub revision: u64,
    /// Its remaining time to live (zero if the server sent none).
    pub ttl: Ttl,
}

/// The answer to `Get`: the stored text, or `None` if there is no entry.
pub fn fetched(line: &mut [u8]) -> Result<Option<Fetched>, Error> {
    let f = answer::fetched(&parse(line)?)?;
    Ok(f.map(|f| Fetched {
        data: f.data.to_owned(),
        revision: f.revision.map_or(0, |r| r.0),
        ttl: f.ttl.unwrap_or(Ttl::ZERO),
    }))
}

/// The answer to `Erase`: whether there was an entry.
pub fn erased(line: &mut [u8]) -> Result<bool, Error> {
    Ok(answer::erased(&parse(line)?)?)
}

/// The answer to `Version`: the server's version string.
pub fn version(line: &mut [u8]) -> Result<String, Error> {
    Ok(answer::version(&parse(line)?)?.to_owned())
}

/// The answer to `Stats`: every statistic this build knows, by name.
pub fn stats(line: &mut [u8]) -> Result<Vec<(&'static str, u64)>, Error> {
    let stats = answer::stats(line)?;
    Ok(stats.iter().map(|(s, v)| (s.name(), v)).collect())
}

/// The table codec: bytes to the text the server stores.
pub fn encode_table(plain: &[u8]) -> String {
    codec::encode(plain)
}

/// The table codec: stored text back to bytes.
pub fn decode_table(text: &str) -> Result<Vec<u8>, Error> {
    codec::decode(text.as_bytes()).map_err(|e| value::table_error(text, e).into())
}

/// A sealed-value key (XChaCha20-Poly1305, dlm-core's `seal`), wiped when
/// dropped.
pub struct Sealer {
    key: [u8; seal::KEY_LEN],
}

impl Sealer {
    /// A sealer with a key of exactly 32 bytes.
    pub fn new(key: &[u8]) -> Result<Self, Error> {
        let key = key
            .try_into()
            .map_err(|_| Error::invalid("a sealed encoder's key is 32 bytes"))?;
        Ok(Self { key })
    }

    /// Seals `plain` for the data key `name` with `nonce` (24 fresh random
    /// bytes: the caller draws them).
    pub fn seal(&self, nonce: &[u8], name: &str, plain: &[u8]) -> Result<String, Error> {
        let nonce: &[u8; seal::NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| Error::invalid("a nonce is 24 bytes"))?;
        Ok(seal::seal(&self.key, nonce, name, plain))
    }

    /// Opens a sealed value of the data key `name`.
    pub fn open(&self, name: &str, sealed: &str) -> Result<Vec<u8>, Error> {
        seal::open(&self.key, name, sealed).map_err(|e| value::sealed_error(sealed, e).into())
    }
}

impl core::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Sealer { key: <redacted> }")
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        self.key.fill(0);
        // Keep the wipe from being optimised away as a dead store.
        core::hint::black_box(&self.key);
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // exact whole milliseconds
mod tests {
    use super::*;
    use dlm_core::engine::{Config, Engine, Outcome, Principal};
    use dlm_core::limits::Limits;
    use dlm_core::time::Instant;

    /// Runs a request line through the real engine and returns the answer
    /// line, as a server would.
    fn serve(engine: &mut Engine, now: u64, mut line: Vec<u8>) -> Vec<u8> {
        let req = Request::parse(&mut line, &Limits::DEFAULT).unwrap();
        let mut answer = Vec::new();
        let now = Instant::from_millis(now);
        match engine.handle(now, &req.command, Principal::Anonymous, 0, &mut |_| {}) {
            Outcome::Reply(r) => r.write(req.framing, &mut answer).unwrap(),
            Outcome::Queued(_) => panic!("the engine queued a request that should be answered"),
        }
        answer
    }

    /// The line as bytes, for a parser that reads in place.
    fn answer(text: &str) -> Vec<u8> {
        text.as_bytes().to_vec()
    }

    #[test]
    fn every_request_round_trips_through_the_engine() {
        for legacy in [false, true] {
            let mut e = Engine::new(Config::default());
            let a = Writer::new("a".into(), legacy, None).unwrap();
            let b = Writer::new("b".into(), legacy, None).unwrap();

            let acq = Acquisition::new(1000.0, 0.0, false, 0.0).unwrap();
            let mut lease = acq
                .finish(0.0, &mut serve(&mut e, 0, acq.request(&a, "L").unwrap()))
                .unwrap();
            let token = lease.token().unwrap();
            assert_eq!(lease.remaining_ms(0.0), 1000.0);
            let other = Acquisition::new(1000.0, 0.0, false, 1.0).unwrap();
            let err = other
                .finish(1.0, &mut serve(&mut e, 1, other.request(&b, "L").unwrap()))
                .unwrap_err();
            assert_eq!(err.code(), "NotOwner");
            assert_eq!(
                lock_state(&mut serve(&mut e, 1, a.test_lock("L").unwrap())),
                Ok(LockState::Mine(Some(token), Some(Ttl::from_millis(999))))
            );
            assert!(matches!(
                lock_state(&mut serve(&mut e, 1, b.test_lock("L").unwrap())),
                Ok(LockState::Taken(Some(_)))
            ));
            lease.extend(2.0, 5000.0).unwrap();
            let line = lease.poll_request(2.0, &a, "L").unwrap();
            assert_eq!(
                lease.handle_response(2.0, &mut serve(&mut e, 2, line)),
                Ok("extended")
            );
            assert_eq!(lease.remaining_ms(2.0), 5000.0);
            assert_eq!(
                released(&mut serve(&mut e, 3, b.unlock("L", None).unwrap()))
                    .unwrap_err()
                    .code(),
                "NotOwner"
            );
            assert!(lease.release(3.0));
            let line = lease.poll_request(3.0, &a, "L").unwrap();
            assert_eq!(
                lease.handle_response(3.0, &mut serve(&mut e, 3, line)),
                Ok("released")
            );
            assert!(lease.is_released());
            assert_eq!(
                released(&mut serve(&mut e, 3, a.unlock("L", Some(token)).unwrap())),
                Ok(false)
            );
            assert_eq!(
                lock_state(&mut serve(&mut e, 3, a.test_lock("L").unwrap())),
                Ok(LockState::Free)
            );

            let v = encode_table(b"hello");
            let (rev, ttl) = stored(
                &mut serve(&mut e, 4, a.put("K", 60_000.0, &v, None).unwrap()),
                false,
            )
            .unwrap();
            assert_eq!((rev, ttl), (1, Ttl::from_millis(60_000)));
            let err = stored(
                &mut serve(&mut e, 4, a.put("K", 60_000.0, &v, Some(7)).unwrap()),
                true,
            )
            .unwrap_err();
            assert_eq!((err.code(), err.current()), ("Conflict", Some(1)));
            let f = fetched(&mut serve(&mut e, 5, a.get("K").unwrap()))
                .unwrap()
                .unwrap();
            assert_eq!(decode_table(&f.data).unwrap(), b"hello");
            assert_eq!(f.revision, 1);
            assert_eq!(
                fetched(&mut serve(&mut e, 5, b.get("K").unwrap()))
                    .unwrap_err()
                    .code(),
                "NotOwner"
            );
            assert_eq!(
                erased(&mut serve(&mut e, 6, a.erase("K").unwrap())),
                Ok(true)
            );
            assert_eq!(
                erased(&mut serve(&mut e, 6, a.erase("K").unwrap())),
                Ok(false)
            );
            assert_eq!(
                fetched(&mut serve(&mut e, 6, a.get("K").unwrap())),
                Ok(None)
            );
            assert!(
                version(&mut serve(&mut e, 7, a.version()))
                    .unwrap()
                    .contains("JackrabbitDLM")
            );
        }
    }

    #[test]
    fn a_lease_is_lost_at_its_deadline_and_a_refused_extension_says_so() {
        let acq = Acquisition::new(100.0, 0.0, false, 10.4).unwrap();
        let mut lease = acq
            .finish(
                12.0,
                &mut answer(r#"{"Status":"Locked","Token":5,"Expire":0.1}"#),
            )
            .unwrap();
        assert_eq!(lease.poll_timeout(), Some(110.0));
        lease.handle_timeout(110.0);
        assert!(lease.is_lost());
        assert_eq!(lease.poll_event(), Some("lost"));
        assert_eq!(lease.poll_event(), None);
        assert_eq!(lease.extend(111.0, 100.0).unwrap_err().code(), "LockLost");

        let mut lease = acq
            .finish(12.0, &mut answer(r#"{"Status":"Locked","Token":5}"#))
            .unwrap();
        lease.extend(20.0, 100.0).unwrap();
        let w = Writer::new("a".into(), false, None).unwrap();
        let line = lease.poll_request(20.0, &w, "L").unwrap();
        assert!(String::from_utf8(line).unwrap().contains(r#""Token":5"#));
        let e = lease
            .handle_response(21.0, &mut answer(r#"{"Status":"NotOwner"}"#))
            .unwrap_err();
        assert_eq!(e.code(), "LockLost");
        assert_eq!(lease.poll_event(), Some("lost"));
    }

    #[test]
    fn jackrabbit_answers() {
        // No token, no Expire: a lease at the asked TTL, with no token.
        let acq = Acquisition::new(1000.0, 0.0, true, 0.0).unwrap();
        let lease = acq
            .finish(1.0, &mut answer(r#"{"Status":"Locked","ID":"a"}"#))
            .unwrap();
        assert_eq!((lease.token(), lease.ttl_ms()), (None, 1000.0));
        // A wait answered at once: no queue there, so not a timeout.
        let acq = Acquisition::new(1000.0, 5000.0, false, 0.0).unwrap();
        assert_eq!(
            acq.finish(3.0, &mut answer(r#"{"Status":"NotOwner"}"#))
                .unwrap_err()
                .code(),
            "NotOwner"
        );
        assert_eq!(
            acq.finish(5000.0, &mut answer(r#"{"Status":"NotOwner"}"#))
                .unwrap_err()
                .code(),
            "Timeout"
        );
        // Put: no revision; a compare-and-set that was not compared fails.
        let done = r#"{"Status":"Done","ID":"a"}"#;
        assert_eq!(stored(&mut answer(done), false), Ok((0, Ttl::ZERO)));
        assert_eq!(
            stored(&mut answer(done), true).unwrap_err().code(),
            "Protocol"
        );
    }

    #[test]
    fn a_refused_wait_is_a_timeout() {
        let acq = Acquisition::new(1000.0, 200.0, false, 0.0).unwrap();
        let line = || answer(r#"{"Status":"NotOwner"}"#);
        assert_eq!(
            acq.finish(250.0, &mut line()).unwrap_err().code(),
            "Timeout"
        );
        let once = Acquisition::new(1000.0, 0.0, false, 0.0).unwrap();
        assert_eq!(
            once.finish(250.0, &mut line()).unwrap_err().code(),
            "NotOwner"
        );
        assert_eq!(
            acq.finish(250.0, &mut answer(r#"{"Status":"NO"}"#))
                .unwrap_err()
                .code(),
            "NoMemory"
        );
        let e = acq
            .finish(
                250.0,
                &mut answer(r#"{"Status":"BadPayload","Error":"field Expire must be positive"}"#),
            )
            .unwrap_err();
        assert_eq!(e.to_string(), "bad request: field Expire must be positive");
    }

    #[test]
    fn stats_and_garbage_answers() {
        let mut line = br#"{"Status":"Done","Stats":{"AWait":2,"Lock":5,"Unknown":1}}"#.to_vec();
        let s = stats(&mut line).unwrap();
        assert!(s.contains(&("AWait", 2)));
        assert!(s.contains(&("Lock", 5)));
        let acq = Acquisition::new(1000.0, 0.0, false, 0.0).unwrap();
        for garbage in [&b""[..], b"not json", b"{\"Status\":\"Bogus\"}"] {
            let e = acq.finish(0.0, &mut garbage.to_vec()).unwrap_err();
            assert_eq!(e.code(), "Protocol", "{garbage:?}");
        }
        assert_eq!(
            stats(&mut br#"{"Status":"Done"}"#.to_vec())
                .unwrap_err()
                .code(),
            "Protocol"
        );
        assert_eq!(
            stats(&mut br#"{"Status":"BadAction"}"#.to_vec())
                .unwrap_err()
                .code(),
            "BadRequest"
        );
    }

    #[test]
    fn bad_arguments_are_refused_before_anything_is_written() {
        let w = Writer::new("a".into(), false, None).unwrap();
        let lock =
            |ttl, wait| Acquisition::new(ttl, wait, false, 0.0).and_then(|a| a.request(&w, "L"));
        for (ttl, wait) in [
            (0.0, 0.0),
            (-1.0, 0.0),
            (f64::NAN, 0.0),
            (f64::INFINITY, 0.0),
            (1.0, -1.0),
            (1e300, 0.0),
        ] {
            assert_eq!(
                lock(ttl, wait).unwrap_err().code(),
                "InvalidArgument",
                "{ttl} {wait}"
            );
        }
        let acq = Acquisition::new(1.0, 0.0, false, 0.0).unwrap();
        assert_eq!(acq.request(&w, "").unwrap_err().code(), "InvalidArgument");
        assert_eq!(
            w.put("K", 0.0, "", None).unwrap_err().code(),
            "InvalidArgument"
        );
        assert!(Writer::new(String::new(), false, None).is_err());
        assert!(Writer::new("a".into(), false, Some(("n".into(), String::new()))).is_err());
        // Fractions of a millisecond round up, as the protocol does.
        let line = lock(0.2, 1500.5).unwrap();
        let text = String::from_utf8(line).unwrap();
        assert!(text.contains(r#""Expire":0.001"#), "{text}");
        assert!(text.contains(r#""Wait":1.501"#), "{text}");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn table_codec_vectors() {
        assert_eq!(encode_table(b"{"), "a^");
        assert_eq!(encode_table(&[0, 255]), "1128");
        assert_eq!(
            encode_table(br#"{"Status":"Locked"}"#),
            "a^1laBaMagaMa$am1l1t1l1za@a8aJaHah1laP"
        );
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode_table(&encode_table(&all)).unwrap(), all);
        assert_eq!(decode_table("a^2").unwrap_err().code(), "Encoding");
        let sealed = Sealer::new(&[9; 32])
            .unwrap()
            .seal(&[1; 24], "k", b"x")
            .unwrap();
        let e = decode_table(&sealed).unwrap_err().to_string();
        assert!(e.contains("written with the sealed encoder"), "{e}");
    }

    #[test]
    fn sealer_checks_its_inputs() {
        assert!(Sealer::new(&[0; 31]).is_err());
        let s = Sealer::new(&[9; 32]).unwrap();
        assert_eq!(
            s.seal(&[1; 23], "k", b"x").unwrap_err().code(),
            "InvalidArgument"
        );
        let sealed = s.seal(&[1; 24], "k", b"x").unwrap();
        assert_eq!(sealed, seal::seal(&[9; 32], &[1; 24], "k", b"x"));
        assert_eq!(s.open("k", &sealed).unwrap(), b"x");
        assert_eq!(s.open("j", &sealed).unwrap_err().code(), "Encoding");
        assert_eq!(format!("{s:?}"), "Sealer { key: <redacted> }");
    }
}
