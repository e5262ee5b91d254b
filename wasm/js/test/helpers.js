'use strict';
// Test support: start a real dlm-server on a free port, and find the Rust
// interop helper. `scripts/test-wasm.sh` builds both before the tests run;
// DLM_SERVER and DLM_INTEROP override where they are.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const repo = path.resolve(__dirname, '..', '..', '..');
const serverPath = process.env.DLM_SERVER ?? path.join(repo, 'target', 'debug', 'dlm-server');
const jackrabbitPath =
  process.env.DLM_JACKRABBIT ?? path.join(repo, 'target', 'debug', 'jackrabbit-standin');
const interopPath =
  process.env.DLM_INTEROP ?? path.join(repo, 'target', 'debug', 'examples', 'interop');

/**
 * Starts `dlm-server 127.0.0.1 0 ...args` and resolves once it prints its
 * address. `stop()` sends SIGTERM and waits for the exit.
 */
function startServer(args = []) {
  return start(serverPath, ['127.0.0.1', '0', ...args]);
}

/**
 * Starts the stand-in for the original JackrabbitDLM server (dlm-tests'
 * `jackrabbit-standin`: legacy framing, one request per connection, no
 * tokens, no wait queue, no revisions) on a free port.
 */
function startJackrabbit() {
  return start(jackrabbitPath, ['127.0.0.1:0']);
}

function start(binary, args) {
  if (!fs.existsSync(binary)) {
    throw new Error(`${binary} is missing: run scripts/test-wasm.sh (it builds it) first`);
  }
  const proc = spawn(binary, args, {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: proc.stdout });
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${binary} did not start: ${stderr}`));
    }, 10_000);
    lines.once('line', (line) => {
      clearTimeout(timer);
      const m = /listening on (.+):(\d+)$/.exec(line.trim());
      if (!m) {
        proc.kill('SIGKILL');
        reject(new Error(`unexpected first line ${JSON.stringify(line)}: ${stderr}`));
        return;
      }
      resolve({
        host: m[1],
        port: Number(m[2]),
        proc,
        exited,
        get log() {
          return stderr;
        },
        async stop(signal = 'SIGTERM') {
          if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
          return exited;
        },
      });
    });
    proc.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** A free loopback port (bound and released: good enough for tests). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Sends one raw request line to `port` and resolves with the answer line
 * (undefined if the connection closed first). */
function ask(port, line) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (v) => {
      socket.destroy();
      resolve(v);
    };
    socket.setTimeout(2000, () => done(undefined));
    socket.on('connect', () => socket.write(`${line}\n`));
    socket.on('data', (d) => {
      buf += d;
      const i = buf.indexOf('\n');
      if (i >= 0) done(buf.slice(0, i));
    });
    socket.on('error', () => done(undefined));
    socket.on('close', () => done(undefined));
  });
}

/** The number after `"key":` in a JSON text, or 0. */
function field(json, key) {
  const m = new RegExp(`"${key}":(\\d+)`).exec(json ?? '');
  return m ? Number(m[1]) : 0;
}

/**
 * Starts a cluster of `n` dlm-server members on free loopback ports
 * (`--node`, `--peers`, as tests/src/cluster.rs does).
 */
async function startCluster(n, extra = []) {
  // A free port is found by binding port 0 and closing it: another test
  // file (they run in parallel) may take it before the member binds it.
  // Such a start is tried again on other ports, a few times.
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await startClusterOnce(n, extra);
    } catch (err) {
      if (attempt >= 4 || !/Address already in use/.test(String(err?.message))) throw err;
    }
  }
}

async function startClusterOnce(n, extra) {
  const peers = new Map();
  for (let id = 1; id <= n; id += 1) peers.set(id, await freePort());
  const peersArg = [...peers].map(([id, port]) => `${id}=127.0.0.1:${port}`).join(',');
  const members = new Map();
  try {
    for (let id = 1; id <= n; id += 1) {
      members.set(id, await startServer(['--node', String(id), '--peers', peersArg, ...extra]));
    }
  } catch (err) {
    await Promise.all([...members.values()].map((m) => m.stop('SIGKILL')));
    throw err;
  }
  const cluster = {
    members,
    /** `host:port` of member `id`'s client port. */
    address: (id) => `127.0.0.1:${members.get(id).port}`,
    /** Every running member's client address, as a list. */
    list: () => [...members.keys()].map((id) => cluster.address(id)).join(','),
    /** Waits until every running member names the same running leader. */
    async leader() {
      return eventually(
        async () => {
          const seen = await Promise.all(
            [...members.values()].map(async (m) => field(await ask(m.port, '{"Action":"Cluster"}'), 'Leader')),
          );
          return seen.every((l) => l === seen[0]) && members.has(seen[0]) ? seen[0] : 0;
        },
        (l) => l !== 0,
        60_000,
      );
    },
    followers: (leader) => [...members.keys()].filter((id) => id !== leader),
    /** The waiters queued at member `id`, read on the member itself. */
    waiters: async (id) => field(await ask(members.get(id).port, '{"Action":"Stats"}'), 'AWait'),
    /** Kills member `id` with SIGKILL and waits for its exit. */
    async kill(id) {
      const m = members.get(id);
      members.delete(id);
      await m.stop('SIGKILL');
    },
    async stop() {
      await Promise.all([...members.values()].map((m) => m.stop('SIGKILL')));
      members.clear();
    },
  };
  return cluster;
}

/** A fresh empty directory. */
function tempDir(what) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `dlm-js-${what}-`));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves with the first value `fn` returns that `ok` accepts, polling
 * every 10 ms for up to `withinMs`; rejects with the last value otherwise. */
async function eventually(fn, ok, withinMs = 2000) {
  const start = performance.now();
  for (;;) {
    const v = await fn();
    if (ok(v)) return v;
    if (performance.now() - start > withinMs) {
      throw new Error(`condition not met within ${withinMs} ms: last ${JSON.stringify(v)}`);
    }
    await sleep(10);
  }
}

/** Resolves once the server has `n` waiters queued (its `AWait` gauge). */
function waiting(client, n) {
  return eventually(
    () => client.stats(),
    (stats) => stats.AWait === n,
    5000,
  );
}

module.exports = {
  startServer,
  startCluster,
  ask,
  startJackrabbit,
  tempDir,
  sleep,
  eventually,
  waiting,
  serverPath,
  interopPath,
  repo,
};
