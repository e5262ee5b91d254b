//! What goes into the replicated log: the codec of our entries inside
//! raft's `Entry.data`.
//!
//! Every member applies the same entries in the same order to the same
//! engine; an entry therefore carries everything the engine needs (the
//! request, who verified as whom, and the time), and nothing a member must
//! keep to itself: **no identity secret ever enters the log** (the member
//! that verified a request logs the identity's number, and the request
//! re-serialized without `Name`/`Identity`).
//!
//! Layout (little-endian): `version u8 | kind u8 | stamp u64 | body`.
//! Decoding checks every length and never panics: a damaged entry is an
//! error, and the member stops rather than apply it.

use std::fmt;

use dlm_core::limits::Limits;
use dlm_core::time::Ttl;

const VERSION: u8 = 1;

/// A request as logged: where its answer goes, as whom it was verified, and
/// the request line without credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged<'a> {
    /// The member whose client sent it (it writes the answer).
    pub node: u64,
    /// The waiter tag of its connection on that member (slot, generation,
    /// framing).
    pub tag: u64,
    /// The answer's place among that connection's answers.
    pub seq: u64,
    /// The identity number the member verified (0: anonymous).
    pub ident: u16,
    /// The request as a plain JSON line, without credentials.
    pub line: &'a [u8],
}

/// The engine settings every member must share, fixed by the cluster's
/// first entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bootstrap {
    /// The cluster's ID: peers that name another are refused.
    pub cluster_id: u64,
    /// The key of the engine's name hash.
    pub hash_key: [u64; 2],
    /// Fencing tokens start above this.
    pub first_token: u64,
    /// Protocol limits.
    pub limits: Limits,
    /// The engine's memory budget.
    pub memory_budget: u64,
    /// The engine's deadline slack (milliseconds; see
    /// [`dlm_core::engine::Config::deadline_slack`]). Expiry is replicated
    /// state, so every member must run one value: it comes from the log,
    /// never from the member's own build, so that members of different
    /// versions (a rolling upgrade) still expire alike.
    pub deadline_slack_ms: u64,
}

/// The slack of a cluster whose first entry predates the field (its
/// members all ran this value then): 1 ms of the leader's clock truncation
/// and 200 ms for jumps of its monotonic clock. Fixed for ever, whatever
/// later builds choose for new clusters.
pub const LEGACY_DEADLINE_SLACK_MS: u64 = 201;

/// One decoded entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    /// Client requests, in the order the leader received them.
    Requests(Vec<Logged<'a>>),
    /// Time passes (the leader proposes it when something falls due).
    Advance,
    /// A queued request leaves its queue (its connection closed).
    Cancel {
        /// The engine's waiter number.
        waiter: u64,
    },
    /// A grant could not be delivered: take it back.
    Orphaned {
        /// The lock.
        name: &'a str,
        /// The grant's token.
        token: u64,
    },
    /// A connection closed: its session ends (its grants are released, or
    /// closed for their lock-delay).
    SessionEnd {
        /// The engine's name for the connection (`dispatch::conn_id`).
        conn: u64,
    },
    /// A new leader's first entry: every queued request leaves its queue
    /// (their connections were on the old leader).
    DropWaiters,
    /// The cluster's first entry: the shared engine settings.
    Bootstrap(Bootstrap),
    /// An identity becomes known (or changes its data limit).
    RegisterIdentity {
        /// Its name.
        name: &'a str,
        /// Its `MaxSize`.
        max_data: u64,
    },
}

/// An entry and its time stamp (cluster milliseconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamped<'a> {
    /// When the leader made it, on the cluster clock.
    pub stamp: u64,
    /// What it says.
    pub entry: Entry<'a>,
}

/// A log entry that does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Damaged(pub &'static str);

impl fmt::Display for Damaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "damaged log entry: {}", self.0)
    }
}

impl std::error::Error for Damaged {}

mod kind {
    pub(super) const REQUESTS: u8 = 1;
    pub(super) const ADVANCE: u8 = 2;
    pub(super) const CANCEL: u8 = 3;
    pub(super) const ORPHANED: u8 = 4;
    pub(super) const DROP_WAITERS: u8 = 5;
    pub(super) const BOOTSTRAP: u8 = 6;
    pub(super) const REGISTER_IDENTITY: u8 = 7;
    pub(super) const SESSION_END: u8 = 8;
    /// `BOOTSTRAP` and the deadline slack after it (`BOOTSTRAP` alone is
    /// still read: a cluster from before the field).
    pub(super) const BOOTSTRAP_WITH_SLACK: u8 = 9;
}

/// Builds one `Requests` entry from requests added one by one (a loop
/// turn's worth).
#[derive(Debug, Default)]
pub struct RequestBatch {
    body: Vec<u8>,
    count: u32,
}

impl RequestBatch {
    /// Adds a request.
    pub fn push(&mut self, r: &Logged<'_>) {
        put_u64(&mut self.body, r.node);
        put_u64(&mut self.body, r.tag);
        put_u64(&mut self.body, r.seq);
        self.body.extend_from_slice(&r.ident.to_le_bytes());
        put_bytes(&mut self.body, r.line);
        self.count += 1;
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The entry, stamped, and an empty batch again.
    pub fn take(&mut self, stamp: u64) -> Vec<u8> {
        let mut out = header(kind::REQUESTS, stamp);
        out.extend_from_slice(&self.count.to_le_bytes());
        out.append(&mut self.body);
        self.count = 0;
        out
    }
}

fn header(kind: u8, stamp: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(VERSION);
    out.push(kind);
    put_u64(&mut out, stamp);
    out
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Lines are bounded by the line limit (at most 1 GiB): a u32 holds it.
    let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&b[..len as usize]);
}

/// Encodes an entry other than `Requests` (see [`RequestBatch`]).
pub fn encode(stamp: u64, entry: &Entry<'_>) -> Vec<u8> {
    match entry {
        Entry::Requests(rs) => {
            let mut batch = RequestBatch::default();
            for r in rs {
                batch.push(r);
            }
            batch.take(stamp)
        }
        Entry::Advance => header(kind::ADVANCE, stamp),
        Entry::Cancel { waiter } => {
            let mut out = header(kind::CANCEL, stamp);
            put_u64(&mut out, *waiter);
            out
        }
        Entry::Orphaned { name, token } => {
            let mut out = header(kind::ORPHANED, stamp);
            put_bytes(&mut out, name.as_bytes());
            put_u64(&mut out, *token);
            out
        }
        Entry::DropWaiters => header(kind::DROP_WAITERS, stamp),
        Entry::SessionEnd { conn } => {
            let mut out = header(kind::SESSION_END, stamp);
            put_u64(&mut out, *conn);
            out
        }
        Entry::Bootstrap(b) => {
            let mut out = header(kind::BOOTSTRAP_WITH_SLACK, stamp);
            put_u64(&mut out, b.cluster_id);
            put_u64(&mut out, b.hash_key[0]);
            put_u64(&mut out, b.hash_key[1]);
            put_u64(&mut out, b.first_token);
            for v in [
                b.limits.max_line as u64,
                b.limits.max_name as u64,
                b.limits.max_id as u64,
                b.limits.max_data_anonymous as u64,
                b.limits.max_ttl_anonymous.as_millis(),
                b.limits.max_ttl.as_millis(),
                b.memory_budget,
                b.deadline_slack_ms,
            ] {
                put_u64(&mut out, v);
            }
            out
        }
        Entry::RegisterIdentity { name, max_data } => {
            let mut out = header(kind::REGISTER_IDENTITY, stamp);
            put_bytes(&mut out, name.as_bytes());
            put_u64(&mut out, *max_data);
            out
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Damaged> {
        if self.0.len() < n {
            return Err(Damaged(what));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, Damaged> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, Damaged> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, Damaged> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, Damaged> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], Damaged> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }

    fn str(&mut self, what: &'static str) -> Result<&'a str, Damaged> {
        std::str::from_utf8(self.bytes(what)?).map_err(|_| Damaged(what))
    }

    fn usize(&mut self, what: &'static str) -> Result<usize, Damaged> {
        usize::try_from(self.u64(what)?).map_err(|_| Damaged(what))
    }
}

/// Decodes an entry.
pub fn decode(data: &[u8]) -> Result<Stamped<'_>, Damaged> {
    let mut r = Reader(data);
    if r.u8("version")? != VERSION {
        return Err(Damaged("unknown version"));
    }
    let kind = r.u8("kind")?;
    let stamp = r.u64("stamp")?;
    let entry = match kind {
        kind::REQUESTS => {
            let count = r.u32("count")?;
            // Each request takes at least 30 bytes: a damaged count cannot
            // make us reserve much.
            let mut rs = Vec::with_capacity((count as usize).min(r.0.len() / 30));
            for _ in 0..count {
                rs.push(Logged {
                    node: r.u64("node")?,
                    tag: r.u64("tag")?,
                    seq: r.u64("seq")?,
                    ident: r.u16("identity")?,
                    line: r.bytes("request")?,
                });
            }
            Entry::Requests(rs)
        }
        kind::ADVANCE => Entry::Advance,
        kind::CANCEL => Entry::Cancel {
            waiter: r.u64("waiter")?,
        },
        kind::SESSION_END => Entry::SessionEnd {
            conn: r.u64("conn")?,
        },
        kind::ORPHANED => Entry::Orphaned {
            name: r.str("name")?,
            token: r.u64("token")?,
        },
        kind::DROP_WAITERS => Entry::DropWaiters,
        k @ (kind::BOOTSTRAP | kind::BOOTSTRAP_WITH_SLACK) => {
            let cluster_id = r.u64("cluster id")?;
            let hash_key = [r.u64("hash key")?, r.u64("hash key")?];
            let first_token = r.u64("first token")?;
            let limits = Limits {
                max_line: r.usize("limits")?,
                max_name: r.usize("limits")?,
                max_id: r.usize("limits")?,
                max_data_anonymous: r.usize("limits")?,
                max_ttl_anonymous: Ttl::from_millis(r.u64("limits")?),
                max_ttl: Ttl::from_millis(r.u64("limits")?),
            };
            Entry::Bootstrap(Bootstrap {
                cluster_id,
                hash_key,
                first_token,
                limits,
                memory_budget: r.u64("budget")?,
                // Absent from a first entry written before it was one.
                deadline_slack_ms: if k == kind::BOOTSTRAP {
                    LEGACY_DEADLINE_SLACK_MS
                } else {
                    r.u64("deadline slack")?
                },
            })
        }
        kind::REGISTER_IDENTITY => Entry::RegisterIdentity {
            name: r.str("identity name")?,
            max_data: r.u64("max data")?,
        },
        _ => return Err(Damaged("unknown kind")),
    };
    if !r.0.is_empty() {
        return Err(Damaged("trailing bytes"));
    }
    Ok(Stamped { stamp, entry })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(entry: &Entry<'_>) {
        let bytes = encode(42, entry);
        assert_eq!(
            decode(&bytes),
            Ok(Stamped {
                stamp: 42,
                entry: entry.clone()
            })
        );
        // Every cut and every flipped byte is an error or another valid
        // entry, never a panic.
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut} decoded");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            let _ = decode(&b);
        }
    }

    #[test]
    fn every_kind_round_trips_and_damage_never_panics() {
        let line = br#"{"Action":"Lock","FileName":"a","ID":"b","Expire":1}"#;
        round_trip(&Entry::Requests(vec![
            Logged {
                node: 1,
                tag: 77,
                seq: 3,
                ident: 0,
                line,
            },
            Logged {
                node: 2,
                tag: 78,
                seq: 4,
                ident: 5,
                line: b"{}",
            },
        ]));
        round_trip(&Entry::Requests(vec![]));
        round_trip(&Entry::Advance);
        round_trip(&Entry::Cancel { waiter: 9 });
        round_trip(&Entry::SessionEnd {
            conn: 1 << 56 | 0x2a,
        });
        round_trip(&Entry::Orphaned {
            name: "lock",
            token: 1 << 60,
        });
        round_trip(&Entry::DropWaiters);
        round_trip(&Entry::Bootstrap(Bootstrap {
            cluster_id: 9,
            hash_key: [1, 2],
            first_token: 3,
            limits: Limits::DEFAULT,
            memory_budget: 1 << 30,
            deadline_slack_ms: 57,
        }));
        round_trip(&Entry::RegisterIdentity {
            name: "alice",
            max_data: 16384,
        });
    }

    #[test]
    fn a_first_entry_from_before_the_slack_field_reads_as_the_slack_it_ran() {
        let b = Bootstrap {
            cluster_id: 9,
            hash_key: [1, 2],
            first_token: 3,
            limits: Limits::DEFAULT,
            memory_budget: 1 << 30,
            deadline_slack_ms: 57,
        };
        let mut old = encode(42, &Entry::Bootstrap(b));
        // The old layout is the new one without its last field, under the
        // old kind.
        old.truncate(old.len() - 8);
        assert_eq!(old[1], kind::BOOTSTRAP_WITH_SLACK);
        old[1] = kind::BOOTSTRAP;
        assert_eq!(
            decode(&old),
            Ok(Stamped {
                stamp: 42,
                entry: Entry::Bootstrap(Bootstrap {
                    deadline_slack_ms: LEGACY_DEADLINE_SLACK_MS,
                    ..b
                }),
            })
        );
        // Neither a torn field nor one too many is taken.
        let new = encode(42, &Entry::Bootstrap(b));
        assert!(decode(&new[..new.len() - 3]).is_err());
        let mut long = new.clone();
        long.push(0);
        assert!(decode(&long).is_err());
    }

    #[test]
    fn batches_reset_after_take() {
        let mut b = RequestBatch::default();
        assert!(b.is_empty());
        b.push(&Logged {
            node: 1,
            tag: 1,
            seq: 1,
            ident: 0,
            line: b"x",
        });
        let first = b.take(5);
        assert!(b.is_empty());
        assert!(matches!(decode(&first).unwrap().entry, Entry::Requests(v) if v.len() == 1));
        assert!(matches!(decode(&b.take(6)).unwrap().entry, Entry::Requests(v) if v.is_empty()));
    }
}
