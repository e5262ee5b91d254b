'use strict';
// The Node.js client of dlm. The WebAssembly module (./pkg, generated from
// wasm/src by scripts/build-wasm.sh) builds every request and reads every
// answer: it is dlm-core's sans-I/O client. This file only moves bytes
// with node:net, matches answers to requests, and keeps time.
//
//   client.put() ─▶ link.putTable() ─▶ link's output ─(once per turn)─▶ socket.write
//   resolve(revision) ◀─ link.readStored() ◀─ FIFO of pending requests ◀─ link.feed(chunk) ◀─ socket
//
// Each connection has a WebAssembly `Link` holding its bytes both ways, so
// an answer crosses into JavaScript as the few numbers or bytes its caller
// wants (a Get's value arrives decoded), never as an object built field by
// field, and a turn's requests leave in one write.
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

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const U64_MAX = (1n << 64n) - 1n;

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });

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
  if (typeof value === 'string') return textEncoder.encode(value);
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

/** The sealed encoders made here, with their keys in WebAssembly. */
const sealers = new WeakMap();

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
  const encoder = Object.freeze({
    encode(name, bytes) {
      return sealer.seal(randomBytes(24), name, bytes);
    },
    decode(name, text) {
      return sealer.open(name, text);
    },
  });
  // A client with this encoder seals and opens inside the module.
  sealers.set(encoder, sealer);
  return encoder;
}

/**
 * One socket to the server, its WebAssembly `Link` (the request and answer
 * buffers) and a FIFO of requests awaiting answers.
 *
 * A request is appended to the link's output at once, and everything
 * appended in one turn of the event loop is written with one
 * `socket.write` at its end (a `process.nextTick`, after the promise jobs
 * that made the requests). Every chunk received is fed to the link, which
 * says how many complete answers it holds; each settles the oldest pending
 * request, read by that request's own `read(link)`. One timer per
 * connection watches the deadlines of all of them.
 */
class Connection {
  /**
   * @param {import('node:net').Socket} socket
   * @param {number} timeoutMs
   * @param {import('./pkg/dlm_wasm').Link} link
   */
  constructor(socket, timeoutMs, link) {
    this.socket = socket;
    this.timeoutMs = timeoutMs;
    this.link = link;
    this.pending = [];
    this.closed = false;
    this.error = undefined;
    this.flushQueued = false;
    this.watchdog = undefined;
    this.watchdogAt = Infinity;
    socket.setNoDelay(true);
    socket.on('data', (chunk) => this.onData(chunk));
    socket.on('error', (err) => {
      this.error = err;
    });
    socket.on('close', () => {
      this.fail(new UnavailableError('the connection closed before an answer', { cause: this.error }));
    });
  }

  /** Opens a connection, trying a few times with a short backoff;
   * `newLink()` makes its link. */
  static async open(host, port, timeoutMs, newLink) {
    let last;
    for (let attempt = 0; attempt < CONNECT_ATTEMPTS; attempt += 1) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 50 * 2 ** (attempt - 1)));
      try {
        const socket = await connectOnce(host, port, timeoutMs);
        return new Connection(socket, timeoutMs, newLink());
      } catch (err) {
        last = err;
      }
    }
    throw new UnavailableError(`cannot connect to ${host}:${port}: ${last?.message}`, { cause: last });
  }

  /**
   * Sends one request: `write(link)` appends it (or throws, appending
   * nothing); resolves with `read(link)`, which reads its answer.
   * @template T
   * @param {(link: import('./pkg/dlm_wasm').Link) => void} write
   * @param {(link: import('./pkg/dlm_wasm').Link) => T} read
   * @param {{ extraMs?: number, signal?: AbortSignal }} [options]
   * @returns {Promise<T>}
   */
  request(write, read, options) {
    return new Promise((resolve, reject) => {
      if (this.closed) {
        reject(new UnavailableError('the connection is closed', { cause: this.error }));
        return;
      }
      const signal = options?.signal;
      if (signal?.aborted) {
        this.fail(cancelled(signal));
        reject(cancelled(signal));
        return;
      }
      try {
        write(this.link);
      } catch (err) {
        reject(err);
        return;
      }
      const limit = this.timeoutMs + (options?.extraMs ?? 0);
      const entry = { read, resolve, reject, deadline: performance.now() + limit, limit, signal, onAbort: undefined };
      if (signal) {
        // Closing the connection is how a waiter leaves the server's queue.
        entry.onAbort = () => this.fail(cancelled(signal));
        signal.addEventListener('abort', entry.onAbort, { once: true });
      }
      this.pending.push(entry);
      if (entry.deadline < this.watchdogAt) this.watch(entry.deadline);
      if (!this.flushQueued) {
        this.flushQueued = true;
        process.nextTick(flush, this);
      }
    });
  }

  /** Arms the one timer for the earliest deadline, `at`. It never keeps
   * the process alive: the pending promises' callers do. */
  watch(at) {
    clearTimeout(this.watchdog);
    this.watchdogAt = at;
    // setTimeout takes at most 2^31 - 1 ms; waking early only re-arms.
    const delay = Math.min(Math.max(0, at - performance.now()) + 1, MAX_TIMER_MS);
    this.watchdog = setTimeout(onWatchdog, delay, this);
    this.watchdog.unref();
  }

  onData(chunk) {
    if (this.closed) return;
    let answers;
    try {
      answers = this.link.feed(chunk);
    } catch (err) {
      this.fail(err);
      return;
    }
    for (; answers > 0 && !this.closed; answers -= 1) {
      const entry = this.pending.shift();
      if (!entry) {
        this.fail(new ProtocolError('an answer to no request'));
        return;
      }
      if (entry.onAbort) entry.signal.removeEventListener('abort', entry.onAbort);
      let value;
      try {
        value = entry.read(this.link);
      } catch (err) {
        entry.reject(err);
        continue;
      }
      entry.resolve(value);
    }
  }

  /** Closes the connection and rejects everything pending with `err`. */
  fail(err) {
    if (!this.closed) {
      this.closed = true;
      this.socket.destroy();
      clearTimeout(this.watchdog);
      this.watchdog = undefined;
      this.link.free();
    }
    const pending = this.pending;
    this.pending = [];
    for (const entry of pending) {
      if (entry.onAbort) entry.signal.removeEventListener('abort', entry.onAbort);
      entry.reject(err);
    }
  }
}

/** Writes what the requests of this turn appended, in one write. */
function flush(conn) {
  conn.flushQueued = false;
  if (conn.closed) return;
  conn.socket.write(conn.link.takeOutput());
}

/** A request is overdue: fail the connection (answers come in order, so
 * nothing behind it can be answered either); else re-arm for the next. */
function onWatchdog(conn) {
  conn.watchdog = undefined;
  conn.watchdogAt = Infinity;
  const now = performance.now();
  let next = Infinity;
  for (const entry of conn.pending) {
    if (entry.deadline <= now) {
      conn.fail(new UnavailableError(`no answer within ${entry.limit} ms`));
      return;
    }
    if (entry.deadline < next) next = entry.deadline;
  }
  if (next !== Infinity) conn.watch(next);
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

/** Everything a client shares with its locks: who it is, the pipelined
 * connection, the pool for waiting locks. */
class Session {
  constructor(options) {
    this.host = options.host;
    this.port = options.port;
    this.timeoutMs = options.timeoutMs;
    /** @type {import('./index').Encoder} */
    this.encoder = options.encoder;
    /** The owner ID and, if any, the identity every request carries. */
    this.id = options.id;
    this.identity = options.identity;
    // JackrabbitDLM's framing: that server answers one request per
    // connection and closes it, so every request gets one of its own.
    this.legacy = options.legacy;
    this.mainConn = undefined; // the pipelined Connection
    this.mainOpening = undefined; // Promise<Connection> while it opens
    this.idle = [];
    this.busy = new Set();
    this.locks = new Set();
    /** The held locks' leases, by handle. */
    this.leases = new wasm.Leases();
    this.closed = false;
    this.closing = undefined; // Promise of close()
  }

  /** A new connection's link (connect() checked the arguments once). */
  newLink() {
    return new wasm.Link(this.id, this.legacy, this.identity?.name, this.identity?.secret);
  }

  checkOpen() {
    if (this.closed) throw new UnavailableError('the client is closed');
  }

  /** Opens a connection of this session's. */
  open() {
    return Connection.open(this.host, this.port, this.timeoutMs, () => this.newLink());
  }

  /** The pipelined connection, reopened if the last one closed; callers
   * arriving while it opens share the attempt. */
  async connection() {
    this.checkOpen();
    if (this.mainConn && !this.mainConn.closed) return this.mainConn;
    if (!this.mainOpening) {
      this.mainOpening = this.open()
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

  /** Sends a request on the pipelined connection (see
   * `Connection.request`). While connected, it is appended at once, so
   * calls made one after another are sent (and answered) in that order. */
  request(write, read) {
    this.checkOpen();
    if (this.legacy) return this.oneShot(write, read);
    const conn = this.mainConn;
    if (conn && !conn.closed) return conn.request(write, read);
    return this.connection().then((c) => c.request(write, read));
  }

  /** Sends a request on a connection of its own, closed after the answer. */
  async oneShot(write, read) {
    const conn = await this.checkout();
    try {
      return await conn.request(write, read);
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
    if (!conn) conn = await this.open();
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
 * are dlm-core's lease, kept in the WebAssembly module's table of leases
 * (`Leases`) under this lock's handle: this class only keeps one timer at
 * the lease's next timeout, sends the requests the lease hands out, one at
 * a time, and passes their answers back. The timer runs only while it has
 * something to do: renewing, or aborting `signal` at the deadline once
 * someone holds that signal. Once released, the lease leaves the table. */
class Lock {
  /** @type {Session} */
  #session;
  #name;
  /** @type {import('./pkg/dlm_wasm').Leases} */
  #leases;
  /** This lock's lease in `#leases`; it names nothing once released. */
  #handle;
  /** The token, once asked for (it never changes). */
  #token = undefined;
  /** Whether it turned out lost, once the lease is gone. */
  #lostAtRelease = false;
  /** Made when `signal` is first asked for. */
  #controller = undefined;
  /** Why the lock was lost, once it is. */
  #lostReason = undefined;
  #timer = undefined;
  /** The exchange in flight (a Promise), if any: one at a time. */
  #busy = undefined;
  /** The release in flight, if any: concurrent unlock() calls share it. */
  #releasing = undefined;

  /** @internal */
  constructor(session, name, handle) {
    this.#session = session;
    this.#name = name;
    this.#leases = session.leases;
    this.#handle = handle;
    session.locks.add(this);
    if (this.#leases.renewing(handle)) this.#arm();
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
    if (this.#token === undefined) this.#token = this.#leases.token(this.#handle) ?? 0n;
    return this.#token;
  }

  /** Milliseconds left before the lock expires unless extended, by this
   * process's clock (never more than the server's); 0 once lost or released. */
  get expiresInMs() {
    this.#tick();
    return this.#leases.remainingMs(this.#handle, performance.now());
  }

  /** Whether the lock is lost (see `signal`). */
  get lost() {
    this.#tick();
    return this.#lostAtRelease || this.#leases.lost(this.#handle);
  }

  /** Aborts (with a LockLostError reason) once the lock is lost or can no
   * longer be assumed held: an extension or release found it gone, or its
   * deadline passed without a successful extension (auto-renewal failing
   * or, without auto-renewal, its TTL running out). Not aborted by a
   * release: pass it to work the lock protects. */
  get signal() {
    if (!this.#controller) {
      this.#controller = new AbortController();
      this.#tick();
      if (this.#lostReason) this.#controller.abort(this.#lostReason);
      else this.#arm();
    }
    return this.#controller.signal;
  }

  /** Extends this grant to `ttlMs` from now (default: the current TTL).
   * Never re-acquires: fails with LockLostError if the lock is gone. */
  async extend(ttlMs) {
    ttlMs = millis(ttlMs, 'ttlMs', this.#leases.ttlMs(this.#handle));
    await this.#idle();
    this.#tick();
    this.#leases.extend(this.#handle, performance.now(), ttlMs);
    await this.#exchange();
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
    if (this.#busy) await this.#idle();
    this.#tick();
    if (!this.#leases.release(this.#handle, performance.now())) return;
    try {
      await this.#exchange();
    } finally {
      if (this.#leases.released(this.#handle)) this.#forget();
    }
  }

  /** The lock is released: keep what its getters still tell, and let its
   * lease go. */
  #forget() {
    if (this.#token === undefined) this.#token = this.#leases.token(this.#handle) ?? 0n;
    this.#lostAtRelease = this.#leases.lost(this.#handle);
    this.#leases.remove(this.#handle);
    this.#session.locks.delete(this);
    clearTimeout(this.#timer);
    this.#timer = undefined;
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
    this.#leases.handleTimeout(this.#handle, performance.now());
    this.#events();
  }

  /** Aborts the signal if the lease says the lock is lost. */
  #events(cause) {
    if (this.#leases.pollLost(this.#handle)) {
      this.#lostReason =
        cause instanceof LockLostError
          ? cause
          : new LockLostError('the lock expired before it was extended', { cause });
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#controller?.abort(this.#lostReason);
    }
  }

  /** Sleeps until the lease's next timeout, if anyone needs it: a renewal
   * is due then, or the deadline aborts a signal someone holds. The timer
   * keeps the process alive only while the lease renews itself. */
  #arm() {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#busy) return; // re-armed when the exchange ends
    const renewing = this.#leases.renewing(this.#handle);
    if (!renewing && !this.#controller) return;
    const at = this.#leases.pollTimeout(this.#handle);
    if (at === undefined) return;
    // setTimeout takes at most 2^31 - 1 ms (a longer delay fires at once);
    // waking early is harmless: the lease says when it is due.
    const delay = Math.min(Math.max(0, at - performance.now()), MAX_TIMER_MS);
    this.#timer = setTimeout(() => this.#wake(), delay);
    if (!renewing) this.#timer.unref();
  }

  #wake() {
    this.#timer = undefined;
    this.#tick();
    if (this.#busy) return;
    if (!this.#leases.hasRequest(this.#handle)) {
      this.#arm();
      return;
    }
    // A renewal (or the give-back of a grant answered too late): its
    // outcome is in the lease, and in `signal` if the lock is lost.
    this.#exchange().catch(() => {});
  }

  /** Sends the request the lease hands out and gives it the answer. */
  #exchange() {
    const leases = this.#leases;
    const handle = this.#handle;
    const name = this.#name;
    const run = async () => {
      let written = false;
      try {
        await this.#session.request(
          (link) => {
            written = true;
            if (!link.leaseRequest(leases, handle, performance.now(), name)) {
              // An extension asked for after the deadline passed.
              throw new LockLostError('the lock was lost');
            }
          },
          (link) => link.readLease(leases, handle, performance.now()),
        );
      } catch (err) {
        // No answer, or no connection to send it on: a renewal is retried
        // until the deadline, a release waits to be asked again. After an
        // answer the lease has nothing in flight and this does nothing.
        if (written) leases.handleFailure(handle, performance.now());
        else leases.handleUnsent(handle, performance.now());
        throw err;
      }
    };
    const busy = run();
    this.#busy = busy;
    const settle = (err) => {
      if (this.#busy === busy) this.#busy = undefined;
      this.#events(err);
      this.#arm();
      // Something left to send (a grant to give back)?
      if (!this.#busy && leases.hasRequest(handle)) this.#wake();
    };
    busy.then(() => settle(), settle);
    return busy;
  }
}

/** A stored value's bytes from a JavaScript encoder's `decode`. */
function decodeWith(encoder, name, text) {
  return toBytes(encoder.decode(name, text), 'a decoded value');
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
    return this.#session.id;
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
    const renew = Boolean(autoRenew);
    if (signal?.aborted) throw cancelled(signal);
    // dlm-core's Acquire: the send time it is given bounds the lease's
    // deadline, so it is taken before the request is written.
    let sentMs = 0;
    const write = (link) => {
      sentMs = performance.now();
      link.lock(name, ttlMs, waitMs);
    };
    const read = (link) => link.readGrant(session.leases, ttlMs, waitMs, renew, sentMs, performance.now());
    let handle;
    if (waitMs > 0 || signal) {
      const conn = await abortable(session.checkout(), signal, (c) => session.checkin(c));
      try {
        handle = await conn.request(write, read, { extraMs: waitMs, signal });
      } finally {
        session.checkin(conn);
      }
    } else {
      handle = await session.request(write, read);
    }
    return new Lock(session, name, handle);
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
    return session.request(
      (link) => link.testLock(name),
      (link) => {
        switch (link.readLockState()) {
          case 0:
            return { state: 'free' };
          case 1:
            return { state: 'mine', token: link.token, ttlMs: link.ttlMs };
          default:
            return { state: 'taken', ttlMs: link.ttlMs };
        }
      },
    );
  }

  /** Releases `name` if this client's ID holds it (only the grant `token`
   * if given); whether a lock was released. Prefer `lock.unlock()`; this
   * is for tools that know a name and a token. */
  async unlock(name, options = {}) {
    const session = this.#session;
    session.checkOpen();
    const token = options.token === undefined ? undefined : toU64(options.token, 'token');
    return session.request(
      (link) => link.unlock(name, token),
      (link) => link.readReleased(),
    );
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
    const bytes = toBytes(value, 'a value');
    const encoder = session.encoder;
    let write;
    if (encoder === tableEncoder) {
      // The built-in encoders run inside the module: no text crosses.
      write = (link) => link.putTable(name, ttlMs, bytes, expected);
    } else if (sealers.has(encoder)) {
      const sealer = sealers.get(encoder);
      write = (link) => link.putSealed(sealer, randomBytes(24), name, ttlMs, bytes, expected);
    } else {
      const encoded = encoder.encode(name, bytes);
      if (typeof encoded !== 'string') throw new InvalidArgumentError('an encoder must return a string');
      write = (link) => link.put(name, ttlMs, encoded, expected);
    }
    const compared = expected !== undefined;
    return session.request(write, (link) => link.readStored(compared));
  }

  /** Reads `name`: `{ value, revision, ttlMs }`, or null if there is none. */
  async get(name) {
    const session = this.#session;
    session.checkOpen();
    const encoder = session.encoder;
    const write = (link) => link.get(name);
    if (encoder === tableEncoder || sealers.has(encoder)) {
      const sealer = sealers.get(encoder);
      return session.request(write, (link) => {
        const value = sealer ? link.readFetchedSealed(sealer, name) : link.readFetchedTable();
        return value === undefined ? null : { value, revision: link.revision, ttlMs: link.ttlMs ?? 0 };
      });
    }
    const fetched = await session.request(write, (link) => {
      const raw = link.readFetched();
      return raw === undefined ? null : { raw, revision: link.revision, ttlMs: link.ttlMs ?? 0 };
    });
    if (fetched === null) return null;
    const { raw, revision, ttlMs } = fetched;
    return { value: decodeWith(encoder, name, textDecoder.decode(raw)), revision, ttlMs };
  }

  /** Deletes `name`; whether there was an entry. */
  async erase(name) {
    const session = this.#session;
    session.checkOpen();
    return session.request(
      (link) => link.erase(name),
      (link) => link.readErased(),
    );
  }

  /** The server's version string (it contains "JackrabbitDLM"). */
  async version() {
    const session = this.#session;
    session.checkOpen();
    return session.request(
      (link) => link.version(),
      (link) => link.readVersion(),
    );
  }

  /** The server's counters and gauges, by name (`Lock`, `AWait`, ...). */
  async stats() {
    const session = this.#session;
    session.checkOpen();
    return session.request(
      (link) => link.stats(),
      (link) => link.readStats(),
    );
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
  const id = clientId ?? randomId();
  const credentials = identity ? { name: identity.name, secret: identity.secret } : undefined;
  // Checks the ID and the identity once: every connection's link is made
  // from them.
  new wasm.Link(id, Boolean(legacy), credentials?.name, credentials?.secret).free();
  const session = new Session({ host, port, timeoutMs, encoder, id, identity: credentials, legacy: Boolean(legacy) });
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
