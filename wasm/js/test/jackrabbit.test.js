'use strict';
// The Node.js client against a stand-in for the original JackrabbitDLM
// server (dlm-tests' jackrabbit-standin): legacy framing, one request per
// connection (closed after the answer), grants without tokens, no wait
// queue, no revisions, no TestLock or Stats.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setTimeout: sleep } = require('node:timers/promises');
const dlm = require('..');
const { startJackrabbit, eventually } = require('./helpers.js');

const td = new TextDecoder();

describe('client against JackrabbitDLM (a stand-in)', () => {
  let server;
  let a;
  let b;
  const legacy = (clientId) => dlm.connect({ port: server.port, legacy: true, clientId });

  before(async () => {
    server = await startJackrabbit();
    a = await legacy('node-a');
    b = await legacy('node-b');
  });

  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await server?.stop('SIGKILL');
  });

  it('answers every request, concurrent ones included, on connections of their own', async () => {
    const versions = await Promise.all(Array.from({ length: 8 }, () => a.version()));
    for (const v of versions) assert.match(v, /^JackrabbitDLM\//);
  });

  it('a lock without a token is held, extended by re-lock and released', async () => {
    const lock = await a.lock('jr-job', { ttlMs: 5000 });
    assert.equal(lock.token, 0n, 'no fencing from this server');
    assert.ok(lock.expiresInMs > 4000);
    assert.equal(await b.tryLock('jr-job'), null);
    await lock.extend(20_000);
    assert.ok(lock.expiresInMs > 19_000);
    await lock.unlock();
    const theirs = await b.tryLock('jr-job');
    assert.ok(theirs);
    await theirs.unlock();
  });

  it('a wait is answered at once: NotOwner, not a timeout', async () => {
    const held = await a.lock('jr-busy');
    const start = performance.now();
    await assert.rejects(b.lock('jr-busy', { waitMs: 30_000 }), dlm.NotOwnerError);
    assert.ok(performance.now() - start < 5000);
    await held.unlock();
  });

  it('auto-renewal keeps the lock by re-locking', async () => {
    const lock = await a.lock('jr-renewed', { ttlMs: 300, autoRenew: true });
    const until = performance.now() + 1200; // four TTLs
    while (performance.now() < until) {
      assert.equal(await b.tryLock('jr-renewed'), null);
      await sleep(50);
    }
    assert.equal(lock.lost, false);
    await lock.unlock();
    const theirs = await b.tryLock('jr-renewed');
    assert.ok(theirs);
    await theirs.unlock();
  });

  it('an expired lock is never re-acquired by an extension', async () => {
    const lock = await a.lock('jr-brief', { ttlMs: 100 });
    // Once the server let it go, someone else takes it ...
    const theirs = await eventually(
      () => b.tryLock('jr-brief', { ttlMs: 10_000 }),
      (l) => l !== null,
      5000,
    );
    // ... and the first holder's extension, a re-lock here, is not sent.
    await assert.rejects(lock.extend(10_000), dlm.LockLostError);
    assert.equal(lock.lost, true);
    assert.ok(lock.signal.reason instanceof dlm.LockLostError);
    assert.equal(await a.tryLock('jr-brief'), null, 'still theirs');
    await theirs.unlock();
  });

  it('values have no revisions, and compare-and-set is refused, not faked', async () => {
    assert.equal(await a.put('jr-k', 'héllo', { ttlMs: 10_000 }), 0n);
    const got = await a.get('jr-k');
    assert.equal(td.decode(got.value), 'héllo');
    assert.equal(got.revision, 0n);
    await assert.rejects(a.put('jr-k', 'x', { ttlMs: 10_000, revision: 7 }), (e) => {
      assert.ok(e instanceof dlm.ProtocolError, e.message);
      assert.match(e.message, /compare-and-set/);
      return true;
    });
    await assert.rejects(b.get('jr-k'), dlm.NotOwnerError);
    assert.equal(await a.erase('jr-k'), true);
    assert.equal(await a.erase('jr-k'), false);
    assert.equal(await a.get('jr-k'), null);
  });

  it('actions it does not know are BadRequest, saying so', async () => {
    for (const call of [() => a.testLock('x'), () => a.stats()]) {
      await assert.rejects(call(), (e) => {
        assert.ok(e instanceof dlm.BadRequestError, e.message);
        assert.match(e.message, /does not know/);
        return true;
      });
    }
  });

  it('withLock', async () => {
    const token = await a.withLock('jr-with', { ttlMs: 1000 }, async (signal, lock) => {
      assert.equal(signal.aborted, false);
      assert.equal(await b.tryLock('jr-with'), null);
      return lock.token;
    });
    assert.equal(token, 0n);
  });
});
