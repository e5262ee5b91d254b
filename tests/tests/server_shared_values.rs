//! Shared values end to end against a real `dlm-server` with identities
//! (PROTOCOL.md section 8, "Shared values"): a value read by its owner and
//! by the readers its `Put` named (identities with their secrets, or any
//! client), refused to everybody else as before (`NotOwner`); written by
//! its owner alone; watch events showing the value to readers only; bad
//! `Readers` refused clearly without harm to the connection; and the
//! JackrabbitDLM-style exchanges unchanged.

// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::std_instead_of_core)]

use std::time::Duration;

use dlm::{Options, Readers};
use dlm_core::client::Client;
use dlm_core::protocol::{
    Credentials, Framing, ReaderNames, Readers as WireReaders, Revision, Status, WatchEvent,
    WatchScope,
};
use dlm_core::stats::Stat;
use dlm_core::time::Ttl;
use dlm_tests::{Conn, Server, new_identity, scratch_dir};

const TTL: Ttl = Ttl::from_secs(60);

struct World {
    server: Server,
    alice: String,
    bob: String,
}

fn world(what: &str) -> World {
    let dir = scratch_dir(what).join("identities");
    std::fs::create_dir_all(&dir).unwrap();
    let alice = new_identity(&dir, "alice", false);
    let bob = new_identity(&dir, "bob", false);
    let server = Server::with_args(&["--identity-dir", dir.to_str().unwrap()]);
    World { server, alice, bob }
}

fn named(names: &'static str) -> WireReaders<'static> {
    WireReaders::Named(ReaderNames::new(names).unwrap())
}

#[test]
fn readers_read_and_nobody_else_does_and_only_the_owner_writes() {
    let w = world("shared-values-readers");
    let mut c = w.server.connect();
    let owner = Client::new("owner");
    let alice = Client::new("someone").with_credentials(Credentials {
        name: "alice",
        secret: &w.alice,
    });
    let bob = Client::new("someone").with_credentials(Credentials {
        name: "bob",
        secret: &w.bob,
    });
    let stranger = Client::new("someone");

    // Shared with alice (and with "nobody", an identity that does not
    // exist: naming it reveals nothing and admits nobody).
    let put = owner.put_shared("cfg", TTL, "v1", None, named("alice,nobody"));
    let r = c.call(&put);
    assert_eq!((r.status, r.revision), (Status::Done, Some(1)));

    let r = c.call(&alice.get("cfg"));
    assert_eq!(r.status, Status::Done);
    assert_eq!(r.data.as_deref(), Some("v1"));
    assert_eq!(
        r.id.as_deref(),
        Some("owner"),
        "a reader learns whose it is"
    );
    assert_eq!(r.revision, Some(1));
    for who in [&bob, &stranger] {
        let r = c.call(&who.get("cfg"));
        assert_eq!(r.status, Status::NotOwner);
        assert_eq!((r.data, r.id, r.error), (None, None, None));
    }
    // The owner reads it as always.
    assert_eq!(c.call(&owner.get("cfg")).data.as_deref(), Some("v1"));

    // A reader cannot replace, compare-and-set or erase it, not even
    // under the owner's own ID (its identity differs).
    let alice_as_owner = Client::new("owner").with_credentials(Credentials {
        name: "alice",
        secret: &w.alice,
    });
    for who in [&alice, &alice_as_owner] {
        assert_eq!(
            c.call(&who.put("cfg", TTL, "x", None)).status,
            Status::NotOwner
        );
        assert_eq!(
            c.call(&who.put("cfg", TTL, "x", Some(Revision(1)))).status,
            Status::NotOwner
        );
        assert_eq!(c.call(&who.erase("cfg")).status, Status::NotOwner);
    }
    assert_eq!(c.call(&alice.get("cfg")).data.as_deref(), Some("v1"));

    // Shared with any client: the stranger reads; still nobody writes.
    let r = c.call(&owner.put_shared("cfg", TTL, "v2", None, WireReaders::Any));
    assert_eq!(r.revision, Some(2));
    for who in [&stranger, &bob, &alice] {
        let r = c.call(&who.get("cfg"));
        assert_eq!((r.status, r.data.as_deref()), (Status::Done, Some("v2")));
    }
    assert_eq!(c.call(&stranger.erase("cfg")).status, Status::NotOwner);

    // A put without readers makes it the owner's alone again.
    assert_eq!(
        c.call(&owner.put("cfg", TTL, "v3", None)).status,
        Status::Done
    );
    assert_eq!(c.call(&stranger.get("cfg")).status, Status::NotOwner);
    assert_eq!(c.call(&alice.get("cfg")).status, Status::NotOwner);

    let stats = w.server.stats();
    assert_eq!(stats.get(Stat::GetShared), 5);
    // Erase by the owner.
    assert_eq!(c.call(&owner.erase("cfg")).status, Status::Done);
    assert_eq!(c.call(&alice.get("cfg")).status, Status::NotFound);
}

#[test]
fn an_identity_owner_shares_with_anonymous_clients() {
    let w = world("shared-values-identity-owner");
    let mut c = w.server.connect();
    let alice = Client::new("a").with_credentials(Credentials {
        name: "alice",
        secret: &w.alice,
    });
    let anon_same_id = Client::new("a");
    assert_eq!(
        c.call(&alice.put("k", TTL, "private", None)).status,
        Status::Done
    );
    // As before: the same ID without the identity is not the owner.
    assert_eq!(c.call(&anon_same_id.get("k")).status, Status::NotOwner);
    c.call(&alice.put_shared("k", TTL, "public", None, WireReaders::Any));
    let r = c.call(&anon_same_id.get("k"));
    assert_eq!(
        (r.status, r.data.as_deref()),
        (Status::Done, Some("public"))
    );
    assert_eq!(c.call(&anon_same_id.erase("k")).status, Status::NotOwner);
}

#[test]
fn bad_readers_are_refused_clearly_and_the_connection_goes_on() {
    let w = world("shared-values-bad");
    let mut c = w.server.connect();
    let many = vec!["\"a\""; 33].join(",");
    for (readers, says) in [
        (format!("[{many}]"), "more than 32"),
        (r#"["../alice"]"#.to_owned(), "identity names"),
        (r#"["a,b"]"#.to_owned(), "identity names"),
        (r#""everyone""#.to_owned(), "identity names"),
        ("[1]".to_owned(), "identity names"),
        ("true".to_owned(), "must not be a boolean"),
    ] {
        let line = format!(
            r#"{{"Action":"Put","FileName":"k","ID":"o","Expire":5,"DataStore":"v","Readers":{readers}}}"#
        );
        c.send_raw(format!("{line}\n").as_bytes());
        let r = c.recv();
        assert_eq!(r.status, Status::BadPayload, "{readers}");
        let e = r.error.unwrap();
        assert!(e.contains("Readers") && e.contains(says), "{readers}: {e}");
    }
    // Nothing was stored, and the connection still answers.
    let r = c.call(&Client::new("o").get("k"));
    assert_eq!(r.status, Status::NotFound);
    // DataStore and readers together over the anonymous limit (16 KiB).
    let data = "v".repeat(16 * 1024 - 3);
    let r = c.call(&Client::new("o").put_shared("k", TTL, &data, None, named("alice")));
    assert_eq!(r.status, Status::BadPayload);
    assert!(r.error.unwrap().contains("DataStore and Readers"));
    assert_eq!(c.call(&Client::new("o").get("k")).status, Status::NotFound);
}

/// JackrabbitDLM's clients (legacy framing, one request per connection)
/// see exactly the old behaviour: another owner's value is `NotOwner`,
/// their own reads back.
#[test]
fn legacy_clients_see_the_old_rules() {
    let w = world("shared-values-legacy");
    let legacy = |id| Client::new(id).with_framing(Framing::Legacy);
    let call = |req| {
        let mut c = w.server.connect();
        c.call(&req)
    };
    assert_eq!(
        call(legacy("py1").put("k", TTL, "a^", None)).status,
        Status::Done
    );
    let r = call(legacy("py2").get("k"));
    assert_eq!((r.framing, r.status), (Framing::Legacy, Status::NotOwner));
    let r = call(legacy("py1").get("k"));
    assert_eq!((r.status, r.data.as_deref()), (Status::Done, Some("a^")));
    assert_eq!(r.id.as_deref(), Some("py1"));
    // A value shared by a dlm client is readable by a legacy client too
    // (it is any client), and still not writable by it.
    let mut c = w.server.connect();
    c.call(&Client::new("dlm").put_shared("s", TTL, "a^", None, WireReaders::Any));
    let r = call(legacy("py2").get("s"));
    assert_eq!((r.status, r.data.as_deref()), (Status::Done, Some("a^")));
    assert_eq!(call(legacy("py2").erase("s")).status, Status::NotOwner);
}

/// One event line, as a watcher gets it: (what, owner, value).
fn event(conn: &mut Conn) -> (String, Option<String>, Option<String>) {
    let mut line = conn.recv_line().expect("an event");
    assert!(
        WatchEvent::is_event(&line),
        "{}",
        String::from_utf8_lossy(&line)
    );
    let e = WatchEvent::parse(&mut line).unwrap();
    (
        e.what.as_str().to_owned(),
        e.owner.map(str::to_owned),
        e.value.map(str::to_owned),
    )
}

#[test]
fn watchers_see_a_value_only_if_they_may_read_it() {
    let w = world("shared-values-watch");
    let alice = Client::new("w").with_credentials(Credentials {
        name: "alice",
        secret: &w.alice,
    });
    let bob = Client::new("w").with_credentials(Credentials {
        name: "bob",
        secret: &w.bob,
    });
    let anon = Client::new("w");
    let mut watchers = Vec::new();
    for who in [&alice, &bob, &anon] {
        let mut c = w.server.connect();
        let r = c.call(&who.request(dlm_core::protocol::Command::Watch {
            scope: WatchScope::Prefix("s/"),
            owner: dlm_core::protocol::Owner("w"),
            since: None,
        }));
        assert_eq!(r.status, Status::Done);
        watchers.push(c);
    }
    let mut c = w.server.connect();
    let owner = Client::new("o");
    c.call(&owner.put_shared("s/1", TTL, "for-alice", None, named("alice")));
    c.call(&owner.put_shared("s/1", TTL, "for-all", None, WireReaders::Any));
    c.call(&owner.put("s/1", TTL, "mine", None));
    c.call(&owner.erase("s/1"));
    let seen: Vec<_> = watchers
        .iter_mut()
        .map(|conn| (0..4).map(|_| event(conn)).collect::<Vec<_>>())
        .collect();
    let shown = |what: &str, v: Option<&str>| {
        (
            what.to_owned(),
            v.map(|_| "o".to_owned()),
            v.map(str::to_owned),
        )
    };
    let erased_shown =
        |readable: bool| ("Erased".to_owned(), readable.then(|| "o".to_owned()), None);
    // alice: the first two values; bob and the anonymous: the second.
    // The erase follows the readers of the value erased (the owner's
    // alone): nobody of them sees its owner.
    assert_eq!(
        seen[0],
        [
            shown("Put", Some("for-alice")),
            shown("Put", Some("for-all")),
            shown("Put", None),
            erased_shown(false),
        ]
    );
    for other in &seen[1..] {
        assert_eq!(
            *other,
            [
                shown("Put", None),
                shown("Put", Some("for-all")),
                shown("Put", None),
                erased_shown(false),
            ]
        );
    }
}

/// The Rust client: `put_with(..).readers(..)` and a reader's `get`.
#[test]
fn the_rust_client_shares_and_reads() {
    let w = world("shared-values-rust");
    let addr = w.server.addr();
    let owner = dlm::Client::connect_with(addr, Options::new().client_id("owner")).unwrap();
    let alice = dlm::Client::connect_with(
        addr,
        Options::new()
            .client_id("reader")
            .credentials("alice", w.alice.clone()),
    )
    .unwrap();
    let stranger = dlm::Client::connect_with(addr, Options::new().client_id("reader")).unwrap();
    let rev = owner
        .put_with("cfg", b"\x00bytes\xff")
        .ttl(Duration::from_secs(60))
        .readers(Readers::identities(["alice"]))
        .send()
        .unwrap();
    assert_eq!(rev, Revision(1));
    let v = alice.get("cfg").unwrap().unwrap();
    assert_eq!(v.data, b"\x00bytes\xff");
    assert_eq!(v.owner.as_deref(), Some("owner"));
    assert!(matches!(stranger.get("cfg"), Err(dlm::Error::NotOwner)));
    assert!(matches!(alice.erase("cfg"), Err(dlm::Error::NotOwner)));
    assert!(matches!(
        alice.put("cfg", b"x", Duration::from_secs(5)),
        Err(dlm::Error::NotOwner)
    ));
    // Bad readers never leave the client.
    for bad in [
        Readers::identities(["no spaces"]),
        Readers::Identities(vec!["a".to_owned(); 33]),
    ] {
        assert!(matches!(
            owner.put_with("cfg", b"v").readers(bad).send(),
            Err(dlm::Error::InvalidArgument(_))
        ));
    }
    assert_eq!(alice.get("cfg").unwrap().unwrap().revision, Revision(1));
    // Compare-and-set with readers.
    let rev = owner
        .put_with("cfg", b"v2")
        .readers(Readers::Any)
        .if_revision(Revision(1))
        .send()
        .unwrap();
    assert_eq!(rev, Revision(2));
    assert_eq!(stranger.get("cfg").unwrap().unwrap().data, b"v2");
}
