//! The host's clock: how long the loop has run, read from the monotonic
//! clock but never trusted to jump.
//!
//! A monotonic clock is not a perfect one: a hypervisor, a broken TSC or a
//! vDSO bug can move `CLOCK_MONOTONIC` forward in one step, and a server
//! that took such a step at face value would end every lease at once while
//! their holders (whose clocks did not jump) still count on them. So while
//! anything is due (a lock, a value, a wait, a connection deadline), the
//! loop wakes at least every [`WAKE_EVERY`] and each reading adds at most
//! [`MAX_STEP`] to the host's time: a jump brings deadlines at most that
//! much closer, which the engine's deadline slack ([`JUMP_SLACK`]) absorbs.
//! A stall of the whole process (SIGSTOP, a paused VM) is counted the same
//! way, so it only makes leases last longer than their TTL, never shorter:
//! the safe side for exclusion. While nothing is due, a reading takes the
//! whole step: there is no deadline a jump could bring closer.
//!
//! A cluster's engine runs on the leader-stamped time of its log, bounded
//! the same way (`cluster::node::MAX_CLOCK_STEP`); this clock is that idea
//! for the single server's engine and for every member's connection
//! deadlines.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The most one reading adds while something is due (the cluster's
/// bound, so a single server and a cluster leader behave alike).
pub(crate) const MAX_STEP: Duration = crate::cluster::node::MAX_CLOCK_STEP;

/// How long the loop sleeps at most while something is due: half of
/// [`MAX_STEP`], so that a late wake-up (a scheduler's few milliseconds)
/// still counts in full and the clock does not fall behind.
pub(crate) const WAKE_EVERY: Duration = Duration::from_millis(10);

/// The deadline slack that absorbs jumps: [`MAX_STEP`] for each of ten
/// jumps within one TTL (the cluster's value).
pub(crate) const JUMP_SLACK: Duration = crate::cluster::node::CLOCK_JUMP_SLACK;

/// The host's time, read through `&self` (the loop reads it from many
/// places of one turn).
#[derive(Debug)]
pub(crate) struct HostClock {
    /// Host time at the last reading.
    now: Cell<Duration>,
    /// When the monotonic clock was last read.
    at: Cell<Instant>,
    /// Whether a reading's step is bounded by [`MAX_STEP`].
    bounded: Cell<bool>,
}

impl HostClock {
    /// A clock at zero, now.
    pub(crate) fn new() -> Self {
        Self::starting_at(Instant::now())
    }

    fn starting_at(at: Instant) -> Self {
        Self {
            now: Cell::new(Duration::ZERO),
            at: Cell::new(at),
            bounded: Cell::new(true),
        }
    }

    /// The host's time.
    pub(crate) fn now(&self) -> Duration {
        self.read(Instant::now())
    }

    fn read(&self, instant: Instant) -> Duration {
        let mut step = instant.saturating_duration_since(self.at.get());
        if self.bounded.get() {
            step = step.min(MAX_STEP);
        }
        let now = self.now.get().saturating_add(step);
        self.now.set(now);
        self.at.set(instant.max(self.at.get()));
        // Whatever the next reading finds, something may be due by then
        // (this reading's caller may be about to set a deadline).
        self.bounded.set(true);
        now
    }

    /// Before the loop sleeps: whether anything is due decides whether the
    /// first reading after it is bounded, and how long it may sleep.
    /// Returns the longest sleep allowed.
    pub(crate) fn before_sleep(&self, anything_due: bool) -> Option<Duration> {
        self.before_sleep_at(Instant::now(), anything_due)
    }

    fn before_sleep_at(&self, instant: Instant, anything_due: bool) -> Option<Duration> {
        // Count the time up to here first, bounded or not as it was.
        self.read(instant);
        self.bounded.set(anything_due);
        anything_due.then_some(WAKE_EVERY)
    }

    /// The instant at which host time `at` comes, if the clock keeps pace
    /// with the monotonic one from here.
    pub(crate) fn instant_of(&self, at: Duration) -> Instant {
        let now = self.now.get();
        self.at.get() + at.saturating_sub(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_twice_per_step() {
        assert_eq!(WAKE_EVERY * 2, MAX_STEP);
    }

    #[test]
    fn follows_the_monotonic_clock_in_small_steps() {
        let t0 = Instant::now();
        let c = HostClock::starting_at(t0);
        let mut t = t0;
        for _ in 0..100 {
            t += Duration::from_millis(9);
            c.read(t);
        }
        assert_eq!(c.now.get(), Duration::from_millis(900));
    }

    #[test]
    fn a_jump_while_something_is_due_counts_one_step() {
        let t0 = Instant::now();
        let c = HostClock::starting_at(t0);
        assert_eq!(c.before_sleep_at(t0, true), Some(WAKE_EVERY));
        // The clock jumps ten seconds during the sleep.
        assert_eq!(c.read(t0 + Duration::from_secs(10)), MAX_STEP);
        // From there it keeps pace again.
        assert_eq!(
            c.read(t0 + Duration::from_secs(10) + Duration::from_millis(5)),
            MAX_STEP + Duration::from_millis(5)
        );
    }

    #[test]
    fn an_idle_sleep_counts_in_full_but_only_the_first_reading() {
        let t0 = Instant::now();
        let c = HostClock::starting_at(t0);
        assert_eq!(c.before_sleep_at(t0, false), None);
        let woke = t0 + Duration::from_secs(30);
        assert_eq!(c.read(woke), Duration::from_secs(30));
        // A lock taken on this reading is due from now: the next reading
        // is bounded.
        assert_eq!(
            c.read(woke + Duration::from_secs(10)),
            Duration::from_secs(30) + MAX_STEP
        );
    }

    #[test]
    fn never_goes_back() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let c = HostClock::starting_at(t0);
        c.read(t0 + Duration::from_millis(10));
        assert_eq!(c.read(t0), Duration::from_millis(10));
        assert_eq!(
            c.read(t0 + Duration::from_millis(12)),
            Duration::from_millis(12)
        );
    }

    #[test]
    fn instant_of_a_deadline() {
        let t0 = Instant::now();
        let c = HostClock::starting_at(t0);
        c.read(t0 + Duration::from_millis(10));
        assert_eq!(
            c.instant_of(Duration::from_millis(25)),
            t0 + Duration::from_millis(25)
        );
        assert_eq!(
            c.instant_of(Duration::from_millis(3)),
            t0 + Duration::from_millis(10)
        );
    }
}
