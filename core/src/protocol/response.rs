//! Responses: writing (server side) and parsing (client side).

use core::fmt::{self, Write as _};

use super::error::{Field, RequestError, ResponseError};
use super::json::{self, EscapingWriter, Scanner, Value};
use super::out::{BufferTooSmall, Legacy, Out};
use super::request::{MAX_LOCK_ALL, put_seconds};
use super::{Framing, Revision, Status, Token, parse_seconds_ms, parse_u64, unframe};
use crate::stats::{Stat, Stats};
use crate::time::Ttl;

/// The `Error` text of a response: a typed error when written by the
/// server, the received text when parsed by a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// Text as received.
    Text(&'a str),
    /// A request error, rendered with its `Display`.
    Request(RequestError),
}

impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(t) => f.write_str(t),
            Self::Request(e) => e.fmt(f),
        }
    }
}

/// One response. Fields that are `None` are not written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response<'a> {
    /// The outcome.
    pub status: Status,
    /// The entry's owner (on success only; never another owner's).
    pub id: Option<&'a str>,
    /// The stored value (`Get`).
    pub data: Option<&'a str>,
    /// The fencing token (`Locked`).
    pub token: Option<Token>,
    /// Remaining time to live.
    pub expire: Option<Ttl>,
    /// The value's revision (`Put`, `Get`, `Conflict`).
    pub revision: Option<Revision>,
    /// Why a request was refused (`BadPayload`, `BadAction`).
    pub error: Option<Message<'a>>,
    /// Statistics (`Stats`). Only written; [`Response::parse_stats`] reads them.
    pub stats: Option<&'a Stats>,
    /// The cluster's state (`Cluster`), a JSON object written and read as
    /// its text (extension).
    pub cluster: Option<&'a str>,
    /// What an `Admin` request asked for (the lock table or one lock), a
    /// JSON object written and read as its text (extension).
    pub admin: Option<&'a str>,
    /// A `LockAll`'s fencing tokens, one per name (extension).
    pub tokens: Option<TokenList<'a>>,
}

/// The fencing tokens of a granted `LockAll` (`Tokens`): one per name, in
/// the order of its `Names`. Kept as the JSON array's text, checked when
/// made: at most [`MAX_LOCK_ALL`] integers from 0 to 2^64-1.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenList<'a>(&'a str);

impl<'a> TokenList<'a> {
    /// `text` as a token list, if it is a JSON array of at most
    /// [`MAX_LOCK_ALL`] unsigned integers.
    pub fn parse(text: &'a str) -> Option<Self> {
        let inner = text.trim().strip_prefix('[')?.strip_suffix(']')?;
        if inner.trim().is_empty() {
            return Some(Self(text));
        }
        let mut n = 0;
        for part in inner.split(',') {
            n += 1;
            if n > MAX_LOCK_ALL || parse_u64(part.trim().as_bytes()).is_err() {
                return None;
            }
        }
        Some(Self(text))
    }

    /// The array's text, as written on the wire.
    pub const fn as_str(&self) -> &'a str {
        self.0
    }

    /// The tokens, in the order of the request's names.
    pub fn iter(&self) -> impl Iterator<Item = Token> + 'a {
        let text = self.0.trim();
        let inner = text.get(1..text.len().saturating_sub(1)).unwrap_or("");
        inner
            .split(',')
            .filter_map(|p| parse_u64(p.trim().as_bytes()).ok())
            .map(Token)
    }

    /// How many tokens.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl fmt::Debug for TokenList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter().map(|t| t.0)).finish()
    }
}

impl<'a> Response<'a> {
    /// A response with only a status.
    pub const fn new(status: Status) -> Self {
        Self {
            status,
            id: None,
            data: None,
            token: None,
            expire: None,
            revision: None,
            error: None,
            stats: None,
            cluster: None,
            admin: None,
            tokens: None,
        }
    }

    /// The response to a refused request.
    pub const fn rejected(error: RequestError) -> Self {
        let mut r = Self::new(error.status());
        r.error = Some(Message::Request(error));
        r
    }

    /// Writes this response as one line (with its `\n`) in `framing`.
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
        out.put(b"{\"Status\":\"")?;
        out.put(self.status.as_str().as_bytes())?;
        out.put(b"\"")?;
        if let Some(id) = self.id {
            out.put(b",\"ID\":\"")?;
            json::put_escaped(out, id)?;
            out.put(b"\"")?;
        }
        if let Some(data) = self.data {
            out.put(b",\"DataStore\":\"")?;
            json::put_escaped(out, data)?;
            out.put(b"\"")?;
        }
        if let Some(token) = self.token {
            out.put(b",\"Token\":")?;
            json::put_u64(out, token.0)?;
        }
        if let Some(expire) = self.expire {
            out.put(b",\"Expire\":")?;
            put_seconds(out, expire)?;
        }
        if let Some(revision) = self.revision {
            out.put(b",\"Revision\":")?;
            json::put_u64(out, revision.0)?;
        }
        if let Some(tokens) = self.tokens {
            out.put(b",\"Tokens\":")?;
            out.put(tokens.as_str().as_bytes())?;
        }
        if let Some(error) = &self.error {
            out.put(b",\"Error\":\"")?;
            let mut w = EscapingWriter {
                out: &mut *out,
                overflow: false,
            };
            if write!(w, "{error}").is_err() {
                return Err(BufferTooSmall);
            }
            out.put(b"\"")?;
        }
        if let Some(cluster) = self.cluster {
            out.put(b",\"Cluster\":")?;
            out.put(cluster.as_bytes())?;
        }
        if let Some(admin) = self.admin {
            out.put(b",\"Admin\":")?;
            out.put(admin.as_bytes())?;
        }
        if let Some(stats) = self.stats {
            out.put(b",\"Stats\":{")?;
            for (i, (stat, value)) in stats.iter().enumerate() {
                if i > 0 {
                    out.put(b",")?;
                }
                out.put(b"\"")?;
                out.put(stat.name().as_bytes())?;
                out.put(b"\":")?;
                json::put_u64(out, value)?;
            }
            out.put(b"}")?;
        }
        out.put(b"}")
    }

    /// Parses one response line in place (either framing). Strings borrow
    /// from `line`. `Stats` are skipped; see [`Response::parse_stats`].
    pub fn parse(line: &'a mut [u8]) -> Result<(Framing, Self), ResponseError> {
        let (framing, text) = unframe(line);
        let text = text.map_err(ResponseError::Encoding)?;
        parse_json(text, |_, _| Ok(())).map(|r| (framing, r))
    }

    /// Parses the reply to a `Stats` request into counters. Names this
    /// client does not know are ignored.
    pub fn parse_stats(line: &mut [u8]) -> Result<Stats, ResponseError> {
        let (_, text) = unframe(line);
        let text = text.map_err(ResponseError::Encoding)?;
        let mut stats = Stats::new();
        let mut seen = false;
        let r = parse_json(text, |scanner, span| {
            seen = true;
            scanner.for_each_nested(span, |key, value, buf| {
                let (Some(stat), Value::Num(n)) = (
                    core::str::from_utf8(key).ok().and_then(Stat::from_name),
                    value,
                ) else {
                    return Ok(());
                };
                let v = parse_u64(n.of(buf)).map_err(|_| ResponseError::BadField(Field::Stats))?;
                stats.set(stat, v);
                Ok::<(), ResponseError>(())
            })
        })?;
        if r.status != Status::Done || !seen {
            return Err(ResponseError::BadField(Field::Stats));
        }
        Ok(stats)
    }
}

/// Keeps member `key`'s `value` if `names` lists it (a second one is an
/// error): how a response line and an event line pick their fields.
pub(super) fn pick<const N: usize>(
    names: &[(&[u8], Field); N],
    values: &mut [Option<Value>; N],
    key: &[u8],
    value: Value,
) -> Result<(), ResponseError> {
    if let Some(i) = names.iter().position(|(k, _)| *k == key) {
        if values[i].is_some() {
            return Err(ResponseError::DuplicateField(names[i].1));
        }
        values[i] = Some(value);
    }
    Ok(())
}

/// The fields [`pick`] kept, read once the scan is over (`buf` is what
/// the scanner unescaped in place).
pub(super) struct Picked<'b, const N: usize> {
    pub(super) names: &'b [(&'b [u8], Field); N],
    pub(super) values: [Option<Value>; N],
    pub(super) buf: &'b [u8],
}

impl<'b, const N: usize> Picked<'b, N> {
    fn get(&self, i: usize) -> Option<Value> {
        match self.values[i] {
            None | Some(Value::Null) => None,
            v => v,
        }
    }

    /// Field `i` as text, if present (and not `null`).
    pub(super) fn string(&self, i: usize) -> Result<Option<&'b str>, ResponseError> {
        match self.get(i) {
            None => Ok(None),
            Some(Value::Str(span)) => core::str::from_utf8(span.of(self.buf))
                .map(Some)
                .map_err(|_| ResponseError::InvalidUtf8),
            Some(_) => Err(ResponseError::BadField(self.names[i].1)),
        }
    }

    /// Field `i` as an unsigned integer, if present (and not `null`).
    pub(super) fn integer(&self, i: usize) -> Result<Option<u64>, ResponseError> {
        match self.get(i) {
            None => Ok(None),
            Some(Value::Num(span)) => parse_u64(span.of(self.buf))
                .map(Some)
                .map_err(|_| ResponseError::BadField(self.names[i].1)),
            Some(_) => Err(ResponseError::BadField(self.names[i].1)),
        }
    }
}

fn parse_json(
    text: &mut [u8],
    mut on_stats: impl FnMut(&mut Scanner<'_>, json::Span) -> Result<(), ResponseError>,
) -> Result<Response<'_>, ResponseError> {
    const FIELDS: [(&[u8], Field); 7] = [
        (b"Status", Field::Status),
        (b"ID", Field::Id),
        (b"DataStore", Field::DataStore),
        (b"Token", Field::Token),
        (b"Expire", Field::Expire),
        (b"Revision", Field::Revision),
        (b"Error", Field::Error),
    ];
    if text.is_empty() {
        return Err(ResponseError::Empty);
    }
    if core::str::from_utf8(text).is_err() {
        return Err(ResponseError::InvalidUtf8);
    }
    let mut scanner = Scanner::new(text);
    scanner.begin_object()?;
    let mut values = [None; FIELDS.len()];
    let mut stats_seen = false;
    let mut cluster = None;
    let mut admin = None;
    let mut tokens = None;
    while let Some((key, value)) = scanner.next_member()? {
        let key = scanner.bytes(key);
        if key == b"Tokens" {
            let (None, Value::Array(span)) = (tokens, value) else {
                return Err(ResponseError::BadField(Field::Tokens));
            };
            tokens = Some(span);
            continue;
        }
        if key == b"Cluster" || key == b"Admin" {
            let Value::Object(span) = value else {
                return Err(ResponseError::BadField(Field::Stats));
            };
            if key == b"Cluster" {
                cluster = Some(span);
            } else {
                admin = Some(span);
            }
            continue;
        }
        if key == b"Stats" {
            if stats_seen {
                return Err(ResponseError::DuplicateField(Field::Stats));
            }
            stats_seen = true;
            match value {
                Value::Object(span) => on_stats(&mut scanner, span)?,
                _ => return Err(ResponseError::BadField(Field::Stats)),
            }
            continue;
        }
        pick(&FIELDS, &mut values, key, value)?;
    }
    let picked = Picked {
        names: &FIELDS,
        values,
        buf: scanner.finish()?,
    };
    let buf = picked.buf;
    let string = |i: usize| picked.string(i);
    let integer = |i: usize| picked.integer(i);
    let status = string(0)?.ok_or(ResponseError::MissingStatus)?;
    let status = Status::from_wire(status).ok_or(ResponseError::UnknownStatus)?;
    let expire = match picked.get(4) {
        None => None,
        Some(Value::Num(span) | Value::Str(span)) => Some(Ttl::from_millis(
            parse_seconds_ms(span.of(buf)).map_err(|_| ResponseError::BadField(Field::Expire))?,
        )),
        Some(_) => return Err(ResponseError::BadField(Field::Expire)),
    };
    Ok(Response {
        status,
        id: string(1)?,
        data: string(2)?,
        token: integer(3)?.map(Token),
        expire,
        revision: integer(5)?.map(Revision),
        error: string(6)?.map(Message::Text),
        stats: None,
        cluster: match cluster {
            Some(span) => {
                Some(core::str::from_utf8(span.of(buf)).map_err(|_| ResponseError::InvalidUtf8)?)
            }
            None => None,
        },
        admin: match admin {
            Some(span) => {
                Some(core::str::from_utf8(span.of(buf)).map_err(|_| ResponseError::InvalidUtf8)?)
            }
            None => None,
        },
        tokens: match tokens {
            Some(span) => Some(
                core::str::from_utf8(span.of(buf))
                    .ok()
                    .and_then(TokenList::parse)
                    .ok_or(ResponseError::BadField(Field::Tokens))?,
            ),
            None => None,
        },
    })
}
