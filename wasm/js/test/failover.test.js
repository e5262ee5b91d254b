'use strict';
// The Node client across a cluster's failover: a real 3-member cluster,
// its leader killed (SIGKILL) while one client holds an auto-renewed lock,
// another waits for it and a third writes values in a loop (the scenario
// of ffi/tests/failover.rs and python/tests/test_failover.py).

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const dlm = require('..');
const { startCluster, eventually } = require('./helpers.js');

/** How long anything may take on a loaded two-core machine: elections,
 * failovers, the calls' timeouts. Only an upper bound: nothing waits it out. */
const LONG = 60_000;

// One cluster at a time: elections must not be starved by other load.
describe('failover', { concurrency: false }, () => {
  it('a holder, a waiter and a writer ride through the leader’s death', async () => {
    const cluster = await startCluster(3);
    const clients = [];
    const client = async (servers, timeoutMs = LONG) => {
      const c = await dlm.connect({ servers, timeoutMs });
      clients.push(c);
      return c;
    };
    let stop = true;
    try {
      const leader = await cluster.leader();
      const oldAddr = cluster.address(leader);
      const list = cluster.list();

      // Given one follower's address, a client finds the leader.
      const one = await client(cluster.address(cluster.followers(leader)[0]));
      assert.equal(one.server, oldAddr, 'discovery goes to the leader');
      assert.equal(one.servers.length, 3, String(one.servers));

      // A list as an array works the same.
      const holder = await client(list.split(','));
      const waiter = await client(list);
      const writer = await client(list);
      assert.equal(holder.server, oldAddr);

      // The holder: an auto-renewed lock whose TTL outlasts an election on
      // a loaded machine, renewed every third of it.
      const ttlMs = 15_000;
      const lock = await holder.lock('resource', { ttlMs, autoRenew: true });
      const token = lock.token;
      const signal = lock.signal;

      // The waiter queues on the leader.
      const started = performance.now();
      const waiting = waiter.lock('resource', { ttlMs, waitMs: LONG }).then(
        (l) => ({ lock: l, server: waiter.server, took: performance.now() - started }),
        (error) => ({ error }),
      );
      await eventually(
        () => cluster.waiters(leader),
        (n) => n === 1,
        LONG,
      );

      // The writer: a compare-and-set chain (a Put applied twice would make
      // the second a Conflict) and one key per Put, until told to stop.
      stop = false;
      let acked = 0;
      let revision = 0n;
      let slowest = 0;
      const writing = (async () => {
        for (let i = 1; i <= 20_000 && !stop; i += 1) {
          const t = performance.now();
          revision = await writer.put('chain', String(i), { ttlMs: 600_000, revision });
          await writer.put(`k${i}`, String(i), { ttlMs: 600_000 });
          slowest = Math.max(slowest, performance.now() - t);
          acked = i;
        }
      })();
      writing.catch(() => {});
      await eventually(
        () => acked,
        (n) => n >= 20,
        LONG,
      );

      const deadlineBefore = performance.now() + lock.expiresInMs;
      await cluster.kill(leader);
      const newLeader = await cluster.leader();
      assert.notEqual(newLeader, leader);
      const newAddr = cluster.address(newLeader);

      // The writer goes on through the new leader.
      const atKill = acked;
      await eventually(
        () => acked,
        (n) => n >= atKill + 20,
        LONG,
      );

      // The holder's lock was extended through the new leader: its deadline
      // moved past where it stood when the leader died.
      await eventually(
        () => performance.now() + lock.expiresInMs,
        (at) => at > deadlineBefore + 1000,
        LONG,
      );
      assert.equal(holder.server, newAddr);
      assert.equal(signal.aborted, false, 'reported lost on a failover');
      assert.equal(lock.lost, false);
      assert.equal(lock.token, token);
      const seen = await holder.testLock('resource');
      assert.equal(seen.state, 'mine');
      assert.equal(seen.token, token, 'same grant, same token');

      // The waiter queued again on the new leader, still waiting.
      await eventually(
        () => cluster.waiters(newLeader),
        (n) => n === 1,
        LONG,
      );

      // Released: the waiter is granted, with a newer token, within its wait.
      await lock.unlock();
      const granted = await waiting;
      assert.equal(granted.error, undefined, String(granted.error));
      assert.ok(granted.lock.token > token);
      assert.equal(granted.server, newAddr);
      assert.ok(granted.took < LONG + 5000, `${granted.took} ms`);
      await granted.lock.unlock();
      assert.equal(signal.aborted, false);

      // Every acknowledged Put is readable, none applied twice.
      stop = true;
      await writing;
      assert.ok(slowest < LONG + 5000, `${slowest} ms`);
      const chain = await writer.get('chain');
      assert.equal(new TextDecoder().decode(chain.value), String(acked));
      assert.equal(chain.revision, revision);
      for (let i = 1; i <= acked; i += 1) {
        const v = await writer.get(`k${i}`);
        assert.equal(new TextDecoder().decode(v.value), String(i), `k${i}`);
      }
    } finally {
      stop = true;
      await Promise.allSettled(clients.map((c) => c.close()));
      await cluster.stop();
    }
  });

  it('Unavailable only once no member answers within the timeout', async () => {
    const cluster = await startCluster(3);
    try {
      await cluster.leader();
      const timeoutMs = 3000;
      const c = await dlm.connect({ servers: cluster.list(), timeoutMs });
      await c.put('x', '1', { ttlMs: 60_000 });
      for (const id of [...cluster.members.keys()]) await cluster.kill(id);
      const started = performance.now();
      const err = await c.get('x').then(
        () => assert.fail('a get answered by no server'),
        (e) => e,
      );
      const took = performance.now() - started;
      assert.ok(err instanceof dlm.UnavailableError, String(err));
      assert.equal(err.code, 'Unavailable');
      assert.ok(took < timeoutMs + 5000, `${took} ms`);
      await c.close();
      // Not a list at all: the caller's mistake, said at once.
      await assert.rejects(dlm.connect({ servers: '127.0.0.1:1,nonsense' }), dlm.InvalidArgumentError);
      // Nobody listening: Unavailable from connect, within its timeout.
      await assert.rejects(dlm.connect({ servers: '127.0.0.1:1,127.0.0.1:2', timeoutMs: 1000 }), dlm.UnavailableError);
    } finally {
      await cluster.stop();
    }
  });
});
