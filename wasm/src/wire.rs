//! The pure half of the module: request lines out, typed answers in, and the
//! value encoders, all over dlm-core. Nothing here touches JavaScript, so
//! it is tested on the host like any Rust code; `bindings` only converts.

use dlm_core::client::{self as core_client, LockState as CoreLockState, Refusal};
use dlm_core::protocol::{Credentials, Framing, Request, Response, Revision, Token};
use dlm_core::time::Ttl;
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

    fn core(&self) -> core_client::Client<'_> {
        let c = core_client::Client::new(&self.id).with_framing(self.framing);
        match &self.credentials {
            Some((name, secret)) => c.with_credentials(Credentials { name, secret }),
            None => c,
        }
    }

    /// `Lock` for `ttl_ms`; with `wait_ms` > 0, queue that long.
    pub fn lock(&self, name: &str, ttl_ms: f64, wait_ms: f64) -> Result<Vec<u8>, Error> {
        check_name(name)?;
        let ttl = millis("ttlMs", ttl_ms, false)?;
        let wait = millis("waitMs", wait_ms, true)?;
        Ok(write(&self.core().lock_wait(name, ttl, wait)))
    }

    /// `Lock` with `Token`: extend grant `token` to `ttl_ms` from now.
    pub fn extend(&self, name: &str, ttl_ms: f64, token: u64) -> Result<Vec<u8>, Error> {
        check_name(name)?;
        let ttl = millis("ttlMs", ttl_ms, false)?;
        Ok(write(&self.core().extend(name, ttl, Token(token))))
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

/// A grant: the fencing token and the TTL from the server's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The fencing token.
    pub token: u64,
    /// Time to live when the server answered.
    pub ttl: Ttl,
}

impl From<core_client::Grant> for Grant {
    fn from(g: core_client::Grant) -> Self {
        Self {
            token: g.token.0,
            ttl: g.ttl,
        }
    }
}

/// The answer to `Lock`. Another owner's lock is [`Error::NotOwner`] after
/// one attempt and [`Error::Timeout`] after a wait.
pub fn grant(line: &mut [u8], waited: bool) -> Result<Grant, Error> {
    match parse(line)?.grant() {
        Ok(g) => Ok(g.into()),
        Err(Refusal::NotOwner) if waited => Err(Error::Timeout),
        Err(r) => Err(Error::refused(r)),
    }
}

/// The answer to an extension: a refusal means the grant is gone
/// ([`Error::LockLost`]); an extension never re-acquires.
pub fn extended(line: &mut [u8]) -> Result<Grant, Error> {
    match parse(line)?.grant() {
        Ok(g) => Ok(g.into()),
        Err(Refusal::NotOwner) => Err(Error::LockLost),
        Err(r) => Err(Error::refused(r)),
    }
}

/// The answer to `Unlock` from a held lock: nothing live, or another
/// grant, means the lock had been lost ([`Error::LockLost`]).
pub fn lock_released(line: &mut [u8]) -> Result<(), Error> {
    match parse(line)?.released() {
        Ok(true) => Ok(()),
        Ok(false) | Err(Refusal::NotOwner) => Err(Error::LockLost),
        Err(r) => Err(Error::refused(r)),
    }
}

/// The answer to `Unlock` by name: whether a lock was released.
pub fn released(line: &mut [u8]) -> Result<bool, Error> {
    parse(line)?.released().map_err(Error::refused)
}

/// What `TestLock` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockState {
    /// Nobody holds it.
    Free,
    /// This client holds it.
    Mine(Grant),
    /// Someone else holds it, for about this long if the server said.
    Taken(Option<Ttl>),
}

/// The answer to `TestLock`.
pub fn lock_state(line: &mut [u8]) -> Result<LockState, Error> {
    Ok(match parse(line)?.lock_state().map_err(Error::refused)? {
        CoreLockState::Free => LockState::Free,
        CoreLockState::Mine(g) => LockState::Mine(g.into()),
        CoreLockState::Taken(ttl) => LockState::Taken(ttl),
    })
}

/// What `Put` stored: the new revision and its TTL.
pub fn stored(line: &mut [u8]) -> Result<(u64, Ttl), Error> {
    let s = parse(line)?.stored().map_err(Error::refused)?;
    Ok((s.revision.0, s.ttl))
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
    let f = parse(line)?.fetched().map_err(Error::refused)?;
    Ok(f.map(|f| Fetched {
        data: f.data.to_owned(),
        revision: f.revision.map_or(0, |r| r.0),
        ttl: f.ttl.unwrap_or(Ttl::ZERO),
    }))
}

/// The answer to `Erase`: whether there was an entry.
pub fn erased(line: &mut [u8]) -> Result<bool, Error> {
    parse(line)?.erased().map_err(Error::refused)
}

/// The answer to `Version`: the server's version string.
pub fn version(line: &mut [u8]) -> Result<String, Error> {
    parse(line)?
        .version()
        .map(str::to_owned)
        .map_err(Error::refused)
}

/// The answer to `Stats`: every statistic this build knows, by name.
pub fn stats(line: &mut [u8]) -> Result<Vec<(&'static str, u64)>, Error> {
    let stats = Response::parse_stats(line)?;
    Ok(stats.iter().map(|(s, v)| (s.name(), v)).collect())
}

/// The table codec: bytes to the text the server stores.
pub fn encode_table(plain: &[u8]) -> String {
    codec::encode(plain)
}

/// The table codec: stored text back to bytes.
pub fn decode_table(text: &str) -> Result<Vec<u8>, Error> {
    Ok(codec::decode(text.as_bytes())?)
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
        Ok(seal::open(&self.key, name, sealed)?)
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

    #[test]
    fn every_request_round_trips_through_the_engine() {
        for legacy in [false, true] {
            let mut e = Engine::new(Config::default());
            let a = Writer::new("a".into(), legacy, None).unwrap();
            let b = Writer::new("b".into(), legacy, None).unwrap();

            let g = grant(
                &mut serve(&mut e, 0, a.lock("L", 1000.0, 0.0).unwrap()),
                false,
            )
            .unwrap();
            assert_eq!(g.ttl, Ttl::from_millis(1000));
            let err = grant(
                &mut serve(&mut e, 1, b.lock("L", 1000.0, 0.0).unwrap()),
                false,
            );
            assert_eq!(err, Err(Error::NotOwner));
            assert_eq!(
                lock_state(&mut serve(&mut e, 1, a.test_lock("L").unwrap())),
                Ok(LockState::Mine(Grant {
                    token: g.token,
                    ttl: Ttl::from_millis(999)
                }))
            );
            assert!(matches!(
                lock_state(&mut serve(&mut e, 1, b.test_lock("L").unwrap())),
                Ok(LockState::Taken(Some(_)))
            ));
            let x = extended(&mut serve(
                &mut e,
                2,
                a.extend("L", 5000.0, g.token).unwrap(),
            ))
            .unwrap();
            assert_eq!(x.token, g.token);
            assert_eq!(
                extended(&mut serve(
                    &mut e,
                    2,
                    a.extend("L", 5000.0, g.token + 1).unwrap()
                )),
                Err(Error::LockLost)
            );
            assert_eq!(
                released(&mut serve(&mut e, 3, b.unlock("L", None).unwrap())),
                Err(Error::NotOwner)
            );
            assert_eq!(
                lock_released(&mut serve(&mut e, 3, a.unlock("L", Some(g.token)).unwrap())),
                Ok(())
            );
            assert_eq!(
                lock_released(&mut serve(&mut e, 3, a.unlock("L", Some(g.token)).unwrap())),
                Err(Error::LockLost)
            );
            assert_eq!(
                released(&mut serve(&mut e, 3, a.unlock("L", None).unwrap())),
                Ok(false)
            );
            assert_eq!(
                lock_state(&mut serve(&mut e, 3, a.test_lock("L").unwrap())),
                Ok(LockState::Free)
            );

            let v = encode_table(b"hello");
            let (rev, ttl) = stored(&mut serve(
                &mut e,
                4,
                a.put("K", 60_000.0, &v, None).unwrap(),
            ))
            .unwrap();
            assert_eq!((rev, ttl), (1, Ttl::from_millis(60_000)));
            assert_eq!(
                stored(&mut serve(
                    &mut e,
                    4,
                    a.put("K", 60_000.0, &v, Some(7)).unwrap()
                )),
                Err(Error::Conflict { current: 1 })
            );
            let f = fetched(&mut serve(&mut e, 5, a.get("K").unwrap()))
                .unwrap()
                .unwrap();
            assert_eq!(decode_table(&f.data).unwrap(), b"hello");
            assert_eq!(f.revision, 1);
            assert_eq!(
                fetched(&mut serve(&mut e, 5, b.get("K").unwrap())),
                Err(Error::NotOwner)
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
    fn a_refused_wait_is_a_timeout() {
        let mut line = br#"{"Status":"NotOwner"}"#.to_vec();
        assert_eq!(grant(&mut line.clone(), true), Err(Error::Timeout));
        assert_eq!(grant(&mut line, false), Err(Error::NotOwner));
        let mut no = br#"{"Status":"NO"}"#.to_vec();
        assert_eq!(grant(&mut no, true), Err(Error::NoMemory));
        let mut bad =
            br#"{"Status":"BadPayload","Error":"field Expire must be positive"}"#.to_vec();
        assert_eq!(
            grant(&mut bad, false),
            Err(Error::BadRequest("field Expire must be positive".into()))
        );
    }

    #[test]
    fn stats_and_garbage_answers() {
        let mut line = br#"{"Status":"Done","Stats":{"AWait":2,"Lock":5,"Unknown":1}}"#.to_vec();
        let s = stats(&mut line).unwrap();
        assert!(s.contains(&("AWait", 2)));
        assert!(s.contains(&("Lock", 5)));
        for garbage in [
            &b""[..],
            b"not json",
            b"{\"Status\":\"Bogus\"}",
            b"{\"Status\":\"Locked\"}",
        ] {
            let e = grant(&mut garbage.to_vec(), false).unwrap_err();
            assert_eq!(e.code(), "Protocol", "{garbage:?}");
        }
        assert_eq!(
            stats(&mut br#"{"Status":"Done"}"#.to_vec())
                .unwrap_err()
                .code(),
            "Protocol"
        );
    }

    #[test]
    fn bad_arguments_are_refused_before_anything_is_written() {
        let w = Writer::new("a".into(), false, None).unwrap();
        for (ttl, wait) in [
            (0.0, 0.0),
            (-1.0, 0.0),
            (f64::NAN, 0.0),
            (f64::INFINITY, 0.0),
            (1.0, -1.0),
            (1e300, 0.0),
        ] {
            assert_eq!(
                w.lock("L", ttl, wait).unwrap_err().code(),
                "InvalidArgument",
                "{ttl} {wait}"
            );
        }
        assert_eq!(w.lock("", 1.0, 0.0).unwrap_err().code(), "InvalidArgument");
        assert_eq!(
            w.put("K", 0.0, "", None).unwrap_err().code(),
            "InvalidArgument"
        );
        assert!(Writer::new(String::new(), false, None).is_err());
        assert!(Writer::new("a".into(), false, Some(("n".into(), String::new()))).is_err());
        // Fractions of a millisecond round up, as the protocol does.
        let line = w.lock("L", 0.2, 1500.5).unwrap();
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
