// Type-checked (never run) by `npm run typecheck`: a small program using
// every declaration of index.d.ts the way a TypeScript user would.
import {
  connect,
  sealedEncoder,
  generateKey,
  randomId,
  tableEncoder,
  DEFAULT_PORT,
  DEFAULT_TTL_MS,
  DlmError,
  ConflictError,
  LockLostError,
  NotOwnerError,
  NotFoundError,
  TimeoutError,
  CancelledError,
  BadRequestError,
  NoMemoryError,
  UnavailableError,
  TlsError,
  ProtocolError,
  EncodingError,
  InvalidArgumentError,
  type Client,
  type Encoder,
  type ErrorCode,
  type Lock,
  type MultiLock,
  type LockState,
  type Stats,
  type TlsReason,
  type Value,
  type Session,
  type SessionLock,
  type Watch,
  type WatchEvent,
} from 'dlm-client';

const reversed: Encoder = {
  encode: (_name: string, bytes: Uint8Array) => Buffer.from(bytes).toString('base64'),
  decode: (_name: string, text: string) => new Uint8Array(Buffer.from(text, 'base64')),
};

export async function example(): Promise<number> {
  const key: Uint8Array = generateKey();
  const id: string = randomId();
  await using client: Client = await connect({
    host: '127.0.0.1',
    port: DEFAULT_PORT,
    clientId: id,
    timeoutMs: 5000,
    encoder: sealedEncoder(key),
  });
  const other = await connect({ encoder: reversed, legacy: false, identity: { name: 'n', secret: 's' } });
  await other.close();
  const cluster = await connect({
    servers: ['10.0.0.1:37373', '10.0.0.2:37373'],
    connectAttempts: 2,
    tls: { caFile: 'ca.pem', certFile: 'me.pem', keyFile: 'me.key', serverName: 'dlm.internal' },
  });
  const inUse: string = cluster.server;
  const known: string[] = cluster.servers;
  await (await connect({ servers: 'a:1,b:2', tls: true })).close();
  await cluster.close();
  try {
    await connect({ tls: { ca: 'PEM' } });
  } catch (err) {
    if (err instanceof TlsError) {
      const reason: TlsReason = err.reason;
      void reason;
    }
  }
  void [inUse, known];

  const controller = new AbortController();
  {
    await using lock: Lock = await client.lock('jobs', {
      ttlMs: DEFAULT_TTL_MS,
      waitMs: 10_000,
      signal: controller.signal,
      autoRenew: true,
    });
    const token: bigint = lock.token;
    const left: number = lock.expiresInMs;
    const lost: boolean = lock.lost;
    const signal: AbortSignal = lock.signal;
    await lock.extend(60_000);
    await lock.extend();
    void [token, left, lost, signal, lock.name];
  }

  const maybe: Lock | null = await client.tryLock('jobs', { ttlMs: 1000 });
  await maybe?.unlock();

  const n: number = await client.withLock('jobs', { ttlMs: 1000 }, async (signal, lock) => {
    signal.throwIfAborted();
    return Number(lock.token % 10n);
  });
  const s: string = await client.withLock('jobs', () => 'sync result');

  const state: LockState = await client.testLock('jobs');
  if (state.state === 'mine') {
    const t: bigint = state.token;
    void t;
  } else if (state.state === 'taken') {
    const ms: number | undefined = state.ttlMs;
    void ms;
  }
  const released: boolean = await client.unlock('jobs', { token: 5n });

  const rev: bigint = await client.put('config', 'value', { ttlMs: 60_000 });
  await client.put('config', new Uint8Array([1, 2]), { ttlMs: 60_000, revision: rev });
  await client.put('config', 'v', { ttlMs: 1, revision: 0 });
  const value: Value | null = await client.get('config');
  if (value) {
    const bytes: Uint8Array = value.value;
    const r: bigint = value.revision;
    void [bytes, r, value.ttlMs];
  }
  await client.put('shared', 'v', { ttlMs: 1000, readers: 'any' });
  await client.put('shared', 'v', { ttlMs: 1000, readers: ['alice', 'bob'] });
  const sharer: string | undefined = (await client.get('shared'))?.owner;

  const all: MultiLock = await client.lockAll(['a', 'b'], { ttlMs: 1000, waitMs: 500, autoRenew: true });
  const tokens: bigint[] = all.tokens;
  const allNames: string[] = all.names;
  const each: Lock[] = all.locks;
  const anyLost: boolean = all.lost;
  all.signal.throwIfAborted();
  await all.release();
  await all.unlock();
  const both: number = await client.withLockAll(['a', 'b'], { ttlMs: 1000 }, async (signal, held) => {
    signal.throwIfAborted();
    return held.tokens.length;
  });
  const bothSync: string = await client.withLockAll(['a', 'b'], () => 'sync');
  void [sharer, tokens, allNames, each, anyLost, both, bothSync];

  const erased: boolean = await client.erase('config');
  const version: string = await client.version();
  const stats: Stats = await client.stats();
  const waiting: number | undefined = stats['AWait'];

  try {
    await client.put('config', 'x', { ttlMs: 1000, revision: 1n });
  } catch (e) {
    if (e instanceof ConflictError) {
      const current: bigint = e.revision;
      const code: 'Conflict' = e.code;
      void [current, code];
    } else if (e instanceof DlmError) {
      const code: ErrorCode = e.code;
      void code;
    }
  }
  const errors: DlmError[] = [
    new NotOwnerError(),
    new NotFoundError(),
    new TimeoutError(),
    new LockLostError(),
    new CancelledError('aborted', { cause: 'reason' }),
    new BadRequestError(),
    new NoMemoryError(),
    new UnavailableError(),
    new TlsError('handshake failed', 'unknown-ca'),
    new ProtocolError(),
    new EncodingError(),
    new InvalidArgumentError(),
    new ConflictError('m', 2n),
  ];
  const codec: Encoder = tableEncoder;

  {
    await using session: Session = await client.session({ ttlMs: 10_000 });
    const bound: SessionLock = await session.lock('jobs', { lockDelayMs: 5000, waitMs: 100, ttlMs: 60_000 });
    const boundToken: bigint = bound.token;
    await bound.unlock();
    await session.lock('sem', { permits: 3 });
    await session.lock('rw', { mode: 'read' });
    const why: LockLostError | undefined = await session.ended;
    const lostSignal: AbortSignal = session.signal;
    const viaSession: number = await session.withLock('jobs', async (signal, held) => {
      signal.throwIfAborted();
      return Number(held.token % 10n);
    });
    // @ts-expect-error a mode is 'read' or 'write'
    await session.lock('rw', { mode: 'shared' });
    void [boundToken, why, lostSignal, viaSession, session.lost, session.closed, session.ttlMs];
  }
  {
    const watch: Watch = client.watch({ prefix: 'jobs/', since: 41n, signal: controller.signal });
    await watch.start();
    for await (const ev of watch) {
      const e: WatchEvent = ev;
      const revision: bigint = e.revision;
      const what: 'Granted' | 'Released' | 'Expired' | 'Put' | 'Erased' = e.event;
      const bytes: Uint8Array | undefined = e.value;
      void [revision, what, bytes, e.kind, e.token, e.dataRevision, e.owner, e.permits, e.mode];
      break;
    }
    const from: bigint | undefined = watch.revision;
    await client.watch({ name: 'jobs/1', since: 3 }).close();
    try {
      await watch.next();
    } catch (e) {
      if (e instanceof UnavailableError) {
        const resume: bigint | undefined = e.revision;
        void resume;
      }
    }
    void from;
  }

  // @ts-expect-error put needs ttlMs
  await client.put('config', 'x', {});
  // @ts-expect-error values are bytes or strings
  await client.put('config', 42, { ttlMs: 1 });
  // @ts-expect-error readers are 'any' or identity names
  await client.put('config', 'x', { ttlMs: 1, readers: 'everyone' });
  // @ts-expect-error lockAll takes an array of names
  await client.lockAll('a');
  // @ts-expect-error tryLock never waits
  await client.tryLock('jobs', { waitMs: 5 });
  // @ts-expect-error tokens are read-only
  maybe!.token = 1n;
  // @ts-expect-error a Lock comes from client.lock, not a constructor
  new (await import('dlm-client')).Lock();

  void [n, s, released, erased, version, waiting, errors, codec];
  return n;
}
