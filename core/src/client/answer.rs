//! Reading answers: what the server's [`Response`] to each call means, and
//! the one rule for turning a refusal into an [`Error`] for that call.
//!
//! | call | refused with `NotOwner` means | read by |
//! |---|---|---|
//! | `Lock`, one attempt | [`NotOwner`](ErrorKind::NotOwner) | [`acquired`] |
//! | `Lock` with `Wait` | [`Timeout`](ErrorKind::Timeout) (the wait ran out) | [`acquired`] |
//! | `Lock` with `Token` (extend) | [`LockLost`](ErrorKind::LockLost): it never re-acquires | [`extended`] |
//! | `Unlock` of a held lock | [`LockLost`](ErrorKind::LockLost), as is `Unlocked` without `ID` | [`released_lock`] |
//! | `Unlock` by name | [`NotOwner`](ErrorKind::NotOwner) | [`unlocked`] |
//! | `Put`, `Get`, `Erase` | [`NotOwner`](ErrorKind::NotOwner) | [`stored`], [`fetched`], [`erased`] |
//!
//! Everywhere, `Conflict` is [`Conflict`](ErrorKind::Conflict) with the
//! stored revision, `BadPayload` and `BadAction` are
//! [`BadRequest`](ErrorKind::BadRequest) with the server's reason, `NO` is
//! [`NoMemory`](ErrorKind::NoMemory), and any other status is
//! [`Protocol`](ErrorKind::Protocol).
//!
//! **JackrabbitDLM.** The original server answers `Locked` without `Token`
//! or `Expire`, `Done` to a `Put` without `Revision`, has no wait queue (it
//! answers at once), and knows neither `TestLock` nor `Stats`. The readers
//! accept what it sends and say so honestly: a [`Grant`] without a token
//! (no fencing is available from that server), a [`Stored`] without a
//! revision, and an error, not a silent success, when a compare-and-set
//! [`Put`](stored) is answered without a revision (the server wrote the
//! value unconditionally).

use super::errors::{Detail, Error, ErrorKind};
use crate::protocol::{Response, Revision, Status, Token, TokenList};
#[cfg(feature = "alloc")]
use crate::stats::Stats;
use crate::time::Ttl;

/// A grant of a lock, as the server answered it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The fencing token; `None` from a server that gives none
    /// (JackrabbitDLM), which leaves nothing to fence with.
    pub token: Option<Token>,
    /// Time to live from when the server answered, if it said.
    pub ttl: Option<Ttl>,
}

/// What `TestLock` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockState {
    /// Nobody holds it.
    Free,
    /// This client holds it.
    Mine(Grant),
    /// Someone else holds it, for about this long if the server said.
    Taken(Option<Ttl>),
}

/// What a `Put` stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The new revision; `None` from a server that keeps none
    /// (JackrabbitDLM).
    pub revision: Option<Revision>,
    /// Its time to live, if the server said.
    pub ttl: Option<Ttl>,
}

/// A value read by `Get`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fetched<'a> {
    /// The stored (encoded) text.
    pub data: &'a str,
    /// Its revision, if the server keeps them.
    pub revision: Option<Revision>,
    /// Its remaining time to live, if the server said.
    pub ttl: Option<Ttl>,
    /// Its owner's `ID`, if the server said: the caller's own, or, for a
    /// value shared with the caller, its owner's.
    pub owner: Option<&'a str>,
}

/// The error for a status that refuses the call, by the rules every call
/// shares; `not_owner` is what `NotOwner` means for this call.
fn refused<'a>(r: &Response<'a>, not_owner: ErrorKind) -> Error<'a> {
    let (kind, detail) = match r.status {
        Status::NotOwner => (not_owner, Detail::None),
        // A semaphore or read/write lock request that names a name of
        // another kind or size says so in `Error`.
        Status::Conflict if r.error.is_some() && r.revision.is_none() => (
            ErrorKind::Conflict,
            r.error.map_or(Detail::None, Detail::Server),
        ),
        Status::Conflict => (
            ErrorKind::Conflict,
            Detail::Revision(r.revision.unwrap_or(Revision(0))),
        ),
        Status::BadPayload => (
            ErrorKind::BadRequest,
            r.error.map_or(Detail::None, Detail::Server),
        ),
        Status::BadAction => (
            ErrorKind::BadRequest,
            r.error.map_or(
                Detail::Text("the server does not know this action"),
                Detail::Server,
            ),
        ),
        // A `NO` that says why is the server being unable to serve now
        // (full, stopping, no leader in a cluster): another try, maybe on
        // another member, may work. A bare `NO` is its memory budget.
        Status::No => match r.error {
            Some(why) => (ErrorKind::Unavailable, Detail::Server(why)),
            None => (ErrorKind::NoMemory, Detail::None),
        },
        other => (ErrorKind::Protocol, Detail::Status(other)),
    };
    Error { kind, detail }
}

fn grant_of(r: &Response<'_>) -> Grant {
    Grant {
        token: r.token,
        ttl: r.expire,
    }
}

/// The answer to a `Lock` that acquires: the grant. `NotOwner` is
/// [`ErrorKind::NotOwner`] after one attempt and [`ErrorKind::Timeout`]
/// after a wait (but see [`Acquire`](super::Acquire), which also knows
/// when a server answered a wait at once).
pub fn acquired<'a>(r: &Response<'a>, waited: bool) -> Result<Grant, Error<'a>> {
    match r.status {
        Status::Locked => Ok(grant_of(r)),
        _ if waited => Err(refused(r, ErrorKind::Timeout)),
        _ => Err(refused(r, ErrorKind::NotOwner)),
    }
}

/// A grant of a `LockAll`: one token per name, in the order of the
/// request's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantAll<'a> {
    /// The tokens, one per name.
    pub tokens: TokenList<'a>,
    /// Time to live from when the server answered, if it said.
    pub ttl: Option<Ttl>,
}

/// The answer to a `LockAll` of `names` names: the grant, which must carry
/// one token per name (else [`ErrorKind::Protocol`]). `NotOwner` is
/// [`ErrorKind::NotOwner`] after one attempt and [`ErrorKind::Timeout`]
/// after a wait, with the server's words (which name stood in the way);
/// `BadAction` (a server without multi-locks, such as JackrabbitDLM) is
/// [`ErrorKind::BadRequest`].
pub fn acquired_all<'a>(
    r: &Response<'a>,
    names: usize,
    waited: bool,
) -> Result<GrantAll<'a>, Error<'a>> {
    match (r.status, r.tokens) {
        (Status::Locked, Some(tokens)) if tokens.len() == names => Ok(GrantAll {
            tokens,
            ttl: r.expire,
        }),
        (Status::Locked, _) => Err(Error::text(
            ErrorKind::Protocol,
            "LockAll granted without one token per name",
        )),
        (Status::NotOwner, _) => {
            let kind = if waited {
                ErrorKind::Timeout
            } else {
                ErrorKind::NotOwner
            };
            Err(Error {
                kind,
                detail: r.error.map_or(Detail::None, Detail::Server),
            })
        }
        _ => Err(refused(r, ErrorKind::NotOwner)),
    }
}

/// The answer to an extension (`Lock` with `Token`, or a plain re-lock
/// where the server gives no tokens): a refusal means the grant is gone.
pub fn extended<'a>(r: &Response<'a>) -> Result<Grant, Error<'a>> {
    match r.status {
        Status::Locked => Ok(grant_of(r)),
        _ => Err(refused(r, ErrorKind::LockLost)),
    }
}

/// The answer to the `Unlock` of a held lock: nothing live (`Unlocked`
/// without `ID`), or another owner or grant, means it had been lost.
pub fn released_lock<'a>(r: &Response<'a>) -> Result<(), Error<'a>> {
    match (r.status, r.id) {
        (Status::Unlocked, Some(_)) => Ok(()),
        (Status::Unlocked, None) => Err(Error::text(
            ErrorKind::LockLost,
            "it had expired before the release",
        )),
        _ => Err(refused(r, ErrorKind::LockLost)),
    }
}

/// The answer to an `Unlock` by name: whether a lock was released (false:
/// there was no live lock).
pub fn unlocked<'a>(r: &Response<'a>) -> Result<bool, Error<'a>> {
    match r.status {
        Status::Unlocked => Ok(r.id.is_some()),
        _ => Err(refused(r, ErrorKind::NotOwner)),
    }
}

/// The answer to `TestLock`.
pub fn lock_state<'a>(r: &Response<'a>) -> Result<LockState, Error<'a>> {
    match r.status {
        Status::Unlocked => Ok(LockState::Free),
        Status::Locked => Ok(LockState::Mine(grant_of(r))),
        Status::NotOwner => Ok(LockState::Taken(r.expire)),
        _ => Err(refused(r, ErrorKind::Protocol)),
    }
}

/// The answer to a `Put`; `compared` says whether it carried a
/// `Revision` (compare-and-set). A server that answers a compare-and-set
/// without a revision ignored the comparison: that is an error, since the
/// value was written unconditionally.
pub fn stored<'a>(r: &Response<'a>, compared: bool) -> Result<Stored, Error<'a>> {
    match r.status {
        Status::Done if compared && r.revision.is_none() => Err(Error::text(
            ErrorKind::Protocol,
            "the server has no compare-and-set (its answer has no Revision): \
             the value was written unconditionally",
        )),
        Status::Done => Ok(Stored {
            revision: r.revision,
            ttl: r.expire,
        }),
        _ => Err(refused(r, ErrorKind::NotOwner)),
    }
}

/// The answer to `Get`: the value, or `None` if there is none.
pub fn fetched<'a>(r: &Response<'a>) -> Result<Option<Fetched<'a>>, Error<'a>> {
    match (r.status, r.data) {
        (Status::Done, Some(data)) => Ok(Some(Fetched {
            data,
            revision: r.revision,
            ttl: r.expire,
            owner: r.id,
        })),
        (Status::NotFound | Status::NoData, _) => Ok(None),
        (Status::Done, None) => Err(Error::text(
            ErrorKind::Protocol,
            "a Get answered Done without DataStore",
        )),
        _ => Err(refused(r, ErrorKind::NotOwner)),
    }
}

/// The answer to `Erase`: whether an entry was erased.
pub fn erased<'a>(r: &Response<'a>) -> Result<bool, Error<'a>> {
    match r.status {
        Status::Done => Ok(true),
        Status::NotFound => Ok(false),
        _ => Err(refused(r, ErrorKind::NotOwner)),
    }
}

/// The answer to `Cluster`: the cluster's state as JSON text (empty for a
/// membership change, which answers `Done` alone). A refusal (not the
/// leader, a change already in progress, no such member) is a
/// [`BadRequest`](ErrorKind::BadRequest) with the server's reason.
pub fn cluster<'a>(r: &Response<'a>) -> Result<&'a str, Error<'a>> {
    match r.status {
        Status::Done => Ok(r.cluster.unwrap_or("")),
        Status::No => Err(Error {
            kind: ErrorKind::BadRequest,
            detail: r.error.map_or(Detail::None, Detail::Server),
        }),
        _ => Err(refused(r, ErrorKind::Protocol)),
    }
}

/// What an `Admin` request was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admin<'a> {
    /// The lock table (`locks`) or one lock (`lock`), as the JSON object
    /// of the answer's `Admin` field.
    Table(&'a str),
    /// `lock` of a lock nobody holds.
    NoSuchLock,
    /// `revoke`: the token of the grant taken away, or `None` if no lock
    /// was live.
    Revoked(Option<Token>),
}

/// The answer to `Admin`. A revocation by token of a lock whose grant has
/// another token is [`NotOwner`](ErrorKind::NotOwner); a request without an
/// administrator identity is a [`BadRequest`](ErrorKind::BadRequest) with
/// the server's reason.
pub fn admin<'a>(r: &Response<'a>) -> Result<Admin<'a>, Error<'a>> {
    match (r.status, r.admin) {
        (Status::Done, Some(json)) => Ok(Admin::Table(json)),
        (Status::NotFound, _) => Ok(Admin::NoSuchLock),
        (Status::Unlocked, _) => Ok(Admin::Revoked(r.token)),
        _ => Err(refused(r, ErrorKind::NotOwner)),
    }
}

/// The answer to `Version`: the server's version string.
pub fn version<'a>(r: &Response<'a>) -> Result<&'a str, Error<'a>> {
    match (r.status, r.id) {
        (Status::Version, Some(v)) => Ok(v),
        _ => Err(refused(r, ErrorKind::Protocol)),
    }
}

/// The answer to `Stats`, read from its line: the counters. A server that
/// does not know the action (JackrabbitDLM answers `BadAction`) is a
/// [`BadRequest`](ErrorKind::BadRequest) that says so.
#[cfg(feature = "alloc")]
pub fn stats(line: &mut [u8]) -> Result<Stats, Error<'static>> {
    // Reading the counters decodes the line in place; keep a copy to read
    // a refusal from. Not a hot path.
    let mut copy = alloc::vec::Vec::from(&*line);
    match Response::parse_stats(line) {
        Ok(stats) => Ok(stats),
        Err(e) => match Response::parse(&mut copy) {
            Ok((_, r)) if r.status == Status::BadAction => Err(Error::text(
                ErrorKind::BadRequest,
                "the server does not know the Stats action",
            )),
            Ok((_, r)) if r.status != Status::Done => Err(Error {
                kind: ErrorKind::Protocol,
                detail: Detail::Status(r.status),
            }),
            _ => Err(Error::from(e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Message;

    fn answer(status: Status) -> Response<'static> {
        Response::new(status)
    }

    #[test]
    fn a_refusal_means_what_the_call_makes_it_mean() {
        let no = answer(Status::NotOwner);
        assert_eq!(acquired(&no, false).unwrap_err().kind, ErrorKind::NotOwner);
        assert_eq!(acquired(&no, true).unwrap_err().kind, ErrorKind::Timeout);
        assert_eq!(extended(&no).unwrap_err().kind, ErrorKind::LockLost);
        assert_eq!(released_lock(&no).unwrap_err().kind, ErrorKind::LockLost);
        assert_eq!(unlocked(&no).unwrap_err().kind, ErrorKind::NotOwner);
        assert_eq!(stored(&no, false).unwrap_err().kind, ErrorKind::NotOwner);
        assert_eq!(fetched(&no).unwrap_err().kind, ErrorKind::NotOwner);
        assert_eq!(erased(&no).unwrap_err().kind, ErrorKind::NotOwner);
        assert_eq!(
            released_lock(&answer(Status::Unlocked)).unwrap_err().kind,
            ErrorKind::LockLost
        );
        assert_eq!(unlocked(&answer(Status::Unlocked)), Ok(false));
        for call in [
            |r: &Response<'static>| acquired(r, true).map(drop),
            |r: &Response<'static>| extended(r).map(drop),
            |r: &Response<'static>| stored(r, true).map(drop),
        ] {
            assert_eq!(
                call(&answer(Status::No)).unwrap_err().kind,
                ErrorKind::NoMemory
            );
            let mut bad = answer(Status::BadPayload);
            bad.error = Some(Message::Text("too long"));
            let e = call(&bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::BadRequest);
            assert_eq!(e.detail, Detail::Server(Message::Text("too long")));
            let e = call(&answer(Status::Version)).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Protocol);
            assert_eq!(e.detail, Detail::Status(Status::Version));
        }
        let mut conflict = answer(Status::Conflict);
        conflict.revision = Some(Revision(4));
        let e = stored(&conflict, true).unwrap_err();
        assert_eq!(
            (e.kind, e.revision()),
            (ErrorKind::Conflict, Some(Revision(4)))
        );
        let e = stored(&answer(Status::Conflict), true).unwrap_err();
        assert_eq!(e.revision(), Some(Revision(0)));
        assert_eq!(
            lock_state(&answer(Status::BadAction)).unwrap_err().detail,
            Detail::Text("the server does not know this action")
        );
    }

    #[test]
    fn jackrabbit_answers_are_read_honestly() {
        // {"Status":"Locked","ID":"me"}: a grant with nothing to fence with.
        let mut locked = answer(Status::Locked);
        locked.id = Some("me");
        assert_eq!(
            acquired(&locked, false),
            Ok(Grant {
                token: None,
                ttl: None
            })
        );
        // {"Status":"Done","ID":"me"} to a Put.
        let mut done = answer(Status::Done);
        done.id = Some("me");
        assert_eq!(
            stored(&done, false),
            Ok(Stored {
                revision: None,
                ttl: None
            })
        );
        // ... but not to a compare-and-set: it was not compared.
        let e = stored(&done, true).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol);
        assert!(matches!(e.detail, Detail::Text(t) if t.contains("compare-and-set")));
    }
}
