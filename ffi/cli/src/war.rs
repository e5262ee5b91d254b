//! `dlm war`: fighters fight for one lock and prove that it held.
//!
//! Each fighter is a thread with its own client (its own connections, its
//! own owner ID). A round: wait for the lock, read a shared counter kept
//! by a *fenced resource*, pause a little, write the counter plus one
//! with the grant's fencing token, unlock. The resource (in this process,
//! standing for a database or a storage service) refuses a write whose
//! token is below the highest it has accepted, and notices two holders
//! inside at once.
//!
//! With `--crash-rate P`, a fighter "crashes" in a round with probability
//! P after reading: it drops its connection without unlocking and stalls
//! past the lock's TTL, like a process paused by the OS or a long garbage
//! collection; the server must let the lock expire so the others go on
//! (TTLs recover), and when the stalled fighter wakes and writes with its
//! old token, the resource must refuse it if a newer holder has written.
//!
//! The verdict: the counter equals the writes accepted (no update lost),
//! no two holders at once, no grant with a token not above the last one,
//! and grants per fighter (min/max) and throughput.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::Args;
use dlm::{Client, Error, Options};

#[derive(Args)]
pub(crate) struct WarArgs {
    /// Fighters (threads, each with its own client).
    #[arg(long, short = 'f', default_value = "8")]
    fighters: u32,
    /// Rounds in all (grants to fight for).
    #[arg(long, short = 'r', default_value = "500")]
    rounds: u64,
    /// Stop after this many seconds even if rounds are left.
    #[arg(long, default_value = "120", value_parser = crate::seconds)]
    duration: Duration,
    /// The lock fought for.
    #[arg(long, default_value = "dlm-war")]
    lock: String,
    /// The lock's TTL in seconds (how soon a crashed fighter's lock frees).
    #[arg(long, default_value = "2", value_parser = crate::seconds)]
    ttl: Duration,
    /// Probability that a fighter crashes in a round, holding the lock.
    #[arg(long, default_value = "0")]
    crash_rate: f64,
    /// Longest pause inside the lock, in milliseconds (random up to it).
    #[arg(long, default_value = "2")]
    hold_ms: u64,
    /// Seed of the fighters' random choices (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
}

/// The fenced resource: a counter that accepts a write only with a token
/// at least as high as any it accepted, and that sees overlapping holders.
#[derive(Default)]
struct Fenced {
    state: Mutex<FencedState>,
    inside: AtomicU64,
    overlaps: AtomicU64,
}

#[derive(Default)]
struct FencedState {
    value: u64,
    highest: u64,
    accepted: u64,
    /// Writes refused for a stale token.
    refused: u64,
    /// Grants whose token was not above the previous grant's.
    token_regressions: u64,
    last_grant: u64,
}

impl Fenced {
    fn state(&self) -> std::sync::MutexGuard<'_, FencedState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A holder with `token` comes in: returns the counter.
    fn enter(&self, token: u64) -> u64 {
        if self.inside.fetch_add(1, Ordering::SeqCst) != 0 {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        let mut s = self.state();
        if token <= s.last_grant {
            s.token_regressions += 1;
        }
        s.last_grant = s.last_grant.max(token);
        // The resource learns the token at the first access, so a stalled
        // former holder's later write is refused.
        s.highest = s.highest.max(token);
        s.value
    }

    /// Writes `value` with `token`; false if refused as stale.
    fn write(&self, token: u64, value: u64) -> bool {
        let mut s = self.state();
        if token < s.highest {
            s.refused += 1;
            return false;
        }
        s.highest = token;
        s.value = value;
        s.accepted += 1;
        true
    }

    fn leave(&self) {
        self.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A small PRNG for the fighters' choices (splitmix64; not for secrets).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        #[allow(clippy::cast_precision_loss)]
        let x = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }
}

struct War {
    args: WarArgs,
    server: String,
    timeout: Duration,
    fenced: Fenced,
    started: AtomicU64,
    done: AtomicU64,
    crashes: AtomicU64,
    stop: AtomicBool,
    deadline: Instant,
    errors: Mutex<Vec<String>>,
}

fn connect(war: &War, fighter: u32, life: u32) -> Result<Client, Error> {
    Client::connect_with(
        war.server.as_str(),
        Options {
            client_id: Some(format!("war-fighter-{fighter}.{life}")),
            io_timeout: war.timeout,
            ..Options::default()
        },
    )
}

/// One fighter's rounds; returns its grants.
fn fight(war: &War, fighter: u32, seed: u64) -> u64 {
    let mut rng = Rng(seed ^ (u64::from(fighter) << 32));
    let mut life = 0;
    let mut grants = 0;
    let mut client = match connect(war, fighter, life) {
        Ok(c) => c,
        Err(e) => {
            war.fail(format!("fighter {fighter}: {e}"));
            return 0;
        }
    };
    // Waiting a little longer than a TTL: a crashed holder's lock frees.
    let wait = war.args.ttl * 4 + Duration::from_secs(5);
    while !war.stop.load(Ordering::SeqCst) && Instant::now() < war.deadline {
        if war.started.fetch_add(1, Ordering::SeqCst) >= war.args.rounds {
            break;
        }
        let lock = match client
            .lock(&war.args.lock)
            .ttl(war.args.ttl)
            .wait(wait)
            .acquire()
        {
            Ok(l) => l,
            Err(e) => {
                war.fail(format!("fighter {fighter}: lock: {e}"));
                return grants;
            }
        };
        let Some(token) = lock.token() else {
            war.fail("the server gives no fencing tokens (JackrabbitDLM?)".into());
            return grants;
        };
        grants += 1;
        let value = war.fenced.enter(token.0);
        if war.args.hold_ms > 0 {
            std::thread::sleep(Duration::from_micros(
                rng.next() % (war.args.hold_ms * 1000 + 1),
            ));
        }
        if rng.chance(war.args.crash_rate) {
            // Crash: never unlock, drop the connections, stall past the
            // TTL, then wake up and write with the old token.
            war.fenced.leave();
            war.crashes.fetch_add(1, Ordering::SeqCst);
            std::mem::forget(lock);
            drop(client);
            std::thread::sleep(war.args.ttl + Duration::from_millis(500));
            war.fenced.write(token.0, value + 1);
            life += 1;
            client = match connect(war, fighter, life) {
                Ok(c) => c,
                Err(e) => {
                    war.fail(format!("fighter {fighter}: reconnect: {e}"));
                    return grants;
                }
            };
        } else {
            war.fenced.write(token.0, value + 1);
            war.fenced.leave();
            if let Err(e) = lock.unlock() {
                war.fail(format!("fighter {fighter}: unlock: {e}"));
                return grants;
            }
        }
        war.done.fetch_add(1, Ordering::SeqCst);
    }
    grants
}

impl War {
    fn fail(&self, why: String) {
        self.stop.store(true, Ordering::SeqCst);
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(why);
    }
}

fn progress(war: &War, start: Instant) {
    let done = war.done.load(Ordering::SeqCst).min(war.args.rounds);
    let total = war.args.rounds.max(1);
    let width = 30;
    let filled = usize::try_from(done * width / total).unwrap_or(0);
    #[allow(clippy::cast_precision_loss)]
    let rate = done as f64 / start.elapsed().as_secs_f64().max(1e-3);
    eprint!(
        "\r[{}{}] {done}/{total} rounds, {rate:.0}/s, {} crashes ",
        "#".repeat(filled),
        "-".repeat(usize::try_from(width).unwrap_or(30) - filled),
        war.crashes.load(Ordering::SeqCst)
    );
    let _ = std::io::stderr().flush();
}

/// Runs the war and prints its verdict: exit 0 if the lock held, 1 if
/// not, 70 if the war could not be fought to its end (and nothing was
/// seen to break).
pub(crate) fn run(server: &str, timeout: Duration, args: WarArgs) -> ExitCode {
    if args.fighters == 0 || args.rounds == 0 || !(0.0..=1.0).contains(&args.crash_rate) {
        eprintln!("dlm: war: at least one fighter and one round; a crash rate in 0..1");
        return ExitCode::from(2);
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(1))
    });
    let fighters = args.fighters;
    let war = Arc::new(War {
        deadline: Instant::now() + args.duration,
        args,
        server: server.to_owned(),
        timeout,
        fenced: Fenced::default(),
        started: AtomicU64::new(0),
        done: AtomicU64::new(0),
        crashes: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        errors: Mutex::new(Vec::new()),
    });
    let start = Instant::now();
    let handles: Vec<_> = (0..fighters)
        .map(|i| {
            let war = war.clone();
            std::thread::Builder::new()
                .name(format!("war-{i}"))
                .spawn(move || fight(&war, i, seed))
        })
        .collect();
    let tty = std::io::stderr().is_terminal();
    let mut grants = Vec::new();
    let mut spawn_failed = false;
    for h in handles {
        match h {
            Ok(h) => {
                while !h.is_finished() {
                    if tty {
                        progress(&war, start);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                grants.push(h.join().unwrap_or(0));
            }
            Err(_) => spawn_failed = true,
        }
    }
    if tty {
        progress(&war, start);
        eprintln!();
    }
    let elapsed = start.elapsed();
    let errors = war
        .errors
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let s = war.fenced.state();
    let overlaps = war.fenced.overlaps.load(Ordering::SeqCst);
    let crashes = war.crashes.load(Ordering::SeqCst);
    let total: u64 = grants.iter().sum();
    let exact = s.value == s.accepted;
    #[allow(clippy::cast_precision_loss)]
    let rate = total as f64 / elapsed.as_secs_f64().max(1e-3);
    println!(
        "war: {fighters} fighters, {total} grants of {:?} in {:.2} s ({rate:.0} grants/s), seed {seed}",
        war.args.lock,
        elapsed.as_secs_f64()
    );
    println!(
        "counter: {} (writes accepted {}): {}",
        s.value,
        s.accepted,
        if exact { "exact" } else { "UPDATES LOST" }
    );
    println!(
        "exclusion: {}",
        if overlaps == 0 {
            "never two holders at once".to_owned()
        } else {
            format!("VIOLATED {overlaps} times")
        }
    );
    println!(
        "fencing: {}; {} stale writes refused",
        if s.token_regressions == 0 {
            "every grant's token above the last".to_owned()
        } else {
            format!("{} GRANTS WITH A STALE TOKEN", s.token_regressions)
        },
        s.refused
    );
    println!(
        "grants per fighter: min {}, max {}",
        grants.iter().min().unwrap_or(&0),
        grants.iter().max().unwrap_or(&0)
    );
    println!("crashes: {crashes} (each lock freed by its TTL)");
    for e in &errors {
        println!("error: {e}");
    }
    let held = exact && overlaps == 0 && s.token_regressions == 0;
    if !held {
        // Whatever else went wrong, the lock did not hold.
        println!("VERDICT: FAIL");
        ExitCode::from(1)
    } else if !errors.is_empty() || spawn_failed {
        println!("VERDICT: INCOMPLETE");
        ExitCode::from(70)
    } else {
        println!("VERDICT: PASS");
        ExitCode::SUCCESS
    }
}
