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
    System: dlm.SystemError,
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

test('no input makes the WebAssembly module trap: garbage is a DlmError', () => {
  const wasm = require('../pkg/dlm_wasm.js');
  const link = new wasm.Link('a', false);
  const fo = new wasm.Failover('127.0.0.1:1', 10_000, 3, true, new Uint8Array(16));
  const leases = new wasm.Leases();
  const sealer = new wasm.Sealer(new Uint8Array(32));
  const feedLine = (bytes) => {
    // One line exactly: the garbage's own newlines become spaces.
    const line = Uint8Array.from(bytes, (b) => (b === 0x0a ? 0x20 : b));
    assert.equal(link.feed(line) + link.feed(te.encode('\n')), 1);
  };
  // A lease with a request in flight, for every kind of answer.
  const leaseAwaiting = (release) => {
    feedLine(te.encode('{"Status":"Locked","Token":1}'));
    const handle = link.readGrant(leases, 1000, 0, true, 0, 1, 0);
    if (release) leases.release(handle, 2);
    else leases.extend(handle, 2, 1000);
    assert.equal(typeof link.leaseRequest(fo, leases, handle, 2, 'x'), 'number');
    return handle;
  };
  const readers = [
    () => link.readGrant(leases, 1000, 0, true, 0, 3, 0),
    () => link.readGrant(leases, 1000, 500, false, 0, 600, 0),
    (handle) => link.readLease(leases, handle, 3),
    (handle) => link.readLease(leases, handle, 3),
    () => link.readLease(leases, 12345, 3),
    () => link.readReleased(),
    () => link.readLockState(),
    () => link.readStored(false),
    () => link.readStored(true),
    () => link.readFetched(),
    () => link.readFetchedTable(),
    () => link.readFetchedSealed(sealer, 'k'),
    () => link.readErased(),
    () => link.readVersion(),
    () => link.readStats(),
  ];
  const valid = [
    '{"Status":"Locked","ID":"a","Token":18446744073709551615,"Expire":30}',
    '{"Status":"Done","DataStore":"a^","Revision":3,"Expire":"1.5"}',
    '{"Status":"Done","Stats":{"AWait":1,"Lock":2}}',
    '{"Status":"Conflict","Revision":2}',
    '{"Status":"BadPayload","Error":"x\\u00e9"}',
    'a^1laBaMagaMa$am1l1t1l1za@a8aJaHah1laP',
  ].map((s) => te.encode(s));
  const sealed = sealer.seal(new Uint8Array(24), 'k', te.encode('value'));
  // A small deterministic generator, so a failure is reproducible.
  let seed = 0x2545f491;
  const next = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  const mutate = (bytes) => {
    const out = Uint8Array.from(bytes);
    for (let k = next() % 4; k >= 0 && out.length > 0; k -= 1) out[next() % out.length] = next() & 255;
    return next() % 5 === 0 ? out.subarray(0, next() % (out.length + 1)) : out;
  };
  let threw = 0;
  for (let i = 0; i < 1500; i += 1) {
    const line =
      i % 3 === 0
        ? Uint8Array.from({ length: next() % 64 }, () => next() & 255)
        : mutate(valid[i % valid.length]);
    readers.forEach((read, r) => {
      const handle = r === 2 || r === 3 ? leaseAwaiting(r === 3) : undefined;
      feedLine(line);
      try {
        const got = read(handle);
        if (r < 2) leases.remove(got);
      } catch (e) {
        assert.ok(e instanceof dlm.DlmError, `${e?.constructor?.name}: ${e?.message}`);
        threw += 1;
      }
      if (handle !== undefined) leases.remove(handle);
    });
    link.takeOutput();
    const text = new TextDecoder().decode(mutate(te.encode(i % 2 ? sealed : 'a^1128')));
    for (const f of [() => wasm.decodeTable(text), () => sealer.open('k', text)]) {
      try {
        f();
      } catch (e) {
        assert.ok(e instanceof dlm.DlmError, `${e?.constructor?.name}: ${e?.message}`);
      }
    }
  }
  assert.ok(threw > 1000, 'garbage was refused');
  assert.equal(leases.size, 0, 'every lease made was removed');
  // Handles that name nothing are released locks, whatever the number.
  for (const h of [-1, 0.5, NaN, Infinity, 2 ** 53, 7]) {
    assert.equal(leases.released(h), true);
    assert.equal(leases.token(h), undefined);
    assert.throws(() => leases.extend(h, 0, 1000), dlm.LockLostError);
    assert.equal(link.leaseRequest(fo, leases, h, 0, 'x'), undefined);
  }
  // No answer to read: a ProtocolError, not a trap.
  assert.throws(() => link.readStored(false), dlm.ProtocolError);
  // Calls that name nothing, outcomes that are none, lists that are not.
  for (const h of [-1, 0.5, NaN, Infinity, 2 ** 53, 123456]) {
    assert.throws(() => fo.pollConnect(h, 0), dlm.ProtocolError);
    assert.throws(() => fo.handle(h, 0, 2, 0), dlm.ProtocolError);
    assert.throws(() => link.resend(fo, h, 0), dlm.ProtocolError);
    assert.equal(fo.end(h), false);
  }
  assert.throws(() => fo.handle(fo.startConnect(0), 0, 9, 0), dlm.InvalidArgumentError);
  for (const list of ['', 'nonsense', 'a:0', 'a:1,,b', '[::1', 'x'.repeat(300) + ':1']) {
    assert.throws(() => new wasm.Failover(list, 1000, 3, true, new Uint8Array(16)), dlm.InvalidArgumentError, list);
  }
  assert.throws(() => new wasm.Failover('a:1', 1000, 3, true, new Uint8Array(15)), dlm.InvalidArgumentError);
  for (const bad of [[new Uint8Array(31)], [new Uint8Array(33)]]) {
    assert.throws(() => new wasm.Sealer(...bad), dlm.InvalidArgumentError);
  }
  assert.throws(() => sealer.seal(new Uint8Array(23), 'k', new Uint8Array()), dlm.InvalidArgumentError);
  assert.throws(() => new wasm.Link('', false), dlm.InvalidArgumentError);
  assert.throws(() => new wasm.Link('a', false, 'name'), dlm.InvalidArgumentError);
  const w = new wasm.Link('a', false);
  for (const ms of [0, -1, NaN, Infinity, 2 ** 54]) {
    assert.throws(() => w.lock(fo, 0, 'x', ms, 0, 0), dlm.InvalidArgumentError, String(ms));
    assert.throws(() => w.put(fo, 0, 'x', ms, '', undefined), dlm.InvalidArgumentError, String(ms));
    assert.throws(() => w.putTable(fo, 0, 'x', ms, new Uint8Array(), undefined), dlm.InvalidArgumentError, String(ms));
  }
  assert.equal(w.takeOutput().length, 0, 'nothing written for refused requests');
  w.lock(fo, 0, 'x', 1, 0, 0);
  w.get(fo, 0, 'x');
  assert.equal(
    new TextDecoder().decode(w.takeOutput()),
    '{"Action":"Lock","FileName":"x","ID":"a","Expire":0.001}\n{"Action":"Get","FileName":"x","ID":"a"}\n',
  );
  assert.equal(w.takeOutput().length, 0);
});
