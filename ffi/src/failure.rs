//! Why a call could not reach a server, kept between calls: the rule both
//! this crate's client and the async one (`dlm-tokio`) give up by.
//!
//! A call that gives up says why in the failover's words, with the last
//! failure of the operating system it met and the server concerned. A call
//! may give up without an attempt of its own (its time all spent in the
//! pause that earlier failures set): it then says the last failure another
//! call gave up with, kept until some call is answered.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::Error;

/// The last failure of the operating system a call gave up with, kept
/// until a call is answered. One per client, shared by its calls.
#[derive(Debug, Default)]
pub struct LastFailure {
    /// Its kind and text.
    kept: Mutex<Option<(io::ErrorKind, String)>>,
    /// `kept` holds one (read on every answer, so that the answer path
    /// takes no lock).
    failed: AtomicBool,
}

impl LastFailure {
    /// Nothing failed yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The error a call gives up with: `why` (the failover's reason), with
    /// `last` (this call's own last failure, kept for the calls after it)
    /// or else the failure kept from an earlier call, and `server`.
    pub fn give_up(&self, why: &str, server: &str, last: Option<io::Error>) -> Error {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let last = match last {
            Some(io) => {
                *kept = Some((io.kind(), io.to_string()));
                self.failed.store(true, Ordering::Relaxed);
                Some(io)
            }
            None => kept
                .as_ref()
                .map(|(kind, text)| io::Error::new(*kind, text.clone())),
        };
        drop(kept);
        match last {
            Some(io) => Error::Unavailable(io::Error::new(
                io.kind(),
                format!("{why} (last: {io}; server {server})"),
            )),
            None => Error::Unavailable(io::Error::other(format!("{why} (server {server})"))),
        }
    }

    /// A call was answered: earlier failures no longer say why a call
    /// fails.
    pub fn answered(&self) {
        if self.failed.load(Ordering::Relaxed) && self.failed.swap(false, Ordering::Relaxed) {
            *self.kept.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(e: &Error) -> String {
        e.to_string()
    }

    #[test]
    fn a_call_without_its_own_failure_says_the_last_one_until_an_answer() {
        let f = LastFailure::new();
        let none = f.give_up("gave up", "s:1", None);
        assert!(!text(&none).contains("last:"), "{none}");
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "refused here");
        let first = f.give_up("gave up", "s:1", Some(refused));
        assert!(text(&first).contains("refused here"), "{first}");
        let later = f.give_up("gave up in the pause", "s:2", None);
        assert!(
            text(&later).contains("last: refused here; server s:2"),
            "{later}"
        );
        match later {
            Error::Unavailable(io) => assert_eq!(io.kind(), io::ErrorKind::ConnectionRefused),
            other => panic!("{other:?}"),
        }
        f.answered();
        let after = f.give_up("gave up", "s:1", None);
        assert!(!text(&after).contains("refused"), "{after}");
    }
}
