//! The leases of one client's held locks, in one table: a lock is a number
//! (a handle) on the JavaScript side, not an object of its own in
//! WebAssembly memory, so acquiring and releasing allocate nothing and
//! nothing waits for the garbage collector to be freed.
//!
//! A handle is a slot's index and its generation, packed into one number
//! below 2^53 that JavaScript holds exactly. A removed slot's next lease
//! gets the next generation, so an old handle never reaches it. A handle
//! that names no lease is a released lock: it has no token, no time left,
//! nothing to send, and extending it fails with `LockLost` ("it was
//! released"), which is all the package asks of a lock after its release.

use dlm_core::client::ErrorKind;

use crate::error::Error;
use crate::wire::Lease;

/// Generations wrap below this, so a handle stays below 2^53.
const GENERATIONS: u32 = 1 << 21;
/// 2^32: where the generation starts in a handle.
const INDEX_SPAN: f64 = 4_294_967_296.0;

#[derive(Debug)]
struct Slot {
    generation: u32,
    lease: Option<Lease>,
}

/// The table of held leases.
#[derive(Debug, Default)]
pub struct Leases {
    slots: Vec<Slot>,
    /// Empty slots, reused first.
    free: Vec<u32>,
}

impl Leases {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many leases it holds.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps `lease`; returns its handle. Fails with `NoMemory` past 2^32
    /// leases at once.
    pub fn insert(&mut self, lease: Lease) -> Result<f64, Error> {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.slots.len())
                    .map_err(|_| Error::new(ErrorKind::NoMemory, "too many locks held at once"))?;
                self.slots.push(Slot {
                    generation: 0,
                    lease: None,
                });
                index
            }
        };
        let Some(slot) = self.slots.get_mut(index as usize) else {
            return Err(Error::new(ErrorKind::NoMemory, "no slot for a lock"));
        };
        slot.lease = Some(lease);
        Ok(f64::from(slot.generation) * INDEX_SPAN + f64::from(index))
    }

    /// The slot `handle` names, if it names one (of any generation).
    fn locate(handle: f64) -> Option<(usize, u32)> {
        if !(0.0..9_007_199_254_740_992.0).contains(&handle) || handle.fract() != 0.0 {
            return None;
        }
        // A whole number in [0, 2^53): exact as a u64.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let h = handle as u64;
        let index = usize::try_from(h & 0xffff_ffff).ok()?;
        let generation = u32::try_from(h >> 32).ok()?;
        Some((index, generation))
    }

    /// The lease `handle` names, if it is held.
    pub fn get(&self, handle: f64) -> Option<&Lease> {
        let (index, generation) = Self::locate(handle)?;
        let slot = self.slots.get(index)?;
        if slot.generation == generation {
            slot.lease.as_ref()
        } else {
            None
        }
    }

    /// The lease `handle` names, if it is held, to drive.
    pub fn get_mut(&mut self, handle: f64) -> Option<&mut Lease> {
        let (index, generation) = Self::locate(handle)?;
        let slot = self.slots.get_mut(index)?;
        if slot.generation == generation {
            slot.lease.as_mut()
        } else {
            None
        }
    }

    /// Forgets the lease `handle` names (its lock was released); whether
    /// there was one. The handle names nothing from now on.
    pub fn remove(&mut self, handle: f64) -> bool {
        let Some((index, generation)) = Self::locate(handle) else {
            return false;
        };
        let Some(slot) = self.slots.get_mut(index) else {
            return false;
        };
        if slot.generation != generation || slot.lease.is_none() {
            return false;
        }
        slot.lease = None;
        slot.generation = (slot.generation + 1) % GENERATIONS;
        // `index` came from a u32 in `insert`.
        #[allow(clippy::cast_possible_truncation)]
        self.free.push(index as u32);
        true
    }

    /// `LockLost` for a handle that names no lease: a released lock.
    pub fn released() -> Error {
        Error::new(ErrorKind::LockLost, "it was released")
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // handles are whole numbers
mod tests {
    use super::*;
    use crate::link::Link;
    use crate::wire::Writer;

    fn lease() -> Lease {
        let mut link = Link::new(Writer::new("a".into(), false, None).unwrap());
        link.lock("L", 1000.0, 0.0).unwrap();
        link.feed(b"{\"Status\":\"Locked\",\"Token\":7}\n").unwrap();
        link.read_grant(1000.0, 0.0, false, 0.0, 1.0).unwrap()
    }

    #[test]
    fn handles_are_never_reused_for_another_lease() {
        let mut t = Leases::new();
        let a = t.insert(lease()).unwrap();
        let b = t.insert(lease()).unwrap();
        assert_ne!(a, b);
        assert_eq!(t.len(), 2);
        assert!(t.remove(a));
        assert!(!t.remove(a));
        assert!(t.get(a).is_none());
        let c = t.insert(lease()).unwrap();
        assert_ne!(a, c, "the slot is reused with a new generation");
        assert!(t.get(a).is_none());
        assert_eq!(t.get(c).and_then(Lease::token), Some(7));
        assert_eq!(t.len(), 2);
        for bad in [-1.0, 0.5, f64::NAN, f64::INFINITY, 1e300, 2f64.powi(53)] {
            assert!(t.get(bad).is_none(), "{bad}");
            assert!(t.get_mut(bad).is_none(), "{bad}");
            assert!(!t.remove(bad), "{bad}");
        }
    }

    #[test]
    fn generations_wrap_below_two_to_the_53() {
        let mut t = Leases::new();
        let mut h = 0.0;
        for _ in 0..3 {
            h = t.insert(lease()).unwrap();
            t.remove(h);
        }
        assert_eq!(h, 2.0 * INDEX_SPAN);
        t.slots[0].generation = GENERATIONS - 1;
        let last = t.insert(lease()).unwrap();
        assert!(last < 2f64.powi(53));
        assert!(t.remove(last));
        assert_eq!(t.insert(lease()).unwrap(), 0.0);
    }
}
