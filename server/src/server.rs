//! The listener, the shared engine, and the tasks that drive it: one per
//! connection (see [`conn`](crate::conn)), one timer that sleeps until the
//! engine's next deadline, and one that writes the statistics line.
//!
//! ```text
//!  accept ──▶ Handler task per connection ──┐
//!                                           ├─▶ Mutex<State { engine, conns }> ◀── timer task
//!  waiter answers ◀── mpsc per connection ◀─┘        (sleeps until next_deadline)
//! ```
//!
//! The engine sits behind a `std::sync::Mutex`, held only while lines are
//! turned into answers, never across an `.await`. A connection handles
//! every complete line of one read under one lock, so pipelined requests
//! cost one lock and one write for the batch.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use dlm_core::engine::{Config, Engine, Event, WaiterId};
use dlm_core::limits::Limits;
use dlm_core::protocol::{Framing, Status, Token};
use dlm_core::stats::Stat;
use dlm_core::time::{Instant, MonotonicClock};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::Settings;
use crate::conn;
use crate::identity::Identities;
use crate::statslog;

/// A waiter's answer on its way to its connection.
pub(crate) struct Delivery {
    pub(crate) waiter: WaiterId,
    /// The response line, in the waiter's framing.
    pub(crate) line: Vec<u8>,
    /// The lock and token, if this is a grant (to release it if the
    /// connection is gone before it is written).
    pub(crate) grant: Option<(String, Token)>,
}

/// Everything behind the engine lock.
pub(crate) struct State {
    pub(crate) engine: Engine,
    /// Connections with queued waiters, by connection ID.
    pub(crate) conns: HashMap<u64, mpsc::UnboundedSender<Delivery>>,
    /// Grants whose connection disappeared; released after each call.
    orphans: Vec<(String, Token)>,
}

/// Encodes a connection and its framing into the engine's waiter tag.
pub(crate) fn tag(conn: u64, framing: Framing) -> u64 {
    conn << 1 | u64::from(framing == Framing::Legacy)
}

fn untag(tag: u64) -> (u64, Framing) {
    let framing = if tag & 1 == 1 {
        Framing::Legacy
    } else {
        Framing::Plain
    };
    (tag >> 1, framing)
}

/// Sends a waiter's answer to its connection, or remembers an orphaned grant.
fn route(
    conns: &HashMap<u64, mpsc::UnboundedSender<Delivery>>,
    orphans: &mut Vec<(String, Token)>,
    engine_stats_out: &mut u64,
    ev: &Event<'_>,
) {
    let (conn, framing) = untag(ev.tag);
    let mut line = Vec::with_capacity(96);
    // Writing to a Vec cannot fail.
    let _ = ev.response.write(framing, &mut line);
    let grant = match (ev.response.status, ev.response.token) {
        (Status::Locked, Some(t)) => Some((ev.name.to_owned(), t)),
        _ => None,
    };
    let delivered = conns.get(&conn).is_some_and(|tx| {
        tx.send(Delivery {
            waiter: ev.waiter,
            line,
            grant: grant.clone(),
        })
        .is_ok()
    });
    if delivered {
        *engine_stats_out += 1;
    } else if let Some(g) = grant {
        orphans.push(g);
    }
}

impl State {
    /// Calls `f` with the engine and an event sink that routes waiters'
    /// answers, then releases any grant that could not be delivered.
    pub(crate) fn with_engine<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Engine, &mut dyn FnMut(Event<'_>)) -> R,
    ) -> R {
        let mut out = 0;
        let r = {
            let Self {
                engine,
                conns,
                orphans,
            } = self;
            let mut sink = |ev: Event<'_>| route(conns, orphans, &mut out, &ev);
            f(engine, &mut sink)
        };
        self.engine.stats_mut().add(Stat::Out, out);
        self.release_orphans(now);
        r
    }

    /// Remembers a grant whose connection is gone, to release it.
    pub(crate) fn orphan(&mut self, grant: (String, Token)) {
        self.orphans.push(grant);
    }

    /// Releases grants made to waiters whose connection had closed.
    pub(crate) fn release_orphans(&mut self, now: Instant) {
        while !self.orphans.is_empty() {
            let batch = std::mem::take(&mut self.orphans);
            let mut out = 0;
            for (name, token) in batch {
                let Self {
                    engine,
                    conns,
                    orphans,
                } = self;
                engine.revoke(now, &name, token, &mut |ev| {
                    route(conns, orphans, &mut out, &ev);
                });
            }
            self.engine.stats_mut().add(Stat::Out, out);
        }
    }
}

/// State shared by every task.
pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) clock: MonotonicClock,
    pub(crate) limits: Limits,
    pub(crate) idle_timeout: Duration,
    pub(crate) identities: RwLock<Identities>,
    identity_dir: Option<PathBuf>,
    /// Wakes the timer task when an earlier deadline appears.
    timer: Notify,
    /// The instant (ms) the timer task sleeps until; `u64::MAX` for none.
    wake_at: AtomicU64,
    next_conn: AtomicU64,
    active: AtomicUsize,
}

impl Shared {
    /// Locks the engine. A panic elsewhere never takes every client down:
    /// the engine's own operations leave it consistent, so a poisoned lock
    /// is recovered.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the timer task if the engine's next deadline moved earlier.
    pub(crate) fn poke_timer(&self, state: &State) {
        if let Some(next) = state.engine.next_deadline()
            && next.as_millis() < self.wake_at.load(Ordering::Relaxed)
        {
            self.wake_at.store(next.as_millis(), Ordering::Relaxed);
            self.timer.notify_one();
        }
    }

    fn reload_identities(&self) {
        let Some(dir) = &self.identity_dir else {
            return;
        };
        let loaded = {
            let mut st = self.lock();
            Identities::load(dir, &mut st.engine, self.limits.max_data_anonymous)
        };
        match loaded {
            Ok((ids, warnings)) => {
                for w in warnings {
                    warn!("identity skipped: {w}");
                }
                info!(count = ids.len(), "identities loaded");
                *self
                    .identities
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = ids;
            }
            Err(e) => warn!("cannot read identity directory {}: {e}", dir.display()),
        }
    }
}

fn random_key() -> [u64; 2] {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No OS RNG: fall back to something that at least varies by run.
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        b[..16].copy_from_slice(&t.as_nanos().to_le_bytes());
    }
    let (a, c) = b.split_at(8);
    [
        u64::from_le_bytes(a.try_into().unwrap_or_default()),
        u64::from_le_bytes(c.try_into().unwrap_or_default()),
    ]
}

/// Fencing tokens start at the wall clock in microseconds, so they keep
/// increasing across restarts without a data directory (as long as the
/// clock does not go back and fewer than a million grants a second are
/// made on average).
fn token_floor() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Serves on `listener` until `shutdown` completes, then stops accepting,
/// answers what was received, and returns within about a second.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut engine = Engine::new(Config {
        limits: settings.limits,
        memory_budget: settings.memory_budget,
        hash_key: random_key(),
        first_token: token_floor(),
    });
    let identities = match &settings.identity_dir {
        Some(dir) => {
            let (ids, warnings) =
                Identities::load(dir, &mut engine, settings.limits.max_data_anonymous).map_err(
                    |e| {
                        io::Error::new(
                            e.kind(),
                            format!("identity directory {}: {e}", dir.display()),
                        )
                    },
                )?;
            for w in warnings {
                warn!("identity skipped: {w}");
            }
            info!(count = ids.len(), "identities loaded");
            ids
        }
        None => Identities::none(),
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            engine,
            conns: HashMap::new(),
            orphans: Vec::new(),
        }),
        clock: MonotonicClock::new(),
        limits: settings.limits.clamped(),
        idle_timeout: settings.idle_timeout,
        identities: RwLock::new(identities),
        identity_dir: settings.identity_dir.clone(),
        timer: Notify::new(),
        wake_at: AtomicU64::new(u64::MAX),
        next_conn: AtomicU64::new(1),
        active: AtomicUsize::new(0),
    });

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    tracker.spawn(timer_task(shared.clone(), cancel.clone()));
    tracker.spawn(stats_task(
        shared.clone(),
        settings.stats_interval,
        settings.log_file.clone(),
        cancel.clone(),
    ));
    #[cfg(unix)]
    tracker.spawn(reload_task(shared.clone(), cancel.clone()));

    let limit = Arc::new(Semaphore::new(settings.max_connections));
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(5);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(5);
                    accept(&shared, &limit, &tracker, &cancel, stream, peer);
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            },
        }
    }
    info!("shutting down");
    drop(listener);
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(Duration::from_millis(900), tracker.wait())
        .await
        .is_err()
    {
        warn!("connections still open after shutdown grace period");
    }
    if let Some(path) = &settings.log_file {
        write_stats_line(&shared, path);
    }
    Ok(())
}

fn accept(
    shared: &Arc<Shared>,
    limit: &Arc<Semaphore>,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
    stream: TcpStream,
    peer: std::net::SocketAddr,
) {
    let Ok(permit) = limit.clone().try_acquire_owned() else {
        shared.lock().engine.stats_mut().incr(Stat::ConnRefused);
        debug!(%peer, "connection refused: server full");
        drop(stream);
        return;
    };
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let active = shared.active.fetch_add(1, Ordering::Relaxed) + 1;
    {
        let mut st = shared.lock();
        st.engine.stats_mut().incr(Stat::Connections);
        st.engine.stats_mut().set(Stat::AConn, active as u64);
    }
    let shared = shared.clone();
    let cancel = cancel.clone();
    tracker.spawn(async move {
        conn::serve(shared.clone(), stream, id, cancel).await;
        let active = shared.active.fetch_sub(1, Ordering::Relaxed) - 1;
        shared
            .lock()
            .engine
            .stats_mut()
            .set(Stat::AConn, active as u64);
        drop(permit);
    });
}

/// Sleeps until the engine's next deadline, then advances it: expires
/// entries, times out waiters and hands expired locks to the next waiter.
async fn timer_task(shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let next = shared.lock().engine.next_deadline();
        shared
            .wake_at
            .store(next.map_or(u64::MAX, Instant::as_millis), Ordering::Relaxed);
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(shared.clock.to_std(at).into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = shared.timer.notified() => {}
            () = sleep => {
                let now = shared.clock.now();
                let mut st = shared.lock();
                st.with_engine(now, |engine, sink| engine.advance(now, &mut |ev| sink(ev)));
            }
        }
    }
}

fn write_stats_line(shared: &Shared, path: &std::path::Path) {
    let stats = {
        let mut st = shared.lock();
        let s = st.engine.stats();
        st.engine.stats_mut().reset_counters();
        s
    };
    if let Some(line) = statslog::line(SystemTime::now(), &stats) {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| io::Write::write_all(&mut f, line.as_bytes()));
        if let Err(e) = written {
            warn!("cannot write statistics to {}: {e}", path.display());
        }
    }
}

async fn stats_task(
    shared: Arc<Shared>,
    every: Duration,
    log_file: Option<PathBuf>,
    cancel: CancellationToken,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match &log_file {
            Some(path) => write_stats_line(&shared, path),
            None => {
                let stats = {
                    let mut st = shared.lock();
                    let s = st.engine.stats();
                    st.engine.stats_mut().reset_counters();
                    s
                };
                let mut body = String::new();
                let _ = stats.write_log_line(&mut body);
                info!(target: "dlm::stats", "{body}");
            }
        }
    }
}

#[cfg(unix)]
async fn reload_task(shared: Arc<Shared>, cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            got = hup.recv() => {
                if got.is_none() {
                    return;
                }
                info!("SIGHUP: reloading identities");
                shared.reload_identities();
            }
        }
    }
}
