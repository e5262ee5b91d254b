//! How each target is spoken to: dlm (plain or legacy framing), Redis with
//! the standard single-instance lock recipe (each also over TLS), and the
//! floor server. For the semaphore and read/write rows, Redis runs the
//! usual recipes as Lua scripts written here: a semaphore as a sorted set
//! of holders scored by their expiry (with a counter for a fencing token),
//! a read/write lock as a hash of holders with its mode.

use std::io;

use dlm_core::client::Client;
use dlm_core::protocol::{Framing, Response, Shape, Status, Token};
use dlm_core::time::Ttl;
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _};

/// What a load is aimed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// dlm-server, plain JSON lines.
    Dlm,
    /// dlm-server, JackrabbitDLM's table-encoded lines.
    DlmLegacy,
    /// dlm-server started with `--busy-poll 100us`, plain JSON.
    DlmBusyPoll,
    /// Another dlm-server binary (`--baseline`, e.g. the last release),
    /// plain JSON: before/after figures in one run.
    DlmBaseline,
    /// Redis: `SET k owner NX PX ttl`, unlock by compare-and-delete script.
    Redis,
    /// The floor: a trivial tokio server that answers every line with a
    /// constant.
    Floor,
    /// The same trivial server as a single-threaded epoll loop.
    FloorEpoll,
    /// dlm-server with `--tls-cert`/`--tls-key`, plain JSON over TLS.
    DlmTls,
    /// Redis on its `--tls-port`, the same recipe as [`Target::Redis`].
    RedisTls,
}

impl Target {
    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dlm => "dlm",
            Self::DlmLegacy => "dlm-legacy",
            Self::DlmBusyPoll => "dlm busy-poll",
            Self::DlmBaseline => "dlm baseline",
            Self::Redis => "redis",
            Self::Floor => "floor",
            Self::FloorEpoll => "floor (epoll)",
            Self::DlmTls => "dlm tls",
            Self::RedisTls => "redis tls",
        }
    }

    /// Whether it speaks RESP (Redis) rather than dlm's lines.
    pub fn is_redis(self) -> bool {
        matches!(self, Self::Redis | Self::RedisTls)
    }

    /// Whether its connections are TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Self::DlmTls | Self::RedisTls)
    }
}

/// One request.
#[derive(Clone, Copy, Debug)]
pub enum Op<'a> {
    /// Acquire `name` for `owner`, optionally queueing for `wait_ms`.
    Lock {
        /// Lock name.
        name: &'a str,
        /// Owner ID.
        owner: &'a str,
        /// TTL in ms.
        ttl_ms: u64,
        /// Queue this long (dlm only).
        wait_ms: Option<u64>,
    },
    /// Release `name` held by `owner`.
    Unlock {
        /// Lock name.
        name: &'a str,
        /// Owner ID.
        owner: &'a str,
    },
    /// Store `value`.
    Put {
        /// Key.
        name: &'a str,
        /// Owner ID.
        owner: &'a str,
        /// Value.
        value: &'a str,
    },
    /// Read a value.
    Get {
        /// Key.
        name: &'a str,
        /// Owner ID.
        owner: &'a str,
    },
    /// Take one hold of a semaphore or a side of a read/write lock.
    Acquire {
        /// Its name.
        name: &'a str,
        /// Owner ID (a holder's member or field in Redis).
        owner: &'a str,
        /// A permit, a read or a write.
        shape: Shape,
        /// TTL in ms.
        ttl_ms: u64,
        /// Queue this long (dlm only; Redis clients poll).
        wait_ms: Option<u64>,
    },
    /// Give back the hold `token` (dlm) of `owner` (Redis).
    Release {
        /// Its name.
        name: &'a str,
        /// Owner ID.
        owner: &'a str,
        /// A semaphore (not a read/write lock), for Redis.
        semaphore: bool,
        /// The grant's fencing token (dlm).
        token: Token,
    },
}

/// How a request went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Locked, unlocked, stored, read.
    Ok,
    /// The lock was held by another (`NX` failed, `NotOwner`), or nothing to read.
    Refused,
    /// Anything else.
    Error,
}

/// The SHA-1 of [`UNLOCK_SCRIPT`], as `SCRIPT LOAD` returns it.
pub const UNLOCK_SCRIPT: &str = "if redis.call(\"get\",KEYS[1]) == ARGV[1] then return redis.call(\"del\",KEYS[1]) else return 0 end";

/// Redis semaphore, acquire: `KEYS[1]` the holders (a sorted set, each
/// scored by when it expires, in ms of the server's clock), `KEYS[2]` a
/// counter for fencing tokens; `ARGV` permits, TTL in ms, holder. Drops
/// expired holders, then admits this one if fewer than `permits` remain.
/// Returns its token, or 0 if the semaphore is full.
pub const SEM_ACQUIRE_SCRIPT: &str = "\
local t = redis.call('TIME') \
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) \
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) \
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end \
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3]) \
redis.call('PEXPIRE', KEYS[1], ARGV[2]) \
return redis.call('INCR', KEYS[2])";

/// Redis read/write lock, acquire: `KEYS[1]` a hash of `mode` (`read` or
/// `write`) and one field per holder (its count); `ARGV` the mode wanted,
/// TTL in ms (of the whole lock, renewed by every acquisition), holder.
/// A read joins readers; a write needs the lock free. Returns 1, or 0 if
/// refused.
pub const RW_ACQUIRE_SCRIPT: &str = "\
local mode = redis.call('HGET', KEYS[1], 'mode') \
if mode == false or (mode == 'read' and ARGV[1] == 'read') then \
  redis.call('HSET', KEYS[1], 'mode', ARGV[1]) \
  redis.call('HINCRBY', KEYS[1], ARGV[3], 1) \
  redis.call('PEXPIRE', KEYS[1], ARGV[2]) \
  return 1 \
end \
return 0";

/// Redis read/write lock, release: `KEYS[1]` the hash, `ARGV[1]` the
/// holder. Drops one hold of it; the lock goes once nobody holds it.
/// Returns 1, or 0 if the holder held nothing.
pub const RW_RELEASE_SCRIPT: &str = "\
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end \
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end \
if redis.call('HLEN', KEYS[1]) <= 1 then redis.call('DEL', KEYS[1]) end \
return 1";

/// The SHA-1s of the scripts, as `SCRIPT LOAD` returned them.
#[derive(Clone, Debug, Default)]
pub struct Scripts {
    /// [`UNLOCK_SCRIPT`].
    pub unlock: String,
    /// [`SEM_ACQUIRE_SCRIPT`].
    pub sem_acquire: String,
    /// [`RW_ACQUIRE_SCRIPT`].
    pub rw_acquire: String,
    /// [`RW_RELEASE_SCRIPT`].
    pub rw_release: String,
}

fn bulk(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(s.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(s);
    out.extend_from_slice(b"\r\n");
}

fn array(out: &mut Vec<u8>, items: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(items.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for i in items {
        bulk(out, i);
    }
}

/// Appends a RESP command.
pub fn redis_command(out: &mut Vec<u8>, items: &[&[u8]]) {
    array(out, items);
}

impl Target {
    /// Appends `op`'s request to `out`. `scripts` are the Lua scripts'
    /// SHAs for Redis.
    pub fn encode(self, op: Op<'_>, scripts: &Scripts, out: &mut Vec<u8>) {
        match self {
            Self::Dlm
            | Self::DlmLegacy
            | Self::DlmBusyPoll
            | Self::DlmBaseline
            | Self::DlmTls
            | Self::Floor
            | Self::FloorEpoll => {
                let framing = if self == Self::DlmLegacy {
                    Framing::Legacy
                } else {
                    Framing::Plain
                };
                let owner = match op {
                    Op::Lock { owner, .. }
                    | Op::Unlock { owner, .. }
                    | Op::Put { owner, .. }
                    | Op::Get { owner, .. }
                    | Op::Acquire { owner, .. }
                    | Op::Release { owner, .. } => owner,
                };
                let c = Client::new(owner).with_framing(framing);
                let req = match op {
                    Op::Lock {
                        name,
                        ttl_ms,
                        wait_ms: Some(w),
                        ..
                    } => c.lock_wait(name, Ttl::from_millis(ttl_ms), Ttl::from_millis(w)),
                    Op::Lock { name, ttl_ms, .. } => c.lock(name, Ttl::from_millis(ttl_ms)),
                    Op::Unlock { name, .. } => c.unlock(name, None),
                    Op::Put { name, value, .. } => c.put(name, Ttl::from_secs(300), value, None),
                    Op::Get { name, .. } => c.get(name),
                    Op::Acquire {
                        name,
                        shape,
                        ttl_ms,
                        wait_ms,
                        ..
                    } => c.acquire(
                        name,
                        shape,
                        Ttl::from_millis(ttl_ms),
                        wait_ms.map(Ttl::from_millis),
                    ),
                    Op::Release { name, token, .. } => c.unlock(name, Some(token)),
                };
                // Writing to a Vec cannot fail.
                let _ = req.write(out);
            }
            Self::Redis | Self::RedisTls => match op {
                Op::Lock {
                    name,
                    owner,
                    ttl_ms,
                    ..
                } => {
                    let ttl = ttl_ms.to_string();
                    array(
                        out,
                        &[
                            b"SET",
                            name.as_bytes(),
                            owner.as_bytes(),
                            b"NX",
                            b"PX",
                            ttl.as_bytes(),
                        ],
                    );
                }
                Op::Unlock { name, owner } => array(
                    out,
                    &[
                        b"EVALSHA",
                        scripts.unlock.as_bytes(),
                        b"1",
                        name.as_bytes(),
                        owner.as_bytes(),
                    ],
                ),
                Op::Put { name, value, .. } => array(
                    out,
                    &[b"SET", name.as_bytes(), value.as_bytes(), b"PX", b"300000"],
                ),
                Op::Get { name, .. } => array(out, &[b"GET", name.as_bytes()]),
                Op::Acquire {
                    name,
                    owner,
                    shape: Shape::Semaphore { permits },
                    ttl_ms,
                    ..
                } => {
                    let (permits, ttl) = (permits.to_string(), ttl_ms.to_string());
                    let counter = format!("{name}:token");
                    array(
                        out,
                        &[
                            b"EVALSHA",
                            scripts.sem_acquire.as_bytes(),
                            b"2",
                            name.as_bytes(),
                            counter.as_bytes(),
                            permits.as_bytes(),
                            ttl.as_bytes(),
                            owner.as_bytes(),
                        ],
                    );
                }
                Op::Acquire {
                    name,
                    owner,
                    shape,
                    ttl_ms,
                    ..
                } => {
                    let ttl = ttl_ms.to_string();
                    let mode: &[u8] = if shape == Shape::Write {
                        b"write"
                    } else {
                        b"read"
                    };
                    array(
                        out,
                        &[
                            b"EVALSHA",
                            scripts.rw_acquire.as_bytes(),
                            b"1",
                            name.as_bytes(),
                            mode,
                            ttl.as_bytes(),
                            owner.as_bytes(),
                        ],
                    );
                }
                Op::Release {
                    name,
                    owner,
                    semaphore: true,
                    ..
                } => array(out, &[b"ZREM", name.as_bytes(), owner.as_bytes()]),
                Op::Release { name, owner, .. } => array(
                    out,
                    &[
                        b"EVALSHA",
                        scripts.rw_release.as_bytes(),
                        b"1",
                        name.as_bytes(),
                        owner.as_bytes(),
                    ],
                ),
            },
        }
    }

    /// Reads one reply, and the fencing token of a dlm grant.
    pub async fn read_reply<R: AsyncBufRead + AsyncRead + Unpin>(
        self,
        r: &mut R,
        line: &mut Vec<u8>,
    ) -> io::Result<(Outcome, Option<Token>)> {
        line.clear();
        let n = r.read_until(b'\n', line).await?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed",
            ));
        }
        match self {
            Self::Floor | Self::FloorEpoll => Ok((Outcome::Ok, None)),
            Self::Dlm | Self::DlmLegacy | Self::DlmBusyPoll | Self::DlmBaseline | Self::DlmTls => {
                Ok(match Response::parse(line) {
                    Ok((_, resp)) => (
                        match resp.status {
                            Status::Locked | Status::Unlocked | Status::Done => Outcome::Ok,
                            Status::NotOwner | Status::NotFound => Outcome::Refused,
                            _ => Outcome::Error,
                        },
                        resp.token,
                    ),
                    Err(_) => (Outcome::Error, None),
                })
            }
            Self::Redis | Self::RedisTls => {
                let body = &line[1..line.len().saturating_sub(2)];
                let outcome = match line.first() {
                    Some(b'+') => Outcome::Ok,
                    Some(b':') => {
                        if body == b"0" {
                            Outcome::Refused
                        } else {
                            Outcome::Ok
                        }
                    }
                    Some(b'$') => {
                        let len: i64 = std::str::from_utf8(body)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(-1);
                        if len < 0 {
                            return Ok((Outcome::Refused, None));
                        }
                        let mut skip = vec![0u8; usize::try_from(len).unwrap_or(0) + 2];
                        r.read_exact(&mut skip).await?;
                        Outcome::Ok
                    }
                    _ => Outcome::Error,
                };
                Ok((outcome, None))
            }
        }
    }
}
