//! The exports JavaScript sees: thin conversions between [`crate::wire`]
//! and JS values. Every export returns `Result<_, Error>`, so a failure is
//! a thrown `DlmError` subclass; nothing here can panic on any input.

use js_sys::{BigInt, Object, Reflect};
use wasm_bindgen::prelude::*;

use crate::error::Error;
use crate::wire::{self, Grant, LockState, Sealer as WireSealer, Writer, to_js_millis};

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
        let current = match e {
            Error::Conflict { current } => Some(current),
            _ => None,
        };
        error_from_wasm(e.code(), &e.to_string(), current)
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

fn grant_object(g: Grant) -> Object {
    object(&[
        ("token", BigInt::from(g.token).into()),
        ("ttlMs", to_js_millis(g.ttl).into()),
    ])
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

    /// `Lock` for `ttlMs`, queueing up to `waitMs` (0: one attempt).
    pub fn lock(&self, name: &str, ttl_ms: f64, wait_ms: f64) -> Result<Vec<u8>, Error> {
        self.0.lock(name, ttl_ms, wait_ms)
    }

    /// `Lock` with `Token`: extend that grant only.
    pub fn extend(&self, name: &str, ttl_ms: f64, token: u64) -> Result<Vec<u8>, Error> {
        self.0.extend(name, ttl_ms, token)
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

/// The answer to `Lock`: `{ token: bigint, ttlMs }`. Throws `NotOwner`, or
/// `Timeout` if the request waited.
#[wasm_bindgen(js_name = parseGrant)]
pub fn parse_grant(mut line: Vec<u8>, waited: bool) -> Result<Object, Error> {
    wire::grant(&mut line, waited).map(grant_object)
}

/// The answer to an extension: `{ token, ttlMs }`; throws `LockLost`.
#[wasm_bindgen(js_name = parseExtended)]
pub fn parse_extended(mut line: Vec<u8>) -> Result<Object, Error> {
    wire::extended(&mut line).map(grant_object)
}

/// The answer to a held lock's `Unlock`; throws `LockLost` if it was gone.
#[wasm_bindgen(js_name = parseLockReleased)]
pub fn parse_lock_released(mut line: Vec<u8>) -> Result<(), Error> {
    wire::lock_released(&mut line)
}

/// The answer to `Unlock` by name: whether a lock was released.
#[wasm_bindgen(js_name = parseReleased)]
pub fn parse_released(mut line: Vec<u8>) -> Result<bool, Error> {
    wire::released(&mut line)
}

/// The answer to `TestLock`: `{ state: "free" | "mine" | "taken", token?, ttlMs? }`.
#[wasm_bindgen(js_name = parseLockState)]
pub fn parse_lock_state(mut line: Vec<u8>) -> Result<Object, Error> {
    Ok(match wire::lock_state(&mut line)? {
        LockState::Free => object(&[("state", "free".into())]),
        LockState::Mine(g) => {
            let o = grant_object(g);
            let _ = Reflect::set(&o, &"state".into(), &"mine".into());
            o
        }
        LockState::Taken(ttl) => object(&[
            ("state", "taken".into()),
            (
                "ttlMs",
                ttl.map_or(JsValue::UNDEFINED, |t| to_js_millis(t).into()),
            ),
        ]),
    })
}

/// The answer to `Put`: `{ revision: bigint, ttlMs }`.
#[wasm_bindgen(js_name = parseStored)]
pub fn parse_stored(mut line: Vec<u8>) -> Result<Object, Error> {
    let (revision, ttl) = wire::stored(&mut line)?;
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
