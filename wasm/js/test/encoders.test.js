'use strict';
// Encoders, IDs and error classes: no server needed.

const test = require('node:test');
const assert = require('node:assert/strict');
const dlm = require('..');

const te = new TextEncoder();

test('the table codec matches the PROTOCOL.md vectors', () => {
  const { tableEncoder } = dlm;
  assert.equal(tableEncoder.encode('k', te.encode('{')), 'a^');
  assert.equal(tableEncoder.encode('k', new Uint8Array([0, 255])), '1128');
  assert.equal(
    tableEncoder.encode('k', te.encode('{"Status":"Locked"}')),
    'a^1laBaMagaMa$am1l1t1l1za@a8aJaHah1laP',
  );
  assert.deepEqual(tableEncoder.decode('k', '1128'), new Uint8Array([0, 255]));
  assert.equal(tableEncoder.encode('k', new Uint8Array(0)), '');
});

test('the table codec round-trips all 256 byte values', () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  const text = dlm.tableEncoder.encode('k', all);
  assert.equal(text.length, 512);
  assert.deepEqual(dlm.tableEncoder.decode('k', text), all);
});

test('a malformed table text is an EncodingError', () => {
  for (const bad of ['a^1', 'a^ 1', 'a^29', 'ZZ', 'é1']) {
    assert.throws(
      () => dlm.tableEncoder.decode('k', bad),
      (e) => e instanceof dlm.EncodingError && e instanceof dlm.DlmError && e.code === 'Encoding',
      bad,
    );
  }
});

test('the sealed encoder round-trips, hides the value and binds it to its name', () => {
  const key = dlm.generateKey();
  assert.equal(key.length, 32);
  assert.notDeepEqual(key, dlm.generateKey());
  const enc = dlm.sealedEncoder(key);
  const secret = te.encode('db password');
  const a = enc.encode('config', secret);
  const b = enc.encode('config', secret);
  assert.notEqual(a, b, 'a fresh nonce per value');
  assert.match(a, /^dlmseal1\.[A-Za-z0-9_-]+$/);
  assert.ok(!a.includes('password'));
  assert.deepEqual(enc.decode('config', a), secret);
  assert.deepEqual(enc.decode('config', enc.encode('config', new Uint8Array(0))), new Uint8Array(0));
  const big = Uint8Array.from({ length: 5000 }, (_, i) => (i * 7) & 255);
  assert.deepEqual(enc.decode('k', enc.encode('k', big)), big);
  const isEncoding = (e) => e instanceof dlm.EncodingError && e.code === 'Encoding';
  assert.throws(() => enc.decode('other-name', a), isEncoding);
  assert.throws(() => dlm.sealedEncoder(dlm.generateKey()).decode('config', a), isEncoding);
  assert.throws(() => enc.decode('config', 'not sealed'), isEncoding);
  assert.throws(() => enc.decode('config', a.slice(0, -4)), isEncoding);
});

test('a sealed encoder needs a 32-byte key', () => {
  for (const key of [new Uint8Array(31), new Uint8Array(33), new Uint8Array(0)]) {
    assert.throws(
      () => dlm.sealedEncoder(key),
      (e) => e instanceof dlm.InvalidArgumentError && e.code === 'InvalidArgument',
    );
  }
  assert.throws(() => dlm.sealedEncoder('a string'), dlm.InvalidArgumentError);
  // A Buffer is a Uint8Array.
  dlm.sealedEncoder(Buffer.alloc(32, 1));
});

test('random client IDs are 48 URL-safe characters', () => {
  const ids = new Set();
  for (let i = 0; i < 100; i += 1) {
    const id = dlm.randomId();
    assert.match(id, /^[A-Za-z0-9_-]{48}$/);
    ids.add(id);
  }
  assert.equal(ids.size, 100);
});

test('every error class has its code, its name and is a DlmError', () => {
  const classes = {
    NotOwner: dlm.NotOwnerError,
    NotFound: dlm.NotFoundError,
    Conflict: dlm.ConflictError,
    Timeout: dlm.TimeoutError,
    LockLost: dlm.LockLostError,
    Cancelled: dlm.CancelledError,
    BadRequest: dlm.BadRequestError,
    NoMemory: dlm.NoMemoryError,
    Unavailable: dlm.UnavailableError,
    Protocol: dlm.ProtocolError,
    Encoding: dlm.EncodingError,
    InvalidArgument: dlm.InvalidArgumentError,
  };
  for (const [code, Class] of Object.entries(classes)) {
    const e = new Class();
    assert.ok(e instanceof Error && e instanceof dlm.DlmError && e instanceof Class);
    assert.equal(e.code, code);
    assert.equal(e.name, code === 'Cancelled' ? 'AbortError' : Class.name);
    assert.ok(e.message.length > 0);
    assert.match(e.stack, new RegExp(`^${e.name}: `));
  }
  assert.equal(new dlm.ConflictError('x', 3n).revision, 3n);
  assert.equal(new dlm.DlmError('Custom', 'm').code, 'Custom');
  assert.equal(dlm.fromWasm, undefined, 'the WebAssembly hook is not exported');
});
