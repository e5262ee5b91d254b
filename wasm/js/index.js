'use strict';
// The Node.js client of dlm. The WebAssembly module (./pkg, generated from
// wasm/src by scripts/build-wasm.sh) builds every request and reads every
// answer, and decides where each request goes: it is dlm-core's sans-I/O
// client and failover machine. This file only moves bytes with node:net
// (node:tls), matches answers to requests, keeps time, and reports.
//
//   client.put() ─▶ link.putTable(fo, ..) ─▶ link's output ─(a few writes a turn)─▶ socket.write
//   resolve(revision) ◀─ link.answerStored(fo, call) (the failover's verdict and the read) ◀─ FIFO ◀─ link.feed(chunk) ◀─ socket
//   connection failed ─▶ fo.handle(call, outcome) ─▶ send again (link.resend) where fo.pollConnect says, or reject
//
// Each connection has a WebAssembly `Link` holding its bytes both ways, so
// an answer crosses into JavaScript as the few numbers or bytes its caller
// wants (a Get's value arrives decoded), never as an object built field by
// field, and a turn's requests leave in a few writes (see `Connection.push`).
//
// One connection carries every ordinary request, pipelined: answers come
// back in request order, so each one settles the oldest pending promise.
// A lock that waits in the server's queue (or can be aborted) takes a
// connection of its own from a small pool, so it holds up nobody; aborting
// it destroys that connection and the server drops the waiter.
//
// A session and a watch each own a connection too (a `Channel`), with no
// failover: a session lives and dies with its connection, and a watch's
// events are read from its link only when its iterator asks (one packed
// `Uint8Array` per read, unpacked here), the socket paused meanwhile.

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
/** The numbers a `Failover` leaves in WebAssembly memory besides a call's
 * result (`Failover.outAddress`): the deadline of the call the last
 * request started, and what became of the last answer given to a fused
 * reader (`Link.answer*`): READ, REFUSED or GAVE_UP. */
const OUT_DEADLINE = 0;
const OUT_ANSWER = 1;
const OUT_LEN = 2;
const REFUSED = 1;
const GAVE_UP = 2;
const memory = wasm.wasmMemory();

/**
 * One request on its way: its call in the client's `Failover` (a number),
 * the reader of its answer, and its promise. It is sent, and sent again,
 * wherever the failover says until it is answered or given up.
 */
class Entry {
  constructor(read, resolve, reject, fused) {
    this.call = -1;
    /** `read(link)` after `Link.answered`, or, if `fused`, `read(link,
     * fo, entry, epoch, now)`: a `Link.answer*` reader that asks the
     * failover and reads in one call. */
    this.read = read;
    this.fused = fused;
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
 * A request is appended to the link's output at once, and written once
 * as many wait to go as are in flight (see `push`), the rest of a turn of
 * the event loop with one `socket.write` at its end (a
 * `process.nextTick`, after the promise jobs that made the requests).
 * Every chunk received is fed to the link, which
 * says how many complete answers it holds; each is the oldest entry's:
 * the failover says whether it is the call's to read (`Link.answered`) or
 * a member's refusal to send again. One timer per connection watches the
 * deadlines of all of them. When the connection fails, each entry's
 * failure goes to the failover, which says whether and where to send it
 * again.
 */
class Connection {
  /**
   * @param {Shared} session
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

  /** Adds an entry whose request was just appended to the link; its call
   * must be over by `deadline`. */
  push(entry, deadline) {
    entry.sent = false;
    entry.deadline = deadline;
    this.pending.push(entry);
    this.unsent += 1;
    if (entry.deadline < this.watchdogAt) this.watch(entry.deadline);
    if (this.unsent >= this.pending.length - this.unsent) {
      // As many waiting to go as the server has in hand: they go now, so
      // the server works on them while this turn makes the rest. With
      // nothing in flight the first request goes alone, then 1, 2, 4, ...:
      // the server always has work, in a few writes a turn (the rest
      // follow together at its end). Batching a whole turn kept the two
      // sides taking turns, each idle while the other worked, each
      // waking the other once a turn: 0.7-0.8x ioredis at 16 concurrent
      // calls on a quiet machine, 1.0-1.2x this way.
      flush(this);
      return;
    }
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
      const question = new Entry(undefined, resolve, reject, false);
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
    // Every answer in the chunk arrived now.
    const now = performance.now();
    for (; answers > 0 && !this.closed; answers -= 1) {
      const entry = this.pending.shift();
      if (!entry) {
        this.fail(new ProtocolError('an answer to no request'));
        return;
      }
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
      if (entry.fused) {
        // The fast path: the failover's verdict and the reading in one
        // call; what became of the answer is in the failover's numbers.
        let value;
        try {
          value = entry.read(link, fo, entry, this.epoch, now);
        } catch (err) {
          if (session.out()[OUT_ANSWER] === GAVE_UP) {
            session.epoch = fo.epoch;
            entry.fail(session.why(err, entry));
          } else {
            entry.fail(err);
          }
          continue;
        }
        if (session.out()[OUT_ANSWER] === REFUSED) {
          session.epoch = fo.epoch;
          this.retire();
          session.retry([entry]);
          continue;
        }
        entry.done(value);
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

  /** Takes the socket out of this connection (nothing is pending on it:
   * a new one, just asked who leads), for a session or a watch to own. */
  detach() {
    this.closed = true;
    clearTimeout(this.watchdog);
    this.watchdog = undefined;
    this.socket.removeAllListeners('data');
    this.socket.removeAllListeners('error');
    this.socket.removeAllListeners('close');
    this.link.free();
    this.session.forget(this);
    return this.socket;
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

/** Writes what the requests appended since the last write, in one write. */
function flush(conn) {
  conn.flushQueued = false;
  // Nothing left for the end of the turn: all went early.
  if (conn.closed || conn.unsent === 0) return;
  const { pending } = conn;
  for (let i = pending.length - conn.unsent; i < pending.length; i += 1) pending[i].sent = true;
  conn.unsent = 0;
  // Copied straight out of WebAssembly memory into a Buffer (from Node's
  // pool when small): `takeOutput`'s new Uint8Array cost more than the
  // copy, and the socket would have made it a Buffer anyway.
  const link = conn.link;
  const length = link.outputLength();
  const bytes = Buffer.allocUnsafe(length);
  bytes.set(new Uint8Array(memory.buffer, link.outputAddress(), length));
  link.clearOutput();
  conn.socket.write(bytes);
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
class Shared {
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
    this.outAddress = this.fo.outAddress();
    /** A view of the failover's numbers (see `out()`). */
    this.outView = new Float64Array(memory.buffer, this.outAddress, OUT_LEN);
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
    /** Open sessions and watches (each has `close()`). */
    this.streams = new Set();
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

  /** The numbers the failover's last call left (OUT_DEADLINE,
   * OUT_ANSWER): read from WebAssembly memory, no call. A grown memory
   * detaches the old view (its length drops to 0): made again then. */
  out() {
    let view = this.outView;
    if (view.length === 0) {
      view = new Float64Array(memory.buffer, this.outAddress, OUT_LEN);
      this.outView = view;
    }
    return view;
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
   * appends it and starts its call (returning the call), `read` reads
   * its answer (see `Entry`; `fused` says which kind of reader it is).
   * Made while connected, it is appended at once, so calls made one after
   * another are sent (and answered) in that order.
   */
  request(write, read, fused = false) {
    if (this.legacy) return this.exclusive(write, read, undefined, fused);
    return new Promise((resolve, reject) => {
      if (this.closed) {
        reject(new UnavailableError('the client is closed'));
        return;
      }
      const entry = new Entry(read, resolve, reject, fused);
      const conn = this.main;
      const now = performance.now();
      try {
        if (conn !== undefined && conn.usable()) {
          // The fast path: one call writes the request and starts its
          // call; its deadline is read from memory.
          entry.call = write(conn.link, this.fo, now);
          conn.push(entry, this.out()[OUT_DEADLINE]);
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
  exclusive(write, read, signal, fused = false) {
    return new Promise((resolve, reject) => {
      if (this.closed) {
        reject(new UnavailableError('the client is closed'));
        return;
      }
      if (signal?.aborted) {
        reject(cancelled(signal));
        return;
      }
      const entry = new Entry(read, resolve, reject, fused);
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
      conn.push(entry, this.fo.deadlineMs(entry.call));
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
      conn.push(entry, this.fo.deadlineMs(entry.call));
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

  /** A new connection of its own, where the failover says (the leader,
   * once a member said who leads), for a session or a watch: `{ socket,
   * address }`. Rejects as a call that gives up. */
  async dedicated() {
    this.checkOpen();
    if (this.legacy) {
      throw new InvalidArgumentError("sessions and watches need dlm's own framing (legacy: false)");
    }
    const entry = new Entry(undefined, () => {}, () => {}, false);
    entry.call = this.fo.startConnect(performance.now());
    try {
      const conn = await this.connectFor(entry);
      const address = conn.address;
      const socket = conn.detach();
      if (this.closed) {
        socket.destroy();
        throw new UnavailableError('the client is closed');
      }
      return { socket, address };
    } finally {
      this.fo.end(entry.call);
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
  /** @type {Shared} */
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
    // Plain promise reactions rather than async functions and `finally`:
    // a release is half of every lock's life, and each promise costs.
    const releasing = this.#busy ? this.#idle().then(() => this.#release()) : this.#release();
    this.#releasing = releasing;
    const over = () => {
      if (this.#releasing === releasing) this.#releasing = undefined;
    };
    releasing.then(over, over);
    return releasing;
  }

  /** Sends the release (nothing in flight); resolves once answered. */
  #release() {
    try {
      const now = performance.now();
      this.#tick(now);
      if (!this.#leases.release(this.#handle, now)) return Promise.resolve();
      const forget = () => {
        if (this.#leases.released(this.#handle)) this.#forget();
      };
      return this.#exchange().then(forget, (err) => {
        forget();
        throw err;
      });
    } catch (err) {
      return Promise.reject(err);
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
  #tick(now = performance.now()) {
    this.#leases.handleTimeout(this.#handle, now);
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
    let written = false;
    const settle = (err) => {
      if (this.#busy === busy) this.#busy = undefined;
      this.#events(err);
      this.#arm();
      // Something left to send (a grant to give back)?
      if (!this.#busy && leases.hasRequest(handle)) this.#wake();
    };
    // One reaction settles the lease before anyone awaiting `busy` runs.
    const busy = this.#session
      .request(
        (link, fo, now) => {
          const call = link.leaseRequest(fo, leases, handle, now, name);
          if (call === undefined) {
            // An extension asked for after the deadline passed.
            throw new LockLostError('the lock was lost');
          }
          written = true;
          return call;
        },
        (link, fo, entry, epoch, now) => link.answerLease(fo, entry.call, epoch, now, leases, handle),
        true,
      )
      .then(
        () => settle(),
        (err) => {
          // No answer, or no connection to send it on: a renewal is
          // retried until the deadline, a release waits to be asked again.
          // After an answer the lease has nothing in flight and this does
          // nothing.
          if (written) leases.handleFailure(handle, performance.now());
          else leases.handleUnsent(handle, performance.now());
          settle(err);
          throw err;
        },
      );
    this.#busy = busy;
    return busy;
  }
}

/** Several locks taken at once by `client.lockAll()`, all or none. Each
 * name is a `Lock` of its own (`locks`), with its own fencing token,
 * renewed and released by it; this handle releases them together. */
class MultiLock {
  /** @type {Lock[]} */
  #locks;
  #controller = undefined;

  /** @internal */
  constructor(locks) {
    this.#locks = locks;
  }

  /** The names, in the order they were asked for. */
  get names() {
    return this.#locks.map((l) => l.name);
  }

  /** Each name's fencing token (bigint), in the order of `names`. */
  get tokens() {
    return this.#locks.map((l) => l.token);
  }

  /** Each name's `Lock`, in the order of `names`. */
  get locks() {
    return [...this.#locks];
  }

  /** Whether any of the locks is lost. */
  get lost() {
    return this.#locks.some((l) => l.lost);
  }

  /** Aborts (with a LockLostError reason) once any of the locks is lost
   * (see `Lock.signal`). Not aborted by a release. */
  get signal() {
    if (!this.#controller) {
      this.#controller = AbortSignal.any(this.#locks.map((l) => l.signal));
    }
    return this.#controller;
  }

  /** Releases every lock (each by its own token). Rejects with the first
   * error if any release failed (LockLostError if one had already
   * expired); the others are released all the same. Call again after a
   * failure to reach the server. */
  async release() {
    const outcomes = await Promise.allSettled(this.#locks.map((l) => l.unlock()));
    const failed = outcomes.find((o) => o.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** `release()`, under the name `Lock` uses. */
  unlock() {
    return this.release();
  }

  /** `await using locks = await client.lockAll(...)`: releases at the end
   * of the scope, best effort. */
  async [Symbol.asyncDispose]() {
    await this.release().catch(() => {});
  }
}

/**
 * A connection of its own, for a session or a watch: its socket, its
 * WebAssembly `Link`, and the readers of the answers it awaits, in order.
 * Lines past the awaited answers (a watch's events) stay in the link until
 * `onLines` has them read; the socket can be paused meanwhile, so a slow
 * reader slows the server down (which cuts a watcher off past its budget)
 * instead of filling this process's memory.
 */
class Channel {
  constructor(socket, link, address) {
    this.socket = socket;
    this.link = link;
    this.address = address;
    /** @type {{ read: Function, resolve: Function, reject: Function, deadline: number, sentAt: number }[]} */
    this.readers = [];
    this.closed = false;
    /** Why it ended, once it did. */
    this.why = undefined;
    this.error = undefined;
    /** Called when lines no reader awaits arrived. */
    this.onLines = undefined;
    /** Called once with the error that ended it. */
    this.onEnd = undefined;
    /** Called with each answer's request's send time and now, before it is
     * read: an error to reject it with instead (and end the channel). */
    this.onAnswer = undefined;
    this.timer = undefined;
    socket.setNoDelay(true);
    socket.on('data', (chunk) => this.#data(chunk));
    socket.on('error', (err) => {
      this.error = err;
    });
    socket.on('close', () => {
      this.end(this.error ?? new UnavailableError(`${address} closed the connection`));
    });
  }

  /** Writes what was appended to the link; resolves with `read(link)` of
   * its answer, which must come within `withinMs` (after those before it). */
  ask(read, withinMs) {
    return new Promise((resolve, reject) => {
      if (this.closed) {
        this.link.clearOutput();
        reject(this.why);
        return;
      }
      const tail = this.readers.at(-1);
      const sentAt = performance.now();
      const deadline = Math.max(sentAt + withinMs, tail ? tail.deadline : 0);
      this.readers.push({ read, resolve, reject, deadline, sentAt });
      this.socket.write(this.link.takeOutput());
      if (this.readers.length === 1) this.#arm();
    });
  }

  #data(chunk) {
    if (this.closed) return;
    let lines;
    try {
      lines = this.link.feed(chunk);
    } catch (err) {
      this.end(err);
      return;
    }
    while (lines > 0 && this.readers.length > 0 && !this.closed) {
      const r = this.readers.shift();
      lines -= 1;
      const refused = this.onAnswer?.(r.sentAt, performance.now());
      if (refused) {
        r.reject(refused);
        continue;
      }
      try {
        r.resolve(r.read(this.link));
      } catch (err) {
        r.reject(err);
      }
    }
    if (this.closed) return;
    if (lines > 0) {
      if (!this.onLines) {
        this.end(new ProtocolError(`${this.address} sent a line nobody asked for`));
        return;
      }
      this.onLines();
    }
    this.#arm();
  }

  /** One timer for the oldest reader's deadline. */
  #arm() {
    clearTimeout(this.timer);
    this.timer = undefined;
    const first = this.readers[0];
    if (!first || this.closed) return;
    const delay = Math.min(Math.max(0, first.deadline - performance.now()) + 1, MAX_TIMER_MS);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const oldest = this.readers[0];
      if (!oldest) return;
      if (oldest.deadline <= performance.now()) {
        this.end(new UnavailableError(`no answer from ${this.address} in time`));
      } else {
        this.#arm();
      }
    }, delay);
    this.timer.unref();
  }

  /** Closes it with `err`: every reader still waiting rejects with it. */
  end(err) {
    if (this.closed) return;
    this.closed = true;
    this.why = err;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.socket.destroy();
    for (const r of this.readers.splice(0)) r.reject(err);
    this.onEnd?.(err);
  }
}

/** `put`'s `readers` as the wasm module takes them: undefined the owner
 * only, '' any client, else identity names joined by ',' (the module
 * checks each name). */
function readersOf(readers) {
  if (readers === undefined) return undefined;
  if (readers === 'any') return '';
  if (
    Array.isArray(readers) &&
    readers.length > 0 &&
    readers.every((r) => typeof r === 'string' && r !== '' && !r.includes(','))
  ) {
    return readers.join(',');
  }
  throw new InvalidArgumentError("readers must be 'any' or a non-empty array of identity names");
}

/** A `get` result with the owner the server named, if it did. */
function withOwner(result, link) {
  const owner = link.owner;
  if (owner !== undefined) result.owner = owner;
  return result;
}

/** What `shape` code `lock` options ask for (see `Client.#acquire`). */
function shapeOf(options) {
  const { permits, mode } = options;
  if (permits !== undefined && mode !== undefined) throw new InvalidArgumentError('give permits or mode, not both');
  if (permits !== undefined) {
    if (!Number.isInteger(permits) || permits < 1 || permits > 0xffffffff) {
      throw new InvalidArgumentError('permits must be a whole number from 1 to 4294967295');
    }
    return permits;
  }
  if (mode === undefined) return 0;
  if (mode === 'read') return -1;
  if (mode === 'write') return -2;
  throw new InvalidArgumentError("mode must be 'read' or 'write'");
}

/**
 * A server session on a connection of its own (PROTOCOL.md, "Sessions and
 * lock-delay"): locks taken through it are released by the server when it
 * ends, because it was closed, this process died, its connection broke or
 * no keep-alive reached the server for its TTL. A timer sends a keep-alive
 * every third of the TTL. Once lost (`lost`, `signal`, `ended`), its locks
 * are to be taken as gone. There is no failover: a session lives and dies
 * with its connection; open a new one.
 */
class Session {
  /** @type {Shared} */
  #shared;
  /** @type {Channel} */
  #channel;
  #ttlMs;
  #timer = undefined;
  #lostReason = undefined;
  #closed = false;
  #controller = new AbortController();
  /** When the last answered request was sent: the session lives at least
   * a TTL from then. */
  #aliveFrom = 0;
  #ended;
  #resolveEnded;

  /** @internal */
  constructor(shared, channel, ttlMs, openedAt) {
    this.#shared = shared;
    this.#channel = channel;
    this.#ttlMs = ttlMs;
    this.#ended = new Promise((resolve) => {
      this.#resolveEnded = resolve;
    });
    channel.onEnd = (err) => this.#lose(err);
    // The server keeps the session for a TTL from each request it applies,
    // and a `Session` after it ended opens a new one without saying so. An
    // answer received more than a TTL after the previous answered request
    // was sent cannot prove the session lived until this request arrived:
    // it is taken as lost (closing the connection ends whatever session
    // the server has for it), rather than trusted.
    this.#aliveFrom = openedAt;
    channel.onAnswer = (sentAt, now) => {
      if (now > this.#aliveFrom + ttlMs) {
        this.#lose(
          new UnavailableError(
            `no answer proved the session alive for ${Math.round(now - this.#aliveFrom)} ms, over its TTL of ${ttlMs} ms`,
          ),
        );
        return this.#lostReason ?? new LockLostError('the session is closed');
      }
      this.#aliveFrom = sentAt;
      return undefined;
    };
    shared.streams.add(this);
    this.#keepAlive();
  }

  /** Its TTL in milliseconds. */
  get ttlMs() {
    return this.#ttlMs;
  }

  /** Whether it is lost: its connection broke or a keep-alive failed. */
  get lost() {
    return this.#lostReason !== undefined;
  }

  /** Whether `close()` was called. */
  get closed() {
    return this.#closed;
  }

  /** Aborts (with a LockLostError reason) once the session is lost; not
   * by `close()`. Pass it to work its locks protect. */
  get signal() {
    return this.#controller.signal;
  }

  /** Resolves once the session is over: with the LockLostError that says
   * why once it is lost, with `undefined` after `close()`. Never rejects. */
  get ended() {
    return this.#ended;
  }

  #keepAlive() {
    const period = Math.max(1, this.#ttlMs / 3);
    this.#timer = setTimeout(async () => {
      this.#timer = undefined;
      if (this.#closed || this.lost) return;
      try {
        // A keep-alive: refused, not reopened, if the server ended it.
        this.#channel.link.keepAlive(this.#ttlMs);
        await this.#channel.ask((link) => link.readSession(), Math.max(period, 1000));
      } catch (err) {
        this.#lose(err);
        return;
      }
      if (!this.#closed && !this.lost) this.#keepAlive();
    }, period);
  }

  #lose(cause) {
    if (this.#closed || this.lost) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#lostReason = new LockLostError(`the session was lost: ${cause?.message ?? cause}`, { cause });
    this.#channel.end(this.#lostReason);
    this.#channel.link.free();
    this.#shared.streams.delete(this);
    this.#controller.abort(this.#lostReason);
    this.#resolveEnded(this.#lostReason);
  }

  #check() {
    if (this.#closed) throw new LockLostError('the session is closed');
    if (this.#lostReason) throw this.#lostReason;
  }

  /** Takes `name` bound to this session: `ttlMs` (default 30 s; it also
   * ends then: a bound lock is not renewed), `waitMs` (queue in the
   * server; at most two thirds of the session's TTL, since no keep-alive
   * passes a queued lock on the session's connection), `lockDelayMs` (after the session ends, nobody may take it for
   * that long; at most 60000), `permits` (one permit of a semaphore of
   * that many) or `mode` ('read' or 'write'). Rejects with NotOwnerError,
   * TimeoutError after a wait, ConflictError for a name of another kind,
   * BadRequestError for what the server refuses, LockLostError if the
   * session is over. */
  async lock(name, options = {}) {
    this.#check();
    const ttlMs = millis(options.ttlMs, 'ttlMs', DEFAULT_TTL_MS);
    const waitMs = millis(options.waitMs, 'waitMs', 0);
    const lockDelayMs = millis(options.lockDelayMs, 'lockDelayMs', 0);
    const shape = shapeOf(options);
    if (waitMs > (this.#ttlMs * 2) / 3) {
      // A queued lock holds the connection: no keep-alive passes it, and
      // the server ends a session nothing reached for its TTL.
      throw new InvalidArgumentError(
        'a wait on a session is at most two thirds of its TTL (no keep-alive passes a queued lock)',
      );
    }
    const channel = this.#channel;
    channel.link.sessionLock(name, ttlMs, waitMs, shape, lockDelayMs);
    const token = await channel.ask(
      (link) => link.readSessionGrant(waitMs > 0),
      waitMs + this.#shared.timeoutMs,
    );
    return new SessionLock(this, channel, name, token, this.#shared.timeoutMs);
  }

  /** Runs `fn(signal, lock)` holding `name` bound to this session, and
   * releases it afterwards, even if `fn` throws; `signal` aborts if the
   * session is lost. Resolves with `fn`'s result; rejects with
   * LockLostError if the session was lost meanwhile (what `fn` threw is
   * its `cause`). Options as `lock()`. */
  async withLock(name, options, fn) {
    if (typeof options === 'function') {
      fn = options;
      options = {};
    }
    if (typeof fn !== 'function') throw new InvalidArgumentError('withLock needs a function');
    const lock = await this.lock(name, options);
    let result;
    try {
      result = await fn(this.signal, lock);
    } catch (err) {
      await lock.unlock().catch(() => {});
      if (this.lost) throw new LockLostError(this.#lostReason.message, { cause: err });
      throw err;
    }
    await lock.unlock();
    return result;
  }

  /** Ends the session: its connection closes, and the server releases (or
   * closes for their lock-delay) every lock bound to it. Idempotent. */
  async close() {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#shared.streams.delete(this);
    if (!this.lost) {
      this.#channel.end(new LockLostError('the session is closed'));
      this.#channel.link.free();
      this.#resolveEnded(undefined);
    }
  }

  /** `await using session = await client.session(...)`. */
  async [Symbol.asyncDispose]() {
    await this.close();
  }
}

/** A lock bound to a `Session`: released by `unlock()`, by its TTL, or by
 * the server when the session ends. */
class SessionLock {
  #session;
  #channel;
  #name;
  #token;
  #timeoutMs;
  #released = false;

  /** @internal */
  constructor(session, channel, name, token, timeoutMs) {
    this.#session = session;
    this.#channel = channel;
    this.#name = name;
    this.#token = token;
    this.#timeoutMs = timeoutMs;
  }

  /** The lock's name. */
  get name() {
    return this.#name;
  }

  /** The fencing token of its grant. */
  get token() {
    return this.#token;
  }

  /** Its session. */
  get session() {
    return this.#session;
  }

  /** Releases it on the session's connection. Rejects with LockLostError
   * if it was no longer held (its TTL ran out, or the session is over).
   * Resolves at once if released already. */
  async unlock() {
    if (this.#released) return;
    this.#released = true;
    const channel = this.#channel;
    if (channel.closed) throw new LockLostError('the session is over', { cause: channel.why });
    channel.link.sessionUnlock(this.#name, this.#token);
    await channel.ask((link) => link.readSessionRelease(), this.#timeoutMs);
  }

  /** `await using`: releases at the end of the scope, best effort. */
  async [Symbol.asyncDispose]() {
    await this.unlock().catch(() => {});
  }
}

const EVENT_NAMES = ['Granted', 'Released', 'Expired', 'Put', 'Erased'];
const KIND_NAMES = ['Lock', 'Semaphore', 'ReadWrite', 'Data'];
/** The fixed part of a packed event (wasm/src/watch.rs). */
const EVENT_HEADER = 44;

/** Unpacks the records `Link.readEvents` made into `out`; a value is
 * decoded by `encoder` if `text` (an encoder written in JavaScript). */
function unpackEvents(bytes, out, encoder, text) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  while (at + EVENT_HEADER <= bytes.length) {
    const flags = bytes[at + 2];
    const event = {
      event: EVENT_NAMES[bytes[at]],
      kind: KIND_NAMES[bytes[at + 1]],
      name: '',
      revision: view.getBigUint64(at + 8, true),
    };
    if (flags & 1) event.token = view.getBigUint64(at + 16, true);
    if (flags & 2) event.dataRevision = view.getBigUint64(at + 24, true);
    if (event.kind === 'Semaphore') event.permits = view.getUint32(at + 4, true);
    if (event.kind === 'ReadWrite') event.mode = flags & 16 ? 'write' : 'read';
    const n = view.getUint32(at + 32, true);
    const o = view.getUint32(at + 36, true);
    const v = view.getUint32(at + 40, true);
    let p = at + EVENT_HEADER;
    event.name = textDecoder.decode(bytes.subarray(p, p + n));
    p += n;
    if (flags & 4) event.owner = textDecoder.decode(bytes.subarray(p, p + o));
    p += o;
    if (flags & 8) {
      const raw = bytes.slice(p, p + v);
      event.value = text ? decodeWith(encoder, event.name, textDecoder.decode(raw)) : raw;
    }
    p += v;
    at = p;
    out.push(event);
  }
}

/**
 * A watch (PROTOCOL.md, "Watches"): the changes of a name or of every name
 * under a prefix, as an async iterator of events, over a connection of its
 * own. Events are read as they are asked for: a consumer that does not ask
 * leaves them with the server, which cuts it off past its budget. It does
 * not reconnect by itself: when the server ends it (cut off for reading too
 * slowly, stopping) or its connection breaks, the iterator throws after the
 * events it had received (UnavailableError, the server's reason in its
 * message, `err.revision` the last revision seen); watch again with `since:
 * err.revision` to miss nothing. A `since` older than the server keeps is a
 * ConflictError (`err.revision`: the current one): read the state again and
 * watch from there. Aborting `signal`, `return()` (`break` in `for await`)
 * or `close()` ends it.
 */
class Watch {
  /** @type {Shared} */
  #shared;
  #scope;
  #prefix;
  #since;
  #revision;
  #signal;
  #onAbort = undefined;
  /** @type {Channel | undefined} */
  #channel = undefined;
  #starting = undefined;
  #events = [];
  #wake = undefined;
  #done = false;
  /** The error it could not start with, if any. */
  #failure = undefined;
  /** The last `next()` call, settled or not: the next one waits for it.
   * @type {Promise<unknown>} */
  #turn = Promise.resolve();

  /** @internal */
  constructor(shared, scope, prefix, since, signal) {
    this.#shared = shared;
    this.#scope = scope;
    this.#prefix = prefix;
    this.#since = since;
    this.#revision = since;
    this.#signal = signal;
    shared.streams.add(this);
    if (signal?.aborted) {
      this.#finish();
    } else if (signal) {
      this.#onAbort = () => this.close();
      signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  /** The last revision seen, or the one it started from (`since`, else
   * the server's current one once started): pass it as `since` to resume. */
  get revision() {
    return this.#revision;
  }

  /** Subscribes now (else at the first `next()`). Rejects with
   * ConflictError if `since` is older than the server keeps. */
  start() {
    if (!this.#starting) {
      this.#starting = this.#open().catch((err) => {
        // A watch that could not start is over (its connection closed).
        if (!this.#done) {
          this.#failure = err;
          this.#finish();
        }
        throw err;
      });
      this.#starting.catch(() => {});
    }
    return this.#starting;
  }

  async #open() {
    const shared = this.#shared;
    const { socket, address } = await shared.dedicated();
    if (this.#done) {
      socket.destroy();
      return this;
    }
    const link = shared.newLink();
    const channel = new Channel(socket, link, address);
    this.#channel = channel;
    channel.onLines = () => {
      // Read when asked for: until then the socket rests.
      socket.pause();
      this.#poke();
    };
    channel.onEnd = () => this.#poke();
    link.watch(this.#scope, this.#prefix, this.#since === undefined ? undefined : this.#since);
    const current = await channel.ask((l) => l.readWatch(), shared.timeoutMs);
    if (this.#revision === undefined) this.#revision = current;
    return this;
  }

  #poke() {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Reads what the link holds into `#events`. */
  #read() {
    const link = this.#channel.link;
    const encoder = this.#shared.encoder;
    let bytes;
    let text = false;
    if (encoder === tableEncoder) bytes = link.readEvents(false);
    else if (sealers.has(encoder)) bytes = link.readEventsSealed(sealers.get(encoder));
    else {
      bytes = link.readEvents(true);
      text = true;
    }
    unpackEvents(bytes, this.#events, encoder, text);
  }

  /** The next event: `{ value: event, done: false }`, or `{ done: true }`
   * once closed or aborted. Calls made before the last one settled take
   * the events after it, in call order. */
  next() {
    const next = this.#turn.then(() => this.#next());
    this.#turn = next.catch(() => {});
    return next;
  }

  async #next() {
    if (this.#done) return { value: undefined, done: true };
    try {
      await this.start();
      for (;;) {
        if (this.#done) return { value: undefined, done: true };
        const event = this.#events.shift();
        if (event) {
          this.#revision = event.revision;
          return { value: event, done: false };
        }
        const channel = this.#channel;
        this.#read();
        if (this.#events.length > 0) continue;
        // Everything received was given: the server's last word, if it
        // said one, else why the connection ended, if it did.
        channel.link.watchEnd();
        if (channel.closed) throw channel.why;
        const woken = new Promise((resolve) => {
          this.#wake = resolve;
        });
        channel.socket.resume();
        await woken;
      }
    } catch (err) {
      // Closed meanwhile: the iteration just ends.
      if (this.#done && err !== this.#failure) return { value: undefined, done: true };
      // Where to resume from (a ConflictError's is the server's current).
      if (err instanceof DlmError && !(err instanceof ConflictError)) Object.assign(err, { revision: this.#revision });
      this.#finish();
      throw err;
    }
  }

  /** Ends the watch (`break` in `for await` calls it). */
  async return() {
    await this.close();
    return { value: undefined, done: true };
  }

  /** Closes the watch's connection; `next()` then says done. */
  async close() {
    this.#finish();
  }

  #finish() {
    if (this.#done) return;
    this.#done = true;
    this.#shared.streams.delete(this);
    if (this.#onAbort) this.#signal.removeEventListener('abort', this.#onAbort);
    const channel = this.#channel;
    if (channel) {
      channel.end(new UnavailableError('the watch is closed'));
      channel.link.free();
    }
    this.#poke();
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  /** `await using watch = client.watch(...)`. */
  async [Symbol.asyncDispose]() {
    await this.close();
  }
}

/** A stored value's bytes from a JavaScript encoder's `decode`. */
function decodeWith(encoder, name, text) {
  return toBytes(encoder.decode(name, text), 'a decoded value');
}

/** A connection to a dlm server. Make one with `connect()`. */
class Client {
  /** @type {Shared} */
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
  lock(name, options = {}) {
    // Not async: `#acquire` is (what it throws rejects), and another
    // promise around its own would only cost.
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
  readLock(name, options = {}) {
    return this.#acquire(name, -1, options);
  }

  /** Acquires the exclusive (write) side of the read/write lock `name`.
   * Options as `lock()`. */
  writeLock(name, options = {}) {
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
    const read = (link, fo, entry, epoch, now) =>
      link.answerGrant(fo, entry.call, epoch, now, session.leases, ttlMs, waitMs, renew, sentMs, shape);
    // A wait (or one that may be aborted) takes a connection of its own:
    // it holds up nobody, and closing it takes the waiter off the queue.
    const handle =
      waitMs > 0 || signal
        ? await session.exclusive(write, read, signal, true)
        : await session.request(write, read, true);
    return new Lock(session, name, handle);
  }

  /** Acquires every one of `names` (1 to 16, no two alike) at once, all
   * or none: a `MultiLock`. Without `waitMs`, one attempt (NotOwnerError,
   * its message naming a name another owner holds, and nothing taken);
   * with it, queue in every name's queue at once up to that long
   * (TimeoutError when it runs out; no deadlock between clients taking
   * overlapping sets). `ttlMs`, `autoRenew` and `signal` as `lock()`;
   * each name's lease renews on its own. A server without multi-locks
   * (JackrabbitDLM) rejects with BadRequestError. */
  async lockAll(names, options = {}) {
    if (!Array.isArray(names) || !names.every((n) => typeof n === 'string')) {
      throw new InvalidArgumentError('lockAll needs an array of names');
    }
    const { ttlMs: ttlOption, waitMs: waitOption, signal, autoRenew = false } = options;
    const session = this.#session;
    session.checkOpen();
    const ttlMs = millis(ttlOption, 'ttlMs', DEFAULT_TTL_MS);
    const waitMs = millis(waitOption, 'waitMs', 0);
    const renew = Boolean(autoRenew);
    if (signal?.aborted) throw cancelled(signal);
    const list = [...names];
    let sentMs = 0;
    const write = (link, fo, now) => {
      sentMs = now;
      return link.lockAll(fo, now, list, ttlMs, waitMs);
    };
    const read = (link) =>
      link.readGrantAll(session.leases, ttlMs, waitMs, renew, sentMs, performance.now(), list.length);
    const handles =
      waitMs > 0 || signal ? await session.exclusive(write, read, signal) : await session.request(write, read);
    return new MultiLock(list.map((name, i) => new Lock(session, name, handles[i])));
  }

  /** Runs `fn(signal, locks)` holding every one of `names` (auto-renewed
   * unless `autoRenew: false`), and releases them afterwards, even if `fn`
   * throws; as `withLock`, LockLostError if any was lost meanwhile. */
  async withLockAll(names, options, fn) {
    if (typeof options === 'function') {
      fn = options;
      options = {};
    }
    if (typeof fn !== 'function') throw new InvalidArgumentError('withLockAll needs a function');
    const locks = await this.lockAll(names, { autoRenew: true, ...options });
    let result;
    try {
      result = await fn(locks.signal, locks);
    } catch (err) {
      await locks.release().catch(() => {});
      if (locks.lost) {
        throw new LockLostError(locks.signal.reason?.message ?? 'a lock was lost', { cause: err });
      }
      throw err;
    }
    await locks.release();
    if (locks.lost) throw new LockLostError('a lock expired before the function returned');
    return result;
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
    // Its lease ran out on this client's clock before `fn` returned: the
    // server may have kept it a little longer (its deadline slack) and
    // released it now, but nothing protected `fn`'s last part.
    if (lock.lost) throw new LockLostError('the lock expired before the function returned');
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
   * if absent), else ConflictError. `readers`: who may read it besides
   * this client (writes stay its own): undefined nobody (as before, and
   * every `put` without it makes the value private again), `'any'` every
   * client, or an array of identity names (clients authenticated as one
   * of them). Resolves with the new revision. */
  put(name, value, options = {}) {
    // Not async: the request's own promise is returned, without another
    // wrapped around it (each costs a few promise jobs); what is thrown
    // is returned as a rejection all the same.
    try {
      return this.#put(name, value, options);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #put(name, value, options) {
    const session = this.#session;
    session.checkOpen();
    const { ttlMs, revision } = options;
    if (typeof ttlMs !== 'number') throw new InvalidArgumentError('put needs ttlMs');
    const expected = revision === undefined ? undefined : toU64(revision, 'revision');
    const readers = readersOf(options.readers);
    const bytes = toBytes(value, 'a value');
    const encoder = session.encoder;
    let write;
    if (encoder === tableEncoder) {
      // The built-in encoders run inside the module: no text crosses.
      write = (link, fo, now) => link.putTable(fo, now, name, ttlMs, bytes, expected, readers);
    } else if (sealers.has(encoder)) {
      const sealer = sealers.get(encoder);
      write = (link, fo, now) => link.putSealed(fo, now, sealer, randomBytes(24), name, ttlMs, bytes, expected, readers);
    } else {
      const encoded = encoder.encode(name, bytes);
      if (typeof encoded !== 'string') throw new InvalidArgumentError('an encoder must return a string');
      write = (link, fo, now) => link.put(fo, now, name, ttlMs, encoded, expected, readers);
    }
    const compared = expected !== undefined;
    return session.request(
      write,
      (link, fo, entry, epoch, now) => link.answerStored(fo, entry.call, epoch, now, compared),
      true,
    );
  }

  /** Reads `name`: `{ value, revision, ttlMs, owner? }` (`owner`: the
   * owner's ID, when the server says it: this client's own, or the ID of
   * whoever shared the value), or null if there is none. NotOwnerError
   * for a value not shared with this client. */
  get(name) {
    // Not async, as `put`.
    try {
      return this.#get(name);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #get(name) {
    const session = this.#session;
    session.checkOpen();
    const encoder = session.encoder;
    const write = (link, fo, now) => link.get(fo, now, name);
    if (encoder === tableEncoder) {
      return session.request(
        write,
        (link, fo, entry, epoch, now) => {
          const value = link.answerFetchedTable(fo, entry.call, epoch, now);
          return value === undefined ? null : withOwner({ value, revision: link.revision, ttlMs: link.ttlMs ?? 0 }, link);
        },
        true,
      );
    }
    if (sealers.has(encoder)) {
      const sealer = sealers.get(encoder);
      return session.request(write, (link) => {
        const value = link.readFetchedSealed(sealer, name);
        return value === undefined ? null : withOwner({ value, revision: link.revision, ttlMs: link.ttlMs ?? 0 }, link);
      });
    }
    return session
      .request(write, (link) => {
        const raw = link.readFetched();
        return raw === undefined ? null : withOwner({ raw, revision: link.revision, ttlMs: link.ttlMs ?? 0 }, link);
      })
      .then((fetched) => {
        if (fetched === null) return null;
        const { raw, ...rest } = fetched;
        return { value: decodeWith(encoder, name, textDecoder.decode(raw)), ...rest };
      });
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

  /** Opens a server session of `ttlMs` (default 10 s) on a connection of
   * its own: a `Session`, whose locks the server releases when it ends.
   * Rejects with BadRequestError from a server without sessions
   * (JackrabbitDLM) or a TTL over its limit. */
  async session(options = {}) {
    const shared = this.#session;
    const ttlMs = millis(options.ttlMs, 'ttlMs', 10_000);
    if (ttlMs <= 0) throw new InvalidArgumentError('ttlMs must be positive');
    const { socket, address } = await shared.dedicated();
    const channel = new Channel(socket, shared.newLink(), address);
    const openedAt = performance.now();
    try {
      channel.link.session(ttlMs);
      await channel.ask((link) => link.readSession(), shared.timeoutMs);
    } catch (err) {
      channel.end(err);
      channel.link.free();
      throw err;
    }
    return new Session(shared, channel, ttlMs, openedAt);
  }

  /** Watches every name that starts with `prefix` (`''`: every name), or
   * the one `name`: a `Watch`, an async iterator of events (`for await`).
   * `since`: resume after that revision. `signal` ends it. */
  watch(options = {}) {
    const { prefix, name, since, signal } = options;
    const shared = this.#session;
    shared.checkOpen();
    if ((prefix === undefined) === (name === undefined)) {
      throw new InvalidArgumentError('watch needs a prefix or a name, not both');
    }
    const scope = prefix ?? name;
    if (typeof scope !== 'string') throw new InvalidArgumentError('a prefix or a name is a string');
    const from = since === undefined ? undefined : toU64(since, 'since');
    return new Watch(shared, scope, prefix !== undefined, from, signal);
  }

  /** Releases the locks this client holds (best effort), then closes every
   * connection; calls after it fail with UnavailableError. Idempotent. */
  async close() {
    const session = this.#session;
    if (session.closing) return session.closing;
    session.closing = (async () => {
      await Promise.allSettled([...session.locks].map((lock) => lock.unlock()));
      await Promise.allSettled([...session.streams].map((stream) => stream.close()));
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
 * an array of them), else `host` and `port`; with none of the three, the
 * `DLM_SERVER` environment variable (the same syntax as `servers`), as the
 * `dlm` command and the Go package read it; else 127.0.0.1:37373. */
function serverList(options) {
  let { servers } = options;
  const { host = '127.0.0.1', port = DEFAULT_PORT } = options;
  if (servers === undefined && options.host === undefined && options.port === undefined) {
    const env = typeof process === 'object' ? process.env?.DLM_SERVER : undefined;
    if (typeof env === 'string' && env.trim() !== '') servers = env;
  }
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
  const session = new Shared({
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
  MultiLock,
  Session,
  SessionLock,
  Watch,
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
