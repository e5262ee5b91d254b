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
  SystemError,
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
/** The longest delay setTimeout takes. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Longest answer line accepted from a server. */
const MAX_RESPONSE = 64 << 20;

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
    // JackrabbitDLM's framing: that server answers one request per
    // connection and closes it, so every request gets one of its own.
    this.legacy = options.legacy;
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
    if (this.legacy) return this.oneShot(line, parse);
    const conn = this.mainConn;
    if (conn && !conn.closed) return conn.request(line, parse);
    return this.connection().then((c) => c.request(line, parse));
  }

  /** Sends `line` on a connection of its own, closed after the answer. */
  async oneShot(line, parse) {
    const conn = await this.checkout();
    try {
      return await conn.request(line, parse);
    } finally {
      this.checkin(conn);
    }
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
    if (!this.closed && !this.legacy && this.idle.length < MAX_IDLE) this.idle.push(conn);
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

/** A held lock. Release it with `unlock()` (or `await using`).
 *
 * Its rules (the deadline, when to renew, how to retry, when it is lost)
 * are dlm-core's lease, the WebAssembly `Lease` this class drives: it only
 * keeps one timer at the lease's next timeout, sends the requests the lease
 * hands out, one at a time, and passes their answers back. */
class Lock {
  /** @type {Session} */
  #session;
  #name;
  /** @type {import('./pkg/dlm_wasm').Lease} */
  #lease;
  #controller = new AbortController();
  #timer = undefined;
  /** The exchange in flight (a Promise), if any: one at a time. */
  #busy = undefined;
  /** The release in flight, if any: concurrent unlock() calls share it. */
  #releasing = undefined;

  /** @internal */
  constructor(session, name, lease) {
    this.#session = session;
    this.#name = name;
    this.#lease = lease;
    session.locks.add(this);
    this.#arm();
  }

  /** The lock's name. */
  get name() {
    return this.#name;
  }

  /** The fencing token of this grant: hand it to what the lock protects so
   * it can refuse a holder whose lock has expired. `0n` if the server gives
   * no tokens (JackrabbitDLM): nothing can fence then, and extensions are
   * plain re-locks, sent only before the lock's deadline. */
  get token() {
    return this.#lease.token ?? 0n;
  }

  /** Milliseconds left before the lock expires unless extended, by this
   * process's clock (never more than the server's); 0 once lost or released. */
  get expiresInMs() {
    this.#tick();
    return this.#lease.remainingMs(performance.now());
  }

  /** Whether the lock is lost (see `signal`). */
  get lost() {
    this.#tick();
    return this.#lease.lost;
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
    ttlMs = millis(ttlMs, 'ttlMs', this.#lease.ttlMs);
    await this.#idle();
    this.#tick();
    this.#lease.extend(performance.now(), ttlMs);
    const line = this.#lease.pollRequest(performance.now(), this.#session.writer, this.#name);
    if (line === undefined) {
      this.#events();
      throw new LockLostError('the lock was lost');
    }
    await this.#exchange(line);
  }

  /** Releases the lock. Rejects with LockLostError if it had already
   * expired (someone else may have held it meanwhile). Only an answer from
   * the server releases it: after a failure to reach it, call again. Calls
   * made while one is under way share its outcome; calls after a release
   * resolve. */
  unlock() {
    if (this.#releasing) return this.#releasing;
    this.#releasing = this.#release().finally(() => {
      this.#releasing = undefined;
    });
    return this.#releasing;
  }

  async #release() {
    await this.#idle();
    this.#tick();
    if (!this.#lease.release(performance.now())) return;
    const line = this.#lease.pollRequest(performance.now(), this.#session.writer, this.#name);
    if (line === undefined) return;
    try {
      await this.#exchange(line);
    } finally {
      if (this.#lease.released) this.#session.locks.delete(this);
    }
  }

  /** `await using lock = await client.lock(...)`: releases at the end of
   * the scope, best effort (like dropping a Rust `Lock`); call `unlock()`
   * to learn the outcome. */
  async [Symbol.asyncDispose]() {
    await this.unlock().catch(() => {});
  }

  /** Waits until no exchange is in flight. */
  async #idle() {
    while (this.#busy) await this.#busy.catch(() => {});
  }

  /** Advances the lease to now and reports what happened. */
  #tick() {
    this.#lease.handleTimeout(performance.now());
    this.#events();
  }

  /** Aborts the signal if the lease says the lock is lost. */
  #events(cause) {
    while (this.#lease.pollEvent() !== undefined) {
      const reason =
        cause instanceof LockLostError
          ? cause
          : new LockLostError('the lock expired before it was extended', { cause });
      clearTimeout(this.#timer);
      if (!this.#controller.signal.aborted) this.#controller.abort(reason);
    }
  }

  /** Sleeps until the lease's next timeout. The timer keeps the process
   * alive only while the lease renews itself. */
  #arm() {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#busy) return; // re-armed when the exchange ends
    const at = this.#lease.pollTimeout();
    if (at === undefined) return;
    // setTimeout takes at most 2^31 - 1 ms (a longer delay fires at once);
    // waking early is harmless: the lease says when it is due.
    const delay = Math.min(Math.max(0, at - performance.now()), MAX_TIMER_MS);
    this.#timer = setTimeout(() => this.#wake(), delay);
    if (!this.#lease.renewing) this.#timer.unref();
  }

  #wake() {
    this.#timer = undefined;
    this.#tick();
    if (this.#busy) return;
    const line = this.#lease.pollRequest(performance.now(), this.#session.writer, this.#name);
    if (line === undefined) {
      this.#arm();
      return;
    }
    // A renewal (or the give-back of a grant answered too late): its
    // outcome is in the lease, and in `signal` if the lock is lost.
    this.#exchange(line).catch(() => {});
  }

  /** Sends one request the lease handed out and gives it the answer. */
  #exchange(line) {
    const run = async () => {
      let answer;
      try {
        answer = await this.#session.request(line, (l) => l);
      } catch (err) {
        this.#lease.handleFailure(performance.now());
        throw err;
      }
      return this.#lease.handleResponse(performance.now(), answer);
    };
    const busy = run();
    this.#busy = busy;
    const settle = (err) => {
      if (this.#busy === busy) this.#busy = undefined;
      this.#events(err);
      this.#arm();
      // Something left to send (a grant to give back)?
      if (!this.#busy && this.#lease.hasRequest) this.#wake();
    };
    busy.then(() => settle(), settle);
    return busy;
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
    // dlm-core's Acquire: the send time it is given bounds the lease's
    // deadline, so it is taken before anything is sent.
    const acquisition = new wasm.Acquisition(ttlMs, waitMs, Boolean(autoRenew), performance.now());
    const line = acquisition.request(session.writer, name);
    if (signal?.aborted) throw cancelled(signal);
    const finish = (answer) => acquisition.finish(performance.now(), answer);
    let lease;
    if (acquisition.waits || signal) {
      const conn = await abortable(session.checkout(), signal, (c) => session.checkin(c));
      try {
        lease = await conn.request(line, finish, { extraMs: waitMs, signal });
      } finally {
        session.checkin(conn);
      }
    } else {
      lease = await session.request(line, finish);
    }
    return new Lock(session, name, lease);
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
   * Resolves with `fn`'s result; rejects with LockLostError if the lock was
   * lost meanwhile (whatever `fn` threw, an AbortError from `signal`
   * included, is its `cause`), or turned out lost when released. */
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
      if (lock.lost) {
        throw new LockLostError(lock.signal.reason?.message ?? 'the lock was lost', { cause: err });
      }
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
    const stored = await session.request(line, (answer) => wasm.parseStored(answer, expected !== undefined));
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
  const session = new Session({ host, port, timeoutMs, encoder, writer, legacy: Boolean(legacy) });
  // Reachable? (In legacy framing, a connection is only opened per request.)
  if (session.legacy) session.checkin(await session.checkout());
  else await session.connection();
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
  SystemError,
};
