//! The leases of one client's held locks, in one [`Table`]: a lock is a
//! number (a handle) on the JavaScript side, not an object of its own in
//! WebAssembly memory, so acquiring and releasing allocate nothing and
//! nothing waits for the garbage collector to be freed.
//!
//! A handle that names no lease is a released lock: it has no token, no
//! time left, nothing to send, and extending it fails with `LockLost` ("it
//! was released"), which is all the package asks of a lock after its
//! release.

use dlm_core::client::ErrorKind;

use crate::error::Error;
use crate::table::Table;
use crate::wire::Lease;

/// The table of held leases.
pub type Leases = Table<Lease>;

impl Table<Lease> {
    /// `LockLost` for a handle that names no lease: a released lock.
    pub fn released() -> Error {
        Error::new(ErrorKind::LockLost, "it was released")
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // handles are whole numbers
mod tests {
    use super::*;
    use crate::failover::Failover;

    fn failover() -> Failover {
        Failover::new("127.0.0.1:37373", 10_000.0, 3, true, &[7; 16]).unwrap()
    }
    use crate::link::Link;
    use crate::table::{GENERATIONS, INDEX_SPAN};
    use crate::wire::Writer;

    fn lease() -> Lease {
        let mut fo = failover();
        let mut link = Link::new(Writer::new("a".into(), false, None).unwrap());
        link.lock(&mut fo, 0.0, "L", 1000.0, 0.0, 0.0).unwrap();
        link.feed(b"{\"Status\":\"Locked\",\"Token\":7}\n").unwrap();
        link.read_grant(1000.0, 0.0, false, 0.0, 1.0, 0.0).unwrap()
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
        t.set_generation(0, GENERATIONS - 1);
        let last = t.insert(lease()).unwrap();
        assert!(last < 2f64.powi(53));
        assert!(t.remove(last));
        assert_eq!(t.insert(lease()).unwrap(), 0.0);
    }
}
