//! The engine driven by arbitrary bytes, read as a sequence of commands
//! (on a few names, owners and values) and clock advances, on heap and on
//! fixed storage. A shadow model follows every answer and event and checks
//! that the engine never panics, that no two owners ever hold one lock,
//! that tokens only grow, and that every answer and count is what the
//! rules of PROTOCOL.md section 5 say it must be.

use dlm_core::engine::{Config, Engine, Event, Fixed, Outcome, Principal, Storage, WaiterId};
use dlm_core::protocol::{Command, Owner, Resource, Response, Revision, Status, Token};
use dlm_core::time::{Instant, Ttl};

const NAMES: [&str; 4] = ["a", "b", "lock-c", "a-much-longer-lock-name-d"];
const OWNERS: [&str; 3] = ["w1", "w2", "owner-three"];
const VALUES: [&str; 4] = ["", "x", "a^a^", "a longer value than a small table holds"];

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

/// What the rules say the engine holds.
struct Model {
    now: u64,
    locks: [Option<Held>; 4],
    data: [Option<Stored>; 4],
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

    fn check_counts<S: Storage>(&self, e: &Engine<S>) {
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
            (Command::Cluster(_), Ok(a)) => assert_eq!(a.status, Status::BadAction),
            (Command::Admin(_), Ok(_)) => unreachable!("the fuzzer makes no Admin requests"),
            (Command::Acquire { .. }, Ok(_)) => {
                unreachable!("the fuzzer makes no semaphore or read/write lock requests")
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
