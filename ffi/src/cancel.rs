//! Cancelling a blocking wait from another thread.
//!
//! A lock that waits in the server's queue blocks its thread in a read.
//! [`CancelToken::cancel`] shuts that connection down: the read returns at
//! once, the call fails with [`Error::Cancelled`](crate::Error::Cancelled),
//! and the server, seeing the connection close, drops the waiter from its
//! queue.

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{Error, Result};

#[derive(Default)]
struct Inner {
    cancelled: AtomicBool,
    next: AtomicU64,
    streams: Mutex<Vec<(u64, TcpStream)>>,
}

/// A thread-safe cancellation handle for blocking calls. Once cancelled it
/// stays cancelled: use a new token for each call you may want to cancel.
#[derive(Clone, Default)]
pub struct CancelToken {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels every call using this token, now and later.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        let streams = self
            .inner
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (_, s) in streams.iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Makes `stream` subject to this token for as long as the returned
    /// registration lives.
    pub(crate) fn register(&self, stream: &TcpStream) -> Result<Registration> {
        let clone = stream.try_clone().map_err(Error::Unavailable)?;
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.inner
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, clone));
        let registration = Registration {
            token: self.clone(),
            id,
        };
        // Checked after registering, so a cancel racing us is never missed.
        if self.is_cancelled() {
            let _ = stream.shutdown(Shutdown::Both);
            return Err(Error::Cancelled);
        }
        Ok(registration)
    }
}

/// Removes a stream from its token when the call ends.
pub(crate) struct Registration {
    token: CancelToken,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.token
            .inner
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(id, _)| *id != self.id);
    }
}
