//! The engine's rules, one test per rule of PROTOCOL.md sections 5, 6 and
//! 8 (and the statistics of section 7), plus wait queues and snapshots.
//!
//! Every test runs with an explicit clock (`Instant::from_millis`) and is
//! written once, generic over the engine's [`Storage`]; `on_both!`
//! instantiates it for [`Heap`] and for a fixed-capacity table. Responses
//! are compared whole (status, ID, data, token, expire, revision), so a
//! field that should be absent is checked to be absent.
// Test code: a panic is a failure. Most checks live in generic helpers
// rather than `#[test]` functions, which clippy.toml's test allowance misses.
#![allow(clippy::unwrap_used)]
// Clients are named by letter (a holds, b and c wait), as in the protocol.
#![allow(clippy::many_single_char_names)]

use dlm_core::engine::{
    Config, Engine, Event, Fixed, Heap, Outcome, Principal, SnapshotError, Storage, WaiterId,
};
use dlm_core::protocol::{Command, Owner, Resource, Revision, Status, Token, VERSION_STRING};
use dlm_core::stats::{Stat, Stats};
use dlm_core::time::{Instant, Ttl};

mod common;
use common::{ENGINE_COUNTERS, Reply, locked};

/// The fixed-capacity storage most tests run on besides the heap.
type Small = Fixed<64, 256, 1024>;

/// Instantiates generic tests `fn name<S: Storage>()` for both storages.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn heap() {
                super::$name::<dlm_core::engine::Heap>();
            }
            #[test]
            fn fixed() {
                super::$name::<super::Small>();
            }
        }
    )*};
}

// ---------------------------------------------------------------------------
// Harness

fn unlocked(id: &str) -> Reply {
    Reply::bare(Status::Unlocked).id(id)
}

fn not_owner() -> Reply {
    Reply::bare(Status::NotOwner)
}

fn done(id: &str, rev: u64, expire: u64) -> Reply {
    Reply::bare(Status::Done)
        .id(id)
        .revision(rev)
        .expire(expire)
}

fn got(id: &str, data: &str, rev: u64, expire: u64) -> Reply {
    let mut r = done(id, rev, expire);
    r.data = Some(data.to_owned());
    r
}

fn conflict(rev: u64) -> Reply {
    Reply::bare(Status::Conflict).revision(rev)
}

fn no() -> Reply {
    Reply::bare(Status::No)
}

/// An owned copy of an [`Event`].
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ev {
    waiter: WaiterId,
    name: String,
    tag: u64,
    reply: Reply,
}

impl Ev {
    fn of(e: &Event<'_>) -> Self {
        Self {
            waiter: e.waiter,
            name: e.name.to_owned(),
            tag: e.tag,
            reply: Reply::of(&e.response),
        }
    }
}

/// An owned [`Outcome`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Out {
    Reply(Reply),
    Queued(WaiterId),
}

fn ttl(ms: u64) -> Ttl {
    Ttl::from_millis(ms)
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// An engine, the events it produced, and the counters last checked.
struct H<S: Storage> {
    e: Engine<S>,
    events: Vec<Ev>,
    who: Principal,
    seen: Stats,
}

impl<S: Storage> H<S> {
    fn new() -> Self {
        Self::with(Config::default())
    }

    fn with(config: Config) -> Self {
        Self {
            e: Engine::with_storage(config),
            events: Vec::new(),
            who: Principal::Anonymous,
            seen: Stats::new(),
        }
    }

    /// The next call is made as `p` (then back to anonymous).
    fn as_(&mut self, p: Principal) -> &mut Self {
        self.who = p;
        self
    }

    fn run(&mut self, t: u64, c: &Command<'_>, tag: u64) -> Out {
        let who = core::mem::take(&mut self.who);
        let mut evs = Vec::new();
        let out = match self
            .e
            .handle(at(t), c, who, tag, &mut |e| evs.push(Ev::of(&e)))
        {
            Outcome::Reply(r) => Out::Reply(Reply::of(&r)),
            Outcome::Queued(id) => Out::Queued(id),
        };
        self.events.extend(evs);
        out
    }

    /// A request carrying `RequestID` `id`.
    fn once(&mut self, t: u64, c: &Command<'_>, id: &str) -> Reply {
        let who = core::mem::take(&mut self.who);
        let mut evs = Vec::new();
        let out = match self
            .e
            .handle_once(at(t), c, who, 0, Some(id), &mut |e| evs.push(Ev::of(&e)))
        {
            Outcome::Reply(r) => Reply::of(&r),
            Outcome::Queued(id) => panic!("{c:?} queued as {id:?}"),
        };
        self.events.extend(evs);
        out
    }

    fn reply(&mut self, t: u64, c: &Command<'_>) -> Reply {
        match self.run(t, c, 0) {
            Out::Reply(r) => r,
            Out::Queued(id) => panic!("{c:?} queued as {id:?}"),
        }
    }

    fn lock(&mut self, t: u64, name: &str, owner: &str, ms: u64) -> Reply {
        self.lock_token(t, name, owner, ms, None)
    }

    fn lock_token(&mut self, t: u64, name: &str, owner: &str, ms: u64, tok: Option<u64>) -> Reply {
        let c = Command::Lock {
            name: Resource(name),
            owner: Owner(owner),
            ttl: ttl(ms),
            wait: None,
            token: tok.map(Token),
        };
        self.reply(t, &c)
    }

    /// A lock request with `Wait`; `tag` goes with the waiter.
    fn wait(&mut self, t: u64, name: &str, owner: &str, ms: u64, wait: u64, tag: u64) -> Out {
        let c = Command::Lock {
            name: Resource(name),
            owner: Owner(owner),
            ttl: ttl(ms),
            wait: Some(ttl(wait)),
            token: None,
        };
        self.run(t, &c, tag)
    }

    /// Like [`wait`](Self::wait), but it must queue.
    fn queue(&mut self, t: u64, name: &str, owner: &str, ms: u64, wait: u64, tag: u64) -> WaiterId {
        match self.wait(t, name, owner, ms, wait, tag) {
            Out::Queued(id) => id,
            Out::Reply(r) => panic!("{owner} not queued for {name}: {r:?}"),
        }
    }

    fn unlock(&mut self, t: u64, name: &str, owner: &str) -> Reply {
        self.unlock_token(t, name, owner, None)
    }

    fn unlock_token(&mut self, t: u64, name: &str, owner: &str, tok: Option<u64>) -> Reply {
        let c = Command::Unlock {
            name: Resource(name),
            owner: Owner(owner),
            token: tok.map(Token),
        };
        self.reply(t, &c)
    }

    fn test(&mut self, t: u64, name: &str, owner: &str) -> Reply {
        let c = Command::TestLock {
            name: Resource(name),
            owner: Owner(owner),
        };
        self.reply(t, &c)
    }

    fn put(&mut self, t: u64, name: &str, owner: &str, ms: u64, data: &str) -> Reply {
        self.cas(t, name, owner, ms, data, None)
    }

    fn cas(
        &mut self,
        t: u64,
        name: &str,
        owner: &str,
        ms: u64,
        data: &str,
        rev: Option<u64>,
    ) -> Reply {
        let c = Command::Put {
            name: Resource(name),
            owner: Owner(owner),
            ttl: ttl(ms),
            data,
            revision: rev.map(Revision),
            readers: dlm_core::protocol::Readers::Owner,
        };
        self.reply(t, &c)
    }

    fn get(&mut self, t: u64, name: &str, owner: &str) -> Reply {
        let c = Command::Get {
            name: Resource(name),
            owner: Owner(owner),
        };
        self.reply(t, &c)
    }

    fn erase(&mut self, t: u64, name: &str, owner: &str) -> Reply {
        let c = Command::Erase {
            name: Resource(name),
            owner: Owner(owner),
        };
        self.reply(t, &c)
    }

    fn advance(&mut self, t: u64) {
        let mut evs = Vec::new();
        self.e.advance(at(t), &mut |e| evs.push(Ev::of(&e)));
        self.events.extend(evs);
    }

    /// The events produced since the last call.
    fn take(&mut self) -> Vec<Ev> {
        core::mem::take(&mut self.events)
    }

    /// The token of a `Locked` reply.
    fn token_of(r: &Reply) -> u64 {
        assert_eq!(r.status, Status::Locked, "{r:?}");
        r.token.unwrap()
    }

    /// Checks that, since the last check, exactly the listed counters
    /// moved, by exactly the listed amounts.
    #[track_caller]
    fn moved(&mut self, expected: &[(Stat, u64)]) {
        let now = self.e.stats();
        for &s in ENGINE_COUNTERS {
            let want = expected
                .iter()
                .filter(|(e, _)| *e == s)
                .map(|(_, n)| n)
                .sum::<u64>();
            assert_eq!(
                now.get(s) - self.seen.get(s),
                want,
                "counter {s} moved by {} instead of {want}",
                now.get(s) - self.seen.get(s)
            );
        }
        for &s in Stat::ALL {
            if !s.is_gauge() && !ENGINE_COUNTERS.contains(&s) {
                assert_eq!(now.get(s), 0, "host counter {s} moved");
            }
        }
        self.seen = now;
    }

    /// Checks the gauges against the engine's own counts.
    #[track_caller]
    fn gauges(&self, locks: u64, data: u64, waiters: u64) {
        let s = self.e.stats();
        assert_eq!(s.get(Stat::ALock), locks, "ALock");
        assert_eq!(s.get(Stat::AData), data, "AData");
        assert_eq!(s.get(Stat::AWait), waiters, "AWait");
        assert_eq!(s.get(Stat::Memory), self.e.memory_used() as u64, "Memory");
        assert_eq!(self.e.lock_count() as u64, locks);
        assert_eq!(self.e.data_count() as u64, data);
        assert_eq!(self.e.waiter_count() as u64, waiters);
    }
}

fn granted(waiter: WaiterId, name: &str, tag: u64, reply: Reply) -> Ev {
    Ev {
        waiter,
        name: name.to_owned(),
        tag,
        reply,
    }
}

// ---------------------------------------------------------------------------
// Section 5: namespaces and ownership

fn namespaces_are_separate<S: Storage>() {
    let mut h = H::<S>::new();
    let tok = H::<S>::token_of(&h.lock(0, "x", "a", 1000));
    // The data entry "x" is nobody's yet, whatever the lock "x" is.
    assert_eq!(h.get(1, "x", "b"), Reply::bare(Status::NotFound));
    assert_eq!(h.put(2, "x", "b", 1000, "v"), done("b", 1, 1000));
    assert_eq!(h.get(3, "x", "b"), got("b", "v", 1, 999));
    // The lock "x" is still a's, untouched by b's data.
    assert_eq!(h.test(4, "x", "a"), locked("a", tok, 996));
    assert_eq!(h.lock(5, "x", "b", 1000), not_owner());
    // Releasing the lock leaves the data; erasing the data leaves a lock.
    assert_eq!(h.unlock(6, "x", "a"), unlocked("a"));
    assert_eq!(h.get(7, "x", "b"), got("b", "v", 1, 995));
    let tok2 = H::<S>::token_of(&h.lock(8, "x", "a", 1000));
    assert_eq!(h.erase(9, "x", "b"), Reply::bare(Status::Done).id("b"));
    assert_eq!(h.test(10, "x", "a"), locked("a", tok2, 998));
    // Data expiry leaves the lock, lock expiry leaves data.
    assert_eq!(h.put(10, "x", "a", 100, "w"), done("a", 1, 100));
    h.advance(110);
    assert_eq!(h.test(110, "x", "a"), locked("a", tok2, 898));
    assert_eq!(h.put(110, "x", "a", 5000, "w"), done("a", 1, 5000));
    h.advance(1008);
    assert_eq!(h.test(1008, "x", "a"), Reply::bare(Status::Unlocked));
    assert_eq!(h.get(1008, "x", "a"), got("a", "w", 1, 4102));
}

fn another_owner_never_sees_the_owner<S: Storage>() {
    let mut h = H::<S>::new();
    let tok = H::<S>::token_of(&h.lock(0, "l", "alice", 1000));
    assert_eq!(h.lock(1, "l", "mallory", 1000), not_owner());
    assert_eq!(
        h.lock_token(1, "l", "mallory", 1000, Some(tok)),
        not_owner()
    );
    assert_eq!(h.unlock(2, "l", "mallory"), not_owner());
    assert_eq!(h.unlock_token(2, "l", "mallory", Some(tok)), not_owner());
    assert_eq!(h.test(3, "l", "mallory"), not_owner().expire(997));
    // IDs are compared exactly: case and prefixes matter.
    assert_eq!(h.lock(3, "l", "Alice", 1000), not_owner());
    assert_eq!(h.lock(3, "l", "alic", 1000), not_owner());
    // alice's lock is untouched: same token, same expiry.
    assert_eq!(h.test(4, "l", "alice"), locked("alice", tok, 996));

    assert_eq!(
        h.put(5, "d", "alice", 1000, "secret"),
        done("alice", 1, 1000)
    );
    assert_eq!(h.put(6, "d", "mallory", 9000, "mine"), not_owner());
    assert_eq!(h.get(7, "d", "mallory"), not_owner());
    assert_eq!(h.erase(8, "d", "mallory"), not_owner());
    assert_eq!(h.cas(8, "d", "mallory", 100, "x", Some(1)), not_owner());
    assert_eq!(h.get(9, "d", "alice"), got("alice", "secret", 1, 996));
    h.gauges(1, 1, 0);
}

// ---------------------------------------------------------------------------
// Section 5: Lock

fn relock_extends_and_keeps_token<S: Storage>() {
    let mut h = H::<S>::new();
    let tok = H::<S>::token_of(&h.lock(0, "l", "a", 100));
    let next = h.e.next_token();
    assert_eq!(h.lock(60, "l", "a", 100), locked("a", tok, 100));
    // A re-lock consumes no token.
    assert_eq!(h.e.next_token(), next);
    assert_eq!(h.test(159, "l", "a"), locked("a", tok, 1));
    assert_eq!(h.test(160, "l", "a"), Reply::bare(Status::Unlocked));
    // Re-lock sets now + Expire, even if that is sooner than before.
    let tok = H::<S>::token_of(&h.lock(200, "l", "a", 1000));
    assert_eq!(h.lock(300, "l", "a", 10), locked("a", tok, 10));
    assert_eq!(h.test(309, "l", "a"), locked("a", tok, 1));
    assert_eq!(h.lock(310, "l", "b", 10), locked("b", tok + 1, 10));
}

/// TTLs around the timer wheel's level boundaries (64^n ms).
const TTLS: &[u64] = &[
    1, 2, 63, 64, 65, 4095, 4096, 4097, 262_143, 262_144, 262_145, 3_543_000,
];

/// Start instants, some not aligned to any level.
const STARTS: &[u64] = &[0, 1, 63, 64, 4031, 262_100, 1 << 33];

fn lock_expiry_is_exact<S: Storage>() {
    for &start in STARTS {
        for &d in TTLS {
            // Without advance in between: the first call after the grant
            // is at the instant being checked.
            let mut h = H::<S>::new();
            let tok = H::<S>::token_of(&h.lock(start, "l", "a", d));
            assert_eq!(h.test(start + d - 1, "l", "a"), locked("a", tok, 1));
            let mut h = H::<S>::new();
            h.lock(start, "l", "a", d);
            assert_eq!(h.test(start + d, "l", "a"), Reply::bare(Status::Unlocked));
            let mut h = H::<S>::new();
            h.lock(start, "l", "a", d);
            assert_eq!(h.lock(start + d, "l", "b", 5), locked("b", tok + 1, 5));

            // With advance at assorted instants in between.
            let mut h = H::<S>::new();
            h.lock(start, "l", "a", d);
            for step in [d / 3, d / 2, d - 1] {
                h.advance(start + step);
                assert_eq!(h.e.lock_count(), 1, "start {start} ttl {d} at +{step}");
            }
            assert_eq!(h.test(start + d - 1, "l", "x"), not_owner().expire(1));
            h.advance(start + d);
            assert_eq!(h.e.lock_count(), 0, "start {start} ttl {d}");
            h.moved(&[
                (Stat::Lock, 1),
                (Stat::TestLock, 1),
                (Stat::NotOwner, 1),
                (Stat::ExpiredLock, 1),
            ]);
        }
    }
}

fn data_expiry_is_exact<S: Storage>() {
    for &start in STARTS {
        for &d in TTLS {
            let mut h = H::<S>::new();
            h.put(start, "k", "a", d, "v");
            assert_eq!(h.get(start + d - 1, "k", "a"), got("a", "v", 1, 1));
            let mut h = H::<S>::new();
            h.put(start, "k", "a", d, "v");
            assert_eq!(h.get(start + d, "k", "a"), Reply::bare(Status::NotFound));
            let mut h = H::<S>::new();
            h.put(start, "k", "a", d, "v");
            assert_eq!(h.put(start + d, "k", "b", 5, "w"), done("b", 1, 5));
            let mut h = H::<S>::new();
            h.put(start, "k", "a", d, "v");
            assert_eq!(h.erase(start + d, "k", "a"), Reply::bare(Status::NotFound));

            let mut h = H::<S>::new();
            h.put(start, "k", "a", d, "v");
            for step in [d / 3, d / 2, d - 1] {
                h.advance(start + step);
                assert_eq!(h.e.data_count(), 1, "start {start} ttl {d} at +{step}");
            }
            h.advance(start + d);
            assert_eq!(h.e.data_count(), 0, "start {start} ttl {d}");
            h.moved(&[(Stat::PutNew, 1), (Stat::DataIn, 1), (Stat::ExpiredData, 1)]);
        }
    }
}

fn tokens_strictly_increase<S: Storage>() {
    let mut h = H::<S>::new();
    let mut tokens = Vec::new();
    let mut grant = |r: Reply| tokens.push(H::<S>::token_of(&r));
    // First grants of several names.
    grant(h.lock(0, "a", "o1", 10));
    grant(h.lock(0, "b", "o1", 10));
    // A re-lock keeps its token (not a grant).
    assert_eq!(h.lock(1, "a", "o1", 10).token, Some(1));
    // Re-grant after expiry, to the same owner and to another.
    grant(h.lock(11, "a", "o1", 10));
    grant(h.lock(10, "b", "o2", 10));
    // After release.
    h.unlock(11, "a", "o1");
    grant(h.lock(12, "a", "o1", 10));
    // Hand-overs to waiters, on unlock and on expiry.
    h.queue(13, "a", "o2", 10, 100, 7);
    h.unlock(14, "a", "o1");
    h.queue(15, "a", "o3", 10, 100, 8);
    h.advance(24);
    for e in h.take() {
        grant(e.reply);
    }
    grant(h.lock(40, "c", "o9", 10));
    assert_eq!(tokens, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(h.e.next_token(), Token(9));
}

fn tokens_are_seeded<S: Storage>() {
    let mut h = H::<S>::with(Config {
        first_token: 1000,
        ..Config::default()
    });
    assert_eq!(h.e.next_token(), Token(1001));
    assert_eq!(h.lock(0, "a", "o", 10), locked("o", 1001, 10));
    h.e.seed_tokens(5000);
    assert_eq!(h.e.next_token(), Token(5001));
    // Seeding never lowers the counter.
    h.e.seed_tokens(10);
    assert_eq!(h.e.next_token(), Token(5001));
    h.e.seed_tokens(5000);
    assert_eq!(h.e.next_token(), Token(5001));
    assert_eq!(h.lock(1, "b", "o", 10), locked("o", 5001, 10));
    assert_eq!(h.e.next_token(), Token(5002));
    // The counter saturates rather than wrap to small tokens.
    h.e.seed_tokens(u64::MAX - 2);
    assert_eq!(h.lock(2, "c", "o", 10), locked("o", u64::MAX - 1, 10));
    assert_eq!(h.e.next_token(), Token(u64::MAX));
}

fn lock_with_token_extends_only_its_grant<S: Storage>() {
    let mut h = H::<S>::new();
    let t1 = H::<S>::token_of(&h.lock(0, "l", "a", 100));
    // The right token extends.
    assert_eq!(
        h.lock_token(50, "l", "a", 100, Some(t1)),
        locked("a", t1, 100)
    );
    // A wrong token (even the next one) changes nothing.
    assert_eq!(h.lock_token(60, "l", "a", 1000, Some(t1 + 1)), not_owner());
    assert_eq!(h.lock_token(60, "l", "a", 1000, Some(0)), not_owner());
    assert_eq!(h.test(149, "l", "a"), locked("a", t1, 1));
    // After expiry: NotOwner, and nothing is acquired.
    assert_eq!(h.lock_token(150, "l", "a", 100, Some(t1)), not_owner());
    assert_eq!(h.e.lock_count(), 0);
    assert_eq!(h.e.next_token(), Token(t1 + 1));
    // After release: the same.
    let t2 = H::<S>::token_of(&h.lock(200, "l", "a", 100));
    assert_eq!(h.unlock(210, "l", "a"), unlocked("a"));
    assert_eq!(h.lock_token(220, "l", "a", 100, Some(t2)), not_owner());
    assert_eq!(h.e.lock_count(), 0);
    // Held by another: NotOwner with either token, and no queueing even
    // with Wait.
    let t3 = H::<S>::token_of(&h.lock(300, "l", "b", 100));
    assert_eq!(h.lock_token(310, "l", "a", 100, Some(t2)), not_owner());
    assert_eq!(h.lock_token(310, "l", "a", 100, Some(t3)), not_owner());
    let c = Command::Lock {
        name: Resource("l"),
        owner: Owner("a"),
        ttl: ttl(100),
        wait: Some(ttl(1000)),
        token: Some(Token(t2)),
    };
    assert_eq!(h.run(311, &c, 0), Out::Reply(not_owner()));
    assert_eq!(h.e.waiter_count(), 0);
    // An old token of the current holder does not extend the new grant.
    assert_eq!(h.lock_token(320, "l", "b", 100, Some(t1)), not_owner());
    assert_eq!(h.test(320, "l", "b"), locked("b", t3, 80));
    h.moved(&[
        (Stat::Lock, 3),
        (Stat::Relock, 1),
        (Stat::NotOwner, 8),
        (Stat::TestLock, 2),
        (Stat::Unlock, 1),
        (Stat::ExpiredLock, 1),
    ]);
}

fn unlock_rules<S: Storage>() {
    let mut h = H::<S>::new();
    // Nothing live: Unlocked without ID, with or without a token.
    assert_eq!(h.unlock(0, "l", "a"), Reply::bare(Status::Unlocked));
    assert_eq!(
        h.unlock_token(0, "l", "a", Some(77)),
        Reply::bare(Status::Unlocked)
    );
    let t1 = H::<S>::token_of(&h.lock(0, "l", "a", 100));
    // The lock expires; the same owner takes it again.
    let t2 = H::<S>::token_of(&h.lock(100, "l", "a", 100));
    assert!(t2 > t1);
    // A stale unlock leaves the newer grant alone.
    assert_eq!(h.unlock_token(110, "l", "a", Some(t1)), not_owner());
    assert_eq!(h.test(111, "l", "a"), locked("a", t2, 89));
    // The right token releases it.
    assert_eq!(h.unlock_token(112, "l", "a", Some(t2)), unlocked("a"));
    assert_eq!(h.test(113, "l", "a"), Reply::bare(Status::Unlocked));
    // The token of a grant that expired: no live lock, Unlocked, no ID.
    let t3 = H::<S>::token_of(&h.lock(200, "l", "a", 10));
    assert_eq!(
        h.unlock_token(210, "l", "a", Some(t3)),
        Reply::bare(Status::Unlocked)
    );
    // Another's lock: NotOwner, with or without its token.
    let t4 = H::<S>::token_of(&h.lock(300, "l", "b", 100));
    assert_eq!(h.unlock(301, "l", "a"), not_owner());
    assert_eq!(h.unlock_token(301, "l", "a", Some(t4)), not_owner());
    assert_eq!(h.test(302, "l", "b"), locked("b", t4, 98));
    h.moved(&[
        (Stat::UnlockNF, 3),
        (Stat::Lock, 4),
        (Stat::ExpiredLock, 2),
        (Stat::NotOwner, 3),
        (Stat::TestLock, 2),
        (Stat::TestLockNF, 1),
        (Stat::Unlock, 1),
    ]);
}

fn testlock_never_acquires<S: Storage>() {
    let mut h = H::<S>::new();
    assert_eq!(h.test(0, "l", "a"), Reply::bare(Status::Unlocked));
    assert_eq!(h.e.lock_count(), 0);
    assert_eq!(h.e.next_token(), Token(1));
    let tok = H::<S>::token_of(&h.lock(10, "l", "a", 100));
    assert_eq!(h.test(20, "l", "a"), locked("a", tok, 90));
    // Another owner learns the remaining time and nothing else.
    assert_eq!(h.test(30, "l", "b"), not_owner().expire(80));
    // TestLock does not extend.
    assert_eq!(h.test(109, "l", "a"), locked("a", tok, 1));
    assert_eq!(h.test(110, "l", "b"), Reply::bare(Status::Unlocked));
    assert_eq!(h.e.lock_count(), 0);
    assert_eq!(h.e.next_token(), Token(tok + 1));
    h.moved(&[
        (Stat::TestLockNF, 2),
        (Stat::TestLock, 3),
        (Stat::Lock, 1),
        (Stat::NotOwner, 1),
        (Stat::ExpiredLock, 1),
    ]);
}

// ---------------------------------------------------------------------------
// Section 5: data

fn put_get_erase<S: Storage>() {
    let mut h = H::<S>::new();
    assert_eq!(h.get(0, "k", "a"), Reply::bare(Status::NotFound));
    assert_eq!(h.erase(0, "k", "a"), Reply::bare(Status::NotFound));
    assert_eq!(h.put(0, "k", "a", 100, "one"), done("a", 1, 100));
    assert_eq!(h.get(10, "k", "a"), got("a", "one", 1, 90));
    // Replace: new value, TTL from now, revision + 1.
    assert_eq!(h.put(50, "k", "a", 100, "two!"), done("a", 2, 100));
    assert_eq!(h.get(149, "k", "a"), got("a", "two!", 2, 1));
    assert_eq!(h.put(149, "k", "a", 10, ""), done("a", 3, 10));
    assert_eq!(h.get(150, "k", "a"), got("a", "", 3, 9));
    assert_eq!(h.erase(151, "k", "a"), Reply::bare(Status::Done).id("a"));
    assert_eq!(h.get(152, "k", "a"), Reply::bare(Status::NotFound));
    assert_eq!(h.erase(152, "k", "a"), Reply::bare(Status::NotFound));
    // A new entry starts at revision 1 again, and may be anyone's.
    assert_eq!(h.put(153, "k", "b", 100, "b's"), done("b", 1, 100));
    // Values are byte for byte, escapes and all.
    let odd = "a\"b\\c\u{0}\u{1F512}\n";
    assert_eq!(h.put(154, "k", "b", 100, odd), done("b", 2, 100));
    assert_eq!(h.get(155, "k", "b"), got("b", odd, 2, 99));
    h.gauges(0, 1, 0);
    h.moved(&[
        (Stat::GetNF, 2),
        (Stat::EraseNF, 2),
        (Stat::PutNew, 2),
        (Stat::PutUpdate, 3),
        (Stat::Get, 4),
        (Stat::Erased, 1),
        (Stat::DataIn, 3 + 4 + 3 + odd.len() as u64),
        (Stat::DataOut, 3 + 4 + odd.len() as u64),
    ]);
}

fn put_compare_and_set<S: Storage>() {
    let mut h = H::<S>::new();
    // Revision 0: only if absent.
    assert_eq!(h.cas(0, "k", "a", 100, "v1", Some(0)), done("a", 1, 100));
    assert_eq!(h.cas(1, "k", "a", 100, "vx", Some(0)), conflict(1));
    // Matching revision.
    assert_eq!(h.cas(2, "k", "a", 100, "v2", Some(1)), done("a", 2, 100));
    // Mismatch, lower and higher: the current revision, nothing changed.
    assert_eq!(h.cas(3, "k", "a", 500, "vx", Some(1)), conflict(2));
    assert_eq!(h.cas(3, "k", "a", 500, "vx", Some(3)), conflict(2));
    assert_eq!(h.get(4, "k", "a"), got("a", "v2", 2, 98));
    // Absent with r > 0: Conflict, revision 0, nothing created.
    assert_eq!(h.cas(5, "n", "a", 100, "v", Some(1)), conflict(0));
    assert_eq!(h.get(5, "n", "a"), Reply::bare(Status::NotFound));
    // Another owner never learns the revision.
    assert_eq!(h.cas(6, "k", "b", 100, "v", Some(2)), not_owner());
    assert_eq!(h.cas(6, "k", "b", 100, "v", Some(9)), not_owner());
    // After expiry the entry is absent: 0 succeeds, the old revision not.
    assert_eq!(h.cas(102, "k", "a", 100, "v", Some(2)), conflict(0));
    assert_eq!(h.cas(102, "k", "b", 100, "v", Some(0)), done("b", 1, 100));
    h.moved(&[
        (Stat::PutNew, 2),
        (Stat::PutUpdate, 1),
        (Stat::Conflict, 5),
        (Stat::NotOwner, 2),
        (Stat::Get, 1),
        (Stat::GetNF, 1),
        (Stat::ExpiredData, 1),
        (Stat::DataIn, 2 + 2 + 1),
        (Stat::DataOut, 2),
    ]);
}

// ---------------------------------------------------------------------------
// Section 6: limits and identities

const MAX_ANON: u64 = 3_543_000;

fn is_bad_payload(r: &Reply) -> bool {
    r.status == Status::BadPayload
        && r.error.is_some()
        && r.id.is_none()
        && r.token.is_none()
        && r.revision.is_none()
}

fn expire_limits<S: Storage>() {
    let mut h = H::<S>::new();
    let alice = Principal::Identity(h.e.register_identity("alice", 1024).unwrap());
    assert_eq!(h.lock(0, "l", "a", MAX_ANON).status, Status::Locked);
    assert!(is_bad_payload(&h.lock(0, "m", "a", MAX_ANON + 1)));
    assert_eq!(h.put(0, "k", "a", MAX_ANON, "v").status, Status::Done);
    assert!(is_bad_payload(&h.put(0, "j", "a", MAX_ANON + 1, "v")));
    // Wait is held to the same limit.
    assert!(matches!(
        h.wait(0, "l", "b", 10, MAX_ANON, 0),
        Out::Queued(_)
    ));
    assert!(
        matches!(h.wait(0, "l", "c", 10, MAX_ANON + 1, 0), Out::Reply(r) if is_bad_payload(&r))
    );
    // Zero Expire is refused.
    assert!(is_bad_payload(&h.lock(0, "z", "a", 0)));
    assert!(is_bad_payload(&h.put(0, "z", "a", 0, "v")));
    // An identity may go beyond, up to the server's limit.
    let long = 100 * 24 * 3600 * 1000;
    assert_eq!(h.as_(alice).lock(0, "m", "a", long).expire, Some(long));
    // An identity may wait longer too (here for alice's "a" lock).
    assert!(matches!(
        h.as_(alice).wait(0, "m", "d", 10, MAX_ANON + 1, 0),
        Out::Queued(_)
    ));
    assert_eq!(h.as_(alice).put(0, "j", "a", long, "v").expire, Some(long));
    let max = h.e.limits().max_ttl.as_millis();
    assert_eq!(max, 366 * 24 * 3600 * 1000);
    assert_eq!(h.as_(alice).lock(0, "n", "a", max).status, Status::Locked);
    assert!(is_bad_payload(&h.as_(alice).lock(0, "o", "a", max + 1)));
    assert!(is_bad_payload(&h.as_(alice).put(0, "i", "a", max + 1, "v")));
    // And the entry made with the long TTL lives that long, exactly.
    h.advance(long - 1);
    assert_eq!(h.as_(alice).test(long - 1, "m", "a").expire, Some(1));
    assert_eq!(h.as_(alice).get(long - 1, "j", "a").expire, Some(1));
    h.advance(long);
    assert_eq!(h.as_(alice).test(long, "m", "a").status, Status::Unlocked);
    // Bad requests change nothing.
    assert_eq!(h.e.lock_count(), 1);
    h.moved(&[
        (Stat::Lock, 3),
        (Stat::PutNew, 2),
        (Stat::DataIn, 2),
        (Stat::Wait, 2),
        (Stat::BadPayload, 7),
        (Stat::TestLock, 1),
        (Stat::TestLockNF, 1),
        (Stat::Get, 1),
        (Stat::DataOut, 1),
        (Stat::ExpiredLock, 2),
        (Stat::ExpiredData, 2),
        // One wait ends as the lock expires, the other before its lock
        // does: both time out.
        (Stat::WaitTimeout, 2),
        (Stat::NotOwner, 2),
    ]);
}

fn name_limits<S: Storage>() {
    let mut h = H::<S>::new();
    assert!(is_bad_payload(&h.lock(0, "", "a", 10)));
    assert!(is_bad_payload(&h.lock(0, "l", "", 10)));
    assert!(is_bad_payload(&h.put(0, "", "a", 10, "v")));
    assert!(is_bad_payload(&h.get(0, "k", "")));
    assert!(is_bad_payload(&h.erase(0, "", "a")));
    assert!(is_bad_payload(&h.unlock(0, "", "a")));
    assert!(is_bad_payload(&h.test(0, "l", "")));
    let long = "n".repeat(1025);
    assert!(is_bad_payload(&h.lock(0, &long, "a", 10)));
    assert!(is_bad_payload(&h.get(0, "k", &long)));
    let ok = "n".repeat(100);
    assert_eq!(h.lock(0, &ok, &ok, 10).status, Status::Locked);
    h.moved(&[(Stat::BadPayload, 9), (Stat::Lock, 1)]);
}

/// The data size limits, on storage that can hold 16 KiB values.
fn data_size_limits<S: Storage>() {
    let mut h = H::<S>::new();
    let small = Principal::Identity(h.e.register_identity("small", 100).unwrap());
    let big = Principal::Identity(h.e.register_identity("big", 20_000).unwrap());
    let k16 = "x".repeat(16 * 1024);
    let over = "x".repeat(16 * 1024 + 1);
    assert_eq!(h.put(0, "a", "o", 10, &k16), done("o", 1, 10));
    assert!(is_bad_payload(&h.put(0, "a", "o", 10, &over)));
    assert!(is_bad_payload(&h.put(0, "b", "o", 10, &over)));
    // An identity's MaxSize replaces the anonymous limit, both ways.
    let hundred = "y".repeat(100);
    assert_eq!(
        h.as_(small).put(0, "c", "o", 10, &hundred),
        done("o", 1, 10)
    );
    assert!(is_bad_payload(&h.as_(small).put(
        0,
        "c",
        "o",
        10,
        &"y".repeat(101)
    )));
    assert!(is_bad_payload(&h.as_(small).put(0, "d", "o", 10, &k16)));
    assert_eq!(h.as_(big).put(0, "e", "o", 10, &over), done("o", 1, 10));
    assert!(is_bad_payload(&h.as_(big).put(
        0,
        "e",
        "o",
        10,
        &"z".repeat(20_001)
    )));
    // Registering again updates MaxSize and keeps the handle.
    let again = h.e.register_identity("small", 200).unwrap();
    assert_eq!(Principal::Identity(again), small);
    assert_eq!(h.e.identity("small"), Some(again));
    assert_eq!(h.e.identity("nobody"), None);
    assert_eq!(
        h.as_(small).put(1, "c", "o", 10, &"y".repeat(200)),
        done("o", 2, 10)
    );
    // The stored value is whole.
    assert_eq!(
        h.as_(big).get(2, "e", "o").data.map(|d| d.len()),
        Some(over.len())
    );
    h.moved(&[
        (Stat::PutNew, 3),
        (Stat::PutUpdate, 1),
        (Stat::BadPayload, 5),
        (Stat::Get, 1),
        (Stat::DataIn, (k16.len() + 100 + over.len() + 200) as u64),
        (Stat::DataOut, over.len() as u64),
    ]);
}

#[test]
fn data_size_limits_heap() {
    data_size_limits::<Heap>();
}

#[test]
fn data_size_limits_fixed() {
    data_size_limits::<Fixed<8, 64, 20_000>>();
}

fn identities_and_anonymous_refuse_each_other<S: Storage>() {
    let mut h = H::<S>::new();
    let alice = Principal::Identity(h.e.register_identity("alice", 1024).unwrap());
    let bob = Principal::Identity(h.e.register_identity("bob", 1024).unwrap());
    assert_ne!(alice, bob);
    // Anonymous "o" holds "anon"; "o" with an identity is someone else.
    let t = H::<S>::token_of(&h.lock(0, "anon", "o", 100));
    for p in [alice, bob] {
        assert_eq!(h.as_(p).lock(1, "anon", "o", 100), not_owner());
        assert_eq!(h.as_(p).unlock(1, "anon", "o"), not_owner());
        assert_eq!(h.as_(p).test(1, "anon", "o"), not_owner().expire(99));
    }
    // alice's "o" holds "mine": neither anonymous "o" nor bob's "o" may
    // touch it; alice may.
    let ta = H::<S>::token_of(&h.as_(alice).lock(2, "mine", "o", 100));
    assert_eq!(h.lock(3, "mine", "o", 100), not_owner());
    assert_eq!(h.as_(bob).lock(3, "mine", "o", 100), not_owner());
    assert_eq!(h.unlock(3, "mine", "o"), not_owner());
    assert_eq!(
        h.as_(bob).unlock_token(3, "mine", "o", Some(ta)),
        not_owner()
    );
    assert_eq!(h.as_(bob).test(3, "mine", "o"), not_owner().expire(99));
    assert_eq!(h.as_(alice).lock(4, "mine", "o", 100), locked("o", ta, 100));
    assert_eq!(h.as_(alice).test(5, "mine", "o"), locked("o", ta, 99));
    assert_eq!(h.test(5, "anon", "o"), locked("o", t, 95));
    // Data, the same way.
    assert_eq!(h.as_(alice).put(6, "k", "o", 100, "a"), done("o", 1, 100));
    assert_eq!(h.put(7, "k", "o", 100, "x"), not_owner());
    assert_eq!(h.get(7, "k", "o"), not_owner());
    assert_eq!(h.erase(7, "k", "o"), not_owner());
    assert_eq!(h.as_(bob).put(7, "k", "o", 100, "x"), not_owner());
    assert_eq!(h.as_(bob).get(7, "k", "o"), not_owner());
    assert_eq!(h.as_(bob).erase(7, "k", "o"), not_owner());
    assert_eq!(h.as_(alice).get(8, "k", "o"), got("o", "a", 1, 98));
    assert_eq!(h.put(9, "j", "o", 100, "anon"), done("o", 1, 100));
    assert_eq!(h.as_(alice).get(9, "j", "o"), not_owner());
    assert_eq!(h.as_(alice).put(9, "j", "o", 100, "x"), not_owner());
    assert_eq!(h.as_(alice).erase(9, "j", "o"), not_owner());
    assert_eq!(h.as_(alice).unlock(10, "mine", "o"), unlocked("o"));
    assert_eq!(
        h.as_(alice).erase(10, "k", "o"),
        Reply::bare(Status::Done).id("o")
    );
    assert_eq!(h.get(10, "j", "o"), got("o", "anon", 1, 99));
}

fn unknown_identity_is_refused<S: Storage>() {
    let mut other = H::<S>::new();
    other.e.register_identity("x", 1).unwrap();
    let foreign = other.e.register_identity("y", 1).unwrap();
    let mut h = H::<S>::new();
    h.e.register_identity("x", 1).unwrap();
    let r = h.as_(Principal::Identity(foreign)).lock(0, "l", "o", 10);
    assert!(is_bad_payload(&r));
    assert_eq!(r.error.as_deref(), Some("authentication failed"));
    assert_eq!(h.e.lock_count(), 0);
    h.moved(&[(Stat::BadPayload, 1)]);
}

// ---------------------------------------------------------------------------
// Memory

/// Bytes one lock named `name` held by `owner` costs on this storage.
fn lock_charge<S: Storage>(name: &str, owner: &str) -> usize {
    let mut h = H::<S>::new();
    h.lock(0, name, owner, 10);
    h.e.memory_used()
}

fn memory_budget<S: Storage>() {
    let c = lock_charge::<S>("n00", "o");
    let mut h = H::<S>::with(Config {
        memory_budget: 5 * c + c / 2,
        ..Config::default()
    });
    for i in 0..5 {
        assert_eq!(
            h.lock(0, &format!("n{i:02}"), "o", 100).status,
            Status::Locked
        );
    }
    assert_eq!(h.e.memory_used(), 5 * c);
    // A new lock, a new data entry, a new waiter: NO.
    assert_eq!(h.lock(1, "n05", "o", 100), no());
    assert_eq!(h.put(1, "k", "o", 100, "v"), no());
    assert_eq!(h.wait(1, "n00", "p", 100, 100, 0), Out::Reply(no()));
    // Existing entries still work.
    assert_eq!(h.lock(2, "n00", "o", 100), locked("o", 1, 100));
    assert_eq!(h.test(2, "n01", "o").status, Status::Locked);
    h.gauges(5, 0, 0);
    // Freeing makes room again.
    assert_eq!(h.unlock(3, "n00", "o"), unlocked("o"));
    assert_eq!(h.e.memory_used(), 4 * c);
    assert_eq!(h.lock(4, "n05", "o", 100).status, Status::Locked);
    assert_eq!(h.lock(4, "n06", "o", 100), no());
    // Expiry frees too.
    h.advance(100);
    assert_eq!(h.e.lock_count(), 1);
    assert_eq!(h.put(100, "k", "o", 100, "v").status, Status::Done);
    // Growing a value past the budget is refused; shrinking is not.
    let room = 5 * c + c / 2 - h.e.memory_used();
    assert_eq!(h.put(101, "k", "o", 100, &"v".repeat(room + 2)), no());
    assert_eq!(h.get(101, "k", "o").data.as_deref(), Some("v"));
    assert_eq!(
        h.put(101, "k", "o", 100, &"v".repeat(room + 1)).status,
        Status::Done
    );
    assert_eq!(h.e.memory_used(), 5 * c + c / 2);
    assert_eq!(h.put(102, "k", "o", 100, "w").revision, Some(3));
    h.advance(1000);
    assert_eq!(h.e.memory_used(), 0);
    h.gauges(0, 0, 0);
    h.moved(&[
        (Stat::Lock, 6),
        (Stat::NoMemory, 5),
        (Stat::Relock, 1),
        (Stat::TestLock, 1),
        (Stat::Unlock, 1),
        (Stat::ExpiredLock, 5),
        (Stat::PutNew, 1),
        (Stat::PutUpdate, 2),
        (Stat::Get, 1),
        (Stat::DataIn, 1 + room as u64 + 1 + 1),
        (Stat::DataOut, 1),
        (Stat::ExpiredData, 1),
    ]);
}

fn memory_is_returned<S: Storage>() {
    let mut h = H::<S>::new();
    h.lock(0, "l", "holder", 100);
    let w = h.queue(0, "l", "a-longer-owner-id", 100, 1000, 1);
    h.queue(0, "l", "b", 100, 10, 2);
    h.queue(0, "l", "c", 100, 1000, 3);
    h.put(0, "k", "o", 100, "value");
    h.put(1, "k", "o", 100, "a longer value");
    assert!(h.e.memory_used() > 0);
    h.gauges(1, 1, 3);
    h.advance(10); // b times out
    h.gauges(1, 1, 2);
    assert!(h.e.cancel(w));
    h.unlock(20, "l", "holder"); // c gets it
    h.gauges(1, 1, 0);
    h.advance(1000);
    h.gauges(0, 0, 0);
    assert_eq!(h.e.memory_used(), 0);
}

fn fixed_storage_full() {
    type Tiny = Fixed<4, 16, 8>;
    let mut h = H::<Tiny>::new();
    for i in 0..4 {
        assert_eq!(h.lock(0, &format!("l{i}"), "o", 100).status, Status::Locked);
        assert_eq!(
            h.put(0, &format!("d{i}"), "o", 100, "v").status,
            Status::Done
        );
    }
    assert_eq!(h.lock(0, "l4", "o", 100), no());
    assert_eq!(h.put(0, "d4", "o", 100, "v"), no());
    for i in 0..4 {
        assert!(matches!(
            h.wait(0, "l0", &format!("w{i}"), 100, 100, 0),
            Out::Queued(_)
        ));
    }
    assert_eq!(h.wait(0, "l0", "w4", 100, 100, 0), Out::Reply(no()));
    // Entries too big for the fixed slots.
    assert_eq!(h.put(0, "d0", "o", 100, "123456789"), no());
    assert_eq!(h.put(0, "d0", "o", 100, "12345678").status, Status::Done);
    assert_eq!(h.unlock(0, "l1", "o").status, Status::Unlocked);
    assert_eq!(h.lock(0, "a-long-name", "owner-", 100), no());
    assert_eq!(
        h.lock(0, "a-long-name", "owner", 100).status,
        Status::Locked
    );
    // A waiter whose ID would not fit in the lock is refused at once.
    assert_eq!(
        h.wait(0, "a-long-name", "Owner-", 100, 100, 0),
        Out::Reply(no())
    );
    h.gauges(4, 4, 4);
    // Freeing makes room.
    assert_eq!(h.erase(1, "d3", "o").status, Status::Done);
    assert_eq!(h.put(1, "d4", "o", 100, "v").status, Status::Done);
    h.moved(&[
        (Stat::Lock, 5),
        (Stat::PutNew, 5),
        (Stat::PutUpdate, 1),
        (Stat::DataIn, 4 + 8 + 1),
        (Stat::NoMemory, 6),
        (Stat::Wait, 4),
        (Stat::Unlock, 1),
        (Stat::Erased, 1),
    ]);
}

#[test]
fn fixed_storage_full_fixed() {
    fixed_storage_full();
}

// ---------------------------------------------------------------------------
// Statistics, Version, Stats, deadlines

fn statistics_move_as_documented<S: Storage>() {
    let mut h = H::<S>::new();
    h.moved(&[]);
    h.lock(0, "l", "a", 100);
    h.moved(&[(Stat::Lock, 1)]);
    h.lock(1, "l", "a", 100);
    h.moved(&[(Stat::Relock, 1)]);
    h.lock(1, "l", "b", 100);
    h.moved(&[(Stat::NotOwner, 1)]);
    h.test(2, "l", "b");
    h.moved(&[(Stat::TestLock, 1), (Stat::NotOwner, 1)]);
    h.test(2, "l", "a");
    h.moved(&[(Stat::TestLock, 1)]);
    h.test(2, "m", "a");
    h.moved(&[(Stat::TestLockNF, 1)]);
    h.unlock(3, "l", "b");
    h.moved(&[(Stat::NotOwner, 1)]);
    h.unlock(3, "l", "a");
    h.moved(&[(Stat::Unlock, 1)]);
    h.unlock(3, "l", "a");
    h.moved(&[(Stat::UnlockNF, 1)]);
    h.put(4, "k", "a", 100, "12345");
    h.moved(&[(Stat::PutNew, 1), (Stat::DataIn, 5)]);
    h.put(4, "k", "a", 100, "123");
    h.moved(&[(Stat::PutUpdate, 1), (Stat::DataIn, 3)]);
    h.put(4, "k", "b", 100, "123");
    h.moved(&[(Stat::NotOwner, 1)]);
    h.cas(4, "k", "a", 100, "123", Some(7));
    h.moved(&[(Stat::Conflict, 1)]);
    h.cas(4, "new", "a", 100, "123", Some(7));
    h.moved(&[(Stat::Conflict, 1)]);
    h.get(5, "k", "a");
    h.moved(&[(Stat::Get, 1), (Stat::DataOut, 3)]);
    h.get(5, "k", "b");
    h.moved(&[(Stat::NotOwner, 1)]);
    h.get(5, "nope", "a");
    h.moved(&[(Stat::GetNF, 1)]);
    h.erase(6, "k", "b");
    h.moved(&[(Stat::NotOwner, 1)]);
    h.erase(6, "k", "a");
    h.moved(&[(Stat::Erased, 1)]);
    h.erase(6, "k", "a");
    h.moved(&[(Stat::EraseNF, 1)]);
    h.lock(7, "", "a", 100);
    h.moved(&[(Stat::BadPayload, 1)]);
    // Waiting: joined, granted on unlock, timed out, cancelled.
    h.lock(10, "w", "a", 100);
    h.moved(&[(Stat::Lock, 1)]);
    let b = h.queue(10, "w", "b", 100, 1000, 0);
    h.moved(&[(Stat::Wait, 1)]);
    h.queue(10, "w", "c", 100, 50, 0);
    let d = h.queue(10, "w", "d", 100, 1000, 0);
    h.moved(&[(Stat::Wait, 2)]);
    h.gauges(1, 0, 3);
    assert!(h.e.cancel(d));
    h.moved(&[(Stat::WaitCancel, 1)]);
    assert!(!h.e.cancel(d));
    h.moved(&[]);
    h.unlock(11, "w", "a");
    h.moved(&[(Stat::Unlock, 1), (Stat::Lock, 1), (Stat::WaitGranted, 1)]);
    assert!(!h.e.cancel(b));
    h.advance(60);
    h.moved(&[(Stat::WaitTimeout, 1), (Stat::NotOwner, 1)]);
    // Expiry of a lock and data.
    h.put(60, "k", "a", 10, "x");
    h.moved(&[(Stat::PutNew, 1), (Stat::DataIn, 1)]);
    h.advance(200);
    h.moved(&[(Stat::ExpiredLock, 1), (Stat::ExpiredData, 1)]);
    // A lock that expires into a waiter's hands counts as expired too.
    h.lock(300, "w", "a", 10);
    h.queue(300, "w", "b", 10, 100, 0);
    h.queue(300, "w", "b", 20, 100, 0);
    h.moved(&[(Stat::Lock, 1), (Stat::Wait, 2)]);
    h.advance(310);
    h.moved(&[
        (Stat::ExpiredLock, 1),
        (Stat::Lock, 1),
        (Stat::WaitGranted, 2),
        (Stat::Relock, 1),
    ]);
    let Out::Reply(v) = h.run(400, &Command::Version, 0) else {
        panic!()
    };
    assert_eq!(v, Reply::bare(Status::Version).id(VERSION_STRING));
    h.moved(&[(Stat::Version, 1), (Stat::ExpiredLock, 1)]);
    let s = stats_reply(&mut h.e, 400);
    h.moved(&[(Stat::Stats, 1)]);
    assert_eq!(s.get(Stat::Stats), 1);
    assert_eq!(s.get(Stat::Version), 1);
}

/// Sends `Stats` and returns the counters of the reply.
fn stats_reply<S: Storage>(e: &mut Engine<S>, t: u64) -> Stats {
    let Outcome::Reply(r) = e.handle(at(t), &Command::Stats, Principal::Anonymous, 0, &mut |_| {})
    else {
        panic!("Stats queued")
    };
    assert_eq!(r.status, Status::Done);
    assert_eq!(
        (r.id, r.data, r.token, r.revision),
        (None, None, None, None)
    );
    r.stats.unwrap().clone()
}

fn version_and_stats_replies<S: Storage>() {
    let mut h = H::<S>::new();
    let Out::Reply(v) = h.run(0, &Command::Version, 0) else {
        panic!()
    };
    assert_eq!(v, Reply::bare(Status::Version).id(VERSION_STRING));
    assert!(VERSION_STRING.starts_with("JackrabbitDLM/"));
    assert!(VERSION_STRING.ends_with(" dlm"));
    // Version and Stats need no name, ID or identity.
    let alice = Principal::Identity(h.e.register_identity("alice", 10).unwrap());
    let Out::Reply(v) = h.as_(alice).run(0, &Command::Version, 0) else {
        panic!()
    };
    assert_eq!(v.status, Status::Version);

    h.lock(0, "l", "a", 100);
    h.queue(0, "l", "b", 100, 1000, 0);
    h.put(0, "k", "a", 100, "abc");
    let s = stats_reply(&mut h.e, 1);
    assert_eq!(s.get(Stat::Stats), 1);
    assert_eq!(s.get(Stat::Version), 2);
    assert_eq!(s.get(Stat::Lock), 1);
    assert_eq!(s.get(Stat::Wait), 1);
    assert_eq!(s.get(Stat::PutNew), 1);
    assert_eq!(s.get(Stat::DataIn), 3);
    assert_eq!(s.get(Stat::ALock), 1);
    assert_eq!(s.get(Stat::AData), 1);
    assert_eq!(s.get(Stat::AWait), 1);
    assert_eq!(s.get(Stat::Memory), h.e.memory_used() as u64);
    assert_eq!(s, h.e.stats());
    // The gauges are current at every Stats, not frozen at the first.
    h.advance(100);
    let s = stats_reply(&mut h.e, 100);
    assert_eq!(s.get(Stat::Stats), 2);
    assert_eq!(s.get(Stat::AData), 0);
    assert_eq!(s.get(Stat::ALock), 1);
    assert_eq!(s.get(Stat::AWait), 0);
    assert_eq!(s.get(Stat::Memory), h.e.memory_used() as u64);
    // The host resets counters; gauges stay.
    h.e.stats_mut().reset_counters();
    let s = h.e.stats();
    assert_eq!(s.get(Stat::Stats), 0);
    assert_eq!(s.get(Stat::ALock), 1);
}

fn next_deadline_is_never_late<S: Storage>() {
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Lock,
        Data,
        Waiter(WaiterId),
    }
    let mut h = H::<S>::new();
    assert_eq!(h.e.next_deadline(), None);
    // Deadlines spread over every level of the wheel, some shared.
    let mut entries = Vec::new();
    let mut x = 12_345u64;
    for i in 0..48u64 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let d = match i % 4 {
            0 => 1 + (x >> 33) % 64,
            1 => 1 + (x >> 33) % 5000,
            2 => 1 + (x >> 33) % 400_000,
            _ => 1 + (x >> 33) % MAX_ANON,
        };
        let (t, name) = (0, format!("e{i}"));
        let kind = match i % 3 {
            0 => {
                h.put(t, &name, "o", d, "v");
                Kind::Data
            }
            1 => {
                h.lock(t, &name, "o", d);
                Kind::Lock
            }
            _ => {
                h.lock(t, &name, "o", MAX_ANON);
                entries.push((Kind::Lock, name.clone(), t + MAX_ANON, None));
                Kind::Waiter(h.queue(t, &name, "p", 10, d, i))
            }
        };
        entries.push((kind, name, t + d, None::<u64>));
    }
    let live = |h: &H<S>| h.e.lock_count() + h.e.data_count() + h.e.waiter_count();
    let mut now = 0;
    let mut hops = 0;
    while let Some(next) = h.e.next_deadline() {
        let next = next.as_millis();
        let earliest = entries
            .iter()
            .filter(|e| e.3.is_none())
            .map(|e| e.2)
            .min()
            .unwrap();
        assert!(next <= earliest, "next deadline {next} after {earliest}");
        assert!(next >= now, "next deadline {next} before now {now}");
        let before = (live(&h), h.e.next_deadline());
        h.advance(next);
        // Progress: something expired, or the next deadline moved on.
        assert!(
            live(&h) < before.0 || h.e.next_deadline() > before.1,
            "no progress at {next}"
        );
        let timed_out: Vec<WaiterId> = h.take().iter().map(|e| e.waiter).collect();
        for e in entries.iter_mut().filter(|e| e.3.is_none()) {
            let gone = match e.0 {
                Kind::Lock => h.test(next, &e.1, "o").status == Status::Unlocked,
                Kind::Data => h.get(next, &e.1, "o").status == Status::NotFound,
                Kind::Waiter(w) => timed_out.contains(&w),
            };
            if gone {
                e.3 = Some(next);
            }
        }
        now = next;
        hops += 1;
        assert!(hops < 2000, "too many hops");
    }
    // Hopping from one next deadline to the next, every entry went at
    // exactly its own deadline.
    for (_, name, deadline, gone) in &entries {
        assert_eq!(gone, &Some(*deadline), "{name}");
    }
    assert_eq!(live(&h), 0);
}

// ---------------------------------------------------------------------------
// Wait queues (section 5 and section 8)

fn waiters_are_served_in_arrival_order<S: Storage>() {
    let mut h = H::<S>::new();
    let t0 = H::<S>::token_of(&h.lock(0, "l", "a", 1000));
    let b = h.queue(1, "l", "b", 100, 5000, 11);
    let c = h.queue(2, "l", "c", 200, 5000, 12);
    let d = h.queue(3, "l", "d", 300, 5000, 13);
    assert!(b < c && c < d);
    // Another lock's queue is separate.
    h.lock(0, "m", "x", 1000);
    let e = h.queue(4, "m", "b", 100, 5000, 14);
    assert!(h.take().is_empty());
    h.gauges(2, 0, 4);
    // The holder unlocks: the first waiter gets it in the same call.
    assert_eq!(h.unlock(10, "l", "a"), unlocked("a"));
    assert_eq!(h.take(), [granted(b, "l", 11, locked("b", t0 + 2, 100))]);
    assert_eq!(h.test(10, "l", "b"), locked("b", t0 + 2, 100));
    assert_eq!(h.test(10, "l", "a"), not_owner().expire(100));
    // Its lock expires: the next one gets it, in advance.
    h.advance(109);
    assert!(h.take().is_empty());
    h.advance(110);
    assert_eq!(h.take(), [granted(c, "l", 12, locked("c", t0 + 3, 200))]);
    // Expiry found by a command rather than advance: the waiter is
    // served first, then the command sees the new holder.
    assert_eq!(h.lock(310, "l", "z", 10), not_owner());
    assert_eq!(h.take(), [granted(d, "l", 13, locked("d", t0 + 4, 300))]);
    assert_eq!(h.test(311, "l", "d"), locked("d", t0 + 4, 299));
    // The last holder releases: nobody waits, the lock is free.
    assert_eq!(h.unlock(320, "l", "d"), unlocked("d"));
    assert!(h.take().is_empty());
    assert_eq!(h.test(320, "l", "z"), Reply::bare(Status::Unlocked));
    h.unlock(400, "m", "x");
    assert_eq!(h.take(), [granted(e, "m", 14, locked("b", t0 + 5, 100))]);
    h.gauges(1, 0, 0);
}

fn waiter_times_out<S: Storage>() {
    let mut h = H::<S>::new();
    h.lock(0, "l", "a", 1000);
    let b = h.queue(0, "l", "b", 100, 50, 7);
    let c = h.queue(10, "l", "c", 100, 500, 8);
    h.moved(&[(Stat::Lock, 1), (Stat::Wait, 2)]);
    h.advance(49);
    assert!(h.take().is_empty());
    h.advance(50);
    assert_eq!(h.take(), [granted(b, "l", 7, not_owner())]);
    h.moved(&[(Stat::WaitTimeout, 1), (Stat::NotOwner, 1)]);
    // Found by a command at the deadline, not by advance.
    assert_eq!(h.test(510, "l", "c"), not_owner().expire(490));
    assert_eq!(h.take(), [granted(c, "l", 8, not_owner())]);
    assert!(!h.e.cancel(c));
    h.gauges(1, 0, 0);
    // A timed-out waiter is never granted later.
    h.unlock(600, "l", "a");
    assert!(h.take().is_empty());
    assert_eq!(h.e.lock_count(), 0);
}

fn cancelled_waiters_are_skipped<S: Storage>() {
    let mut h = H::<S>::new();
    let t0 = H::<S>::token_of(&h.lock(0, "l", "a", 1000));
    let b = h.queue(0, "l", "b", 100, 5000, 1);
    let c = h.queue(0, "l", "c", 100, 5000, 2);
    let d = h.queue(0, "l", "d", 100, 5000, 3);
    let e = h.queue(0, "l", "e", 100, 5000, 4);
    assert!(h.e.cancel(b));
    assert!(!h.e.cancel(b));
    assert!(h.e.cancel(d));
    h.gauges(1, 0, 2);
    h.moved(&[(Stat::Lock, 1), (Stat::Wait, 4), (Stat::WaitCancel, 2)]);
    h.unlock(10, "l", "a");
    assert_eq!(h.take(), [granted(c, "l", 2, locked("c", t0 + 1, 100))]);
    // A granted waiter is no longer queued.
    assert!(!h.e.cancel(c));
    assert!(h.e.cancel(e));
    h.unlock(20, "l", "c");
    assert!(h.take().is_empty());
    assert_eq!(h.e.lock_count(), 0);
    h.gauges(0, 0, 0);
    // Cancelling the whole queue leaves the lock with its holder.
    h.lock(30, "l", "a", 100);
    let f = h.queue(30, "l", "f", 100, 50, 5);
    assert!(h.e.cancel(f));
    h.advance(130);
    assert!(h.take().is_empty());
    assert_eq!(h.e.lock_count(), 0);
    h.moved(&[
        (Stat::Unlock, 2),
        (Stat::Lock, 2),
        (Stat::WaitGranted, 1),
        (Stat::WaitCancel, 2),
        (Stat::Wait, 1),
        (Stat::ExpiredLock, 1),
    ]);
}

fn same_owner_waiters_become_relocks<S: Storage>() {
    let mut h = H::<S>::new();
    let alice = Principal::Identity(h.e.register_identity("alice", 100).unwrap());
    let t0 = H::<S>::token_of(&h.lock(0, "l", "a", 1000));
    let b1 = h.queue(0, "l", "b", 100, 5000, 1);
    let b2 = h.queue(0, "l", "b", 300, 5000, 2);
    let b3 = h.queue(0, "l", "b", 50, 5000, 3);
    let c = h.queue(0, "l", "c", 100, 5000, 4);
    let b4 = h.queue(0, "l", "b", 100, 5000, 5);
    h.moved(&[(Stat::Lock, 1), (Stat::Wait, 5)]);
    h.unlock(10, "l", "a");
    // b's three waiters directly behind b: one grant, two re-locks with
    // the same token, each with its own TTL; the longest sets the expiry
    // (a waiter's grant never shortens what another was told).
    let t = t0 + 1;
    assert_eq!(
        h.take(),
        [
            granted(b1, "l", 1, locked("b", t, 100)),
            granted(b2, "l", 2, locked("b", t, 300)),
            granted(b3, "l", 3, locked("b", t, 50)),
        ]
    );
    h.moved(&[
        (Stat::Unlock, 1),
        (Stat::Lock, 1),
        (Stat::Relock, 2),
        (Stat::WaitGranted, 3),
    ]);
    assert_eq!(h.test(11, "l", "b"), locked("b", t, 299));
    h.gauges(1, 0, 2);
    // c is next, and b's fourth waiter, behind c, waits for c.
    h.advance(310);
    assert_eq!(h.take(), [granted(c, "l", 4, locked("c", t + 1, 100))]);
    h.unlock(320, "l", "c");
    assert_eq!(h.take(), [granted(b4, "l", 5, locked("b", t + 2, 100))]);
    // The same ID with another identity is another owner: not a re-lock.
    h.unlock(380, "l", "b");
    let t1 = H::<S>::token_of(&h.lock(380, "l", "a", 100));
    let x = h.queue(380, "l", "b", 100, 5000, 6);
    let y = h.as_(alice).wait(380, "l", "b", 100, 5000, 7);
    let Out::Queued(y) = y else { panic!("{y:?}") };
    h.unlock(390, "l", "a");
    assert_eq!(h.take(), [granted(x, "l", 6, locked("b", t1 + 1, 100))]);
    h.unlock(395, "l", "b");
    assert_eq!(h.take(), [granted(y, "l", 7, locked("b", t1 + 2, 100))]);
    assert_eq!(h.as_(alice).test(396, "l", "b"), locked("b", t1 + 2, 99));
}

fn holder_waiting_on_itself_relocks_at_once<S: Storage>() {
    let mut h = H::<S>::new();
    let t = H::<S>::token_of(&h.lock(0, "l", "a", 100));
    assert_eq!(
        h.wait(10, "l", "a", 500, 1000, 1),
        Out::Reply(locked("a", t, 500))
    );
    assert_eq!(h.e.waiter_count(), 0);
    // Also when others are queued: the holder does not queue behind them.
    let b = h.queue(20, "l", "b", 100, 1000, 2);
    assert_eq!(
        h.wait(30, "l", "a", 100, 1000, 3),
        Out::Reply(locked("a", t, 100))
    );
    assert_eq!(h.e.waiter_count(), 1);
    // With no live lock, Lock with Wait is a plain grant.
    assert_eq!(
        h.wait(30, "m", "a", 100, 1000, 4),
        Out::Reply(locked("a", t + 1, 100))
    );
    h.moved(&[(Stat::Lock, 2), (Stat::Relock, 2), (Stat::Wait, 1)]);
    h.advance(130);
    assert_eq!(h.take(), [granted(b, "l", 2, locked("b", t + 2, 100))]);
}

fn a_waiter_cannot_release_or_test_as_holder<S: Storage>() {
    let mut h = H::<S>::new();
    let t = H::<S>::token_of(&h.lock(0, "l", "a", 100));
    h.queue(0, "l", "b", 100, 1000, 1);
    assert_eq!(h.unlock(1, "l", "b"), not_owner());
    assert_eq!(h.test(1, "l", "b"), not_owner().expire(99));
    assert_eq!(h.lock(1, "l", "b", 100), not_owner());
    assert_eq!(h.test(2, "l", "a"), locked("a", t, 98));
    assert_eq!(h.e.waiter_count(), 1);
}

/// `orphaned` (for a waiter's grant the host could not deliver) frees the
/// lock only for a grant that went to waiters alone, and only the live one
/// with that token; the next waiter gets it at once.
fn orphaned_frees_only_a_waiters_grant<S: Storage>() {
    let mut h = H::<S>::new();
    let t1 = H::<S>::token_of(&h.lock(0, "l", "a", 100));
    let b = h.queue(0, "l", "b", 100, 1000, 1);
    let c = h.queue(0, "l", "c", 100, 1000, 2);
    h.moved(&[(Stat::Lock, 1), (Stat::Wait, 2)]);
    // Wrong token, wrong name, or a grant answered directly: nothing.
    assert!(!orphan(&mut h, 1, "l", t1 + 1));
    assert!(!orphan(&mut h, 1, "m", t1));
    assert!(!orphan(&mut h, 1, "l", t1));
    assert_eq!(h.test(1, "l", "a"), locked("a", t1, 99));
    assert!(h.take().is_empty());
    h.moved(&[(Stat::WaitOrphaned, 1), (Stat::TestLock, 1)]);
    assert_eq!(h.unlock(2, "l", "a"), unlocked("a"));
    assert_eq!(h.take(), [granted(b, "l", 1, locked("b", t1 + 1, 100))]);
    h.moved(&[(Stat::Unlock, 1), (Stat::Lock, 1), (Stat::WaitGranted, 1)]);
    // b's grant went to b alone: taking it back hands the lock to c.
    assert!(orphan(&mut h, 3, "l", t1 + 1));
    assert_eq!(h.take(), [granted(c, "l", 2, locked("c", t1 + 2, 100))]);
    // The first grant's token is stale now.
    assert!(!orphan(&mut h, 4, "l", t1 + 1));
    assert_eq!(h.test(4, "l", "c"), locked("c", t1 + 2, 99));
    // Once expired, there is nothing to take back.
    assert!(!orphan(&mut h, 104, "l", t1 + 2));
    assert_eq!(h.e.lock_count(), 0);
    h.moved(&[
        (Stat::WaitOrphaned, 1),
        (Stat::Lock, 1),
        (Stat::WaitGranted, 1),
        (Stat::TestLock, 1),
        (Stat::ExpiredLock, 1),
    ]);
}

/// Takes back a grant as a host does that could not deliver it.
fn orphan<S: Storage>(h: &mut H<S>, t: u64, name: &str, token: u64) -> bool {
    let mut evs = Vec::new();
    let done =
        h.e.orphaned(at(t), name, Token(token), &mut |e| evs.push(Ev::of(&e)));
    h.events.extend(evs);
    done
}

/// Regression (issue 10): a grant handed to a waiter whose connection had
/// gone, with a waiter of the same owner behind it, was taken back while
/// that second waiter had been told `Locked` with the same token; the lock
/// then went to a third owner, and two owners held it at once.
fn orphaned_grant_keeps_a_same_owner_waiters_lock<S: Storage>() {
    let mut h = H::<S>::new();
    h.lock(0, "g", "h", 30_000);
    let x = h.queue(0, "g", "w", 30_000, 30_000, 1); // its connection will be gone
    let y = h.queue(0, "g", "w", 30_000, 30_000, 2);
    let z = h.queue(0, "g", "z", 30_000, 30_000, 3);
    h.unlock(1, "g", "h");
    let evs = h.take();
    let t = match &evs[..] {
        [a, b] if a.waiter == x && b.waiter == y => {
            assert_eq!(a.reply.token, b.reply.token);
            a.reply.token.unwrap()
        }
        other => panic!("expected x and y granted, got {other:?}"),
    };
    // The host could not deliver x's grant: y, of the same owner, was told.
    assert!(!orphan(&mut h, 1, "g", t));
    assert!(h.take().is_empty(), "nobody else may be granted");
    assert_eq!(h.test(2, "g", "w"), locked("w", t, 29_999));
    assert_eq!(h.e.waiter_count(), 1);
    // y's grant too, later: now nobody who was told is left, z gets it.
    assert!(orphan(&mut h, 3, "g", t));
    assert_eq!(h.take(), [granted(z, "g", 3, locked("z", t + 1, 30_000))]);
}

/// Once a request was answered `Locked` for a waiter's grant (a re-lock or
/// an extension by its owner), an orphaned delivery never frees it.
fn orphaned_grant_stays_after_a_direct_answer<S: Storage>() {
    let mut h = H::<S>::new();
    h.lock(0, "g", "h", 1000);
    let x = h.queue(0, "g", "w", 1000, 5000, 1);
    h.queue(0, "g", "z", 1000, 5000, 2);
    h.unlock(1, "g", "h");
    let t = match &h.take()[..] {
        [e] if e.waiter == x => e.reply.token.unwrap(),
        other => panic!("expected x granted, got {other:?}"),
    };
    assert_eq!(h.lock(2, "g", "w", 1000), locked("w", t, 1000));
    assert!(!orphan(&mut h, 2, "g", t));
    assert!(h.take().is_empty());
    assert_eq!(h.test(3, "g", "w"), locked("w", t, 999));
}

/// Regression (issue 10): with a host clock that truncates to whole
/// milliseconds, a lock must never end before its TTL. With one
/// millisecond of slack a lock granted at (real) 10.9 ms, seen at 10, ends
/// at 16, not 15; the slack is never reported.
fn deadline_slack_never_expires_early<S: Storage>() {
    let mut h = H::<S>::with(Config {
        deadline_slack: Ttl::from_millis(1),
        ..Config::default()
    });
    let t = H::<S>::token_of(&h.lock(10, "l", "a", 5));
    assert_eq!(h.lock(10, "l", "a", 5), locked("a", t, 5));
    assert_eq!(h.test(10, "l", "a"), locked("a", t, 5));
    assert_eq!(h.test(15, "l", "a"), locked("a", t, 1));
    h.advance(15);
    assert_eq!(h.e.lock_count(), 1);
    h.advance(16);
    assert_eq!(h.e.lock_count(), 0);
    // Data and waits too.
    assert_eq!(h.put(20, "d", "a", 5, "v"), done("a", 1, 5));
    h.advance(25);
    assert_eq!(h.get(25, "d", "a"), got("a", "v", 1, 1));
    h.advance(26);
    assert_eq!(h.e.data_count(), 0);
    h.lock(30, "w", "a", 100);
    let w = h.queue(30, "w", "b", 100, 5, 7);
    h.advance(35);
    assert!(h.take().is_empty());
    h.advance(36);
    assert_eq!(h.take(), [granted(w, "w", 7, not_owner())]);
}

/// `locks` and `lock_info` show holder, token, time left and waiters.
fn lock_table_is_visible<S: Storage>() {
    let mut h = H::<S>::new();
    let t = H::<S>::token_of(&h.lock(0, "l", "a", 100));
    h.lock(0, "m", "b", 50);
    h.queue(0, "l", "c", 100, 1000, 1);
    h.advance(10);
    let info = h.e.lock_info("l").unwrap();
    assert_eq!(
        (
            info.name,
            info.owner,
            info.token,
            info.remaining,
            info.waiters,
            info.identity
        ),
        ("l", "a", Token(t), ttl(90), 1, None)
    );
    let mut all: Vec<_> = h.e.locks().map(|l| (l.name, l.owner)).collect();
    all.sort_unstable();
    assert_eq!(all, [("l", "a"), ("m", "b")]);
    assert!(h.e.lock_info("n").is_none());
}

/// How long a grant has been held and who waits how long are visible, and
/// the timings record each grant's hold and each granted waiter's queueing.
fn hold_and_queue_times_are_measured<S: Storage>() {
    let mut h = H::<S>::new();
    h.lock(100, "l", "a", 1_000);
    h.advance(130);
    assert_eq!(h.e.lock_info("l").unwrap().held, ttl(30));
    // A re-lock continues the grant.
    h.lock(140, "l", "a", 1_000);
    let b = h.queue(150, "l", "b", 500, 2_000, 1);
    h.queue(160, "l", "c", 500, 2_000, 2);
    h.advance(170);
    assert_eq!(h.e.lock_info("l").unwrap().held, ttl(70));
    let q: Vec<_> =
        h.e.waiters("l")
            .map(|w| (w.owner, w.waited, w.wait_left, w.ttl))
            .collect();
    assert_eq!(
        q,
        [
            ("b", ttl(20), ttl(1_980), ttl(500)),
            ("c", ttl(10), ttl(1_990), ttl(500))
        ]
    );
    assert_eq!(h.e.waiters("nothing").count(), 0);
    assert_eq!(h.e.timings().hold.count(), 0);
    // a holds 100..200, then b queued 150..200 gets it.
    assert_eq!(h.unlock(200, "l", "a"), unlocked("a"));
    assert_eq!(h.take()[0].waiter, b);
    let t = *h.e.timings();
    assert_eq!((t.hold.count(), t.hold.sum_ms()), (1, 100));
    assert_eq!((t.queued.count(), t.queued.sum_ms()), (1, 50));
    assert_eq!(h.e.lock_info("l").unwrap().held, ttl(0));
    // b's grant runs out at 700 and goes to c, who queued at 160.
    h.advance(700);
    let t = *h.e.timings();
    assert_eq!((t.hold.count(), t.hold.sum_ms()), (2, 600));
    assert_eq!((t.queued.count(), t.queued.sum_ms()), (2, 50 + 540));
    assert_eq!(h.e.lock_info("l").unwrap().owner, "c");
}

/// An administrator's revocation frees the lock as an unlock would (the
/// next waiter gets it, with a greater token), by token only that grant.
fn revoke_hands_the_lock_on<S: Storage>() {
    use dlm_core::protocol::{AdminOp, RequestError};
    let mut h = H::<S>::new();
    let admin = Principal::Identity(h.e.register_identity("root", 100).unwrap());
    let revoke = |name, token: Option<u64>| {
        Command::Admin(AdminOp::Revoke {
            name: Resource(name),
            token: token.map(Token),
        })
    };
    let t = H::<S>::token_of(&h.lock(0, "l", "a", 1_000));
    let w = h.queue(0, "l", "b", 1_000, 5_000, 9);
    h.seen = h.e.stats();
    // Nobody anonymous may.
    assert_eq!(
        h.reply(10, &revoke("l", None)),
        Reply::of(&dlm_core::protocol::Response::rejected(
            RequestError::NotAdmin
        ))
    );
    h.moved(&[(Stat::BadPayload, 1)]);
    // Another grant's token: refused, nothing changes.
    assert_eq!(
        h.as_(admin).reply(10, &revoke("l", Some(t + 1))),
        not_owner()
    );
    h.moved(&[(Stat::NotOwner, 1)]);
    assert_eq!(h.e.lock_info("l").unwrap().owner, "a");
    let r = h.as_(admin).reply(20, &revoke("l", Some(t)));
    assert_eq!(r, Reply::bare(Status::Unlocked).token(t));
    h.moved(&[(Stat::Revoked, 1), (Stat::Lock, 1), (Stat::WaitGranted, 1)]);
    let ev = h.take();
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].waiter, ev[0].tag), (w, 9));
    assert!(H::<S>::token_of(&ev[0].reply) > t);
    // The old holder has lost it: its unlock by token is refused.
    assert_eq!(h.unlock_token(30, "l", "a", Some(t)), not_owner());
    // Revoking what nobody holds is an unlock of nothing.
    h.as_(admin).reply(40, &revoke("l", None));
    h.seen = h.e.stats();
    assert_eq!(
        h.as_(admin).reply(50, &revoke("l", None)),
        Reply::bare(Status::Unlocked)
    );
    h.moved(&[(Stat::UnlockNF, 1)]);
}

fn put_cmd<'a>(
    name: &'a str,
    owner: &'a str,
    ms: u64,
    data: &'a str,
    rev: Option<u64>,
) -> Command<'a> {
    Command::Put {
        name: Resource(name),
        owner: Owner(owner),
        ttl: ttl(ms),
        data,
        revision: rev.map(Revision),
        readers: dlm_core::protocol::Readers::Owner,
    }
}

/// Issue 11: a resent compare-and-set, erase or unlock with the same
/// `RequestID` gets its first answer again instead of being applied twice.
fn resent_requests_apply_once<S: Storage>() {
    let mut h = H::<S>::new();
    let cas = put_cmd("k", "a", 100, "v1", Some(0));
    assert_eq!(h.once(0, &cas, "r1"), done("a", 1, 100));
    // Applied twice, this would be a Conflict.
    assert_eq!(h.once(1, &cas, "r1"), done("a", 1, 100));
    assert_eq!(h.get(2, "k", "a"), got("a", "v1", 1, 98));
    // Another ID is another request: applied (and conflicts).
    assert_eq!(h.once(3, &cas, "r2"), conflict(1));
    // Another owner's same ID is another request.
    assert_eq!(
        h.once(3, &put_cmd("k", "b", 100, "x", None), "r1"),
        not_owner()
    );
    let erase = Command::Erase {
        name: Resource("k"),
        owner: Owner("a"),
    };
    assert_eq!(h.once(4, &erase, "r3"), Reply::bare(Status::Done).id("a"));
    assert_eq!(h.once(5, &erase, "r3"), Reply::bare(Status::Done).id("a"));
    assert_eq!(h.erase(6, "k", "a"), Reply::bare(Status::NotFound));
    // Unlock without a token: a resend never releases the owner's next grant.
    h.lock(7, "l", "a", 100);
    let unlock = Command::Unlock {
        name: Resource("l"),
        owner: Owner("a"),
        token: None,
    };
    assert_eq!(h.once(8, &unlock, "r4"), unlocked("a"));
    let t2 = H::<S>::token_of(&h.lock(9, "l", "a", 100));
    assert_eq!(h.once(10, &unlock, "r4"), unlocked("a"));
    assert_eq!(h.test(11, "l", "a"), locked("a", t2, 98));
    // r1 twice (a's and b's), r2, r3, r4.
    assert_eq!(h.e.remembered_requests(), 5);
    assert_eq!(h.e.stats().get(Stat::Replayed), 3);
}

/// A `Lock` is never answered from memory: a resend is applied again and
/// answers the truth of the moment (a remembered `Locked` could name a
/// grant that expired since).
fn a_resent_lock_answers_the_present<S: Storage>() {
    let mut h = H::<S>::new();
    let lock = Command::Lock {
        name: Resource("l"),
        owner: Owner("a"),
        ttl: ttl(10),
        wait: None,
        token: None,
    };
    let t = H::<S>::token_of(&h.once(0, &lock, "r"));
    assert_eq!(h.once(5, &lock, "r"), locked("a", t, 10));
    h.advance(20);
    h.lock(20, "l", "b", 100);
    assert_eq!(h.once(21, &lock, "r"), not_owner());
    assert_eq!(h.e.remembered_requests(), 0);
}

/// Answers are remembered for the window, at most the capacity, oldest
/// forgotten first, and across a snapshot.
fn remembered_answers_are_bounded<S: Storage>() {
    let mut h = H::<S>::with(Config {
        dedup_capacity: 3,
        dedup_window: Ttl::from_millis(1000),
        ..Config::default()
    });
    for (i, id) in ["a", "b", "c", "d"].into_iter().enumerate() {
        let t = i as u64;
        h.once(t, &put_cmd("k", "o", 10_000, "v", None), id);
    }
    assert_eq!(h.e.remembered_requests(), 3);
    // "a" was forgotten: applied again (revision 5); "d" remembered.
    assert_eq!(
        h.once(5, &put_cmd("k", "o", 10_000, "v", None), "a"),
        done("o", 5, 10_000)
    );
    assert_eq!(
        h.once(6, &put_cmd("k", "o", 10_000, "v", None), "d"),
        done("o", 4, 10_000)
    );
    // Through a snapshot.
    let bytes = h.e.snapshot_to_vec();
    let mut other = H::<S>::with(Config {
        dedup_capacity: 3,
        dedup_window: Ttl::from_millis(1000),
        ..Config::default()
    });
    other.e.restore(at(6), &bytes).unwrap();
    assert_eq!(
        other.once(7, &put_cmd("k", "o", 10_000, "v", None), "d"),
        done("o", 4, 10_000)
    );
    // After the window, gone.
    h.advance(1100);
    assert_eq!(h.e.remembered_requests(), 0);
    assert_eq!(
        h.once(1100, &put_cmd("k", "o", 10_000, "v", None), "d"),
        done("o", 6, 10_000)
    );
}

/// Regression: `Wait` of zero means one attempt (PROTOCOL.md section 3);
/// the parser drops it, and the engine must treat a `Command` built by
/// hand the same way instead of queueing a waiter that is due at once.
fn zero_wait_is_one_attempt<S: Storage>() {
    let mut h = H::<S>::new();
    h.lock(0, "l", "a", 100);
    assert_eq!(h.wait(5, "l", "b", 100, 0, 1), Out::Reply(not_owner()));
    assert_eq!(h.e.waiter_count(), 0);
    h.advance(6);
    assert!(h.take().is_empty());
    h.moved(&[(Stat::Lock, 1), (Stat::NotOwner, 1)]);
}

/// Regression: a waiter whose wait runs out at the very instant the lock
/// expires times out; it is not granted. The answer used to depend on the
/// order of the two entries inside the timer wheel (and so on when they
/// were inserted and whether the host called `advance` in between).
fn wait_ending_as_the_lock_expires_times_out<S: Storage>() {
    // (grant time, ttl, time queued): lock and wait both end at grant + ttl.
    let cases: &[(u64, u64, u64)] = &[
        (0, 100, 0),
        (0, 100, 50),
        (0, 100, 99),
        (0, 64, 1),
        (10, 5000, 10),
        (10, 5000, 4000),
        (10, 5000, 5009),
        (1000, 300_000, 1000),
        (1000, 300_000, 299_000),
        (1000, 300_000, 300_990),
    ];
    for &(g, d, q) in cases {
        let end = g + d;
        for how in 0..4 {
            let mut h = H::<S>::new();
            h.lock(g, "l", "a", d);
            let b = h.queue(q, "l", "b", 100, end - q, 1);
            let c = h.queue(q, "l", "c", 100, end - q + 1, 2);
            match how {
                // Found by advance, exactly at the instant, or later.
                0 => h.advance(end),
                1 => h.advance(end + 7),
                // Found by a command at the instant; advance on the way.
                2 => {
                    h.advance(end - 1);
                    h.test(end, "l", "z");
                }
                _ => {
                    h.test(end, "l", "z");
                }
            }
            let evs = h.take();
            let at = if how == 1 { end + 7 } else { end };
            assert_eq!(
                evs,
                [
                    granted(b, "l", 1, not_owner()),
                    granted(c, "l", 2, locked("c", 2, 100)),
                ],
                "lock at {g} for {d}, queued at {q}, case {how}"
            );
            assert_eq!(h.test(at, "l", "c").expire, Some(100), "case {how}");
        }
    }
}

/// The same rule for the waiters behind the new holder: one whose wait
/// ends as the lock comes free times out, and does not stop a waiter of
/// the new holder behind it from being answered as a re-lock.
fn wait_ending_at_hand_over_times_out_behind_the_holder<S: Storage>() {
    let mut h = H::<S>::new();
    h.lock(0, "l", "a", 100);
    let b1 = h.queue(0, "l", "b", 30, 500, 1);
    let c = h.queue(0, "l", "c", 30, 100, 2);
    let b2 = h.queue(0, "l", "b", 40, 500, 3);
    let b3 = h.queue(50, "l", "b", 50, 50, 4);
    let d = h.queue(50, "l", "d", 30, 500, 5);
    h.advance(100);
    // Events of one instant come in no particular order.
    let mut evs = h.take();
    evs.sort_by_key(|e| e.waiter);
    assert_eq!(
        evs,
        [
            granted(b1, "l", 1, locked("b", 2, 30)),
            granted(c, "l", 2, not_owner()),
            granted(b2, "l", 3, locked("b", 2, 40)),
            granted(b3, "l", 4, not_owner()),
        ]
    );
    assert_eq!(h.test(100, "l", "b"), locked("b", 2, 40));
    h.advance(140);
    assert_eq!(h.take(), [granted(d, "l", 5, locked("d", 3, 30))]);
}

/// Unlock at the instant a wait runs out: the waiter has timed out.
fn unlock_as_the_wait_ends<S: Storage>() {
    let mut h = H::<S>::new();
    h.lock(0, "l", "a", 1000);
    let b = h.queue(0, "l", "b", 100, 100, 1);
    assert_eq!(h.unlock(100, "l", "a"), unlocked("a"));
    assert_eq!(h.take(), [granted(b, "l", 1, not_owner())]);
    assert_eq!(h.e.lock_count(), 0);
}

/// Hand-over at a late `advance`: the lock became free before the wait
/// ran out, so the waiter gets it; its TTL runs from the hand-over.
fn late_advance_still_grants<S: Storage>() {
    let mut h = H::<S>::new();
    h.lock(0, "l", "a", 100);
    let b = h.queue(0, "l", "b", 50, 150, 1);
    h.advance(1000);
    assert_eq!(h.take(), [granted(b, "l", 1, locked("b", 2, 50))]);
    assert_eq!(h.test(1000, "l", "b"), locked("b", 2, 50));
}

on_both!(
    namespaces_are_separate,
    another_owner_never_sees_the_owner,
    relock_extends_and_keeps_token,
    lock_expiry_is_exact,
    data_expiry_is_exact,
    tokens_strictly_increase,
    tokens_are_seeded,
    lock_with_token_extends_only_its_grant,
    unlock_rules,
    testlock_never_acquires,
    put_get_erase,
    put_compare_and_set,
    expire_limits,
    name_limits,
    identities_and_anonymous_refuse_each_other,
    unknown_identity_is_refused,
    memory_budget,
    memory_is_returned,
    statistics_move_as_documented,
    version_and_stats_replies,
    next_deadline_is_never_late,
    waiters_are_served_in_arrival_order,
    waiter_times_out,
    cancelled_waiters_are_skipped,
    same_owner_waiters_become_relocks,
    holder_waiting_on_itself_relocks_at_once,
    a_waiter_cannot_release_or_test_as_holder,
    orphaned_frees_only_a_waiters_grant,
    orphaned_grant_keeps_a_same_owner_waiters_lock,
    orphaned_grant_stays_after_a_direct_answer,
    deadline_slack_never_expires_early,
    resent_requests_apply_once,
    a_resent_lock_answers_the_present,
    remembered_answers_are_bounded,
    lock_table_is_visible,
    zero_wait_is_one_attempt,
    wait_ending_as_the_lock_expires_times_out,
    wait_ending_at_hand_over_times_out_behind_the_holder,
    unlock_as_the_wait_ends,
    late_advance_still_grants,
);

// ---------------------------------------------------------------------------
// Snapshots

/// FNV-1a 64, the snapshot checksum, to craft snapshots that pass it.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `body` with a valid checksum appended.
fn sealed(body: &[u8]) -> Vec<u8> {
    let mut v = body.to_vec();
    v.extend_from_slice(&fnv(body).to_le_bytes());
    v
}

/// A state with a bit of everything, at instant 1000.
fn busy<S: Storage>(h: &mut H<S>) {
    h.e.seed_tokens(41);
    let alice = Principal::Identity(h.e.register_identity("alice", 100).unwrap());
    h.e.register_identity("bob", 2000).unwrap();
    h.lock(900, "l1", "a", 500);
    h.as_(alice).lock(900, "l2", "a", 50_000);
    h.lock(950, "l3", "c", 3_000_000);
    h.queue(960, "l1", "b", 100, 1000, 1);
    h.queue(960, "l1", "b", 200, 2000, 2);
    h.as_(alice).wait(970, "l1", "c", 300, 3000, 3);
    h.queue(980, "l2", "d", 400, 4000, 4);
    h.put(990, "k1", "a", 600, "value one");
    h.as_(alice).put(990, "k2", "a", 60_000, "\u{1F512} two");
    h.put(995, "k2x", "z", 70, "");
    h.cas(996, "k1", "a", 700, "value 1b", Some(1));
    h.test(1000, "l1", "zz");
}

fn snapshot_round_trip_is_identical<S: Storage>() {
    let mut h = H::<S>::new();
    busy(&mut h);
    let bytes = h.e.snapshot_to_vec();
    assert!(bytes.starts_with(b"DLMSNAP\0"));
    let mut r = H::<S>::new();
    // Anything in the engine before is replaced.
    r.lock(0, "old", "x", 10);
    r.e.restore(at(1000), &bytes).unwrap();
    assert_eq!(r.e.snapshot_to_vec(), bytes);
    assert_eq!(r.e.stats(), h.e.stats());
    assert_eq!(r.e.next_token(), h.e.next_token());
    assert_eq!(r.e.memory_used(), h.e.memory_used());
    assert_eq!(r.e.identity("bob"), h.e.identity("bob"));
    // Snapshots also go into a caller's buffer.
    let mut buf = vec![0u8; bytes.len()];
    let mut out = dlm_core::protocol::SliceOut::new(&mut buf);
    h.e.snapshot(&mut out).unwrap();
    assert_eq!(out.len(), bytes.len());
    assert_eq!(buf, bytes);
    let mut small = vec![0u8; bytes.len() - 1];
    assert!(
        h.e.snapshot(&mut dlm_core::protocol::SliceOut::new(&mut small))
            .is_err()
    );
    // An empty engine round-trips too.
    let empty = H::<S>::new().e.snapshot_to_vec();
    let mut r = H::<S>::new();
    r.e.restore(at(5), &empty).unwrap();
    assert_eq!(r.e.snapshot_to_vec(), {
        // The same state, seen from instant 5.
        let mut e = H::<S>::new();
        e.advance(5);
        e.e.snapshot_to_vec()
    });
}

fn restored_engine_carries_on<S: Storage>() {
    let mut a = H::<S>::new();
    busy(&mut a);
    let mut b = H::<S>::new();
    b.e.restore(at(1000), &a.e.snapshot_to_vec()).unwrap();
    let alice = Principal::Identity(b.e.identity("alice").unwrap());
    for h in [&mut a, &mut b] {
        assert_eq!(h.test(1000, "l1", "a"), locked("a", 42, 400));
        assert_eq!(
            h.as_(alice).get(1001, "k2", "a"),
            got("a", "\u{1F512} two", 1, 59_989)
        );
        // Identity-held entries stay the identity's.
        assert_eq!(h.get(1001, "k2", "a"), not_owner());
        assert_eq!(h.lock(1002, "fresh", "f", 10), locked("f", 45, 10));
        // l1 expires at 1400: b (twice, as a re-lock), then c in turn.
        h.advance(1400);
        let evs = h.take();
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].reply, locked("b", 46, 100));
        assert_eq!(evs[1].reply, locked("b", 46, 200));
        assert_eq!((evs[0].tag, evs[1].tag), (1, 2));
        h.advance(1600);
        let evs = h.take();
        assert_eq!(evs.len(), 1);
        assert_eq!((evs[0].tag, &evs[0].reply), (3, &locked("c", 47, 300)));
        // The waiter on l2 times out at 980 + 4000.
        h.advance(4979);
        assert!(h.take().is_empty());
        h.advance(4980);
        assert_eq!(h.take()[0].reply, not_owner());
    }
    assert_eq!(a.e.stats(), b.e.stats());
}

fn restore_at_a_later_instant_rebases<S: Storage>() {
    let mut h = H::<S>::new();
    h.lock(0, "l", "a", 100);
    h.queue(0, "l", "b", 50, 300, 9);
    h.put(0, "k", "a", 200, "v");
    h.test(30, "l", "a");
    let bytes = h.e.snapshot_to_vec();
    let mut r = H::<S>::new();
    let t = 1_000_000;
    r.e.restore(at(t), &bytes).unwrap();
    assert_eq!(r.test(t, "l", "a").expire, Some(70));
    assert_eq!(r.get(t, "k", "a"), got("a", "v", 1, 170));
    // The next deadline is in the restored engine's time.
    let next = r.e.next_deadline().unwrap().as_millis();
    assert!((t..=t + 70).contains(&next));
    r.advance(t + 69);
    assert_eq!(r.e.lock_count(), 1);
    r.advance(t + 70);
    let evs = r.take();
    assert_eq!(evs.len(), 1);
    assert_eq!((evs[0].tag, &evs[0].reply), (9, &locked("b", 2, 50)));
    assert_eq!(r.get(t + 169, "k", "a").expire, Some(1));
    assert_eq!(r.get(t + 170, "k", "a"), Reply::bare(Status::NotFound));
    // And the waiter's wait: rebased as well (it would have run out at
    // t + 270; it was granted before).
    let mut r = H::<S>::new();
    r.e.restore(at(t), &bytes).unwrap();
    assert!(r.e.cancel(WaiterId::clone(&evs[0].waiter)));
    let mut r = H::<S>::new();
    r.e.restore(at(t), &bytes).unwrap();
    r.lock(t + 60, "l", "a", 1000);
    r.advance(t + 269);
    assert!(r.take().is_empty());
    r.advance(t + 270);
    assert_eq!(r.take()[0].reply, not_owner());
}

/// Checks that a failed restore left an empty, working engine that
/// still never repeats a token or a waiter ID.
#[track_caller]
fn left_empty<S: Storage>(h: &mut H<S>, t: u64, token_floor: u64) {
    assert_eq!(
        (h.e.lock_count(), h.e.data_count(), h.e.waiter_count()),
        (0, 0, 0)
    );
    assert_eq!(h.e.memory_used(), 0);
    assert_eq!(h.e.identity("alice"), None);
    assert_eq!(h.e.next_deadline(), None);
    for &s in ENGINE_COUNTERS {
        assert_eq!(h.e.stats().get(s), 0, "{s}");
    }
    assert!(h.e.next_token().0 > token_floor);
    let r = h.lock(t, "z", "x", 10);
    assert!(r.token.unwrap() > token_floor);
    assert_eq!(h.unlock(t, "z", "x").status, Status::Unlocked);
    h.seen = h.e.stats();
}

fn restore_errors_leave_an_empty_engine<S: Storage>() {
    let mut src = H::<S>::new();
    busy(&mut src);
    let good = src.e.snapshot_to_vec();
    let floor = src.e.next_token().0 - 1;
    let mut h = H::<S>::new();
    let fill = |h: &mut H<S>| {
        h.e.restore(at(1000), &good).unwrap();
        assert_eq!(h.e.lock_count(), 3);
    };
    let cases: Vec<(Vec<u8>, SnapshotError)> = vec![
        (Vec::new(), SnapshotError::Truncated),
        (good[..10].to_vec(), SnapshotError::Truncated),
        (good[..19].to_vec(), SnapshotError::Truncated),
        (
            [b"DLMSNAQ\0".as_slice(), &good[8..]].concat(),
            SnapshotError::BadMagic,
        ),
        (
            b"{\"Action\":\"Lock\",\"ID\":\"x\"}".to_vec(),
            SnapshotError::BadMagic,
        ),
        (
            [&good[..8], &99u32.to_le_bytes(), &good[12..]].concat(),
            SnapshotError::UnsupportedVersion(99),
        ),
        // Damage anywhere in the body, or a cut: the checksum says so.
        (
            {
                let mut b = good.clone();
                b[good.len() / 2] ^= 0x40;
                b
            },
            SnapshotError::Checksum,
        ),
        (good[..good.len() - 1].to_vec(), SnapshotError::Checksum),
        (good[..good.len() - 9].to_vec(), SnapshotError::Checksum),
        // A cut body with a checksum that matches it: truncated.
        (sealed(&good[..good.len() - 20]), SnapshotError::Truncated),
        (sealed(&good[..40]), SnapshotError::Truncated),
        // Well sealed, but inconsistent.
        (
            sealed(&[&good[..good.len() - 8], &[0]].concat()),
            SnapshotError::Corrupt("trailing bytes"),
        ),
    ];
    for (bytes, want) in cases {
        fill(&mut h);
        assert_eq!(h.e.restore(at(2000), &bytes), Err(want), "{want:?}");
        left_empty(&mut h, 2000, floor);
    }
}

/// A snapshot of the version before grant instants were kept (3) is still
/// read: its locks count as granted at the restore.
fn version_3_snapshots_are_read<S: Storage>() {
    let mut h = H::<S>::new();
    // A token whose bytes appear nowhere else in the snapshot.
    h.e.seed_tokens(0x0123_4567_89ab_cdee);
    let t = H::<S>::token_of(&h.lock(0, "l", "a", 100));
    h.advance(40);
    let v4 = h.e.snapshot_to_vec();
    let mut r = H::<S>::new();
    r.e.restore(at(500), &v4).unwrap();
    assert_eq!(
        r.e.lock_info("l").unwrap().held,
        ttl(40),
        "version 4 keeps it"
    );
    // The lock's fields: token, time left, told, then the held time. The
    // current version (8) ends with the count of semaphores and read/write
    // locks (none here), the three counts of sessions (none), the watch
    // revision and the three counts of multi-lock waiters, pumps and
    // grants (none), which versions 3 and 4 do not have.
    let body = &v4[..v4.len() - 72];
    let p = body.windows(8).position(|w| w == t.to_le_bytes()).unwrap();
    let mut v3 = [&body[..p + 18], &body[p + 26..]].concat();
    v3[8..12].copy_from_slice(&3u32.to_le_bytes());
    let mut r = H::<S>::new();
    r.e.restore(at(500), &sealed(&v3)).unwrap();
    let info = r.e.lock_info("l").unwrap();
    assert_eq!(
        (info.owner, info.token, info.remaining),
        ("a", Token(t), ttl(60))
    );
    assert_eq!(info.held, ttl(0));
}

/// A snapshot of the version before sessions (5) is still read: it has
/// none, and everything else comes back.
fn version_5_snapshots_are_read<S: Storage>() {
    let mut h = H::<S>::new();
    let t = H::<S>::token_of(&h.lock(0, "l", "a", 100));
    let v8 = h.e.snapshot_to_vec();
    // Version 8 ends with three counts of sessions (none here), the watch
    // revision, three counts of multi-lock state (none), then the
    // checksum; version 7 has no multi-lock state, version 6 no revision.
    let mut v7 = v8[..v8.len() - 32].to_vec();
    v7[8..12].copy_from_slice(&7u32.to_le_bytes());
    let mut r = H::<S>::new();
    r.e.restore(at(0), &sealed(&v7)).unwrap();
    assert_eq!(r.e.lock_info("l").unwrap().token, Token(t));
    let v7 = [&v7[..], &[0; 8]].concat();
    let mut v6 = v7[..v7.len() - 16].to_vec();
    v6[8..12].copy_from_slice(&6u32.to_le_bytes());
    let mut r = H::<S>::new();
    r.e.restore(at(0), &sealed(&v6)).unwrap();
    assert_eq!(r.e.lock_info("l").unwrap().token, Token(t));
    let mut v5 = v7[..v7.len() - 40].to_vec();
    v5[8..12].copy_from_slice(&5u32.to_le_bytes());
    let mut r = H::<S>::new();
    r.e.restore(at(0), &sealed(&v5)).unwrap();
    assert_eq!(r.e.lock_info("l").unwrap().token, Token(t));
    // Sealed as version 6, the same bytes lack the session counts.
    let mut cut = v5.clone();
    cut[8..12].copy_from_slice(&6u32.to_le_bytes());
    assert_eq!(
        H::<S>::new().e.restore(at(0), &sealed(&cut)),
        Err(SnapshotError::Truncated)
    );
}

/// Regression: a snapshot that is well sealed but inconsistent is found
/// out only after the token and waiter counters were read; the failed
/// restore used to leave the engine with the snapshot's counters, so the
/// next grants could repeat tokens handed out before.
fn failed_restore_keeps_the_token_counter<S: Storage>() {
    let mut h = H::<S>::new();
    h.lock(0, "l", "a", 100);
    let bytes = h.e.snapshot_to_vec();
    // Counters 20..28 (next token) and 28..36 (next waiter): set the
    // token counter to 1, below the lock's own token: corrupt.
    let mut body = bytes[..bytes.len() - 8].to_vec();
    body[20..28].copy_from_slice(&1u64.to_le_bytes());
    let mut e = H::<S>::new();
    e.e.seed_tokens(1000);
    e.lock(0, "x", "a", 100);
    e.queue(0, "x", "b", 100, 100, 0);
    assert_eq!(
        e.e.restore(at(10), &sealed(&body)),
        Err(SnapshotError::Corrupt("lock"))
    );
    left_empty(&mut e, 10, 1001);
    // Waiter IDs are never reused either.
    e.lock(20, "x", "a", 100);
    let w = e.queue(20, "x", "b", 100, 100, 0);
    assert!(w.get() > 1);
}

/// A fixed engine too small for a snapshot says so and is left empty.
fn too_small_is_full() {
    let mut big = H::<Heap>::new();
    busy(&mut big);
    let bytes = big.e.snapshot_to_vec();
    // Too few slots.
    let mut h = H::<Fixed<2, 64, 64>>::new();
    assert_eq!(h.e.restore(at(1000), &bytes), Err(SnapshotError::Full));
    left_empty(&mut h, 1000, 0);
    // Names too long for the slots.
    let mut h = H::<Fixed<16, 4, 64>>::new();
    assert_eq!(h.e.restore(at(1000), &bytes), Err(SnapshotError::Full));
    left_empty(&mut h, 1000, 0);
    // Values too long.
    let mut h = H::<Fixed<16, 64, 7>>::new();
    assert_eq!(h.e.restore(at(1000), &bytes), Err(SnapshotError::Full));
    left_empty(&mut h, 1000, 0);
    // Just big enough.
    let mut h = H::<Fixed<4, 64, 16>>::new();
    h.e.restore(at(1000), &bytes).unwrap();
    assert_eq!(h.e.snapshot_to_vec(), bytes);
}

#[test]
fn too_small_is_full_fixed() {
    too_small_is_full();
}

/// Section 8, `NO` to a waiter: if the lock cannot be stored for the
/// waiter at hand-over, that waiter is answered `NO` and the next one is
/// tried. Queueing checks that it will fit, so only a snapshot restored
/// into smaller fixed storage gets there: the waiter's ID fits a slot on
/// its own, but not with the lock's name.
fn no_to_a_waiter_at_hand_over() {
    let mut big = H::<Heap>::new();
    big.lock(0, "eight-ch", "a", 100);
    let b = big.queue(0, "eight-ch", "ten-chars!", 50, 1000, 1);
    let c = big.queue(0, "eight-ch", "c", 50, 1000, 2);
    let bytes = big.e.snapshot_to_vec();
    let mut h = H::<Fixed<4, 12, 8>>::new();
    h.e.restore(at(0), &bytes).unwrap();
    h.seen = h.e.stats();
    h.advance(100);
    assert_eq!(
        h.take(),
        [
            granted(b, "eight-ch", 1, no()),
            granted(c, "eight-ch", 2, locked("c", 2, 50)),
        ]
    );
    h.moved(&[
        (Stat::ExpiredLock, 1),
        (Stat::NoMemory, 1),
        (Stat::Lock, 1),
        (Stat::WaitGranted, 1),
    ]);
    // With nobody left to try, the lock is simply gone.
    let mut h = H::<Fixed<4, 12, 8>>::new();
    h.e.restore(at(0), &bytes).unwrap();
    assert!(h.e.cancel(c));
    h.advance(100);
    assert_eq!(h.take(), [granted(b, "eight-ch", 1, no())]);
    assert_eq!(h.e.lock_count(), 0);
    assert_eq!(h.e.memory_used(), 0);
}

#[test]
fn no_to_a_waiter_at_hand_over_fixed() {
    no_to_a_waiter_at_hand_over();
}

/// Regression: locks that expire in the same millisecond with waiters
/// are handed over in the order of their grants. The order used to be
/// the timer wheel's internal one, which a restored snapshot does not
/// reproduce, so the original and the restored engine gave the waiters
/// different tokens.
fn same_instant_hand_overs_follow_grant_order<S: Storage>() {
    for (gx, gy, snap) in [(0, 9, 99), (0, 36, 68), (7, 0, 99), (0, 63, 81), (5, 5, 50)] {
        let end = 100;
        let run = |h: &mut H<S>| {
            h.advance(end);
            let mut evs: Vec<(String, u64)> = h
                .take()
                .iter()
                .map(|e| (e.name.clone(), e.reply.token.unwrap()))
                .collect();
            evs.sort();
            evs
        };
        let mut a = H::<S>::new();
        let (first, second) = if gx <= gy {
            (("x", gx), ("y", gy))
        } else {
            (("y", gy), ("x", gx))
        };
        a.lock(first.1, first.0, "a", end - first.1);
        a.lock(second.1, second.0, "a", end - second.1);
        a.queue(gx.max(gy), "x", "b", 10, 500, 1);
        a.queue(gx.max(gy), "y", "c", 10, 500, 2);
        a.advance(snap);
        let mut b = H::<S>::new();
        b.e.restore(at(snap), &a.e.snapshot_to_vec()).unwrap();
        let want = if first.0 == "x" {
            [("x".to_owned(), 3), ("y".to_owned(), 4)]
        } else {
            [("x".to_owned(), 4), ("y".to_owned(), 3)]
        };
        assert_eq!(run(&mut a), want, "original, x at {gx}, y at {gy}");
        assert_eq!(
            run(&mut b),
            want,
            "restored at {snap}, x at {gx}, y at {gy}"
        );
    }
    // Many at once, granted in one order, expiring together.
    let mut h = H::<S>::new();
    for i in 0..20u64 {
        let name = format!("m{}", (i * 7) % 20);
        h.lock(i, &name, "a", 1000 - i);
        h.queue(i, &name, "w", 10, 5000, (i * 7) % 20);
    }
    h.advance(1000);
    let tags: Vec<u64> = h.take().iter().map(|e| e.tag).collect();
    let want: Vec<u64> = (0..20).map(|i| (i * 7) % 20).collect();
    assert_eq!(tags, want);
}

on_both!(
    hold_and_queue_times_are_measured,
    revoke_hands_the_lock_on,
    version_3_snapshots_are_read,
    version_5_snapshots_are_read
);

on_both!(
    snapshot_round_trip_is_identical,
    restored_engine_carries_on,
    restore_at_a_later_instant_rebases,
    restore_errors_leave_an_empty_engine,
    failed_restore_keeps_the_token_counter,
    same_instant_hand_overs_follow_grant_order,
);

/// A restore never lowers the token counter below what the engine was
/// seeded with: a host that seeds tokens from the clock and then restores
/// an old snapshot must still never repeat a token.
#[test]
fn restore_never_lowers_the_token_counter() {
    let mut old = Engine::new(Config::default());
    let lock = dlm_core::protocol::Command::Lock {
        name: dlm_core::protocol::Resource("l"),
        owner: dlm_core::protocol::Owner("a"),
        ttl: dlm_core::time::Ttl::from_secs(10),
        wait: None,
        token: None,
    };
    let _ = old.handle(at(0), &lock, Principal::Anonymous, 0, &mut |_| {});
    let bytes = old.snapshot_to_vec();
    let mut seeded = Engine::new(Config::default());
    seeded.seed_tokens(5000);
    seeded.restore(at(0), &bytes).unwrap();
    assert_eq!(seeded.lock_count(), 1);
    assert!(seeded.next_token().0 > 5000);
}
