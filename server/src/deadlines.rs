//! Connection deadlines (a line that stalls, a client that stops reading,
//! the end of a linger), in one heap with at most one entry per connection
//! in the normal course, so the heap never outgrows the connections.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// A deadline of the connection in `slot` of `generation`.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry(Reverse<Duration>, usize, u32);

/// The heap of connection deadlines, earliest first. An entry may be
/// stale (its connection gone, or its deadline moved): whoever pops it
/// checks the connection's current state.
#[derive(Debug, Default)]
pub(crate) struct Deadlines(BinaryHeap<Entry>);

impl Deadlines {
    /// Adds a deadline.
    pub(crate) fn push(&mut self, at: Duration, slot: usize, generation: u32) {
        self.0.push(Entry(Reverse(at), slot, generation));
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Duration> {
        self.0.peek().map(|Entry(Reverse(at), ..)| *at)
    }

    /// Takes the earliest deadline if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Duration) -> Option<(usize, u32)> {
        match self.0.peek() {
            Some(Entry(Reverse(at), ..)) if *at <= now => self
                .0
                .pop()
                .map(|Entry(_, slot, generation)| (slot, generation)),
            _ => None,
        }
    }

    /// Entries (stale ones included).
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_due_entries_earliest_first() {
        let mut d = Deadlines::default();
        let ms = Duration::from_millis;
        d.push(ms(30), 3, 1);
        d.push(ms(10), 1, 1);
        d.push(ms(20), 2, 7);
        assert_eq!(d.next(), Some(ms(10)));
        assert_eq!(d.pop_due(ms(5)), None);
        assert_eq!(d.pop_due(ms(20)), Some((1, 1)));
        assert_eq!(d.pop_due(ms(20)), Some((2, 7)));
        assert_eq!(d.pop_due(ms(20)), None);
        assert_eq!(d.len(), 1);
    }
}
