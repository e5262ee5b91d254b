//! How each target is spoken to: dlm (plain or legacy framing), Redis with
//! the standard single-instance lock recipe, and the floor server.

use std::io;

use dlm_core::client::Client;
use dlm_core::protocol::{Framing, Response, Status};
use dlm_core::time::Ttl;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::net::tcp::OwnedReadHalf;

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
        }
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
    /// Appends `op`'s request to `out`. `script` is the unlock script's
    /// SHA for Redis.
    pub fn encode(self, op: Op<'_>, script: &str, out: &mut Vec<u8>) {
        match self {
            Self::Dlm
            | Self::DlmLegacy
            | Self::DlmBusyPoll
            | Self::DlmBaseline
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
                    | Op::Get { owner, .. } => owner,
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
                };
                // Writing to a Vec cannot fail.
                let _ = req.write(out);
            }
            Self::Redis => match op {
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
                        script.as_bytes(),
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
            },
        }
    }

    /// Reads one reply.
    pub async fn read_reply(
        self,
        r: &mut BufReader<OwnedReadHalf>,
        line: &mut Vec<u8>,
    ) -> io::Result<Outcome> {
        line.clear();
        let n = r.read_until(b'\n', line).await?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed",
            ));
        }
        match self {
            Self::Floor | Self::FloorEpoll => Ok(Outcome::Ok),
            Self::Dlm | Self::DlmLegacy | Self::DlmBusyPoll | Self::DlmBaseline => {
                Ok(match Response::parse(line) {
                    Ok((_, resp)) => match resp.status {
                        Status::Locked | Status::Unlocked | Status::Done => Outcome::Ok,
                        Status::NotOwner | Status::NotFound => Outcome::Refused,
                        _ => Outcome::Error,
                    },
                    Err(_) => Outcome::Error,
                })
            }
            Self::Redis => {
                let body = &line[1..line.len().saturating_sub(2)];
                match line.first() {
                    Some(b'+') => Ok(Outcome::Ok),
                    Some(b':') => Ok(if body == b"0" {
                        Outcome::Refused
                    } else {
                        Outcome::Ok
                    }),
                    Some(b'$') => {
                        let len: i64 = std::str::from_utf8(body)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(-1);
                        if len < 0 {
                            return Ok(Outcome::Refused);
                        }
                        let mut skip = vec![0u8; usize::try_from(len).unwrap_or(0) + 2];
                        r.read_exact(&mut skip).await?;
                        Ok(Outcome::Ok)
                    }
                    _ => Ok(Outcome::Error),
                }
            }
        }
    }
}
