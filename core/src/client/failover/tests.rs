//! The failover on a simulated clock: hints, backoff, deadlines, resend
//! rules, and a property test over random outcomes.

use super::*;
use crate::client::Client;
use crate::protocol::Revision;
use alloc::format;
use alloc::string::ToString;
use alloc::vec;
use proptest::prelude::*;

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn ms(n: u64) -> Ttl {
    Ttl::from_millis(n)
}

const SEED: [u8; 16] = [7; 16];

fn three() -> Failover {
    Failover::new(
        ServerList::parse("a:1,b:2,c:3").unwrap(),
        Config::DEFAULT,
        SEED,
    )
}

fn me() -> Client<'static> {
    Client::new("me")
}

/// Connects for `call` at `now`: the address and epoch, or the step.
fn connect(f: &mut Failover, call: &mut Call, now: Instant) -> (String, u64) {
    match f.poll_connect(call, now) {
        Step::Connect { addr, epoch, .. } => (addr.to_string(), epoch),
        other => panic!("expected a connection, got {other:?}"),
    }
}

fn view(leader: u64, members: &[(u64, Option<&str>)]) -> ClusterView {
    ClusterView {
        single: false,
        node: Some(leader),
        leader: Some(leader),
        term: 2,
        members: members
            .iter()
            .map(|(id, c)| MemberView {
                id: *id,
                client: c.map(String::from),
            })
            .collect(),
    }
}

#[test]
fn server_lists_are_parsed_strictly() {
    let l = ServerList::parse(" a:1, b:2 ,a:1,,[::1]:37373,10.0.0.1:65535 ").unwrap();
    assert_eq!(
        l.as_slice(),
        ["a:1", "b:2", "[::1]:37373", "10.0.0.1:65535"]
    );
    assert_eq!(l.len(), 4);
    for bad in [
        "",
        " , ",
        "a",
        "a:",
        "a:0",
        "a:65536",
        "a:-1",
        "a:1x",
        ":1",
        "::1:37373",
        "a b:1",
        "a:1,b",
    ] {
        let e = ServerList::parse(bad).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument, "{bad:?}");
        assert!(e.has_detail(), "{bad:?}");
    }
    let long = format!("{}:1", "h".repeat(300));
    assert!(ServerList::parse(&long).is_err());
    let many: Vec<String> = (1..=65).map(|p| format!("h:{p}")).collect();
    assert!(ServerList::parse(&many.join(",")).is_err());
    assert_eq!(ServerList::parse(&many[..64].join(",")).unwrap().len(), 64);
}

#[test]
fn request_ids_are_unique_short_and_per_grant_for_releases() {
    let mut ids = RequestIds::new(SEED);
    let a = ids.next_id();
    let b = ids.next_id();
    assert_ne!(a, b);
    assert!(a.as_str().len() <= crate::protocol::MAX_REQUEST_ID);
    assert!(
        a.as_str()
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
    );
    let other = RequestIds::new([8; 16]).next_id();
    assert_ne!(a, other, "another seed, another prefix");
    assert_eq!(RequestId::for_unlock(Token(42)).as_str(), "u.42");
    assert_eq!(
        RequestId::for_unlock(Token(u64::MAX)).to_string(),
        "u.18446744073709551615"
    );
}

#[test]
fn what_may_be_sent_again() {
    let c = me();
    let t = ms(1000);
    let reads = [
        c.get("k"),
        c.test_lock("l"),
        c.version(),
        c.stats(),
        c.cluster(ClusterOp::Status),
    ];
    for r in reads {
        assert_eq!(Resend::of(&r), Resend::Always, "{r:?}");
    }
    for r in [
        c.lock("l", t),
        c.lock_wait("l", t, t),
        c.extend("l", t, Token(3)),
    ] {
        assert_eq!(Resend::of(&r), Resend::Always, "{r:?}");
    }
    let writes = [
        c.put("k", t, "v", None),
        c.put("k", t, "v", Some(Revision(2))),
        c.erase("k"),
        c.unlock("l", None),
        c.unlock("l", Some(Token(9))),
    ];
    for r in writes {
        assert_eq!(Resend::of(&r), Resend::IfUnsent, "{r:?}");
        assert_eq!(Resend::of(&r.with_request_id("x")), Resend::Always);
    }
    assert_eq!(
        Resend::of(&c.cluster(ClusterOp::Remove { node: 2 })),
        Resend::IfUnsent
    );

    // The failover gives every write in plain framing an ID.
    let mut f = three();
    let mut seen = Vec::new();
    for r in writes {
        let call = f.start(&r, at(0), t);
        assert_eq!(call.resend(), Resend::Always);
        let id = call.request_id().unwrap().to_string();
        let sent = call.request(r, at(0));
        assert_eq!(sent.request_id, Some(id.as_str()));
        let mut line = Vec::new();
        sent.write(&mut line).unwrap();
        assert!(
            String::from_utf8(line)
                .unwrap()
                .contains(&format!("\"RequestID\":\"{id}\"")),
            "the ID is on the wire"
        );
        seen.push(id);
    }
    assert!(seen[4].len() > 4, "a tool's unlock gets its own ID");
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5);
    // A lease's release carries its grant's ID, every time.
    for _ in 0..2 {
        let call = f.start_release(&writes[4], at(0), t);
        assert_eq!(call.request_id(), Some("u.9"));
        assert_eq!(call.resend(), Resend::Always);
    }
    let call = f.start_release(&writes[3], at(0), t);
    assert!(
        call.request_id().is_some_and(|id| id.len() > 4),
        "no token: a fresh ID"
    );
    // A given ID is kept; reads and locks get none.
    let call = f.start(&writes[0].with_request_id("mine"), at(0), t);
    assert_eq!(call.request_id(), None);
    assert_eq!(call.resend(), Resend::Always);
    for r in reads.iter().chain(&[c.lock("l", t)]) {
        assert_eq!(f.start(r, at(0), t).request_id(), None);
    }
    // Legacy framing (JackrabbitDLM, which keeps no IDs): none, and writes
    // are only sent again if they never left.
    let legacy = c.with_framing(Framing::Legacy);
    let call = f.start(&legacy.put("k", t, "v", None), at(0), t);
    assert_eq!((call.request_id(), call.resend()), (None, Resend::IfUnsent));
}

#[test]
fn a_written_request_without_an_id_is_never_sent_again() {
    let mut f = three();
    let legacy = me().with_framing(Framing::Legacy);
    let put = legacy.put("k", ms(1000), "v", None);
    // Never left: sent again.
    let mut call = f.start(&put, at(0), ms(5000));
    let (_, e) = connect(&mut f, &mut call, at(0));
    assert_eq!(
        f.handle(&mut call, e, Outcome::NotSent, at(1)),
        Verdict::Retry
    );
    // Written, then the connection closed: it may have been applied.
    let (_, e) = connect(&mut f, &mut call, at(1));
    let Verdict::GiveUp(err) = f.handle(&mut call, e, Outcome::Closed, at(2)) else {
        panic!()
    };
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(err.to_string().contains("may have been applied"), "{err}");
    // The same with an ID is sent again, on the next member.
    let put = me().put("k", ms(1000), "v", None);
    let mut call = f.start(&put, at(10), ms(5000));
    let (first, e) = connect(&mut f, &mut call, at(10));
    assert_eq!(
        f.handle(&mut call, e, Outcome::Closed, at(11)),
        Verdict::Retry
    );
    let (second, _) = connect(&mut f, &mut call, at(11));
    assert_ne!(first, second);
    // A refusal was never applied: sent again even without an ID.
    let mut call = f.start(&legacy.erase("k"), at(20), ms(5000));
    let (_, e) = connect(&mut f, &mut call, at(20));
    assert_eq!(
        f.handle(&mut call, e, Outcome::Refused(Refusal::NotLeader), at(21)),
        Verdict::Retry
    );
}

#[test]
fn failures_go_round_the_members_then_back_off_with_jitter() {
    let mut f = three();
    let req = me().get("k");
    let mut call = f.start(&req, at(0), ms(60_000));
    let mut now = at(0);
    let mut tried = Vec::new();
    let mut pauses = Vec::new();
    let last = loop {
        match f.poll_connect(&mut call, now) {
            Step::Connect { addr, epoch, .. } => {
                tried.push(addr.to_string());
                match f.handle(&mut call, epoch, Outcome::ConnectFailed, now) {
                    Verdict::Retry => {}
                    other => break other,
                }
            }
            Step::Wait(until) => {
                pauses.push(until.saturating_since(now).as_millis());
                now = until;
            }
            Step::GiveUp(e) => panic!("gave up early: {e}"),
        }
    };
    // Each member in turn, three rounds (connect_rounds), then it gives up.
    assert_eq!(
        tried,
        [
            "a:1", "b:2", "c:3", "a:1", "b:2", "c:3", "a:1", "b:2", "c:3"
        ]
    );
    let Verdict::GiveUp(e) = last else { panic!() };
    assert_eq!(
        e.to_string(),
        "server unavailable: no server could be connected to"
    );
    // One free try each, then pauses of 25, 50, 100, 200, 400 ms, each
    // between half and all of that.
    assert_eq!(pauses.len(), 5, "{pauses:?}");
    for (p, full) in pauses.iter().zip([25, 50, 100, 200, 400]) {
        assert!((full / 2..=full).contains(p), "{pauses:?}");
    }
}

#[test]
fn the_pause_is_capped_and_an_answer_resets_it() {
    let mut f = Failover::new(
        ServerList::parse("a:1").unwrap(),
        Config {
            connect_rounds: 1000,
            ..Config::DEFAULT
        },
        SEED,
    );
    let req = me().get("k");
    let mut call = f.start(&req, at(0), ms(1_000_000));
    let mut now = at(0);
    let mut longest = 0;
    for _ in 0..40 {
        loop {
            match f.poll_connect(&mut call, now) {
                Step::Connect { epoch, .. } => {
                    f.handle(&mut call, epoch, Outcome::ConnectFailed, now);
                    break;
                }
                Step::Wait(until) => {
                    longest = longest.max(until.saturating_since(now).as_millis());
                    now = until;
                }
                Step::GiveUp(e) => panic!("{e}"),
            }
        }
    }
    assert!((500..=1000).contains(&longest), "{longest}");
    // An answer: the next failure's retry is immediate again.
    loop {
        match f.poll_connect(&mut call, now) {
            Step::Connect { epoch, .. } => {
                assert_eq!(
                    f.handle(&mut call, epoch, Outcome::Answered, now),
                    Verdict::Accept
                );
                break;
            }
            Step::Wait(until) => now = until,
            Step::GiveUp(e) => panic!("{e}"),
        }
    }
    let mut call = f.start(&req, now, ms(10_000));
    let (_, e) = connect(&mut f, &mut call, now);
    assert_eq!(f.handle(&mut call, e, Outcome::Closed, now), Verdict::Retry);
    connect(&mut f, &mut call, now);
}

#[test]
fn jitter_spreads_clients_that_failed_together() {
    let pause = |seed: [u8; 16]| {
        let mut f = Failover::new(ServerList::parse("a:1").unwrap(), Config::DEFAULT, seed);
        let req = me().get("k");
        let mut call = f.start(&req, at(0), ms(60_000));
        for _ in 0..4 {
            if let Step::Connect { epoch, .. } = f.poll_connect(&mut call, at(0)) {
                f.handle(&mut call, epoch, Outcome::ConnectFailed, at(0));
            }
        }
        match f.poll_connect(&mut call, at(0)) {
            Step::Wait(t) => t.as_millis(),
            other => panic!("{other:?}"),
        }
    };
    let mut seen: Vec<u64> = (0..16u8).map(|i| pause([i; 16])).collect();
    seen.sort_unstable();
    seen.dedup();
    assert!(seen.len() > 4, "{seen:?}");
}

#[test]
fn a_call_never_outlives_its_deadline() {
    let mut f = three();
    let req = me().get("k");
    let mut call = f.start(&req, at(100), ms(1000));
    assert_eq!(call.deadline(), at(1100));
    match f.poll_connect(&mut call, at(600)) {
        Step::Connect { within, .. } => assert_eq!(within, ms(500)),
        other => panic!("{other:?}"),
    }
    assert_eq!(call.remaining(at(1000)), ms(100));
    // A failure at the deadline gives up, with what went wrong.
    let (_, e) = connect(&mut f, &mut call, at(1000));
    let Verdict::GiveUp(err) = f.handle(&mut call, e, Outcome::Closed, at(1100)) else {
        panic!()
    };
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert_eq!(
        err.to_string(),
        "server unavailable: the connection closed before the answer"
    );
    // A pause that would end past the deadline gives up at once.
    let mut f = Failover::new(ServerList::parse("a:1").unwrap(), Config::DEFAULT, SEED);
    let mut call = f.start(&req, at(0), ms(30));
    for _ in 0..2 {
        let (_, e) = connect(&mut f, &mut call, at(0));
        f.handle(&mut call, e, Outcome::Refused(Refusal::NoLeader), at(0));
    }
    // The second failure in a row on one server: a pause of 13..=25 ms.
    match f.poll_connect(&mut call, at(0)) {
        Step::Wait(t) => assert!(t < at(30)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(f.poll_connect(&mut call, at(30)), Step::GiveUp(_)));
    let mut late = f.start(&req, at(0), ms(10));
    let Step::GiveUp(e) = f.poll_connect(&mut late, at(0)) else {
        panic!("a pause past a 10 ms deadline")
    };
    assert_eq!(
        e.to_string(),
        "server unavailable: no leader: the cluster cannot serve now"
    );
    // A timeout ends the call: its time is up.
    let mut f = three();
    let mut call = f.start(&req, at(0), ms(1000));
    let (_, e) = connect(&mut f, &mut call, at(0));
    assert!(matches!(
        f.handle(&mut call, e, Outcome::TimedOut, at(1000)),
        Verdict::GiveUp(_)
    ));
    // A renewal is limited to the lease's deadline.
    let mut call = f.start(&me().extend("l", ms(3000), Token(1)), at(0), ms(10_000));
    call.limit(at(2500));
    assert_eq!(call.deadline(), at(2500));
}

#[test]
fn a_wait_is_sent_again_with_what_is_left_of_it() {
    let mut f = three();
    let c = me();
    let req = c.lock_wait("l", ms(3000), ms(10_000));
    let mut call = f.start(&req, at(0), ms(2000));
    assert_eq!(call.deadline(), at(12_000));
    let wait_of = |r: Request<'_>| match r.command {
        Command::Lock { wait, .. } => wait,
        _ => unreachable!(),
    };
    assert_eq!(wait_of(call.request(req, at(0))), Some(ms(10_000)));
    let (_, e) = connect(&mut f, &mut call, at(0));
    // The leader died 4 s into the wait: queued again for the other 6 s.
    assert_eq!(
        f.handle(&mut call, e, Outcome::Closed, at(4000)),
        Verdict::Retry
    );
    assert_eq!(wait_of(call.request(req, at(4000))), Some(ms(6000)));
    // Nothing left of it: one attempt.
    assert_eq!(wait_of(call.request(req, at(10_000))), None);
    assert_eq!(wait_of(call.request(req, at(11_000))), None);
    // Not for an extension, nor a lock without a wait.
    let ext = c.extend("l", ms(3000), Token(4));
    let call = f.start(&ext, at(0), ms(2000));
    assert_eq!(call.deadline(), at(2000));
    assert_eq!(call.request(ext, at(1000)), ext);
}

#[test]
fn discovery_follows_the_leader() {
    let mut f = three();
    let req = me().put("k", ms(1000), "v", None);
    let mut call = f.start(&req, at(0), ms(5000));
    let (addr, e) = connect(&mut f, &mut call, at(0));
    assert_eq!(addr, "a:1");
    assert!(f.connected(e), "a new member is asked first");
    // Member 3 leads, at c:3; member 4 (new) serves at d:4; 2 said nothing.
    let v = view(
        3,
        &[
            (1, Some("a:1")),
            (2, None),
            (3, Some("c:3")),
            (4, Some("d:4")),
        ],
    );
    assert_eq!(v.leader_address(), Some("c:3"));
    assert!(!f.discovered(e, Some(&v)), "go to the leader");
    assert_eq!(f.server(), "c:3");
    assert_eq!(f.leader(), Some(3));
    assert_eq!(
        f.servers().collect::<Vec<_>>(),
        ["a:1", "b:2", "c:3", "d:4"]
    );
    let (addr, e2) = connect(&mut f, &mut call, at(1));
    assert_eq!(addr, "c:3");
    assert_ne!(e, e2);
    assert!(!f.connected(e2), "the leader is known: no second question");
    assert!(!f.connected(e), "an old epoch never asks");
    assert_eq!(
        f.handle(&mut call, e2, Outcome::Answered, at(2)),
        Verdict::Accept
    );
    // The leader dies: the next member, asked again; it names the new
    // leader, d:4, learned from the cluster, not given.
    let mut call = f.start(&req, at(10), ms(5000));
    let (_, e3) = connect(&mut f, &mut call, at(10));
    assert_eq!(
        f.handle(&mut call, e3, Outcome::Closed, at(11)),
        Verdict::Retry
    );
    let (addr, e4) = connect(&mut f, &mut call, at(11));
    assert_eq!(addr, "d:4");
    assert!(f.connected(e4));
    let v = view(4, &[(1, Some("a:1")), (2, Some("b:2")), (4, Some("d:4"))]);
    assert!(f.discovered(e4, Some(&v)), "already on the leader");
    assert_eq!(f.server(), "d:4");
    // A member removed from the cluster is forgotten unless given.
    let v = view(1, &[(1, Some("a:1")), (2, Some("b:2"))]);
    let mut call = f.start(&req, at(20), ms(5000));
    let (_, e5) = connect(&mut f, &mut call, at(20));
    assert_eq!(
        f.handle(&mut call, e5, Outcome::Closed, at(20)),
        Verdict::Retry
    );
    let (addr, e6) = connect(&mut f, &mut call, at(20));
    assert_eq!(addr, "a:1", "after d:4, round to the first");
    assert!(f.discovered(e6, Some(&v)), "a:1 leads");
    assert_eq!(f.servers().collect::<Vec<_>>(), ["a:1", "b:2", "c:3"]);
    // A single server, or one without the action: stay, and ask no more.
    let mut g = three();
    let mut call = g.start(&req, at(0), ms(5000));
    let (_, e) = connect(&mut g, &mut call, at(0));
    let single = ClusterView {
        single: true,
        ..ClusterView::default()
    };
    assert!(g.discovered(e, Some(&single)));
    assert!(!g.connected(e));
    let mut h = three();
    let (_, e) = connect(&mut h, &mut call, at(0));
    assert!(h.discovered(e, None));
    assert!(!h.connected(e));
    // Discovery off (legacy framing): never asked.
    let mut off = Failover::new(
        ServerList::parse("a:1").unwrap(),
        Config {
            discover: false,
            ..Config::DEFAULT
        },
        SEED,
    );
    let (_, e) = connect(&mut off, &mut call, at(0));
    assert!(!off.connected(e));
}

#[test]
fn a_member_without_a_leader_is_asked_again_others_are_left() {
    let mut f = three();
    let req = me().get("k");
    let mut call = f.start(&req, at(0), ms(60_000));
    let (a, e) = connect(&mut f, &mut call, at(0));
    assert_eq!(
        f.handle(&mut call, e, Outcome::Refused(Refusal::NoLeader), at(2000)),
        Verdict::Retry
    );
    let (again, e2) = connect(&mut f, &mut call, at(2000));
    assert_eq!(a, again, "it relays to the next leader once there is one");
    assert_eq!(e, e2);
    assert!(f.connected(e2), "but asks who leads once one answers");
    let mut now = at(2000);
    for r in [Refusal::NotLeader, Refusal::Full, Refusal::Stopping] {
        let before = f.server().to_string();
        now = now.saturating_add(ms(1000));
        let (_, e) = connect(&mut f, &mut call, now);
        assert_eq!(
            f.handle(&mut call, e, Outcome::Refused(r), now),
            Verdict::Retry
        );
        assert_ne!(f.server(), before, "{r:?}");
    }
}

#[test]
fn calls_failing_together_move_on_once() {
    let mut f = three();
    let req = me().get("k");
    let mut one = f.start(&req, at(0), ms(5000));
    let mut two = f.start(&req, at(0), ms(5000));
    let (_, e1) = connect(&mut f, &mut one, at(0));
    let (_, e2) = connect(&mut f, &mut two, at(0));
    assert_eq!(e1, e2);
    f.handle(&mut one, e1, Outcome::Closed, at(1));
    assert_eq!(f.server(), "b:2");
    // The second report of the same server's failure does not skip b:2.
    f.handle(&mut two, e2, Outcome::Closed, at(1));
    assert_eq!(f.server(), "b:2");
}

#[test]
fn refusals_are_recognized_by_their_words() {
    let mut r = Response::new(Status::No);
    assert_eq!(Refusal::of(&r), None, "a bare NO is the memory budget");
    for (text, want) in [
        (
            "no leader: the cluster cannot serve now",
            Some(Refusal::NoLeader),
        ),
        ("not the leader", Some(Refusal::NotLeader)),
        ("not the leader any more", Some(Refusal::NotLeader)),
        ("server full: too many connections", Some(Refusal::Full)),
        ("server shutting down", Some(Refusal::Stopping)),
        ("another membership change is in progress", None),
    ] {
        r.error = Some(Message::Text(text));
        assert_eq!(Refusal::of(&r), want, "{text}");
    }
    let line = b"{\"Status\":\"NO\",\"Error\":\"no leader: the cluster cannot serve now\"}\n";
    assert_eq!(Refusal::of_line(line), Some(Refusal::NoLeader));
    assert_eq!(
        Refusal::of_line(b"{\"Status\":\"Done\",\"Stats\":{}}\n"),
        None
    );
    assert_eq!(Refusal::of_line(b"{\"Status\":\"NO\"}\n"), None);
    let mut locked = Response::new(Status::Locked);
    locked.error = Some(Message::Text("no leader"));
    assert_eq!(Refusal::of(&locked), None);
}

#[test]
fn cluster_answers_are_read() {
    let json = r#"{"Node":2,"Leader":2,"Term":7,"Commit":40,"Applied":40,"Members":[{"ID":1,"Peer":"127.0.0.1:7001","Client":"127.0.0.1:37371","Matched":40,"Lag":0},{"ID":2,"Peer":"127.0.0.1:7002","Client":"h\u006fst-2:37372"},{"ID":3,"Peer":"127.0.0.1:7003"},{"ID":4,"Client":"0.0.0.0 bad"},{"Client":"x:1"},7,[]]}"#;
    let v = ClusterView::parse(json).unwrap();
    assert!(!v.single);
    assert_eq!((v.node, v.leader, v.term), (Some(2), Some(2), 7));
    assert_eq!(
        v.members,
        vec![
            MemberView {
                id: 1,
                client: Some("127.0.0.1:37371".into())
            },
            MemberView {
                id: 2,
                client: Some("host-2:37372".into())
            },
            MemberView {
                id: 3,
                client: None
            },
            MemberView {
                id: 4,
                client: None
            },
        ]
    );
    assert_eq!(v.leader_address(), Some("host-2:37372"));
    let single = ClusterView::parse(r#"{"Mode":"single"}"#).unwrap();
    assert!(single.single);
    let none = ClusterView::parse(r#"{"Node":1,"Leader":0,"Term":3,"Members":[]}"#).unwrap();
    assert_eq!((none.leader, none.leader_address()), (None, None));
    for bad in ["", "[]", "{", r#"{"Members":[{]}"#, r#"{"a":1} x"#] {
        let e = ClusterView::parse(bad).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol, "{bad:?}");
    }
    // What the response reader hands over parses.
    let mut line =
        br#"{"Status":"Done","Cluster":{"Node":1,"Leader":1,"Members":[{"ID":1,"Client":"a:1"}]}}"#
            .to_vec();
    let (_, r) = Response::parse(&mut line).unwrap();
    let v = ClusterView::parse(r.cluster.unwrap()).unwrap();
    assert_eq!(v.leader_address(), Some("a:1"));
}

/// What the simulated host does with a connection attempt.
#[derive(Clone, Copy, Debug)]
enum Event {
    /// Connecting fails after this many ms.
    Refuse(u64),
    /// Connected after this many ms; the request then meets `Then`.
    Connect(u64, Then),
}

#[derive(Clone, Copy, Debug)]
enum Then {
    NotSent(u64),
    Closed(u64),
    TimedOut,
    Refused(u64, u8),
    Answered(u64),
    /// Discovery moves to another member (a leader elsewhere).
    Moved,
}

fn event() -> impl Strategy<Value = Event> {
    let then = prop_oneof![
        (0..50u64).prop_map(Then::NotSent),
        (0..3000u64).prop_map(Then::Closed),
        Just(Then::TimedOut),
        ((0..2500u64), (0..4u8)).prop_map(|(d, r)| Then::Refused(d, r)),
        (0..100u64).prop_map(Then::Answered),
        Just(Then::Moved),
    ];
    prop_oneof![
        (0..200u64).prop_map(Event::Refuse),
        ((0..200u64), then).prop_map(|(d, t)| Event::Connect(d, t)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the members do, a call never sends a write without a
    /// request ID again once it may have been written, never waits or
    /// connects past its deadline, and ends.
    #[test]
    fn never_resends_what_may_apply_twice_nor_outlives_the_deadline(
        servers in 1..5usize,
        kind in 0..6u8,
        timeout in 1..6000u64,
        wait in 0..5000u64,
        start in 0..1_000_000u64,
        events in proptest::collection::vec(event(), 1..60),
        seed in any::<[u8; 16]>(),
    ) {
        let list: Vec<String> = (1..=servers).map(|i| format!("m{i}:{i}")).collect();
        let mut f = Failover::new(ServerList::from_addresses(&list).unwrap(), Config::DEFAULT, seed);
        let c = me();
        let legacy = c.with_framing(Framing::Legacy);
        let t = ms(1000);
        let req = match kind {
            0 => c.put("k", t, "v", Some(Revision(1))),
            1 => legacy.put("k", t, "v", None),
            2 => legacy.unlock("l", Some(Token(3))),
            3 => c.get("k"),
            4 => c.lock_wait("l", t, ms(wait)),
            _ => c.cluster(ClusterOp::Transfer { node: 2 }),
        };
        let mut now = at(start);
        let mut call = f.start(&req, now, ms(timeout));
        let once_only = call.resend() == Resend::IfUnsent;
        prop_assert_eq!(once_only, matches!(kind, 1 | 2 | 5));
        let deadline = call.deadline();
        prop_assert!(deadline <= at(start + timeout + wait));
        let mut maybe_written = false;
        let mut events = events.into_iter().cycle();
        let mut steps = 0;
        let ended = loop {
            steps += 1;
            prop_assert!(steps < 10_000, "the call never ends");
            prop_assert!(now <= deadline);
            let (epoch, within) = match f.poll_connect(&mut call, now) {
                Step::GiveUp(e) => break e.kind == ErrorKind::Unavailable,
                Step::Wait(until) => {
                    prop_assert!(until > now && until < deadline);
                    now = until;
                    continue;
                }
                Step::Connect { epoch, within, .. } => (epoch, within.as_millis()),
            };
            prop_assert_eq!(now.saturating_add(ms(within)), deadline);
            let ev = events.next().unwrap_or(Event::Refuse(0));
            let outcome = match ev {
                Event::Refuse(d) => {
                    now = now.saturating_add(ms(d.min(within)));
                    Outcome::ConnectFailed
                }
                Event::Connect(d, then) => {
                    now = now.saturating_add(ms(d.min(within)));
                    if f.connected(epoch) {
                        let moved = matches!(then, Then::Moved);
                        let other = format!("m{}:{}", servers + 1, servers + 1);
                        let v = view(9, &[(9, Some(if moved { other.as_str() } else { f.server() }))]);
                        if !f.discovered(epoch, Some(&v)) {
                            continue;
                        }
                    }
                    // The request goes out now.
                    prop_assert!(!(once_only && maybe_written), "a write sent twice");
                    let left = deadline.saturating_since(now).as_millis();
                    let sent = call.request(req, now);
                    if let Command::Lock { wait: Some(w), .. } = sent.command {
                        prop_assert!(now.saturating_add(w) <= deadline);
                    }
                    match then {
                        Then::NotSent(d) => {
                            now = now.saturating_add(ms(d.min(left)));
                            Outcome::NotSent
                        }
                        Then::Closed(d) => {
                            maybe_written = true;
                            now = now.saturating_add(ms(d.min(left)));
                            Outcome::Closed
                        }
                        Then::TimedOut => {
                            maybe_written = true;
                            now = deadline;
                            Outcome::TimedOut
                        }
                        Then::Refused(d, r) => {
                            now = now.saturating_add(ms(d.min(left)));
                            Outcome::Refused([Refusal::NoLeader, Refusal::NotLeader, Refusal::Full, Refusal::Stopping][usize::from(r)])
                        }
                        Then::Answered(d) => {
                            now = now.saturating_add(ms(d.min(left)));
                            Outcome::Answered
                        }
                        // Discovery was not asked for: an answer.
                        Then::Moved => Outcome::Answered,
                    }
                }
            };
            match f.handle(&mut call, epoch, outcome, now) {
                Verdict::Accept => break true,
                Verdict::Retry => {}
                Verdict::GiveUp(e) => break e.kind == ErrorKind::Unavailable,
            }
        };
        prop_assert!(ended, "gave up with another error than Unavailable");
        prop_assert!(now <= deadline);
    }
}
