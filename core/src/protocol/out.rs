//! Where written lines go: a caller's slice, or (with `alloc`) a `Vec`.

use crate::codec;

pub use crate::codec::BufferTooSmall;

/// A byte sink for writing request and response lines.
///
/// Implemented for [`SliceOut`] (a caller-provided buffer; fails when full)
/// and, with `alloc`, for `Vec<u8>` (grows; never fails).
pub trait Out {
    /// Appends `bytes`, or fails without a partial write being meaningful.
    fn put(&mut self, bytes: &[u8]) -> Result<(), BufferTooSmall>;
}

/// Writes into the front of a borrowed buffer.
#[derive(Debug)]
pub struct SliceOut<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> SliceOut<'a> {
    /// An empty writer over `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes written so far.
    pub fn written(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Out for SliceOut<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Result<(), BufferTooSmall> {
        let end = self.len + bytes.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(BufferTooSmall)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
}

#[cfg(feature = "alloc")]
impl Out for alloc::vec::Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Result<(), BufferTooSmall> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// Table-encodes everything written through it (the legacy framing).
pub(crate) struct Legacy<'o, O: Out + ?Sized>(pub(crate) &'o mut O);

impl<O: Out + ?Sized> Out for Legacy<'_, O> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), BufferTooSmall> {
        let mut chunk = [0u8; 128];
        for part in bytes.chunks(chunk.len() / 2) {
            let n = codec::encode_into(part, &mut chunk)?;
            self.0.put(&chunk[..n])?;
        }
        Ok(())
    }
}
