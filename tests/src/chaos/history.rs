//! What a chaos run records: every client operation with the times it was
//! invoked and answered (nanoseconds since the run started, on the one
//! monotonic clock of the machine every process shares), the writes the
//! guarded resource saw, and the nemesis's faults.

use std::sync::{Mutex, PoisonError};

use serde_json::{Value, json};

/// The run's clock: nanoseconds since it started, on the machine's
/// `CLOCK_MONOTONIC` (which worker processes read too, so their times
/// share this timeline).
#[derive(Clone, Copy, Debug)]
pub struct Clock(i64);

impl Clock {
    /// A clock starting now.
    pub fn start() -> Self {
        Self(super::shim::real_monotonic_ns())
    }

    /// Nanoseconds since the start.
    pub fn now(&self) -> u64 {
        u64::try_from(super::shim::real_monotonic_ns().saturating_sub(self.0)).unwrap_or(0)
    }

    /// The start, in `CLOCK_MONOTONIC` nanoseconds.
    pub fn origin(&self) -> i64 {
        self.0
    }
}

/// A key/value operation as the client invoked it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvInput {
    /// `Put` without `Revision`.
    Put(String),
    /// `Put` with `Revision` (compare-and-set).
    Cas(String, u64),
    /// `Get`.
    Get,
    /// `Erase`.
    Erase,
}

/// How a key/value operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOutput {
    /// An answer: `Status`, `DataStore` and `Revision` as received.
    Answer {
        /// `Status`.
        status: String,
        /// `DataStore`, decoded.
        value: Option<String>,
        /// `Revision`.
        revision: Option<u64>,
    },
    /// No answer within the timeout, or the connection ended after the
    /// request was written: it may or may not have been applied.
    Unknown,
}

/// One key/value operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvOp {
    /// The client (thread) that made it.
    pub client: u64,
    /// The data key.
    pub key: String,
    /// What was asked.
    pub input: KvInput,
    /// When it was sent.
    pub call: u64,
    /// When its answer came (or when the client gave up, if unknown).
    pub ret: u64,
    /// What came back.
    pub output: KvOutput,
}

/// A grant of a lock, as the client that received it saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The client (thread).
    pub client: u64,
    /// The owner ID it used (one per attempt).
    pub owner: String,
    /// The lock name.
    pub name: String,
    /// The fencing token.
    pub token: u64,
    /// When the `Lock` was sent.
    pub call: u64,
    /// When `Locked` came back.
    pub ret: u64,
    /// The end of the lease as the holder may count on it: the send time
    /// of the last `Lock` answered `Locked` (grant or extension) plus the
    /// TTL, cut short at the send time of its `Unlock` or of an extension
    /// answered `NotOwner`.
    pub lease_end: u64,
    /// Extensions answered `Locked` with another token (must be none).
    pub wrong_extend_tokens: Vec<u64>,
    /// The `ID` the `Locked` answer named (must be `owner`), and the
    /// member the client had sent it to.
    pub answer_owner: String,
    /// The member (client port index) the grant came through.
    pub via: usize,
}

/// A write at the guarded resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The client (thread).
    pub client: u64,
    /// The lock name the resource is guarded by.
    pub name: String,
    /// The fencing token the write carried.
    pub token: u64,
    /// When the resource took it (under its own lock: writes are totally
    /// ordered by this time).
    pub at: u64,
    /// Whether the resource accepted it (token at least the highest seen).
    pub accepted: bool,
}

/// A fault the nemesis injected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Short kind: `kill`, `pause`, `partition`, ...
    pub kind: String,
    /// What exactly (members, durations).
    pub detail: String,
    /// When it started.
    pub start: u64,
    /// When it was healed.
    pub end: u64,
}

/// Who the members said led, sampled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderSample {
    /// When.
    pub at: u64,
    /// The leader the responding members agreed on (0: none or no
    /// agreement).
    pub leader: u64,
}

/// Everything a run records, appended to by many threads.
#[derive(Debug, Default)]
pub struct History {
    /// Key/value operations.
    pub kv: Mutex<Vec<KvOp>>,
    /// Lock grants.
    pub grants: Mutex<Vec<Grant>>,
    /// Lock attempts that ended without an answer (may have been granted).
    pub unknown_locks: Mutex<u64>,
    /// Writes at the resource.
    pub writes: Mutex<Vec<Write>>,
    /// Faults.
    pub faults: Mutex<Vec<Fault>>,
    /// Leaders seen.
    pub leaders: Mutex<Vec<LeaderSample>>,
    /// Longest time a call took beyond its own timeout (ns), and which.
    pub overrun: Mutex<Option<(u64, String)>>,
    /// Worker processes (Python clients) that failed to run.
    pub binding_failures: Mutex<u64>,
}

/// Appends to a vector behind a mutex, whatever happened to another holder.
pub fn push<T>(v: &Mutex<Vec<T>>, item: T) {
    v.lock().unwrap_or_else(PoisonError::into_inner).push(item);
}

/// A copy of a vector behind a mutex.
pub fn copy<T: Clone>(v: &Mutex<Vec<T>>) -> Vec<T> {
    v.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

impl KvOp {
    /// This operation as the porcupine checker reads it.
    pub fn to_json(&self) -> Value {
        let (op, value, expect) = match &self.input {
            KvInput::Put(v) => ("put", Some(v.as_str()), None),
            KvInput::Cas(v, r) => ("cas", Some(v.as_str()), Some(*r)),
            KvInput::Get => ("get", None, None),
            KvInput::Erase => ("erase", None, None),
        };
        let mut o = json!({
            "client": self.client,
            "key": self.key,
            "op": op,
            "call": self.call,
            "ret": self.ret,
        });
        if let Some(v) = value {
            o["value"] = json!(v);
        }
        if let Some(r) = expect {
            o["expect"] = json!(r);
        }
        match &self.output {
            KvOutput::Unknown => o["unknown"] = json!(true),
            KvOutput::Answer {
                status,
                value,
                revision,
            } => {
                o["status"] = json!(status);
                if let Some(v) = value {
                    o["out_value"] = json!(v);
                }
                if let Some(r) = revision {
                    o["out_rev"] = json!(r);
                }
            }
        }
        o
    }
}

impl Grant {
    /// This grant as JSON (history files).
    pub fn to_json(&self) -> Value {
        json!({"client": self.client, "owner": self.owner, "name": self.name,
               "token": self.token, "call": self.call, "ret": self.ret,
               "lease_end": self.lease_end,
               "wrong_extend_tokens": self.wrong_extend_tokens,
               "answer_owner": self.answer_owner, "via": self.via})
    }
}

impl Write {
    /// This write as JSON (history files).
    pub fn to_json(&self) -> Value {
        json!({"client": self.client, "name": self.name, "token": self.token,
               "at": self.at, "accepted": self.accepted})
    }
}

impl Fault {
    /// This fault as JSON (history files, timeline annotations).
    pub fn to_json(&self) -> Value {
        json!({"kind": self.kind, "detail": self.detail, "start": self.start, "end": self.end})
    }
}
