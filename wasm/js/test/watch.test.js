'use strict';
// Watches: an async iterator of events in order, resuming from a revision,
// a resume past the history, a slow watcher cut off, ending by signal or
// break.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const dlm = require('..');
const { startServer, eventually } = require('./helpers.js');

/** The next `n` events of `watch`. */
async function take(watch, n) {
  const out = [];
  for (let i = 0; i < n; i += 1) {
    const { value, done } = await watch.next();
    assert.equal(done, false);
    out.push(value);
  }
  return out;
}

describe('watches', () => {
  let server;
  let me;
  let you;

  before(async () => {
    server = await startServer();
    me = await dlm.connect({ port: server.port, clientId: 'me' });
    you = await dlm.connect({ port: server.port, clientId: 'you' });
  });

  after(async () => {
    await me?.close();
    await you?.close();
    await server?.stop();
  });

  it('sees grant, put, release and erase in order, with increasing revisions', async () => {
    const watch = await me.watch({ prefix: 'jobs/' }).start();
    const start = watch.revision;
    assert.equal(typeof start, 'bigint');
    const lock = await me.lock('jobs/1', { ttlMs: 60_000 });
    await me.put('jobs/state', 'running', { ttlMs: 60_000 });
    await you.put('jobs/theirs', 'secret', { ttlMs: 60_000 });
    await me.put('elsewhere', 'x', { ttlMs: 60_000 });
    await lock.unlock();
    await me.erase('jobs/state');
    const seen = [];
    for await (const ev of watch) {
      seen.push(ev);
      if (seen.length === 5) break;
    }
    assert.deepEqual(
      seen.map((e) => [e.event, e.kind, e.name]),
      [
        ['Granted', 'Lock', 'jobs/1'],
        ['Put', 'Data', 'jobs/state'],
        ['Put', 'Data', 'jobs/theirs'],
        ['Released', 'Lock', 'jobs/1'],
        ['Erased', 'Data', 'jobs/state'],
      ],
    );
    assert.deepEqual(
      seen.map((e) => e.revision - start),
      [1n, 2n, 3n, 5n, 6n],
    );
    assert.equal(seen[0].token, lock.token);
    assert.equal(seen[1].owner, 'me');
    assert.deepEqual(seen[1].value, new TextEncoder().encode('running'));
    assert.equal(seen[1].dataRevision, 1n);
    assert.equal(seen[2].owner, undefined, "another owner's value is not shown");
    assert.equal(seen[2].value, undefined);
    assert.equal(watch.revision, start + 6n);
    // `break` ended it.
    assert.deepEqual(await watch.next(), { value: undefined, done: true });
  });

  it('semaphore and read/write events say their shape', async () => {
    const watch = me.watch({ prefix: 'shape/' });
    await watch.start();
    const permit = await me.semaphore('shape/sem', 3);
    const writer = await me.writeLock('shape/rw');
    const [p, w] = await take(watch, 2);
    assert.deepEqual([p.kind, p.permits, p.token], ['Semaphore', 3, permit.token]);
    assert.deepEqual([w.kind, w.mode, w.token], ['ReadWrite', 'write', writer.token]);
    await permit.unlock();
    await writer.unlock();
    await watch.close();
  });

  it('resuming since a revision misses nothing and sees nothing twice', async () => {
    const first = await me.watch({ name: 'k' }).start();
    await me.put('k', '0', { ttlMs: 60_000 });
    const [one] = await take(first, 1);
    await first.return();
    for (let i = 1; i <= 3; i += 1) await me.put('k', String(i), { ttlMs: 60_000 });
    await me.erase('k');
    const again = me.watch({ name: 'k', since: one.revision });
    const got = await take(again, 4);
    assert.deepEqual(
      got.map((e) => [e.event, e.dataRevision]),
      [
        ['Put', 2n],
        ['Put', 3n],
        ['Put', 4n],
        ['Erased', undefined],
      ],
    );
    assert.deepEqual(
      got.map((e) => e.revision - one.revision),
      [1n, 2n, 3n, 4n],
    );
    await again.close();
  });

  it('next() calls made at once take the events in call order', async () => {
    const watch = await me.watch({ prefix: 'many/' }).start();
    const pending = [watch.next(), watch.next(), watch.next()];
    for (let i = 0; i < 3; i += 1) await me.put(`many/${i}`, 'x', { ttlMs: 60_000 });
    const got = await Promise.all(pending);
    assert.deepEqual(
      got.map((r) => r.value.name),
      ['many/0', 'many/1', 'many/2'],
    );
    const last = watch.next();
    await watch.close();
    assert.deepEqual(await last, { value: undefined, done: true });
  });

  it('an AbortSignal ends the iteration', async () => {
    const controller = new AbortController();
    const watch = me.watch({ prefix: 'abort/', signal: controller.signal });
    await watch.start();
    const waiting = watch.next();
    controller.abort();
    assert.deepEqual(await waiting, { value: undefined, done: true });
    const already = me.watch({ prefix: 'abort/', signal: AbortSignal.abort() });
    assert.deepEqual(await already.next(), { value: undefined, done: true });
  });

  it('a watch needs a prefix or a name', () => {
    assert.throws(() => me.watch({}), dlm.InvalidArgumentError);
    assert.throws(() => me.watch({ prefix: 'a', name: 'b' }), dlm.InvalidArgumentError);
    assert.throws(() => me.watch({ prefix: 'a', since: -1 }), dlm.InvalidArgumentError);
  });
});

describe('watches the server ends', () => {
  it('a resume past the history is a ConflictError with the current revision', async () => {
    const server = await startServer(['--watch-history', '3']);
    const c = await dlm.connect({ port: server.port });
    try {
      const w = await c.watch({ name: 'k' }).start();
      const start = w.revision;
      await w.close();
      for (let i = 0; i < 5; i += 1) await c.put('k', String(i), { ttlMs: 60_000 });
      const late = c.watch({ name: 'k', since: start });
      await assert.rejects(late.next(), (err) => {
        assert.ok(err instanceof dlm.ConflictError, String(err));
        assert.match(err.message, /history compacted/);
        assert.ok(err.revision > start);
        return true;
      });
      assert.deepEqual(await late.next(), { value: undefined, done: true });
      // Through start() too; the watch is then over.
      const early = c.watch({ name: 'k', since: start });
      await assert.rejects(early.start(), dlm.ConflictError);
      assert.deepEqual(await early.next(), { value: undefined, done: true });
    } finally {
      await c.close();
      await server.stop();
    }
  });

  it('a slow watcher is cut off: its events first, then a clear error to resume from', async () => {
    const server = await startServer(['--watch-budget', '64KiB']);
    const c = await dlm.connect({ port: server.port });
    try {
      const watch = await c.watch({ prefix: 'big/' }).start();
      const start = watch.revision;
      const value = new Uint8Array(8192).fill(118);
      let puts = 0n;
      // The watch reads nothing while the server piles events up for it.
      while ((await c.stats()).WatchCutOff === 0) {
        assert.ok(puts < 1500n, 'the watcher was never cut off');
        for (let i = 0; i < 10; i += 1) {
          await c.put('big/k', value, { ttlMs: 60_000 });
          puts += 1n;
        }
      }
      let seen = 0n;
      let ended;
      try {
        for await (const ev of watch) {
          seen += 1n;
          assert.equal(ev.revision, start + seen, 'in order, without a gap');
        }
      } catch (err) {
        ended = err;
      }
      assert.ok(ended instanceof dlm.UnavailableError, String(ended));
      assert.match(ended.message, /cut off/);
      assert.ok(seen > 0n && seen < puts);
      assert.equal(ended.revision, start + seen);
      // Resuming from it misses nothing.
      const resumed = c.watch({ prefix: 'big/', since: ended.revision });
      const rest = await take(resumed, Number(puts - seen));
      assert.equal(rest.at(-1).revision, start + puts);
      assert.equal(rest[0].revision, start + seen + 1n);
      await resumed.close();
    } finally {
      await c.close();
      await server.stop();
    }
  });
});
