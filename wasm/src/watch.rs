//! Watches on a [`Link`]: the `Watch` request, its answer, and event lines
//! packed for JavaScript (PROTOCOL.md section 8, "Watches").
//!
//! A watch has a connection of its own. Its answer is read with
//! [`Link::read_watch`]; then every chunk's complete lines are read at
//! once by [`Link::read_events`] into one byte string of packed records
//! (the layout below), so a chunk of events crosses into JavaScript as one
//! `Uint8Array`, not as an object per event or a call per field. A line
//! that is no event is the server's last word (cut off for reading too
//! slowly, stopping, a snapshot installed): reading stops there, and
//! the error it returns in `end` says why (the exported `Link.watchEnd()`
//! throws it).
//!
//! One record, little-endian (offsets in bytes):
//!
//! | at | size | what |
//! |---|---|---|
//! | 0 | 1 | event: 0 Granted, 1 Released, 2 Expired, 3 Put, 4 Erased |
//! | 1 | 1 | kind: 0 Lock, 1 Semaphore, 2 ReadWrite, 3 Data |
//! | 2 | 1 | flags: 1 token, 2 data revision, 4 owner, 8 value, 16 write side |
//! | 3 | 1 | 0 |
//! | 4 | 4 | permits (a semaphore's), else 0 |
//! | 8 | 8 | revision |
//! | 16 | 8 | token, else 0 |
//! | 24 | 8 | the value's own revision, else 0 |
//! | 32 | 4 | name length N |
//! | 36 | 4 | owner length O |
//! | 40 | 4 | value length V |
//! | 44 | N + O + V | name, owner (UTF-8), value (decoded bytes) |

use dlm_core::client::ErrorKind;
use dlm_core::engine::{Subject, What};
use dlm_core::protocol::{Resource, Response, Revision, Status, WatchEvent, WatchScope};

use crate::error::Error;
use crate::link::Link;
use crate::wire::{self, Decode, check_name, decode_table};

/// The size of a record's fixed part.
pub const HEADER: usize = 44;

const FLAG_TOKEN: u8 = 1;
const FLAG_DATA_REVISION: u8 = 2;
const FLAG_OWNER: u8 = 4;
const FLAG_VALUE: u8 = 8;
const FLAG_WRITE: u8 = 16;

fn what_code(w: What) -> u8 {
    match w {
        What::Granted => 0,
        What::Released => 1,
        What::Expired => 2,
        What::Put => 3,
        What::Erased => 4,
    }
}

fn len32(n: usize) -> Result<[u8; 4], Error> {
    u32::try_from(n)
        .map(u32::to_le_bytes)
        .map_err(|_| Error::new(ErrorKind::Protocol, "an event field longer than 4 GiB"))
}

/// Appends `e`'s record to `out`, its value decoded as `decode` says.
pub fn pack(e: &WatchEvent<'_>, decode: &Decode<'_>, out: &mut Vec<u8>) -> Result<(), Error> {
    let value = match e.value {
        None => None,
        Some(text) => Some(match decode {
            Decode::Text => text.as_bytes().to_vec(),
            Decode::Table => decode_table(text)?,
            Decode::Sealed(sealer, _) => sealer.open(e.name, text)?,
        }),
    };
    let (kind, permits, write) = match e.subject {
        Subject::Lock => (0u8, 0u32, false),
        Subject::Semaphore(n) => (1, n, false),
        Subject::ReadWrite { write } => (2, 0, write),
        Subject::Data => (3, 0, false),
    };
    let mut flags = 0u8;
    if e.token.is_some() {
        flags |= FLAG_TOKEN;
    }
    if e.data_revision.is_some() {
        flags |= FLAG_DATA_REVISION;
    }
    if e.owner.is_some() {
        flags |= FLAG_OWNER;
    }
    if value.is_some() {
        flags |= FLAG_VALUE;
    }
    if write {
        flags |= FLAG_WRITE;
    }
    let owner = e.owner.unwrap_or_default();
    let value = value.unwrap_or_default();
    let (name_len, owner_len, value_len) = (
        len32(e.name.len())?,
        len32(owner.len())?,
        len32(value.len())?,
    );
    out.reserve(HEADER + e.name.len() + owner.len() + value.len());
    out.extend_from_slice(&[what_code(e.what), kind, flags, 0]);
    out.extend_from_slice(&permits.to_le_bytes());
    out.extend_from_slice(&e.revision.to_le_bytes());
    out.extend_from_slice(&e.token.map_or(0, |t| t.0).to_le_bytes());
    out.extend_from_slice(&e.data_revision.map_or(0, |r| r.0).to_le_bytes());
    out.extend_from_slice(&name_len);
    out.extend_from_slice(&owner_len);
    out.extend_from_slice(&value_len);
    out.extend_from_slice(e.name.as_bytes());
    out.extend_from_slice(owner.as_bytes());
    out.extend_from_slice(&value);
    Ok(())
}

/// Why the server ended a watch, from its last line: `Unavailable` with
/// the server's reason (for `NO`, "watch cut off: too many events
/// unread ..." or "restored a snapshot"), `current` the last revision it
/// sent.
fn ended(line: &mut [u8]) -> Error {
    match Response::parse(line) {
        Ok((_, r)) => {
            let why = r
                .error
                .map_or_else(|| format!("{:?}", r.status), |m| m.to_string());
            let mut e = Error::new(
                ErrorKind::Unavailable,
                format!("the server ended the watch: {why}"),
            );
            if let Some(Revision(s)) = r.revision {
                e = e.with_current(s);
            }
            e
        }
        Err(_) => Error::new(ErrorKind::Protocol, "a bad line on a watch"),
    }
}

impl Link {
    /// Appends `Watch` of every name that starts with `scope` (`prefix`)
    /// or of the one name `scope`, after revision `since` if given.
    pub fn watch(&mut self, scope: &str, prefix: bool, since: Option<u64>) -> Result<(), Error> {
        let scope = if prefix {
            WatchScope::Prefix(scope)
        } else {
            check_name(scope)?;
            WatchScope::Name(Resource(scope))
        };
        let (writer, out) = self.writer_and_output();
        wire::write(&writer.core().watch(scope, since.map(Revision)), out);
        Ok(())
    }

    /// Reads the answer to `watch`: the revision events follow. `Conflict`
    /// (with the current revision) if the server no longer keeps the
    /// events after `since`; `Unavailable` (with its reason) if it cannot
    /// serve a watch now; `BadRequest` from a server that does not know
    /// `Watch` or refuses it.
    pub fn read_watch(&mut self) -> Result<u64, Error> {
        let line = self.next_line()?;
        let r = Response::parse(line)?.1;
        let why = || r.error.map(|m| m.to_string()).unwrap_or_default();
        match r.status {
            Status::Done => r.revision.map(|Revision(v)| v).ok_or_else(|| {
                Error::new(ErrorKind::Protocol, "Watch answered without Revision")
            }),
            Status::Conflict => Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "the server no longer keeps those events; read the state again and watch from the current revision ({})",
                    why()
                ),
            )
            .with_current(r.revision.map_or(0, |Revision(v)| v))),
            Status::No => Err(Error::new(ErrorKind::Unavailable, why())),
            Status::BadAction => Err(Error::new(
                ErrorKind::BadRequest,
                "the server does not know Watch (JackrabbitDLM, or an older dlm)",
            )),
            Status::BadPayload => Err(Error::new(ErrorKind::BadRequest, why())),
            s => Err(Error::new(
                ErrorKind::Protocol,
                format!("an unexpected answer to Watch: {s:?}"),
            )),
        }
    }

    /// Reads every complete event line received, packed (see the module's
    /// table), values decoded as `decode` says. Stops at a line that is no
    /// event: the watch is over, and `end` is set to the error that says
    /// why (the events before it are returned first).
    pub fn read_events(
        &mut self,
        decode: &Decode<'_>,
        end: &mut Option<Error>,
    ) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        while end.is_none() && self.has_line() {
            let line = self.next_line()?;
            if !WatchEvent::is_event(line) {
                *end = Some(ended(line));
                break;
            }
            let e = WatchEvent::parse(line)
                .map_err(|e| Error::new(ErrorKind::Protocol, format!("a bad event line: {e}")))?;
            pack(&e, decode, &mut out)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Sealer, Writer, encode_table};

    fn link() -> Link {
        Link::new(Writer::new("me".into(), false, None).unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn len_at(b: &[u8], at: usize) -> usize {
        usize::try_from(u32_at(b, at)).unwrap()
    }

    /// One unpacked record: event, kind, flags, permits, revision, token,
    /// data revision, name, owner, value.
    type Record = (u8, u8, u8, u32, u64, u64, u64, String, String, Vec<u8>);

    /// Unpacks records as the package's JavaScript does.
    fn unpack(mut b: &[u8]) -> Vec<Record> {
        let mut v = Vec::new();
        while !b.is_empty() {
            let (n, o, l) = (len_at(b, 32), len_at(b, 36), len_at(b, 40));
            let body = &b[HEADER..];
            v.push((
                b[0],
                b[1],
                b[2],
                u32_at(b, 4),
                u64_at(b, 8),
                u64_at(b, 16),
                u64_at(b, 24),
                String::from_utf8(body[..n].to_vec()).unwrap(),
                String::from_utf8(body[n..n + o].to_vec()).unwrap(),
                body[n + o..n + o + l].to_vec(),
            ));
            b = &b[HEADER + n + o + l..];
        }
        v
    }

    #[test]
    fn the_request_names_its_scope_and_revision() {
        let mut l = link();
        l.watch("jobs/", true, Some(41)).unwrap();
        l.watch("jobs/1", false, None).unwrap();
        assert_eq!(
            l.watch("", false, None).unwrap_err().code(),
            "InvalidArgument"
        );
        let out = String::from_utf8(l.output().to_vec()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].contains("\"Prefix\":\"jobs/\"") && lines[0].contains("\"Revision\":41"));
        assert!(lines[1].contains("\"FileName\":\"jobs/1\""));
    }

    #[test]
    fn answers_to_watch() {
        let mut l = link();
        let feed = |l: &mut Link, t: &str| l.feed(format!("{t}\n").as_bytes()).unwrap();
        feed(&mut l, r#"{"Status":"Done","Revision":7}"#);
        assert_eq!(l.read_watch(), Ok(7));
        feed(
            &mut l,
            r#"{"Status":"Conflict","Revision":90,"Error":"history compacted: x"}"#,
        );
        let e = l.read_watch().unwrap_err();
        assert_eq!((e.code(), e.current()), ("Conflict", Some(90)));
        assert!(e.to_string().contains("history compacted"));
        feed(&mut l, r#"{"Status":"BadAction"}"#);
        assert_eq!(l.read_watch().unwrap_err().code(), "BadRequest");
        feed(&mut l, r#"{"Status":"NO","Error":"no leader yet"}"#);
        let e = l.read_watch().unwrap_err();
        assert_eq!(e.code(), "Unavailable");
        assert!(e.to_string().contains("no leader yet"));
    }

    #[test]
    fn events_are_packed_in_order_until_the_last_word() {
        let mut l = link();
        let text = format!(
            concat!(
                r#"{{"Status":"Event","Event":"Granted","Kind":"Lock","FileName":"a","Revision":5,"Token":9,"ID":"me"}}"#,
                "\n",
                r#"{{"Status":"Event","Event":"Put","Kind":"Data","FileName":"k","Revision":6,"DataRevision":2,"ID":"me","DataStore":"{}"}}"#,
                "\n",
                r#"{{"Status":"Event","Event":"Granted","Kind":"ReadWrite","Mode":"Write","FileName":"rw","Revision":7,"Token":10}}"#,
                "\n",
                r#"{{"Status":"Event","Event":"Expired","Kind":"Semaphore","Permits":3,"FileName":"s","Revision":8,"Token":11}}"#,
                "\n",
                r#"{{"Status":"NO","Error":"watch cut off: too many events unread","Revision":8}}"#,
                "\n",
                r#"{{"Status":"Event","Event":"Erased","Kind":"Data","FileName":"k","Revision":9}}"#,
                "\n",
            ),
            encode_table(b"hi")
        );
        // Split anywhere: what is complete is read, the rest waits.
        let (x, y) = text.as_bytes().split_at(50);
        let mut end = None;
        l.feed(x).unwrap();
        assert!(l.read_events(&Decode::Table, &mut end).unwrap().is_empty());
        l.feed(y).unwrap();
        let packed = l.read_events(&Decode::Table, &mut end).unwrap();
        let v = unpack(&packed);
        assert_eq!(v.len(), 4);
        assert_eq!(
            v[0],
            (
                0,
                0,
                FLAG_TOKEN | FLAG_OWNER,
                0,
                5,
                9,
                0,
                "a".into(),
                "me".into(),
                vec![]
            )
        );
        assert_eq!(
            v[1],
            (
                3,
                3,
                FLAG_DATA_REVISION | FLAG_OWNER | FLAG_VALUE,
                0,
                6,
                0,
                2,
                "k".into(),
                "me".into(),
                b"hi".to_vec()
            )
        );
        assert_eq!((v[2].1, v[2].2), (2, FLAG_TOKEN | FLAG_WRITE));
        assert_eq!((v[3].0, v[3].1, v[3].3), (2, 1, 3));
        let e = end.unwrap();
        assert_eq!((e.code(), e.current()), ("Unavailable", Some(8)));
        assert!(e.to_string().contains("cut off"));
        // Nothing after the last word is read.
        let mut again = Some(e);
        assert!(
            l.read_events(&Decode::Table, &mut again)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn values_are_decoded_as_asked_and_bad_ones_are_errors() {
        let sealer = Sealer::new(&[3; 32]).unwrap();
        let sealed = sealer.seal(&[1; 24], "k", b"secret").unwrap();
        let mut l = link();
        let line = |v: &str| {
            format!(
                r#"{{"Status":"Event","Event":"Put","Kind":"Data","FileName":"k","Revision":1,"DataRevision":1,"ID":"me","DataStore":"{v}"}}"#
            ) + "\n"
        };
        let mut end = None;
        l.feed(line(&sealed).as_bytes()).unwrap();
        let v = unpack(
            &l.read_events(&Decode::Sealed(&sealer, ""), &mut end)
                .unwrap(),
        );
        assert_eq!(v[0].9, b"secret");
        l.feed(line("plain").as_bytes()).unwrap();
        let v = unpack(&l.read_events(&Decode::Text, &mut end).unwrap());
        assert_eq!(v[0].9, b"plain");
        l.feed(line("plain").as_bytes()).unwrap();
        assert_eq!(
            l.read_events(&Decode::Sealed(&sealer, ""), &mut end)
                .unwrap_err()
                .code(),
            "Encoding"
        );
        l.feed(b"{\"Status\":\"Event\",\"Event\":\"Nope\"}\n")
            .unwrap();
        assert_eq!(
            l.read_events(&Decode::Text, &mut end).unwrap_err().code(),
            "Protocol"
        );
        assert!(end.is_none());
    }
}
