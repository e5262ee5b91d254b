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

/// Reads the answer to the request the lease `handle` has in flight; an
/// answer for a lease already released is skipped and `LockLost` thrown.
fn read_lease_answer(
    l: &mut link::Link,
    leases: &mut WireLeases,
    handle: f64,
    now_ms: f64,
) -> Result<(), Error> {
    match leases.get_mut(handle) {
        Some(lease) => l.read_lease(lease, now_ms),
        None => {
            l.skip()?;
            Err(WireLeases::released())
        }
    }
}

/// One connection's requests and answers for one owner (see
/// [`crate::link`]): requests are appended to an output buffer the
/// package takes a few times a turn (`takeOutput`, or `outputAddress` and
/// `outputLength`, then `clearOutput`); answers are fed in as they
/// arrive (`feed` says how many complete lines there are) and each
/// `read*` reads the oldest line as the answer to its kind of request.
/// What an answer says besides its result (`revision`, `token`, `ttlMs`)
/// waits in getters, so nothing is built per answer that is not used.
#[wasm_bindgen]
pub struct Link(link::Link, Option<Error>);

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
        Ok(Self(
            link::Link::new(Writer::new(id, legacy, credentials)?),
            None,
        ))
    }

    /// The owner ID.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.0.writer().id().to_owned()
    }

    // Every request starts a call in `fo` at `nowMs` (`performance.now()`)
    // and appends its first attempt to the output; each returns the
    // call's handle (see `Failover`).

    /// Appends `Lock` for `ttlMs`, queueing up to `waitMs` (0: one
    /// attempt), of `shape`: 0 the exclusive lock, -1 a read/write lock's
    /// read side, -2 its write side, N one permit of an N-permit semaphore.
    pub fn lock(
        &mut self,
        fo: &mut Failover,
        now_ms: f64,
        name: &str,
        ttl_ms: f64,
        wait_ms: f64,
        shape: f64,
    ) -> Result<f64, Error> {
        self.0.lock(&mut fo.0, now_ms, name, ttl_ms, wait_ms, shape)
    }

    /// Appends `LockAll` of `names` for `ttlMs`, queueing up to `waitMs`
    /// (0: one attempt): all or none. `InvalidArgument` for no names, more
    /// than 16, an empty one or one twice.
    #[wasm_bindgen(js_name = lockAll)]
    // wasm-bindgen takes a JavaScript array of strings only as an owned Vec.
    #[allow(clippy::needless_pass_by_value)]
    pub fn lock_all(
        &mut self,
        fo: &mut Failover,
        now_ms: f64,
        names: Vec<String>,
        ttl_ms: f64,
        wait_ms: f64,
    ) -> Result<f64, Error> {
        self.0.lock_all(&mut fo.0, now_ms, &names, ttl_ms, wait_ms)
    }

    /// Appends `Unlock` by name, fenced to `token` if given.
    pub fn unlock(
        &mut self,
        fo: &mut Failover,
        now_ms: f64,
        name: &str,
        token: Option<u64>,
    ) -> Result<f64, Error> {
        self.0.unlock(&mut fo.0, now_ms, name, token)
    }

    /// Appends `TestLock`.
    #[wasm_bindgen(js_name = testLock)]
    pub fn test_lock(&mut self, fo: &mut Failover, now_ms: f64, name: &str) -> Result<f64, Error> {
        self.0.test_lock(&mut fo.0, now_ms, name)
    }

    /// Appends `Put` of text an encoder made; compare-and-set with `revision`.
    /// `readers`, who may read it besides its owner: `undefined` nobody,
    /// `""` any client, else identity names joined by `,`.
    // wasm-bindgen takes an optional string only as an owned `Option<String>`.
    #[allow(clippy::too_many_arguments, clippy::needless_pass_by_value)]
    pub fn put(
        &mut self,
        fo: &mut Failover,
        now_ms: f64,
        name: &str,
        ttl_ms: f64,
        data: &str,
        revision: Option<u64>,
        readers: Option<String>,
    ) -> Result<f64, Error> {
        self.0.put(
            &mut fo.0,
            now_ms,
            name,
            ttl_ms,
            data,
            revision,
            readers.as_deref(),
        )
    }

    /// Appends `Put` of bytes through the table codec; `readers` as `put`.
    #[wasm_bindgen(js_name = putTable)]
    #[allow(clippy::too_many_arguments, clippy::needless_pass_by_value)]
    pub fn put_table(
        &mut self,
        fo: &mut Failover,
        now_ms: f64,
        name: &str,
        ttl_ms: f64,
        plain: &[u8],
        revision: Option<u64>,
        readers: Option<String>,
    ) -> Result<f64, Error> {
        self.0.put_table(
            &mut fo.0,
            now_ms,
            name,
            ttl_ms,
            plain,
            revision,
            readers.as_deref(),
        )
    }

    /// Appends `Put` of bytes sealed under `sealer`'s key; `nonce` is 24
    /// random bytes; `readers` as `put`.
    #[wasm_bindgen(js_name = putSealed)]
    #[allow(clippy::too_many_arguments, clippy::needless_pass_by_value)]
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
        readers: Option<String>,
    ) -> Result<f64, Error> {
        self.0.put_sealed(
            &mut fo.0,
            now_ms,
            &sealer.0,
            nonce,
            name,
            ttl_ms,
            plain,
            revision,
            readers.as_deref(),
        )
    }

    /// Appends `Get`.
    pub fn get(&mut self, fo: &mut Failover, now_ms: f64, name: &str) -> Result<f64, Error> {
        self.0.get(&mut fo.0, now_ms, name)
    }

    /// Appends `Erase`.
    pub fn erase(&mut self, fo: &mut Failover, now_ms: f64, name: &str) -> Result<f64, Error> {
        self.0.erase(&mut fo.0, now_ms, name)
    }

    /// Appends `Version`.
    pub fn version(&mut self, fo: &mut Failover, now_ms: f64) -> Result<f64, Error> {
        self.0.version(&mut fo.0, now_ms)
    }

    /// Appends `Stats`.
    pub fn stats(&mut self, fo: &mut Failover, now_ms: f64) -> Result<f64, Error> {
        self.0.stats(&mut fo.0, now_ms)
    }

    /// Appends the request the lease `handle` wants sent for the lock
    /// `name` at `nowMs`, if any, as a call: its handle, or `undefined`.
    #[wasm_bindgen(js_name = leaseRequest)]
    pub fn lease_request(
        &mut self,
        fo: &mut Failover,
        leases: &mut Leases,
        handle: f64,
        now_ms: f64,
        name: &str,
    ) -> Result<Option<f64>, Error> {
        match leases.0.get_mut(handle) {
            Some(lease) => self.0.lease_request(&mut fo.0, lease, now_ms, name),
            None => Ok(None),
        }
    }

    /// Appends call `call`'s request again, as an attempt at `nowMs` sends
    /// it (the same request ID; a lock's wait cut to what is left).
    pub fn resend(&mut self, fo: &mut Failover, call: f64, now_ms: f64) -> Result<(), Error> {
        self.0.resend(&mut fo.0, call, now_ms)
    }

    /// Appends the discovery question (`{"Action":"Cluster"}`).
    pub fn cluster(&mut self) {
        self.0.cluster();
    }

    /// Forgets the output without sending it (the requests' calls keep
    /// their lines for `resend`).
    #[wasm_bindgen(js_name = clearOutput)]
    pub fn clear_output(&mut self) {
        self.0.clear_output();
    }

    /// Whether the oldest answer is call `call`'s to read (received at
    /// `nowMs` on a connection of `epoch`): true to read it with the
    /// call's reader (the call is over); false if a member refused it
    /// (skipped; send the call again with `resend`). Throws
    /// `UnavailableError` if the call gives up.
    pub fn answered(
        &mut self,
        fo: &mut Failover,
        call: f64,
        epoch: f64,
        now_ms: f64,
    ) -> Result<bool, Error> {
        self.0.answered(&mut fo.0, call, epoch_of(epoch), now_ms)
    }

    /// Reads the oldest answer and ignores it (its call was cancelled).
    pub fn skip(&mut self) -> Result<(), Error> {
        self.0.skip()
    }

    // The fast path of answers: `answered` and the call's reader in one
    // call. What became of the answer is in the failover's `out` numbers
    // (`Failover.outAddress`): 0 read (the result, or the reader's error
    // thrown), 1 a member refused it (skipped: send the call again; the
    // result means nothing), 2 the call gave up (the error thrown is the
    // failover's).

    /// `answered`, then `readGrant`: the lease's handle.
    #[wasm_bindgen(js_name = answerGrant)]
    #[allow(clippy::too_many_arguments)]
    pub fn answer_grant(
        &mut self,
        fo: &mut Failover,
        call: f64,
        epoch: f64,
        now_ms: f64,
        leases: &mut Leases,
        ttl_ms: f64,
        wait_ms: f64,
        auto_renew: bool,
        sent_ms: f64,
        shape: f64,
    ) -> Result<f64, Error> {
        let granted = self
            .0
            .answer(&mut fo.0, call, epoch_of(epoch), now_ms, |l| {
                l.read_grant(ttl_ms, wait_ms, auto_renew, sent_ms, now_ms, shape)
            })?;
        match granted {
            Some(lease) => leases.0.insert(lease),
            None => Ok(-1.0),
        }
    }

    /// `answered`, then `readLease` of the lease `handle`.
    #[wasm_bindgen(js_name = answerLease)]
    pub fn answer_lease(
        &mut self,
        fo: &mut Failover,
        call: f64,
        epoch: f64,
        now_ms: f64,
        leases: &mut Leases,
        handle: f64,
    ) -> Result<(), Error> {
        self.0
            .answer(&mut fo.0, call, epoch_of(epoch), now_ms, |l| {
                read_lease_answer(l, &mut leases.0, handle, now_ms)
            })
            .map(|_| ())
    }

    /// `answered`, then `readStored(compared)`: the new revision.
    #[wasm_bindgen(js_name = answerStored)]
    pub fn answer_stored(
        &mut self,
        fo: &mut Failover,
        call: f64,
        epoch: f64,
        now_ms: f64,
        compared: bool,
    ) -> Result<u64, Error> {
        self.0
            .answer(&mut fo.0, call, epoch_of(epoch), now_ms, |l| {
                l.read_stored(compared)
            })
            .map(Option::unwrap_or_default)
    }

    /// `answered`, then `readFetchedTable`: the value, or `undefined`.
    #[wasm_bindgen(js_name = answerFetchedTable)]
    pub fn answer_fetched_table(
        &mut self,
        fo: &mut Failover,
        call: f64,
        epoch: f64,
        now_ms: f64,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.0
            .answer(&mut fo.0, call, epoch_of(epoch), now_ms, |l| {
                l.read_fetched(Decode::Table)
            })
            .map(Option::flatten)
    }

    /// Reads the answer to `cluster()` for call `call` on a connection of
    /// `epoch`: 0 to use the connection, 1 to close it and ask
    /// `pollConnect` again. Throws if the call gives up.
    #[wasm_bindgen(js_name = readDiscovery)]
    pub fn read_discovery(
        &mut self,
        fo: &mut Failover,
        call: f64,
        epoch: f64,
        now_ms: f64,
    ) -> Result<u8, Error> {
        self.0
            .read_discovery(&mut fo.0, call, epoch_of(epoch), now_ms)
    }

    /// The bytes of every request appended since the last call, copied
    /// out; the buffer is kept for the next ones.
    #[wasm_bindgen(js_name = takeOutput)]
    pub fn take_output(&mut self) -> Uint8Array {
        let out = Uint8Array::new_from_slice(self.0.output());
        self.0.clear_output();
        out
    }

    /// Where the requests appended since the output was last taken or
    /// cleared start in WebAssembly memory (`wasmMemory()`): with
    /// `outputLength`, for the package to copy them out itself (into a
    /// pooled `Buffer`, cheaper than `takeOutput`'s new `Uint8Array`)
    /// before `clearOutput`. Valid until the next call that appends.
    #[wasm_bindgen(js_name = outputAddress)]
    pub fn output_address(&self) -> usize {
        self.0.output().as_ptr().addr()
    }

    /// How many bytes of requests wait at `outputAddress`.
    #[wasm_bindgen(js_name = outputLength)]
    pub fn output_length(&self) -> usize {
        self.0.output().len()
    }

    /// Appends bytes received; returns how many more complete answers
    /// there are to read. Throws `Protocol` for an answer longer than
    /// 64 MiB.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<u32, Error> {
        self.0.feed(chunk)
    }

    /// Reads the answer to `lock(name, ttlMs, waitMs, shape)` sent at
    /// `sentMs` and received at `nowMs` (`performance.now()`): the lease,
    /// kept in `leases`, renewing itself if `autoRenew`; returns its
    /// handle. Throws `NotOwner`, `Timeout` if a wait ran out, `Conflict`
    /// if the name is another kind of lock or size.
    #[wasm_bindgen(js_name = readGrant)]
    // Plain numbers cross the boundary cheaply; a struct would cost an
    // object per call.
    #[allow(clippy::too_many_arguments)]
    pub fn read_grant(
        &mut self,
        leases: &mut Leases,
        ttl_ms: f64,
        wait_ms: f64,
        auto_renew: bool,
        sent_ms: f64,
        now_ms: f64,
        shape: f64,
    ) -> Result<f64, Error> {
        let lease = self
            .0
            .read_grant(ttl_ms, wait_ms, auto_renew, sent_ms, now_ms, shape)?;
        leases.0.insert(lease)
    }

    /// Reads the answer to `lockAll(names, ttlMs, waitMs)` of `count`
    /// names sent at `sentMs` and received at `nowMs`: one lease per name
    /// in `leases` (in the order of the names), renewing itself if
    /// `autoRenew`; returns their handles. Throws `NotOwner` (the server's
    /// words say which name stood in the way), `Timeout` if a wait ran out.
    #[wasm_bindgen(js_name = readGrantAll)]
    #[allow(clippy::too_many_arguments)]
    pub fn read_grant_all(
        &mut self,
        leases: &mut Leases,
        ttl_ms: f64,
        wait_ms: f64,
        auto_renew: bool,
        sent_ms: f64,
        now_ms: f64,
        count: u32,
    ) -> Result<Vec<f64>, Error> {
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let granted = self
            .0
            .read_grant_all(ttl_ms, wait_ms, auto_renew, sent_ms, now_ms, count)?;
        let mut handles = Vec::with_capacity(granted.len());
        for lease in granted {
            match leases.0.insert(lease) {
                Ok(h) => handles.push(h),
                Err(e) => {
                    // All or none: leases already kept leave the table
                    // (the server's grant runs out by its TTL).
                    for h in handles {
                        leases.0.remove(h);
                    }
                    return Err(e);
                }
            }
        }
        Ok(handles)
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
        read_lease_answer(&mut self.0, &mut leases.0, handle, now_ms)
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

    // A session's connection (see `crate::session`): requests that are
    // no call of the failover, answers read in order.

    /// Appends `Session` for `ttlMs` (opens the connection's session, or
    /// keeps it alive).
    pub fn session(&mut self, ttl_ms: f64) -> Result<(), Error> {
        self.0.session(ttl_ms)
    }

    /// Appends a keep-alive for `ttlMs`: keeps the connection's session
    /// alive, never opens one (`BadPayload` once the server ended it).
    #[wasm_bindgen(js_name = keepAlive)]
    pub fn keep_alive(&mut self, ttl_ms: f64) -> Result<(), Error> {
        self.0.keep_alive(ttl_ms)
    }

    /// Appends `Lock` of `name` bound to the session: `ttlMs`, `waitMs`
    /// (0: one attempt), `shape` as `lock`, closed for `lockDelayMs` (at
    /// most 60000) after the session ends.
    #[wasm_bindgen(js_name = sessionLock)]
    pub fn session_lock(
        &mut self,
        name: &str,
        ttl_ms: f64,
        wait_ms: f64,
        shape: f64,
        lock_delay_ms: f64,
    ) -> Result<(), Error> {
        self.0
            .session_lock(name, ttl_ms, wait_ms, shape, lock_delay_ms)
    }

    /// Appends `Unlock` of `name`'s grant `token`.
    #[wasm_bindgen(js_name = sessionUnlock)]
    pub fn session_unlock(&mut self, name: &str, token: u64) -> Result<(), Error> {
        self.0.session_unlock(name, token)
    }

    /// Reads the answer to `session`: the TTL granted, in milliseconds.
    #[wasm_bindgen(js_name = readSession)]
    pub fn read_session(&mut self) -> Result<f64, Error> {
        self.0.read_session()
    }

    /// Reads the answer to `sessionLock` (`waited`: it queued): the
    /// token.
    #[wasm_bindgen(js_name = readSessionGrant)]
    pub fn read_session_grant(&mut self, waited: bool) -> Result<u64, Error> {
        self.0.read_session_grant(waited)
    }

    /// Reads the answer to `sessionUnlock`; throws `LockLost` if the grant
    /// was gone.
    #[wasm_bindgen(js_name = readSessionRelease)]
    pub fn read_session_release(&mut self) -> Result<(), Error> {
        self.0.read_session_release()
    }

    // A watch's connection (see `crate::watch`).

    /// Appends `Watch` of every name starting with `scope` (`prefix`) or
    /// of the one name `scope`, after revision `since` if given.
    pub fn watch(&mut self, scope: &str, prefix: bool, since: Option<u64>) -> Result<(), Error> {
        self.0.watch(scope, prefix, since)
    }

    /// Reads the answer to `watch`: the revision events follow. Throws
    /// `Conflict` (its `revision` the current one) if the server no longer
    /// keeps the events asked for.
    #[wasm_bindgen(js_name = readWatch)]
    pub fn read_watch(&mut self) -> Result<u64, Error> {
        self.0.read_watch()
    }

    /// Reads every complete event line received as packed records (see
    /// `crate::watch`), values decoded by the table codec, or (`text`)
    /// left as their text's bytes for an encoder written in JavaScript.
    /// Stops at the server's last word; then `watchEnd()` throws why.
    #[wasm_bindgen(js_name = readEvents)]
    pub fn read_events(&mut self, text: bool) -> Result<Uint8Array, Error> {
        self.events(&if text { Decode::Text } else { Decode::Table })
    }

    /// `readEvents`, values opened by `sealer`.
    #[wasm_bindgen(js_name = readEventsSealed)]
    pub fn read_events_sealed(&mut self, sealer: &Sealer) -> Result<Uint8Array, Error> {
        self.events(&Decode::Sealed(&sealer.0, ""))
    }

    /// Throws why the server ended the watch (its last line), if it did.
    #[wasm_bindgen(js_name = watchEnd)]
    pub fn watch_end(&self) -> Result<(), Error> {
        match &self.1 {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
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

    /// The owner's ID of the value the last `readFetched*` read, if the
    /// server said (this client's own, or the sharer's), or `undefined`.
    #[wasm_bindgen(getter)]
    pub fn owner(&self) -> Option<String> {
        self.0.owner().map(str::to_owned)
    }
}

impl Link {
    fn events(&mut self, decode: &Decode<'_>) -> Result<Uint8Array, Error> {
        let mut end = self.1.take();
        let r = self.0.read_events(decode, &mut end);
        self.1 = end;
        Ok(Uint8Array::new_from_slice(&r?))
    }
}

/// An epoch from JavaScript (a whole number below 2^53).
fn epoch_of(epoch: f64) -> u64 {
    // Epochs count up from 0 by one per failure: far below 2^53.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let e = epoch.max(0.0) as u64;
    e
}

/// An epoch for JavaScript.
#[allow(clippy::cast_precision_loss)]
fn epoch_to_js(epoch: u64) -> f64 {
    epoch as f64
}

/// dlm-core's failover machine for one client, and its calls in flight by
/// handle (see [`crate::failover`]): which server, when to move on, the
/// backoff, what may be sent again and when to give up. The package's
/// JavaScript connects where it says, reports what happened, and sleeps
/// when it says; it decides nothing of its own.
#[wasm_bindgen]
pub struct Failover(crate::failover::Failover);

#[wasm_bindgen]
impl Failover {
    /// The failover over `servers` (`"host:port"` or
    /// `"host:port,host:port,..."`); calls end after `timeoutMs` (plus a
    /// lock's wait) and give up after `connectAttempts` failed connections
    /// per server; `discover` asks new connections who leads; `seed` is 16
    /// random bytes. Throws `InvalidArgumentError` for a bad list.
    #[wasm_bindgen(constructor)]
    pub fn new(
        servers: &str,
        timeout_ms: f64,
        connect_attempts: u32,
        discover: bool,
        seed: &[u8],
    ) -> Result<Failover, Error> {
        crate::failover::Failover::new(servers, timeout_ms, connect_attempts, discover, seed)
            .map(Self)
    }

    /// The server in use (`host:port`), for logs.
    #[wasm_bindgen(getter)]
    pub fn server(&self) -> String {
        self.0.server().to_owned()
    }

    /// Every server known: those given, then the members learned.
    pub fn servers(&self) -> Vec<String> {
        self.0.servers()
    }

    /// The current epoch: connections of another are to a server no
    /// longer in use.
    #[wasm_bindgen(getter)]
    pub fn epoch(&self) -> f64 {
        epoch_to_js(self.0.epoch())
    }

    /// How many calls are in flight.
    #[wasm_bindgen(getter)]
    pub fn calls(&self) -> u32 {
        u32::try_from(self.0.calls()).unwrap_or(u32::MAX)
    }

    /// Starts a call that only connects (and asks who leads), for a
    /// client's first connection; `end` it once connected.
    #[wasm_bindgen(js_name = startConnect)]
    pub fn start_connect(&mut self, now_ms: f64) -> Result<f64, Error> {
        self.0.start_connect(now_ms)
    }

    /// What to do for a connection for call `call` at `nowMs`: -1 to
    /// connect to `address` within `withinMs` (for epoch `connectEpoch`),
    /// else the instant to sleep until. Throws `UnavailableError` if the
    /// call gives up (it is over).
    #[wasm_bindgen(js_name = pollConnect)]
    pub fn poll_connect(&mut self, call: f64, now_ms: f64) -> Result<f64, Error> {
        self.0.poll_connect(call, now_ms)
    }

    /// Where the last `pollConnect` said to connect.
    #[wasm_bindgen(getter)]
    pub fn address(&self) -> String {
        self.0.address().to_owned()
    }

    /// The epoch of the last `pollConnect`'s connection.
    #[wasm_bindgen(getter, js_name = connectEpoch)]
    pub fn connect_epoch(&self) -> f64 {
        epoch_to_js(self.0.connect_epoch())
    }

    /// The most the last `pollConnect`'s connection may take.
    #[wasm_bindgen(getter, js_name = withinMs)]
    pub fn within_ms(&self) -> f64 {
        self.0.within_ms()
    }

    /// A connection of `epoch` is up: whether to ask it `cluster()` first.
    pub fn connected(&mut self, epoch: f64) -> bool {
        self.0.connected(epoch_of(epoch))
    }

    /// An attempt of call `call` on a connection of `epoch` failed:
    /// `outcome` 0 connecting failed, 1 not sent, 2 closed after it was
    /// sent, 3 no answer in time. Returns to send it again; throws
    /// `UnavailableError` if the call gives up (it is over).
    pub fn handle(&mut self, call: f64, epoch: f64, outcome: u8, now_ms: f64) -> Result<(), Error> {
        self.0.handle(call, epoch_of(epoch), outcome, now_ms)
    }

    /// Where in WebAssembly memory (`wasmMemory()`) the numbers the last
    /// call left besides its result are, for a `Float64Array` view of
    /// them: \[0\] the deadline of the call the last request started
    /// (what `deadlineMs` says), \[1\] what became of the last answer
    /// given to an `answer*` reader. The address never changes; the
    /// view must be made again when the memory grows.
    #[wasm_bindgen(js_name = outAddress)]
    pub fn out_address(&self) -> usize {
        self.0.out().as_ptr().addr()
    }

    /// When call `call` must be over (`performance.now()` milliseconds).
    #[wasm_bindgen(js_name = deadlineMs)]
    pub fn deadline_ms(&self, call: f64) -> f64 {
        self.0.deadline_ms(call)
    }

    /// Ends call `call` without an answer (cancelled, or the client
    /// closed); whether it was in flight.
    pub fn end(&mut self, call: f64) -> bool {
        self.0.end(call)
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

/// The module's memory (a `WebAssembly.Memory`), for views of numbers it
/// leaves there (`Failover.outAddress`).
#[wasm_bindgen(js_name = wasmMemory)]
pub fn wasm_memory() -> JsValue {
    wasm_bindgen::memory()
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
