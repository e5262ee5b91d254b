// Type declarations of the dlm Node.js client (hand-written; the generated
// declarations of the WebAssembly glue in ./pkg are internal).

/** Turns the bytes you put into the string the server stores, and back.
 * `name` is the data key, so an encoder can bind a value to its key. */
export interface Encoder {
  encode(name: string, bytes: Uint8Array): string;
  decode(name: string, stored: string): Uint8Array;
}

/** JackrabbitDLM's table codec, the default: readable by every binding. */
export declare const tableEncoder: Encoder;

/** XChaCha20-Poly1305 with a 32-byte key, a random nonce per value and the
 * data key's name as associated data; interoperates with the Rust, C and Go
 * clients' sealed encoder under the same key. Throws InvalidArgumentError
 * if the key is not 32 bytes. */
export declare function sealedEncoder(key: Uint8Array): Encoder;

/** A fresh random 32-byte key for `sealedEncoder`. */
export declare function generateKey(): Uint8Array;

/** A random owner ID: 48 URL-safe characters. */
export declare function randomId(): string;

/** The server's default port, 37373. */
export declare const DEFAULT_PORT: number;
/** A lock's default time to live, 30 000 ms. */
export declare const DEFAULT_TTL_MS: number;

/** TLS to the server (`tls: true`: Node's bundled root certificates). */
export interface TlsOptions {
  /** The CA certificates (PEM file) the server's must chain to; default
   * Node's bundled roots. */
  caFile?: string;
  /** The same, as PEM text or bytes. */
  ca?: string | Uint8Array | Array<string | Uint8Array>;
  /** A client certificate (PEM file), for a server that requires one;
   * needs `keyFile`. */
  certFile?: string;
  /** Its private key (PEM file). */
  keyFile?: string;
  /** The client certificate as PEM text or bytes (instead of `certFile`). */
  cert?: string | Uint8Array;
  /** Its key as PEM text or bytes (instead of `keyFile`). */
  key?: string | Uint8Array;
  /** The name the server's certificate must be for (sent as SNI); default
   * the host connected to, a name or an IP address. Always checked. */
  serverName?: string;
}

export interface ConnectOptions {
  /** The servers: one `"host:port"` or a cluster's members,
   * `"host:port,host:port,..."` (the syntax of `DLM_SERVER`) or an array;
   * one member is enough, the others are learned from it. Overrides
   * `host` and `port`. With none of `servers`, `host` and `port`, the
   * `DLM_SERVER` environment variable if it is set (as the `dlm` command
   * and the Go package read it), else 127.0.0.1:37373. */
  servers?: string | string[];
  /** Default "127.0.0.1". */
  host?: string;
  /** Default 37373. */
  port?: number;
  /** The owner ID sent with every request; random (48 URL-safe characters)
   * if not given. Locks and values belong to the ID that made them. */
  clientId?: string;
  /** How long each call may take, from connecting (failing over to
   * another member if need be) to its answer (a waiting lock adds its
   * wait). Default 10 000. */
  timeoutMs?: number;
  /** Failed connections per server after which a call gives up
   * (UnavailableError) even with time left. Default 3. */
  connectAttempts?: number;
  /** Connect with TLS; a refused handshake is a TlsError, never retried. */
  tls?: boolean | TlsOptions;
  /** How values are encoded. Default `tableEncoder`. */
  encoder?: Encoder;
  /** Send JackrabbitDLM's table-encoded framing, to talk to an original
   * server: every request then gets a connection of its own, closed after
   * the answer, as that server does. */
  legacy?: boolean;
  /** Authenticate every request as a server identity. */
  identity?: { name: string; secret: string };
}

export interface LockOptions {
  /** How long the server keeps the lock unless extended. Default 30 000. */
  ttlMs?: number;
  /** Wait up to this long in the server's fair queue if another owner holds
   * it (TimeoutError when it runs out). Default 0: one attempt
   * (NotOwnerError). */
  waitMs?: number;
  /** Aborts the call at once (CancelledError); a waiter leaves the
   * server's queue. */
  signal?: AbortSignal;
  /** Extend the lock every third of its TTL until it is released; if that
   * fails for good, `lock.signal` aborts. Default false (true in
   * `withLock`). */
  autoRenew?: boolean;
}

export interface PutOptions {
  /** How long the server keeps the value. Required. */
  ttlMs: number;
  /** Compare-and-set: store only if the stored revision is this (0: only if
   * there is none); otherwise ConflictError. */
  revision?: bigint | number;
  /** Who may read it besides this client (writes stay its own): absent,
   * nobody (a put without it makes the value private again); `'any'`,
   * every client; or up to 32 identity names, the clients authenticated as
   * one of them. Anything else: InvalidArgumentError. */
  readers?: 'any' | readonly string[];
}

export interface Value {
  /** The decoded bytes. */
  value: Uint8Array;
  /** The entry's revision: 1 on first put, +1 on each put after (0n from
   * a server that keeps none: JackrabbitDLM). */
  revision: bigint;
  /** Its remaining time to live when the server answered. */
  ttlMs: number;
  /** The owner's ID, when the server says it: this client's own, or that
   * of the client that shared the value. */
  owner?: string;
}

export type LockState =
  | { state: 'free' }
  | { state: 'mine'; token: bigint; ttlMs: number }
  | { state: 'taken'; ttlMs?: number };

/** The server's counters and gauges by name (`Lock`, `AWait`, `AConn`, ...). */
export type Stats = Record<string, number>;

/** A held lock. */
export declare class Lock implements AsyncDisposable {
  private constructor();
  /** The lock's name. */
  readonly name: string;
  /** The fencing token of this grant; `0n` from a server that gives none
   * (JackrabbitDLM), which leaves nothing to fence with. */
  readonly token: bigint;
  /** Milliseconds left before it expires unless extended (by this
   * process's clock, never more than the server's); 0 once lost or
   * released. */
  readonly expiresInMs: number;
  /** Whether the lock is lost (`signal.aborted`). */
  readonly lost: boolean;
  /** Aborts, with a LockLostError reason, once the lock is lost or can no
   * longer be assumed held. */
  readonly signal: AbortSignal;
  /** Extends this grant to `ttlMs` from now (default: its current TTL).
   * Never re-acquires: rejects with LockLostError if it is gone. */
  extend(ttlMs?: number): Promise<void>;
  /** Releases it; rejects with LockLostError if it had already expired.
   * Only the server's answer releases it: after UnavailableError, call
   * again. Calls after a release resolve. */
  unlock(): Promise<void>;
  /** Releases it at the end of an `await using` scope (best effort). */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Several locks taken at once by `Client.lockAll`, all or none. */
export declare class MultiLock implements AsyncDisposable {
  private constructor();
  /** The names, in the order asked for. */
  readonly names: string[];
  /** Each name's fencing token, in the order of `names`. */
  readonly tokens: bigint[];
  /** Each name's lock (renewed and released on its own). */
  readonly locks: Lock[];
  /** Whether any of them is lost. */
  readonly lost: boolean;
  /** Aborts, with a LockLostError reason, once any of them is lost. */
  readonly signal: AbortSignal;
  /** Releases every one; rejects with the first error (the others are
   * released all the same). */
  release(): Promise<void>;
  /** `release()`. */
  unlock(): Promise<void>;
  /** Releases them at the end of an `await using` scope (best effort). */
  [Symbol.asyncDispose](): Promise<void>;
}

export interface SessionOptions {
  /** The session's TTL: the server ends it (releasing its locks) when no
   * keep-alive reaches it for this long. Default 10 000. */
  ttlMs?: number;
}

export interface SessionLockOptions {
  /** It also ends after this long (a session-bound lock is not renewed).
   * Default 30 000. */
  ttlMs?: number;
  /** Queue in the server up to this long (TimeoutError when it runs out).
   * Default 0: one attempt (NotOwnerError). */
  waitMs?: number;
  /** After the session ends, nobody may take the name for this long (at
   * most 60 000). Default 0. */
  lockDelayMs?: number;
  /** One permit of a counting semaphore of this many permits. */
  permits?: number;
  /** A side of a read/write lock. */
  mode?: 'read' | 'write';
}

/** A server session on a connection of its own; see `Client.session`. */
export declare class Session implements AsyncDisposable {
  private constructor();
  /** Its TTL in milliseconds. */
  readonly ttlMs: number;
  /** Whether it is lost (its connection broke or a keep-alive failed). */
  readonly lost: boolean;
  /** Whether `close()` was called. */
  readonly closed: boolean;
  /** Aborts, with a LockLostError reason, once the session is lost (not by
   * `close()`). */
  readonly signal: AbortSignal;
  /** Resolves when the session is over: the LockLostError once lost,
   * `undefined` after `close()`. Never rejects. */
  readonly ended: Promise<LockLostError | undefined>;
  /** Takes `name` bound to this session. */
  lock(name: string, options?: SessionLockOptions): Promise<SessionLock>;
  /** Runs `fn` holding `name` bound to this session, and releases it
   * afterwards; LockLostError if the session was lost meanwhile. */
  withLock<T>(
    name: string,
    options: SessionLockOptions | undefined,
    fn: (signal: AbortSignal, lock: SessionLock) => T | Promise<T>,
  ): Promise<T>;
  withLock<T>(name: string, fn: (signal: AbortSignal, lock: SessionLock) => T | Promise<T>): Promise<T>;
  /** Ends the session: the server releases (or closes for their
   * lock-delay) its locks. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** A lock bound to a `Session`. */
export declare class SessionLock implements AsyncDisposable {
  private constructor();
  readonly name: string;
  /** The fencing token of its grant. */
  readonly token: bigint;
  readonly session: Session;
  /** Releases it; LockLostError if it was no longer held. */
  unlock(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface WatchOptions {
  /** Every name that starts with this (`''`: every name). */
  prefix?: string;
  /** Or one name (give a prefix or a name). */
  name?: string;
  /** Resume after this revision: every event after it comes first. */
  since?: bigint | number;
  /** Ends the watch (the iteration ends). */
  signal?: AbortSignal;
}

/** One change, as a watcher is told it. */
export interface WatchEvent {
  event: 'Granted' | 'Released' | 'Expired' | 'Put' | 'Erased';
  kind: 'Lock' | 'Semaphore' | 'ReadWrite' | 'Data';
  /** The lock name or data key. */
  name: string;
  /** The same on every cluster member, greater than every one before. */
  revision: bigint;
  /** The grant's fencing token (locks and holds). */
  token?: bigint;
  /** A semaphore's permits. */
  permits?: number;
  /** A read/write hold's side. */
  mode?: 'read' | 'write';
  /** The value's own revision (`Put`). */
  dataRevision?: bigint;
  /** The owner, only for this client's own entries. */
  owner?: string;
  /** The value, decoded, only for this client's own `Put`s. */
  value?: Uint8Array;
}

/** The changes of a name or a prefix, as an async iterator; see
 * `Client.watch`. */
export declare class Watch implements AsyncIterableIterator<WatchEvent>, AsyncDisposable {
  private constructor();
  /** The last revision seen (or the one it started from). */
  readonly revision: bigint | undefined;
  /** Subscribes now (else at the first `next()`); ConflictError if `since`
   * is older than the server keeps. */
  start(): Promise<this>;
  next(): Promise<IteratorResult<WatchEvent, undefined>>;
  return(): Promise<IteratorResult<WatchEvent, undefined>>;
  /** Ends it. */
  close(): Promise<void>;
  [Symbol.asyncIterator](): Watch;
  [Symbol.asyncDispose](): Promise<void>;
}

/** A connection to a dlm server; see `connect`. */
export declare class Client implements AsyncDisposable {
  private constructor();
  /** The owner ID this client sends. */
  readonly id: string;
  /** The server in use (`host:port`): the cluster's leader once a member
   * said who it is. For logs: it changes when the client fails over. */
  readonly server: string;
  /** Every server known: those given, then the members learned. */
  readonly servers: string[];
  /** Acquires `name` (NotOwnerError, TimeoutError, CancelledError). */
  lock(name: string, options?: LockOptions): Promise<Lock>;
  /** Acquires one permit of the counting semaphore `name` of `permits`
   * permits, a hold of its own with its own token (ConflictError if the
   * name is another kind of lock or size). */
  semaphore(name: string, permits: number, options?: LockOptions): Promise<Lock>;
  /** Acquires the shared side of the read/write lock `name`. */
  readLock(name: string, options?: LockOptions): Promise<Lock>;
  /** Acquires the exclusive side of the read/write lock `name`; a writer
   * that waits goes before readers that come after it. */
  writeLock(name: string, options?: LockOptions): Promise<Lock>;
  /** One attempt: the lock, or null if another owner holds it. */
  tryLock(name: string, options?: Omit<LockOptions, 'waitMs'>): Promise<Lock | null>;
  /** Runs `fn` holding `name` and releases it afterwards, even on throw;
   * rejects with LockLostError (whatever `fn` threw as its `cause`) if the
   * lock was lost meanwhile, including a lease that ran out on this
   * client's clock before `fn` returned (even if the server, which keeps a
   * lock up to 201 ms past its TTL, released it only then). */
  withLock<T>(
    name: string,
    options: LockOptions | undefined,
    fn: (signal: AbortSignal, lock: Lock) => T | Promise<T>,
  ): Promise<T>;
  withLock<T>(name: string, fn: (signal: AbortSignal, lock: Lock) => T | Promise<T>): Promise<T>;
  /** Acquires 1 to 16 distinct names at once, all or none: NotOwnerError
   * (one attempt) or TimeoutError (after `waitMs`) if one is held by
   * another owner, with nothing taken; BadRequestError from a server
   * without multi-locks. */
  lockAll(names: readonly string[], options?: LockOptions): Promise<MultiLock>;
  /** `withLock` for `lockAll(names)`. */
  withLockAll<T>(
    names: readonly string[],
    options: LockOptions | undefined,
    fn: (signal: AbortSignal, locks: MultiLock) => T | Promise<T>,
  ): Promise<T>;
  withLockAll<T>(names: readonly string[], fn: (signal: AbortSignal, locks: MultiLock) => T | Promise<T>): Promise<T>;
  /** Whether `name` is locked, and by whom. Never acquires. */
  testLock(name: string): Promise<LockState>;
  /** Releases `name` if this client's ID holds it (only grant `token` if
   * given); whether a lock was released. */
  unlock(name: string, options?: { token?: bigint | number }): Promise<boolean>;
  /** Stores `value` (a string is stored as UTF-8), readable by `readers`
   * besides this client; the new revision. */
  put(name: string, value: Uint8Array | string, options: PutOptions): Promise<bigint>;
  /** Reads `name`, or null if there is no entry. */
  get(name: string): Promise<Value | null>;
  /** Deletes `name`; whether there was an entry. */
  erase(name: string): Promise<boolean>;
  /** The server's version string. */
  version(): Promise<string>;
  /** The server's statistics. */
  stats(): Promise<Stats>;
  /** Opens a server session on a connection of its own (BadRequestError
   * from a server without sessions). */
  session(options?: SessionOptions): Promise<Session>;
  /** Watches a prefix or a name: an async iterator of events. When the
   * server ends it (a slow watcher cut off) or the connection breaks, it
   * throws UnavailableError with `revision` (the last seen) to resume
   * from; ConflictError if `since` is older than the server keeps. */
  watch(options: WatchOptions): Watch;
  /** Releases held locks, closes sessions and watches, then every
   * connection. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Connects (one connection is opened now: UnavailableError if the server
 * cannot be reached). */
export declare function connect(options?: ConnectOptions): Promise<Client>;

export type ErrorCode =
  | 'NotOwner'
  | 'NotFound'
  | 'Conflict'
  | 'Timeout'
  | 'LockLost'
  | 'Cancelled'
  | 'BadRequest'
  | 'NoMemory'
  | 'Unavailable'
  | 'Protocol'
  | 'Encoding'
  | 'InvalidArgument'
  | 'System';

/** Base class of every error this package throws or rejects with. */
export declare class DlmError extends Error {
  constructor(code: ErrorCode, message: string, options?: ErrorOptions);
  readonly code: ErrorCode;
}
/** Another owner holds the lock or entry. */
export declare class NotOwnerError extends DlmError {
  constructor(message?: string, options?: ErrorOptions);
  readonly code: 'NotOwner';
}
/** No such entry (reserved: `get` answers null, `erase` false). */
export declare class NotFoundError extends DlmError {
  constructor(message?: string, options?: ErrorOptions);
  readonly code: 'NotFound';
}
/** A compare-and-set put found another revision. */
export declare class ConflictError extends DlmError {
  constructor(message?: string, revision?: bigint, options?: ErrorOptions);
  readonly code: 'Conflict';
  /** The stored revision (0n: there is no entry). */
  readonly revision: bigint;
}
/** A waiting lock's wait ran out. */
export declare class TimeoutError extends DlmError {
  constructor(message?: string, options?: ErrorOptions);
  readonly code: 'Timeout';
}
/** The lock was lost before it could be extended or released. */
export declare class LockLostError extends DlmError {
  constructor(message?: string, options?: ErrorOptions);
  readonly code: 'LockLost';
}
/** A call was aborted through its AbortSignal; `name` is 'AbortError' and
 * `cause` the signal's reason. */
export declare class CancelledError extends DlmError {
  constructor(message?: string, options?: ErrorOptions);
  readonly code: 'Cancelled';
}
/** The server refused the request as malformed or over a limit. */
export declare class BadRequestError extends DlmError {
  constructor(message?: string, options?: ErrorOptions);
  readonly code: 'BadRequest';
}
/** The server is out of memory for new entries. */
export declare class NoMemoryError extends DlmError {
  constructor(message?: string, options?: ErrorOptions);
  readonly code: 'NoMemory';
}
/** The server could not be reached, the connection failed, no answer came
 * in time, or the client is closed. */
export declare class UnavailableError extends DlmError {
  constructor(message?: string, options?: ErrorOptions);
  readonly code: 'Unavailable';
  /** From a watch that ended: the last revision it gave (resume with
   * `since`). */
  revision?: bigint;
}
/** Why a TLS handshake failed. */
export type TlsReason = 'unknown-ca' | 'name-mismatch' | 'expired' | 'not-yet-valid' | 'bad-certificate' | 'refused';
/** A TLS handshake failed; `reason` says why. Never retried. */
export declare class TlsError extends UnavailableError {
  constructor(message: string, reason: TlsReason, options?: ErrorOptions);
  readonly reason: TlsReason;
}
/** The server answered something that makes no sense. */
export declare class ProtocolError extends DlmError {
  constructor(message?: string, options?: ErrorOptions);
  readonly code: 'Protocol';
}
/** A stored value could not be decoded (another encoder or key). */
export declare class EncodingError extends DlmError {
  constructor(message?: string, options?: ErrorOptions);
  readonly code: 'Encoding';
}
/** An argument was invalid; nothing was sent. */
export declare class InvalidArgumentError extends DlmError {
  constructor(message?: string, options?: ErrorOptions);
  readonly code: 'InvalidArgument';
}
/** The operating system refused something the client needs (kept for
 * parity with the other bindings). */
export declare class SystemError extends DlmError {
  constructor(message?: string, options?: ErrorOptions);
  readonly code: 'System';
}
