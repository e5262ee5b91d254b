'use strict';
// Every call and every error of the client, against a real dlm-server.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const dlm = require('..');
const { setTimeout: wait } = require('node:timers/promises');
const { startServer, tempDir, sleep, eventually, waiting, serverPath } = require('./helpers.js');

const te = new TextEncoder();
const td = new TextDecoder();

/** Resolves once /proc says process `pid` is stopped (state T). */
async function stoppedProcess(pid) {
  for (let i = 0; i < 5000; i += 1) {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state === 'T' || state === 't') return;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  throw new Error(`process ${pid} never stopped`);
}

/** Asserts that `promise` rejects with an instance of `Class` with `code`. */
async function rejectsWith(promise, Class, code) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof Class, `${e?.name}: ${e?.message} is not a ${Class.name}`);
    assert.ok(e instanceof dlm.DlmError);
    assert.equal(e.code, code);
    return true;
  });
}

/** A port nothing listens on. */
async function closedPort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/** A fake server: `answer(line)` returns what to write back (or nothing). */
/** What a single dlm server answers the client's question about the
 * cluster (asked first on every new connection). */
const SINGLE = '{"Status":"Done","Cluster":{"Mode":"single"}}\n';
const isClusterQuestion = (line) => line.startsWith('{"Action":"Cluster"');

/** A server on a free port answering each line with `answer(line)` (none
 * if undefined); the question about the cluster is answered as a single
 * server does. */
async function fakeServer(answer) {
  const sockets = new Set();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let buf = '';
    socket.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const out = isClusterQuestion(line) ? SINGLE : answer(line);
        if (out !== undefined) socket.write(out);
      }
    });
    socket.on('error', () => {});
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    /** Writes `text` on the newest connection. */
    reply: (text) => [...sockets].at(-1)?.write(text),
    /** Closes every open connection but keeps listening. */
    drop: () => {
      for (const s of sockets) s.destroy();
    },
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(r));
    },
  };
}

describe('client against dlm-server', () => {
  let server;
  let a; // two clients with different owner IDs
  let b;
  const connect = (options = {}) => dlm.connect({ port: server.port, ...options });

  before(async () => {
    server = await startServer();
    a = await connect();
    b = await connect();
  });

  after(async () => {
    await a?.close();
    await b?.close();
    await server?.stop();
  });

  describe('connect', () => {
    it('gives a random 48-character ID unless one is given', async () => {
      assert.match(a.id, /^[A-Za-z0-9_-]{48}$/);
      assert.notEqual(a.id, b.id);
      const c = await connect({ clientId: 'worker-7' });
      assert.equal(c.id, 'worker-7');
      await c.close();
    });

    it('reads DLM_SERVER when given no server at all', async () => {
      const saved = process.env.DLM_SERVER;
      try {
        process.env.DLM_SERVER = `127.0.0.1:${server.port}`;
        const c = await dlm.connect({ clientId: 'from-env' });
        assert.equal(c.server, `127.0.0.1:${server.port}`);
        await c.put('env-k', 'v', { ttlMs: 60_000 });
        assert.equal(td.decode((await c.get('env-k')).value), 'v');
        await c.close();
        // An address in the options wins over the environment.
        process.env.DLM_SERVER = `127.0.0.1:${await closedPort()}`;
        const d = await connect({ clientId: 'from-options' });
        assert.equal(d.server, `127.0.0.1:${server.port}`);
        await d.close();
        await rejectsWith(dlm.connect({ timeoutMs: 500 }), dlm.UnavailableError, 'Unavailable');
      } finally {
        if (saved === undefined) delete process.env.DLM_SERVER;
        else process.env.DLM_SERVER = saved;
      }
    });

    it('reports an unreachable server as Unavailable', async () => {
      const port = await closedPort();
      await rejectsWith(dlm.connect({ port, timeoutMs: 500 }), dlm.UnavailableError, 'Unavailable');
    });

    it('refuses bad options before connecting', async () => {
      for (const options of [
        { port: -1 },
        { port: 70000 },
        { port: '37373' },
        { timeoutMs: 0 },
        { encoder: {} },
        { clientId: 7 },
        { clientId: '' },
        { identity: { name: 'x' } },
      ]) {
        await rejectsWith(connect(options), dlm.InvalidArgumentError, 'InvalidArgument');
      }
    });

    it('version and stats', async () => {
      assert.match(await a.version(), /^JackrabbitDLM\/\S+ dlm$/);
      const stats = await a.stats();
      assert.equal(typeof stats.Lock, 'number');
      assert.ok(stats.AConn >= 2, `AConn ${stats.AConn}`);
      assert.ok(stats.Version >= 1);
    });
  });

  describe('locks', () => {
    it('lock, testLock, unlock', async () => {
      const lock = await a.lock('l-basic', { ttlMs: 5000 });
      assert.equal(lock.name, 'l-basic');
      assert.equal(typeof lock.token, 'bigint');
      assert.ok(lock.expiresInMs > 4500 && lock.expiresInMs <= 5000, `${lock.expiresInMs}`);
      assert.equal(lock.lost, false);
      assert.equal(lock.signal.aborted, false);
      const mine = await a.testLock('l-basic');
      assert.equal(mine.state, 'mine');
      assert.equal(mine.token, lock.token);
      assert.ok(mine.ttlMs > 4000);
      const taken = await b.testLock('l-basic');
      assert.equal(taken.state, 'taken');
      assert.ok(taken.ttlMs > 4000);
      assert.equal(taken.token, undefined);
      await lock.unlock();
      assert.equal(lock.expiresInMs, 0);
      assert.equal(lock.signal.aborted, false, 'a release is not a loss');
      assert.deepEqual(await b.testLock('l-basic'), { state: 'free' });
      // Idempotent.
      await lock.unlock();
      await Promise.all([lock.unlock(), lock.unlock()]);
    });

    it('the default TTL is 30 s', async () => {
      const lock = await a.lock('l-default');
      assert.ok(lock.expiresInMs > 29_000 && lock.expiresInMs <= dlm.DEFAULT_TTL_MS);
      await lock.unlock();
    });

    it('another owner gets NotOwner, null from tryLock, Timeout after a wait', async () => {
      const lock = await a.lock('l-held', { ttlMs: 5000 });
      await rejectsWith(b.lock('l-held'), dlm.NotOwnerError, 'NotOwner');
      assert.equal(await b.tryLock('l-held'), null);
      const start = performance.now();
      await rejectsWith(b.lock('l-held', { waitMs: 150 }), dlm.TimeoutError, 'Timeout');
      const waited = performance.now() - start;
      assert.ok(waited >= 140 && waited < 1500, `waited ${waited} ms`);
      await lock.unlock();
      const mine = await b.tryLock('l-held', { ttlMs: 1000 });
      assert.ok(mine);
      assert.ok(mine.token > lock.token, 'tokens only grow');
      await mine.unlock();
    });

    it('a waiter gets the lock when it is released', async () => {
      const lock = await a.lock('l-handover', { ttlMs: 5000 });
      const queued = b.lock('l-handover', { ttlMs: 5000, waitMs: 5000 });
      await waiting(a, 1);
      await lock.unlock();
      const next = await queued;
      assert.ok(next.token > lock.token);
      await next.unlock();
    });

    it('extend moves the deadline; it never resurrects a lost lock', async () => {
      const lock = await a.lock('l-extend', { ttlMs: 1000 });
      await lock.extend(8000);
      assert.ok(lock.expiresInMs > 7000, `${lock.expiresInMs}`);
      await lock.extend();
      assert.ok(lock.expiresInMs > 7000, 'the default is the current TTL');
      await rejectsWith(lock.extend(0), dlm.InvalidArgumentError, 'InvalidArgument');
      await rejectsWith(lock.extend('5'), dlm.InvalidArgumentError, 'InvalidArgument');
      // Released by name behind the lock's back, then re-acquired by the
      // same owner: a new grant, which the old handle must not touch.
      assert.equal(await a.unlock('l-extend'), true);
      const again = await a.lock('l-extend', { ttlMs: 5000 });
      assert.ok(again.token > lock.token);
      await rejectsWith(lock.extend(5000), dlm.LockLostError, 'LockLost');
      assert.equal(lock.lost, true);
      assert.equal(lock.signal.aborted, true);
      assert.ok(lock.signal.reason instanceof dlm.LockLostError);
      await rejectsWith(lock.extend(5000), dlm.LockLostError, 'LockLost');
      // The stale handle's release leaves the new grant alone.
      await rejectsWith(lock.unlock(), dlm.LockLostError, 'LockLost');
      const state = await a.testLock('l-extend');
      assert.equal(state.state, 'mine');
      assert.equal(state.token, again.token);
      await again.unlock();
      await rejectsWith(again.extend(1000), dlm.LockLostError, 'LockLost');
    });

    it('an expired lock is lost: signal, extend and unlock say so', async () => {
      const lock = await a.lock('l-expire', { ttlMs: 100 });
      const aborted = new Promise((r) => lock.signal.addEventListener('abort', r));
      await aborted;
      assert.equal(lock.lost, true);
      assert.equal(lock.expiresInMs, 0);
      // Our deadline is counted from the request, so it comes a little
      // before the server's: wait for the server to agree.
      const other = await b.lock('l-expire', { ttlMs: 5000, waitMs: 1000 });
      await rejectsWith(lock.extend(1000), dlm.LockLostError, 'LockLost');
      await rejectsWith(lock.unlock(), dlm.LockLostError, 'LockLost');
      await lock.unlock(); // idempotent after a failure too
      assert.equal((await b.testLock('l-expire')).token, other.token);
      await other.unlock();
    });

    it('unlock by name and token', async () => {
      assert.equal(await a.unlock('l-none'), false, 'nothing to release');
      const lock = await a.lock('l-by-name', { ttlMs: 5000 });
      await rejectsWith(b.unlock('l-by-name'), dlm.NotOwnerError, 'NotOwner');
      await rejectsWith(a.unlock('l-by-name', { token: lock.token + 1n }), dlm.NotOwnerError, 'NotOwner');
      await rejectsWith(a.unlock('l-by-name', { token: -1 }), dlm.InvalidArgumentError, 'InvalidArgument');
      assert.equal(await a.unlock('l-by-name', { token: lock.token }), true);
      await rejectsWith(lock.unlock(), dlm.LockLostError, 'LockLost');
    });

    it('bad arguments are refused before anything is sent', async () => {
      for (const [name, options] of [
        ['', {}],
        ['x', { ttlMs: 0 }],
        ['x', { ttlMs: -5 }],
        ['x', { ttlMs: Number.NaN }],
        ['x', { ttlMs: Infinity }],
        ['x', { ttlMs: '100' }],
        ['x', { waitMs: -1 }],
      ]) {
        await rejectsWith(a.lock(name, options), dlm.InvalidArgumentError, 'InvalidArgument');
      }
      await rejectsWith(a.testLock(''), dlm.InvalidArgumentError, 'InvalidArgument');
    });

    it('the server refuses what is over its limits: BadRequest', async () => {
      // Anonymous locks may last at most 3543 s.
      await assert.rejects(a.lock('l-long', { ttlMs: 3_600_000 }), (e) => {
        assert.ok(e instanceof dlm.BadRequestError);
        assert.equal(e.code, 'BadRequest');
        assert.match(e.message, /Expire/);
        return true;
      });
      await rejectsWith(a.lock('l-long', { ttlMs: 1000, waitMs: 3_600_000 }), dlm.BadRequestError, 'BadRequest');
    });

    it('a released lock keeps its token and stays released while new locks come and go', async () => {
      const first = await a.lock('l-released-1', { ttlMs: 5000 });
      const { token } = await a.testLock('l-released-1');
      await first.unlock();
      // The next lock's lease may take the released one's place in the
      // module: the released lock must not see it.
      const second = await a.lock('l-released-2', { ttlMs: 5000 });
      assert.equal(first.token, token);
      assert.equal(first.expiresInMs, 0);
      assert.equal(first.lost, false);
      await rejectsWith(first.extend(1000), dlm.LockLostError, 'LockLost');
      await first.unlock(); // released already: nothing to do
      assert.ok(second.expiresInMs > 4000);
      assert.equal((await a.testLock('l-released-2')).state, 'mine');
      assert.notEqual(second.token, first.token);
      await second.extend(6000);
      await second.unlock();
      assert.deepEqual(await a.testLock('l-released-2'), { state: 'free' });
    });

    it('await using: Symbol.asyncDispose releases', async () => {
      const lock = await a.lock('l-dispose', { ttlMs: 5000 });
      await lock[Symbol.asyncDispose]();
      assert.deepEqual(await b.testLock('l-dispose'), { state: 'free' });
      // Best effort: disposing a lost lock does not throw.
      const short = await a.lock('l-dispose', { ttlMs: 50 });
      await new Promise((r) => short.signal.addEventListener('abort', r));
      await short[Symbol.asyncDispose]();
    });

    it('withLock runs the function holding the lock and releases after', async () => {
      const result = await a.withLock('l-with', { ttlMs: 5000 }, async (signal, lock) => {
        assert.ok(signal instanceof AbortSignal);
        assert.equal(signal, lock.signal);
        assert.equal((await b.testLock('l-with')).state, 'taken');
        return 42;
      });
      assert.equal(result, 42);
      assert.deepEqual(await b.testLock('l-with'), { state: 'free' });
      // The two-argument form, and a synchronous function.
      assert.equal(await a.withLock('l-with', () => 'sync'), 'sync');
      await rejectsWith(a.withLock('l-with', {}), dlm.InvalidArgumentError, 'InvalidArgument');
    });

    it('withLock releases when the function throws, and rethrows', async () => {
      const boom = new Error('boom');
      await assert.rejects(
        a.withLock('l-with-throw', { ttlMs: 5000 }, async () => {
          throw boom;
        }),
        (e) => e === boom,
      );
      assert.deepEqual(await b.testLock('l-with-throw'), { state: 'free' });
    });

    it('withLock renews by default, and reports a lock lost meanwhile', async () => {
      // Renewed: a function longer than the TTL still holds it at the end.
      const token = await a.withLock('l-with-renew', { ttlMs: 150 }, async (signal, lock) => {
        await sleep(400);
        assert.equal(signal.aborted, false);
        assert.equal((await b.testLock('l-with-renew')).state, 'taken');
        return lock.token;
      });
      assert.equal(typeof token, 'bigint');
      // Not renewed: the lock expires under the function.
      await rejectsWith(
        a.withLock('l-with-lost', { ttlMs: 100, autoRenew: false }, () => sleep(250)),
        dlm.LockLostError,
        'LockLost',
      );
    });

    it('withLock rejects with LockLostError when the signal aborts the function', async () => {
      // The function does what it should with the signal: its sleep
      // rejects with an AbortError, which withLock reports as the loss.
      await assert.rejects(
        a.withLock('l-with-signal', { ttlMs: 100, autoRenew: false }, (signal) =>
          wait(10_000, undefined, { signal }),
        ),
        (e) => {
          assert.ok(e instanceof dlm.LockLostError, `${e?.name}: ${e?.message}`);
          assert.equal(e.code, 'LockLost');
          assert.equal(e.cause?.name, 'AbortError');
          return true;
        },
      );
    });
  });

  describe('values', () => {
    it('put, get, erase', async () => {
      assert.equal(await a.put('v-basic', te.encode('hello'), { ttlMs: 60_000 }), 1n);
      const got = await a.get('v-basic');
      assert.deepEqual(got.value, te.encode('hello'));
      assert.ok(got.value instanceof Uint8Array);
      assert.equal(got.revision, 1n);
      assert.ok(got.ttlMs > 59_000 && got.ttlMs <= 60_000);
      // Strings are stored as UTF-8; other views as their bytes.
      assert.equal(await a.put('v-basic', 'héllo ✓', { ttlMs: 60_000 }), 2n);
      assert.equal(td.decode((await a.get('v-basic')).value), 'héllo ✓');
      await a.put('v-basic', new Uint16Array([1, 2]), { ttlMs: 60_000 });
      assert.deepEqual((await a.get('v-basic')).value, new Uint8Array(new Uint16Array([1, 2]).buffer));
      await a.put('v-basic', new Uint8Array(0), { ttlMs: 60_000 });
      assert.deepEqual((await a.get('v-basic')).value, new Uint8Array(0));
      assert.equal(await a.erase('v-basic'), true);
      assert.equal(await a.erase('v-basic'), false);
      assert.equal(await a.get('v-basic'), null);
    });

    it('values expire', async () => {
      await a.put('v-short', 'x', { ttlMs: 50 });
      const start = performance.now();
      await eventually(() => a.get('v-short'), (v) => v === null);
      assert.ok(performance.now() - start >= 40, 'not before its TTL');
    });

    it('compare-and-set by revision', async () => {
      assert.equal(await a.put('v-cas', 'one', { ttlMs: 60_000, revision: 0 }), 1n);
      await assert.rejects(a.put('v-cas', 'again', { ttlMs: 60_000, revision: 0n }), (e) => {
        assert.ok(e instanceof dlm.ConflictError);
        assert.equal(e.code, 'Conflict');
        assert.equal(e.revision, 1n);
        return true;
      });
      assert.equal(await a.put('v-cas', 'two', { ttlMs: 60_000, revision: 1n }), 2n);
      await rejectsWith(a.put('v-cas', 'stale', { ttlMs: 60_000, revision: 1 }), dlm.ConflictError, 'Conflict');
      assert.equal(td.decode((await a.get('v-cas')).value), 'two');
      await assert.rejects(a.put('v-absent', 'x', { ttlMs: 60_000, revision: 3 }), (e) => {
        assert.ok(e instanceof dlm.ConflictError);
        assert.equal(e.revision, 0n, 'absent');
        return true;
      });
      await a.erase('v-cas');
    });

    it("another owner's value is NotOwner", async () => {
      await a.put('v-mine', 'x', { ttlMs: 60_000 });
      await rejectsWith(b.get('v-mine'), dlm.NotOwnerError, 'NotOwner');
      await rejectsWith(b.put('v-mine', 'y', { ttlMs: 60_000 }), dlm.NotOwnerError, 'NotOwner');
      await rejectsWith(b.erase('v-mine'), dlm.NotOwnerError, 'NotOwner');
      // Locks and values are separate namespaces.
      const lock = await b.lock('v-mine', { ttlMs: 1000 });
      await lock.unlock();
      await a.erase('v-mine');
    });

    it('bad arguments are refused before anything is sent', async () => {
      await rejectsWith(a.put('v', 'x', {}), dlm.InvalidArgumentError, 'InvalidArgument');
      await rejectsWith(a.put('v', 'x'), dlm.InvalidArgumentError, 'InvalidArgument');
      await rejectsWith(a.put('v', 'x', { ttlMs: 0 }), dlm.InvalidArgumentError, 'InvalidArgument');
      await rejectsWith(a.put('v', 42, { ttlMs: 1000 }), dlm.InvalidArgumentError, 'InvalidArgument');
      await rejectsWith(a.put('v', 'x', { ttlMs: 1000, revision: -1 }), dlm.InvalidArgumentError, 'InvalidArgument');
      await rejectsWith(a.put('v', 'x', { ttlMs: 1000, revision: 1.5 }), dlm.InvalidArgumentError, 'InvalidArgument');
      await rejectsWith(a.put('v', 'x', { ttlMs: 1000, revision: 1n << 64n }), dlm.InvalidArgumentError, 'InvalidArgument');
      await rejectsWith(a.put('', 'x', { ttlMs: 1000 }), dlm.InvalidArgumentError, 'InvalidArgument');
      await rejectsWith(a.get(''), dlm.InvalidArgumentError, 'InvalidArgument');
      await rejectsWith(a.erase(''), dlm.InvalidArgumentError, 'InvalidArgument');
    });

    it('a value over the server limit is BadRequest', async () => {
      // 16 KiB anonymous limit on the stored text; the table codec doubles.
      await rejectsWith(a.put('v-big', new Uint8Array(9000), { ttlMs: 1000 }), dlm.BadRequestError, 'BadRequest');
    });

    it('sealed values: the server stores only ciphertext; the wrong encoder is an EncodingError', async () => {
      const key = dlm.generateKey();
      const sealed = await connect({ clientId: 'sealer', encoder: dlm.sealedEncoder(key) });
      const plain = await connect({ clientId: 'sealer' });
      await sealed.put('v-sealed', 'top secret', { ttlMs: 60_000 });
      assert.equal(td.decode((await sealed.get('v-sealed')).value), 'top secret');
      await rejectsWith(plain.get('v-sealed'), dlm.EncodingError, 'Encoding');
      const other = await connect({ clientId: 'sealer', encoder: dlm.sealedEncoder(dlm.generateKey()) });
      await rejectsWith(other.get('v-sealed'), dlm.EncodingError, 'Encoding');
      await Promise.all([sealed.close(), plain.close(), other.close()]);
    });

    it('a custom encoder', async () => {
      const reverse = {
        encode: (_name, bytes) => Buffer.from(bytes).toString('hex').split('').reverse().join(''),
        decode: (_name, text) => Buffer.from(text.split('').reverse().join(''), 'hex'),
      };
      const c = await connect({ encoder: reverse });
      await c.put('v-custom', 'abc', { ttlMs: 1000 });
      assert.equal(td.decode((await c.get('v-custom')).value), 'abc');
      const bad = await connect({ encoder: { encode: () => 7, decode: () => new Uint8Array() } });
      await rejectsWith(bad.put('v', 'x', { ttlMs: 1000 }), dlm.InvalidArgumentError, 'InvalidArgument');
      await Promise.all([c.close(), bad.close()]);
    });
  });

  describe('connections', () => {
    it('pipelines every ordinary request on one connection, answers in order', async () => {
      const c = await connect();
      await c.version(); // the server has accepted the connection
      const before = (await a.stats()).AConn;
      const n = 300;
      const results = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          i % 3 === 0
            ? c.put(`p-${i}`, `value ${i}`, { ttlMs: 10_000 })
            : i % 3 === 1
              ? c.get(`p-${i - 1}`)
              : c.version(),
        ),
      );
      for (let i = 0; i < n; i += 3) {
        assert.equal(results[i], 1n);
        assert.equal(td.decode(results[i + 1].value), `value ${i}`, 'a get sent after its put sees it');
        assert.match(results[i + 2], /JackrabbitDLM/);
      }
      assert.equal((await a.stats()).AConn, before, 'no connection was added');
      await c.close();
    });

    it('after close every call is Unavailable; close releases held locks', async () => {
      const c = await connect();
      await c.lock('c-close', { ttlMs: 60_000 });
      await c.close();
      await c.close(); // idempotent
      assert.deepEqual(await a.testLock('c-close'), { state: 'free' });
      for (const call of [
        () => c.version(),
        () => c.stats(),
        () => c.lock('x'),
        () => c.tryLock('x'),
        () => c.testLock('x'),
        () => c.unlock('x'),
        () => c.put('x', 'y', { ttlMs: 1000 }),
        () => c.get('x'),
        () => c.erase('x'),
      ]) {
        await rejectsWith(call(), dlm.UnavailableError, 'Unavailable');
      }
    });

    it('Symbol.asyncDispose closes the client', async () => {
      const c = await connect();
      await c[Symbol.asyncDispose]();
      await rejectsWith(c.version(), dlm.UnavailableError, 'Unavailable');
    });

    it('closing while a lock waits rejects it with Unavailable', async () => {
      const held = await a.lock('c-wait-close', { ttlMs: 5000 });
      const c = await connect();
      const queued = c.lock('c-wait-close', { waitMs: 5000 });
      await waiting(a, 1);
      await c.close();
      await rejectsWith(queued, dlm.UnavailableError, 'Unavailable');
      await held.unlock();
    });

    it('legacy framing (JackrabbitDLM table-encoded lines)', async () => {
      const c = await connect({ legacy: true });
      assert.match(await c.version(), /JackrabbitDLM/);
      const lock = await c.lock('legacy', { ttlMs: 1000 });
      assert.equal((await b.testLock('legacy')).state, 'taken');
      await lock.unlock();
      await c.put('legacy', 'v', { ttlMs: 1000 });
      assert.equal(td.decode((await c.get('legacy')).value), 'v');
      assert.ok((await c.stats()).In > 0);
      await c.close();
    });
  });
});

describe('client against other servers', () => {
  it('an unlock the server did not answer is no release: the next call asks again', async () => {
    const srv = await startServer();
    const c = await dlm.connect({ port: srv.port, timeoutMs: 300 });
    const other = await dlm.connect({ port: srv.port });
    try {
      const lock = await c.lock('u-retry', { ttlMs: 30_000 });
      srv.proc.kill('SIGSTOP');
      // kill() returns before the stop takes effect: until the kernel
      // reports the process stopped, it may still answer.
      await stoppedProcess(srv.proc.pid);
      try {
        await rejectsWith(lock.unlock(), dlm.UnavailableError, 'Unavailable');
        // Not released, so not silently "done": it is asked again.
        await rejectsWith(lock.unlock(), dlm.UnavailableError, 'Unavailable');
      } finally {
        srv.proc.kill('SIGCONT');
      }
      // The server may yet read an unlock sent before it stopped: either
      // this release answers, or it finds the lock already gone.
      const outcome = await lock.unlock().then(
        () => 'released',
        (e) => e.code,
      );
      assert.ok(['released', 'LockLost'].includes(outcome), outcome);
      assert.deepEqual(await other.testLock('u-retry'), { state: 'free' });
      await lock.unlock(); // released: later calls resolve
    } finally {
      await Promise.all([c.close(), other.close()]);
      await srv.stop();
    }
  });

  it('identities: longer TTLs with the right secret, BadRequest with a wrong one', async () => {
    const dir = tempDir('identity');
    execFileSync(serverPath, ['identity', 'new', 'app', '--identity-dir', dir]);
    const { Identity: secret } = JSON.parse(fs.readFileSync(path.join(dir, 'app.cfg'), 'utf8'));
    const server = await startServer(['--identity-dir', dir]);
    try {
      const good = await dlm.connect({ port: server.port, identity: { name: 'app', secret } });
      const lock = await good.lock('id-lock', { ttlMs: 7_200_000 });
      assert.ok(lock.expiresInMs > 7_000_000);
      await lock.unlock();
      const anonymous = await dlm.connect({ port: server.port, clientId: good.id });
      await good.put('id-value', 'x', { ttlMs: 1000 });
      await rejectsWith(anonymous.get('id-value'), dlm.NotOwnerError, 'NotOwner');
      const bad = await dlm.connect({ port: server.port, identity: { name: 'app', secret: 'wrong' } });
      await rejectsWith(bad.version(), dlm.BadRequestError, 'BadRequest');
      await Promise.all([good.close(), anonymous.close(), bad.close()]);
    } finally {
      await server.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a server out of memory answers NO: NoMemory', async () => {
    const server = await startServer(['--memory-budget', '8KiB']);
    try {
      const c = await dlm.connect({ port: server.port });
      let error;
      for (let i = 0; i < 64 && !error; i += 1) {
        await c.put(`m-${i}`, new Uint8Array(1000), { ttlMs: 60_000 }).catch((e) => {
          error = e;
        });
      }
      assert.ok(error instanceof dlm.NoMemoryError, `got ${error}`);
      assert.equal(error.code, 'NoMemory');
      await c.close();
    } finally {
      await server.stop();
    }
  });

  it('a server answering nonsense: Protocol', async () => {
    const fake = await fakeServer((line) => (line.includes('Version') ? 'not json\n' : '{"Status":"Bogus"}\n'));
    try {
      const c = await dlm.connect({ port: fake.port });
      await rejectsWith(c.version(), dlm.ProtocolError, 'Protocol');
      await rejectsWith(c.get('x'), dlm.ProtocolError, 'Protocol');
      await c.close();
    } finally {
      await fake.close();
    }
  });

  it('the requests of one turn leave in a few writes, the first at once; answers may come in any pieces', async () => {
    const linesPerRead = [];
    const server = net.createServer((socket) => {
      socket.setNoDelay(true);
      socket.on('error', () => {});
      socket.on('data', (d) => {
        if (isClusterQuestion(d.toString())) {
          socket.write(SINGLE);
          return;
        }
        const lines = d.toString().split('\n').length - 1;
        linesPerRead.push(lines);
        // Every answer at once, cut into 7-byte writes.
        const out = Buffer.from('{"Status":"Version","ID":"JackrabbitDLM/fake"}\n'.repeat(lines));
        for (let i = 0; i < out.length; i += 7) socket.write(out.subarray(i, i + 7));
      });
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    try {
      const c = await dlm.connect({ port: server.address().port });
      // The client's writes, counted on the socket's prototype meanwhile.
      let writes = 0;
      const write = net.Socket.prototype.write;
      net.Socket.prototype.write = function (...args) {
        writes += 1;
        return write.apply(this, args);
      };
      let answers;
      try {
        answers = Promise.all(Array.from({ length: 50 }, () => c.version()));
        // The turn's end, where the rest goes.
        await new Promise((resolve) => process.nextTick(resolve));
      } finally {
        net.Socket.prototype.write = write;
      }
      // Each write as large as what is in flight: 1, 1, 2, 4, 8, 16, and
      // the rest at the end of the turn.
      assert.equal(writes, 7, 'fifty requests, seven writes');
      assert.deepEqual(new Set(await answers), new Set(['JackrabbitDLM/fake']));
      // This server (in this process) reads once the turn is over.
      assert.deepEqual(linesPerRead, [50], 'fifty requests, one read');
      // Calls awaited one by one: one write each.
      assert.equal(await c.version(), 'JackrabbitDLM/fake');
      assert.equal(await c.version(), 'JackrabbitDLM/fake');
      assert.deepEqual(linesPerRead, [50, 1, 1]);
      await c.close();
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('a long wait outlives timeoutMs; the requests behind a stuck one fail with it', async () => {
    let held;
    let stuck = false;
    const fake = await fakeServer((line) => {
      // From the first Version on, this server answers nothing.
      stuck ||= line.includes('Version');
      if (stuck) return undefined;
      if (line.includes('"Wait"')) {
        // Granted after the client's timeoutMs, within its wait.
        held = setTimeout(() => fake.reply('{"Status":"Locked","ID":"x","Token":9,"Expire":5}\n'), 400);
        return undefined;
      }
      return '{"Status":"Unlocked","ID":"x"}\n';
    });
    try {
      const c = await dlm.connect({ port: fake.port, timeoutMs: 150 });
      const lock = await c.lock('slow', { ttlMs: 5000, waitMs: 2000 });
      assert.equal(lock.token, 9n);
      await lock.unlock();
      const start = performance.now();
      const stuck = c.version();
      const behind = c.unlock('x');
      await rejectsWith(stuck, dlm.UnavailableError, 'Unavailable');
      await rejectsWith(behind, dlm.UnavailableError, 'Unavailable');
      const took = performance.now() - start;
      assert.ok(took >= 140 && took < 2000, `${took} ms`);
      await c.close();
    } finally {
      clearTimeout(held);
      await fake.close();
    }
  });

  it('a server that never answers: Unavailable after timeoutMs', async () => {
    const fake = await fakeServer(() => undefined);
    try {
      const c = await dlm.connect({ port: fake.port, timeoutMs: 200 });
      const start = performance.now();
      await rejectsWith(c.version(), dlm.UnavailableError, 'Unavailable');
      const took = performance.now() - start;
      assert.ok(took >= 190 && took < 2000, `${took} ms`);
      await c.close();
    } finally {
      await fake.close();
    }
  });

  it('a server that closes the connection: a read is sent again on a new connection', async () => {
    let n = 0;
    const fake = await fakeServer(() => {
      n += 1;
      return n === 1 ? undefined : '{"Status":"Version","ID":"JackrabbitDLM/fake"}\n';
    });
    try {
      const c = await dlm.connect({ port: fake.port });
      const first = c.version();
      await eventually(
        () => n,
        (count) => count === 1,
      );
      fake.drop();
      // A read may be applied twice: the failover sends it again.
      assert.equal(await first, 'JackrabbitDLM/fake');
      assert.equal(n, 2);
      assert.equal(await c.version(), 'JackrabbitDLM/fake');
      await c.close();
    } finally {
      await fake.close();
    }
  });
});

/** A proxy on a free port in front of the server at `port`, passing each
 * request line on unless `hook(line)` says otherwise: 'refuse' answers it
 * as a cluster member without a leader does, 'drop' closes the client's
 * connection with it unanswered, 'swallow' never answers it. `lines` has
 * every request line received (the question about the cluster aside). */
async function proxy(port, hook) {
  const lines = [];
  const sockets = new Set();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    const upstream = net.connect({ host: '127.0.0.1', port });
    upstream.on('data', (d) => socket.write(d));
    upstream.on('error', () => socket.destroy());
    upstream.on('close', () => socket.destroy());
    socket.on('error', () => {});
    socket.on('close', () => {
      sockets.delete(socket);
      upstream.destroy();
    });
    let buf = '';
    socket.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, i + 1);
        buf = buf.slice(i + 1);
        const what = isClusterQuestion(line) ? 'pass' : (lines.push(line.trim()), hook(line));
        if (what === 'refuse') socket.write('{"Status":"NO","Error":"no leader"}\n');
        else if (what === 'drop') socket.destroy();
        else if (what !== 'swallow') upstream.write(line);
      }
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    lines,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(r));
    },
  };
}

// Locks, their releases, puts and gets take the fast path on a usable
// connection (one call to write and start, one to judge and read the
// answer): the failover's rules apply to them all the same.
describe('the fast path through the failover', () => {
  let server;
  before(async () => {
    server = await startServer();
  });
  after(() => server?.stop());

  it('a refusal sends the request again; a closed connection sends again what may be; silence times out', async () => {
    // Each kind of request is refused the first time it is seen.
    const seen = new Set();
    let drop = false;
    let swallow = false;
    const front = await proxy(server.port, (line) => {
      const action = /"Action":"(\w+)"/.exec(line)?.[1];
      if (swallow) return 'swallow';
      if (drop && action === 'Put') {
        drop = false;
        return 'drop';
      }
      if (seen.has(action)) return 'pass';
      seen.add(action);
      return 'refuse';
    });
    try {
      const c = await dlm.connect({ port: front.port, timeoutMs: 1000 });
      const count = (action) => front.lines.filter((l) => l.includes(`"Action":"${action}"`));

      const revision = await c.put('fast/k', 'one', { ttlMs: 60_000 });
      assert.ok(revision > 0n);
      const puts = count('Put');
      assert.equal(puts.length, 2, 'refused, then sent again');
      assert.equal(puts[0], puts[1], 'the same request, the same RequestID: applied once');
      const got = await c.get('fast/k');
      assert.equal(td.decode(got.value), 'one');
      assert.equal(got.revision, revision);
      assert.equal(count('Get').length, 2);

      const lock = await c.lock('fast/l', { ttlMs: 30_000 });
      assert.ok(lock.token > 0n);
      assert.equal(count('Lock').length, 2);
      await lock.unlock();
      assert.equal(count('Unlock').length, 2, 'the release too');
      assert.equal((await c.testLock('fast/l')).state, 'free');

      // The connection dies with a Put in flight: sent again on a new one.
      drop = true;
      const again = await c.put('fast/k', 'two', { ttlMs: 60_000, revision });
      assert.ok(again > revision);
      assert.equal(td.decode((await c.get('fast/k')).value), 'two');

      // Nothing answers: Unavailable once the call's time is up.
      swallow = true;
      const start = performance.now();
      await rejectsWith(c.get('fast/k'), dlm.UnavailableError, 'Unavailable');
      const took = performance.now() - start;
      assert.ok(took >= 990 && took < 10_000, `${took} ms`);
      await c.close();
    } finally {
      await front.close();
    }
  });
});
