//! The peer protocol: frames between members over TCP.
//!
//! Each member dials every other (its *links*, carrying what it sends) and
//! accepts their dials (carrying what they send). A dial starts with
//! `Hello { cluster, node, client }` (`client`: the address the member
//! serves clients on, possibly empty, so that every member can tell
//! clients where the others are); a connection that sends anything else first,
//! names another cluster or an unknown member, or sends a frame that does
//! not decode is closed, logged and counted, and nothing it sent is used.
//!
//! Frame: `len u32 | kind u8 | body` (little-endian), `len` counting kind
//! and body, at most [`MAX_FRAME`].
//!
//! With peer TLS (`--peer-tls-*`) the same frames travel inside mutual
//! TLS; a member that speaks the other way is refused before any frame.

use std::fmt;

/// The largest frame accepted (a raft message with entries, or a
/// snapshot): a peer cannot make us buffer more.
pub const MAX_FRAME: usize = 256 << 20;

/// The longest client address a `Hello` may carry.
pub const MAX_CLIENT_ADDRESS: usize = 255;

/// One frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The first frame of a dial.
    Hello {
        /// The cluster's ID.
        cluster: u64,
        /// The dialing member.
        node: u64,
        /// The address it serves clients on (`host:port`, UTF-8, at most
        /// [`MAX_CLIENT_ADDRESS`] bytes), or empty if it cannot say (it
        /// listens on every interface without `--advertise`).
        client: &'a [u8],
    },
    /// A raft message (protobuf).
    Raft(&'a [u8]),
    /// Bytes a client of the sending member sent, for the leader's session.
    Forward {
        /// The session (a client connection on the sending member).
        session: u64,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// The client of a relayed session closed its end.
    Eof {
        /// The session.
        session: u64,
    },
    /// Bytes the leader answers a relayed session with.
    Reply {
        /// The session.
        session: u64,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// The leader ended a relayed session: close it once written.
    Close {
        /// The session.
        session: u64,
    },
    /// The receiving member was removed from the cluster: it stops.
    Goodbye,
    /// What the leader must know of a relayed client before its first
    /// bytes: sent first, only for a client that came over TLS or over a
    /// plaintext port that refuses identities.
    Session {
        /// The session.
        session: u64,
        /// Requests carrying an identity are refused (a plaintext
        /// client with `--require-tls-for-identities`).
        identities_refused: bool,
        /// The identity its client certificate stands for (at most
        /// [`MAX_IDENTITY`] bytes), or empty.
        cert_identity: &'a [u8],
    },
}

/// The longest certificate identity a `Session` frame may carry (an
/// identity name's limit).
pub const MAX_IDENTITY: usize = 255;

mod kind {
    pub(super) const HELLO: u8 = 1;
    pub(super) const RAFT: u8 = 2;
    pub(super) const FORWARD: u8 = 3;
    pub(super) const EOF: u8 = 4;
    pub(super) const REPLY: u8 = 5;
    pub(super) const CLOSE: u8 = 6;
    pub(super) const GOODBYE: u8 = 7;
    pub(super) const SESSION: u8 = 8;
}

/// Why a peer's bytes were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadFrame {
    /// Over [`MAX_FRAME`].
    TooLarge(usize),
    /// An unknown kind, or a body of the wrong size.
    Malformed(&'static str),
}

impl fmt::Display for BadFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge(n) => write!(f, "frame of {n} bytes is over the limit"),
            Self::Malformed(what) => write!(f, "malformed frame: {what}"),
        }
    }
}

/// Appends `frame` to `out`.
pub fn encode(out: &mut Vec<u8>, frame: Frame<'_>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    match frame {
        Frame::Hello {
            cluster,
            node,
            client,
        } => {
            out.push(kind::HELLO);
            out.extend_from_slice(&cluster.to_le_bytes());
            out.extend_from_slice(&node.to_le_bytes());
            out.extend_from_slice(&client[..client.len().min(MAX_CLIENT_ADDRESS)]);
        }
        Frame::Raft(bytes) => {
            out.push(kind::RAFT);
            out.extend_from_slice(bytes);
        }
        Frame::Forward { session, bytes } => {
            out.push(kind::FORWARD);
            out.extend_from_slice(&session.to_le_bytes());
            out.extend_from_slice(bytes);
        }
        Frame::Eof { session } => {
            out.push(kind::EOF);
            out.extend_from_slice(&session.to_le_bytes());
        }
        Frame::Reply { session, bytes } => {
            out.push(kind::REPLY);
            out.extend_from_slice(&session.to_le_bytes());
            out.extend_from_slice(bytes);
        }
        Frame::Close { session } => {
            out.push(kind::CLOSE);
            out.extend_from_slice(&session.to_le_bytes());
        }
        Frame::Goodbye => out.push(kind::GOODBYE),
        Frame::Session {
            session,
            identities_refused,
            cert_identity,
        } => {
            out.push(kind::SESSION);
            out.extend_from_slice(&session.to_le_bytes());
            out.push(u8::from(identities_refused));
            out.extend_from_slice(&cert_identity[..cert_identity.len().min(MAX_IDENTITY)]);
        }
    }
    let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

fn u64_at(b: &[u8]) -> Option<u64> {
    let a: [u8; 8] = b.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(a))
}

/// Decodes one frame's kind and body.
fn decode(body: &[u8]) -> Result<Frame<'_>, BadFrame> {
    let (&k, rest) = body.split_first().ok_or(BadFrame::Malformed("empty"))?;
    let session = || u64_at(rest).ok_or(BadFrame::Malformed("short session"));
    Ok(match k {
        kind::HELLO if (16..=16 + MAX_CLIENT_ADDRESS).contains(&rest.len()) => Frame::Hello {
            cluster: u64_at(rest).ok_or(BadFrame::Malformed("hello"))?,
            node: u64_at(&rest[8..]).ok_or(BadFrame::Malformed("hello"))?,
            client: &rest[16..],
        },
        kind::RAFT => Frame::Raft(rest),
        kind::FORWARD => Frame::Forward {
            session: session()?,
            bytes: &rest[8..],
        },
        kind::EOF if rest.len() == 8 => Frame::Eof {
            session: session()?,
        },
        kind::REPLY => Frame::Reply {
            session: session()?,
            bytes: &rest[8..],
        },
        kind::CLOSE if rest.len() == 8 => Frame::Close {
            session: session()?,
        },
        kind::GOODBYE if rest.is_empty() => Frame::Goodbye,
        kind::SESSION if (9..=9 + MAX_IDENTITY).contains(&rest.len()) => Frame::Session {
            session: session()?,
            identities_refused: match rest[8] {
                0 => false,
                1 => true,
                _ => return Err(BadFrame::Malformed("session flags")),
            },
            cert_identity: &rest[9..],
        },
        _ => return Err(BadFrame::Malformed("unknown kind or size")),
    })
}

/// Splits a byte stream into frames; holds at most one frame's bytes
/// beyond what was taken.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
}

impl FrameReader {
    /// Bytes received.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` if incomplete, or why the
    /// stream is refused.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, BadFrame> {
        let avail = &self.buf[self.start..];
        let Some(len) = avail.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > MAX_FRAME {
            return Err(BadFrame::TooLarge(len));
        }
        if avail.len() < 4 + len {
            return Ok(None);
        }
        let body = self.start + 4..self.start + 4 + len;
        self.start += 4 + len;
        decode(&self.buf[body]).map(Some)
    }

    /// Drops what was taken, keeping a partial frame (call between turns).
    pub fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.is_empty() && self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new();
        }
    }

    /// Bytes held.
    pub fn held(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_split_anywhere() {
        let frames = [
            Frame::Hello {
                cluster: 7,
                node: 2,
                client: b"127.0.0.1:37372",
            },
            Frame::Hello {
                cluster: 7,
                node: 3,
                client: b"",
            },
            Frame::Raft(b"protobuf"),
            Frame::Forward {
                session: 9,
                bytes: b"{\"Action\":\"Version\"}\n",
            },
            Frame::Eof { session: 9 },
            Frame::Reply {
                session: 9,
                bytes: b"",
            },
            Frame::Close { session: 1 << 40 },
            Frame::Goodbye,
            Frame::Session {
                session: 4,
                identities_refused: false,
                cert_identity: b"alice",
            },
            Frame::Session {
                session: 5,
                identities_refused: true,
                cert_identity: b"",
            },
        ];
        let mut wire = Vec::new();
        for f in frames {
            encode(&mut wire, f);
        }
        for split in 0..wire.len() {
            let mut r = FrameReader::default();
            let mut got = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                r.push(part);
                while let Some(f) = r.next_frame().unwrap() {
                    got.push(format!("{f:?}"));
                }
                r.compact();
            }
            let want: Vec<String> = frames.iter().map(|f| format!("{f:?}")).collect();
            assert_eq!(got, want, "split at {split}");
        }
    }

    #[test]
    fn garbage_is_refused_not_buffered() {
        let mut r = FrameReader::default();
        r.push(b"GET / HTTP/1.1\r\n\r\n");
        assert!(matches!(r.next_frame(), Err(BadFrame::TooLarge(_))));
        let mut r = FrameReader::default();
        r.push(&[1, 0, 0, 0, 99]);
        assert!(matches!(r.next_frame(), Err(BadFrame::Malformed(_))));
        let mut r = FrameReader::default();
        r.push(&[3, 0, 0, 0, kind::HELLO, 1, 2]);
        assert!(r.next_frame().is_err());
        // A client address longer than the limit.
        let mut long = vec![kind::HELLO];
        long.extend_from_slice(&[0; 16]);
        long.extend_from_slice(&[b'a'; MAX_CLIENT_ADDRESS + 1]);
        let mut wire = u32::try_from(long.len()).unwrap().to_le_bytes().to_vec();
        wire.extend_from_slice(&long);
        let mut r = FrameReader::default();
        r.push(&wire);
        assert!(matches!(r.next_frame(), Err(BadFrame::Malformed(_))));
        // A session frame with unknown flags.
        let mut r = FrameReader::default();
        r.push(&[10, 0, 0, 0, kind::SESSION, 1, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert!(matches!(r.next_frame(), Err(BadFrame::Malformed(_))));
    }
}
