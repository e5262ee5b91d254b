'use strict';
// The Node.js client of dlm. The WebAssembly module (./pkg, generated from
// wasm/src by scripts/test-wasm.sh) builds every request line and reads
// every answer: it is dlm-core's sans-I/O client. This file only moves
// bytes with node:net, matches answers to requests, and keeps time.
//
//   client.put() ─▶ encoder.encode() ─▶ RequestWriter.put() ─▶ Connection.request() ─▶ socket
//   resolve(revision) ◀─ parseStored(line) ◀─ FIFO of pending requests ◀─ '\n'-split ◀─ socket
//
// One connection carries every ordinary request, pipelined: answers come
// back in request order, so each one settles the oldest pending promise.
// A lock that waits in the server's queue (or can be aborted) takes a
// connection of its own from a small pool, so it holds up nobody; aborting
// it destroys that connection and the server drops the waiter.

const net = require('node:net');
const { webcrypto } = require('node:crypto');
const wasm = require('./pkg/dlm_wasm.js');
const errors = require('./errors.js');

// Every class by name, so `module.exports` below lists plain identifiers:
// that is what lets Node's ESM loader offer them as named imports.
const {
  DlmError,
  NotOwnerError,
  NotFoundError,
  ConflictError,
  TimeoutError,
  LockLostError,
  CancelledError,
  BadRequestError,
  NoMemoryError,
  UnavailableError,
  ProtocolError,
  EncodingError,
  InvalidArgumentError,
} = errors;

/** The server's default port. */
const DEFAULT_PORT = 37373;
/** A lock's time to live unless `ttlMs` says otherwise. */
const DEFAULT_TTL_MS = 30_000;
/** How long to wait for an answer (beyond a lock's own wait). */
const DEFAULT_TIMEOUT_MS = 10_000;
/** Idle connections kept for waiting locks. */
const MAX_IDLE = 4;
/** Connection attempts before a call fails with Unavailable. */
const CONNECT_ATTEMPTS = 3;
/** Longest answer line accepted from a server. */
const MAX_RESPONSE = 64 << 20;
/** After a wait, the grant is counted from the answer less this much. */
const WAIT_GRANT_SLACK_MS = 50;

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const NEWLINE = 0x0a;
const U64_MAX = (1n << 64n) - 1n;

function randomBytes(n) {
  return webcrypto.getRandomValues(new Uint8Array(n));
}

/** A random owner ID: 48 URL-safe characters from the OS's CSPRNG. */
function randomId() {
  let id = '';
  for (const b of randomBytes(48)) id += ID_ALPHABET[b & 63];
  return id;
}

/** A fresh random 32-byte key for `sealedEncoder`. */
function generateKey() {
  return randomBytes(32);
}

function toBytes(value, what) {
  if (typeof value === 'string') return new TextEncoder().encode(value);
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new InvalidArgumentError(`${what} must be a Uint8Array or a string`);
}

function toU64(value, what) {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return BigInt(value);
  if (typeof value === 'bigint' && value >= 0n && value <= U64_MAX) return value;
  throw new InvalidArgumentError(`${what} must be a non-negative integer (number or bigint)`);
}

function millis(value, what, fallback) {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') {
    throw new InvalidArgumentError(`${what} must be a number of milliseconds`);
  }
  return value; // the WebAssembly side checks the range
}

function cancelled(signal) {
  return new CancelledError('the wait was aborted', { cause: signal.reason });
}

/** JackrabbitDLM's table codec: readable by every dlm binding and by the
 * original Python client. The default encoder. */
const tableEncoder = Object.freeze({
  encode(_name, bytes) {
    return wasm.encodeTable(bytes);
  },
  decode(_name, text) {
    return wasm.decodeTable(text);
  },
});

/** Seals values with XChaCha20-Poly1305 under a 32-byte key, a random
 * nonce per value, and the data key's name as associated data: the server
 * only ever stores ciphertext, and a value moved to another name does not
 * open. The same key reads the same values from Rust, C and Go. */
function sealedEncoder(key) {
  const sealer = new wasm.Sealer(toBytes(key, 'the key'));
  return Object.freeze({
    encode(name, bytes) {
      return sealer.seal(randomBytes(24), name, bytes);
    },
    decode(name, text) {
      return sealer.open(name, text);
    },
  });
}

/** One socket to the server with a FIFO of requests awaiting answers. */
class Connection {
  constructor(socket, timeoutMs) {
    this.socket = socket;
    this.timeoutMs = timeoutMs;
    this.pending = [];
    this.partial = [];
    this.partialLength = 0;
    this.closed = false;
    this.error = undefined;
    socket.setNoDelay(true);
    socket.on('data', (chunk) => this.onData(chunk));
    socket.on('error', (err) => {
      this.error = err;
    });
    socket.on('close', () => {
      this.fail(new UnavailableError('the connection closed before an answer', { cause: this.error }));
    });
  }

  /** Opens a connection, trying a few times with a short backoff. */
  static async open(host, port, timeoutMs) {
    let last;
    for (let attempt = 0; attempt < CONNECT_ATTEMPTS; attempt += 1) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 50 * 2 ** (attempt - 1)));
      try {
        const socket = await connectOnce(host, port, timeoutMs);
        return new Connection(socket, timeoutMs);
      } catch (err) {
        last = err;
      }
    }
    throw new UnavailableError(`cannot connect to ${host}:${port}: ${last?.message}`, { cause: last });
  }

  /**
   * Sends one request line; resolves with `parse(answer line)`.
   * @param {Uint8Array} line
   * @param {(line: Uint8Array) => any} parse
   * @param {{ extraMs?: number, signal?: AbortSignal }} [options]
   */
  request(line, parse, { extraMs = 0, signal } = {}) {
    return new Promise((resolve, reject) => {
      if (this.closed) {
        reject(new UnavailableError('the connection is closed', { cause: this.error }));
        return;
      }
      if (signal?.aborted) {
        this.fail(cancelled(signal));
        reject(cancelled(signal));
        return;
      }
      const limit = this.timeoutMs + extraMs;
      const entry = { parse, resolve, reject, timer: undefined, signal, onAbort: undefined };
      entry.timer = setTimeout(() => {
        this.fail(new UnavailableError(`no answer within ${limit} ms`));
      }, limit);
      entry.timer.unref();
      if (signal) {
        // Closing the connection is how a waiter leaves the server's queue.
        entry.onAbort = () => this.fail(cancelled(signal));
        signal.addEventListener('abort', entry.onAbort, { once: true });
      }
      this.pending.push(entry);
      this.socket.write(line);
    });
  }

  onData(chunk) {
    let start = 0;
    let nl = chunk.indexOf(NEWLINE);
    while (nl !== -1) {
      let line = chunk.subarray(start, nl);
      if (this.partialLength > 0) {
        this.partial.push(line);
        line = Buffer.concat(this.partial);
        this.partial = [];
        this.partialLength = 0;
      }
      this.answer(line);
      if (this.closed) return;
      start = nl + 1;
      nl = chunk.indexOf(NEWLINE, start);
    }
    if (start < chunk.length) {
      this.partial.push(chunk.subarray(start));
      this.partialLength += chunk.length - start;
      if (this.partialLength > MAX_RESPONSE) {
        this.fail(new ProtocolError(`an answer longer than ${MAX_RESPONSE} bytes`));
      }
    }
  }

  answer(line) {
    const entry = this.pending.shift();
    if (!entry) {
      this.fail(new ProtocolError('an answer to no request'));
      return;
    }
    settle(entry);
    let value;
    try {
      value = entry.parse(line);
    } catch (err) {
      entry.reject(err);
      return;
    }
    entry.resolve(value);
  }

  /** Closes the connection and rejects everything pending with `err`. */
  fail(err) {
    if (!this.closed) {
      this.closed = true;
      this.socket.destroy();
    }
    const pending = this.pending;
    this.pending = [];
    for (const entry of pending) {
      settle(entry);
      entry.reject(err);
    }
  }
}

function settle(entry) {
  clearTimeout(entry.timer);
  if (entry.onAbort) entry.signal.removeEventListener('abort', entry.onAbort);
}

function connectOnce(host, port, timeoutMs) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no connection within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    });
  });
}

/** Rejects with CancelledError as soon as `signal` aborts; `onLate` gets
 * the value if it arrives after that (to dispose of it). */
function abortable(promise, signal, onLate) {
  if (!signal) return promise;
  return new Promise((resolve, reject) => {
    let done = false;
    const onAbort = () => {
      done = true;
      reject(cancelled(signal));
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        if (done) onLate(v);
        else resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        if (!done) reject(e);
      },
    );
  });
}

/** Everything a client shares with its locks: the request writer, the
 * pipelined connection, the pool for waiting locks. */
class Session {
  constructor(options) {
    this.host = options.host;
    this.port = options.port;
    this.timeoutMs = options.timeoutMs;
    /** @type {import('./index').Encoder} */
    this.encoder = options.encoder;
    /** @type {import('./pkg/dlm_wasm').RequestWriter} */
    this.writer = options.writer;
    this.mainConn = undefined; // the pipelined Connection
    this.mainOpening = undefined; // Promise<Connection> while it opens
    this.idle = [];
    this.busy = new Set();
    this.locks = new Set();
    this.closed = false;
    this.closing = undefined; // Promise of close()
  }

  checkOpen() {
    if (this.closed) throw new UnavailableError('the client is closed');
  }

  /** The pipelined connection, reopened if the last one closed; callers
   * arriving while it opens share the attempt. */
  async connection() {
    this.checkOpen();
    if (this.mainConn && !this.mainConn.closed) return this.mainConn;
    if (!this.mainOpening) {
      this.mainOpening = Connection.open(this.host, this.port, this.timeoutMs)
        .then((conn) => {
          if (this.closed) {
            conn.fail(new UnavailableError('the client is closed'));
            throw new UnavailableError('the client is closed');
          }
          this.mainConn = conn;
          return conn;
        })
        .finally(() => {
          this.mainOpening = undefined;
        });
    }
    return this.mainOpening;
  }

  /** Sends `line` on the pipelined connection; resolves with `parse(answer)`.
   * While connected, the line is written at once, so calls made one after
   * another are sent (and answered) in that order. */
  request(line, parse) {
    this.checkOpen();
    const conn = this.mainConn;
    if (conn && !conn.closed) return conn.request(line, parse);
    return this.connection().then((c) => c.request(line, parse));
  }

  /** A connection of its own (for a waiting or abortable call). */
  async checkout() {
    this.checkOpen();
    let conn;
    while ((conn = this.idle.pop())) {
      if (!conn.closed) break;
    }
    if (!conn) conn = await Connection.open(this.host, this.port, this.timeoutMs);
    if (this.closed) {
      conn.fail(new UnavailableError('the client is closed'));
      throw new UnavailableError('the client is closed');
    }
    this.busy.add(conn);
    return conn;
  }

  checkin(conn) {
    this.busy.delete(conn);
    if (conn.closed) return;
    if (!this.closed && this.idle.length < MAX_IDLE) this.idle.push(conn);
    else conn.fail(new UnavailableError('the connection is no longer needed'));
  }

  /** Closes every connection; pending calls fail with Unavailable. */
  shutdown() {
    this.closed = true;
    const err = new UnavailableError('the client is closed');
    for (const conn of [...this.idle, ...this.busy]) conn.fail(err);
    this.idle = [];
    this.busy.clear();
    this.mainConn?.fail(err);
    this.mainConn = undefined;
  }
}

/** A held lock. Release it with `unlock()` (or `await using`). */
class Lock {
  /** @type {Session} */
  #session;
  #name;
  #token;
  #ttlMs;
  #deadline;
  #controller = new AbortController();
  #released = false;
  #releasing = undefined;
  #renewTimer = undefined;
  #expiryTimer = undefined;

  /** @internal */
  constructor(session, name, token, ttlMs, deadline, autoRenew) {
    this.#session = session;
    this.#name = name;
    this.#token = token;
    this.#ttlMs = ttlMs;
    this.#deadline = deadline;
    session.locks.add(this);
    this.#armExpiry();
    if (autoRenew) this.#scheduleRenewal(ttlMs / 3);
  }

  /** The lock's name. */
  get name() {
    return this.#name;
  }

  /** The fencing token of this grant: hand it to what the lock protects so
   * it can refuse a holder whose lock has expired. */
  get token() {
    return this.#token;
  }

  /** Milliseconds left before the lock expires unless extended, by this
   * process's clock (never more than the server's); 0 once lost or released. */
  get expiresInMs() {
    if (this.lost || this.#released) return 0;
    return Math.max(0, Math.floor(this.#deadline - performance.now()));
  }

  /** Whether the lock is lost (see `signal`). */
  get lost() {
    return this.#controller.signal.aborted;
  }

  /** Aborts (with a LockLostError reason) once the lock is lost or can no
   * longer be assumed held: an extension or release found it gone, or its
   * deadline passed without a successful extension (auto-renewal failing
   * or, without auto-renewal, its TTL running out). Not aborted by a
   * release: pass it to work the lock protects. */
  get signal() {
    return this.#controller.signal;
  }

  /** Extends this grant to `ttlMs` from now (default: the current TTL).
   * Never re-acquires: fails with LockLostError if the lock is gone. */
  async extend(ttlMs) {
    ttlMs = millis(ttlMs, 'ttlMs', this.#ttlMs);
    if (this.#released || this.lost) throw new LockLostError('the lock was released or lost');
    const line = this.#session.writer.extend(this.#name, ttlMs, this.#token);
    const sent = performance.now();
    try {
      await this.#session.request(line, wasm.parseExtended);
    } catch (err) {
      if (err instanceof LockLostError) this.#markLost(err);
      throw err;
    }
    if (this.lost && !this.#released) {
      // The deadline passed while the extension was in flight, and the
      // signal has fired: give the grant back rather than hold it unseen.
      this.#session.request(this.#session.writer.unlock(this.#name, this.#token), wasm.parseReleased).catch(() => {});
      throw new LockLostError('the lock expired while being extended');
    }
    if (this.#released) return;
    this.#ttlMs = ttlMs;
    this.#deadline = sent + ttlMs;
    this.#armExpiry();
  }

  /** Releases the lock. Rejects with LockLostError if it had already
   * expired (someone else may have held it meanwhile). Idempotent: later
   * calls resolve once the first has finished. */
  unlock() {
    if (this.#releasing) return this.#releasing.then(() => {}, () => {});
    this.#releasing = this.#release();
    return this.#releasing;
  }

  async #release() {
    this.#released = true;
    clearTimeout(this.#renewTimer);
    clearTimeout(this.#expiryTimer);
    this.#session.locks.delete(this);
    const line = this.#session.writer.unlock(this.#name, this.#token);
    try {
      await this.#session.request(line, wasm.parseLockReleased);
    } catch (err) {
      if (err instanceof LockLostError) this.#markLost(err);
      throw err;
    }
  }

  /** `await using lock = await client.lock(...)`: releases at the end of
   * the scope, best effort (like dropping a Rust `Lock`); call `unlock()`
   * to learn the outcome. */
  async [Symbol.asyncDispose]() {
    await this.unlock().catch(() => {});
  }

  #markLost(reason) {
    clearTimeout(this.#renewTimer);
    clearTimeout(this.#expiryTimer);
    if (!this.lost) this.#controller.abort(reason);
  }

  #armExpiry() {
    clearTimeout(this.#expiryTimer);
    const left = this.#deadline - performance.now();
    this.#expiryTimer = setTimeout(() => {
      if (!this.#released) this.#markLost(new LockLostError('the lock expired before it was extended'));
    }, Math.max(0, left));
    this.#expiryTimer.unref();
  }

  // Unlike the expiry timer, the renewal timer keeps the process alive: a
  // renewed lock is held until it is released (or the client closed).
  #scheduleRenewal(delayMs) {
    clearTimeout(this.#renewTimer);
    this.#renewTimer = setTimeout(() => this.#renew(), Math.max(0, delayMs));
  }

  async #renew() {
    if (this.#released || this.lost) return;
    const ttlMs = this.#ttlMs;
    try {
      await this.extend(ttlMs);
      if (!this.#released && !this.lost) this.#scheduleRenewal(ttlMs / 3);
    } catch (err) {
      if (this.#released || this.lost || err instanceof LockLostError) return;
      // The server may be briefly unreachable: keep trying until the lock
      // must have expired (the expiry timer then marks it lost).
      const left = this.#deadline - performance.now();
      if (left <= 0) {
        this.#markLost(new LockLostError('the lock could not be renewed in time', { cause: err }));
        return;
      }
      this.#scheduleRenewal(Math.min(Math.min(Math.max(ttlMs / 10, 10), 1000), left));
    }
  }
}

/** A connection to a dlm server. Make one with `connect()`. */
class Client {
  /** @type {Session} */
  #session;

  /** @internal */
  constructor(session) {
    this.#session = session;
  }

  /** The owner ID this client sends. */
  get id() {
    return this.#session.writer.id;
  }

  /** Acquires `name`. Without `waitMs`, one attempt (NotOwnerError if
   * another owner holds it); with it, queue in the server's fair queue up
   * to that long (TimeoutError when it runs out). `signal` aborts the wait
   * at once (CancelledError). */
  async lock(name, options = {}) {
    const { ttlMs: ttlOption, waitMs: waitOption, signal, autoRenew = false } = options;
    const session = this.#session;
    session.checkOpen();
    const ttlMs = millis(ttlOption, 'ttlMs', DEFAULT_TTL_MS);
    const waitMs = millis(waitOption, 'waitMs', 0);
    const line = session.writer.lock(name, ttlMs, waitMs);
    if (signal?.aborted) throw cancelled(signal);
    const waited = waitMs > 0;
    const parse = (answer) => wasm.parseGrant(answer, waited);
    const sent = performance.now();
    let grant;
    if (waited || signal) {
      const conn = await abortable(session.checkout(), signal, (c) => session.checkin(c));
      try {
        grant = await conn.request(line, parse, { extraMs: waitMs, signal });
      } finally {
        session.checkin(conn);
      }
    } else {
      grant = await session.request(line, parse);
    }
    // The server granted between our request and its answer; counting the
    // TTL from the request keeps our deadline no later than the server's.
    // After a wait the grant came just before the answer.
    const received = performance.now();
    const grantedAt = waited ? Math.max(sent, received - WAIT_GRANT_SLACK_MS) : sent;
    return new Lock(session, name, grant.token, ttlMs, grantedAt + grant.ttlMs, autoRenew);
  }

  /** One attempt at `name`: the lock, or null if another owner holds it. */
  async tryLock(name, options = {}) {
    try {
      return await this.lock(name, { ...options, waitMs: 0 });
    } catch (err) {
      if (err instanceof NotOwnerError) return null;
      throw err;
    }
  }

  /** Runs `fn(signal, lock)` holding `name` (auto-renewed unless
   * `autoRenew: false`), and releases it afterwards, even if `fn` throws.
   * Resolves with `fn`'s result; rejects with LockLostError if the lock
   * turned out to be lost when it was released. */
  async withLock(name, options, fn) {
    if (typeof options === 'function') {
      fn = options;
      options = {};
    }
    if (typeof fn !== 'function') throw new InvalidArgumentError('withLock needs a function');
    const lock = await this.lock(name, { autoRenew: true, ...options });
    let result;
    try {
      result = await fn(lock.signal, lock);
    } catch (err) {
      await lock.unlock().catch(() => {});
      throw err;
    }
    await lock.unlock();
    return result;
  }

  /** Whether `name` is locked: `{ state: 'free' }`, `{ state: 'mine',
   * token, ttlMs }` or `{ state: 'taken', ttlMs? }`. Never acquires. */
  async testLock(name) {
    const session = this.#session;
    session.checkOpen();
    return session.request(session.writer.testLock(name), wasm.parseLockState);
  }

  /** Releases `name` if this client's ID holds it (only the grant `token`
   * if given); whether a lock was released. Prefer `lock.unlock()`; this
   * is for tools that know a name and a token. */
  async unlock(name, options = {}) {
    const session = this.#session;
    session.checkOpen();
    const token = options.token === undefined ? undefined : toU64(options.token, 'token');
    return session.request(session.writer.unlock(name, token), wasm.parseReleased);
  }

  /** Stores `value` (bytes, or a string as UTF-8) under `name` for
   * `ttlMs`; with `revision`, only if the stored revision is that (0: only
   * if absent), else ConflictError. Resolves with the new revision. */
  async put(name, value, options = {}) {
    const session = this.#session;
    session.checkOpen();
    const { ttlMs, revision } = options;
    if (typeof ttlMs !== 'number') throw new InvalidArgumentError('put needs ttlMs');
    const expected = revision === undefined ? undefined : toU64(revision, 'revision');
    const encoded = session.encoder.encode(name, toBytes(value, 'a value'));
    if (typeof encoded !== 'string') throw new InvalidArgumentError('an encoder must return a string');
    const line = session.writer.put(name, ttlMs, encoded, expected);
    const stored = await session.request(line, wasm.parseStored);
    return stored.revision;
  }

  /** Reads `name`: `{ value, revision, ttlMs }`, or null if there is none. */
  async get(name) {
    const session = this.#session;
    session.checkOpen();
    const fetched = await session.request(session.writer.get(name), wasm.parseFetched);
    if (fetched === undefined) return null;
    const value = session.encoder.decode(name, fetched.data);
    return { value: toBytes(value, 'a decoded value'), revision: fetched.revision, ttlMs: fetched.ttlMs };
  }

  /** Deletes `name`; whether there was an entry. */
  async erase(name) {
    const session = this.#session;
    session.checkOpen();
    return session.request(session.writer.erase(name), wasm.parseErased);
  }

  /** The server's version string (it contains "JackrabbitDLM"). */
  async version() {
    const session = this.#session;
    session.checkOpen();
    return session.request(session.writer.version(), wasm.parseVersion);
  }

  /** The server's counters and gauges, by name (`Lock`, `AWait`, ...). */
  async stats() {
    const session = this.#session;
    session.checkOpen();
    return session.request(session.writer.stats(), wasm.parseStats);
  }

  /** Releases the locks this client holds (best effort), then closes every
   * connection; calls after it fail with UnavailableError. Idempotent. */
  async close() {
    const session = this.#session;
    if (session.closing) return session.closing;
    session.closing = (async () => {
      await Promise.allSettled([...session.locks].map((lock) => lock.unlock()));
      session.shutdown();
    })();
    return session.closing;
  }

  /** `await using client = await connect(...)` closes it at scope end. */
  async [Symbol.asyncDispose]() {
    await this.close();
  }
}

/**
 * Connects to a dlm server. One connection is opened now, so an
 * unreachable server is reported here (UnavailableError).
 */
async function connect(options = {}) {
  const {
    host = '127.0.0.1',
    port = DEFAULT_PORT,
    clientId,
    timeoutMs = DEFAULT_TIMEOUT_MS,
    encoder = tableEncoder,
    legacy = false,
    identity,
  } = options;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidArgumentError('port must be an integer from 0 to 65535');
  }
  if (!(typeof timeoutMs === 'number' && timeoutMs > 0)) {
    throw new InvalidArgumentError('timeoutMs must be a positive number');
  }
  if (!encoder || typeof encoder.encode !== 'function' || typeof encoder.decode !== 'function') {
    throw new InvalidArgumentError('an encoder needs encode(name, bytes) and decode(name, text)');
  }
  if (clientId !== undefined && typeof clientId !== 'string') {
    throw new InvalidArgumentError('clientId must be a string');
  }
  const writer = new wasm.RequestWriter(
    clientId ?? randomId(),
    Boolean(legacy),
    identity?.name,
    identity?.secret,
  );
  const session = new Session({ host, port, timeoutMs, encoder, writer });
  await session.connection();
  return new Client(session);
}

module.exports = {
  connect,
  Client,
  Lock,
  tableEncoder,
  sealedEncoder,
  generateKey,
  randomId,
  DEFAULT_PORT,
  DEFAULT_TTL_MS,
  DlmError,
  NotOwnerError,
  NotFoundError,
  ConflictError,
  TimeoutError,
  LockLostError,
  CancelledError,
  BadRequestError,
  NoMemoryError,
  UnavailableError,
  ProtocolError,
  EncodingError,
  InvalidArgumentError,
};
