// Smoke test of the *packed* package: scripts/test-wasm.sh installs the
// tarball `npm pack` made from a tree without the generated glue (so only
// the package's prepack can have built its WebAssembly) into an empty
// folder, copies this file there and runs it, so it sees only what a user
// who installs the package gets.
// DLM_SERVER is the dlm-server binary to start.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import assert from 'node:assert/strict';
import { connect, sealedEncoder, generateKey, TimeoutError, DlmError } from 'dlm-client';

const require = createRequire(import.meta.url);
const cjs = require('dlm-client');
assert.equal(cjs.connect, connect, 'ESM and CommonJS see the same module');
assert.match(require.resolve('dlm-client'), /node_modules[\\/]dlm-client[\\/]index\.js$/);
const meta = require('dlm-client/package.json');
assert.equal(meta.private, undefined, 'publishable');
assert.equal(meta.engines.node, '>=20');
for (const file of [meta.main, meta.types, 'pkg/dlm_wasm_bg.wasm']) {
  assert.ok(existsSync(new URL(`node_modules/dlm-client/${file}`, import.meta.url)), `${file} is installed`);
}
const esm = await import('dlm-client');
assert.deepEqual(
  Object.keys(esm).filter((k) => k !== 'default').sort(),
  Object.keys(cjs).sort(),
  'every export is also a named ESM export',
);

const server = spawn(process.env.DLM_SERVER, ['127.0.0.1', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
const { value: line } = await createInterface({ input: server.stdout })[Symbol.asyncIterator]().next();
const port = Number(/:(\d+)$/.exec(line.trim())[1]);

let passed = 0;
async function check(name, fn) {
  await fn();
  passed += 1;
  console.log(`ok - ${name}`);
}

try {
  const a = await connect({ port });
  const b = await connect({ port, encoder: sealedEncoder(generateKey()) });
  await check('version', async () => assert.match(await a.version(), /JackrabbitDLM/));
  await check('lock, wait, unlock', async () => {
    const lock = await a.lock('smoke', { ttlMs: 5000 });
    await assert.rejects(b.lock('smoke', { waitMs: 50 }), (e) => e instanceof TimeoutError && e instanceof DlmError);
    await lock.unlock();
    const mine = await b.lock('smoke', { waitMs: 1000 });
    assert.ok(mine.token > lock.token);
    await mine.unlock();
  });
  await check('put and get, table and sealed', async () => {
    assert.equal(await a.put('smoke', 'plain', { ttlMs: 5000 }), 1n);
    assert.equal(new TextDecoder().decode((await a.get('smoke')).value), 'plain');
    await b.put('smoke-sealed', 'secret', { ttlMs: 5000 });
    assert.equal(new TextDecoder().decode((await b.get('smoke-sealed')).value), 'secret');
  });
  await Promise.all([a.close(), b.close()]);
} finally {
  server.kill('SIGTERM');
}
console.log(`smoke: ${passed} passed, 0 failed`);
