//! Watch event lines (PROTOCOL.md section 8, "Watches"): written by the
//! server to a watching connection, parsed by clients.
//!
//! ```text
//! {"Status":"Event","Event":"Granted","Kind":"Lock","FileName":"jobs","Revision":42,"Token":7}
//! ```
//!
//! `Status` is always the first member of an event line, so that a client
//! can tell an event from an answer ([`WatchEvent::is_event`]) before it
//! parses the line in place.

use super::error::{Field, ResponseError};
use super::json::{self, Scanner};
use super::out::{BufferTooSmall, Legacy, Out};
use super::response::{Picked, pick};
use super::{Framing, Revision, Token, unframe};
use crate::codec;
use crate::engine::{Subject, What};

/// What every event line starts with (before framing).
const EVENT_HEAD: &[u8] = b"{\"Status\":\"Event\"";

/// One change, as a watcher is told it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchEvent<'a> {
    /// The change's revision (`Revision`): the same on every cluster
    /// member, one more than the change before it on the server.
    pub revision: u64,
    /// What happened (`Event`).
    pub what: What,
    /// To what (`Kind`, with `Permits` for a semaphore and `Mode` for a
    /// read/write hold).
    pub subject: Subject,
    /// The lock name or data key (`FileName`).
    pub name: &'a str,
    /// The owner (`ID`), only to a watcher that may read it.
    pub owner: Option<&'a str>,
    /// The grant's fencing token (`Token`; locks and holds).
    pub token: Option<Token>,
    /// The stored value (`DataStore`; `Put`), only to a watcher that may
    /// read it.
    pub value: Option<&'a str>,
    /// The value's own revision (`DataRevision`; `Put`).
    pub data_revision: Option<Revision>,
}

impl<'a> WatchEvent<'a> {
    /// Writes this event as one line (with its `\n`) in `framing`.
    pub fn write<O: Out + ?Sized>(
        &self,
        framing: Framing,
        out: &mut O,
    ) -> Result<(), BufferTooSmall> {
        match framing {
            Framing::Plain => self.write_json(out)?,
            Framing::Legacy => self.write_json(&mut Legacy(out))?,
        }
        out.put(b"\n")
    }

    fn write_json<O: Out + ?Sized>(&self, out: &mut O) -> Result<(), BufferTooSmall> {
        out.put(EVENT_HEAD)?;
        out.put(b",\"Event\":\"")?;
        out.put(self.what.as_str().as_bytes())?;
        out.put(b"\",\"Kind\":\"")?;
        out.put(self.subject.as_str().as_bytes())?;
        out.put(b"\"")?;
        match self.subject {
            Subject::Semaphore(n) => {
                out.put(b",\"Permits\":")?;
                json::put_u64(out, u64::from(n))?;
            }
            Subject::ReadWrite { write } => {
                out.put(if write {
                    b",\"Mode\":\"Write\"".as_slice()
                } else {
                    b",\"Mode\":\"Read\"".as_slice()
                })?;
            }
            Subject::Lock | Subject::Data => {}
        }
        out.put(b",\"FileName\":\"")?;
        json::put_escaped(out, self.name)?;
        out.put(b"\",\"Revision\":")?;
        json::put_u64(out, self.revision)?;
        if let Some(t) = self.token {
            out.put(b",\"Token\":")?;
            json::put_u64(out, t.0)?;
        }
        if let Some(id) = self.owner {
            out.put(b",\"ID\":\"")?;
            json::put_escaped(out, id)?;
            out.put(b"\"")?;
        }
        if let Some(v) = self.value {
            out.put(b",\"DataStore\":\"")?;
            json::put_escaped(out, v)?;
            out.put(b"\"")?;
        }
        if let Some(r) = self.data_revision {
            out.put(b",\"DataRevision\":")?;
            json::put_u64(out, r.0)?;
        }
        out.put(b"}")
    }

    /// Whether `line` (either framing, as received) is an event line
    /// rather than an answer. Does not change `line`.
    pub fn is_event(line: &[u8]) -> bool {
        let start = line
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(line.len());
        let text = &line[start..];
        if text.first() == Some(&b'{') {
            return text.starts_with(EVENT_HEAD);
        }
        text.len() >= EVENT_HEAD.len() * 2
            && EVENT_HEAD
                .iter()
                .zip(text.chunks_exact(2))
                .all(|(&b, pair)| codec::encode_byte(b) == [pair[0], pair[1]])
    }

    /// Parses one event line in place (either framing). Strings borrow
    /// from `line`. A line that is not an event is an error
    /// ([`ResponseError::UnknownStatus`]); see [`is_event`](Self::is_event).
    pub fn parse(line: &'a mut [u8]) -> Result<Self, ResponseError> {
        const FIELDS: [(&[u8], Field); 11] = [
            (b"Status", Field::Status),
            (b"Event", Field::Event),
            (b"Kind", Field::Kind),
            (b"FileName", Field::FileName),
            (b"Revision", Field::Revision),
            (b"Token", Field::Token),
            (b"ID", Field::Id),
            (b"DataStore", Field::DataStore),
            (b"DataRevision", Field::DataRevision),
            (b"Permits", Field::Permits),
            (b"Mode", Field::Mode),
        ];
        let (_, text) = unframe(line);
        let text = text.map_err(ResponseError::Encoding)?;
        if text.is_empty() {
            return Err(ResponseError::Empty);
        }
        if core::str::from_utf8(text).is_err() {
            return Err(ResponseError::InvalidUtf8);
        }
        let mut scanner = Scanner::new(text);
        scanner.begin_object()?;
        let mut values = [None; FIELDS.len()];
        while let Some((key, value)) = scanner.next_member()? {
            let key = scanner.bytes(key);
            pick(&FIELDS, &mut values, key, value)?;
        }
        let picked = Picked {
            names: &FIELDS,
            values,
            buf: scanner.finish()?,
        };
        let string = |i: usize| picked.string(i);
        let integer = |i: usize| picked.integer(i);
        if string(0)?.ok_or(ResponseError::MissingStatus)? != "Event" {
            return Err(ResponseError::UnknownStatus);
        }
        let what = string(1)?
            .and_then(What::from_wire)
            .ok_or(ResponseError::BadField(Field::Event))?;
        let bad_kind = ResponseError::BadField(Field::Kind);
        let subject = match string(2)?.ok_or(bad_kind)? {
            "Lock" => Subject::Lock,
            "Data" => Subject::Data,
            "Semaphore" => Subject::Semaphore(
                integer(9)?
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or(ResponseError::BadField(Field::Permits))?,
            ),
            "ReadWrite" => Subject::ReadWrite {
                write: match string(10)? {
                    Some("Write") => true,
                    Some("Read") => false,
                    _ => return Err(ResponseError::BadField(Field::Mode)),
                },
            },
            _ => return Err(bad_kind),
        };
        Ok(Self {
            revision: integer(4)?.ok_or(ResponseError::BadField(Field::Revision))?,
            what,
            subject,
            name: string(3)?.ok_or(ResponseError::BadField(Field::FileName))?,
            owner: string(6)?,
            token: integer(5)?.map(Token),
            value: string(7)?,
            data_revision: integer(8)?.map(Revision),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn round_trip(ev: WatchEvent<'_>, framing: Framing) {
        let mut out = Vec::new();
        ev.write(framing, &mut out).unwrap();
        assert!(WatchEvent::is_event(&out), "{out:?}");
        let back = WatchEvent::parse(&mut out).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn events_round_trip_in_both_framings() {
        let events = [
            WatchEvent {
                revision: 1,
                what: What::Granted,
                subject: Subject::Lock,
                name: "jobs/\"1\"",
                owner: None,
                token: Some(Token(9)),
                value: None,
                data_revision: None,
            },
            WatchEvent {
                revision: u64::MAX,
                what: What::Put,
                subject: Subject::Data,
                name: "k\u{e9}",
                owner: Some("me"),
                token: None,
                value: Some("a^1l"),
                data_revision: Some(Revision(3)),
            },
            WatchEvent {
                revision: 5,
                what: What::Expired,
                subject: Subject::Semaphore(3),
                name: "s",
                owner: None,
                token: Some(Token(1)),
                value: None,
                data_revision: None,
            },
            WatchEvent {
                revision: 6,
                what: What::Released,
                subject: Subject::ReadWrite { write: true },
                name: "rw",
                owner: Some("x"),
                token: Some(Token(2)),
                value: None,
                data_revision: None,
            },
        ];
        for ev in events {
            round_trip(ev, Framing::Plain);
            round_trip(ev, Framing::Legacy);
        }
    }

    #[test]
    fn answers_are_not_events() {
        let mut out = Vec::new();
        super::super::Response::new(super::super::Status::Done)
            .write(Framing::Legacy, &mut out)
            .unwrap();
        assert!(!WatchEvent::is_event(&out));
        assert!(!WatchEvent::is_event(b"{\"Status\":\"Done\"}\n"));
        assert!(!WatchEvent::is_event(b""));
        let mut line = b"{\"Status\":\"Done\"}".to_vec();
        assert_eq!(
            WatchEvent::parse(&mut line),
            Err(ResponseError::UnknownStatus)
        );
        let mut line = b"{\"Status\":\"Event\",\"Event\":\"Nope\"}".to_vec();
        assert_eq!(
            WatchEvent::parse(&mut line),
            Err(ResponseError::BadField(Field::Event))
        );
    }
}
