//! `dlm_cancel`: aborting a blocking wait from another thread.

use super::{Fail, boundary, dlm_status, non_null, quiet};
use dlm::CancelToken;

/// A cancellation handle for `dlm_client_lock`'s wait. **Thread-safe**:
/// `dlm_cancel_trigger` may be called from any thread while another waits.
/// Once triggered it stays triggered; use a new one per wait you may cancel.
pub struct dlm_cancel {
    pub(crate) token: CancelToken,
}

/// Creates a cancellation handle.
///
/// # Safety
/// `out` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_cancel_new(out: *mut *mut dlm_cancel) -> dlm_status {
    boundary(std::ptr::null::<dlm_cancel>(), || {
        non_null(out, "out")?;
        let handle = Box::new(dlm_cancel {
            token: CancelToken::new(),
        });
        // SAFETY: `out` is non-null and writable.
        unsafe { *out = Box::into_raw(handle) };
        Ok(dlm_status::DLM_OK)
    })
}

/// Aborts every wait using this handle, now and later: each returns
/// `DLM_ERR_CANCELLED` at once and the server drops it from its queue.
///
/// # Safety
/// `cancel` must be a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_cancel_trigger(cancel: *const dlm_cancel) -> dlm_status {
    boundary(cancel, || {
        // SAFETY: per the contract.
        let c = unsafe { cancel.as_ref() }.ok_or_else(|| Fail::null("the cancel handle"))?;
        c.token.cancel();
        Ok(dlm_status::DLM_OK)
    })
}

/// Frees a cancellation handle. NULL is accepted. A wait still using it
/// keeps its own reference, so freeing early is safe.
///
/// # Safety
/// `cancel` must be NULL or a pointer from `dlm_cancel_new` not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_cancel_free(cancel: *mut dlm_cancel) {
    if !cancel.is_null() {
        quiet(|| {
            // SAFETY: created by Box::into_raw in dlm_cancel_new.
            drop(unsafe { Box::from_raw(cancel) });
            dlm_status::DLM_OK
        });
    }
}
