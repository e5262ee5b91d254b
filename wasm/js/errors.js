'use strict';
// The package's errors: one Error subclass per code. The codes and default
// messages are dlm-core's ErrorKinds (the one list every binding derives
// its errors from; test/errors.test.js holds this file to it). The
// WebAssembly module builds them too (through fromWasm, imported by the
// generated glue from this very file), so `instanceof` and `err.code` work
// whichever side failed.

/** Base class of every error this package throws or rejects with. */
class DlmError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {ErrorOptions} [options]
   */
  constructor(code, message, options) {
    super(message, options);
    this.code = code;
  }

  get name() {
    return this.constructor.name;
  }
}

/** Another owner holds the lock or entry (or a fencing token was stale). */
class NotOwnerError extends DlmError {
  constructor(message = 'held by another owner', options) {
    super('NotOwner', message, options);
  }
}

/** No such entry. `get` answers null and `erase` false instead, as the
 * Rust client does; kept so every binding has the same codes. */
class NotFoundError extends DlmError {
  constructor(message = 'no such entry', options) {
    super('NotFound', message, options);
  }
}

/** A compare-and-set put found another revision; `revision` is the stored
 * one (0n: there is no entry). */
class ConflictError extends DlmError {
  constructor(message = 'revision conflict', revision = 0n, options) {
    super('Conflict', message, options);
    this.revision = revision;
  }
}

/** A waiting lock's wait ran out. */
class TimeoutError extends DlmError {
  constructor(message = 'timed out waiting for the lock', options) {
    super('Timeout', message, options);
  }
}

/** The lock was lost: it expired or was taken before it could be extended
 * or released. */
class LockLostError extends DlmError {
  constructor(message = 'the lock was lost', options) {
    super('LockLost', message, options);
  }
}

/** A waiting call was aborted through its AbortSignal. Its `name` is
 * 'AbortError', as Node's own aborted calls; `cause` is the signal's reason. */
class CancelledError extends DlmError {
  constructor(message = 'cancelled', options) {
    super('Cancelled', message, options);
  }

  get name() {
    return 'AbortError';
  }
}

/** The server refused the request as malformed or over one of its limits. */
class BadRequestError extends DlmError {
  constructor(message = 'bad request', options) {
    super('BadRequest', message, options);
  }
}

/** The server is out of memory for new entries (its memory budget). */
class NoMemoryError extends DlmError {
  constructor(message = 'server out of memory', options) {
    super('NoMemory', message, options);
  }
}

/** The server could not be reached, the connection failed or closed, no
 * answer came in time, or the client was closed. */
class UnavailableError extends DlmError {
  constructor(message = 'server unavailable', options) {
    super('Unavailable', message, options);
  }
}

/** A TLS handshake failed: the server's certificate was refused (`reason`
 * 'unknown-ca', 'name-mismatch', 'expired', 'not-yet-valid', 'bad-certificate')
 * or the server refused ours or the handshake ('refused'). Never retried: a
 * certificate that is refused once stays refused. Its `code` is
 * 'Unavailable', as the other bindings report it. */
class TlsError extends UnavailableError {
  constructor(message, reason, options) {
    super(message, options);
    this.reason = reason;
  }
}

/** The server answered something that makes no sense. */
class ProtocolError extends DlmError {
  constructor(message = 'protocol error', options) {
    super('Protocol', message, options);
  }
}

/** A stored value could not be decoded (another encoder or key wrote it). */
class EncodingError extends DlmError {
  constructor(message = 'cannot encode or decode value', options) {
    super('Encoding', message, options);
  }
}

/** An argument was invalid; nothing was sent. */
class InvalidArgumentError extends DlmError {
  constructor(message = 'invalid argument', options) {
    super('InvalidArgument', message, options);
  }
}

/** The operating system refused something the client needs. Kept so every
 * binding has the same codes; Node's own calls do not fail this way. */
class SystemError extends DlmError {
  constructor(message = 'the operating system refused a resource', options) {
    super('System', message, options);
  }
}

// Every code dlm-core defines for the bindings (its ErrorKinds that are not
// C-only): test/errors.test.js fails if this drifts from the module's
// errorKinds().
const byCode = {
  NotOwner: NotOwnerError,
  NotFound: NotFoundError,
  Conflict: ConflictError,
  Timeout: TimeoutError,
  LockLost: LockLostError,
  Cancelled: CancelledError,
  BadRequest: BadRequestError,
  NoMemory: NoMemoryError,
  Unavailable: UnavailableError,
  Protocol: ProtocolError,
  Encoding: EncodingError,
  InvalidArgument: InvalidArgumentError,
  System: SystemError,
};

/**
 * Called by the WebAssembly module for every error it returns.
 * @param {string} code
 * @param {string} message
 * @param {bigint | undefined} current the stored revision of a Conflict
 * @returns {DlmError}
 */
function fromWasm(code, message, current) {
  if (code === 'Conflict') {
    return new ConflictError(message, current ?? 0n);
  }
  const Class = byCode[code];
  return Class ? new Class(message) : new DlmError(code, message);
}

module.exports = {
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
  byCode,
  fromWasm,
};
