'use strict';
// Multi-locks (`lockAll`, all or none) and shared values (`put` with
// `readers`, the owner in `get`), against a real server with identities.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const dlm = require('..');
const { startServer, tempDir, waiting, serverPath } = require('./helpers.js');

const td = new TextDecoder();

async function rejectsWith(promise, cls, code) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof cls, `${e?.name}: ${e?.message}`);
    assert.equal(e.code, code);
    return true;
  });
}

describe('multi-locks and shared values', () => {
  let server;
  let dir;
  const secrets = {};
  let a;
  let b;

  before(async () => {
    dir = tempDir('multi');
    for (const name of ['alice', 'bob']) {
      execFileSync(serverPath, ['identity', 'new', name, '--identity-dir', dir]);
      secrets[name] = JSON.parse(fs.readFileSync(path.join(dir, `${name}.cfg`), 'utf8')).Identity;
    }
    server = await startServer(['--identity-dir', dir]);
    a = await dlm.connect({ port: server.port });
    b = await dlm.connect({ port: server.port });
  });

  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await server?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('lockAll', () => {
    it('takes every name with a token each, and release frees them all', async () => {
      const names = ['m-1', 'm-2', 'm-3'];
      const locks = await a.lockAll(names, { ttlMs: 10_000 });
      assert.deepEqual(locks.names, names);
      assert.equal(locks.tokens.length, 3);
      for (const t of locks.tokens) assert.equal(typeof t, 'bigint');
      assert.equal(new Set(locks.tokens).size, 3, 'each name has its own token');
      assert.equal(locks.lost, false);
      assert.equal(locks.signal.aborted, false);
      for (const [i, name] of names.entries()) {
        const mine = await a.testLock(name);
        assert.equal(mine.state, 'mine');
        assert.equal(mine.token, locks.tokens[i]);
        assert.equal((await b.testLock(name)).state, 'taken');
      }
      await locks.release();
      for (const name of names) assert.deepEqual(await b.testLock(name), { state: 'free' });
      // Each lock can still be taken alone once released.
      const one = await b.lock('m-2', { ttlMs: 1000 });
      await one.unlock();
    });

    it('all or none: a name held elsewhere fails the attempt, and nothing is taken', async () => {
      const held = await b.lock('n-2', { ttlMs: 10_000 });
      await assert.rejects(a.lockAll(['n-1', 'n-2', 'n-3'], { ttlMs: 10_000 }), (e) => {
        assert.ok(e instanceof dlm.NotOwnerError, `${e?.name}: ${e?.message}`);
        assert.match(e.message, /n-2/, 'the message names the name in the way');
        return true;
      });
      assert.deepEqual(await b.testLock('n-1'), { state: 'free' });
      assert.deepEqual(await b.testLock('n-3'), { state: 'free' });
      await held.unlock();
    });

    it('waits until every name is free, holding none of them meanwhile', async () => {
      const held = await b.lock('w-2', { ttlMs: 10_000 });
      const pending = a.lockAll(['w-1', 'w-2'], { ttlMs: 10_000, waitMs: 20_000 });
      await waiting(b, 1);
      // The waiter holds nothing meanwhile; w-1 is free but reserved for it
      // (a newcomer's single lock must not starve the multi-lock).
      assert.deepEqual(await b.testLock('w-1'), { state: 'free' });
      await rejectsWith(b.lock('w-1', { ttlMs: 10_000 }), dlm.NotOwnerError, 'NotOwner');
      await held.unlock();
      const locks = await pending;
      assert.deepEqual(locks.names, ['w-1', 'w-2']);
      assert.equal((await b.testLock('w-1')).state, 'taken');
      assert.equal((await b.testLock('w-2')).state, 'taken');
      await locks.unlock();
      assert.deepEqual(await b.testLock('w-2'), { state: 'free' });
    });

    it('a wait that runs out rejects with TimeoutError and takes nothing', async () => {
      const held = await b.lock('t-2', { ttlMs: 10_000 });
      await rejectsWith(a.lockAll(['t-1', 't-2'], { ttlMs: 10_000, waitMs: 100 }), dlm.TimeoutError, 'Timeout');
      assert.deepEqual(await b.testLock('t-1'), { state: 'free' });
      await held.unlock();
    });

    it('withLockAll holds every name while the function runs', async () => {
      const result = await a.withLockAll(['x-1', 'x-2'], { ttlMs: 10_000 }, async (signal, locks) => {
        assert.equal(signal.aborted, false);
        assert.deepEqual(locks.names, ['x-1', 'x-2']);
        assert.equal((await b.testLock('x-1')).state, 'taken');
        assert.equal((await b.testLock('x-2')).state, 'taken');
        return 42;
      });
      assert.equal(result, 42);
      assert.deepEqual(await b.testLock('x-1'), { state: 'free' });
      assert.deepEqual(await b.testLock('x-2'), { state: 'free' });
    });

    it('bad names are refused before anything is sent', async () => {
      await rejectsWith(a.lockAll([]), dlm.InvalidArgumentError, 'InvalidArgument');
      await rejectsWith(a.lockAll(['d', 'd']), dlm.InvalidArgumentError, 'InvalidArgument');
      await rejectsWith(a.lockAll(['ok', '']), dlm.InvalidArgumentError, 'InvalidArgument');
      await rejectsWith(a.lockAll('one'), dlm.InvalidArgumentError, 'InvalidArgument');
      const many = Array.from({ length: 17 }, (_, i) => `many-${i}`);
      await rejectsWith(a.lockAll(many), dlm.InvalidArgumentError, 'InvalidArgument');
      assert.deepEqual(await b.testLock('many-0'), { state: 'free' });
    });
  });

  describe('shared values', () => {
    it('a value shared with any client is read by another, its owner shown', async () => {
      await a.put('s-any', 'for all', { ttlMs: 10_000, readers: 'any' });
      const got = await b.get('s-any');
      assert.equal(td.decode(got.value), 'for all');
      assert.equal(got.owner, a.id);
      assert.equal((await a.get('s-any')).owner, a.id);
      // Writes stay the owner's.
      await rejectsWith(b.put('s-any', 'mine now', { ttlMs: 10_000 }), dlm.NotOwnerError, 'NotOwner');
      // A put without readers makes it private again.
      await a.put('s-any', 'private', { ttlMs: 10_000 });
      await rejectsWith(b.get('s-any'), dlm.NotOwnerError, 'NotOwner');
      assert.equal(td.decode((await a.get('s-any')).value), 'private');
    });

    it('a value shared with a named identity is read by it, refused to others', async () => {
      const alice = await dlm.connect({ port: server.port, identity: { name: 'alice', secret: secrets.alice } });
      const bob = await dlm.connect({ port: server.port, identity: { name: 'bob', secret: secrets.bob } });
      try {
        await a.put('s-named', 'for alice', { ttlMs: 10_000, readers: ['alice'] });
        const got = await alice.get('s-named');
        assert.equal(td.decode(got.value), 'for alice');
        assert.equal(got.owner, a.id);
        await rejectsWith(bob.get('s-named'), dlm.NotOwnerError, 'NotOwner');
        await rejectsWith(b.get('s-named'), dlm.NotOwnerError, 'NotOwner');
        await a.put('s-named', 'again', { ttlMs: 10_000 });
        await rejectsWith(alice.get('s-named'), dlm.NotOwnerError, 'NotOwner');
      } finally {
        await Promise.all([alice.close(), bob.close()]);
      }
    });

    it('bad readers are refused', async () => {
      for (const readers of ['all', [], [''], ['a,b'], [7], ['not a name'], Array(33).fill('x')]) {
        await rejectsWith(a.put('s-bad', 'x', { ttlMs: 1000, readers }), dlm.InvalidArgumentError, 'InvalidArgument');
      }
      assert.equal(await a.get('s-bad'), null);
    });
  });
});
