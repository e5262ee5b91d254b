'use strict';
// Locks under contention, aborted waits, and a lock lost when the server
// goes away.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const dlm = require('..');
const { startServer, sleep, eventually } = require('./helpers.js');

describe('locks under contention', () => {
  let server;
  let observer;

  before(async () => {
    server = await startServer();
    observer = await dlm.connect({ port: server.port });
  });

  after(async () => {
    await observer?.close();
    await server?.stop();
  });

  it('32 concurrent waiting locks: one holder at a time, tokens in grant order', async () => {
    const n = 32;
    const clients = await Promise.all(Array.from({ length: n }, () => dlm.connect({ port: server.port })));
    let holder = null;
    let highestToken = 0n; // what a fenced resource would remember
    const holds = [];
    await Promise.all(
      clients.map(async (client, i) => {
        const lock = await client.lock('contended', { ttlMs: 10_000, waitMs: 30_000 });
        const start = performance.now();
        assert.equal(holder, null, `worker ${i} got the lock while worker ${holder} held it`);
        holder = i;
        // The guarded resource accepts only ever-greater tokens.
        assert.ok(lock.token > highestToken, 'a grant with a stale token');
        highestToken = lock.token;
        await sleep(2 + (i % 3));
        assert.equal(holder, i);
        holder = null;
        const end = performance.now();
        await lock.unlock();
        holds.push({ i, token: lock.token, start, end });
      }),
    );
    assert.equal(holds.length, n);
    assert.equal(new Set(holds.map((h) => h.token)).size, n, 'every grant has its own token');
    holds.sort((x, y) => x.start - y.start);
    for (let k = 1; k < n; k += 1) {
      assert.ok(holds[k].start >= holds[k - 1].end, `holds ${k - 1} and ${k} overlap`);
      assert.ok(holds[k].token > holds[k - 1].token, 'tokens grow in grant order');
    }
    const stats = await observer.stats();
    assert.equal(stats.AWait, 0);
    assert.ok(stats.WaitGranted >= 1, `WaitGranted ${stats.WaitGranted}`);
    await Promise.all(clients.map((c) => c.close()));
  });

  it('an aborted wait rejects at once and leaves the server queue', async () => {
    const holder = await dlm.connect({ port: server.port });
    const waiter = await dlm.connect({ port: server.port });
    const held = await holder.lock('aborted', { ttlMs: 10_000 });
    const controller = new AbortController();
    const waiting = waiter.lock('aborted', { waitMs: 10_000, signal: controller.signal });
    await eventually(
      async () => (await observer.stats()).AWait,
      (v) => v === 1,
    );
    const reason = new Error('changed my mind');
    const start = performance.now();
    controller.abort(reason);
    await assert.rejects(waiting, (e) => {
      assert.ok(e instanceof dlm.CancelledError);
      assert.ok(e instanceof dlm.DlmError);
      assert.equal(e.code, 'Cancelled');
      assert.equal(e.name, 'AbortError');
      assert.equal(e.cause, reason);
      return true;
    });
    const took = performance.now() - start;
    assert.ok(took < 50, `the abort took ${took} ms`);
    // The server saw the connection close and dropped the waiter.
    await eventually(
      async () => (await observer.stats()).AWait,
      (v) => v === 0,
    );
    await held.unlock();
    assert.deepEqual(await observer.testLock('aborted'), { state: 'free' }, 'the aborted waiter got nothing');
    // The waiter's client is still fine.
    const again = await waiter.lock('aborted', { ttlMs: 1000 });
    await again.unlock();
    await Promise.all([holder.close(), waiter.close()]);
  });

  it('an already aborted signal rejects without asking; a signal on a free lock is harmless', async () => {
    const client = await dlm.connect({ port: server.port });
    const before = (await observer.stats()).Lock;
    const reason = new Error('too late');
    await assert.rejects(client.lock('pre-aborted', { signal: AbortSignal.abort(reason) }), (e) => {
      assert.ok(e instanceof dlm.CancelledError);
      assert.equal(e.cause, reason);
      return true;
    });
    assert.equal((await observer.stats()).Lock, before, 'nothing was sent');
    const controller = new AbortController();
    const lock = await client.lock('pre-aborted', { ttlMs: 1000, signal: controller.signal });
    controller.abort();
    assert.equal(lock.lost, false, "the call's signal is not the lock's");
    assert.equal((await observer.testLock('pre-aborted')).state, 'taken');
    await lock.unlock();
    // tryLock takes a signal too.
    const tried = await client.tryLock('pre-aborted', { signal: new AbortController().signal });
    assert.ok(tried);
    await tried.unlock();
    await client.close();
  });

  it('aborting one of several waiters leaves the others in the queue', async () => {
    const holder = await dlm.connect({ port: server.port });
    const w1 = await dlm.connect({ port: server.port });
    const w2 = await dlm.connect({ port: server.port });
    const held = await holder.lock('queue', { ttlMs: 10_000 });
    const controller = new AbortController();
    const first = w1.lock('queue', { waitMs: 10_000, signal: controller.signal });
    await eventually(async () => (await observer.stats()).AWait, (v) => v === 1);
    const second = w2.lock('queue', { waitMs: 10_000 });
    await eventually(async () => (await observer.stats()).AWait, (v) => v === 2);
    controller.abort();
    await assert.rejects(first, dlm.CancelledError);
    await eventually(async () => (await observer.stats()).AWait, (v) => v === 1);
    await held.unlock();
    const got = await second;
    assert.ok(got.token > held.token);
    await got.unlock();
    await Promise.all([holder.close(), w1.close(), w2.close()]);
  });
});

describe('a lock lost with its server', () => {
  it('auto-renewal keeps it; SIGTERM on the server fires lock.signal', async () => {
    const server = await startServer();
    const client = await dlm.connect({ port: server.port, timeoutMs: 1000 });
    const other = await dlm.connect({ port: server.port });
    try {
      const lock = await client.lock('renewed', { ttlMs: 300, autoRenew: true });
      const fired = new Promise((resolve) => lock.signal.addEventListener('abort', resolve, { once: true }));
      await sleep(800); // well past the TTL: only renewal keeps it
      assert.equal(lock.lost, false);
      assert.ok(lock.expiresInMs > 0);
      const state = await other.testLock('renewed');
      assert.equal(state.state, 'taken');
      assert.ok((await other.stats()).Relock >= 2, 'renewed more than once');
      await other.close();

      const stoppedAt = performance.now();
      const { code, signal } = await server.stop('SIGTERM');
      assert.ok(code === 0 || signal === 'SIGTERM', `server exit ${code} ${signal}`);
      await fired;
      const after = performance.now() - stoppedAt;
      assert.ok(after < 1500, `signal fired ${after} ms after the stop`);
      assert.equal(lock.lost, true);
      assert.equal(lock.expiresInMs, 0);
      assert.ok(lock.signal.reason instanceof dlm.LockLostError);
      assert.equal(lock.signal.reason.code, 'LockLost');
      await assert.rejects(lock.extend(), dlm.LockLostError);
      // Releasing needs the server, which is gone.
      await assert.rejects(lock.unlock(), dlm.UnavailableError);
    } finally {
      await client.close();
      await server.stop('SIGKILL');
    }
  });
});
