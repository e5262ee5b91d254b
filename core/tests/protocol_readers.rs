//! `Readers` on the wire (PROTOCOL.md section 8, "Shared values"): every
//! form a `Put` may carry, every malformed one refused with a clear
//! error (never a panic), and requests written by a client read back the
//! same.
// Test code: a panic is a failure.
#![allow(clippy::unwrap_used, clippy::std_instead_of_core)]

use dlm_core::limits::Limits;
use dlm_core::protocol::{
    Command, Framing, MAX_READERS, Owner, ReaderNames, Readers, Request, RequestError, Resource,
    Revision,
};
use dlm_core::time::Ttl;
use proptest::prelude::*;

fn put_with(readers: &str) -> Vec<u8> {
    format!(
        r#"{{"Action":"Put","FileName":"k","ID":"me","Expire":5,"DataStore":"v","Readers":{readers}}}"#
    )
    .into_bytes()
}

fn parse(line: &mut [u8]) -> Result<Readers<'_>, RequestError> {
    match Request::parse(line, &Limits::DEFAULT) {
        Ok(r) => match r.command {
            Command::Put { readers, .. } => Ok(readers),
            other => panic!("{other:?}"),
        },
        Err(e) => Err(e.error),
    }
}

fn names(r: Readers<'_>) -> Vec<String> {
    match r {
        Readers::Named(n) => n.iter().map(str::to_owned).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_forms_of_readers() {
    for (text, want) in [
        ("null", Readers::Owner),
        ("[]", Readers::Owner),
        (" [ ] ", Readers::Owner),
        (r#""Owner""#, Readers::Owner),
        (r#""owner""#, Readers::Owner),
        (r#""Any""#, Readers::Any),
        (r#""ANY""#, Readers::Any),
    ] {
        assert_eq!(parse(&mut put_with(text)), Ok(want), "{text}");
    }
    let mut line = put_with(r#"[ "alice" , "bob.2","c-d_e" ]"#);
    assert_eq!(
        names(parse(&mut line).unwrap()),
        ["alice", "bob.2", "c-d_e"]
    );
    // An identity named "Any" is named in an array, never by the keyword.
    let mut line = put_with(r#"["Any"]"#);
    assert_eq!(names(parse(&mut line).unwrap()), ["Any"]);
    // Escapes are decoded before the name is judged.
    let mut line = put_with(r#"["\u0061lice","b\u006fb"]"#);
    assert_eq!(names(parse(&mut line).unwrap()), ["alice", "bob"]);
    // Without `Readers` at all.
    let mut line =
        br#"{"Action":"Put","FileName":"k","ID":"me","Expire":5,"DataStore":"v"}"#.to_vec();
    assert_eq!(parse(&mut line), Ok(Readers::Owner));
}

#[test]
fn bad_readers_are_refused_clearly() {
    let too_many = format!("[{}]", vec![r#""a""#; MAX_READERS + 1].join(","));
    let long = format!(r#"["{}"]"#, "x".repeat(256));
    for (text, want) in [
        (r#""Everyone""#, RequestError::InvalidReader),
        (r#""""#, RequestError::InvalidReader),
        (r#"[""]"#, RequestError::InvalidReader),
        (r#"["a,b"]"#, RequestError::InvalidReader),
        (r#"["a b"]"#, RequestError::InvalidReader),
        (r#"[".hidden"]"#, RequestError::InvalidReader),
        (r#"["../etc"]"#, RequestError::InvalidReader),
        (r#"["\u00e9"]"#, RequestError::InvalidReader),
        (r#"["a",1]"#, RequestError::InvalidReader),
        (r#"[["a"]]"#, RequestError::InvalidReader),
        ("[null]", RequestError::InvalidReader),
        (r#"[{"a":1}]"#, RequestError::InvalidReader),
        (long.as_str(), RequestError::InvalidReader),
        (
            too_many.as_str(),
            RequestError::TooManyReaders { limit: MAX_READERS },
        ),
    ] {
        assert_eq!(parse(&mut put_with(text)), Err(want), "{text}");
        let message = want.to_string();
        assert!(message.contains("Readers"), "{message}");
    }
    for text in ["1", "true", r#"{"a":1}"#] {
        assert!(
            matches!(
                parse(&mut put_with(text)),
                Err(RequestError::WrongType { .. })
            ),
            "{text}"
        );
    }
    // Malformed JSON inside the array is a JSON error, as anywhere.
    assert!(matches!(
        parse(&mut put_with(r#"["a" "b"]"#)),
        Err(RequestError::Json(_))
    ));
}

#[test]
fn readers_count_against_the_value_limit() {
    let limit = Limits::DEFAULT.max_data_anonymous;
    let data = "v".repeat(limit - 4);
    let ok = format!(
        r#"{{"Action":"Put","FileName":"k","ID":"me","Expire":5,"DataStore":"{data}","Readers":["abcd"]}}"#
    );
    assert!(parse(&mut ok.into_bytes()).is_ok());
    let over = format!(
        r#"{{"Action":"Put","FileName":"k","ID":"me","Expire":5,"DataStore":"{data}","Readers":["abcde"]}}"#
    );
    assert_eq!(
        parse(&mut over.into_bytes()),
        Err(RequestError::ReadersTooLarge { limit })
    );
    // `Any` costs nothing.
    let any = format!(
        r#"{{"Action":"Put","FileName":"k","ID":"me","Expire":5,"DataStore":"{data}xxxx","Readers":"Any"}}"#
    );
    assert_eq!(parse(&mut any.into_bytes()), Ok(Readers::Any));
}

#[test]
fn other_actions_ignore_readers() {
    let mut line = br#"{"Action":"Get","FileName":"k","ID":"me","Readers":[1,2,3]}"#.to_vec();
    let r = Request::parse(&mut line, &Limits::DEFAULT).unwrap();
    assert!(matches!(r.command, Command::Get { .. }));
}

fn reader_list() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}", 1..=MAX_READERS)
}

proptest! {
    /// What a client writes, the server reads back: every form, in both
    /// framings.
    #[test]
    fn written_requests_read_back(list in reader_list(), kind in 0..3u8, legacy: bool) {
        let joined = list.join(",");
        let readers = match kind {
            0 => Readers::Owner,
            1 => Readers::Any,
            _ => Readers::Named(ReaderNames::new(&joined).unwrap()),
        };
        let framing = if legacy { Framing::Legacy } else { Framing::Plain };
        let req = dlm_core::client::Client::new("me")
            .with_framing(framing)
            .put_shared("k", Ttl::from_secs(5), "a^", Some(Revision(2)), readers);
        let mut line = Vec::new();
        req.write(&mut line).unwrap();
        let back = Request::parse(&mut line, &Limits::DEFAULT).unwrap();
        prop_assert_eq!(back.command, Command::Put {
            name: Resource("k"),
            owner: Owner("me"),
            ttl: Ttl::from_secs(5),
            data: "a^",
            revision: Some(Revision(2)),
            readers,
        });
    }
}
