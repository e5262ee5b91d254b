//! A small, strict JSON reader and writer for one-line objects.
//!
//! The reader works **in place** on a mutable line buffer: string escapes
//! are decoded over the escaped text (the decoded form is never longer), so
//! parsed strings borrow from the line and nothing is allocated. It reads one
//! top-level object member by member; values of members the caller ignores
//! are validated and skipped with an explicit bit stack bounded by
//! [`MAX_JSON_DEPTH`](crate::limits::MAX_JSON_DEPTH), never by recursion.
//!
//! Why not serde-json-core: it cannot borrow a string that contains escapes
//! (JackrabbitDLM's Python client escapes every non-ASCII character), its
//! errors do not say which field was wrong, and it cannot skip nested
//! unknown values under a depth bound. This reader is differential-tested
//! against `serde_json` instead.

use core::fmt;

use super::out::{BufferTooSmall, Out};
use crate::limits::MAX_JSON_DEPTH;

/// A JSON syntax error, with the byte offset where it was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonError {
    /// The text ended inside a value.
    UnexpectedEnd,
    /// A byte that cannot start or continue the expected token.
    Unexpected {
        /// Byte offset in the (decoded) JSON text.
        offset: usize,
    },
    /// An unescaped control character inside a string.
    ControlCharacter {
        /// Byte offset in the (decoded) JSON text.
        offset: usize,
    },
    /// A malformed `\` escape.
    InvalidEscape {
        /// Byte offset in the (decoded) JSON text.
        offset: usize,
    },
    /// A `\u` escape of half a surrogate pair.
    LoneSurrogate {
        /// Byte offset in the (decoded) JSON text.
        offset: usize,
    },
    /// A malformed number.
    InvalidNumber {
        /// Byte offset in the (decoded) JSON text.
        offset: usize,
    },
    /// Containers nested deeper than the limit.
    TooDeep,
    /// Something other than whitespace after the object.
    Trailing {
        /// Byte offset in the (decoded) JSON text.
        offset: usize,
    },
    /// The text is not a JSON object.
    NotAnObject,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnexpectedEnd => f.write_str("JSON ends too early"),
            Self::Unexpected { offset } => write!(f, "unexpected character at offset {offset}"),
            Self::ControlCharacter { offset } => {
                write!(f, "control character in string at offset {offset}")
            }
            Self::InvalidEscape { offset } => write!(f, "invalid escape at offset {offset}"),
            Self::LoneSurrogate { offset } => {
                write!(f, "unpaired surrogate escape at offset {offset}")
            }
            Self::InvalidNumber { offset } => write!(f, "invalid number at offset {offset}"),
            Self::TooDeep => write!(f, "JSON nested deeper than {MAX_JSON_DEPTH} levels"),
            Self::Trailing { offset } => write!(f, "trailing characters at offset {offset}"),
            Self::NotAnObject => f.write_str("request is not a JSON object"),
        }
    }
}

impl core::error::Error for JsonError {}

/// Why [`Scanner::join_strings`] refused an array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JoinError {
    /// Malformed JSON.
    Json(JsonError),
    /// More elements than allowed.
    TooMany,
    /// An element that is not a string, or a string refused.
    Element,
}

impl From<JsonError> for JoinError {
    fn from(e: JsonError) -> Self {
        Self::Json(e)
    }
}

/// A byte range of the line buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Span {
    pub(crate) fn of(self, buf: &[u8]) -> &[u8] {
        &buf[self.start..self.end]
    }
}

/// One member value. Strings are already unescaped in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    Str(Span),
    Num(Span),
    Null,
    Bool(bool),
    Object(Span),
    Array(Span),
}

impl Value {
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Num(_) => "a number",
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Object(_) => "an object",
            Value::Array(_) => "an array",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    ValueOrClose,
    KeyOrClose,
    Value,
    Key,
    CommaOrClose,
}

/// Reads the members of one JSON object from a mutable buffer.
pub(crate) struct Scanner<'b> {
    buf: &'b mut [u8],
    pos: usize,
    first: bool,
    done: bool,
}

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl<'b> Scanner<'b> {
    pub(crate) fn new(buf: &'b mut [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            first: true,
            done: false,
        }
    }

    /// The bytes of a span read so far.
    pub(crate) fn bytes(&self, span: Span) -> &[u8] {
        span.of(self.buf)
    }

    /// The whole buffer, which spans index into.
    #[cfg(feature = "alloc")]
    pub(crate) fn whole(&self) -> &[u8] {
        self.buf
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(&b) = self.buf.get(self.pos) {
            if !is_ws(b) {
                break;
            }
            self.pos += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Result<u8, JsonError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(JsonError::UnexpectedEnd)
    }

    fn unexpected(&self) -> JsonError {
        if self.pos >= self.buf.len() {
            JsonError::UnexpectedEnd
        } else {
            JsonError::Unexpected { offset: self.pos }
        }
    }

    /// Consumes the opening brace of the top-level object.
    pub(crate) fn begin_object(&mut self) -> Result<(), JsonError> {
        self.skip_ws();
        if self.buf.get(self.pos) == Some(&b'{') {
            self.pos += 1;
            Ok(())
        } else {
            Err(JsonError::NotAnObject)
        }
    }

    /// The next member of the current object, or `None` after its `}`.
    pub(crate) fn next_member(&mut self) -> Result<Option<(Span, Value)>, JsonError> {
        if self.done {
            return Ok(None);
        }
        self.skip_ws();
        let b = self.peek()?;
        if b == b'}' {
            self.pos += 1;
            self.done = true;
            return Ok(None);
        }
        if !self.first {
            if b != b',' {
                return Err(self.unexpected());
            }
            self.pos += 1;
            self.skip_ws();
        }
        self.first = false;
        if self.peek()? != b'"' {
            return Err(self.unexpected());
        }
        let key = self.string(true)?;
        self.skip_ws();
        if self.peek()? != b':' {
            return Err(self.unexpected());
        }
        self.pos += 1;
        self.skip_ws();
        let value = self.value()?;
        Ok(Some((key, value)))
    }

    /// Reads the members of a nested object whose `{` is at `span.start`,
    /// calling `f` for each; strings in it are unescaped in place.
    pub(crate) fn for_each_nested<E: From<JsonError>>(
        &mut self,
        span: Span,
        mut f: impl FnMut(&[u8], Value, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut sub = Scanner {
            buf: &mut self.buf[..span.end],
            pos: span.start + 1,
            first: true,
            done: false,
        };
        while let Some((k, v)) = sub.next_member()? {
            let buf: &[u8] = sub.buf;
            f(k.of(buf), v, buf)?;
        }
        Ok(())
    }

    /// Reads the elements of a nested array whose `[` is at `span.start`,
    /// calling `f` with a scanner positioned after each element (to read a
    /// nested object with [`for_each_nested`](Self::for_each_nested)) and
    /// the element's value; strings in it are unescaped in place.
    pub(crate) fn for_each_element<E: From<JsonError>>(
        &mut self,
        span: Span,
        mut f: impl FnMut(&mut Scanner<'_>, Value) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut sub = Scanner {
            buf: &mut self.buf[..span.end],
            pos: span.start + 1,
            first: true,
            done: false,
        };
        loop {
            sub.skip_ws();
            let b = sub.peek()?;
            if b == b']' {
                return Ok(());
            }
            if !sub.first {
                if b != b',' {
                    return Err(sub.unexpected().into());
                }
                sub.pos += 1;
                sub.skip_ws();
            }
            sub.first = false;
            let v = sub.value()?;
            f(&mut sub, v)?;
        }
    }

    /// Moves the bytes of `spans` (in increasing order, each at least two
    /// bytes after where the one before ends, as strings in an array are)
    /// to start at `at` (at least two bytes before the first), each
    /// followed by `end`, and returns where they now are. Every byte moves
    /// left, so nothing is overwritten before it is copied.
    pub(crate) fn pack(&mut self, at: usize, spans: &[Span], end: u8) -> Span {
        let mut to = at;
        for s in spans {
            self.buf.copy_within(s.start..s.end, to);
            to += s.end - s.start;
            if let Some(b) = self.buf.get_mut(to) {
                *b = end;
            }
            to += 1;
        }
        Span {
            start: at,
            end: to.min(self.buf.len()),
        }
    }

    /// Rewrites the array whose `[` is at `span.start`, an array of
    /// strings, in place as its strings (unescaped) joined by `sep`, and
    /// returns the span of the joined text. Stops at the first element that
    /// is not a string or that `ok` refuses (so `ok` must refuse `sep`),
    /// and after `max` elements: a longer array is refused before the
    /// rest is read.
    ///
    /// The joined text never overruns what was read: each element took at
    /// least its bytes and two quotes, and gives back its bytes and one
    /// separator.
    pub(crate) fn join_strings(
        &mut self,
        span: Span,
        sep: u8,
        max: usize,
        ok: impl Fn(&[u8]) -> bool,
    ) -> Result<Span, JoinError> {
        let mut sub = Scanner {
            buf: &mut self.buf[..span.end],
            pos: span.start + 1,
            first: true,
            done: false,
        };
        let mut write = span.start;
        let mut count = 0;
        loop {
            sub.skip_ws();
            let b = sub.peek()?;
            if b == b']' {
                break;
            }
            if !sub.first {
                if b != b',' {
                    return Err(sub.unexpected().into());
                }
                sub.pos += 1;
                sub.skip_ws();
            }
            sub.first = false;
            count += 1;
            if count > max {
                return Err(JoinError::TooMany);
            }
            let Value::Str(s) = sub.value()? else {
                return Err(JoinError::Element);
            };
            if !ok(s.of(sub.buf)) {
                return Err(JoinError::Element);
            }
            if count > 1 {
                sub.buf[write] = sep;
                write += 1;
            }
            sub.buf.copy_within(s.start..s.end, write);
            write += s.end - s.start;
        }
        Ok(Span {
            start: span.start,
            end: write,
        })
    }

    /// Checks that only whitespace follows the object and hands back the
    /// buffer, now read-only, so spans can become borrowed strings.
    pub(crate) fn finish(mut self) -> Result<&'b [u8], JsonError> {
        debug_assert!(self.done);
        self.skip_ws();
        if self.pos < self.buf.len() {
            return Err(JsonError::Trailing { offset: self.pos });
        }
        Ok(self.buf)
    }

    fn value(&mut self) -> Result<Value, JsonError> {
        match self.peek()? {
            b'"' => Ok(Value::Str(self.string(true)?)),
            b'-' | b'0'..=b'9' => Ok(Value::Num(self.number()?)),
            b't' => self.literal(b"true").map(|()| Value::Bool(true)),
            b'f' => self.literal(b"false").map(|()| Value::Bool(false)),
            b'n' => self.literal(b"null").map(|()| Value::Null),
            open @ (b'{' | b'[') => {
                let start = self.pos;
                self.skip_container()?;
                let span = Span {
                    start,
                    end: self.pos,
                };
                Ok(if open == b'{' {
                    Value::Object(span)
                } else {
                    Value::Array(span)
                })
            }
            _ => Err(self.unexpected()),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        let end = self.pos + word.len();
        if self.buf.get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    /// A number per RFC 8259; returns its span.
    fn number(&mut self) -> Result<Span, JsonError> {
        let start = self.pos;
        let bad = JsonError::InvalidNumber { offset: start };
        let digits = |s: &mut Self| {
            let from = s.pos;
            while s.buf.get(s.pos).is_some_and(u8::is_ascii_digit) {
                s.pos += 1;
            }
            s.pos - from
        };
        if self.buf.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.buf.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(bad),
        }
        if self.buf.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if digits(self) == 0 {
                return Err(bad);
            }
        }
        if matches!(self.buf.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.buf.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return Err(bad);
            }
        }
        Ok(Span {
            start,
            end: self.pos,
        })
    }

    fn hex4(&self, at: usize) -> Result<u32, JsonError> {
        let digits = self.buf.get(at..at + 4).ok_or(JsonError::UnexpectedEnd)?;
        let mut v = 0u32;
        for &d in digits {
            let n = char::from(d)
                .to_digit(16)
                .ok_or(JsonError::InvalidEscape { offset: at })?;
            v = v * 16 + n;
        }
        Ok(v)
    }

    /// Decodes the escape whose backslash is at `at`: returns the UTF-8
    /// bytes it stands for, how many there are, and how many input bytes
    /// it took.
    fn escape(&self, at: usize) -> Result<([u8; 4], usize, usize), JsonError> {
        let one = |b: u8| Ok(([b, 0, 0, 0], 1, 2));
        match self.buf.get(at + 1).copied() {
            None => Err(JsonError::UnexpectedEnd),
            Some(b @ (b'"' | b'\\' | b'/')) => one(b),
            Some(b'b') => one(0x08),
            Some(b'f') => one(0x0C),
            Some(b'n') => one(b'\n'),
            Some(b'r') => one(b'\r'),
            Some(b't') => one(b'\t'),
            Some(b'u') => {
                let hi = self.hex4(at + 2)?;
                let (cp, used) = match hi {
                    0xD800..=0xDBFF => {
                        let lone = JsonError::LoneSurrogate { offset: at };
                        if self.buf.get(at + 6..at + 8) != Some(b"\\u") {
                            return Err(lone);
                        }
                        let lo = self.hex4(at + 8)?;
                        if !(0xDC00..=0xDFFF).contains(&lo) {
                            return Err(lone);
                        }
                        (0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00), 12)
                    }
                    0xDC00..=0xDFFF => return Err(JsonError::LoneSurrogate { offset: at }),
                    _ => (hi, 6),
                };
                let c = char::from_u32(cp).ok_or(JsonError::InvalidEscape { offset: at })?;
                let mut out = [0u8; 4];
                let n = c.encode_utf8(&mut out).len();
                Ok((out, n, used))
            }
            Some(_) => Err(JsonError::InvalidEscape { offset: at }),
        }
    }

    /// Reads a string whose `"` is at `pos`. With `unescape`, escapes are
    /// decoded in place and the span covers the decoded text; without, the
    /// text is only validated and the span covers it as written.
    fn string(&mut self, unescape: bool) -> Result<Span, JsonError> {
        let start = self.pos + 1;
        let mut r = start;
        let mut w = start;
        loop {
            let k = self.buf[r..]
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .ok_or(JsonError::UnexpectedEnd)?;
            if unescape && w != r {
                self.buf.copy_within(r..r + k, w);
            }
            r += k;
            w += k;
            match self.buf[r] {
                b'"' => {
                    self.pos = r + 1;
                    let end = if unescape { w } else { r };
                    return Ok(Span { start, end });
                }
                b'\\' => {
                    let (bytes, n, used) = self.escape(r)?;
                    if unescape {
                        self.buf[w..w + n].copy_from_slice(&bytes[..n]);
                    }
                    w += n;
                    r += used;
                }
                _ => return Err(JsonError::ControlCharacter { offset: r }),
            }
        }
    }

    /// Validates and skips an object or array whose opening bracket is at
    /// `pos`, without recursion and without modifying it.
    fn skip_container(&mut self) -> Result<(), JsonError> {
        // Bit `i` of `objects` says whether nesting level `i` is an object.
        let mut objects: u64 = 0;
        let mut depth = 0usize;
        let mut expect;
        macro_rules! open {
            () => {{
                if depth == MAX_JSON_DEPTH {
                    return Err(JsonError::TooDeep);
                }
                let is_object = self.buf[self.pos] == b'{';
                self.pos += 1;
                if is_object {
                    objects |= 1 << depth;
                } else {
                    objects &= !(1 << depth);
                }
                depth += 1;
                if is_object {
                    Expect::KeyOrClose
                } else {
                    Expect::ValueOrClose
                }
            }};
        }
        expect = open!();
        loop {
            self.skip_ws();
            let b = self.peek()?;
            let in_object = objects >> (depth - 1) & 1 == 1;
            let close = if in_object { b'}' } else { b']' };
            if b == close
                && matches!(
                    expect,
                    Expect::KeyOrClose | Expect::ValueOrClose | Expect::CommaOrClose
                )
            {
                self.pos += 1;
                depth -= 1;
                if depth == 0 {
                    return Ok(());
                }
                expect = Expect::CommaOrClose;
                continue;
            }
            match expect {
                Expect::KeyOrClose | Expect::Key => {
                    if b != b'"' {
                        return Err(self.unexpected());
                    }
                    self.string(false)?;
                    self.skip_ws();
                    if self.peek()? != b':' {
                        return Err(self.unexpected());
                    }
                    self.pos += 1;
                    expect = Expect::Value;
                }
                Expect::ValueOrClose | Expect::Value => {
                    match b {
                        b'{' | b'[' => {
                            expect = open!();
                            continue;
                        }
                        b'"' => {
                            self.string(false)?;
                        }
                        b'-' | b'0'..=b'9' => {
                            self.number()?;
                        }
                        b't' => self.literal(b"true")?,
                        b'f' => self.literal(b"false")?,
                        b'n' => self.literal(b"null")?,
                        _ => return Err(self.unexpected()),
                    }
                    expect = Expect::CommaOrClose;
                }
                Expect::CommaOrClose => {
                    if b != b',' {
                        return Err(self.unexpected());
                    }
                    self.pos += 1;
                    expect = if in_object {
                        Expect::Key
                    } else {
                        Expect::Value
                    };
                }
            }
        }
    }
}

/// Writes `s` as the body of a JSON string (without the quotes).
pub(crate) fn put_escaped<O: Out + ?Sized>(out: &mut O, s: &str) -> Result<(), BufferTooSmall> {
    let bytes = s.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1F => b"",
            _ => continue,
        };
        out.put(&bytes[from..i])?;
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.put(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ])?;
        } else {
            out.put(esc)?;
        }
        from = i + 1;
    }
    out.put(&bytes[from..])
}

/// Writes an unsigned integer in decimal.
pub(crate) fn put_u64<O: Out + ?Sized>(out: &mut O, mut n: u64) -> Result<(), BufferTooSmall> {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        // `n % 10 < 10`, so the cast is lossless.
        #[allow(clippy::cast_possible_truncation)]
        {
            digits[i] = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put(&digits[i..])
}

/// Adapts an [`Out`] to `fmt::Write`, JSON-escaping what is written.
pub(crate) struct EscapingWriter<'o, O: Out + ?Sized> {
    pub(crate) out: &'o mut O,
    pub(crate) overflow: bool,
}

impl<O: Out + ?Sized> fmt::Write for EscapingWriter<'_, O> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        put_escaped(self.out, s).map_err(|_| {
            self.overflow = true;
            fmt::Error
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Reads every member as (key, rendered value) for comparison.
    type Member = (Vec<u8>, Value, Vec<u8>);

    fn members(text: &str) -> Result<Vec<Member>, JsonError> {
        let mut buf = text.as_bytes().to_vec();
        let mut s = Scanner::new(&mut buf);
        s.begin_object()?;
        let mut out = Vec::new();
        while let Some((k, v)) = s.next_member()? {
            let vb = match v {
                Value::Str(sp) | Value::Num(sp) | Value::Object(sp) => s.bytes(sp).to_vec(),
                _ => Vec::new(),
            };
            out.push((s.bytes(k).to_vec(), v, vb));
        }
        s.finish()?;
        Ok(out)
    }

    #[test]
    fn reads_flat_objects_and_unescapes_in_place() {
        let m =
            members(r#" { "a" : "x\"y\\z\u00e9\ud83d\ude00" , "n":-1.5e3,"t":true,"z":null } "#)
                .unwrap();
        assert_eq!(m[0].0, b"a");
        assert_eq!(m[0].2, "x\"y\\zé😀".as_bytes());
        assert_eq!(m[1].2, b"-1.5e3");
        assert_eq!(m[2].1, Value::Bool(true));
        assert_eq!(m[3].1, Value::Null);
        assert!(members("{}").unwrap().is_empty());
    }

    #[test]
    fn skips_nested_values_with_a_depth_bound() {
        let m = members(r#"{"x":{"a":[1,{"b":"\n"},[]],"c":{}},"y":1}"#).unwrap();
        assert_eq!(m.len(), 2);
        let deep = alloc::format!(
            "{{\"x\":{}{}}}",
            "[".repeat(MAX_JSON_DEPTH + 1),
            "]".repeat(MAX_JSON_DEPTH + 1)
        );
        assert_eq!(members(&deep), Err(JsonError::TooDeep));
        let ok = alloc::format!(
            "{{\"x\":{}{}}}",
            "[".repeat(MAX_JSON_DEPTH),
            "]".repeat(MAX_JSON_DEPTH)
        );
        assert!(members(&ok).is_ok());
    }

    #[test]
    fn rejects_malformed_json() {
        for bad in [
            "",
            "[]",
            "{",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":tru}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00"}"#,
            r#"{"a":"\u12"}"#,
            "{\"a\":\"\t\"}",
            r#"{"a":[1,]}"#,
            r#"{"a":[1 2]}"#,
            r#"{"a":{"b"}}"#,
            r#"{"a":{1:2}}"#,
            r#"{"a":1} x"#,
            r#"{"a":1}}"#,
            r#"{"a" 1}"#,
            "{a:1}",
        ] {
            assert!(members(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn escaping_writer_round_trips() {
        let mut out = Vec::new();
        let s = "q\"b\\n\nr\rt\t\u{1}é";
        put_escaped(&mut out, s).unwrap();
        let text = alloc::format!("{{\"k\":\"{}\"}}", core::str::from_utf8(&out).unwrap());
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["k"], s);
        let m = members(&text).unwrap();
        assert_eq!(m[0].2, s.as_bytes());
    }

    #[test]
    fn integers_are_written_in_decimal() {
        for n in [0, 7, 10, 1_234_567_890, u64::MAX] {
            let mut out = Vec::new();
            put_u64(&mut out, n).unwrap();
            assert_eq!(out, alloc::format!("{n}").as_bytes());
        }
    }
}
