//! The pure half of the module: request lines out, typed answers in, and the
//! value encoders, all over dlm-core. Nothing here touches JavaScript, so
//! it is tested on the host like any Rust code; `bindings` only converts.

use dlm_core::client::{
    self as core_client, Acquire, AcquireAll, Done, Event, Lease as CoreLease,
    LockState as CoreLockState, Pending, answer, value,
};
use dlm_core::protocol::{
    ClusterOp, Credentials, Framing, MAX_LOCK_ALL, Names, ReaderNames, Readers, Request, Response,
    Revision, Shape, Token,
};
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

/// What a lock request takes, as a number from JavaScript: `0` the name's
/// exclusive lock, `-1` the shared (read) side of a read/write lock, `-2`
/// its exclusive (write) side, `N` (1 to 2^32-1) one permit of a counting
/// semaphore of N permits.
// Exact comparisons are meant: the codes are whole numbers JavaScript sends.
#[allow(clippy::float_cmp)]
pub(crate) fn shape(code: f64) -> Result<Option<Shape>, Error> {
    if code == 0.0 {
        return Ok(None);
    }
    if code == -1.0 {
        return Ok(Some(Shape::Read));
    }
    if code == -2.0 {
        return Ok(Some(Shape::Write));
    }
    if code.fract() == 0.0 && (1.0..=f64::from(u32::MAX)).contains(&code) {
        // A whole number in u32's range: the cast is exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let permits = code as u32;
        return Ok(Some(Shape::Semaphore { permits }));
    }
    Err(Error::invalid(format!(
        "permits must be a whole number from 1 to 4294967295, not {code}"
    )))
}

/// Milliseconds for JavaScript (exact below 2^53, which covers every TTL a
/// server grants).
#[allow(clippy::cast_precision_loss)]
pub(crate) fn to_js_millis(ttl: Ttl) -> f64 {
    ttl.as_millis() as f64
}

pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        Err(Error::invalid("a name must not be empty"))
    } else {
        Ok(())
    }
}

/// Appends `req`'s line to `out`.
pub(crate) fn write(req: &Request<'_>, out: &mut Vec<u8>) {
    // Writing into a Vec grows it; it cannot run out of room.
    let _ = req.write(out);
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

    // Each request is handed to `send` (which starts its call and writes
    // it) whole, or not at all: arguments are checked first.

    /// `Unlock`, fenced to grant `token` if given.
    pub fn unlock<R>(
        &self,
        name: &str,
        token: Option<u64>,
        send: impl FnOnce(&Request<'_>) -> R,
    ) -> Result<R, Error> {
        check_name(name)?;
        Ok(send(&self.core().unlock(name, token.map(Token))))
    }

    /// `TestLock`.
    pub fn test_lock<R>(
        &self,
        name: &str,
        send: impl FnOnce(&Request<'_>) -> R,
    ) -> Result<R, Error> {
        check_name(name)?;
        Ok(send(&self.core().test_lock(name)))
    }

    /// `Put` of an encoded value; compare-and-set if `revision` is given;
    /// readable by `readers` besides its owner (`None` its owner only,
    /// `""` any client, else identity names joined by `,`).
    pub fn put<R>(
        &self,
        name: &str,
        ttl_ms: f64,
        data: &str,
        revision: Option<u64>,
        readers: Option<&str>,
        send: impl FnOnce(&Request<'_>) -> R,
    ) -> Result<R, Error> {
        check_name(name)?;
        let ttl = millis("ttlMs", ttl_ms, false)?;
        let readers = self::readers(readers)?;
        Ok(send(&self.core().put_shared(
            name,
            ttl,
            data,
            revision.map(Revision),
            readers,
        )))
    }

    /// `Get`.
    pub fn get<R>(&self, name: &str, send: impl FnOnce(&Request<'_>) -> R) -> Result<R, Error> {
        check_name(name)?;
        Ok(send(&self.core().get(name)))
    }

    /// `Erase`.
    pub fn erase<R>(&self, name: &str, send: impl FnOnce(&Request<'_>) -> R) -> Result<R, Error> {
        check_name(name)?;
        Ok(send(&self.core().erase(name)))
    }

    /// `Version`.
    pub fn version<R>(&self, send: impl FnOnce(&Request<'_>) -> R) -> R {
        send(&self.core().version())
    }

    /// `Stats`.
    pub fn stats<R>(&self, send: impl FnOnce(&Request<'_>) -> R) -> R {
        send(&self.core().stats())
    }

    /// `{"Action":"Cluster"}`: who leads, and where the members are.
    pub fn cluster<R>(&self, send: impl FnOnce(&Request<'_>) -> R) -> R {
        send(&self.core().cluster(ClusterOp::Status))
    }
}

/// Who may read a value besides its owner, as JavaScript passes it:
/// `None` its owner only, `""` any client, else identity names joined by
/// `,` (each checked: `InvalidArgument` for a list that is too long or a
/// name no identity may have).
pub(crate) fn readers(joined: Option<&str>) -> Result<Readers<'_>, Error> {
    match joined {
        None => Ok(Readers::Owner),
        Some("") => Ok(Readers::Any),
        Some(names) => ReaderNames::new(names).map(Readers::Named).map_err(|e| {
            Error::invalid(format!(
                "readers must be \"any\" or 1 to 32 identity names (ASCII letters, digits, '-', '_', '.'): {e}"
            ))
        }),
    }
}

/// The names of a `LockAll`, checked: 1 to [`MAX_LOCK_ALL`], none empty,
/// no two alike (`InvalidArgument`).
pub(crate) fn lock_all_names(names: &[String]) -> Result<Vec<&str>, Error> {
    if names.is_empty() || names.len() > MAX_LOCK_ALL {
        return Err(Error::invalid(format!(
            "lockAll takes 1 to {MAX_LOCK_ALL} names, not {}",
            names.len()
        )));
    }
    let mut list: Vec<&str> = Vec::with_capacity(names.len());
    for name in names {
        check_name(name)?;
        if list.contains(&name.as_str()) {
            return Err(Error::invalid(format!("lockAll names {name:?} twice")));
        }
        list.push(name);
    }
    Ok(list)
}

/// One attempt to take several locks at once: dlm-core's [`AcquireAll`].
#[derive(Clone, Copy, Debug)]
pub struct AcquisitionAll(AcquireAll);

impl AcquisitionAll {
    /// Locks for `ttl_ms`, queueing up to `wait_ms` (0: one attempt),
    /// renewing themselves if `auto_renew`; the request is sent at `now_ms`.
    pub fn new(ttl_ms: f64, wait_ms: f64, auto_renew: bool, now_ms: f64) -> Result<Self, Error> {
        let ttl = millis("ttlMs", ttl_ms, false)?;
        let wait = millis("waitMs", wait_ms, true)?;
        Ok(Self(AcquireAll::new(
            ttl,
            Some(wait),
            auto_renew,
            instant(now_ms),
        )))
    }

    /// Hands the `LockAll` request for `names` (checked) to `send`.
    pub fn request<R>(
        &self,
        writer: &Writer,
        names: &[String],
        send: impl FnOnce(&Request<'_>) -> R,
    ) -> Result<R, Error> {
        let list = lock_all_names(names)?;
        let names = Names::new(&list)
            .ok_or_else(|| Error::invalid(format!("lockAll takes at most {MAX_LOCK_ALL} names")))?;
        Ok(send(&self.0.request(&writer.core(), names)))
    }

    /// Reads the answer to a request of `count` names, received at
    /// `now_ms`: one lease per name, in the order of the request; or why
    /// there are none (`NotOwner`; `Timeout` if a wait ran out).
    pub fn finish(&self, now_ms: f64, count: usize, line: &mut [u8]) -> Result<Vec<Lease>, Error> {
        let r = parse(line)?;
        let granted = self.0.handle_response(instant(now_ms), &r, count)?;
        Ok(granted.leases().map(Lease).collect())
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
    /// `shape`: what it takes (0 the exclusive lock, -1 read, -2 write, N
    /// a permit of an N-permit semaphore).
    pub fn new(
        ttl_ms: f64,
        wait_ms: f64,
        auto_renew: bool,
        now_ms: f64,
        shape: f64,
    ) -> Result<Self, Error> {
        let ttl = millis("ttlMs", ttl_ms, false)?;
        let wait = millis("waitMs", wait_ms, true)?;
        let acquire = Acquire::new(ttl, Some(wait), auto_renew, instant(now_ms));
        Ok(Self(match self::shape(shape)? {
            Some(s) => acquire.with_shape(s),
            None => acquire,
        }))
    }

    /// Whether it waits in the server's queue.
    pub fn waits(&self) -> bool {
        self.0.wait().is_some()
    }

    /// Hands the `Lock` request for `name` to `send`.
    pub fn request<R>(
        &self,
        writer: &Writer,
        name: &str,
        send: impl FnOnce(&Request<'_>) -> R,
    ) -> Result<R, Error> {
        check_name(name)?;
        Ok(send(&self.0.request(&writer.core(), name)))
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

    /// Hands the next request to send for the lock `name` to `send`, if
    /// there is one, with what it is (its deadline and whether it is a
    /// release, for its call).
    pub fn poll_request<R>(
        &mut self,
        now_ms: f64,
        writer: &Writer,
        name: &str,
        send: impl FnOnce(&Request<'_>, &Pending) -> R,
    ) -> Option<R> {
        let pending = self.0.poll_request(instant(now_ms))?;
        Some(send(&pending.request(&writer.core(), name), &pending))
    }

    /// Reads the answer to the request in flight: what it did, or the
    /// error (`LockLost` if the grant is gone).
    pub fn handle_response(&mut self, now_ms: f64, line: &mut [u8]) -> Result<Done, Error> {
        let now = instant(now_ms);
        let r = match Response::parse(line) {
            Ok((_, r)) => r,
            Err(e) => {
                // Nonsense is no answer: the request may be asked again.
                self.0.handle_failure(now);
                return Err(e.into());
            }
        };
        Ok(self.0.handle_response(now, &r)?)
    }

    /// The request in flight got no answer.
    pub fn handle_failure(&mut self, now_ms: f64) {
        self.0.handle_failure(instant(now_ms));
    }

    /// The next request could not even be sent (no connection): it fails
    /// as if sent and unanswered, so a renewal retries later and a release
    /// waits to be asked for again.
    pub fn handle_unsent(&mut self, now_ms: f64) {
        let now = instant(now_ms);
        if self.0.poll_request(now).is_some() {
            self.0.handle_failure(now);
        }
    }

    /// Whether the lock was lost since the last call: true once.
    pub fn poll_lost(&mut self) -> bool {
        matches!(self.0.poll_event(), Some(Event::Lost))
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

/// How the stored text of a `Get` becomes the value's bytes.
#[derive(Clone, Copy, Debug)]
pub enum Decode<'k> {
    /// Not at all: the text's own UTF-8 bytes, for an encoder written in
    /// JavaScript to decode.
    Text,
    /// The table codec (the default encoder).
    Table,
    /// Opened with a sealed encoder's key; the name is the data key's.
    Sealed(&'k Sealer, &'k str),
}

/// A value read by `Get`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The value's bytes, decoded as asked.
    pub value: Vec<u8>,
    /// Its revision (0 if the server sent none).
    pub revision: u64,
    /// Its remaining time to live (zero if the server sent none).
    pub ttl: Ttl,
    /// Its owner's ID, if the server said.
    pub owner: Option<String>,
}

/// The answer to `Get`: the value, or `None` if there is no entry.
pub fn fetched(line: &mut [u8], decode: Decode<'_>) -> Result<Option<Fetched>, Error> {
    let Some(f) = answer::fetched(&parse(line)?)? else {
        return Ok(None);
    };
    let value = match decode {
        Decode::Text => f.data.as_bytes().to_vec(),
        Decode::Table => decode_table(f.data)?,
        Decode::Sealed(sealer, name) => sealer.open(name, f.data)?,
    };
    Ok(Some(Fetched {
        value,
        revision: f.revision.map_or(0, |r| r.0),
        ttl: f.ttl.unwrap_or(Ttl::ZERO),
        owner: f.owner.map(str::to_owned),
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
    let mut text = String::new();
    encode_table_into(plain, &mut text);
    text
}

/// The table codec into `text` (cleared first, its capacity reused).
pub fn encode_table_into(plain: &[u8], text: &mut String) {
    text.clear();
    text.reserve(codec::encoded_len(plain.len()));
    for &b in plain {
        let [hi, lo] = codec::encode_byte(b);
        text.push(char::from(hi));
        text.push(char::from(lo));
    }
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
        let mut text = String::new();
        self.seal_into(nonce, name, plain, &mut text)?;
        Ok(text)
    }

    /// [`seal`](Self::seal) into `text` (cleared first, its capacity reused).
    pub fn seal_into(
        &self,
        nonce: &[u8],
        name: &str,
        plain: &[u8],
        text: &mut String,
    ) -> Result<(), Error> {
        let nonce: &[u8; seal::NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| Error::invalid("a nonce is 24 bytes"))?;
        let mut buf = core::mem::take(text).into_bytes();
        buf.clear();
        buf.resize(seal::sealed_len(plain.len()), 0);
        // The buffer is exactly large enough; a name too long to be bound
        // as associated data is the only failure left.
        let n = seal::seal_into(&self.key, nonce, name, plain, &mut buf)
            .map_err(|e| Error::invalid(format!("cannot seal: {e}")))?;
        buf.truncate(n);
        // Sealed text is ASCII (a prefix and base64).
        *text = String::from_utf8(buf).map_err(|_| Error::invalid("cannot seal"))?;
        Ok(())
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
mod tests {
    use super::*;

    #[test]
    fn shapes_cross_as_numbers() {
        assert_eq!(shape(0.0).unwrap(), None);
        assert_eq!(shape(-1.0).unwrap(), Some(Shape::Read));
        assert_eq!(shape(-2.0).unwrap(), Some(Shape::Write));
        assert_eq!(shape(3.0).unwrap(), Some(Shape::Semaphore { permits: 3 }));
        assert_eq!(
            shape(4_294_967_295.0).unwrap(),
            Some(Shape::Semaphore { permits: u32::MAX })
        );
        for bad in [0.5, -3.0, 4_294_967_296.0, f64::NAN, f64::INFINITY] {
            assert!(shape(bad).is_err(), "{bad}");
        }
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
        assert_eq!(encode_table(&all), codec::encode(&all));
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
        let mut reused = String::from("old text");
        s.seal_into(&[1; 24], "k", b"x", &mut reused).unwrap();
        assert_eq!(reused, sealed);
        assert_eq!(s.open("k", &sealed).unwrap(), b"x");
        assert_eq!(s.open("j", &sealed).unwrap_err().code(), "Encoding");
        assert_eq!(format!("{s:?}"), "Sealer { key: <redacted> }");
    }
}
