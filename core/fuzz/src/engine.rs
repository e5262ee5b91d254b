//! The engine driven by arbitrary bytes, read as a sequence of commands
//! (on a few names, owners and values) and clock advances, on heap and on
//! fixed storage. A shadow model follows every answer and event and checks
//! that the engine never panics, that no two owners ever hold one lock,
//! that tokens only grow, and that every answer and count is what the
//! rules of PROTOCOL.md section 5 say it must be. Beside the locks, a few
//! commands are semaphores and read/write locks (`Lock` with `Permits` or
//! `Mode`, section 8) on names of their own, with their model: never more
//! holds than permits, never a writer beside anyone, grants only to the
//! first in line and only when the hold fits, a size or kind fixed while
//! in use (`Conflict`), extensions and releases by token, and the kinds
//! kept apart (a lock's name refuses a semaphore, and the reverse).

use dlm_core::engine::{Config, Engine, Event, Fixed, Outcome, Principal, Storage, WaiterId};
use dlm_core::protocol::{Command, Owner, Resource, Response, Revision, Shape, Status, Token};
use dlm_core::time::{Instant, Ttl};

const NAMES: [&str; 4] = ["a", "b", "lock-c", "a-much-longer-lock-name-d"];
const OWNERS: [&str; 3] = ["w1", "w2", "owner-three"];
const VALUES: [&str; 4] = ["", "x", "a^a^", "a longer value than a small table holds"];
/// The semaphores' and read/write locks' names (none is a lock's).
const GROUPS: [&str; 2] = ["g", "group-h"];
/// Bit of a tag: the waiter queued for a semaphore or read/write lock.
const GROUP_TAG: u64 = 1 << 9;
/// Bit of a tag: it asked for a write hold.
const WRITE_TAG: u64 = 1 << 10;

/// Who asks: an owner ID, anonymous or as the one identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Who {
    owner: usize,
    ident: bool,
}

#[derive(Clone, Copy, Debug)]
struct Held {
    who: Who,
    token: u64,
    until: u64,
}

#[derive(Clone, Copy, Debug)]
struct Stored {
    who: Who,
    value: usize,
    revision: u64,
    until: u64,
}

/// A response, owned.
#[derive(Clone, Debug)]
struct Answer {
    status: Status,
    id: Option<String>,
    token: Option<u64>,
    expire: Option<u64>,
    revision: Option<u64>,
    data: Option<String>,
}

impl Answer {
    fn of(r: &Response<'_>) -> Self {
        Self {
            status: r.status,
            id: r.id.map(str::to_owned),
            token: r.token.map(|t| t.0),
            expire: r.expire.map(Ttl::as_millis),
            revision: r.revision.map(|r| r.0),
            data: r.data.map(str::to_owned),
        }
    }
}

/// A waiter's event, owned.
struct Ev {
    waiter: WaiterId,
    tag: u64,
    answer: Answer,
}

fn own(events: &mut Vec<Ev>) -> impl FnMut(Event<'_>) + '_ {
    |e| {
        events.push(Ev {
            waiter: e.waiter,
            tag: e.tag,
            answer: Answer::of(&e.response),
        });
    }
}

/// A queued lock request's name, owner and TTL, carried in its tag.
fn tag(name: usize, who: Who, ttl: u64) -> u64 {
    name as u64 | (who.owner as u64) << 4 | u64::from(who.ident) << 8 | ttl << 16
}

fn untag(tag: u64) -> (usize, Who, u64) {
    let who = Who {
        owner: (tag >> 4 & 0xF) as usize,
        ident: tag >> 8 & 1 == 1,
    };
    ((tag & 0xF) as usize, who, tag >> 16)
}

/// One hold of a semaphore or read/write lock.
#[derive(Clone, Copy, Debug)]
struct GHold {
    who: Who,
    token: u64,
    write: bool,
    until: u64,
}

/// A semaphore or read/write lock, as the rules say the engine has it.
#[derive(Clone, Debug, Default)]
struct Group {
    /// A semaphore's permits, `None` for a read/write lock (meaningful
    /// while it exists).
    permits: Option<u32>,
    holds: Vec<GHold>,
    /// Its waiters, first in line first, each with whether it writes.
    queue: Vec<(WaiterId, bool)>,
}

impl Group {
    /// Drops the holds expired by `now` (the engine did, advancing).
    fn prune(&mut self, now: u64) {
        self.holds.retain(|h| h.until > now);
    }

    fn exists(&self) -> bool {
        !self.holds.is_empty() || !self.queue.is_empty()
    }

    fn admits(&self, write: bool) -> bool {
        match self.permits {
            Some(n) => self.holds.len() < n as usize,
            None if write => self.holds.is_empty(),
            None => !self.holds.iter().any(|h| h.write),
        }
    }

    /// Whether `shape` is this group's kind (and size).
    fn same_kind(&self, shape: Shape) -> bool {
        match shape {
            Shape::Semaphore { permits } => self.permits == Some(permits),
            Shape::Read | Shape::Write => self.permits.is_none(),
        }
    }
}

fn permits_of(shape: Shape) -> Option<u32> {
    match shape {
        Shape::Semaphore { permits } => Some(permits),
        Shape::Read | Shape::Write => None,
    }
}

/// What the rules say the engine holds.
struct Model {
    now: u64,
    locks: [Option<Held>; 4],
    data: [Option<Stored>; 4],
    groups: [Group; 2],
    waiters: Vec<WaiterId>,
    resolved: Vec<WaiterId>,
    max_token: u64,
}

impl Model {
    fn lock(&self, n: usize) -> Option<Held> {
        self.locks[n].filter(|h| h.until > self.now)
    }

    fn entry(&self, n: usize) -> Option<Stored> {
        self.data[n].filter(|d| d.until > self.now)
    }

    /// A grant of lock `n` to `who` with `token` for `ttl` (a new grant, a
    /// re-lock, or a waiter's).
    fn granted(&mut self, n: usize, who: Who, token: u64, ttl: u64) {
        match self.lock(n) {
            Some(h) if h.who != who => {
                panic!(
                    "two owners of {}: {h:?} holds it, {who:?} granted",
                    NAMES[n]
                )
            }
            Some(h) => assert_eq!(token, h.token, "a re-lock keeps its token"),
            None => {
                assert!(
                    token > self.max_token,
                    "token {token} not above {}",
                    self.max_token
                );
                self.max_token = token;
            }
        }
        self.locks[n] = Some(Held {
            who,
            token,
            until: self.now + ttl,
        });
    }

    fn events(&mut self, events: &mut Vec<Ev>) {
        for ev in events.drain(..) {
            let at = self.waiters.iter().position(|&w| w == ev.waiter);
            let at = at.unwrap_or_else(|| panic!("event for unknown waiter {:?}", ev.waiter));
            self.resolved.push(self.waiters.remove(at));
            let (n, who, ttl) = untag(ev.tag);
            let a = ev.answer;
            if ev.tag & GROUP_TAG != 0 {
                self.group_event(n, who, ttl, ev.tag & WRITE_TAG != 0, ev.waiter, &a);
                continue;
            }
            match a.status {
                Status::Locked => {
                    assert_eq!(a.id.as_deref(), Some(OWNERS[who.owner]));
                    assert_eq!(a.expire, Some(ttl));
                    self.granted(n, who, a.token.expect("a grant has a token"), ttl);
                }
                Status::NotOwner | Status::No => {}
                s => panic!("waiter answered {s:?}"),
            }
        }
    }

    /// A group waiter's answer: a grant goes to the first in line, and
    /// only if its hold fits.
    fn group_event(&mut self, g: usize, who: Who, ttl: u64, write: bool, id: WaiterId, a: &Answer) {
        let now = self.now;
        let group = &mut self.groups[g];
        group.prune(now);
        let at = group.queue.iter().position(|&(w, _)| w == id);
        let at = at.unwrap_or_else(|| panic!("{id:?} not in {}'s queue", GROUPS[g]));
        match a.status {
            Status::Locked => {
                assert_eq!(at, 0, "{id:?} granted ahead of the first in line");
                assert_eq!(group.queue[0].1, write);
                assert!(group.admits(write), "a grant that does not fit: {group:?}");
                assert_eq!(a.id.as_deref(), Some(OWNERS[who.owner]));
                assert_eq!(a.expire, Some(ttl));
                let token = a.token.expect("a grant has a token");
                assert!(
                    token > self.max_token,
                    "token {token} not above {}",
                    self.max_token
                );
                self.max_token = token;
                group.holds.push(GHold {
                    who,
                    token,
                    write,
                    until: now + ttl,
                });
            }
            Status::NotOwner | Status::No => {}
            s => panic!("group waiter answered {s:?}"),
        }
        group.queue.remove(at);
    }

    /// The answer to a semaphore or read/write lock command on group `g`,
    /// against the model (which it updates).
    fn group_answer(
        &mut self,
        g: usize,
        who: Who,
        command: &Command<'_>,
        outcome: Result<Answer, WaiterId>,
    ) {
        let now = self.now;
        let group = &mut self.groups[g];
        group.prune(now);
        let exists = group.exists();
        match (*command, outcome) {
            (
                Command::Acquire {
                    shape,
                    ttl,
                    wait,
                    token,
                    ..
                },
                outcome,
            ) => {
                let write = shape == Shape::Write;
                if exists && !group.same_kind(shape) {
                    let a = outcome.expect("a kind conflict is answered at once");
                    assert_eq!(a.status, Status::Conflict, "{shape:?} on {group:?}");
                    return;
                }
                if let Some(Token(t)) = token {
                    let a = outcome.expect("an extension is answered at once");
                    let hold = group
                        .holds
                        .iter_mut()
                        .find(|h| h.token == t && h.write == write && h.who == who);
                    match (a.status, hold) {
                        (Status::Locked, Some(h)) => {
                            assert_eq!(a.token, Some(t), "an extension keeps its token");
                            h.until = now + ttl.as_millis();
                        }
                        (Status::NotOwner, None) => {}
                        (s, h) => panic!("extension answered {s:?} for {h:?}"),
                    }
                    return;
                }
                let grant_now = !exists || (group.queue.is_empty() && group.admits(write));
                match outcome {
                    Err(id) => {
                        assert!(wait.is_some_and(|w| !w.is_zero()), "queued without a wait");
                        assert!(!grant_now, "queued for a hold it could have");
                        if !exists {
                            group.permits = permits_of(shape);
                        }
                        group.queue.push((id, write));
                        self.waiters.push(id);
                    }
                    Ok(a) => match a.status {
                        Status::Locked => {
                            assert!(
                                grant_now,
                                "granted past the queue or the permits: {group:?}"
                            );
                            assert_eq!(a.id.as_deref(), Some(OWNERS[who.owner]));
                            assert_eq!(a.expire, Some(ttl.as_millis()));
                            let token = a.token.expect("a grant has a token");
                            assert!(
                                token > self.max_token,
                                "a hold's token {token} not above {}",
                                self.max_token
                            );
                            self.max_token = token;
                            if !exists {
                                group.permits = permits_of(shape);
                            }
                            group.holds.push(GHold {
                                who,
                                token,
                                write,
                                until: now + ttl.as_millis(),
                            });
                        }
                        Status::NotOwner => {
                            assert!(!grant_now, "NotOwner for a hold that fits");
                            assert!(
                                wait.is_none_or(Ttl::is_zero),
                                "NotOwner instead of queueing"
                            );
                        }
                        Status::No => {}
                        s => panic!("acquisition answered {s:?}"),
                    },
                }
            }
            (Command::Unlock { owner, token, .. }, Ok(a)) => {
                let mine = |h: &GHold| h.who == who && token.is_none_or(|t| t.0 == h.token);
                let any = group.holds.iter().any(mine);
                match a.status {
                    Status::Unlocked if a.id.is_some() => {
                        assert!(any, "released holds that are not the caller's");
                        assert_eq!(a.id, Some(owner.0.to_owned()));
                        group.holds.retain(|h| !mine(h));
                    }
                    Status::Unlocked => assert!(!exists, "Unlocked without ID for a live group"),
                    Status::NotOwner => assert!(exists && !any, "NotOwner to a holder"),
                    s => panic!("group Unlock answered {s:?}"),
                }
            }
            (Command::TestLock { .. }, Ok(a)) => {
                let first = group.holds.iter().find(|h| h.who == who);
                match (a.status, first) {
                    (Status::Unlocked, None) => assert!(!exists, "a live group tested free"),
                    (Status::Locked, Some(h)) => {
                        assert_eq!(a.token, Some(h.token), "not the earliest hold");
                        assert_eq!(a.expire, Some(h.until - now));
                    }
                    (Status::NotOwner, None) => assert!(exists),
                    (s, h) => panic!("group TestLock answered {s:?} for {h:?}"),
                }
            }
            // A plain lock of a live group: held by others, nothing taken.
            (Command::Lock { .. }, Ok(a)) => {
                assert!(exists);
                assert_eq!(a.status, Status::NotOwner, "a plain Lock of a group");
            }
            (c, o) => panic!("{c:?} on a group answered {o:?}"),
        }
    }

    fn check_counts<S: Storage>(&self, e: &Engine<S>) {
        for (g, group) in self.groups.iter().enumerate() {
            let live: Vec<&GHold> = group.holds.iter().filter(|h| h.until > self.now).collect();
            let mut model: Vec<u64> = live.iter().map(|h| h.token).collect();
            let mut engine: Vec<u64> = e.holds(GROUPS[g]).map(|h| h.token.0).collect();
            model.sort_unstable();
            engine.sort_unstable();
            assert_eq!(engine, model, "{}'s holds", GROUPS[g]);
            let exists = !live.is_empty() || !group.queue.is_empty();
            let info = e.group(GROUPS[g]);
            assert_eq!(info.is_some(), exists, "{} exists", GROUPS[g]);
            if let Some(info) = info {
                assert_eq!(info.permits, group.permits, "{}'s kind", GROUPS[g]);
                assert_eq!(info.waiters, group.queue.len(), "{}'s waiters", GROUPS[g]);
                if let Some(n) = info.permits {
                    assert!(info.holds <= n as usize, "more holds than permits");
                }
                let writes = e.holds(GROUPS[g]).filter(|h| h.write).count();
                assert!(writes == 0 || info.holds == 1, "a writer beside others");
            }
        }
        let locks = (0..NAMES.len()).filter(|&n| self.lock(n).is_some()).count();
        let data = (0..NAMES.len())
            .filter(|&n| self.entry(n).is_some())
            .count();
        assert_eq!(e.lock_count(), locks, "live locks");
        assert_eq!(e.data_count(), data, "live data entries");
        assert_eq!(e.waiter_count(), self.waiters.len(), "waiters");
    }
}

/// The fuzz input, read a byte at a time (zeros once it runs out).
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
}

fn run<S: Storage>(mut e: Engine<S>, input: &[u8]) {
    let identity = e.register_identity("svc", 1 << 20).ok();
    let mut m = Model {
        now: 0,
        locks: [None; 4],
        data: [None; 4],
        groups: [Group::default(), Group::default()],
        waiters: Vec::new(),
        resolved: Vec::new(),
        max_token: 0,
    };
    let mut input = Input(input);
    let mut events = Vec::new();
    for _ in 0..4096 {
        if input.0.is_empty() {
            break;
        }
        let op = input.byte();
        let n = usize::from(input.byte() % 4);
        let w = input.byte();
        let who = Who {
            owner: usize::from(w % 3),
            ident: identity.is_some() && w & 0x80 != 0,
        };
        let principal = match identity {
            Some(id) if who.ident => Principal::Identity(id),
            _ => Principal::Anonymous,
        };
        let name = Resource(NAMES[n]);
        let owner = Owner(OWNERS[who.owner]);
        // Short TTLs mostly, so things expire; long ones sometimes.
        let t = input.u16();
        let ttl = if t & 0x8000 == 0 {
            1 + u64::from(t % 2000)
        } else {
            1 + u64::from(t & 0x7FFF) * 100
        };
        let choice = input.byte();

        if op >= 0xE0 {
            // A semaphore or read/write lock. Time first, so that the
            // command is chosen from what is live now.
            let now = Instant::from_millis(m.now);
            e.advance(now, &mut own(&mut events));
            m.events(&mut events);
            m.check_counts(&e);
            let g = n % 2;
            m.groups[g].prune(m.now);
            let gname = Resource(GROUPS[g]);
            let shape = match choice % 4 {
                0 => Shape::Read,
                1 => Shape::Write,
                2 => Shape::Semaphore { permits: 2 },
                _ => Shape::Semaphore {
                    permits: 1 + u32::from(choice >> 2) % 3,
                },
            };
            let wait = (choice & 0x40 != 0)
                .then(|| Ttl::from_millis(20 * (1 + u64::from(choice >> 4 & 3))));
            let mut group_tag = tag(g, who, ttl) | GROUP_TAG;
            if shape == Shape::Write {
                group_tag |= WRITE_TAG;
            }
            let (command, on) = match op & 7 {
                0..=2 => (
                    Command::Acquire {
                        name: gname,
                        owner,
                        shape,
                        ttl: Ttl::from_millis(ttl),
                        wait,
                        token: None,
                    },
                    Some(g),
                ),
                3 => {
                    // An extension: of a live hold (in its own shape, or
                    // not), or of a token nobody holds.
                    let hold = m.groups[g].holds.get(usize::from(choice >> 6)).copied();
                    let (shape, token) = match hold {
                        Some(h) if choice & 0x20 == 0 => {
                            let shape = match m.groups[g].permits {
                                Some(permits) => Shape::Semaphore { permits },
                                None if h.write => Shape::Write,
                                None => Shape::Read,
                            };
                            (shape, h.token)
                        }
                        Some(h) => (shape, h.token),
                        None => (shape, m.max_token + 1),
                    };
                    (
                        Command::Acquire {
                            name: gname,
                            owner,
                            shape,
                            ttl: Ttl::from_millis(ttl),
                            wait: None,
                            token: Some(Token(token)),
                        },
                        Some(g),
                    )
                }
                4 | 5 => {
                    let token = match choice & 3 {
                        0 => m.groups[g].holds.first().map(|h| Token(h.token)),
                        1 => m.groups[g].holds.last().map(|h| Token(h.token)),
                        _ => None,
                    };
                    (
                        Command::Unlock {
                            name: gname,
                            owner,
                            token,
                        },
                        Some(g),
                    )
                }
                6 => (Command::TestLock { name: gname, owner }, Some(g)),
                _ => {
                    // The kinds kept apart: a semaphore or read/write lock
                    // of a live lock's name is a conflict; a plain lock of
                    // a live group is refused. Neither takes anything.
                    if m.lock(n).is_some() {
                        (
                            Command::Acquire {
                                name,
                                owner,
                                shape,
                                ttl: Ttl::from_millis(ttl),
                                wait,
                                token: None,
                            },
                            None,
                        )
                    } else if m.groups[g].exists() {
                        (
                            Command::Lock {
                                name: gname,
                                owner,
                                ttl: Ttl::from_millis(ttl),
                                wait: None,
                                token: None,
                            },
                            Some(g),
                        )
                    } else {
                        continue;
                    }
                }
            };
            let outcome = match e.handle(now, &command, principal, group_tag, &mut own(&mut events))
            {
                Outcome::Reply(r) => Ok(Answer::of(&r)),
                Outcome::Queued(id) => Err(id),
            };
            match on {
                Some(g) => m.group_answer(g, who, &command, outcome),
                None => {
                    let a = outcome.expect("a kind conflict is answered at once");
                    assert_eq!(a.status, Status::Conflict, "a group on a lock's name");
                }
            }
            m.events(&mut events);
            m.check_counts(&e);
            continue;
        }

        let command = match op % 16 {
            0..=3 => {
                let wait = (choice % 4 == 0).then(|| Ttl::from_millis(u64::from(choice >> 2) * 20));
                let wait = wait.filter(|w| !w.is_zero());
                let token = match choice >> 4 & 3 {
                    0 | 1 => None,
                    2 => Some(m.lock(n).map_or(1, |h| h.token)),
                    _ => Some(m.max_token + u64::from(choice & 1)),
                };
                Command::Lock {
                    name,
                    owner,
                    ttl: Ttl::from_millis(ttl),
                    wait,
                    token: token.map(Token),
                }
            }
            4 | 5 => Command::Unlock {
                name,
                owner,
                token: match choice & 3 {
                    0 => Some(Token(m.lock(n).map_or(1, |h| h.token))),
                    1 => Some(Token(m.max_token.saturating_sub(1))),
                    _ => None,
                },
            },
            6 => Command::TestLock { name, owner },
            7 | 8 => Command::Put {
                name,
                owner,
                ttl: Ttl::from_millis(ttl),
                data: VALUES[usize::from(choice % 4)],
                revision: match choice >> 2 & 3 {
                    0 => Some(Revision(m.entry(n).map_or(0, |d| d.revision))),
                    1 => Some(Revision(u64::from(choice >> 4))),
                    _ => None,
                },
                readers: dlm_core::protocol::Readers::Owner,
            },
            9 => Command::Get { name, owner },
            10 => Command::Erase { name, owner },
            11 | 12 => {
                m.now += u64::from(choice) * 7;
                continue;
            }
            13 => {
                m.now += u64::from(t) * 50;
                continue;
            }
            14 => {
                if m.waiters.is_empty() && m.resolved.is_empty() {
                    continue;
                }
                let all: Vec<_> = m.waiters.iter().chain(&m.resolved).copied().collect();
                let id = all[usize::from(choice) % all.len()];
                e.advance(Instant::from_millis(m.now), &mut own(&mut events));
                m.events(&mut events);
                let queued = m.waiters.contains(&id);
                assert_eq!(e.cancel(id), queued, "cancel of {id:?}");
                if queued {
                    m.waiters.retain(|&w| w != id);
                    m.resolved.push(id);
                    for g in &mut m.groups {
                        g.queue.retain(|&(w, _)| w != id);
                    }
                }
                m.check_counts(&e);
                continue;
            }
            _ => match choice % 4 {
                0 => Command::Version,
                1 => Command::Stats,
                // Invalid: refused, and nothing changes.
                2 => Command::Lock {
                    name,
                    owner,
                    ttl: Ttl::ZERO,
                    wait: None,
                    token: None,
                },
                _ => Command::Put {
                    name: Resource(""),
                    owner,
                    ttl: Ttl::from_millis(ttl),
                    data: "",
                    revision: None,
                    readers: dlm_core::protocol::Readers::Owner,
                },
            },
        };

        // Time first, so events of expiry come before the command's own.
        let now = Instant::from_millis(m.now);
        e.advance(now, &mut own(&mut events));
        m.events(&mut events);
        m.check_counts(&e);

        let outcome = match e.handle(
            now,
            &command,
            principal,
            tag(n, who, ttl),
            &mut own(&mut events),
        ) {
            Outcome::Reply(r) => Ok(Answer::of(&r)),
            Outcome::Queued(id) => Err(id),
        };
        let cur = m.lock(n);
        let mine = |token: Option<Token>| {
            cur.is_some_and(|h| h.who == who && token.is_none_or(|t| t.0 == h.token))
        };
        match (command, outcome) {
            (Command::Lock { wait, token, .. }, Err(id)) => {
                assert!(wait.is_some() && token.is_none(), "queued without a wait");
                assert!(
                    cur.is_some_and(|h| h.who != who),
                    "queued for a lock it could have"
                );
                m.waiters.push(id);
            }
            (_, Err(id)) => panic!("{command:?} queued as {id:?}"),
            (
                Command::Lock {
                    ttl: t,
                    token,
                    wait,
                    ..
                },
                Ok(a),
            ) => match a.status {
                _ if t.is_zero() => assert_eq!(a.status, Status::BadPayload),
                Status::Locked => {
                    assert_eq!(a.id.as_deref(), Some(OWNERS[who.owner]));
                    assert_eq!(a.expire, Some(ttl));
                    if token.is_some() {
                        assert!(mine(token), "an extension acquired a lock");
                    }
                    m.granted(n, who, a.token.expect("a grant has a token"), ttl);
                }
                Status::NotOwner => {
                    assert!(!mine(token), "NotOwner to the holder");
                    if token.is_none() {
                        assert!(cur.is_some(), "NotOwner for a free lock");
                        assert!(wait.is_none(), "NotOwner instead of queueing");
                    }
                }
                Status::No => {}
                s => panic!("Lock answered {s:?}"),
            },
            (Command::Unlock { token, .. }, Ok(a)) => match a.status {
                Status::Unlocked if a.id.is_some() => {
                    assert!(mine(token), "released someone else's lock");
                    m.locks[n] = None;
                }
                Status::Unlocked => assert!(cur.is_none(), "Unlocked without ID for a live lock"),
                Status::NotOwner => {
                    assert!(cur.is_some() && !mine(token), "NotOwner to the holder");
                }
                s => panic!("Unlock answered {s:?}"),
            },
            (Command::TestLock { .. }, Ok(a)) => match (a.status, cur) {
                (Status::Unlocked, None) => {}
                (Status::Locked, Some(h)) if h.who == who => {
                    assert_eq!(a.token, Some(h.token));
                    assert_eq!(a.expire, Some(h.until - m.now));
                }
                (Status::NotOwner, Some(h)) if h.who != who => {
                    assert_eq!(a.expire, Some(h.until - m.now));
                    assert_eq!(a.id, None, "TestLock revealed the owner");
                }
                (s, h) => panic!("TestLock answered {s:?} for {h:?}"),
            },
            (
                Command::Put {
                    name: r,
                    data,
                    revision,
                    ..
                },
                Ok(a),
            ) => {
                let cur = m.entry(n);
                match a.status {
                    _ if r.is_empty() => assert_eq!(a.status, Status::BadPayload),
                    Status::Done => {
                        let next = match cur {
                            Some(d) if d.who != who => panic!("Put over another's entry"),
                            Some(d) => d.revision + 1,
                            None => 1,
                        };
                        assert!(revision.is_none_or(|r| r.0 == next - 1), "CAS ignored");
                        assert_eq!(a.revision, Some(next));
                        assert_eq!(a.expire, Some(ttl));
                        let value = VALUES.iter().position(|v| *v == data).unwrap_or(0);
                        m.data[n] = Some(Stored {
                            who,
                            value,
                            revision: next,
                            until: m.now + ttl,
                        });
                    }
                    Status::NotOwner => assert!(cur.is_some_and(|d| d.who != who)),
                    Status::Conflict => {
                        assert!(cur.is_none_or(|d| d.who == who));
                        let current = cur.map_or(0, |d| d.revision);
                        assert!(
                            revision.is_some_and(|r| r.0 != current),
                            "Conflict without CAS"
                        );
                        assert_eq!(a.revision, Some(current));
                    }
                    Status::No => {}
                    s => panic!("Put answered {s:?}"),
                }
            }
            (Command::Get { .. }, Ok(a)) => match (a.status, m.entry(n)) {
                (Status::NotFound, None) => {}
                (Status::Done, Some(d)) if d.who == who => {
                    assert_eq!(a.data.as_deref(), Some(VALUES[d.value]));
                    assert_eq!(a.revision, Some(d.revision));
                    assert_eq!(a.expire, Some(d.until - m.now));
                }
                (Status::NotOwner, Some(d)) if d.who != who => {}
                (s, d) => panic!("Get answered {s:?} for {d:?}"),
            },
            (Command::Erase { .. }, Ok(a)) => match (a.status, m.entry(n)) {
                (Status::NotFound, None) => {}
                (Status::Done, Some(d)) if d.who == who => m.data[n] = None,
                (Status::NotOwner, Some(d)) if d.who != who => {}
                (s, d) => panic!("Erase answered {s:?} for {d:?}"),
            },
            (Command::Version, Ok(a)) => {
                assert_eq!(a.status, Status::Version);
                assert!(a.id.is_some_and(|v| v.contains("JackrabbitDLM")));
            }
            (Command::Stats, Ok(a)) => assert_eq!(a.status, Status::Done),
            (Command::Cluster(_) | Command::Watch { .. }, Ok(a)) => {
                assert_eq!(a.status, Status::BadAction);
            }
            (Command::Admin(_), Ok(_)) => unreachable!("the fuzzer makes no Admin requests"),
            (Command::Acquire { .. }, Ok(_)) => {
                unreachable!("the fuzzer makes no semaphore or read/write lock requests")
            }
            (Command::Session { .. }, Ok(_)) => {
                unreachable!("the fuzzer makes no Session requests")
            }
            (Command::LockAll { .. }, Ok(_)) => {
                // Multi-locks have their own model: core/tests/engine_multi.rs.
                unreachable!("the fuzzer makes no LockAll requests")
            }
        }
        m.events(&mut events);
        m.check_counts(&e);
    }
}

/// Checks one input.
///
/// # Panics
///
/// On any violation of the properties above.
pub fn check(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    // A small memory budget sometimes, so new entries meet `NO`.
    let config = Config {
        memory_budget: if first & 1 == 1 {
            256 + usize::from(first) * 4
        } else {
            Config::DEFAULT.memory_budget
        },
        ..Config::DEFAULT
    };
    if first & 2 == 0 {
        run(Engine::new(config), rest);
    } else {
        // Tiny tables: full tables, long names and large values meet `NO`.
        run(Engine::<Fixed<4, 24, 16>>::with_storage(config), rest);
    }
}
