'use strict';
// The Node client over TLS against a real dlm-server, with certificates
// made by `dlm-server tls new`: trust, name checking, client certificates,
// and the typed errors that say why a handshake failed (never retried).

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const dlm = require('..');
const { startServer, serverPath, tempDir, eventually } = require('./helpers.js');

/** A development CA, server certificate and client certificates. */
function pki(clients = []) {
  const dir = path.join(tempDir('tls'), 'pki');
  execFileSync(serverPath, ['tls', 'new', dir, ...clients.flatMap((c) => ['--client', c])]);
  return dir;
}

function tlsServer(dir, cert = 'server.pem', key = 'server.key', extra = []) {
  return startServer(['--tls-cert', path.join(dir, cert), '--tls-key', path.join(dir, key), ...extra]);
}

/** Resolves with the rejection of `promise`, which must be a TlsError. */
async function refusal(promise) {
  const err = await promise.then(
    () => assert.fail('the handshake was accepted'),
    (e) => e,
  );
  assert.ok(err instanceof dlm.TlsError, `${err?.name}: ${err?.message}`);
  assert.ok(err instanceof dlm.UnavailableError);
  assert.equal(err.code, 'Unavailable');
  return err;
}

describe('TLS', () => {
  let dir;
  let server;
  before(async () => {
    dir = pki(['alice']);
    server = await tlsServer(dir);
  });
  after(async () => {
    await server?.stop();
  });

  const connect = (tls, options = {}) => dlm.connect({ port: server.port, tls, ...options });

  it('works with the CA file, checking the name given or the address', async () => {
    const byName = await connect({ caFile: path.join(dir, 'ca.pem'), serverName: 'localhost' });
    const lock = await byName.lock('tls', { ttlMs: 5000 });
    await byName.put('k', 'over tls', { ttlMs: 5000 });
    assert.equal(new TextDecoder().decode((await byName.get('k')).value), 'over tls');
    // Without a name, the address connected to (127.0.0.1) is checked.
    const byAddress = await connect({ ca: fs.readFileSync(path.join(dir, 'ca.pem')) });
    await assert.rejects(byAddress.lock('tls'), dlm.NotOwnerError);
    await lock.unlock();
    assert.ok((await byAddress.stats()).TlsHandshake >= 2);
    await Promise.all([byName.close(), byAddress.close()]);
  });

  it('refuses a certificate from an unknown CA, once, saying so', async () => {
    const other = pki();
    const watcher = await connect({ caFile: path.join(dir, 'ca.pem') });
    const failedBefore = (await watcher.stats()).TlsFailed;
    // Attempts and time to spare: a refused certificate is not retried.
    const err = await refusal(connect({ caFile: path.join(other, 'ca.pem') }, { connectAttempts: 5 }));
    assert.equal(err.reason, 'unknown-ca');
    assert.match(err.message, /unknown CA/);
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${server.port}`));
    await eventually(
      async () => (await watcher.stats()).TlsFailed,
      (n) => n >= failedBefore + 1,
    );
    assert.equal((await watcher.stats()).TlsFailed, failedBefore + 1, 'one handshake, not retried');
    // No CA given: Node's bundled roots, which do not know this one either.
    assert.equal((await refusal(connect(true))).reason, 'unknown-ca');
    await watcher.close();
  });

  it('refuses a certificate for another name, saying which', async () => {
    const err = await refusal(connect({ caFile: path.join(dir, 'ca.pem'), serverName: 'db.example' }));
    assert.equal(err.reason, 'name-mismatch');
    assert.match(err.message, /name mismatch/);
    assert.match(err.message, /db\.example/);
  });

  it('refuses an expired certificate, saying so', async () => {
    const work = tempDir('expired');
    const key = path.join(work, 'expired.key');
    const csr = path.join(work, 'expired.csr');
    const cert = path.join(work, 'expired.pem');
    execFileSync('openssl', [
      'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', key, '-subj', '/CN=localhost', '-out', csr,
    ], { stdio: 'ignore' });
    // An X.509 v3 certificate (its names in extensions), valid until a
    // day before it was made.
    const ext = path.join(work, 'ext.cnf');
    fs.writeFileSync(ext, 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
    execFileSync('openssl', [
      'x509', '-req', '-in', csr, '-CA', path.join(dir, 'ca.pem'), '-CAkey', path.join(dir, 'ca.key'),
      '-extfile', ext, '-days', '-1', '-out', cert,
    ], { stdio: 'ignore' });
    const expired = await startServer(['--tls-cert', cert, '--tls-key', key]);
    try {
      const err = await refusal(
        dlm.connect({ port: expired.port, tls: { caFile: path.join(dir, 'ca.pem'), serverName: 'localhost' } }),
      );
      assert.equal(err.reason, 'expired');
      assert.match(err.message, /expired/);
    } finally {
      await expired.stop();
      fs.rmSync(work, { recursive: true, force: true });
    }
  });

  it('presents a client certificate to a server that requires one', async () => {
    const ca = path.join(dir, 'ca.pem');
    const strict = await tlsServer(dir, 'server.pem', 'server.key', ['--tls-client-ca', ca]);
    try {
      const alice = await dlm.connect({
        port: strict.port,
        tls: { caFile: ca, certFile: path.join(dir, 'alice.pem'), keyFile: path.join(dir, 'alice.key') },
      });
      const lock = await alice.lock('mine', { ttlMs: 5000 });
      await lock.unlock();
      await alice.close();
      // Without one, the server refuses, and the error says so (with TLS
      // 1.3 the client hears it at its first read).
      const err = await refusal(
        dlm.connect({ port: strict.port, tls: { caFile: ca } }).then((c) => c.version().finally(() => c.close())),
      );
      assert.equal(err.reason, 'refused');
      assert.match(err.message, /refused/);
      // A certificate without its key is the caller's mistake.
      await assert.rejects(
        dlm.connect({ port: strict.port, tls: { caFile: ca, certFile: path.join(dir, 'alice.pem') } }),
        dlm.InvalidArgumentError,
      );
    } finally {
      await strict.stop();
    }
  });

  it('a plaintext port says so', async () => {
    const plain = await startServer();
    try {
      const err = await refusal(dlm.connect({ port: plain.port, tls: { caFile: path.join(dir, 'ca.pem') } }));
      assert.equal(err.reason, 'refused');
    } finally {
      await plain.stop();
    }
  });
});
