//! A compact owned pair of byte strings (a name and an owner ID) behind one
//! thin pointer.
//!
//! A live lock is mostly its name and its owner's ID, so how they are held
//! decides the engine's memory per lock. `Box<[u8]>` would cost 16 bytes in
//! the slot and a second allocation for the second string; this is 8 bytes
//! and one allocation laid out as `[len_a: u16][len_b: u16][a][b]`, which
//! for a 12-byte name and a 40-byte ID fits a 64-byte malloc chunk.
//!
//! This is the only `unsafe` in the crate. It is exercised under Miri
//! (`cargo +nightly miri test -p dlm-core blob`).
#![allow(unsafe_code)]

use alloc::alloc::{alloc, dealloc};
use core::alloc::Layout;
use core::ptr::NonNull;

const HEADER: usize = 4;

/// Two byte strings of at most `u16::MAX` bytes each, in one allocation.
#[allow(unreachable_pub)]
pub struct ThinPair {
    ptr: NonNull<u8>,
}

// SAFETY: `ThinPair` uniquely owns its allocation, like `Box<[u8]>`.
unsafe impl Send for ThinPair {}
// SAFETY: shared access only reads.
unsafe impl Sync for ThinPair {}

impl ThinPair {
    fn layout(total: usize) -> Option<Layout> {
        Layout::from_size_align(HEADER + total, 2).ok()
    }

    /// Copies `a` and `b` into a new allocation; `None` if either is too
    /// long for a 16-bit length or the allocator fails.
    pub(crate) fn new(a: &[u8], b: &[u8]) -> Option<Self> {
        let len_a = u16::try_from(a.len()).ok()?;
        let len_b = u16::try_from(b.len()).ok()?;
        let layout = Self::layout(a.len() + b.len())?;
        // SAFETY: the layout's size is at least HEADER > 0.
        let raw = unsafe { alloc(layout) };
        let ptr = NonNull::new(raw)?;
        // SAFETY: the allocation holds HEADER + a.len() + b.len() bytes, so
        // every write below is in bounds; sources cannot overlap a fresh
        // allocation. Writes are unaligned-safe byte copies.
        unsafe {
            let p = ptr.as_ptr();
            p.copy_from_nonoverlapping(len_a.to_ne_bytes().as_ptr(), 2);
            p.add(2)
                .copy_from_nonoverlapping(len_b.to_ne_bytes().as_ptr(), 2);
            p.add(HEADER).copy_from_nonoverlapping(a.as_ptr(), a.len());
            p.add(HEADER + a.len())
                .copy_from_nonoverlapping(b.as_ptr(), b.len());
        }
        Some(Self { ptr })
    }

    #[inline]
    fn lens(&self) -> (usize, usize) {
        let mut h = [0u8; HEADER];
        // SAFETY: every allocation starts with HEADER initialized bytes.
        unsafe {
            self.ptr
                .as_ptr()
                .copy_to_nonoverlapping(h.as_mut_ptr(), HEADER);
        }
        (
            usize::from(u16::from_ne_bytes([h[0], h[1]])),
            usize::from(u16::from_ne_bytes([h[2], h[3]])),
        )
    }

    /// Both strings.
    #[inline]
    pub(crate) fn parts(&self) -> (&[u8], &[u8]) {
        let (len_a, len_b) = self.lens();
        // SAFETY: the allocation holds HEADER + len_a + len_b initialized
        // bytes that live as long as `self` and are never mutated.
        unsafe {
            let p = self.ptr.as_ptr().add(HEADER);
            (
                core::slice::from_raw_parts(p, len_a),
                core::slice::from_raw_parts(p.add(len_a), len_b),
            )
        }
    }
}

impl Drop for ThinPair {
    fn drop(&mut self) {
        let (a, b) = self.lens();
        if let Some(layout) = Self::layout(a + b) {
            // SAFETY: allocated in `new` with exactly this layout.
            unsafe { dealloc(self.ptr.as_ptr(), layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_two_strings() {
        let p = ThinPair::new(b"lock-name", b"owner-id-0123").unwrap();
        assert_eq!(p.parts(), (&b"lock-name"[..], &b"owner-id-0123"[..]));
        let e = ThinPair::new(b"", b"").unwrap();
        assert_eq!(e.parts(), (&b""[..], &b""[..]));
        let long = alloc::vec![7u8; 65535];
        let l = ThinPair::new(&long, b"x").unwrap();
        assert_eq!(l.parts().0.len(), 65535);
        assert!(ThinPair::new(&alloc::vec![0u8; 65536], b"").is_none());
    }

    #[test]
    fn is_pointer_sized_with_a_niche() {
        assert_eq!(
            core::mem::size_of::<ThinPair>(),
            core::mem::size_of::<usize>()
        );
        assert_eq!(
            core::mem::size_of::<Option<ThinPair>>(),
            core::mem::size_of::<usize>()
        );
    }
}
