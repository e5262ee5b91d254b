'use strict';
// Semaphores and read/write locks against a real dlm-server: permits
// counted with a token per hold, FIFO waits, a waiting writer not overtaken
// by readers, sizes fixed while a name lives, and bad permits refused.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const dlm = require('..');
const { startServer, waiting } = require('./helpers.js');

describe('semaphores and read/write locks', () => {
  let server;
  let a;
  let b;

  before(async () => {
    server = await startServer();
    a = await dlm.connect({ port: server.port });
    b = await dlm.connect({ port: server.port });
  });

  after(async () => {
    await a?.close();
    await b?.close();
    await server?.stop();
  });

  it('a semaphore admits its permits, queues the rest, and keeps its size', async () => {
    const first = await a.semaphore('s', 2);
    const second = await b.semaphore('s', 2);
    assert.notEqual(first.token, second.token, 'a token per hold');
    await assert.rejects(b.semaphore('s', 2), dlm.NotOwnerError);
    await assert.rejects(b.semaphore('s', 3), (e) => e instanceof dlm.ConflictError && /2 permits/.test(e.message));
    await assert.rejects(b.lock('s'), dlm.NotOwnerError, 'a plain lock of a semaphore: held by others');
    const queued = b.semaphore('s', 2, { waitMs: 20_000 });
    await waiting(a, 1);
    await first.unlock();
    const third = await queued;
    assert.ok(third.token > first.token && third.token > second.token);
    await third.unlock();
    await second.unlock();
  });

  it('readers share; a waiting writer goes before later readers', async () => {
    const r1 = await a.readLock('rw');
    const r2 = await b.readLock('rw');
    await assert.rejects(b.writeLock('rw'), dlm.NotOwnerError);
    const writing = b.writeLock('rw', { waitMs: 20_000 });
    await waiting(a, 1);
    await assert.rejects(a.readLock('rw'), dlm.NotOwnerError, 'a reader now would overtake the writer');
    await r1.unlock();
    await r2.unlock();
    const w = await writing;
    assert.ok(w.token > r1.token && w.token > r2.token);
    await w.unlock();
  });

  it('refuses permits that are not a whole number from 1 to 2^32-1', async () => {
    for (const bad of [0, -1, 1.5, 2 ** 32, Number.NaN, '2']) {
      await assert.rejects(a.semaphore('bad', bad), dlm.InvalidArgumentError, String(bad));
    }
  });
});
