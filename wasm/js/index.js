'use strict';
// The Node.js client of dlm. The WebAssembly module (./pkg, generated from
// wasm/src by scripts/build-wasm.sh) builds every request and reads every
// answer, and decides where each request goes: it is dlm-core's sans-I/O
// client and failover machine. This file only moves bytes with node:net
// (node:tls), matches answers to requests, keeps time, and reports.
//
//   client.put() ─▶ link.putTable(fo, ..) ─▶ link's output ─(once per turn)─▶ socket.write
//   resolve(revision) ◀─ link.readStored() ◀─ link.answered(fo, call) ◀─ FIFO ◀─ link.feed(chunk) ◀─ socket
//   connection failed ─▶ fo.handle(call, outcome) ─▶ send again (link.resend) where fo.pollConnect says, or reject
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

const fs = require('node:fs');
const net = require('node:net');
const tls = require('node:tls');
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
  TlsError,
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

/** What an attempt's failure was, for `Failover.handle` (dlm-core's
 * `Outcome`). */
const CONNECT_FAILED = 0;
const NOT_SENT = 1;
const CLOSED = 2;
const TIMED_OUT = 3;
/** `Link.readDiscovery`: use the new connection (else close it and ask
 * `pollConnect` again). */
const USE = 0;

/**
 * One request on its way: its call in the client's `Failover` (a number),
 * the reader of its answer, and its promise. It is sent, and sent again,
 * wherever the failover says until it is answered or given up.
 */
class Entry {
  constructor(read, resolve, reject) {
    this.call = -1;
    this.read = read;
    this.resolve = resolve;
    this.reject = reject;
    this.settled = false;
    /** On a connection of its own (a waiting lock, legacy framing). */
    this.exclusive = false;
    /** The connection it was last sent on, if exclusive. */
    this.conn = undefined;
    /** When its call must be over (`performance.now()` ms). */
    this.deadline = 0;
    /** Written to a socket (not only appended to a link's output). */
    this.sent = false;
    /** The last failure of the operating system, for the final error. */
    this.lastError = undefined;
    this.signal = undefined;
    this.onAbort = undefined;
    /** The discovery question on a new connection, not a call's request. */
    this.discovery = false;
  }

  done(value) {
    if (this.settled) return;
    this.settled = true;
    this.detach();
    this.resolve(value);
  }

  fail(err) {
    if (this.settled) return;
    this.settled = true;
    this.detach();
    this.reject(err);
  }

  detach() {
    if (this.onAbort) this.signal.removeEventListener('abort', this.onAbort);
    this.onAbort = undefined;
  }
}

/**
 * One socket to a server, its WebAssembly `Link` (the request and answer
 * buffers) and a FIFO of entries awaiting answers.
 *
 * A request is appended to the link's output at once, and everything
 * appended in one turn of the event loop is written with one
 * `socket.write` at its end (a `process.nextTick`, after the promise jobs
 * that made the requests). Every chunk received is fed to the link, which
 * says how many complete answers it holds; each is the oldest entry's:
 * the failover says whether it is the call's to read (`Link.answered`) or
 * a member's refusal to send again. One timer per connection watches the
 * deadlines of all of them. When the connection fails, each entry's
 * failure goes to the failover, which says whether and where to send it
 * again.
 */
class Connection {
  /**
   * @param {Session} session
   * @param {import('node:net').Socket} socket
   * @param {import('./pkg/dlm_wasm').Link} link
   * @param {number} epoch the failover epoch it was made at
   * @param {string} address `host:port`
   */
  constructor(session, socket, link, epoch, address) {
    this.session = session;
    this.socket = socket;
    this.link = link;
    this.epoch = epoch;
    this.address = address;
    /** @type {Entry[]} */
    this.pending = [];
    /** How many entries at the end of `pending` are not written yet. */
    this.unsent = 0;
    this.closed = false;
    /** No new requests: closed once its pending entries are answered. */
    this.retiring = false;
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
      this.fail(this.error ?? new UnavailableError(`${address} closed the connection before an answer`));
    });
  }

  /** Whether new requests may go on it: open, and to the server in use. */
  usable() {
    return !this.closed && !this.retiring && this.epoch === this.session.epoch;
  }

  /** Adds an entry whose request was just appended to the link. */
  push(entry) {
    entry.sent = false;
    entry.deadline = this.session.fo.deadlineMs(entry.call);
    this.pending.push(entry);
    this.unsent += 1;
    if (entry.deadline < this.watchdogAt) this.watch(entry.deadline);
    if (!this.flushQueued) {
      this.flushQueued = true;
      process.nextTick(flush, this);
    }
  }

  /** Asks the new connection who leads, for `entry`'s call: resolves with
   * USE or not, or `{ gaveUp }` with the error the call gave up with;
   * rejects if the connection fails first. */
  discover(entry) {
    return new Promise((resolve, reject) => {
      this.link.cluster();
      const question = new Entry(undefined, resolve, reject);
      question.discovery = true;
      question.call = entry.call;
      question.deadline = this.session.fo.deadlineMs(entry.call);
      this.pending.push(question);
      this.unsent += 1;
      this.watch(question.deadline);
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
    const { link, session } = this;
    const fo = session.fo;
    let answers;
    try {
      answers = link.feed(chunk);
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
      const now = performance.now();
      if (entry.discovery) {
        try {
          entry.resolve(link.readDiscovery(fo, entry.call, this.epoch, now));
        } catch (err) {
          entry.resolve({ gaveUp: err });
        }
        session.epoch = fo.epoch;
        continue;
      }
      if (entry.settled) {
        // Cancelled meanwhile: its answer is nobody's.
        link.skip();
        continue;
      }
      let mine;
      try {
        mine = link.answered(fo, entry.call, this.epoch, now);
      } catch (err) {
        session.epoch = fo.epoch;
        entry.fail(session.why(err, entry));
        continue;
      }
      if (!mine) {
        // A member's refusal (no leader, not the leader, full,
        // stopping): the failover said to send it again, and this member
        // may be about to close: no new requests on it.
        session.epoch = fo.epoch;
        this.retire();
        session.retry([entry]);
        continue;
      }
      let value;
      try {
        value = entry.read(link);
      } catch (err) {
        entry.fail(err);
        continue;
      }
      entry.done(value);
    }
    if (this.retiring && this.pending.length === 0) this.close();
  }

  /** No new requests; closed once nothing is pending. */
  retire() {
    this.retiring = true;
    if (this.session.main === this) this.session.main = undefined;
    if (this.pending.length === 0) this.close();
  }

  /** Closes a connection nothing is pending on. */
  close() {
    this.fail(new UnavailableError('the connection is no longer needed'));
  }

  /** Closes the connection; the failover hears of every pending entry's
   * failure (`overdue`: the one whose time ran out). */
  fail(err, overdue) {
    if (!this.closed) {
      this.closed = true;
      this.socket.destroy();
      clearTimeout(this.watchdog);
      this.watchdog = undefined;
      this.link.free();
    }
    const pending = this.pending;
    this.pending = [];
    this.unsent = 0;
    if (pending.length > 0) this.session.lost(this, pending, err, overdue);
    else this.session.forget(this);
  }
}

/** Writes what the requests of this turn appended, in one write. */
function flush(conn) {
  conn.flushQueued = false;
  if (conn.closed) return;
  const { pending } = conn;
  for (let i = pending.length - conn.unsent; i < pending.length; i += 1) pending[i].sent = true;
  conn.unsent = 0;
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
      conn.fail(new UnavailableError(`no answer from ${conn.address} in time`), entry);
      return;
    }
    if (entry.deadline < next) next = entry.deadline;
  }
  if (next !== Infinity) conn.watch(next);
}

/** `host` and `port` of a `host:port` the failover checked (IPv6 in
 * brackets). */
function splitAddress(address) {
  const colon = address.lastIndexOf(':');
  let host = address.slice(0, colon);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { host, port: Number(address.slice(colon + 1)) };
}

/** Why a TLS handshake failed, from Node's error code; undefined if the
 * error is no TLS failure. */
function tlsReason(err) {
  const code = err?.code;
  if (typeof code !== 'string') return undefined;
  switch (code) {
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
      return ['unknown-ca', 'unknown CA'];
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return ['name-mismatch', 'name mismatch'];
    case 'CERT_HAS_EXPIRED':
      return ['expired', 'the certificate has expired'];
    case 'CERT_NOT_YET_VALID':
      return ['not-yet-valid', 'the certificate is not yet valid'];
    default:
      if (code.startsWith('CERT_') || code.startsWith('ERR_TLS_CERT')) {
        return ['bad-certificate', 'the certificate was refused'];
      }
      if (code.startsWith('ERR_SSL_')) {
        if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG') {
          return ['refused', 'the server does not speak TLS (is that port plaintext?)'];
        }
        if (code.includes('ALERT')) return ['refused', 'the server refused the handshake or our certificate'];
        return ['refused', 'the handshake failed'];
      }
      return undefined;
  }
}

/** The typed error of a failed handshake with `address`, or undefined. */
function tlsError(err, address) {
  if (err instanceof TlsError) return err;
  const reason = tlsReason(err);
  if (!reason) return undefined;
  return new TlsError(`TLS handshake with ${address} failed: ${reason[1]} (${err.message})`, reason[0], { cause: err });
}

/** Opens a socket to `address` within `timeoutMs`, over TLS if `tlsOptions`. */
function connectOnce(address, timeoutMs, tlsOptions) {
  const { host, port } = splitAddress(address);
  return new Promise((resolve, reject) => {
    let socket;
    let ready;
    if (tlsOptions) {
      const options = { host, port, ...tlsOptions };
      // SNI takes names only; the name checked is `servername` or the host.
      if (!options.servername && !net.isIP(host)) options.servername = host;
      socket = tls.connect(options);
      ready = 'secureConnect';
    } else {
      socket = net.connect({ host, port });
      ready = 'connect';
    }
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no connection to ${address} within ${Math.round(timeoutMs)} ms`));
    }, timeoutMs);
    socket.once(ready, () => {
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

/** Resolves at `at` (`performance.now()` ms). */
function sleepUntil(at) {
  return new Promise((resolve) => {
    setTimeout(resolve, Math.min(Math.max(0, at - performance.now()), MAX_TIMER_MS));
  });
}

/** Everything a client shares with its locks: who it is, the failover
 * (dlm-core's, in the module), the pipelined connection, the pool of
 * connections for waiting locks. */
class Session {
  constructor(options) {
    this.timeoutMs = options.timeoutMs;
    /** @type {import('./index').Encoder} */
    this.encoder = options.encoder;
    /** The owner ID and, if any, the identity every request carries. */
    this.id = options.id;
    this.identity = options.identity;
    // JackrabbitDLM's framing: that server answers one request per
    // connection and closes it, so every request gets one of its own.
    this.legacy = options.legacy;
    /** Options for `tls.connect`, or undefined for plaintext. */
    this.tls = options.tls;
    /** @type {import('./pkg/dlm_wasm').Failover} */
    this.fo = options.failover;
    /** The failover's epoch, read after every call that may change it. */
    this.epoch = this.fo.epoch;
    /** The pipelined connection. */
    this.main = undefined;
    /** Pipelined entries waiting for a connection. */
    this.queue = [];
    this.pumping = false;
    /** A link no socket reads: requests made while there is no connection
     * start their calls here, and go out with `resend` once there is. */
    this.staging = this.newLink();
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

  /** The error a call gives up with: the failover's, with the last
   * failure of the operating system and the server in use. */
  why(err, entry) {
    if (err instanceof UnavailableError && !(err instanceof TlsError)) {
      const last = entry?.lastError;
      err.message += last ? ` (last: ${last.message}; server ${this.fo.server})` : ` (server ${this.fo.server})`;
      if (last && err.cause === undefined) err.cause = last;
    }
    return err;
  }

  /**
   * Sends a request on the pipelined connection: `write(link, fo, now)`
   * appends it and starts its call (returning the call), `read(link)`
   * reads its answer. Made while connected, it is appended at once, so
   * calls made one after another are sent (and answered) in that order.
   */
  request(write, read) {
    if (this.legacy) return this.exclusive(write, read);
    return new Promise((resolve, reject) => {
      if (this.closed) {
        reject(new UnavailableError('the client is closed'));
        return;
      }
      const entry = new Entry(read, resolve, reject);
      const conn = this.main;
      const now = performance.now();
      try {
        if (conn !== undefined && conn.usable()) {
          entry.call = write(conn.link, this.fo, now);
          conn.push(entry);
          return;
        }
        entry.call = write(this.staging, this.fo, now);
      } catch (err) {
        this.staging.clearOutput();
        reject(err);
        return;
      }
      this.staging.clearOutput();
      this.queue.push(entry);
      this.pump();
    });
  }

  /** Sends a request on a connection of its own (a waiting or abortable
   * lock, or any request in legacy framing); `signal` aborts it. */
  exclusive(write, read, signal) {
    return new Promise((resolve, reject) => {
      if (this.closed) {
        reject(new UnavailableError('the client is closed'));
        return;
      }
      if (signal?.aborted) {
        reject(cancelled(signal));
        return;
      }
      const entry = new Entry(read, resolve, reject);
      entry.exclusive = true;
      try {
        entry.call = write(this.staging, this.fo, performance.now());
      } catch (err) {
        this.staging.clearOutput();
        reject(err);
        return;
      }
      this.staging.clearOutput();
      if (signal) {
        entry.signal = signal;
        entry.onAbort = () => {
          this.fo.end(entry.call);
          const conn = entry.conn;
          entry.fail(cancelled(signal));
          // Closing the connection is how a waiter leaves the server's queue.
          if (conn && !conn.closed) conn.fail(cancelled(signal));
        };
        signal.addEventListener('abort', entry.onAbort, { once: true });
      }
      this.runExclusive(entry);
    });
  }

  /** Sends an exclusive entry on an idle connection of the server in use,
   * or on a new one. */
  async runExclusive(entry) {
    try {
      let conn;
      while ((conn = this.idle.pop())) {
        if (conn.usable()) break;
        conn.close();
      }
      if (!conn) conn = await this.connectFor(entry);
      if (entry.settled || this.closed) {
        this.checkin(conn);
        return;
      }
      entry.conn = conn;
      this.busy.add(conn);
      const settle = () => {
        if (entry.conn !== conn) return;
        this.busy.delete(conn);
        this.checkin(conn);
      };
      const { resolve, reject } = entry;
      entry.resolve = (v) => {
        settle();
        resolve(v);
      };
      entry.reject = (e) => {
        settle();
        reject(e);
      };
      conn.link.resend(this.fo, entry.call, performance.now());
      conn.push(entry);
    } catch (err) {
      entry.fail(err);
    }
  }

  /** Keeps an exclusive connection for the next waiting lock, or closes it. */
  checkin(conn) {
    this.busy.delete(conn);
    if (conn.closed) return;
    if (!this.closed && !this.legacy && conn.usable() && conn.pending.length === 0 && this.idle.length < MAX_IDLE) {
      this.idle.push(conn);
    } else if (conn.pending.length === 0) {
      conn.close();
    }
  }

  /** Connects the pipelined entries waiting in the queue: a connection for
   * the oldest (the failover says where, when, and when to give up), then
   * every one of them goes out on it. */
  async pump() {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        const main = this.main;
        if (main !== undefined && main.usable()) {
          this.flushQueue(main);
          break;
        }
        const head = this.queue[0];
        let conn;
        try {
          conn = await this.connectFor(head);
        } catch (err) {
          const i = this.queue.indexOf(head);
          if (i >= 0) this.queue.splice(i, 1);
          head.fail(err);
          continue;
        }
        if (this.closed) {
          conn.close();
          break;
        }
        if (this.main && this.main !== conn) this.main.retire();
        this.main = conn;
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Sends every queued entry again on `conn`. */
  flushQueue(conn) {
    const now = performance.now();
    const queue = this.queue;
    this.queue = [];
    for (const entry of queue) {
      if (entry.settled) continue;
      try {
        conn.link.resend(this.fo, entry.call, now);
      } catch (err) {
        this.fo.end(entry.call);
        entry.fail(err);
        continue;
      }
      conn.push(entry);
    }
  }

  /** A connection for `entry`'s call where the failover says: connecting,
   * sleeping out its backoff, asking a new connection who leads and going
   * there. Rejects with the error the call gave up with (it is over), or a
   * TlsError (never retried). */
  async connectFor(entry) {
    const fo = this.fo;
    for (;;) {
      if (this.closed) throw new UnavailableError('the client is closed');
      if (entry.settled) throw new CancelledError('the call is over');
      const step = fo.pollConnect(entry.call, performance.now());
      if (step >= 0) {
        await sleepUntil(step);
        continue;
      }
      const address = fo.address;
      const epoch = fo.connectEpoch;
      const within = Math.max(1, Math.min(fo.withinMs, this.timeoutMs));
      let socket;
      try {
        socket = await connectOnce(address, within, this.tls);
      } catch (err) {
        const refused = tlsError(err, address);
        if (refused) {
          fo.end(entry.call);
          throw refused;
        }
        entry.lastError = err;
        this.report(entry, epoch, CONNECT_FAILED);
        continue;
      }
      const conn = new Connection(this, socket, this.newLink(), epoch, address);
      if (this.closed || entry.settled) {
        conn.close();
        continue;
      }
      if (!fo.connected(epoch)) return conn;
      let verdict;
      // Closed with the client meanwhile.
      this.busy.add(conn);
      try {
        verdict = await conn.discover(entry);
      } catch (err) {
        conn.fail(err);
        const refused = tlsError(err, address);
        if (refused) {
          fo.end(entry.call);
          throw refused;
        }
        entry.lastError = err;
        this.report(entry, epoch, NOT_SENT);
        continue;
      }
      this.busy.delete(conn);
      if (verdict === USE && !this.closed) return conn;
      conn.close();
      if (verdict?.gaveUp) throw this.why(verdict.gaveUp, entry);
    }
  }

  /** Reports a failed attempt of `entry`'s call; throws the error it gives
   * up with. */
  report(entry, epoch, outcome) {
    try {
      this.fo.handle(entry.call, epoch, outcome, performance.now());
    } catch (err) {
      throw this.why(err, entry);
    } finally {
      this.epoch = this.fo.epoch;
    }
  }

  /** `conn` failed with `err` while `entries` awaited answers: each one's
   * failure goes to the failover; those it says to send again are. */
  lost(conn, entries, err, overdue) {
    this.forget(conn);
    const refused = tlsError(err, conn.address);
    const retry = [];
    const now = performance.now();
    for (const entry of entries) {
      if (entry.settled) continue;
      if (entry.discovery) {
        entry.fail(err);
        continue;
      }
      if (this.closed || refused || err instanceof CancelledError) {
        this.fo.end(entry.call);
        entry.fail(refused ?? err);
        continue;
      }
      entry.lastError = err;
      const outcome = entry === overdue ? TIMED_OUT : entry.sent ? CLOSED : NOT_SENT;
      try {
        this.fo.handle(entry.call, conn.epoch, outcome, now);
      } catch (gaveUp) {
        entry.fail(this.why(gaveUp, entry));
        continue;
      }
      retry.push(entry);
    }
    this.epoch = this.fo.epoch;
    this.retry(retry);
  }

  /** Sends `entries` again, as the failover said. */
  retry(entries) {
    const pipelined = [];
    for (const entry of entries) {
      if (entry.exclusive) {
        entry.conn = undefined;
        this.runExclusive(entry);
      } else {
        pipelined.push(entry);
      }
    }
    if (pipelined.length > 0) {
      // Older than anything queued since: first.
      this.queue.unshift(...pipelined);
      this.pump();
    }
  }

  /** A closed connection is no longer the client's. */
  forget(conn) {
    if (this.main === conn) this.main = undefined;
    this.busy.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
  }

  /** Closes every connection; pending calls fail with Unavailable. */
  shutdown() {
    this.closed = true;
    const err = new UnavailableError('the client is closed');
    for (const conn of [...this.idle, ...this.busy]) conn.fail(err);
    this.idle = [];
    this.busy.clear();
    this.main?.fail(err);
    this.main = undefined;
    for (const entry of this.queue.splice(0)) {
      this.fo.end(entry.call);
      entry.fail(err);
    }
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
          (link, fo, now) => {
            const call = link.leaseRequest(fo, leases, handle, now, name);
            if (call === undefined) {
              // An extension asked for after the deadline passed.
              throw new LockLostError('the lock was lost');
            }
            written = true;
            return call;
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

  /** The server in use (`host:port`): the cluster's leader once a member
   * said who it is. For logs: it changes when the client moves on. */
  get server() {
    return this.#session.fo.server;
  }

  /** Every server known: those given, then the members learned from the
   * cluster. */
  get servers() {
    return this.#session.fo.servers();
  }

  /** Acquires `name`. Without `waitMs`, one attempt (NotOwnerError if
   * another owner holds it); with it, queue in the server's fair queue up
   * to that long (TimeoutError when it runs out). `signal` aborts the wait
   * at once (CancelledError). */
  async lock(name, options = {}) {
    return this.#acquire(name, 0, options);
  }

  /** Acquires one permit of the counting semaphore `name` of `permits`
   * permits; options and errors as `lock()`. Each acquisition is a hold of
   * its own with its own fencing token; waiters are served first come,
   * first served. The size is fixed while anyone holds or waits: another
   * size rejects with ConflictError. */
  async semaphore(name, permits, options = {}) {
    if (!Number.isInteger(permits) || permits < 1 || permits > 0xffffffff) {
      throw new InvalidArgumentError('permits must be a whole number from 1 to 4294967295');
    }
    return this.#acquire(name, permits, options);
  }

  /** Acquires the shared (read) side of the read/write lock `name`:
   * held beside other readers, never beside a writer; a writer that waits
   * goes before readers that come after it. Options as `lock()`. */
  async readLock(name, options = {}) {
    return this.#acquire(name, -1, options);
  }

  /** Acquires the exclusive (write) side of the read/write lock `name`.
   * Options as `lock()`. */
  async writeLock(name, options = {}) {
    return this.#acquire(name, -2, options);
  }

  /** `lock()` of `shape` (0 the exclusive lock, -1 read, -2 write, N a
   * permit of an N-permit semaphore: how the wasm module takes it). */
  async #acquire(name, shape, options) {
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
    const write = (link, fo, now) => {
      sentMs = now;
      return link.lock(fo, now, name, ttlMs, waitMs, shape);
    };
    const read = (link) => link.readGrant(session.leases, ttlMs, waitMs, renew, sentMs, performance.now(), shape);
    // A wait (or one that may be aborted) takes a connection of its own:
    // it holds up nobody, and closing it takes the waiter off the queue.
    const handle =
      waitMs > 0 || signal ? await session.exclusive(write, read, signal) : await session.request(write, read);
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
      (link, fo, now) => link.testLock(fo, now, name),
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
      (link, fo, now) => link.unlock(fo, now, name, token),
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
      write = (link, fo, now) => link.putTable(fo, now, name, ttlMs, bytes, expected);
    } else if (sealers.has(encoder)) {
      const sealer = sealers.get(encoder);
      write = (link, fo, now) => link.putSealed(fo, now, sealer, randomBytes(24), name, ttlMs, bytes, expected);
    } else {
      const encoded = encoder.encode(name, bytes);
      if (typeof encoded !== 'string') throw new InvalidArgumentError('an encoder must return a string');
      write = (link, fo, now) => link.put(fo, now, name, ttlMs, encoded, expected);
    }
    const compared = expected !== undefined;
    return session.request(write, (link) => link.readStored(compared));
  }

  /** Reads `name`: `{ value, revision, ttlMs }`, or null if there is none. */
  async get(name) {
    const session = this.#session;
    session.checkOpen();
    const encoder = session.encoder;
    const write = (link, fo, now) => link.get(fo, now, name);
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
      (link, fo, now) => link.erase(fo, now, name),
      (link) => link.readErased(),
    );
  }

  /** The server's version string (it contains "JackrabbitDLM"). */
  async version() {
    const session = this.#session;
    session.checkOpen();
    return session.request(
      (link, fo, now) => link.version(fo, now),
      (link) => link.readVersion(),
    );
  }

  /** The server's counters and gauges, by name (`Lock`, `AWait`, ...). */
  async stats() {
    const session = this.#session;
    session.checkOpen();
    return session.request(
      (link, fo, now) => link.stats(fo, now),
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

/** The `tls` option as `tls.connect` options (files read once, here). */
function tlsOptions(option) {
  if (option === undefined || option === false || option === null) return undefined;
  const o = option === true ? {} : option;
  if (typeof o !== 'object') throw new InvalidArgumentError('tls must be true or an object');
  const read = (file, what) => {
    try {
      return fs.readFileSync(file);
    } catch (err) {
      throw new InvalidArgumentError(`cannot read the ${what} ${file}: ${err.message}`, { cause: err });
    }
  };
  const out = { rejectUnauthorized: true };
  if (o.caFile !== undefined) out.ca = read(o.caFile, 'CA file');
  else if (o.ca !== undefined) out.ca = o.ca;
  // Neither: Node's bundled root certificates.
  const cert = o.certFile !== undefined ? read(o.certFile, 'certificate file') : o.cert;
  const key = o.keyFile !== undefined ? read(o.keyFile, 'key file') : o.key;
  if ((cert === undefined) !== (key === undefined)) {
    throw new InvalidArgumentError('a client certificate needs both the certificate and its key');
  }
  if (cert !== undefined) {
    out.cert = cert;
    out.key = key;
  }
  if (o.serverName !== undefined) {
    if (typeof o.serverName !== 'string' || o.serverName === '') {
      throw new InvalidArgumentError('tls.serverName must be a non-empty string');
    }
    out.servername = o.serverName;
  }
  return out;
}

/** The server list from the options: `servers` ("host:port,host:port" or
 * an array of them), else `host` and `port`. */
function serverList(options) {
  const { servers, host = '127.0.0.1', port = DEFAULT_PORT } = options;
  if (servers !== undefined) {
    if (Array.isArray(servers) && servers.every((s) => typeof s === 'string')) return servers.join(',');
    if (typeof servers === 'string') return servers;
    throw new InvalidArgumentError('servers must be "host:port,..." or an array of "host:port"');
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidArgumentError('port must be an integer from 0 to 65535');
  }
  if (typeof host !== 'string') throw new InvalidArgumentError('host must be a string');
  return `${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;
}

/**
 * Connects to a dlm server, or to a dlm cluster's members (`servers`; one
 * is enough, the others are learned from it). One connection is opened
 * now, to the cluster's leader if the member reached says who leads, so
 * that an unreachable server is reported here (UnavailableError).
 */
async function connect(options = {}) {
  const {
    clientId,
    timeoutMs = DEFAULT_TIMEOUT_MS,
    connectAttempts = CONNECT_ATTEMPTS,
    encoder = tableEncoder,
    legacy = false,
    identity,
  } = options;
  const servers = serverList(options);
  if (!(typeof timeoutMs === 'number' && timeoutMs > 0)) {
    throw new InvalidArgumentError('timeoutMs must be a positive number');
  }
  if (!(Number.isInteger(connectAttempts) && connectAttempts > 0 && connectAttempts < 2 ** 32)) {
    throw new InvalidArgumentError('connectAttempts must be a positive integer');
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
  // dlm-core's failover: the list, the timeouts, the seed of its jitter
  // and request IDs. JackrabbitDLM has no Cluster action: no discovery.
  const failover = new wasm.Failover(servers, timeoutMs, connectAttempts, !legacy, randomBytes(16));
  const session = new Session({
    timeoutMs,
    encoder,
    id,
    identity: credentials,
    legacy: Boolean(legacy),
    tls: tlsOptions(options.tls),
    failover,
  });
  // Reachable? One connection now, where the failover says (to the
  // leader, once a member said who leads). In legacy framing, connections
  // are only opened per request: this one is closed.
  const entry = new Entry(undefined, () => {}, () => {});
  entry.call = failover.startConnect(performance.now());
  try {
    const conn = await session.connectFor(entry);
    if (session.legacy) conn.close();
    else session.main = conn;
  } finally {
    failover.end(entry.call);
  }
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
  TlsError,
  ProtocolError,
  EncodingError,
  InvalidArgumentError,
  SystemError,
};
