//! The exports JavaScript sees: thin conversions between [`crate::wire`]
//! and JS values. Every export returns `Result<_, Error>`, so a failure is
//! a thrown `DlmError` subclass; nothing here can panic on any input.

use js_sys::{BigInt, Object, Reflect};
use wasm_bindgen::prelude::*;

use dlm_core::client::ErrorKind;

use crate::error::Error;
use crate::wire::{
    self, Acquisition as WireAcquisition, Lease as WireLease, LockState, Sealer as WireSealer,
    Writer, to_js_millis,
};

// The package's error classes. `raw_module` keeps the specifier as written,
// so the generated glue in `js/pkg/` requires the very module `index.js`
// exports, and `instanceof` works across the boundary.
#[wasm_bindgen(raw_module = "../errors.js")]
extern "C" {
    #[wasm_bindgen(js_name = fromWasm)]
    fn error_from_wasm(code: &str, message: &str, current: Option<u64>) -> JsValue;
}

impl From<Error> for JsValue {
    fn from(e: Error) -> Self {
        error_from_wasm(e.code(), &e.to_string(), e.current())
    }
}

/// A plain object from `(key, value)` pairs.
fn object(pairs: &[(&str, JsValue)]) -> Object {
    let o = Object::new();
    for (k, v) in pairs {
        // Defining a property on a fresh plain object cannot fail.
        let _ = Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o
}

/// Every error kind dlm-core defines, for the package's drift test: `[{
/// code, status, message, cOnly }]`, where `code` is JavaScript's
/// `err.code`, `status` the stable number (C's `dlm_status`), and `cOnly`
/// marks the kinds only the C ABI reports.
#[wasm_bindgen(js_name = errorKinds)]
pub fn error_kinds() -> js_sys::Array {
    ErrorKind::ALL
        .into_iter()
        .map(|k| {
            JsValue::from(object(&[
                ("code", k.name().into()),
                ("status", k.code().into()),
                ("message", k.message().into()),
                ("cOnly", k.c_only().into()),
            ]))
        })
        .collect()
}

/// Builds request lines (each a `Uint8Array` ending in `\n`) for one owner.
#[wasm_bindgen]
pub struct RequestWriter(Writer);

#[wasm_bindgen]
impl RequestWriter {
    /// A writer for owner `id`; `legacy` selects JackrabbitDLM's framing;
    /// `name` and `identity` authenticate every request.
    #[wasm_bindgen(constructor)]
    pub fn new(
        id: String,
        legacy: bool,
        name: Option<String>,
        identity: Option<String>,
    ) -> Result<RequestWriter, Error> {
        let credentials = match (name, identity) {
            (None, None) => None,
            (Some(n), Some(s)) => Some((n, s)),
            _ => return Err(Error::invalid("an identity needs both a name and a secret")),
        };
        Writer::new(id, legacy, credentials).map(Self)
    }

    /// The owner ID.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.0.id().to_owned()
    }

    /// `Unlock`, fenced to `token` if given.
    pub fn unlock(&self, name: &str, token: Option<u64>) -> Result<Vec<u8>, Error> {
        self.0.unlock(name, token)
    }

    /// `TestLock`.
    #[wasm_bindgen(js_name = testLock)]
    pub fn test_lock(&self, name: &str) -> Result<Vec<u8>, Error> {
        self.0.test_lock(name)
    }

    /// `Put` of an already-encoded value; compare-and-set with `revision`.
    pub fn put(
        &self,
        name: &str,
        ttl_ms: f64,
        data: &str,
        revision: Option<u64>,
    ) -> Result<Vec<u8>, Error> {
        self.0.put(name, ttl_ms, data, revision)
    }

    /// `Get`.
    pub fn get(&self, name: &str) -> Result<Vec<u8>, Error> {
        self.0.get(name)
    }

    /// `Erase`.
    pub fn erase(&self, name: &str) -> Result<Vec<u8>, Error> {
        self.0.erase(name)
    }

    /// `Version`.
    pub fn version(&self) -> Vec<u8> {
        self.0.version()
    }

    /// `Stats`.
    pub fn stats(&self) -> Vec<u8> {
        self.0.stats()
    }
}

/// One acquisition of a lock, from its request to its answer (dlm-core's
/// `Acquire`).
#[wasm_bindgen]
pub struct Acquisition(WireAcquisition);

#[wasm_bindgen]
impl Acquisition {
    /// A lock for `ttlMs`, queueing up to `waitMs` (0: one attempt),
    /// renewing itself if `autoRenew`; the request is sent at `nowMs`
    /// (`performance.now()`).
    #[wasm_bindgen(constructor)]
    pub fn new(
        ttl_ms: f64,
        wait_ms: f64,
        auto_renew: bool,
        now_ms: f64,
    ) -> Result<Acquisition, Error> {
        WireAcquisition::new(ttl_ms, wait_ms, auto_renew, now_ms).map(Self)
    }

    /// Whether it waits in the server's queue.
    #[wasm_bindgen(getter)]
    pub fn waits(&self) -> bool {
        self.0.waits()
    }

    /// The `Lock` request line for `name`.
    pub fn request(&self, writer: &RequestWriter, name: &str) -> Result<Vec<u8>, Error> {
        self.0.request(&writer.0, name)
    }

    /// Reads the answer, received at `nowMs`: the lease. Throws `NotOwner`,
    /// or `Timeout` if a wait ran out.
    pub fn finish(&self, now_ms: f64, mut line: Vec<u8>) -> Result<Lease, Error> {
        self.0.finish(now_ms, &mut line).map(Lease)
    }
}

/// A held lock's lease (dlm-core's `Lease`): the package's `Lock` drives it
/// with timers and sockets. Times are `performance.now()` milliseconds.
#[wasm_bindgen]
pub struct Lease(WireLease);

#[wasm_bindgen]
impl Lease {
    /// The fencing token, or `undefined` from a server that gives none.
    #[wasm_bindgen(getter)]
    pub fn token(&self) -> Option<u64> {
        self.0.token()
    }

    /// The TTL extensions ask for, in milliseconds.
    #[wasm_bindgen(getter, js_name = ttlMs)]
    pub fn ttl_ms(&self) -> f64 {
        self.0.ttl_ms()
    }

    /// Whether the lock is lost.
    #[wasm_bindgen(getter)]
    pub fn lost(&self) -> bool {
        self.0.is_lost()
    }

    /// Whether the lock was released.
    #[wasm_bindgen(getter)]
    pub fn released(&self) -> bool {
        self.0.is_released()
    }

    /// Whether the lease renews itself (its timer should keep the process
    /// alive).
    #[wasm_bindgen(getter)]
    pub fn renewing(&self) -> bool {
        self.0.is_renewing()
    }

    /// Whether a request waits to be sent (`pollRequest`).
    #[wasm_bindgen(getter, js_name = hasRequest)]
    pub fn has_request(&self) -> bool {
        self.0.has_request()
    }

    /// Milliseconds left at `nowMs`; 0 once lost or released.
    #[wasm_bindgen(js_name = remainingMs)]
    pub fn remaining_ms(&self, now_ms: f64) -> f64 {
        self.0.remaining_ms(now_ms)
    }

    /// When to call `handleTimeout` next, or `undefined`.
    #[wasm_bindgen(js_name = pollTimeout)]
    pub fn poll_timeout(&self) -> Option<f64> {
        self.0.poll_timeout()
    }

    /// Advances to `nowMs`.
    #[wasm_bindgen(js_name = handleTimeout)]
    pub fn handle_timeout(&mut self, now_ms: f64) {
        self.0.handle_timeout(now_ms);
    }

    /// Asks to extend to `ttlMs`; throws `LockLost` if lost or released.
    pub fn extend(&mut self, now_ms: f64, ttl_ms: f64) -> Result<(), Error> {
        self.0.extend(now_ms, ttl_ms)
    }

    /// Asks to release; false if released already.
    pub fn release(&mut self, now_ms: f64) -> bool {
        self.0.release(now_ms)
    }

    /// The next request line to send for `name`, or `undefined`.
    #[wasm_bindgen(js_name = pollRequest)]
    pub fn poll_request(
        &mut self,
        now_ms: f64,
        writer: &RequestWriter,
        name: &str,
    ) -> Option<Vec<u8>> {
        self.0.poll_request(now_ms, &writer.0, name)
    }

    /// Reads the answer to the request in flight: `"extended"` or
    /// `"released"`; throws `LockLost` if the grant is gone.
    #[wasm_bindgen(js_name = handleResponse)]
    pub fn handle_response(&mut self, now_ms: f64, mut line: Vec<u8>) -> Result<String, Error> {
        self.0.handle_response(now_ms, &mut line).map(str::to_owned)
    }

    /// The request in flight got no answer.
    #[wasm_bindgen(js_name = handleFailure)]
    pub fn handle_failure(&mut self, now_ms: f64) {
        self.0.handle_failure(now_ms);
    }

    /// `"lost"`, once, when the lock is lost; else `undefined`.
    #[wasm_bindgen(js_name = pollEvent)]
    pub fn poll_event(&mut self) -> Option<String> {
        self.0.poll_event().map(str::to_owned)
    }
}

/// The answer to `Unlock` by name: whether a lock was released.
#[wasm_bindgen(js_name = parseReleased)]
pub fn parse_released(mut line: Vec<u8>) -> Result<bool, Error> {
    wire::released(&mut line)
}

fn millis_or_undefined(ttl: Option<dlm_core::time::Ttl>) -> JsValue {
    ttl.map_or(JsValue::UNDEFINED, |t| to_js_millis(t).into())
}

/// The answer to `TestLock`: `{ state: "free" | "mine" | "taken", token?, ttlMs? }`
/// (`token` is `0n` from a server that gives none).
#[wasm_bindgen(js_name = parseLockState)]
pub fn parse_lock_state(mut line: Vec<u8>) -> Result<Object, Error> {
    Ok(match wire::lock_state(&mut line)? {
        LockState::Free => object(&[("state", "free".into())]),
        LockState::Mine(token, ttl) => object(&[
            ("state", "mine".into()),
            ("token", BigInt::from(token.unwrap_or(0)).into()),
            ("ttlMs", millis_or_undefined(ttl)),
        ]),
        LockState::Taken(ttl) => object(&[
            ("state", "taken".into()),
            ("ttlMs", millis_or_undefined(ttl)),
        ]),
    })
}

/// The answer to `Put`: `{ revision: bigint, ttlMs }` (`0n` and 0 from a
/// server that keeps no revisions). `compared`: whether the `Put` carried
/// a revision; a server that ignored it throws `Protocol`.
#[wasm_bindgen(js_name = parseStored)]
pub fn parse_stored(mut line: Vec<u8>, compared: bool) -> Result<Object, Error> {
    let (revision, ttl) = wire::stored(&mut line, compared)?;
    Ok(object(&[
        ("revision", BigInt::from(revision).into()),
        ("ttlMs", to_js_millis(ttl).into()),
    ]))
}

/// The answer to `Get`: `{ data: string, revision: bigint, ttlMs }`, or
/// `undefined` if there is no entry.
#[wasm_bindgen(js_name = parseFetched)]
pub fn parse_fetched(mut line: Vec<u8>) -> Result<Option<Object>, Error> {
    Ok(wire::fetched(&mut line)?.map(|f| {
        object(&[
            ("data", f.data.into()),
            ("revision", BigInt::from(f.revision).into()),
            ("ttlMs", to_js_millis(f.ttl).into()),
        ])
    }))
}

/// The answer to `Erase`: whether there was an entry.
#[wasm_bindgen(js_name = parseErased)]
pub fn parse_erased(mut line: Vec<u8>) -> Result<bool, Error> {
    wire::erased(&mut line)
}

/// The answer to `Version`.
#[wasm_bindgen(js_name = parseVersion)]
pub fn parse_version(mut line: Vec<u8>) -> Result<String, Error> {
    wire::version(&mut line)
}

/// The answer to `Stats`: `{ [name]: number }` for every statistic.
#[wasm_bindgen(js_name = parseStats)]
pub fn parse_stats(mut line: Vec<u8>) -> Result<Object, Error> {
    let o = Object::new();
    for (name, value) in wire::stats(&mut line)? {
        // Counters stay far below 2^53.
        #[allow(clippy::cast_precision_loss)]
        let value = value as f64;
        let _ = Reflect::set(&o, &name.into(), &value.into());
    }
    Ok(o)
}

/// The table codec: bytes to stored text.
#[wasm_bindgen(js_name = encodeTable)]
pub fn encode_table(plain: &[u8]) -> String {
    wire::encode_table(plain)
}

/// The table codec: stored text to bytes; throws `Encoding`.
#[wasm_bindgen(js_name = decodeTable)]
pub fn decode_table(text: &str) -> Result<Vec<u8>, Error> {
    wire::decode_table(text)
}

/// A sealed-value key held in WebAssembly memory and wiped on `free()`.
#[wasm_bindgen]
pub struct Sealer(WireSealer);

#[wasm_bindgen]
impl Sealer {
    /// A sealer with a 32-byte key.
    #[wasm_bindgen(constructor)]
    pub fn new(key: &[u8]) -> Result<Sealer, Error> {
        WireSealer::new(key).map(Self)
    }

    /// Seals `plain` for the data key `name`; `nonce` is 24 random bytes.
    pub fn seal(&self, nonce: &[u8], name: &str, plain: &[u8]) -> Result<String, Error> {
        self.0.seal(nonce, name, plain)
    }

    /// Opens a value sealed for `name`; throws `Encoding`.
    pub fn open(&self, name: &str, sealed: &str) -> Result<Vec<u8>, Error> {
        self.0.open(name, sealed)
    }
}
