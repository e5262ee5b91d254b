//! What the engine tests share: owned responses and the engine's counters.
// Each test crate uses its own subset.
#![allow(dead_code)]

use dlm_core::protocol::{Response, Status};
use dlm_core::stats::Stat;
use dlm_core::time::Ttl;

/// An owned copy of a [`Response`], to compare and keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) status: Status,
    pub(crate) id: Option<String>,
    pub(crate) data: Option<String>,
    pub(crate) token: Option<u64>,
    pub(crate) expire: Option<u64>,
    pub(crate) revision: Option<u64>,
    pub(crate) error: Option<String>,
}

impl Reply {
    pub(crate) fn of(r: &Response<'_>) -> Self {
        Self {
            status: r.status,
            id: r.id.map(str::to_owned),
            data: r.data.map(str::to_owned),
            token: r.token.map(|t| t.0),
            expire: r.expire.map(Ttl::as_millis),
            revision: r.revision.map(|r| r.0),
            error: r.error.map(|e| e.to_string()),
        }
    }

    /// Only a status.
    pub(crate) fn bare(status: Status) -> Self {
        Self {
            status,
            id: None,
            data: None,
            token: None,
            expire: None,
            revision: None,
            error: None,
        }
    }

    pub(crate) fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_owned());
        self
    }

    pub(crate) fn expire(mut self, ms: u64) -> Self {
        self.expire = Some(ms);
        self
    }

    pub(crate) fn token(mut self, token: u64) -> Self {
        self.token = Some(token);
        self
    }

    pub(crate) fn revision(mut self, rev: u64) -> Self {
        self.revision = Some(rev);
        self
    }
}

/// A `Locked` answer.
pub(crate) fn locked(id: &str, token: u64, expire: u64) -> Reply {
    let mut r = Reply::bare(Status::Locked).id(id).expire(expire);
    r.token = Some(token);
    r
}

/// Counters the engine maintains (the rest are the host's).
pub(crate) const ENGINE_COUNTERS: &[Stat] = &[
    Stat::BadPayload,
    Stat::Conflict,
    Stat::DataIn,
    Stat::DataOut,
    Stat::EraseNF,
    Stat::Erased,
    Stat::ExpiredData,
    Stat::ExpiredLock,
    Stat::Get,
    Stat::GetNF,
    Stat::GetShared,
    Stat::Lock,
    Stat::NoMemory,
    Stat::NotOwner,
    Stat::PutNew,
    Stat::PutUpdate,
    Stat::Relock,
    Stat::Revoked,
    Stat::Stats,
    Stat::TestLock,
    Stat::TestLockNF,
    Stat::Unlock,
    Stat::UnlockNF,
    Stat::Version,
    Stat::Wait,
    Stat::WaitCancel,
    Stat::WaitGranted,
    Stat::WaitOrphaned,
    Stat::WaitTimeout,
];
