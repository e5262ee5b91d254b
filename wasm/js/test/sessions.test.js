'use strict';
// Sessions: locks bound to a connection of their own, released by the
// server when the session ends, lock-delay, and a session lost with its
// server.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const dlm = require('..');
const { startServer, eventually, waiting } = require('./helpers.js');

describe('sessions', () => {
  let server;
  let client;
  let other;

  before(async () => {
    server = await startServer();
    client = await dlm.connect({ port: server.port });
    other = await dlm.connect({ port: server.port });
  });

  after(async () => {
    await client?.close();
    await other?.close();
    await server?.stop();
  });

  it('a session lock is released when the session ends', async () => {
    const session = await client.session({ ttlMs: 10_000 });
    const lock = await session.lock('bound', { ttlMs: 600_000 });
    assert.ok(lock.token > 0n);
    assert.equal((await other.testLock('bound')).state, 'taken');
    await assert.rejects(other.lock('bound'), dlm.NotOwnerError);
    await session.close();
    assert.equal(await session.ended, undefined);
    assert.ok(session.closed && !session.lost && !session.signal.aborted);
    await eventually(
      () => other.testLock('bound'),
      (s) => s.state === 'free',
      10_000,
    );
    const after = await other.lock('bound');
    assert.ok(after.token > lock.token);
    await after.unlock();
    await assert.rejects(session.lock('bound'), dlm.LockLostError);
    await assert.rejects(lock.unlock(), dlm.LockLostError);
  });

  it('unlock, withLock, semaphores and read/write locks bound to a session', async () => {
    const session = await client.session();
    try {
      await boundShapes(session);
    } finally {
      await session[Symbol.asyncDispose]();
    }
    assert.ok(session.closed);
  });

  async function boundShapes(session) {
    const lock = await session.lock('plain');
    await lock.unlock();
    assert.equal((await other.testLock('plain')).state, 'free');
    const result = await session.withLock('plain', async (signal, held) => {
      assert.equal(signal.aborted, false);
      assert.equal((await other.testLock('plain')).state, 'taken');
      return held.token;
    });
    assert.ok(result > lock.token);
    assert.equal((await other.testLock('plain')).state, 'free');
    const permit = await session.lock('sem', { permits: 2 });
    await assert.rejects(session.lock('sem', { permits: 3 }), dlm.ConflictError);
    await permit.unlock();
    const reader = await session.lock('rw', { mode: 'read' });
    await assert.rejects(other.writeLock('rw'), dlm.NotOwnerError);
    await reader.unlock();
  }

  it('a session lock waits in the queue', async () => {
    const held = await other.lock('queued');
    const session = await client.session({ ttlMs: 10_000 });
    try {
      const granted = session.lock('queued', { waitMs: 5000 });
      await waiting(other, 1);
      await held.unlock();
      const lock = await granted;
      assert.ok(lock.token > held.token);
      assert.equal((await other.testLock('queued')).state, 'taken');
      await assert.rejects(session.lock('queued', { waitMs: 7000 }), /two thirds/);
    } finally {
      await session.close();
    }
    await eventually(
      () => other.testLock('queued'),
      (s) => s.state === 'free',
      10_000,
    );
  });

  it('lock-delay keeps the name closed to everyone after the session ends', async () => {
    const before = (await other.stats()).SessionClosed;
    const session = await client.session({ ttlMs: 10_000 });
    const lock = await session.lock('delayed', { ttlMs: 600_000, lockDelayMs: 1500 });
    await session.close();
    await eventually(
      () => other.stats(),
      (s) => s.SessionClosed > before,
      10_000,
    );
    // Ended, yet not released: closed for the delay, to everyone.
    const state = await other.testLock('delayed');
    assert.equal(state.state, 'taken');
    assert.ok(state.ttlMs <= 1500);
    await assert.rejects(other.lock('delayed'), dlm.NotOwnerError);
    // Once it has passed, the queue moves, with a greater token.
    const after = await other.lock('delayed', { waitMs: 10_000 });
    assert.ok(after.token > lock.token);
    await after.unlock();
  });

  it('limits are clear errors', async () => {
    const session = await client.session({ ttlMs: 5000 });
    await assert.rejects(session.lock('x', { lockDelayMs: 60_001 }), /at most 60 s/);
    await assert.rejects(session.lock('x', { lockDelayMs: -1 }), dlm.InvalidArgumentError);
    await assert.rejects(session.lock('x', { mode: 'sideways' }), dlm.InvalidArgumentError);
    await assert.rejects(session.lock('', {}), dlm.InvalidArgumentError);
    await assert.rejects(session.lock('x', { ttlMs: 1e12 }), /over the limit/);
    // Refusals wrote nothing or were answered: the session still answers in order.
    const lock = await session.lock('x');
    await lock.unlock();
    await session.close();
    // The server's limits, in its own words.
    await assert.rejects(client.session({ ttlMs: 1e12 }), (err) => {
      assert.ok(err instanceof dlm.BadRequestError, String(err));
      assert.match(err.message, /over the limit/);
      return true;
    });
  });

  const stalled = 'a session this process stalled past its TTL is lost, not silently re-opened';
  it(stalled, { timeout: 20_000 }, async () => {
    const session = await client.session({ ttlMs: 300 });
    const lock = await session.lock('stalled', { ttlMs: 600_000 });
    // A pause (a long synchronous task, a garbage collection): no
    // keep-alive goes out, and the server ends the session meanwhile.
    const until = performance.now() + 600;
    while (performance.now() < until);
    const why = await session.ended;
    assert.ok(why instanceof dlm.LockLostError, String(why));
    assert.match(why.message, /over its TTL/);
    assert.ok(session.lost);
    await eventually(
      () => other.testLock('stalled'),
      (s) => s.state === 'free',
      10_000,
    );
    await assert.rejects(lock.unlock(), dlm.LockLostError);
  });

  it('a session whose server goes away is lost: signal, ended, lost', async () => {
    const alone = await startServer();
    const c = await dlm.connect({ port: alone.port, connectAttempts: 1, timeoutMs: 1000 });
    try {
      const session = await c.session({ ttlMs: 300 });
      const lock = await session.lock('gone');
      const aborted = new Promise((resolve) => session.signal.addEventListener('abort', resolve));
      await alone.stop();
      const why = await session.ended;
      assert.ok(why instanceof dlm.LockLostError, String(why));
      await aborted;
      assert.ok(session.lost && session.signal.reason === why);
      await assert.rejects(session.lock('gone'), dlm.LockLostError);
      await assert.rejects(lock.unlock(), dlm.LockLostError);
      await session.close();
    } finally {
      await c.close();
    }
  });
});
