//! Sessions on a [`Link`]: the requests of a session's connection and the
//! reading of their answers (PROTOCOL.md section 8, "Sessions and
//! lock-delay").
//!
//! A session lives and dies with one connection, so none of its requests
//! is a call of the failover: nothing is sent again elsewhere. The package
//! opens a connection of its own, appends `Session` with
//! [`Link::session`], locks bound to it with [`Link::session_lock`], keeps
//! it alive with `Session` again, and reads each answer in order.

use dlm_core::client::{ErrorKind, answer};
use dlm_core::protocol::{Response, SessionBind, Status, Token};

use crate::error::Error;
use crate::link::Link;
use crate::wire::{self, check_name, millis, shape};

/// The longest lock-delay a server accepts, in milliseconds.
pub const MAX_LOCK_DELAY_MS: f64 = 60_000.0;

/// The error of an answer that refuses a session's request, by the rules
/// every call shares (`NotOwner` means `not_owner`).
fn refused(r: &Response<'_>, not_owner: ErrorKind) -> Error {
    match answer::acquired(r, not_owner == ErrorKind::Timeout) {
        Ok(_) => Error::new(ErrorKind::Protocol, "an unexpected answer"),
        Err(e) => e.into(),
    }
}

impl Link {
    /// Appends `Session` for `ttl_ms`: opens this connection's session, or
    /// keeps it alive.
    pub fn session(&mut self, ttl_ms: f64) -> Result<(), Error> {
        let ttl = millis("ttlMs", ttl_ms, false)?;
        let (writer, out) = self.writer_and_output();
        wire::write(&writer.core().session(ttl), out);
        Ok(())
    }

    /// Appends a keep-alive for `ttl_ms`: keeps this connection's session
    /// alive, but never opens one (an ended session answers `BadPayload`).
    pub fn keep_alive(&mut self, ttl_ms: f64) -> Result<(), Error> {
        let ttl = millis("ttlMs", ttl_ms, false)?;
        let (writer, out) = self.writer_and_output();
        wire::write(&writer.core().keep_alive(ttl), out);
        Ok(())
    }

    /// Appends `Lock` bound to the session: `name` for `ttl_ms`, queueing
    /// up to `wait_ms` (0: one attempt), of `shape` (see
    /// `wire::shape`), closed for `lock_delay_ms` after the session ends.
    pub fn session_lock(
        &mut self,
        name: &str,
        ttl_ms: f64,
        wait_ms: f64,
        shape_code: f64,
        lock_delay_ms: f64,
    ) -> Result<(), Error> {
        check_name(name)?;
        let ttl = millis("ttlMs", ttl_ms, false)?;
        let wait = millis("waitMs", wait_ms, true)?;
        let delay = millis("lockDelayMs", lock_delay_ms, true)?;
        if lock_delay_ms > MAX_LOCK_DELAY_MS {
            return Err(Error::invalid(format!(
                "a lock-delay is at most 60 s (60000 ms), not {lock_delay_ms} ms"
            )));
        }
        let wait = (!wait.is_zero()).then_some(wait);
        let (writer, out) = self.writer_and_output();
        let core = writer.core();
        let req = match shape(shape_code)? {
            None => match wait {
                Some(w) => core.lock_wait(name, ttl, w),
                None => core.lock(name, ttl),
            },
            Some(s) => core.acquire(name, s, ttl, wait),
        }
        .with_session(SessionBind { lock_delay: delay });
        wire::write(&req, out);
        Ok(())
    }

    /// Appends `Unlock` of the grant `token` of `name`.
    pub fn session_unlock(&mut self, name: &str, token: u64) -> Result<(), Error> {
        check_name(name)?;
        let (writer, out) = self.writer_and_output();
        wire::write(&writer.core().unlock(name, Some(Token(token))), out);
        Ok(())
    }

    /// Reads the answer to `session`: the TTL in milliseconds the server
    /// granted. A server without sessions (JackrabbitDLM) is
    /// `BadRequest`, said so.
    pub fn read_session(&mut self) -> Result<f64, Error> {
        let line = self.next_line()?;
        let r = Response::parse(line)?.1;
        match r.status {
            Status::Done => Ok(r.expire.map_or(0.0, wire::to_js_millis)),
            Status::BadAction => Err(Error::new(
                ErrorKind::BadRequest,
                "the server has no sessions (a JackrabbitDLM server?)",
            )),
            _ => Err(refused(&r, ErrorKind::Protocol)),
        }
    }

    /// Reads the answer to `session_lock` (`waited`: it queued): the
    /// grant's token. `NotOwner` (or `Timeout` after a wait), `Conflict`
    /// for a name of another kind, `BadRequest` for what the server
    /// refuses.
    pub fn read_session_grant(&mut self, waited: bool) -> Result<u64, Error> {
        let line = self.next_line()?;
        let r = Response::parse(line)?.1;
        let grant = answer::acquired(&r, waited)?;
        match grant.token {
            Some(Token(t)) => Ok(t),
            None => Err(Error::new(
                ErrorKind::BadRequest,
                "the server ignored Session (a JackrabbitDLM server?)",
            )),
        }
    }

    /// Reads the answer to `session_unlock`: `LockLost` if the grant was
    /// no longer live.
    pub fn read_session_release(&mut self) -> Result<(), Error> {
        let line = self.next_line()?;
        let r = Response::parse(line)?.1;
        Ok(answer::released_lock(&r)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Writer;

    fn link() -> Link {
        Link::new(Writer::new("me".into(), false, None).unwrap())
    }

    fn answer(link: &mut Link, text: &str) {
        assert_eq!(link.feed(format!("{text}\n").as_bytes()), Ok(1));
    }

    #[test]
    fn requests_carry_the_session_and_the_delay() {
        let mut l = link();
        l.session(10_000.0).unwrap();
        l.session_lock("job", 30_000.0, 0.0, 0.0, 1500.0).unwrap();
        l.session_lock("sem", 30_000.0, 5000.0, 3.0, 0.0).unwrap();
        l.session_unlock("job", 7).unwrap();
        let out = String::from_utf8(l.output().to_vec()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].contains("\"Action\":\"Session\""), "{}", lines[0]);
        assert!(lines[1].contains("\"Session\":true") && lines[1].contains("\"LockDelay\""));
        assert!(lines[2].contains("\"Permits\":3") && lines[2].contains("\"Wait\""));
        assert!(lines[3].contains("\"Token\":7"));
    }

    #[test]
    fn arguments_are_checked_before_anything_is_written() {
        let mut l = link();
        for (name, delay) in [("", 0.0), ("x", 60_001.0), ("x", -1.0), ("x", f64::NAN)] {
            let e = l.session_lock(name, 1000.0, 0.0, 0.0, delay).unwrap_err();
            assert_eq!(e.code(), "InvalidArgument");
        }
        assert!(l.session(0.0).is_err());
        assert!(l.output().is_empty());
    }

    #[test]
    fn answers_become_results_or_clear_errors() {
        let mut l = link();
        answer(&mut l, r#"{"Status":"Done","Expire":10}"#);
        assert_eq!(l.read_session(), Ok(10_000.0));
        answer(&mut l, r#"{"Status":"BadAction"}"#);
        let e = l.read_session().unwrap_err();
        assert_eq!(e.code(), "BadRequest");
        assert!(e.to_string().contains("no sessions"));
        answer(
            &mut l,
            r#"{"Status":"Locked","ID":"me","Token":9,"Expire":30}"#,
        );
        assert_eq!(l.read_session_grant(false), Ok(9));
        answer(&mut l, r#"{"Status":"NotOwner"}"#);
        assert_eq!(l.read_session_grant(false).unwrap_err().code(), "NotOwner");
        answer(&mut l, r#"{"Status":"NotOwner"}"#);
        assert_eq!(l.read_session_grant(true).unwrap_err().code(), "Timeout");
        answer(&mut l, r#"{"Status":"Locked","ID":"me"}"#);
        assert_eq!(
            l.read_session_grant(false).unwrap_err().code(),
            "BadRequest"
        );
        answer(
            &mut l,
            r#"{"Status":"BadPayload","Error":"no session on this connection"}"#,
        );
        let e = l.read_session_grant(false).unwrap_err();
        assert!(e.to_string().contains("no session on this connection"));
        answer(&mut l, r#"{"Status":"Unlocked","ID":"me"}"#);
        assert_eq!(l.read_session_release(), Ok(()));
        answer(&mut l, r#"{"Status":"Unlocked"}"#);
        assert_eq!(l.read_session_release().unwrap_err().code(), "LockLost");
    }
}
