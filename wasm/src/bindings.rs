//! The exports JavaScript sees: thin conversions between [`crate::wire`]
//! and JS values. Every export returns `Result<_, Error>`, so a failure is
//! a thrown `DlmError` subclass; nothing here can panic on any input.

use js_sys::{Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use dlm_core::client::ErrorKind;

use crate::error::Error;
use crate::leases::Leases as WireLeases;
use crate::link;
use crate::wire::{
    self, Decode, Lease as WireLease, LockState, Sealer as WireSealer, Writer, to_js_millis,
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

/// One connection's requests and answers for one owner (see
/// [`crate::link`]): requests are appended to an output buffer the
/// package takes once per turn (`takeOutput`); answers are fed in as they
/// arrive (`feed` says how many complete lines there are) and each
/// `read*` reads the oldest line as the answer to its kind of request.
/// What an answer says besides its result (`revision`, `token`, `ttlMs`)
/// waits in getters, so nothing is built per answer that is not used.
#[wasm_bindgen]
pub struct Link(link::Link);

#[wasm_bindgen]
impl Link {
    /// A link for owner `id`; `legacy` selects JackrabbitDLM's framing;
    /// `name` and `identity` authenticate every request.
    #[wasm_bindgen(constructor)]
    pub fn new(
        id: String,
        legacy: bool,
        name: Option<String>,
        identity: Option<String>,
    ) -> Result<Link, Error> {
        let credentials = match (name, identity) {
            (None, None) => None,
            (Some(n), Some(s)) => Some((n, s)),
            _ => return Err(Error::invalid("an identity needs both a name and a secret")),
        };
        Ok(Self(link::Link::new(Writer::new(id, legacy, credentials)?)))
    }

    /// The owner ID.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.0.writer().id().to_owned()
    }

    /// Appends `Lock` for `ttlMs`, queueing up to `waitMs` (0: one attempt).
    pub fn lock(&mut self, name: &str, ttl_ms: f64, wait_ms: f64) -> Result<(), Error> {
        self.0.lock(name, ttl_ms, wait_ms)
    }

    /// Appends `Unlock` by name, fenced to `token` if given.
    pub fn unlock(&mut self, name: &str, token: Option<u64>) -> Result<(), Error> {
        self.0.unlock(name, token)
    }

    /// Appends `TestLock`.
    #[wasm_bindgen(js_name = testLock)]
    pub fn test_lock(&mut self, name: &str) -> Result<(), Error> {
        self.0.test_lock(name)
    }

    /// Appends `Put` of text an encoder made; compare-and-set with `revision`.
    pub fn put(
        &mut self,
        name: &str,
        ttl_ms: f64,
        data: &str,
        revision: Option<u64>,
    ) -> Result<(), Error> {
        self.0.put(name, ttl_ms, data, revision)
    }

    /// Appends `Put` of bytes through the table codec.
    #[wasm_bindgen(js_name = putTable)]
    pub fn put_table(
        &mut self,
        name: &str,
        ttl_ms: f64,
        plain: &[u8],
        revision: Option<u64>,
    ) -> Result<(), Error> {
        self.0.put_table(name, ttl_ms, plain, revision)
    }

    /// Appends `Put` of bytes sealed under `sealer`'s key; `nonce` is 24
    /// random bytes.
    #[wasm_bindgen(js_name = putSealed)]
    pub fn put_sealed(
        &mut self,
        sealer: &Sealer,
        nonce: &[u8],
        name: &str,
        ttl_ms: f64,
        plain: &[u8],
        revision: Option<u64>,
    ) -> Result<(), Error> {
        self.0
            .put_sealed(&sealer.0, nonce, name, ttl_ms, plain, revision)
    }

    /// Appends `Get`.
    pub fn get(&mut self, name: &str) -> Result<(), Error> {
        self.0.get(name)
    }

    /// Appends `Erase`.
    pub fn erase(&mut self, name: &str) -> Result<(), Error> {
        self.0.erase(name)
    }

    /// Appends `Version`.
    pub fn version(&mut self) {
        self.0.version();
    }

    /// Appends `Stats`.
    pub fn stats(&mut self) {
        self.0.stats();
    }

    /// Appends the request the lease `handle` wants sent for the lock
    /// `name` at `nowMs`, if any; whether there was one.
    #[wasm_bindgen(js_name = leaseRequest)]
    pub fn lease_request(
        &mut self,
        leases: &mut Leases,
        handle: f64,
        now_ms: f64,
        name: &str,
    ) -> bool {
        match leases.0.get_mut(handle) {
            Some(lease) => self.0.lease_request(lease, now_ms, name),
            None => false,
        }
    }

    /// The bytes of every request appended since the last call, copied
    /// out; the buffer is kept for the next ones.
    #[wasm_bindgen(js_name = takeOutput)]
    pub fn take_output(&mut self) -> Uint8Array {
        let out = Uint8Array::new_from_slice(self.0.output());
        self.0.clear_output();
        out
    }

    /// Appends bytes received; returns how many more complete answers
    /// there are to read. Throws `Protocol` for an answer longer than
    /// 64 MiB.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<u32, Error> {
        self.0.feed(chunk)
    }

    /// Reads the answer to `lock(name, ttlMs, waitMs)` sent at `sentMs`
    /// and received at `nowMs` (`performance.now()`): the lease, kept in
    /// `leases`, renewing itself if `autoRenew`; returns its handle.
    /// Throws `NotOwner`, or `Timeout` if a wait ran out.
    #[wasm_bindgen(js_name = readGrant)]
    pub fn read_grant(
        &mut self,
        leases: &mut Leases,
        ttl_ms: f64,
        wait_ms: f64,
        auto_renew: bool,
        sent_ms: f64,
        now_ms: f64,
    ) -> Result<f64, Error> {
        let lease = self
            .0
            .read_grant(ttl_ms, wait_ms, auto_renew, sent_ms, now_ms)?;
        leases.0.insert(lease)
    }

    /// Reads the answer to the request the lease `handle` has in flight,
    /// received at `nowMs`. Throws `LockLost` if the grant is gone.
    #[wasm_bindgen(js_name = readLease)]
    pub fn read_lease(
        &mut self,
        leases: &mut Leases,
        handle: f64,
        now_ms: f64,
    ) -> Result<(), Error> {
        match leases.0.get_mut(handle) {
            Some(lease) => self.0.read_lease(lease, now_ms),
            None => {
                self.0.skip()?;
                Err(WireLeases::released())
            }
        }
    }

    /// Reads the answer to `unlock`: whether a lock was released.
    #[wasm_bindgen(js_name = readReleased)]
    pub fn read_released(&mut self) -> Result<bool, Error> {
        self.0.read_released()
    }

    /// Reads the answer to `testLock`: 0 free, 1 this owner's (see
    /// `token`, `ttlMs`), 2 another owner's (see `ttlMs`).
    #[wasm_bindgen(js_name = readLockState)]
    pub fn read_lock_state(&mut self) -> Result<u8, Error> {
        Ok(match self.0.read_lock_state()? {
            LockState::Free => 0,
            LockState::Mine(..) => 1,
            LockState::Taken(_) => 2,
        })
    }

    /// Reads the answer to `put` (`compared`: it carried a revision): the
    /// new revision (`0n` from a server that keeps none). Throws
    /// `Conflict` (with the stored revision) for a failed compare-and-set.
    #[wasm_bindgen(js_name = readStored)]
    pub fn read_stored(&mut self, compared: bool) -> Result<u64, Error> {
        self.0.read_stored(compared)
    }

    /// Reads the answer to `get`: the stored text's UTF-8 bytes, for an
    /// encoder written in JavaScript (its `revision` and `ttlMs` are in the
    /// getters), or `undefined` if there is no entry.
    #[wasm_bindgen(js_name = readFetched)]
    pub fn read_fetched(&mut self) -> Result<Option<Vec<u8>>, Error> {
        self.0.read_fetched(Decode::Text)
    }

    /// `readFetched`, decoding the table codec. Throws `Encoding`.
    #[wasm_bindgen(js_name = readFetchedTable)]
    pub fn read_fetched_table(&mut self) -> Result<Option<Vec<u8>>, Error> {
        self.0.read_fetched(Decode::Table)
    }

    /// `readFetched`, opening a value sealed for the data key `name`.
    /// Throws `Encoding`.
    #[wasm_bindgen(js_name = readFetchedSealed)]
    pub fn read_fetched_sealed(
        &mut self,
        sealer: &Sealer,
        name: &str,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.0.read_fetched(Decode::Sealed(&sealer.0, name))
    }

    /// Reads the answer to `erase`: whether there was an entry.
    #[wasm_bindgen(js_name = readErased)]
    pub fn read_erased(&mut self) -> Result<bool, Error> {
        self.0.read_erased()
    }

    /// Reads the answer to `version`.
    #[wasm_bindgen(js_name = readVersion)]
    pub fn read_version(&mut self) -> Result<String, Error> {
        self.0.read_version()
    }

    /// Reads the answer to `stats`: `{ [name]: number }` for every statistic.
    #[wasm_bindgen(js_name = readStats)]
    pub fn read_stats(&mut self) -> Result<Object, Error> {
        let o = Object::new();
        for (name, value) in self.0.read_stats()? {
            // Counters stay far below 2^53.
            #[allow(clippy::cast_precision_loss)]
            let value = value as f64;
            let _ = Reflect::set(&o, &name.into(), &value.into());
        }
        Ok(o)
    }

    /// The revision of the last value stored or read (`0n` from a server
    /// that keeps none).
    #[wasm_bindgen(getter)]
    pub fn revision(&self) -> u64 {
        self.0.revision()
    }

    /// The token of the last `testLock` that found the lock this owner's
    /// (`0n` from a server that gives none).
    #[wasm_bindgen(getter)]
    pub fn token(&self) -> u64 {
        self.0.token().unwrap_or(0)
    }

    /// The TTL in milliseconds the last answer read said, or `undefined`.
    #[wasm_bindgen(getter, js_name = ttlMs)]
    pub fn ttl_ms(&self) -> Option<f64> {
        self.0.ttl().map(to_js_millis)
    }
}

/// The leases of one client's held locks (dlm-core's `Lease` each), by
/// handle (see [`crate::leases`]). `Link.readGrant` adds one; the
/// package's `Lock` drives its own with one timer, sending the requests it
/// asks for with `Link.leaseRequest` and reading their answers with
/// `Link.readLease`, and removes it once released. A handle that names no
/// lease is a released lock. Times are `performance.now()` milliseconds.
#[wasm_bindgen]
pub struct Leases(WireLeases);

#[wasm_bindgen]
impl Leases {
    /// An empty table.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Leases {
        Self(WireLeases::new())
    }

    /// How many leases it holds.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> u32 {
        u32::try_from(self.0.len()).unwrap_or(u32::MAX)
    }

    /// The fencing token, or `undefined` from a server that gives none.
    pub fn token(&self, handle: f64) -> Option<u64> {
        self.0.get(handle).and_then(WireLease::token)
    }

    /// The TTL extensions ask for, in milliseconds.
    #[wasm_bindgen(js_name = ttlMs)]
    pub fn ttl_ms(&self, handle: f64) -> f64 {
        self.0.get(handle).map_or(0.0, WireLease::ttl_ms)
    }

    /// Whether the lock is lost.
    pub fn lost(&self, handle: f64) -> bool {
        self.0.get(handle).is_some_and(WireLease::is_lost)
    }

    /// Whether the lock was released.
    pub fn released(&self, handle: f64) -> bool {
        self.0.get(handle).is_none_or(WireLease::is_released)
    }

    /// Whether the lease renews itself (its timer should keep the process
    /// alive).
    pub fn renewing(&self, handle: f64) -> bool {
        self.0.get(handle).is_some_and(WireLease::is_renewing)
    }

    /// Whether a request waits to be sent (`Link.leaseRequest`).
    #[wasm_bindgen(js_name = hasRequest)]
    pub fn has_request(&self, handle: f64) -> bool {
        self.0.get(handle).is_some_and(WireLease::has_request)
    }

    /// Milliseconds left at `nowMs`; 0 once lost or released.
    #[wasm_bindgen(js_name = remainingMs)]
    pub fn remaining_ms(&self, handle: f64, now_ms: f64) -> f64 {
        self.0.get(handle).map_or(0.0, |l| l.remaining_ms(now_ms))
    }

    /// When to call `handleTimeout` next, or `undefined`.
    #[wasm_bindgen(js_name = pollTimeout)]
    pub fn poll_timeout(&self, handle: f64) -> Option<f64> {
        self.0.get(handle).and_then(WireLease::poll_timeout)
    }

    /// Advances to `nowMs`.
    #[wasm_bindgen(js_name = handleTimeout)]
    pub fn handle_timeout(&mut self, handle: f64, now_ms: f64) {
        if let Some(lease) = self.0.get_mut(handle) {
            lease.handle_timeout(now_ms);
        }
    }

    /// Asks to extend to `ttlMs`; throws `LockLost` if lost or released.
    pub fn extend(&mut self, handle: f64, now_ms: f64, ttl_ms: f64) -> Result<(), Error> {
        match self.0.get_mut(handle) {
            Some(lease) => lease.extend(now_ms, ttl_ms),
            None => Err(WireLeases::released()),
        }
    }

    /// Asks to release; false if released already.
    pub fn release(&mut self, handle: f64, now_ms: f64) -> bool {
        self.0
            .get_mut(handle)
            .is_some_and(|lease| lease.release(now_ms))
    }

    /// The request in flight got no answer.
    #[wasm_bindgen(js_name = handleFailure)]
    pub fn handle_failure(&mut self, handle: f64, now_ms: f64) {
        if let Some(lease) = self.0.get_mut(handle) {
            lease.handle_failure(now_ms);
        }
    }

    /// The next request could not be sent (no connection): it fails as if
    /// sent and unanswered.
    #[wasm_bindgen(js_name = handleUnsent)]
    pub fn handle_unsent(&mut self, handle: f64, now_ms: f64) {
        if let Some(lease) = self.0.get_mut(handle) {
            lease.handle_unsent(now_ms);
        }
    }

    /// Whether the lock was lost since the last call (true once).
    #[wasm_bindgen(js_name = pollLost)]
    pub fn poll_lost(&mut self, handle: f64) -> bool {
        self.0.get_mut(handle).is_some_and(WireLease::poll_lost)
    }

    /// Forgets a released lock's lease; whether there was one.
    pub fn remove(&mut self, handle: f64) -> bool {
        self.0.remove(handle)
    }
}

impl Default for Leases {
    fn default() -> Self {
        Self::new()
    }
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
