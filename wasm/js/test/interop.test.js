'use strict';
// Values written from Node read back byte for byte from the Rust client
// (crate `dlm`, through wasm/examples/interop.rs), and the reverse, with
// the table codec and with the sealed encoder under one key.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const { promisify } = require('node:util');
const dlm = require('..');
const { startServer, interopPath } = require('./helpers.js');

const run = promisify(execFile);
const hex = (bytes) => Buffer.from(bytes).toString('hex');

/** Stored text as it is, without decoding. */
const rawEncoder = {
  encode: (_name, bytes) => new TextDecoder().decode(bytes),
  decode: (_name, text) => new TextEncoder().encode(text),
};

const samples = {
  empty: new Uint8Array(0),
  text: new TextEncoder().encode('héllo, wörld ✓ {"json": true}\n'),
  every_byte: Uint8Array.from({ length: 256 }, (_, i) => i),
  longer: Uint8Array.from({ length: 4000 }, (_, i) => (i * 131 + 7) & 255),
};

describe('values interoperate with the Rust client', () => {
  let server;
  let addr;
  const id = `interop-${dlm.randomId()}`;

  before(async () => {
    assert.ok(fs.existsSync(interopPath), `${interopPath} is missing: cargo build -p dlm-wasm --example interop`);
    server = await startServer();
    addr = `${server.host}:${server.port}`;
  });

  after(() => server?.stop());

  const rust = async (...args) => (await run(interopPath, args)).stdout.trim();

  for (const sealed of [false, true]) {
    const kind = sealed ? 'sealed' : 'table';
    const key = dlm.generateKey();
    const keyArgs = sealed ? [hex(key)] : [];
    const encoder = sealed ? dlm.sealedEncoder(key) : dlm.tableEncoder;

    it(`${kind}: Node puts, Rust gets`, async () => {
      const client = await dlm.connect({ port: server.port, clientId: id, encoder });
      for (const [name, bytes] of Object.entries(samples)) {
        await client.put(`${kind}-n2r-${name}`, bytes, { ttlMs: 60_000 });
        assert.equal(await rust('get', addr, id, `${kind}-n2r-${name}`, ...keyArgs), hex(bytes), name);
      }
      await client.close();
    });

    it(`${kind}: Rust puts, Node gets`, async () => {
      const client = await dlm.connect({ port: server.port, clientId: id, encoder });
      for (const [name, bytes] of Object.entries(samples)) {
        assert.equal(await rust('put', addr, id, `${kind}-r2n-${name}`, hex(bytes), ...keyArgs), '1');
        const got = await client.get(`${kind}-r2n-${name}`);
        assert.deepEqual(got.value, bytes, name);
        assert.equal(got.revision, 1n);
      }
      await client.close();
    });
  }

  it('both store the very same table-encoded text', async () => {
    const raw = await dlm.connect({ port: server.port, clientId: id, encoder: rawEncoder });
    for (const [name, bytes] of Object.entries(samples)) {
      await rust('put', addr, id, `same-${name}`, hex(bytes));
      const stored = new TextDecoder().decode((await raw.get(`same-${name}`)).value);
      assert.equal(stored, dlm.tableEncoder.encode(name, bytes), name);
    }
    await raw.close();
  });

  it('a value sealed for one name does not open under another, from either side', async () => {
    const key = dlm.generateKey();
    const raw = await dlm.connect({ port: server.port, clientId: id, encoder: rawEncoder });
    const sealed = dlm.sealedEncoder(key).encode('moved-from', new Uint8Array([1, 2, 3]));
    await raw.put('moved-to', sealed, { ttlMs: 60_000 });
    await assert.rejects(rust('get', addr, id, 'moved-to', hex(key)), /Command failed/);
    const client = await dlm.connect({ port: server.port, clientId: id, encoder: dlm.sealedEncoder(key) });
    await assert.rejects(client.get('moved-to'), dlm.EncodingError);
    await Promise.all([raw.close(), client.close()]);
  });
});
