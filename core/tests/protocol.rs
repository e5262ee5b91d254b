//! Protocol-level tests of dlm-core: the table codec, request and response
//! parsing and writing in both framings, every typed rejection, the forms
//! old clients send, round-trip property tests, and a differential test of
//! the request parser against `serde_json`.
//!
//! Lines are parsed from buffers leaked for the test's life, so a parsed
//! [`Request`] can be returned from a helper (a few megabytes in all).

// A test's `unwrap` is an assertion, in helpers as in `#[test]` functions.
#![allow(clippy::unwrap_used, clippy::naive_bytecount)]

use core::fmt::Write as _;

use dlm_core::client::Client;
use dlm_core::codec::{self, DecodeError};
use dlm_core::limits::{DEFAULT_MAX_TTL, Limits, MAX_JSON_DEPTH, NAME_CEILING};
use dlm_core::protocol::{
    Command, Credentials, Field, Framing, JsonError, Message, Owner, Rejected, Request,
    RequestError, Resource, Response, ResponseError, Revision, Shape, SliceOut, Status, Token,
};
use dlm_core::stats::{Stat, Stats};
use dlm_core::time::Ttl;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

// ---------------------------------------------------------------------------
// Helpers

/// The anonymous `Expire`/`Wait` limit, in milliseconds.
const ANON_MS: u64 = 3_543_000;

fn parse_with(line: &[u8], limits: &Limits) -> Result<Request<'static>, Rejected> {
    Request::parse(line.to_vec().leak(), limits)
}

fn parse(line: impl AsRef<[u8]>) -> Result<Request<'static>, Rejected> {
    parse_with(line.as_ref(), &Limits::DEFAULT)
}

#[track_caller]
fn ok(line: impl AsRef<[u8]>) -> Request<'static> {
    let line = line.as_ref();
    parse(line).unwrap_or_else(|e| panic!("{:?} rejected: {e:?}", String::from_utf8_lossy(line)))
}

#[track_caller]
fn cmd(line: impl AsRef<[u8]>) -> Command<'static> {
    ok(line).command
}

fn legacy(json: impl AsRef<[u8]>) -> String {
    codec::encode(json.as_ref())
}

fn write_request(req: &Request<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    req.write(&mut out).unwrap();
    out
}

fn write_response(resp: &Response<'_>, framing: Framing) -> Vec<u8> {
    let mut out = Vec::new();
    resp.write(framing, &mut out).unwrap();
    out
}

fn lock(name: &'static str, owner: &'static str, ms: u64) -> Command<'static> {
    Command::Lock {
        name: Resource(name),
        owner: Owner(owner),
        ttl: Ttl::from_millis(ms),
        wait: None,
        token: None,
    }
}

/// Checks that `json` is rejected with `expected`, plain and legacy, with
/// either line terminator, and that the rejection is answered properly.
#[track_caller]
fn rejects(json: &str, expected: RequestError) {
    for end in ["", "\n", "\r\n"] {
        let plain = format!("{json}{end}");
        assert_eq!(
            parse(&plain),
            Err(Rejected {
                framing: Framing::Plain,
                error: expected
            }),
            "plain {plain:?}"
        );
        let old = format!("{}{end}", legacy(json));
        assert_eq!(
            parse(&old),
            Err(Rejected {
                framing: Framing::Legacy,
                error: expected
            }),
            "legacy {json:?}"
        );
    }
    answers_rejection(expected);
}

/// `Response::rejected(e)` carries `e`'s status and its text as `Error`,
/// in both framings.
#[track_caller]
fn answers_rejection(e: RequestError) {
    let want = if matches!(e, RequestError::UnknownAction) {
        Status::BadAction
    } else {
        Status::BadPayload
    };
    assert_eq!(e.status(), want, "{e:?}");
    let text = e.to_string();
    assert!(!text.is_empty());
    let resp = Response::rejected(e);
    for framing in [Framing::Plain, Framing::Legacy] {
        let mut line = write_response(&resp, framing);
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(line.last(), Some(&b'\n'));
        if framing == Framing::Plain {
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(v["Status"], want.as_str());
            assert_eq!(v["Error"], text.as_str());
            assert_eq!(v.as_object().unwrap().len(), 2);
        }
        let (got_framing, back) = Response::parse(&mut line).unwrap();
        assert_eq!(got_framing, framing);
        let mut expected = Response::new(want);
        expected.error = Some(Message::Text(&text));
        assert_eq!(back, expected);
    }
}

/// A request with the given members, in order: `{"k":v,...}`.
fn object(members: &[(&str, &str)]) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        write!(s, "\"{k}\":{v}").unwrap();
    }
    s.push('}');
    s
}

// ---------------------------------------------------------------------------
// The table codec (PROTOCOL.md section 2)

const LOCKED_JSON: &str = r#"{"Status":"Locked"}"#;
const LOCKED_CODE: &str = "a^1laBaMagaMa$am1l1t1l1za@a8aJaHah1laP";

#[test]
fn codec_known_vectors() {
    assert_eq!(codec::encode(b"{"), "a^");
    assert_eq!(codec::encode(&[0]), "11");
    assert_eq!(codec::encode(&[255]), "28");
    assert_eq!(codec::encode(&[0, 255]), "1128");
    assert_eq!(codec::encode(LOCKED_JSON.as_bytes()), LOCKED_CODE);
    assert_eq!(codec::decode(b"a^").unwrap(), b"{");
    assert_eq!(codec::decode(b"1128").unwrap(), [0, 255]);
    assert_eq!(
        codec::decode(LOCKED_CODE.as_bytes()).unwrap(),
        LOCKED_JSON.as_bytes()
    );
    assert_eq!(codec::encoded_len(19), 38);
    assert_eq!(codec::encode_byte(b'{'), *b"a^");
}

#[test]
fn codec_vector_as_a_whole_legacy_response_line() {
    // Written by the server...
    let line = write_response(&Response::new(Status::Locked), Framing::Legacy);
    assert_eq!(line, format!("{LOCKED_CODE}\n").as_bytes());
    // ...and read by a client, with either terminator.
    for end in ["", "\n", "\r\n"] {
        let mut line = format!("{LOCKED_CODE}{end}").into_bytes();
        let (framing, resp) = Response::parse(&mut line).unwrap();
        assert_eq!(framing, Framing::Legacy);
        assert_eq!(resp, Response::new(Status::Locked));
    }
}

#[test]
fn codec_vector_as_a_whole_legacy_request_line() {
    // `{"Action":"Lock",...}` starts with the vector's `{"` too.
    let json = r#"{"Action":"Lock","FileName":"jobs","ID":"w1","Expire":"1.5"}"#;
    let code = legacy(json);
    assert!(code.starts_with("a^1l"));
    let req = ok(format!("{code}\r\n"));
    assert_eq!(req.framing, Framing::Legacy);
    assert_eq!(req.command, lock("jobs", "w1", 1500));
    // A dlm client writes exactly this line for that request (with a number).
    let written = write_request(
        &Client::new("w1")
            .with_framing(Framing::Legacy)
            .lock("jobs", Ttl::from_millis(1500)),
    );
    let expect = legacy(r#"{"Action":"Lock","FileName":"jobs","ID":"w1","Expire":1.5}"#);
    assert_eq!(written, format!("{expect}\n").as_bytes());
}

#[test]
fn codec_every_byte_round_trips() {
    let all: Vec<u8> = (0..=255).collect();
    let text = codec::encode(&all);
    assert_eq!(text.len(), 512);
    assert!(text.bytes().all(|c| codec::ALPHABET.contains(&c)));
    assert_eq!(codec::decode(text.as_bytes()).unwrap(), all);
    for b in 0..=255u8 {
        let pair = codec::encode_byte(b);
        assert_eq!(codec::decode(&pair).unwrap(), [b]);
        assert_eq!(
            pair,
            [
                codec::ALPHABET[usize::from(b) / 78],
                codec::ALPHABET[usize::from(b) % 78]
            ]
        );
        let mut buf = pair;
        assert_eq!(codec::decode_in_place(&mut buf), Ok(1));
        assert_eq!(buf[0], b);
    }
    // Exactly 256 of the 78 * 78 pairs decode, each to a distinct byte.
    let mut seen = [false; 256];
    for &hi in codec::ALPHABET {
        for &lo in codec::ALPHABET {
            if let Ok(v) = codec::decode(&[hi, lo]) {
                assert!(!seen[usize::from(v[0])]);
                seen[usize::from(v[0])] = true;
            } else {
                assert_eq!(
                    codec::decode(&[hi, lo]),
                    Err(DecodeError::InvalidPair { offset: 0 })
                );
            }
        }
    }
    assert!(seen.iter().all(|&s| s));
}

#[test]
fn codec_malformed_encodings_are_typed_errors() {
    let cases: &[(&[u8], DecodeError)] = &[
        (b"a^1", DecodeError::OddLength { len: 3 }),
        (b"a", DecodeError::OddLength { len: 1 }),
        (b"a^ 1", DecodeError::InvalidCharacter { offset: 2 }),
        (b"a^1 ", DecodeError::OddLength { len: 3 }), // trailing blank is framing
        (b"1\"", DecodeError::InvalidCharacter { offset: 1 }),
        (b"[]", DecodeError::InvalidCharacter { offset: 0 }),
        (b"a^\xc3\xa9", DecodeError::InvalidCharacter { offset: 2 }),
        (b"a^a^1~", DecodeError::InvalidCharacter { offset: 5 }),
        (b"29", DecodeError::InvalidPair { offset: 0 }), // 3 * 78 + 22 = 256
        (b"a^ZZ", DecodeError::InvalidPair { offset: 2 }),
        (b"a^39", DecodeError::InvalidPair { offset: 2 }),
    ];
    for &(text, err) in cases {
        // The codec itself (without framing: the trailing blank counts).
        let trimmed = text.trim_ascii();
        assert_eq!(codec::validate(trimmed), Err(err), "{text:?}");
        assert_eq!(codec::decode(trimmed), Err(err), "{text:?}");
        assert_eq!(
            codec::decode_in_place(&mut trimmed.to_vec()),
            Err(err),
            "{text:?}"
        );
        // A whole request line and a whole response line.
        let mut line = text.to_vec();
        line.push(b'\n');
        assert_eq!(
            parse(&line),
            Err(Rejected {
                framing: Framing::Legacy,
                error: RequestError::Encoding(err)
            }),
            "{text:?}"
        );
        assert_eq!(
            Response::parse(&mut line.clone()),
            Err(ResponseError::Encoding(err))
        );
        assert_eq!(
            Response::parse_stats(&mut line),
            Err(ResponseError::Encoding(err))
        );
        answers_rejection(RequestError::Encoding(err));
    }
    let mut small = [0u8; 1];
    assert_eq!(
        codec::decode_into(b"a^a^", &mut small),
        Err(DecodeError::BufferTooSmall)
    );
    assert_eq!(
        codec::encode_into(b"ab", &mut [0u8; 3]),
        Err(codec::BufferTooSmall)
    );
}

// ---------------------------------------------------------------------------
// Golden lines

#[test]
fn requests_are_written_as_documented() {
    let c = Client::new("w1");
    let cases: Vec<(Request<'_>, &str)> = vec![
        (
            c.lock("jobs", Ttl::from_millis(1500)),
            r#"{"Action":"Lock","FileName":"jobs","ID":"w1","Expire":1.5}"#,
        ),
        (
            c.lock_wait("jobs", Ttl::from_secs(30), Ttl::from_millis(250)),
            r#"{"Action":"Lock","FileName":"jobs","ID":"w1","Expire":30,"Wait":0.25}"#,
        ),
        (
            c.extend("jobs", Ttl::from_millis(1), Token(u64::MAX)),
            r#"{"Action":"Lock","FileName":"jobs","ID":"w1","Expire":0.001,"Token":18446744073709551615}"#,
        ),
        (
            c.unlock("jobs", Some(Token(7))),
            r#"{"Action":"Unlock","FileName":"jobs","ID":"w1","Token":7}"#,
        ),
        (
            c.test_lock("j\"s"),
            r#"{"Action":"TestLock","FileName":"j\"s","ID":"w1"}"#,
        ),
        (
            c.put("k", Ttl::from_secs(60), "a^", Some(Revision(0))),
            r#"{"Action":"Put","FileName":"k","ID":"w1","Expire":60,"DataStore":"a^","Revision":0}"#,
        ),
        (
            c.get("k\n\u{1}"),
            r#"{"Action":"Get","FileName":"k\n\u0001","ID":"w1"}"#,
        ),
        (
            c.erase("k\\"),
            r#"{"Action":"Erase","FileName":"k\\","ID":"w1"}"#,
        ),
        (c.version(), r#"{"Action":"Version"}"#),
        (c.stats(), r#"{"Action":"Stats"}"#),
        (
            c.with_credentials(Credentials {
                name: "svc",
                secret: "s3",
            })
            .get("k"),
            r#"{"Action":"Get","FileName":"k","ID":"w1","Name":"svc","Identity":"s3"}"#,
        ),
    ];
    for (req, json) in cases {
        assert_eq!(
            String::from_utf8(write_request(&req)).unwrap(),
            format!("{json}\n")
        );
        assert_eq!(ok(json), req);
    }
    // In the legacy framing, placeholders for a JackrabbitDLM server.
    let old = Client::new("w1").with_framing(Framing::Legacy);
    for (req, json) in [
        (
            old.version(),
            r#"{"Action":"Version","FileName":"-","ID":"-","Expire":0}"#,
        ),
        (
            old.unlock("jobs", None),
            r#"{"Action":"Unlock","FileName":"jobs","ID":"w1","Expire":0}"#,
        ),
        (
            old.get("k"),
            r#"{"Action":"Get","FileName":"k","ID":"w1","Expire":0}"#,
        ),
    ] {
        assert_eq!(
            write_request(&req),
            format!("{}\n", legacy(json)).as_bytes()
        );
        assert_eq!(ok(legacy(json)), req);
    }
}

#[test]
fn responses_are_written_as_documented() {
    let mut locked = Response::new(Status::Locked);
    locked.id = Some("w1");
    locked.token = Some(Token(7));
    locked.expire = Some(Ttl::from_millis(1500));
    let mut done = Response::new(Status::Done);
    done.id = Some("o\"");
    done.data = Some("a^");
    done.expire = Some(Ttl::from_millis(30_010));
    done.revision = Some(Revision(2));
    let mut conflict = Response::new(Status::Conflict);
    conflict.revision = Some(Revision(0));
    let mut taken = Response::new(Status::NotOwner);
    taken.expire = Some(Ttl::from_millis(1));
    let cases = [
        (
            locked,
            r#"{"Status":"Locked","ID":"w1","Token":7,"Expire":1.5}"#,
        ),
        (
            done,
            r#"{"Status":"Done","ID":"o\"","DataStore":"a^","Expire":30.01,"Revision":2}"#,
        ),
        (conflict, r#"{"Status":"Conflict","Revision":0}"#),
        (taken, r#"{"Status":"NotOwner","Expire":0.001}"#),
        (Response::new(Status::No), r#"{"Status":"NO"}"#),
        (
            Response::rejected(RequestError::ZeroTtl),
            r#"{"Status":"BadPayload","Error":"field Expire must be positive"}"#,
        ),
        (
            Response::rejected(RequestError::UnknownAction),
            r#"{"Status":"BadAction","Error":"unknown Action"}"#,
        ),
    ];
    for (resp, json) in cases {
        let plain = write_response(&resp, Framing::Plain);
        assert_eq!(String::from_utf8(plain).unwrap(), format!("{json}\n"));
        let old = write_response(&resp, Framing::Legacy);
        assert_eq!(old, format!("{}\n", legacy(json)).as_bytes());
    }
}

#[test]
fn writing_into_a_short_slice_fails_cleanly_at_every_length() {
    let req = Client::new("owner\u{1}\"").put("näme", Ttl::from_millis(1001), "a^", None);
    let mut stats = Stats::new();
    stats.set(Stat::Lock, 12);
    let mut resp = Response::new(Status::Done);
    resp.stats = Some(&stats);
    resp.error = Some(Message::Request(RequestError::TooLong {
        field: Field::FileName,
        limit: 1024,
    }));
    for framing in [Framing::Plain, Framing::Legacy] {
        let req = Request { framing, ..req };
        let full = write_request(&req);
        let full_resp = write_response(&resp, framing);
        let mut buf = vec![0u8; full.len().max(full_resp.len())];
        for n in 0..=buf.len() {
            let mut out = SliceOut::new(&mut buf[..n]);
            let r = req.write(&mut out);
            assert_eq!(r.is_ok(), n >= full.len(), "request into {n} bytes");
            if r.is_ok() {
                assert_eq!(out.written(), &full[..]);
                assert_eq!(out.len(), full.len());
            }
            let mut out = SliceOut::new(&mut buf[..n]);
            let r = resp.write(framing, &mut out);
            assert_eq!(r.is_ok(), n >= full_resp.len(), "response into {n} bytes");
            if r.is_ok() {
                assert_eq!(out.written(), &full_resp[..]);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Typed rejections

const ACTIONS: [&str; 8] = [
    "Lock", "Unlock", "TestLock", "Put", "Get", "Erase", "Version", "Stats",
];

/// A valid request for `action`, as (key, JSON value) members.
fn valid_members(action: &'static str) -> Vec<(&'static str, &'static str)> {
    let mut m = vec![("Action", "")];
    m[0].1 = match action {
        "Lock" => "\"Lock\"",
        "Unlock" => "\"Unlock\"",
        "TestLock" => "\"TestLock\"",
        "Put" => "\"Put\"",
        "Get" => "\"Get\"",
        "Erase" => "\"Erase\"",
        "Version" => "\"Version\"",
        _ => "\"Stats\"",
    };
    if !matches!(action, "Version" | "Stats") {
        m.push(("FileName", "\"f\""));
        m.push(("ID", "\"i\""));
    }
    if matches!(action, "Lock" | "Put") {
        m.push(("Expire", "\"10\""));
    }
    if action == "Put" {
        m.push(("DataStore", "\"d\""));
    }
    m
}

fn with(action: &'static str, key: &'static str, value: &'static str) -> String {
    let mut m = valid_members(action);
    m.retain(|(k, _)| *k != key);
    m.push((key, value));
    object(&m)
}

#[test]
fn every_valid_template_parses() {
    for action in ACTIONS {
        let c = cmd(object(&valid_members(action)));
        assert_eq!(c.action(), action);
    }
}

#[test]
fn missing_fields_are_named() {
    rejects(
        r#"{"FileName":"f","ID":"i","Expire":1}"#,
        RequestError::MissingField(Field::Action),
    );
    rejects(
        r#"{"Action":null,"FileName":"f","ID":"i"}"#,
        RequestError::MissingField(Field::Action),
    );
    rejects("{}", RequestError::MissingField(Field::Action));
    for action in ACTIONS {
        let members = valid_members(action);
        for (i, &(key, _)) in members.iter().enumerate().skip(1) {
            let field = match key {
                "FileName" => Field::FileName,
                "ID" => Field::Id,
                "Expire" => Field::Expire,
                _ => Field::DataStore,
            };
            let mut without = members.clone();
            without.remove(i);
            rejects(&object(&without), RequestError::MissingField(field));
            // `null` means absent.
            let mut null = members.clone();
            null[i].1 = "null";
            rejects(&object(&null), RequestError::MissingField(field));
        }
        // Half a credential, on every action.
        rejects(
            &with(action, "Name", "\"svc\""),
            RequestError::MissingField(Field::Identity),
        );
        rejects(
            &with(action, "Identity", "\"secret\""),
            RequestError::MissingField(Field::Name),
        );
    }
}

#[test]
fn wrong_types_are_named() {
    let cases = [
        (object(&[("Action", "1")]), Field::Action, "a number"),
        (
            object(&[("Action", "[\"Lock\"]")]),
            Field::Action,
            "an array",
        ),
        (with("Lock", "FileName", "1"), Field::FileName, "a number"),
        (
            with("Get", "FileName", "true"),
            Field::FileName,
            "a boolean",
        ),
        (with("Put", "FileName", "{}"), Field::FileName, "an object"),
        (with("Erase", "ID", "[\"x\"]"), Field::Id, "an array"),
        (with("Unlock", "ID", "false"), Field::Id, "a boolean"),
        (with("Lock", "Expire", "true"), Field::Expire, "a boolean"),
        (
            with("Put", "Expire", "{\"s\":1}"),
            Field::Expire,
            "an object",
        ),
        (with("Lock", "Wait", "[]"), Field::Wait, "an array"),
        (with("Lock", "Token", "\"5\""), Field::Token, "a string"),
        (with("Unlock", "Token", "{}"), Field::Token, "an object"),
        (
            with("Put", "Revision", "\"1\""),
            Field::Revision,
            "a string",
        ),
        (with("Put", "DataStore", "5"), Field::DataStore, "a number"),
        (
            with("Put", "DataStore", "[\"a^\"]"),
            Field::DataStore,
            "an array",
        ),
        (
            object(&[
                ("Action", "\"Version\""),
                ("Name", "1"),
                ("Identity", "\"s\""),
            ]),
            Field::Name,
            "a number",
        ),
        (
            object(&[
                ("Action", "\"Stats\""),
                ("Name", "\"n\""),
                ("Identity", "false"),
            ]),
            Field::Identity,
            "a boolean",
        ),
    ];
    for (json, field, found) in cases {
        rejects(&json, RequestError::WrongType { field, found });
    }
    // A field the action does not use is ignored whatever its type.
    for action in ["Unlock", "TestLock", "Get", "Erase", "Version", "Stats"] {
        cmd(with(action, "Expire", "{\"x\":[1]}"));
    }
    cmd(with("Lock", "DataStore", "5"));
    cmd(with("Put", "Token", "\"x\""));
    cmd(with("Lock", "Revision", "[]"));
    cmd(with("Get", "Wait", "true"));
}

#[test]
fn invalid_utf8_is_rejected_plain_and_legacy() {
    for bad in [
        &b"\xff"[..],
        b"\xc3",             // truncated sequence
        b"\xc0\xaf",         // overlong '/'
        b"\xed\xa0\x80",     // a surrogate, encoded
        b"\xf4\x90\x80\x80", // past U+10FFFF
    ] {
        for key in [&b"FileName"[..], b"Unknown"] {
            let mut json = br#"{"Action":"Get","ID":"i","#.to_vec();
            json.push(b'"');
            json.extend_from_slice(key);
            json.extend_from_slice(b"\":\"a");
            json.extend_from_slice(bad);
            json.extend_from_slice(br#"b","FileName":"f"}"#);
            if key == b"FileName" {
                // Make the bad one the only FileName.
                let n = json.len();
                json.truncate(n - br#","FileName":"f"}"#.len());
                json.push(b'}');
            }
            assert_eq!(
                parse(&json).map_err(|r| r.error),
                Err(RequestError::InvalidUtf8),
                "{json:?}"
            );
            let old = legacy(&json);
            assert_eq!(
                parse(&old),
                Err(Rejected {
                    framing: Framing::Legacy,
                    error: RequestError::InvalidUtf8
                })
            );
            let mut resp = json.clone();
            resp.splice(2..8, b"Status".iter().copied());
            assert_eq!(
                Response::parse(&mut resp).map(|_| ()),
                Err(ResponseError::InvalidUtf8)
            );
        }
    }
    answers_rejection(RequestError::InvalidUtf8);
    // Escapes that would make invalid UTF-8 are JSON errors instead.
    let lone = r#"{"Action":"Get","FileName":"\ud800","ID":"i"}"#;
    rejects(
        lone,
        RequestError::Json(JsonError::LoneSurrogate {
            offset: lone.find('\\').unwrap(),
        }),
    );
    let low = r#"{"Action":"Get","FileName":"\udc00\ud800","ID":"i"}"#;
    rejects(
        low,
        RequestError::Json(JsonError::LoneSurrogate {
            offset: low.find('\\').unwrap(),
        }),
    );
    let unpaired = r#"{"Action":"Get","FileName":"\ud83dx","ID":"i"}"#;
    rejects(
        unpaired,
        RequestError::Json(JsonError::LoneSurrogate {
            offset: unpaired.find('\\').unwrap(),
        }),
    );
}

#[test]
fn names_and_ids_are_limited_in_bytes() {
    let limits = Limits::DEFAULT;
    assert_eq!(limits.max_name, 1024);
    assert_eq!(limits.max_id, 1024);
    let at = |n: usize, c: &str| c.repeat(n);
    for (field, key) in [(Field::FileName, "FileName"), (Field::Id, "ID")] {
        let line = |value: &str| {
            let mut m = vec![
                ("Action", "\"TestLock\"".to_string()),
                ("FileName", "\"f\"".to_string()),
                ("ID", "\"i\"".to_string()),
            ];
            for member in &mut m {
                if member.0 == key {
                    member.1 = format!("\"{value}\"");
                }
            }
            let refs: Vec<(&str, &str)> = m.iter().map(|(k, v)| (*k, v.as_str())).collect();
            object(&refs)
        };
        let limit = if field == Field::Id {
            limits.max_id
        } else {
            limits.max_name
        };
        cmd(line(&at(limit, "x")));
        rejects(
            &line(&at(limit + 1, "x")),
            RequestError::TooLong { field, limit },
        );
        // Bytes, not characters: 512 two-byte characters fit, 513 do not.
        cmd(line(&at(limit / 2, "é")));
        rejects(
            &line(&at(limit / 2 + 1, "é")),
            RequestError::TooLong { field, limit },
        );
        // Counted after unescaping: 1024 six-byte escapes of one byte fit.
        cmd(line(&at(limit, "\\u0041")));
        rejects(
            &line(&at(limit + 1, "\\n")),
            RequestError::TooLong { field, limit },
        );
        rejects(&line(""), RequestError::EmptyField(field));
        // Configured limits, and a limit above the 16-bit ceiling is clamped.
        let small = Limits {
            max_name: 4,
            max_id: 3,
            ..Limits::DEFAULT
        };
        let small_limit = if field == Field::Id { 3 } else { 4 };
        assert!(parse_with(line(&at(small_limit, "x")).as_bytes(), &small).is_ok());
        assert_eq!(
            parse_with(line(&at(small_limit + 1, "x")).as_bytes(), &small).map_err(|r| r.error),
            Err(RequestError::TooLong {
                field,
                limit: small_limit
            })
        );
        let huge = Limits {
            max_name: usize::MAX,
            max_id: usize::MAX,
            ..Limits::DEFAULT
        };
        assert!(parse_with(line(&at(NAME_CEILING, "x")).as_bytes(), &huge).is_ok());
        assert_eq!(
            parse_with(line(&at(NAME_CEILING + 1, "x")).as_bytes(), &huge).map_err(|r| r.error),
            Err(RequestError::TooLong {
                field,
                limit: NAME_CEILING
            })
        );
    }
    // Empty names on every action that has one; empty data is fine.
    for action in ["Lock", "Unlock", "TestLock", "Put", "Get", "Erase"] {
        rejects(
            &with(action, "FileName", "\"\""),
            RequestError::EmptyField(Field::FileName),
        );
        rejects(
            &with(action, "ID", "\"\""),
            RequestError::EmptyField(Field::Id),
        );
    }
    let Command::Put { data, .. } = cmd(with("Put", "DataStore", "\"\"")) else {
        panic!()
    };
    assert_eq!(data, "");
}

#[test]
fn expire_rejections() {
    let max = Ttl::from_millis(u64::MAX);
    let anon = Ttl::from_secs(3543);
    for action in ["Lock", "Put"] {
        let cases: &[(&'static str, RequestError)] = &[
            ("-1", RequestError::Negative(Field::Expire)),
            ("\"-1\"", RequestError::Negative(Field::Expire)),
            ("-0.001", RequestError::Negative(Field::Expire)),
            ("\"-1e-9\"", RequestError::Negative(Field::Expire)),
            ("\"NaN\"", RequestError::NotFinite(Field::Expire)),
            ("\"nan\"", RequestError::NotFinite(Field::Expire)),
            ("\"inf\"", RequestError::NotFinite(Field::Expire)),
            ("\"-inf\"", RequestError::NotFinite(Field::Expire)),
            ("\"Infinity\"", RequestError::NotFinite(Field::Expire)),
            ("\" +infinity \"", RequestError::NotFinite(Field::Expire)),
            (
                "1e999",
                RequestError::OverLimit {
                    field: Field::Expire,
                    limit: max,
                },
            ),
            (
                "\"1e999\"",
                RequestError::OverLimit {
                    field: Field::Expire,
                    limit: max,
                },
            ),
            (
                "99999999999999999999999",
                RequestError::OverLimit {
                    field: Field::Expire,
                    limit: max,
                },
            ),
            (
                "3543.001",
                RequestError::OverLimit {
                    field: Field::Expire,
                    limit: anon,
                },
            ),
            (
                "\"3543.0001\"",
                RequestError::OverLimit {
                    field: Field::Expire,
                    limit: anon,
                },
            ),
            (
                "3544",
                RequestError::OverLimit {
                    field: Field::Expire,
                    limit: anon,
                },
            ),
            (
                "\"3600\"",
                RequestError::OverLimit {
                    field: Field::Expire,
                    limit: anon,
                },
            ),
            ("0", RequestError::ZeroTtl),
            ("\"0\"", RequestError::ZeroTtl),
            ("0.0", RequestError::ZeroTtl),
            ("\"0.000\"", RequestError::ZeroTtl),
            ("0e5", RequestError::ZeroTtl),
            ("-0", RequestError::ZeroTtl),
            ("\"-0\"", RequestError::ZeroTtl),
            ("\"abc\"", RequestError::InvalidNumber(Field::Expire)),
            ("\"\"", RequestError::InvalidNumber(Field::Expire)),
            ("\"1s\"", RequestError::InvalidNumber(Field::Expire)),
            ("\"1 2\"", RequestError::InvalidNumber(Field::Expire)),
            ("\"0x10\"", RequestError::InvalidNumber(Field::Expire)),
            ("\"1e\"", RequestError::InvalidNumber(Field::Expire)),
            ("\"--1\"", RequestError::InvalidNumber(Field::Expire)),
        ];
        for &(value, e) in cases {
            rejects(&with(action, "Expire", value), e);
        }
    }
    // The anonymous limit is inclusive; an identity may ask for more, up to
    // the server's own limit.
    assert_eq!(cmd(with("Lock", "Expire", "3543")), lock("f", "i", ANON_MS));
    let creds = |expire: &str| {
        format!(
            r#"{{"Action":"Lock","FileName":"f","ID":"i","Expire":{expire},"Name":"n","Identity":"s"}}"#
        )
    };
    let year = DEFAULT_MAX_TTL.as_millis() / 1000;
    let Command::Lock { ttl, .. } = cmd(creds(&year.to_string())) else {
        panic!()
    };
    assert_eq!(ttl, DEFAULT_MAX_TTL);
    rejects(
        &creds(&format!("{year}.001")),
        RequestError::OverLimit {
            field: Field::Expire,
            limit: DEFAULT_MAX_TTL,
        },
    );
    // NaN and infinities are not JSON numbers at all.
    for literal in ["NaN", "Infinity", "-Infinity"] {
        let json = with("Lock", "Expire", literal);
        let offset = json.rfind(':').unwrap() + 1;
        let err = parse(&json).unwrap_err().error;
        assert!(
            matches!(
                err,
                RequestError::Json(
                    JsonError::Unexpected { offset: o } | JsonError::InvalidNumber { offset: o }
                ) if o == offset
            ),
            "{literal}: {err:?}"
        );
    }
}

#[test]
fn wait_rejections() {
    let anon = Ttl::from_secs(3543);
    let over = RequestError::OverLimit {
        field: Field::Wait,
        limit: anon,
    };
    for (value, e) in [
        ("3543.001", over),
        ("\"3544\"", over),
        (
            "1e999",
            RequestError::OverLimit {
                field: Field::Wait,
                limit: Ttl::from_millis(u64::MAX),
            },
        ),
        ("-1", RequestError::Negative(Field::Wait)),
        ("\"-0.5\"", RequestError::Negative(Field::Wait)),
        ("\"nan\"", RequestError::NotFinite(Field::Wait)),
        ("\"x\"", RequestError::InvalidNumber(Field::Wait)),
    ] {
        rejects(&with("Lock", "Wait", value), e);
    }
}

#[test]
fn token_and_revision_rejections() {
    for (action, key, field) in [
        ("Lock", "Token", Field::Token),
        ("Unlock", "Token", Field::Token),
        ("Put", "Revision", Field::Revision),
    ] {
        for (value, e) in [
            ("-1", RequestError::Negative(field)),
            ("-18446744073709551616", RequestError::Negative(field)),
            ("-0", RequestError::NotAnInteger(field)),
            ("1.5", RequestError::NotAnInteger(field)),
            ("1.0", RequestError::NotAnInteger(field)),
            ("1e3", RequestError::NotAnInteger(field)),
            ("0.5e1", RequestError::NotAnInteger(field)),
            ("18446744073709551616", RequestError::NotAnInteger(field)),
            (
                "99999999999999999999999999",
                RequestError::NotAnInteger(field),
            ),
        ] {
            rejects(&with(action, key, value), e);
        }
        // The whole range is accepted.
        for (value, n) in [("0", 0), ("18446744073709551615", u64::MAX)] {
            let got = match cmd(with(action, key, value)) {
                Command::Lock { token, .. } | Command::Unlock { token, .. } => token.map(|t| t.0),
                Command::Put { revision, .. } => revision.map(|r| r.0),
                other => panic!("{other:?}"),
            };
            assert_eq!(got, Some(n));
        }
    }
}

#[test]
fn unknown_actions_are_bad_action() {
    for action in [
        "\"Lockk\"",
        "\"\"",
        "\"Lock \"",
        "\" Lock\"",
        "\"Lock\\u0000\"",
        "\"Relock\"",
        "\"Status\"",
        "\"\u{212A}ock\"", // Kelvin sign: not ASCII case folding
    ] {
        let json = object(&[("Action", action), ("FileName", "\"f\""), ("ID", "\"i\"")]);
        rejects(&json, RequestError::UnknownAction);
        assert_eq!(parse(&json).unwrap_err().error.status(), Status::BadAction);
    }
}

#[test]
fn duplicate_fields_are_refused() {
    for (json, field) in [
        (
            r#"{"Action":"Lock","Action":"Lock","FileName":"f","ID":"i","Expire":1}"#,
            Field::Action,
        ),
        (
            r#"{"Action":"Get","FileName":"f","ID":"a","ID":"b"}"#,
            Field::Id,
        ),
        (
            r#"{"Action":"Get","FileName":"f","ID":"a","I\u0044":"a"}"#,
            Field::Id,
        ),
        (
            r#"{"Action":"Get","FileName":"f","ID":"i","DataStore":null,"DataStore":null}"#,
            Field::DataStore,
        ),
        (
            r#"{"Action":"Version","Expire":"0","Expire":"0"}"#,
            Field::Expire,
        ),
        (
            r#"{"Action":"Lock","FileName":"f","ID":"i","Expire":1,"Token":1,"Token":2}"#,
            Field::Token,
        ),
    ] {
        rejects(json, RequestError::DuplicateField(field));
    }
    // Unknown fields may repeat, and field names are case-sensitive.
    cmd(r#"{"Action":"Version","x":1,"x":2,"action":"Lock","id":"a","Id":"b"}"#);
}

#[test]
fn nesting_is_bounded_inside_unknown_fields() {
    let nest = |depth: usize, open: &str, close: &str| {
        format!(
            r#"{{"Action":"Get","FileName":"f","Extra":{}{},"ID":"i"}}"#,
            open.repeat(depth),
            close.repeat(depth)
        )
    };
    cmd(nest(MAX_JSON_DEPTH, "[", "]"));
    cmd(nest(MAX_JSON_DEPTH / 2, "{\"k\":[", "]}").replace("[]}", "[1]}"));
    rejects(
        &nest(MAX_JSON_DEPTH + 1, "[", "]"),
        RequestError::Json(JsonError::TooDeep),
    );
    rejects(
        &nest(MAX_JSON_DEPTH / 2 + 1, "{\"k\":[", "]}"),
        RequestError::Json(JsonError::TooDeep),
    );
    // Far deeper than any recursion could go: still a typed error.
    rejects(
        &nest(100_000, "[", "]"),
        RequestError::Json(JsonError::TooDeep),
    );
    // ...and inside a known field too.
    let deep: &'static str = "[".repeat(40).leak();
    rejects(
        &with("Get", "FileName", deep),
        RequestError::Json(JsonError::TooDeep),
    );
}

#[test]
fn malformed_json_is_typed() {
    let version = r#"{"Action":"Version"}"#;
    let cases: Vec<(String, JsonError)> = vec![
        (
            format!("{version} x"),
            JsonError::Trailing {
                offset: version.len() + 1,
            },
        ),
        (
            format!("{version}}}"),
            JsonError::Trailing {
                offset: version.len(),
            },
        ),
        (
            format!("{version}{{}}"),
            JsonError::Trailing {
                offset: version.len(),
            },
        ),
        (r#"{"Action":"Version""#.into(), JsonError::UnexpectedEnd),
        (r#"{"Action":"Vers"#.into(), JsonError::UnexpectedEnd),
        (r#"{"Action""#.into(), JsonError::UnexpectedEnd),
        ("{".into(), JsonError::UnexpectedEnd),
        (
            r#"{"Action":"Version",}"#.into(),
            JsonError::Unexpected { offset: 20 },
        ),
        (
            r#"{"Action" "Version"}"#.into(),
            JsonError::Unexpected { offset: 10 },
        ),
        (
            r#"{Action:"Version"}"#.into(),
            JsonError::Unexpected { offset: 1 },
        ),
        (
            r#"{"Action":"Version" "x":1}"#.into(),
            JsonError::Unexpected { offset: 20 },
        ),
        (
            "{\"Action\":\"Ver\tsion\"}".into(),
            JsonError::ControlCharacter { offset: 14 },
        ),
        (
            r#"{"Action":"Version","x":"\q"}"#.into(),
            JsonError::InvalidEscape { offset: 25 },
        ),
        (
            r#"{"Action":"Version","x":"\u12G4"}"#.into(),
            JsonError::InvalidEscape { offset: 27 },
        ),
        (
            r#"{"Action":"Version","x":01}"#.into(),
            JsonError::Unexpected { offset: 25 },
        ),
        (
            r#"{"Action":"Version","x":1.}"#.into(),
            JsonError::InvalidNumber { offset: 24 },
        ),
        (
            r#"{"Action":"Version","x":-}"#.into(),
            JsonError::InvalidNumber { offset: 24 },
        ),
        (
            r#"{"Action":"Version","x":.5}"#.into(),
            JsonError::Unexpected { offset: 24 },
        ),
        (
            r#"{"Action":"Version","x":+1}"#.into(),
            JsonError::Unexpected { offset: 24 },
        ),
        (
            r#"{"Action":"Version","x":tru}"#.into(),
            JsonError::Unexpected { offset: 24 },
        ),
        (
            r#"{"Action":"Version","x":[1,]}"#.into(),
            JsonError::Unexpected { offset: 27 },
        ),
        (
            r#"{"Action":"Version","x":{"a"}}"#.into(),
            JsonError::Unexpected { offset: 28 },
        ),
    ];
    for (json, e) in cases {
        rejects(&json, RequestError::Json(e));
    }
}

#[test]
fn not_an_object_and_empty_lines() {
    // A line whose first non-blank byte is not `{` is legacy; if it decodes
    // to something other than an object, that is what the error says.
    for json in ["[1,2]", "\"Version\"", "42", "null", "  ", "Action"] {
        let old = legacy(json);
        assert_eq!(
            parse(&old),
            Err(Rejected {
                framing: Framing::Legacy,
                error: RequestError::Json(JsonError::NotAnObject)
            }),
            "{json:?}"
        );
    }
    answers_rejection(RequestError::Json(JsonError::NotAnObject));
    // Plain JSON that is not an object is not a valid table encoding.
    assert_eq!(
        parse("[12]").unwrap_err(),
        Rejected {
            framing: Framing::Legacy,
            error: RequestError::Encoding(DecodeError::InvalidCharacter { offset: 0 })
        }
    );
    for blank in ["", "\n", "\r\n", "  \t \r\n", "\x0c"] {
        assert_eq!(
            parse(blank),
            Err(Rejected {
                framing: Framing::Legacy,
                error: RequestError::Empty
            }),
            "{blank:?}"
        );
        assert_eq!(
            Response::parse(&mut blank.as_bytes().to_vec()),
            Err(ResponseError::Empty)
        );
    }
    answers_rejection(RequestError::Empty);
}

#[test]
fn long_lines_are_refused_before_reading() {
    let limits = Limits {
        max_line: 64,
        ..Limits::DEFAULT
    };
    let json = r#"{"Action":"Get","FileName":"f","ID":"i"}"#;
    let pad = 64 - json.len() - 1;
    let fits = format!("{json}{}\n", " ".repeat(pad));
    assert_eq!(fits.len(), 64);
    assert!(parse_with(fits.as_bytes(), &limits).is_ok());
    let over = format!("{json}{}\n", " ".repeat(pad + 1));
    assert_eq!(
        parse_with(over.as_bytes(), &limits),
        Err(Rejected {
            framing: Framing::Plain,
            error: RequestError::LineTooLong { limit: 64 }
        })
    );
    // The limit applies to the line as received: a legacy line is twice as long.
    let old = legacy(json);
    assert_eq!(
        parse_with(old.as_bytes(), &limits),
        Err(Rejected {
            framing: Framing::Legacy,
            error: RequestError::LineTooLong { limit: 64 }
        })
    );
    // The default: 1 MiB.
    let max = Limits::DEFAULT.max_line;
    assert_eq!(max, 1 << 20);
    let filler = max - json.len() - 1;
    let at_limit = format!(
        r#"{{"Action":"Get","FileName":"f","ID":"i","x":"{}"}}"#,
        "y".repeat(filler - r#","x":"""#.len())
    );
    assert_eq!(at_limit.len() + 1, max);
    assert!(parse(format!("{at_limit}\n")).is_ok());
    assert_eq!(
        parse(format!("{at_limit}\r\n")),
        Err(Rejected {
            framing: Framing::Plain,
            error: RequestError::LineTooLong { limit: max }
        })
    );
    answers_rejection(RequestError::LineTooLong { limit: max });
}

#[test]
fn every_request_error_is_answered() {
    // The variants not produced by the parser itself.
    answers_rejection(RequestError::DataTooLarge { limit: 16 * 1024 });
    answers_rejection(RequestError::AuthFailed);
    answers_rejection(RequestError::WrongType {
        field: Field::Id,
        found: "an object",
    });
    answers_rejection(RequestError::Json(JsonError::ControlCharacter {
        offset: 3,
    }));
    assert_eq!(
        RequestError::AuthFailed.to_string(),
        "authentication failed"
    );
    // The anonymous data limit: checked by the parser for anonymous requests.
    let big = format!("\"{}\"", "x".repeat(16 * 1024 + 1));
    let fits = format!("\"{}\"", "x".repeat(16 * 1024));
    let fits: &'static str = fits.leak();
    let big: &'static str = big.leak();
    cmd(with("Put", "DataStore", fits));
    rejects(
        &with("Put", "DataStore", big),
        RequestError::DataTooLarge { limit: 16 * 1024 },
    );
    // With credentials the identity's limit applies later, in the engine.
    let with_creds = format!(
        r#"{{"Action":"Put","FileName":"f","ID":"i","Expire":1,"DataStore":{big},"Name":"n","Identity":"s"}}"#
    );
    cmd(with_creds);
}

// ---------------------------------------------------------------------------
// Accepted forms

#[test]
fn framing_is_detected_per_line() {
    let json = r#"{"Action":"TestLock","FileName":"f","ID":"i"}"#;
    let lines = [
        json.to_string(),
        legacy(json),
        format!("  {json}"),
        format!("\t{}", legacy(json)),
        json.to_string(),
    ];
    let want = [
        Framing::Plain,
        Framing::Legacy,
        Framing::Plain,
        Framing::Legacy,
        Framing::Plain,
    ];
    for (line, framing) in lines.iter().zip(want) {
        assert_eq!(Framing::detect(line.as_bytes()), framing);
        let req = ok(line);
        assert_eq!(req.framing, framing);
        assert_eq!(
            req.command,
            Command::TestLock {
                name: Resource("f"),
                owner: Owner("i")
            }
        );
        // The answer goes back in the request's framing.
        let mut answer = write_response(&Response::new(Status::Unlocked), req.framing);
        assert_eq!(Framing::detect(&answer), framing);
        assert_eq!(Response::parse(&mut answer).unwrap().0, framing);
    }
}

#[test]
fn line_terminators_are_tolerated() {
    let json = r#"{"Action":"Get","FileName":"f","ID":"i"}"#;
    let want = cmd(json);
    for line in [
        format!("{json}\n"),
        format!("{json}\r\n"),
        format!("{json} \r\n"),
        format!("\r\n{json}"),
        format!("{}\n", legacy(json)),
        format!("{}\r\n", legacy(json)),
    ] {
        assert_eq!(cmd(&line), want, "{line:?}");
    }
    // A bare `\r` inside is not a terminator but JSON whitespace.
    assert_eq!(
        cmd(r#"{"Action":"Get",\r"FileName":"f",\n"ID":"i"}"#
            .replace("\\r", "\r")
            .replace("\\n", "\n")),
        want
    );
}

#[test]
fn seconds_are_strings_or_numbers_rounded_up() {
    let cases: &[(&str, u64)] = &[
        ("300", 300_000),
        ("\"300\"", 300_000),
        ("\"300.0\"", 300_000),
        ("\"1.5\"", 1_500),
        ("1.5", 1_500),
        ("\"0.0001\"", 1),
        ("0.0001", 1),
        ("1e-30", 1),
        ("\"1.0001\"", 1_001),
        ("1.0009", 1_001),
        ("2.5e-3", 3),
        ("25E-4", 3),
        ("\"1e3\"", 1_000_000),
        ("1E+1", 10_000),
        ("\" 2 \"", 2_000),
        ("\"+3\"", 3_000),
        ("\".5\"", 500),
        ("\"5.\"", 5_000),
        ("3543", ANON_MS),
        ("\"3543.000\"", ANON_MS),
        ("3542.9999", ANON_MS),
        ("0.001", 1),
        ("123.456", 123_456),
    ];
    for &(value, ms) in cases {
        assert_eq!(
            cmd(with("Lock", "Expire", value)),
            lock("f", "i", ms),
            "{value}"
        );
        let Command::Put { ttl, .. } = cmd(with("Put", "Expire", value)) else {
            panic!()
        };
        assert_eq!(ttl.as_millis(), ms, "Put {value}");
        let Command::Lock { wait, .. } = cmd(with("Lock", "Wait", value)) else {
            panic!()
        };
        assert_eq!(wait, Some(Ttl::from_millis(ms)), "Wait {value}");
    }
    // A zero wait is one attempt.
    for zero in ["0", "\"0\"", "0.0", "\"-0\"", "null"] {
        let Command::Lock { wait, .. } = cmd(with("Lock", "Wait", zero)) else {
            panic!()
        };
        assert_eq!(wait, None, "{zero}");
    }
}

#[test]
fn actions_are_case_insensitive() {
    for action in ACTIONS {
        let want = cmd(object(&valid_members(action)));
        let spellings = [
            action.to_lowercase(),
            action.to_uppercase(),
            action
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_lowercase()
                    } else {
                        c.to_ascii_uppercase()
                    }
                })
                .collect(),
        ];
        for spelling in spellings {
            let mut m: Vec<(&str, String)> = valid_members(action)
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect();
            m[0].1 = format!("\"{spelling}\"");
            let refs: Vec<(&str, &str)> = m.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(cmd(object(&refs)), want, "{spelling}");
            // Escaped letters are still letters.
            let escaped = format!(
                "\"\\u{:04X}{}\"",
                u32::from(spelling.as_bytes()[0]),
                &spelling[1..]
            );
            m[0].1 = escaped;
            let refs: Vec<(&str, &str)> = m.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(cmd(object(&refs)), want);
        }
    }
}

#[test]
fn unknown_fields_are_ignored() {
    let json = r#"{"Action":"Get","Extra":{"a":[1,{"b":null,"FileName":"no"}],"c":"\u00e9\"}"},"FileName":"f","More":[true,false,null,-1.5e-3,"x",[],{}],"ID":"i","Status":"Locked","Token":null,"n":0,"s":"\ud83d\ude00"}"#;
    assert_eq!(
        cmd(json),
        Command::Get {
            name: Resource("f"),
            owner: Owner("i")
        }
    );
    assert_eq!(cmd(legacy(json)), cmd(json));
    // Whitespace everywhere JSON allows it.
    let spaced = " {\t\"Action\" :\r\n\"Get\" , \"FileName\"\n:\"f\",\"ID\":\"i\" } ";
    assert_eq!(cmd(spaced), cmd(json));
}

#[test]
fn keys_may_come_in_any_order() {
    let members = [
        ("Action", "\"Put\""),
        ("FileName", "\"f\""),
        ("ID", "\"i\""),
        ("Expire", "\"1.5\""),
        ("DataStore", "\"a^\""),
        ("Revision", "3"),
    ];
    let want = cmd(object(&members));
    assert_eq!(
        want,
        Command::Put {
            name: Resource("f"),
            owner: Owner("i"),
            ttl: Ttl::from_millis(1500),
            data: "a^",
            revision: Some(Revision(3)),
            readers: dlm_core::protocol::Readers::Owner,
        }
    );
    // Every permutation (720), plain and legacy.
    let mut idx: Vec<usize> = (0..members.len()).collect();
    let mut count = 0;
    permute(&mut idx, 0, &mut |order| {
        let m: Vec<(&str, &str)> = order.iter().map(|&i| members[i]).collect();
        let json = object(&m);
        assert_eq!(cmd(&json), want, "{json}");
        assert_eq!(cmd(legacy(&json)), want, "{json}");
        count += 1;
    });
    assert_eq!(count, 720);
}

fn permute(v: &mut Vec<usize>, k: usize, f: &mut impl FnMut(&[usize])) {
    if k == v.len() {
        f(v);
        return;
    }
    for i in k..v.len() {
        v.swap(k, i);
        permute(v, k + 1, f);
        v.swap(k, i);
    }
}

/// A string as Python's `json.dumps` writes it (`ensure_ascii=True`).
fn py_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    write!(out, "\\u{u:04x}").unwrap();
                }
            }
        }
    }
    out.push('"');
    out
}

/// `json.dumps(dict)` with Python's default separators.
fn py_dumps(members: &[(&str, String)]) -> String {
    let body: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}: {v}", py_str(k)))
        .collect();
    format!("{{{}}}", body.join(", "))
}

#[test]
fn jackrabbit_python_client_requests() {
    let names = [
        "plain",
        "é",
        "ключ",
        "日本語のロック",
        "😀🔒",
        "a\u{10FFFF}z",
        "tab\tnew\nline\r",
        "quote\"back\\slash/",
        "\u{7f}\u{80}\u{ff}\u{100}",
        "\u{1}\u{1f}\u{8}\u{c}",
        "\u{2028}\u{fffd}\u{feff}",
    ];
    for (n, name) in names.iter().enumerate() {
        let owner = format!("{}-{n}", names[(n + 3) % names.len()]);
        let null = "null".to_string();
        let zero = py_str("0");
        let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
            (
                "Lock",
                vec![("Expire", py_str("300")), ("DataStore", null.clone())],
            ),
            (
                "Lock",
                vec![("Expire", py_str("2.5")), ("DataStore", null.clone())],
            ),
            (
                "Unlock",
                vec![("Expire", zero.clone()), ("DataStore", null.clone())],
            ),
            (
                "TestLock",
                vec![("Expire", zero.clone()), ("DataStore", null.clone())],
            ),
            (
                "Get",
                vec![("Expire", zero.clone()), ("DataStore", null.clone())],
            ),
            (
                "Erase",
                vec![("Expire", zero.clone()), ("DataStore", null.clone())],
            ),
            (
                "Put",
                vec![
                    ("Expire", py_str("60")),
                    ("DataStore", py_str(&legacy(name))),
                ],
            ),
            (
                "Version",
                vec![("Expire", zero.clone()), ("DataStore", null.clone())],
            ),
        ];
        for (action, extra) in cases {
            let mut members = vec![
                ("Action", py_str(action)),
                ("FileName", py_str(name)),
                ("ID", py_str(&owner)),
            ];
            members.extend(extra);
            // Old Pythons send the keys in any order.
            for rot in 0..members.len() {
                let mut m = members.clone();
                m.rotate_left(rot);
                if rot % 2 == 1 {
                    m.reverse();
                }
                let json = py_dumps(&m);
                assert!(json.is_ascii());
                // `serde_json` agrees on what the text says.
                let v: serde_json::Value = serde_json::from_str(&json).unwrap();
                assert_eq!(v["FileName"], *name);
                for line in [legacy(&json), json.clone()] {
                    let req = ok(format!("{line}\n"));
                    match req.command {
                        Command::Version => assert_eq!(action, "Version"),
                        c => {
                            assert_eq!(c.action(), action);
                            let (got_name, got_owner) = c.target().unwrap();
                            assert_eq!(got_name.as_str(), *name);
                            assert_eq!(got_owner.as_str(), owner);
                            match c {
                                Command::Lock {
                                    ttl, wait, token, ..
                                } => {
                                    assert!(
                                        ttl == Ttl::from_secs(300) || ttl == Ttl::from_millis(2500)
                                    );
                                    assert_eq!((wait, token), (None, None));
                                }
                                Command::Put {
                                    data,
                                    ttl,
                                    revision,
                                    ..
                                } => {
                                    assert_eq!(
                                        codec::decode(data.as_bytes()).unwrap(),
                                        name.as_bytes()
                                    );
                                    assert_eq!(ttl, Ttl::from_secs(60));
                                    assert_eq!(revision, None);
                                }
                                Command::Unlock { token, .. } => assert_eq!(token, None),
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Responses

#[test]
fn responses_parse_leniently_where_old_servers_differ() {
    let cases: &[(&str, Response<'static>)] = &[
        (r#"{"Status":"locked"}"#, Response::new(Status::Locked)),
        (r#"{"Status":"no"}"#, Response::new(Status::No)),
        (r#"{"Status":"NO"}"#, Response::new(Status::No)),
        (
            r#"{"ID":null,"Status":"Unlocked","Extra":[{"a":1}],"DataStore":null}"#,
            Response::new(Status::Unlocked),
        ),
        (
            r#"{"Status":"Version","ID":"JackrabbitDLM/1.0 \u00e9"}"#,
            Response {
                id: Some("JackrabbitDLM/1.0 é"),
                ..Response::new(Status::Version)
            },
        ),
        (
            r#"{"Status":"NotOwner","Expire":"1.5"}"#,
            Response {
                expire: Some(Ttl::from_millis(1500)),
                ..Response::new(Status::NotOwner)
            },
        ),
        (
            r#"{"Status":"Done","Stats":{"Lock":1},"Revision":18446744073709551615}"#,
            Response {
                revision: Some(Revision(u64::MAX)),
                ..Response::new(Status::Done)
            },
        ),
        (
            r#"{"Status":"BadPayload","Error":"no \"good\""}"#,
            Response {
                error: Some(Message::Text("no \"good\"")),
                ..Response::new(Status::BadPayload)
            },
        ),
    ];
    for (json, want) in cases {
        for line in [format!("{json}\n"), format!("{}\r\n", legacy(json))] {
            let mut buf = line.into_bytes();
            let (_, got) = Response::parse(&mut buf).unwrap();
            assert_eq!(got, *want, "{json}");
        }
    }
}

#[test]
fn malformed_responses_are_typed() {
    let cases: &[(&str, ResponseError)] = &[
        ("{}", ResponseError::MissingStatus),
        (r#"{"Status":null}"#, ResponseError::MissingStatus),
        (r#"{"Status":"Maybe"}"#, ResponseError::UnknownStatus),
        (r#"{"Status":1}"#, ResponseError::BadField(Field::Status)),
        (
            r#"{"Status":"Done","Status":"Done"}"#,
            ResponseError::DuplicateField(Field::Status),
        ),
        (
            r#"{"Status":"Done","Stats":{},"Stats":{}}"#,
            ResponseError::DuplicateField(Field::Stats),
        ),
        (
            r#"{"Status":"Done","Stats":[]}"#,
            ResponseError::BadField(Field::Stats),
        ),
        (
            r#"{"Status":"Locked","Token":"7"}"#,
            ResponseError::BadField(Field::Token),
        ),
        (
            r#"{"Status":"Locked","Token":-7}"#,
            ResponseError::BadField(Field::Token),
        ),
        (
            r#"{"Status":"Locked","Token":18446744073709551616}"#,
            ResponseError::BadField(Field::Token),
        ),
        (
            r#"{"Status":"Done","Revision":1.5}"#,
            ResponseError::BadField(Field::Revision),
        ),
        (
            r#"{"Status":"Locked","Expire":-1}"#,
            ResponseError::BadField(Field::Expire),
        ),
        (
            r#"{"Status":"Locked","Expire":"soon"}"#,
            ResponseError::BadField(Field::Expire),
        ),
        (
            r#"{"Status":"Locked","Expire":true}"#,
            ResponseError::BadField(Field::Expire),
        ),
        (
            r#"{"Status":"Locked","ID":7}"#,
            ResponseError::BadField(Field::Id),
        ),
        (
            r#"{"Status":"Done","DataStore":[]}"#,
            ResponseError::BadField(Field::DataStore),
        ),
        (
            r#"{"Status":"BadPayload","Error":{}}"#,
            ResponseError::BadField(Field::Error),
        ),
        (
            r#"{"Status":"Done"} x"#,
            ResponseError::Json(JsonError::Trailing { offset: 18 }),
        ),
        (
            r#"{"Status":"Done""#,
            ResponseError::Json(JsonError::UnexpectedEnd),
        ),
    ];
    for &(json, e) in cases {
        for line in [json.to_string(), legacy(json)] {
            assert_eq!(
                Response::parse(&mut line.into_bytes()).map(|_| ()),
                Err(e),
                "{json}"
            );
        }
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(
        Response::parse(&mut legacy("[]").into_bytes()),
        Err(ResponseError::Json(JsonError::NotAnObject))
    );
}

#[test]
fn stats_replies_round_trip() {
    let mut stats = Stats::new();
    for (i, &s) in Stat::ALL.iter().enumerate() {
        stats.set(s, (u64::try_from(i).unwrap() + 1) * 1_000_003);
    }
    stats.set(Stat::Lock, u64::MAX);
    stats.set(Stat::In, 0);
    let mut resp = Response::new(Status::Done);
    resp.stats = Some(&stats);
    for framing in [Framing::Plain, Framing::Legacy] {
        let line = write_response(&resp, framing);
        if framing == Framing::Plain {
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            let obj = v["Stats"].as_object().unwrap();
            assert_eq!(obj.len(), Stat::COUNT);
            assert_eq!(obj["Lock"], u64::MAX);
            // Sorted by name, as in the log line.
            let text = String::from_utf8(line.clone()).unwrap();
            let text = &text[text.find("\"Stats\":{").unwrap() + 9..];
            let mut last = None;
            for s in Stat::ALL {
                let at = text.find(&format!("\"{}\":", s.name())).unwrap();
                assert!(Some(at) > last, "{s} out of order");
                last = Some(at);
            }
        }
        assert_eq!(Response::parse_stats(&mut line.clone()), Ok(stats.clone()));
        // `parse` skips the counters but reads the rest.
        let mut buf = line;
        assert_eq!(
            Response::parse(&mut buf).unwrap(),
            (framing, Response::new(Status::Done))
        );
    }
}

#[test]
fn stats_replies_are_checked() {
    let ok_line = r#"{"Status":"Done","Stats":{"Lock":3,"\u0041Lock":2,"Future":7,"Note":"x","Deep":{"Lock":9},"In":null}}"#;
    let stats = Response::parse_stats(&mut ok_line.as_bytes().to_vec()).unwrap();
    assert_eq!(stats.get(Stat::Lock), 3);
    assert_eq!(stats.get(Stat::ALock), 2);
    assert_eq!(stats.get(Stat::In), 0);
    assert_eq!(
        Response::parse_stats(&mut legacy(ok_line).into_bytes()),
        Ok(stats)
    );
    for (json, e) in [
        (
            r#"{"Status":"Done"}"#,
            ResponseError::BadField(Field::Stats),
        ),
        (
            r#"{"Status":"BadAction","Stats":{}}"#,
            ResponseError::BadField(Field::Stats),
        ),
        (
            r#"{"Status":"Done","Stats":{"Lock":-1}}"#,
            ResponseError::BadField(Field::Stats),
        ),
        (
            r#"{"Status":"Done","Stats":{"Lock":1.5}}"#,
            ResponseError::BadField(Field::Stats),
        ),
        (
            r#"{"Status":"Done","Stats":"none"}"#,
            ResponseError::BadField(Field::Stats),
        ),
        (r#"{"Stats":{}}"#, ResponseError::MissingStatus),
        (
            r#"{"Status":"Done","Stats":{"Lock":1,}}"#,
            ResponseError::Json(JsonError::Unexpected { offset: 35 }),
        ),
    ] {
        assert_eq!(
            Response::parse_stats(&mut json.as_bytes().to_vec()),
            Err(e),
            "{json}"
        );
    }
}

// ---------------------------------------------------------------------------
// Round-trip properties

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

/// Characters that stress escaping: quotes, backslashes, every control
/// character, non-ASCII of every UTF-8 length, and anything at all.
fn arb_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>(),
        3 => prop::char::range('a', 'z'),
        2 => prop::sample::select(vec![
            '"', '\\', '/', '\n', '\r', '\t', '\u{0}', '\u{8}', '\u{c}', '\u{1f}', '\u{7f}',
            '\u{80}', 'é', '\u{2028}', '\u{fffd}', '\u{ffff}', '😀', '\u{10ffff}', ' ', '{', '}',
            ':', ',',
        ]),
        1 => (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap()),
    ]
}

fn arb_text(len: core::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(arb_char(), len).prop_map(String::from_iter)
}

fn arb_framing() -> impl Strategy<Value = Framing> {
    prop_oneof![Just(Framing::Plain), Just(Framing::Legacy)]
}

/// An owned request, to borrow a [`Request`] from.
#[derive(Clone, Debug)]
struct Spec {
    framing: Framing,
    action: usize,
    name: String,
    owner: String,
    ttl: u64,
    wait: Option<u64>,
    token: Option<u64>,
    data: String,
    revision: Option<u64>,
    creds: Option<(String, String)>,
}

impl Spec {
    fn request(&self) -> Request<'_> {
        let name = Resource(&self.name);
        let owner = Owner(&self.owner);
        let ttl = Ttl::from_millis(self.ttl);
        let command = match self.action {
            0 => Command::Lock {
                name,
                owner,
                ttl,
                wait: self.wait.map(Ttl::from_millis),
                token: self.token.map(Token),
            },
            1 => Command::Unlock {
                name,
                owner,
                token: self.token.map(Token),
            },
            2 => Command::TestLock { name, owner },
            3 => Command::Put {
                name,
                owner,
                ttl,
                data: &self.data,
                revision: self.revision.map(Revision),
                readers: dlm_core::protocol::Readers::Owner,
            },
            4 => Command::Get { name, owner },
            5 => Command::Erase { name, owner },
            6 => Command::Version,
            _ => Command::Stats,
        };
        Request {
            framing: self.framing,
            command,
            credentials: self
                .creds
                .as_ref()
                .map(|(name, secret)| Credentials { name, secret }),
            request_id: None,
            session: None,
        }
    }
}

fn arb_ms(max: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        1..=max,
        Just(1),
        Just(max),
        (1..=max / 1000).prop_map(|s| s * 1000)
    ]
}

fn arb_spec() -> impl Strategy<Value = Spec> {
    let max = DEFAULT_MAX_TTL.as_millis();
    (
        arb_framing(),
        0..8usize,
        arb_text(1..12),
        arb_text(1..12),
        prop::option::weighted(0.3, (arb_text(0..8), arb_text(0..8))),
        (arb_ms(max), prop::option::weighted(0.4, arb_ms(max))),
        prop::option::weighted(0.4, any::<u64>()),
        arb_text(0..24),
        prop::option::weighted(0.4, any::<u64>()),
    )
        .prop_map(
            |(framing, action, name, owner, creds, (ttl, wait), token, data, revision)| {
                // Anonymous requests are held to the anonymous limit.
                let clamp = |ms: u64| {
                    if creds.is_some() {
                        ms
                    } else {
                        1 + (ms - 1) % ANON_MS
                    }
                };
                Spec {
                    framing,
                    action,
                    name,
                    owner,
                    ttl: clamp(ttl),
                    wait: wait.map(clamp),
                    token,
                    data,
                    revision,
                    creds,
                }
            },
        )
}

#[derive(Clone, Debug)]
struct RespSpec {
    status: Status,
    id: Option<String>,
    data: Option<String>,
    token: Option<u64>,
    expire: Option<u64>,
    revision: Option<u64>,
    error: Option<String>,
}

impl RespSpec {
    fn response(&self) -> Response<'_> {
        Response {
            status: self.status,
            id: self.id.as_deref(),
            data: self.data.as_deref(),
            token: self.token.map(Token),
            expire: self.expire.map(Ttl::from_millis),
            revision: self.revision.map(Revision),
            error: self.error.as_deref().map(Message::Text),
            stats: None,
            cluster: None,
            admin: None,
            tokens: None,
        }
    }
}

fn opt<S: Strategy>(s: S) -> impl Strategy<Value = Option<S::Value>> {
    prop::option::weighted(0.5, s)
}

fn arb_resp() -> impl Strategy<Value = RespSpec> {
    (
        prop::sample::select(Status::ALL.to_vec()),
        opt(arb_text(0..16)),
        opt(arb_text(0..16)),
        opt(any::<u64>()),
        opt(prop_oneof![any::<u64>(), 0..10_000u64]),
        opt(any::<u64>()),
        opt(arb_text(0..16)),
    )
        .prop_map(
            |(status, id, data, token, expire, revision, error)| RespSpec {
                status,
                id,
                data,
                token,
                expire,
                revision,
                error,
            },
        )
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn requests_round_trip(spec in arb_spec()) {
        let req = spec.request();
        let mut line = write_request(&req);
        prop_assert_eq!(line.last(), Some(&b'\n'));
        prop_assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        prop_assert_eq!(Framing::detect(&line), spec.framing);
        if spec.framing == Framing::Plain {
            // Valid JSON by `serde_json`'s account too.
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            prop_assert_eq!(v["Action"].as_str(), Some(req.command.action()));
        }
        let back = Request::parse(&mut line, &Limits::DEFAULT);
        prop_assert_eq!(back, Ok(req));
    }

    #[test]
    fn responses_round_trip(spec in arb_resp(), framing in arb_framing()) {
        let resp = spec.response();
        let mut line = write_response(&resp, framing);
        prop_assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        if framing == Framing::Plain {
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            prop_assert_eq!(v["Status"].as_str(), Some(spec.status.as_str()));
            prop_assert_eq!(v["ID"].as_str(), spec.id.as_deref());
            prop_assert_eq!(v["Error"].as_str(), spec.error.as_deref());
            prop_assert_eq!(v["Token"].as_u64(), spec.token);
        }
        let back = Response::parse(&mut line);
        prop_assert_eq!(back, Ok((framing, resp)));
    }

    #[test]
    fn stats_round_trip(values in prop::collection::vec(any::<u64>(), Stat::COUNT), framing in arb_framing()) {
        let mut stats = Stats::new();
        for (&s, &v) in Stat::ALL.iter().zip(&values) {
            stats.set(s, v);
        }
        let mut resp = Response::new(Status::Done);
        resp.stats = Some(&stats);
        let mut line = write_response(&resp, framing);
        prop_assert_eq!(Response::parse_stats(&mut line), Ok(stats.clone()));
    }

    #[test]
    fn codec_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let text = codec::encode(&bytes);
        prop_assert_eq!(text.len(), codec::encoded_len(bytes.len()));
        prop_assert_eq!(codec::decode(text.as_bytes()), Ok(bytes.clone()));
        let mut buf = text.into_bytes();
        prop_assert_eq!(codec::decode_in_place(&mut buf), Ok(bytes.len()));
        prop_assert_eq!(&buf[..bytes.len()], &bytes[..]);
    }

    #[test]
    fn codec_decoders_agree(text in prop::collection::vec(
        prop_oneof![3 => prop::sample::select(codec::ALPHABET.to_vec()), 1 => any::<u8>()], 0..40)
    ) {
        let owned = codec::decode(&text);
        let mut out = vec![0u8; text.len() / 2];
        let into = codec::decode_into(&text, &mut out).map(|n| out[..n].to_vec());
        let mut buf = text.clone();
        let in_place = codec::decode_in_place(&mut buf).map(|n| buf[..n].to_vec());
        prop_assert_eq!(&owned, &into);
        prop_assert_eq!(&owned, &in_place);
        prop_assert_eq!(codec::validate(&text), owned.as_ref().map(|_| ()).map_err(|&e| e));
        if let Ok(bytes) = owned {
            prop_assert_eq!(codec::encode(&bytes).into_bytes(), text);
        }
    }
}

// ---------------------------------------------------------------------------
// Differential test against `serde_json`

/// Renders one character inside a JSON string in one of several styles.
fn render_char(out: &mut String, c: char, style: u8) {
    let short = match c {
        '"' => Some("\\\""),
        '\\' => Some("\\\\"),
        '\n' => Some("\\n"),
        '\r' => Some("\\r"),
        '\t' => Some("\\t"),
        '\u{8}' => Some("\\b"),
        '\u{c}' => Some("\\f"),
        '/' if style == 3 => Some("\\/"),
        _ => None,
    };
    let must_escape = c < ' ' || c == '"' || c == '\\';
    match (style, short) {
        (3, Some(s)) => out.push_str(s),
        (0 | 3, _) if !must_escape => out.push(c),
        (0, Some(s)) => out.push_str(s),
        _ => {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                if style == 2 {
                    write!(out, "\\u{u:04X}").unwrap();
                } else {
                    write!(out, "\\u{u:04x}").unwrap();
                }
            }
        }
    }
}

/// A JSON string literal for `s`, escaped in random styles; sometimes with
/// a malformed piece spliced in.
fn arb_string_lit(s: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    (
        s,
        prop::collection::vec(0u8..4, 0..64),
        prop::option::weighted(
            0.03,
            (
                any::<prop::sample::Index>(),
                prop::sample::select(vec![
                    "\\x",
                    "\\ud800",
                    "\\udc00",
                    "\\ud83d\\u0041",
                    "\\u12",
                    "\t",
                    "\u{1}",
                    "\\",
                ]),
            ),
        ),
    )
        .prop_map(|(s, styles, bad)| {
            let mut out = String::from("\"");
            for (i, c) in s.chars().enumerate() {
                if let Some((at, piece)) = &bad {
                    if at.index(s.chars().count() + 1) == i {
                        out.push_str(piece);
                    }
                }
                render_char(&mut out, c, styles.get(i).copied().unwrap_or(0));
            }
            out.push('"');
            out
        })
}

fn arb_number_lit() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        (0u64..100_000, 0u32..5).prop_map(|(n, d)| format!(
            "{}.{:0w$}",
            n / 10u64.pow(d),
            n % 10u64.pow(d),
            w = usize::try_from(d).unwrap()
        )),
        "-?(0|[1-9][0-9]{0,24})(\\.[0-9]{1,8})?([eE][+-]?[0-9]{1,3})?",
        prop::sample::select(vec![
            "0",
            "-0",
            "1e999",
            "-1e999",
            "1e-999",
            "18446744073709551615",
            "18446744073709551616",
            "3543",
            "3543.0001",
            "3542.9999",
            "0.0001",
            "1.5",
            "01",
            "1.",
            "-",
            ".5",
            "+1",
            "NaN",
            "Infinity",
            "1e",
            "0x10",
            "31622400",
            "31622400.001",
        ])
        .prop_map(String::from),
    ]
}

/// Any JSON value, mostly valid, sometimes deeper than the limit.
fn arb_value() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        arb_number_lit(),
        arb_string_lit(arb_text(0..6)),
    ];
    let tree = leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((arb_string_lit(arb_text(0..4)), inner), 0..4).prop_map(|v| {
                let members: Vec<String> = v.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    });
    prop_oneof![
        12 => tree,
        1 => (MAX_JSON_DEPTH - 2..MAX_JSON_DEPTH + 3, any::<bool>()).prop_map(|(n, obj)| {
            if obj {
                format!("{}0{}", "{\"k\":".repeat(n), "}".repeat(n))
            } else {
                format!("{}{}", "[".repeat(n), "]".repeat(n))
            }
        }),
    ]
    .boxed()
}

const KNOWN: [&str; 10] = [
    "Action",
    "FileName",
    "ID",
    "Expire",
    "DataStore",
    "Name",
    "Identity",
    "Wait",
    "Revision",
    "Token",
];

/// A value for a known field: usually of the right type, sometimes not.
fn arb_field_value(field: &'static str) -> BoxedStrategy<String> {
    let numeric_text = prop_oneof![
        arb_number_lit(),
        prop::sample::select(vec![
            " 2 ",
            "+3",
            "5.",
            ".5",
            "nan",
            "inf",
            "-Infinity",
            "abc",
            "",
            "1_0",
            "0",
            "1e3",
        ])
        .prop_map(String::from),
    ];
    match field {
        "Action" => prop_oneof![
            8 => (prop::sample::select(ACTIONS.to_vec()), any::<u8>()).prop_map(|(a, case)| {
                let spelled: String = a.chars().enumerate().map(|(i, c)| {
                    if case >> (i % 8) & 1 == 1 { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }
                }).collect();
                spelled
            }).prop_flat_map(|a| arb_string_lit(Just(a))),
            1 => arb_value(),
        ]
        .boxed(),
        "FileName" | "ID" | "DataStore" | "Name" | "Identity" => prop_oneof![
            10 => arb_string_lit(arb_text(0..10)),
            1 => (1020..1030usize).prop_map(|n| format!("\"{}\"", "n".repeat(n))),
            2 => arb_value(),
        ]
        .boxed(),
        "Expire" | "Wait" => prop_oneof![
            4 => arb_number_lit(),
            4 => numeric_text.prop_flat_map(|t| arb_string_lit(Just(t))),
            1 => arb_value(),
        ]
        .boxed(),
        _ => prop_oneof![
            4 => any::<u64>().prop_map(|n| n.to_string()),
            2 => arb_number_lit(),
            1 => arb_value(),
        ]
        .boxed(),
    }
}

/// A key: a known field name (sometimes escaped) or something else.
fn arb_key(field: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just(format!("\"{field}\"")),
        1 => arb_string_lit(Just(field.to_string())),
    ]
}

/// A random request-like JSON object.
fn arb_object() -> impl Strategy<Value = String> {
    let weights = [0.95, 0.85, 0.85, 0.75, 0.6, 0.12, 0.12, 0.25, 0.25, 0.25];
    let known: Vec<_> = KNOWN
        .iter()
        .zip(weights)
        .map(|(&f, w)| prop::option::weighted(w, (arb_key(f), arb_field_value(f))))
        .collect();
    let unknown = prop::collection::vec(
        (
            prop_oneof![
                arb_string_lit(arb_text(0..6)),
                prop::sample::select(KNOWN.to_vec())
                    .prop_map(|k| format!("\"{}\"", k.to_lowercase())),
            ],
            arb_value(),
        ),
        0..3,
    );
    let duplicate = prop::option::weighted(
        0.08,
        prop::sample::select(KNOWN.to_vec()).prop_flat_map(|f| (arb_key(f), arb_field_value(f))),
    );
    let ws = prop::collection::vec(
        prop::sample::select(vec!["", "", "", "", " ", "\t", "\r\n", "\n  "]),
        64,
    );
    (known, unknown, duplicate, ws)
        .prop_flat_map(|(known, unknown, dup, ws)| {
            let mut members: Vec<(String, String)> = known.into_iter().flatten().collect();
            members.extend(unknown);
            members.extend(dup);
            (Just(members).prop_shuffle(), Just(ws))
        })
        .prop_map(|(members, ws)| {
            let mut w = ws.into_iter().cycle();
            let mut s = String::new();
            s.push_str(w.next().unwrap());
            s.push('{');
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(w.next().unwrap());
                s.push_str(k);
                s.push_str(w.next().unwrap());
                s.push(':');
                s.push_str(w.next().unwrap());
                s.push_str(v);
                s.push_str(w.next().unwrap());
            }
            s.push('}');
            s.push_str(w.next().unwrap());
            s
        })
}

/// The keys of the top-level object of a valid JSON text, in order and
/// with repeats (`serde_json`'s map keeps only the last of each).
fn top_level_keys(text: &[u8]) -> Vec<String> {
    let mut keys = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                let start = i;
                i += 1;
                while text[i] != b'"' {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
                let rest = &text[i + 1..];
                let next = rest.iter().find(|b| !b" \t\r\n".contains(b));
                if depth == 1 && next == Some(&b':') {
                    keys.push(serde_json::from_slice(&text[start..=i]).unwrap());
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    keys
}

fn has_repeats(keys: &[String], only: impl Fn(&str) -> bool) -> bool {
    keys.iter()
        .enumerate()
        .any(|(i, k)| only(k) && keys[..i].contains(k))
}

fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// What a decimal text says, by an independent reading: `None` if it is
/// not a plain decimal, else whether it is zero, negative, and about how
/// many milliseconds it is.
fn decimal(text: &str) -> Option<(bool, bool, f64)> {
    let t = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let (negative, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.len() + frac.len() == 0 || !digits(int) || !digits(frac) {
        return None;
    }
    if let Some(e) = exponent {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        if e.is_empty() || !digits(e) {
            return None;
        }
    }
    let zero = int.bytes().chain(frac.bytes()).all(|b| b == b'0');
    let value: f64 = body.parse().ok()?;
    Some((zero, negative && !zero, value * 1000.0))
}

/// Milliseconds we should have read from a seconds field, as `serde_json`
/// sees it; `None` if it is not a number or a numeric string.
fn seconds_of(v: &serde_json::Value) -> Option<(bool, bool, f64)> {
    match v {
        serde_json::Value::String(s) => decimal(s),
        serde_json::Value::Number(n) => decimal(&n.to_string()).or_else(|| {
            let f = n.as_f64()?;
            Some((f == 0.0, f < 0.0, f * 1000.0))
        }),
        _ => None,
    }
}

fn close_ms(ours: u64, theirs: f64) -> bool {
    #[allow(clippy::cast_precision_loss)]
    let ours = ours as f64;
    (ours - theirs).abs() <= 1.0 + ours * 1e-9 || (ours - theirs.ceil()).abs() <= 1.0
}

/// The differential check for one line (the JSON text, without framing).
fn differential(text: &[u8]) -> Result<(), TestCaseError> {
    // What `serde_json` reads is the JSON text: the line without the blanks
    // around it, which are framing (they include the form feed, which JSON
    // does not count as whitespace).
    let framed = text.trim_ascii();
    let ours = parse(text);
    // The same text in the legacy framing is read the same way.
    let legacy_ours = parse(legacy(framed));
    prop_assert_eq!(
        ours.ok().map(|r| r.command),
        legacy_ours.ok().map(|r| r.command),
        "plain and legacy disagree"
    );
    let theirs: Result<serde_json::Value, _> = serde_json::from_slice(framed);
    if let Ok(req) = ours {
        prop_assert_eq!(req.framing, Framing::Plain);
        let v = match theirs {
            Ok(v) => v,
            // `serde_json` cannot hold a number past f64; we skip it unread.
            Err(e) if e.to_string().starts_with("number out of range") => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(format!("we accepted, serde_json: {e}"))),
        };
        let map = v
            .as_object()
            .ok_or_else(|| TestCaseError::fail("not an object"))?;
        let keys = top_level_keys(framed);
        prop_assert!(
            !has_repeats(&keys, |k| KNOWN.contains(&k)),
            "accepted a repeated field: {:?}",
            keys
        );
        agree(&req, map)?;
        return Ok(());
    }
    // We rejected: `serde_json` must have a reason to as well.
    let Ok(v) = theirs else { return Ok(()) };
    let Some(map) = v.as_object() else {
        return Ok(());
    };
    if has_repeats(&top_level_keys(framed), |_| true) {
        return Ok(());
    }
    if map.values().any(|v| depth(v) > MAX_JSON_DEPTH) {
        return Ok(());
    }
    if well_typed(map) {
        return Err(TestCaseError::fail(format!(
            "serde_json reads a valid request, we said {:?}",
            ours.unwrap_err()
        )));
    }
    Ok(())
}

fn get<'m>(
    map: &'m serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Option<&'m serde_json::Value> {
    map.get(key).filter(|v| !v.is_null())
}

/// What we parsed agrees with `serde_json`'s reading of the same text.
fn agree(
    req: &Request<'_>,
    map: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), TestCaseError> {
    let s = |k| get(map, k).and_then(serde_json::Value::as_str);
    let action = s("Action").unwrap_or_default();
    prop_assert!(action.eq_ignore_ascii_case(req.command.action()));
    match req.credentials {
        Some(c) => {
            prop_assert_eq!(s("Name"), Some(c.name));
            prop_assert_eq!(s("Identity"), Some(c.secret));
        }
        None => prop_assert!(get(map, "Name").is_none() && get(map, "Identity").is_none()),
    }
    if let Some((name, owner)) = req.command.target() {
        prop_assert_eq!(s("FileName"), Some(name.as_str()));
        prop_assert_eq!(s("ID"), Some(owner.as_str()));
    }
    let seconds = |k, got: Option<Ttl>| -> Result<(), TestCaseError> {
        match (get(map, k).and_then(seconds_of), got) {
            (Some((_, false, ms)), Some(t)) => {
                prop_assert!(close_ms(t.as_millis(), ms), "{k}: {t:?} vs {ms}");
            }
            (Some((true, false, _)) | None, None) => {}
            (theirs, ours) => prop_assert!(false, "{k}: {theirs:?} vs {ours:?}"),
        }
        Ok(())
    };
    let integer = |k, got: Option<u64>| -> Result<(), TestCaseError> {
        prop_assert_eq!(
            get(map, k).and_then(serde_json::Value::as_u64),
            got,
            "{}",
            k
        );
        Ok(())
    };
    match req.command {
        Command::Lock {
            ttl, wait, token, ..
        } => {
            seconds("Expire", Some(ttl))?;
            seconds("Wait", wait)?;
            integer("Token", token.map(|t| t.0))?;
        }
        Command::Unlock { token, .. } => integer("Token", token.map(|t| t.0))?,
        Command::Put {
            ttl,
            data,
            revision,
            ..
        } => {
            seconds("Expire", Some(ttl))?;
            prop_assert_eq!(s("DataStore"), Some(data));
            integer("Revision", revision.map(|r| r.0))?;
        }
        _ => {}
    }
    Ok(())
}

/// Whether a request must be accepted, judged from `serde_json`'s reading:
/// a known action, every field it uses of the right type and within the
/// limits (with a margin where the two readings of a number may differ).
fn well_typed(map: &serde_json::Map<String, serde_json::Value>) -> bool {
    let string = |k| match get(map, k) {
        None => Some(None),
        Some(serde_json::Value::String(s)) => Some(Some(s.as_str())),
        Some(_) => None,
    };
    let Some(Some(action)) = string("Action") else {
        return false;
    };
    let Some(action) = ACTIONS.iter().position(|a| a.eq_ignore_ascii_case(action)) else {
        return false;
    };
    let creds = match (string("Name"), string("Identity")) {
        (Some(None), Some(None)) => false,
        (Some(Some(_)), Some(Some(_))) => true,
        _ => return false,
    };
    #[allow(clippy::cast_precision_loss)]
    let limit = if creds {
        DEFAULT_MAX_TTL.as_millis()
    } else {
        ANON_MS
    } as f64;
    let name = |k| matches!(string(k), Some(Some(s)) if !s.is_empty() && s.len() <= 1024);
    // Clearly positive and clearly within the limit.
    let seconds = |k, required: bool| match get(map, k) {
        None => !required,
        Some(v) => match seconds_of(v) {
            Some((zero, negative, ms)) => {
                !negative
                    && ms <= limit * (1.0 - 1e-9)
                    && (!zero || !required)
                    && (ms >= 1e-6 || zero)
            }
            None => false,
        },
    };
    let integer = |k| get(map, k).is_none_or(serde_json::Value::is_u64);
    let target = name("FileName") && name("ID");
    match ACTIONS[action] {
        "Lock" => target && seconds("Expire", true) && seconds("Wait", false) && integer("Token"),
        "Unlock" => target && integer("Token"),
        "Put" => {
            target
                && seconds("Expire", true)
                && matches!(string("DataStore"), Some(Some(d)) if creds || d.len() <= 16 * 1024)
                && integer("Revision")
        }
        "Version" | "Stats" => true,
        _ => target,
    }
}

/// One random edit of a line.
#[derive(Clone, Debug)]
enum Edit {
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Delete(prop::sample::Index),
    Repeat(prop::sample::Index, usize),
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    let byte = prop_oneof![
        3 => prop::sample::select(b"\"\\{}[],:-+.eE0123456789 \tnul/u".to_vec()),
        1 => any::<u8>(),
        1 => prop::sample::select(vec![0x00, 0x0c, 0x7f, 0x80, 0xc3, 0xed, 0xff]),
    ];
    prop_oneof![
        (any::<prop::sample::Index>(), byte.clone()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<prop::sample::Index>(), byte).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Edit::Delete),
        (any::<prop::sample::Index>(), 1..12usize).prop_map(|(i, n)| Edit::Repeat(i, n)),
    ]
}

fn apply(line: &mut Vec<u8>, edit: &Edit) {
    if line.is_empty() {
        return;
    }
    match edit {
        Edit::Set(i, b) => {
            let i = i.index(line.len());
            line[i] = *b;
        }
        Edit::Insert(i, b) => line.insert(i.index(line.len() + 1), *b),
        Edit::Delete(i) => {
            line.remove(i.index(line.len()));
        }
        Edit::Repeat(i, n) => {
            let at = i.index(line.len());
            let end = (at + n).min(line.len());
            let piece = line[at..end].to_vec();
            line.splice(at..at, piece);
        }
    }
}

proptest! {
    #![proptest_config(config(1536))]

    #[test]
    fn differential_generated_objects(text in arb_object()) {
        differential(text.as_bytes())?;
    }

    #[test]
    fn differential_mutated_lines(
        spec in arb_spec(),
        edits in prop::collection::vec(arb_edit(), 1..4),
    ) {
        let spec = Spec { framing: Framing::Plain, ..spec };
        let mut line = write_request(&spec.request());
        line.pop();
        for edit in &edits {
            apply(&mut line, edit);
        }
        differential(&line)?;
    }
}

#[test]
fn differential_harness_sees_what_it_should() {
    // Guards against a harness that passes because it checks nothing.
    assert_eq!(
        top_level_keys(br#"{"a":{"b":1,"c":":"},"\u0041\"":[":"],"a":2}"#),
        ["a", "A\"", "a"]
    );
    assert!(differential(br#"{"Action":"Get","FileName":"f","ID":"i"}"#).is_ok());
    let v: serde_json::Value =
        serde_json::from_str(r#"{"Action":"lock","FileName":"f","ID":"i","Expire":"1e-3"}"#)
            .unwrap();
    assert!(well_typed(v.as_object().unwrap()));
    let v: serde_json::Value =
        serde_json::from_str(r#"{"Action":"lock","FileName":"f","ID":"i","Expire":"0"}"#).unwrap();
    assert!(!well_typed(v.as_object().unwrap()));
    let v: serde_json::Value =
        serde_json::from_str(r#"{"Action":"Unlock","FileName":"f","ID":"i","Token":1.0}"#).unwrap();
    assert!(!well_typed(v.as_object().unwrap()));
    assert_eq!(decimal(" 1.5 "), Some((false, false, 1500.0)));
    assert_eq!(decimal("-0.0"), Some((true, false, -0.0)));
    assert_eq!(decimal("nan"), None);
    assert_eq!(decimal("1_0"), None);
}

/// `RequestID` (issue 11): an opaque string of 1 to 64 bytes, on any
/// request, written back by the client's request writer.
#[test]
fn request_ids_are_parsed_checked_and_written() {
    let r = ok(
        r#"{"Action":"Put","FileName":"k","ID":"a","Expire":1,"DataStore":"v","RequestID":"7f3a-1"}"#,
    );
    assert_eq!(r.request_id, Some("7f3a-1"));
    assert_eq!(
        ok(r#"{"Action":"Get","FileName":"k","ID":"a"}"#).request_id,
        None
    );
    rejects(
        r#"{"Action":"Get","FileName":"k","ID":"a","RequestID":""}"#,
        RequestError::EmptyField(Field::RequestId),
    );
    let long = "x".repeat(65);
    rejects(
        &format!(r#"{{"Action":"Get","FileName":"k","ID":"a","RequestID":"{long}"}}"#),
        RequestError::TooLong {
            field: Field::RequestId,
            limit: 64,
        },
    );
    rejects(
        r#"{"Action":"Get","FileName":"k","ID":"a","RequestID":7}"#,
        RequestError::WrongType {
            field: Field::RequestId,
            found: "a number",
        },
    );
    for framing in [Framing::Plain, Framing::Legacy] {
        let req = Request {
            framing,
            command: lock("l", "o", 1000),
            credentials: None,
            request_id: None,
            session: None,
        }
        .with_request_id("id-9");
        let mut line = write_request(&req);
        let back = Request::parse(&mut line, &Limits::DEFAULT).unwrap();
        assert_eq!(back.request_id, Some("id-9"));
    }
}

/// `Admin` (extension): every op parses from either framing, writes back to
/// the same request, and refuses what is missing or unknown.
#[test]
fn admin_requests_parse_and_write_back() {
    use dlm_core::protocol::{AdminOp, Credentials, Framing};
    let cases: [(&str, AdminOp<'_>); 5] = [
        (
            r#"{"Action":"Admin","Op":"locks"}"#,
            AdminOp::Locks { prefix: "" },
        ),
        (
            r#"{"Action":"admin","Op":"LOCKS","FileName":"jobs/"}"#,
            AdminOp::Locks { prefix: "jobs/" },
        ),
        (
            r#"{"Action":"Admin","Op":"lock","FileName":"a"}"#,
            AdminOp::Lock {
                name: Resource("a"),
            },
        ),
        (
            r#"{"Action":"Admin","Op":"revoke","FileName":"a"}"#,
            AdminOp::Revoke {
                name: Resource("a"),
                token: None,
            },
        ),
        (
            r#"{"Action":"Admin","Op":"revoke","FileName":"a","Token":7}"#,
            AdminOp::Revoke {
                name: Resource("a"),
                token: Some(Token(7)),
            },
        ),
    ];
    for (text, op) in cases {
        let mut line = text.as_bytes().to_vec();
        let req = Request::parse(&mut line, &Limits::DEFAULT).unwrap();
        assert_eq!(req.command, Command::Admin(op), "{text}");
        for framing in [Framing::Plain, Framing::Legacy] {
            let secret = "s".repeat(1100);
            let out = Request {
                framing,
                command: Command::Admin(op),
                credentials: Some(Credentials {
                    name: "root",
                    secret: &secret,
                }),
                request_id: None,
                session: None,
            };
            let mut bytes = Vec::new();
            out.write(&mut bytes).unwrap();
            let again = Request::parse(&mut bytes, &Limits::DEFAULT).unwrap();
            assert_eq!(again, out, "{text} in {framing:?}");
        }
    }
    for (text, status) in [
        (r#"{"Action":"Admin"}"#, Status::BadPayload),
        (r#"{"Action":"Admin","Op":"lock"}"#, Status::BadPayload),
        (
            r#"{"Action":"Admin","Op":"revoke","FileName":""}"#,
            Status::BadPayload,
        ),
        (
            r#"{"Action":"Admin","Op":"revoke","FileName":"a","Token":-1}"#,
            Status::BadPayload,
        ),
        (r#"{"Action":"Admin","Op":"drop"}"#, Status::BadAction),
    ] {
        let mut line = text.as_bytes().to_vec();
        let err = Request::parse(&mut line, &Limits::DEFAULT).unwrap_err();
        assert_eq!(err.error.status(), status, "{text}: {err}");
    }
    let long = format!(
        r#"{{"Action":"Admin","Op":"locks","FileName":"{}"}}"#,
        "x".repeat(Limits::DEFAULT.max_name + 1)
    );
    let mut line = long.into_bytes();
    assert!(Request::parse(&mut line, &Limits::DEFAULT).is_err());
}

/// The `Admin` field of a response is written as its JSON text and read
/// back as the same text.
#[test]
fn admin_answers_round_trip() {
    use dlm_core::protocol::Framing;
    let mut r = Response::new(Status::Done);
    r.admin = Some(r#"{"Locks":[{"FileName":"a","Waiters":0}],"More":false}"#);
    for framing in [Framing::Plain, Framing::Legacy] {
        let mut line = Vec::new();
        r.write(framing, &mut line).unwrap();
        let (f, back) = Response::parse(&mut line).unwrap();
        assert_eq!((f, back), (framing, r));
    }
    let mut bad = br#"{"Status":"Done","Admin":[1]}"#.to_vec();
    assert!(Response::parse(&mut bad).is_err());
}

// ---------------------------------------------------------------------------
// Semaphores and read/write locks: `Lock` with `Permits` or `Mode`

#[test]
fn permits_and_mode_make_an_acquisition() {
    let acquire = |shape, wait: Option<u64>, token: Option<u64>| Command::Acquire {
        name: Resource("pool"),
        owner: Owner("a"),
        shape,
        ttl: Ttl::from_millis(1500),
        wait: wait.map(Ttl::from_millis),
        token: token.map(Token),
    };
    let cases = [
        (
            r#"{"Action":"Lock","FileName":"pool","ID":"a","Expire":1.5,"Permits":3}"#,
            acquire(Shape::Semaphore { permits: 3 }, None, None),
        ),
        (
            r#"{"Action":"lock","FileName":"pool","ID":"a","Expire":"1.5","Mode":"read","Wait":2}"#,
            acquire(Shape::Read, Some(2000), None),
        ),
        (
            r#"{"Action":"Lock","FileName":"pool","ID":"a","Expire":1.5,"Mode":"WRITE","Token":7,"Permits":null}"#,
            acquire(Shape::Write, None, Some(7)),
        ),
        (
            r#"{"Action":"Lock","FileName":"pool","ID":"a","Expire":1.5,"Permits":4294967295}"#,
            acquire(Shape::Semaphore { permits: u32::MAX }, None, None),
        ),
    ];
    for (line, want) in cases {
        assert_eq!(cmd(line), want, "{line}");
        assert_eq!(cmd(legacy(line)), want, "legacy {line}");
        // Written and read back, in both framings.
        for framing in [Framing::Plain, Framing::Legacy] {
            let req = Request {
                framing,
                command: want,
                credentials: None,
                request_id: None,
                session: None,
            };
            assert_eq!(ok(write_request(&req)).command, want);
        }
        assert_eq!(want.action(), "Lock");
    }
    // Without either field it is the plain lock, as JackrabbitDLM sends it.
    assert!(matches!(
        cmd(r#"{"Action":"Lock","FileName":"pool","ID":"a","Expire":1.5,"Mode":null}"#),
        Command::Lock { .. }
    ));
}

#[test]
fn bad_permits_or_mode_are_refused() {
    let permits = RequestError::InvalidValue {
        field: Field::Permits,
        expected: "an integer from 1 to 4294967295",
    };
    let base = r#""Action":"Lock","FileName":"p","ID":"a","Expire":1"#;
    for (extra, error) in [
        (r#""Permits":0"#, permits),
        (r#""Permits":4294967296"#, permits),
        (r#""Permits":-1"#, RequestError::Negative(Field::Permits)),
        (
            r#""Permits":1.5"#,
            RequestError::NotAnInteger(Field::Permits),
        ),
        (
            r#""Permits":"2""#,
            RequestError::WrongType {
                field: Field::Permits,
                found: "a string",
            },
        ),
        (
            r#""Mode":"shared""#,
            RequestError::InvalidValue {
                field: Field::Mode,
                expected: "Read or Write",
            },
        ),
        (
            r#""Mode":"Read","Permits":2"#,
            RequestError::Exclusive {
                first: Field::Permits,
                second: Field::Mode,
            },
        ),
        (
            r#""Mode":"Read","Mode":"Write""#,
            RequestError::DuplicateField(Field::Mode),
        ),
        (
            r#""Permits":2,"Expire":0"#,
            RequestError::DuplicateField(Field::Expire),
        ),
    ] {
        rejects(&format!("{{{base},{extra}}}"), error);
    }
    rejects(
        r#"{"Action":"Lock","FileName":"p","ID":"a","Expire":0,"Permits":2}"#,
        RequestError::ZeroTtl,
    );
    assert_eq!(
        permits.to_string(),
        "field Permits must be an integer from 1 to 4294967295"
    );
}
