'use strict';
// dlm-client (wasm/js) against ioredis on servers the caller started:
//
//   node bench.js --dlm HOST:PORT --redis HOST:PORT --seconds S
//                 [--workers 16,64] [--workloads lock,kv] [--clients dlm-client,ioredis]
//                 [--run PREFIX] [--cpu]
//
// bench.sh runs it for scripts/bench-bindings.sh (the contract:
// ../README.md); run.sh runs it alone, with servers of its own.
//
// (--clients may also name ioredis-autopipelining: ioredis with its
// enableAutoPipelining option, which sends the commands of one turn in one
// write, as dlm-client always does. Not run unless asked for.)
//
// Workloads, each a closed loop of `workers` concurrent async tasks on one
// event loop, sharing one client as both clients are meant to be used (one
// connection each: dlm-client pipelines its requests, ioredis queues its
// commands), every task on a key of its own (uncontended):
//
//   lock  dlm-client: lock(key, { ttlMs: 30000 }) then lock.unlock()
//         ioredis:    SET key token NX PX 30000, then EVALSHA of a
//                     compare-and-delete script (the usual safe release)
//   kv    dlm-client: put(key, 32 bytes, { ttlMs: 300000 }) then get(key)
//         ioredis:    SET key value PX 300000, then GET key
//
// One operation is the pair (two round trips). For each (workload,
// workers) the clients take turns in slices of at most one second until
// each has run `seconds`, after a short warm-up each, so a drift of the
// machine touches both alike. One JSON line per client and case:
//
//   {"binding":"node","client":"dlm-client","workload":"lock","workers":16,
//    "ops_per_s":..,"p50_us":..,"p99_us":..}
//
// With --cpu, each line also has "cpu_us_per_op": this process's CPU time
// (user + system) per operation while that client ran, a figure a busy
// shared machine disturbs far less than throughput.
//
// DLM_CLIENT names the dlm-client package directory (default: this
// repository's wasm/js, built by scripts/test-wasm.sh or bench/bindings/node/run.sh).

const path = require('node:path');
const { webcrypto } = require('node:crypto');

const LOCK_TTL_MS = 30_000;
const VALUE_TTL_MS = 300_000;
const SLICE_MS = 1000;
const WARMUP_MS = 300;
const VALUE = 'x'.repeat(32);
const CLIENTS = ['dlm-client', 'ioredis', 'ioredis-autopipelining'];
const RELEASE_SCRIPT =
  "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

function usage(message) {
  process.stderr.write(
    `${message}\nusage: node bench.js --dlm HOST:PORT --redis HOST:PORT --seconds S ` +
      '[--workers 16,64] [--workloads lock,kv] [--clients dlm-client,ioredis[,ioredis-autopipelining]] ' +
      '[--run PREFIX] [--cpu]\n',
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = {
    dlm: undefined,
    redis: undefined,
    seconds: 3,
    workers: [16, 64],
    workloads: ['lock', 'kv'],
    clients: ['dlm-client', 'ioredis'],
    run: undefined,
    cpu: false,
  };
  for (let i = 0; i < argv.length; i += 1) {
    const flag = argv[i];
    if (flag === '--cpu') {
      opts.cpu = true;
      continue;
    }
    const value = argv[i + 1];
    if (value === undefined) usage(`${flag} needs a value`);
    i += 1;
    switch (flag) {
      case '--dlm':
        opts.dlm = hostPort(value);
        break;
      case '--redis':
        opts.redis = hostPort(value);
        break;
      case '--run':
        opts.run = value;
        break;
      case '--seconds':
        opts.seconds = Number(value);
        if (!(opts.seconds > 0)) usage('--seconds must be positive');
        break;
      case '--workers':
        opts.workers = value.split(',').map(Number);
        if (opts.workers.some((n) => !(Number.isInteger(n) && n > 0))) usage('bad --workers');
        break;
      case '--workloads':
        opts.workloads = value.split(',');
        if (opts.workloads.some((w) => w !== 'lock' && w !== 'kv')) usage('bad --workloads');
        break;
      case '--clients':
        opts.clients = value.split(',');
        if (opts.clients.some((c) => !CLIENTS.includes(c))) usage('bad --clients');
        break;
      default:
        usage(`unknown argument ${flag}`);
    }
  }
  if (opts.clients.includes('dlm-client') && !opts.dlm) usage('--dlm HOST:PORT is needed');
  if (opts.clients.some((c) => c.startsWith('ioredis')) && !opts.redis) usage('--redis HOST:PORT is needed');
  return opts;
}

function hostPort(text) {
  const m = /^(.*):(\d+)$/.exec(text);
  if (!m) usage(`not HOST:PORT: ${text}`);
  return { host: m[1].replace(/^\[(.*)\]$/, '$1'), port: Number(m[2]) };
}

function randomId() {
  const bytes = webcrypto.getRandomValues(new Uint8Array(24));
  return Buffer.from(bytes).toString('hex');
}

/** The operations of one client: `op(workload, key)` runs one pair. */
async function dlmClient(target) {
  const dir = process.env.DLM_CLIENT ?? path.resolve(__dirname, '..', '..', '..', 'wasm', 'js');
  const { connect } = require(dir);
  const client = await connect({ host: target.host, port: target.port });
  const ops = {
    async lock(key) {
      const lock = await client.lock(key, { ttlMs: LOCK_TTL_MS });
      await lock.unlock();
    },
    async kv(key) {
      await client.put(key, VALUE, { ttlMs: VALUE_TTL_MS });
      const got = await client.get(key);
      if (got === null) throw new Error(`${key} vanished`);
    },
  };
  return { ops, close: () => client.close() };
}

async function ioredisClient(target, enableAutoPipelining) {
  const Redis = require('ioredis');
  const redis = new Redis({ host: target.host, port: target.port, lazyConnect: true, enableAutoPipelining });
  await redis.connect();
  const sha = await redis.script('LOAD', RELEASE_SCRIPT);
  const owner = randomId();
  const ops = {
    async lock(key) {
      const ok = await redis.set(key, owner, 'PX', LOCK_TTL_MS, 'NX');
      if (ok !== 'OK') throw new Error(`${key} is taken`);
      const released = await redis.evalsha(sha, 1, key, owner);
      if (released !== 1) throw new Error(`${key} was not released`);
    },
    async kv(key) {
      await redis.set(key, VALUE, 'PX', VALUE_TTL_MS);
      const got = await redis.get(key);
      if (got === null) throw new Error(`${key} vanished`);
    },
  };
  return { ops, close: () => redis.quit() };
}

/** Runs `workers` closed loops of `op` for `ms`; latencies in µs go to
 * `samples` when given. Resolves with the number of operations. */
async function run(op, keys, ms, samples) {
  let stop = false;
  let count = 0;
  const timer = setTimeout(() => {
    stop = true;
  }, ms);
  await Promise.all(
    keys.map(async (key) => {
      while (!stop) {
        const t0 = performance.now();
        await op(key);
        if (samples) samples.push((performance.now() - t0) * 1000);
        count += 1;
      }
    }),
  );
  clearTimeout(timer);
  return count;
}

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, i)];
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const clients = {};
  for (const name of opts.clients) {
    clients[name] =
      name === 'dlm-client'
        ? await dlmClient(opts.dlm)
        : await ioredisClient(opts.redis, name === 'ioredis-autopipelining');
  }
  const tag = opts.run ?? randomId().slice(0, 8);
  try {
    for (const workload of opts.workloads) {
      for (const workers of opts.workers) {
        const keys = Array.from({ length: workers }, (_, i) => `bench:${tag}:${workload}:${workers}:${i}`);
        const results = {};
        for (const name of opts.clients) {
          await run(clients[name].ops[workload], keys, WARMUP_MS);
          results[name] = { ops: 0, elapsed: 0, cpu: 0, samples: [] };
        }
        let left = opts.seconds * 1000;
        while (left > 0) {
          const slice = Math.min(SLICE_MS, left);
          for (const name of opts.clients) {
            const r = results[name];
            const t0 = performance.now();
            const cpu0 = process.cpuUsage();
            r.ops += await run(clients[name].ops[workload], keys, slice, r.samples);
            const cpu = process.cpuUsage(cpu0);
            r.cpu += cpu.user + cpu.system;
            r.elapsed += performance.now() - t0;
          }
          left -= slice;
        }
        for (const name of opts.clients) {
          const r = results[name];
          const sorted = Float64Array.from(r.samples).sort();
          const line = {
            binding: 'node',
            client: name,
            workload,
            workers,
            ops_per_s: Math.round((r.ops / r.elapsed) * 1000),
            p50_us: Math.round(percentile(sorted, 50)),
            p99_us: Math.round(percentile(sorted, 99)),
            ops: r.ops,
            seconds: Math.round(r.elapsed) / 1000,
          };
          if (opts.cpu) line.cpu_us_per_op = Math.round((r.cpu / r.ops) * 100) / 100;
          process.stdout.write(`${JSON.stringify(line)}\n`);
        }
      }
    }
  } finally {
    for (const name of opts.clients) await clients[name].close();
  }
}

main().catch((err) => {
  process.stderr.write(`bench: ${err?.stack ?? err}\n`);
  process.exit(1);
});
