//! `dlm_client`: a connection (pool) to a server or a cluster's leader,
//! and every call that does not need a held lock.

use std::ffi::{c_char, c_void};
use std::time::Duration;

use super::options::dlm_options;
use super::wire::readers_of;
use super::{
    Fail, boundary, bytes, copy_last_error, dlm_status, non_null, put, quiet, text, texts,
    write_text,
};
use dlm::{Client, Error, LockState, Revision, Token};

/// A client of a dlm server or cluster. **Thread-safe**: every function taking a
/// `dlm_client` may be called from several threads at once (calls run side
/// by side on a small pool of connections). Error messages are kept per
/// thread.
pub struct dlm_client {
    pub(crate) client: Client,
}

/// What `dlm_client_test_lock` found.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum dlm_lock_state {
    /// Nobody holds the lock.
    DLM_LOCK_FREE = 0,
    /// This client holds it.
    DLM_LOCK_MINE = 1,
    /// Another owner holds it.
    DLM_LOCK_TAKEN = 2,
}

/// Borrows the client behind `client`.
///
/// # Safety
/// `client` must be NULL or a live pointer from `dlm_client_new`.
pub(crate) unsafe fn client_ref<'a>(client: *const dlm_client) -> Result<&'a dlm_client, Fail> {
    // SAFETY: per the caller's contract.
    unsafe { client.as_ref() }.ok_or_else(|| Fail::null("the client"))
}

/// Connects to `addr` (`host:port`), or to a cluster's members
/// (`host:port,host:port,...`; one is enough, the others are learned from
/// it), with `opts` (NULL for defaults). Requests go to the cluster's
/// leader and follow it when it changes, within each call's timeout. One
/// connection is opened now, so an unreachable server is reported here
/// (`DLM_ERR_UNAVAILABLE`: no member answered). `opts` may be freed
/// afterwards.
///
/// # Safety
/// `addr` must point to `addr_len` readable bytes; `opts` must be NULL or a
/// live pointer from `dlm_options_new`; `out` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_client_new(
    addr: *const c_char,
    addr_len: usize,
    opts: *const dlm_options,
    out: *mut *mut dlm_client,
) -> dlm_status {
    // Why it failed is left on the options, there being no client yet.
    boundary(opts, || {
        non_null(out, "out")?;
        // SAFETY: per the contract.
        let addr = unsafe { text(addr, addr_len, "the address") }?;
        if addr.is_empty() {
            return Err(Fail::new(
                dlm_status::DLM_ERR_INVALID_ARGUMENT,
                "the address is empty",
            ));
        }
        // SAFETY: per the contract.
        let mut options = unsafe { opts.as_ref() }
            .map(|o| o.options.clone())
            .unwrap_or_default();
        // TLS checks the host of the address unless told another name.
        options.tls = options.tls.map(|t| t.default_server_name(addr));
        let client = Client::connect_with(addr, options)?;
        // SAFETY: `out` is non-null and writable.
        unsafe { *out = Box::into_raw(Box::new(dlm_client { client })) };
        Ok(dlm_status::DLM_OK)
    })
}

/// Frees a client. Locks made by it must be freed first. NULL is accepted.
///
/// # Safety
/// `client` must be NULL or a pointer from `dlm_client_new` not yet freed,
/// with no call on it still running.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_client_free(client: *mut dlm_client) {
    if !client.is_null() {
        quiet(|| {
            // SAFETY: created by Box::into_raw in dlm_client_new.
            drop(unsafe { Box::from_raw(client) });
            dlm_status::DLM_OK
        });
    }
}

/// Copies into `buf` (NUL-terminated) what the calling thread's most
/// recent libdlm call said beyond its status, if that call was on this
/// client and failed: e.g. `Connection refused (os error 111)` for
/// `DLM_ERR_UNAVAILABLE`. Empty if that call succeeded, was on another
/// handle, or its status says it all. Reading it records nothing.
///
/// # Safety
/// `client` must be a live client; `buf` must hold `len` writable bytes;
/// `out_n` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_client_last_error(
    client: *const dlm_client,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> dlm_status {
    quiet(|| {
        if client.is_null() {
            return dlm_status::DLM_ERR_NULL_PARAMETER;
        }
        // SAFETY: per the contract.
        unsafe { copy_last_error(client, buf, len, out_n) }
    })
}

/// Copies the client's owner ID (NUL-terminated) into `buf`.
///
/// # Safety
/// As for `dlm_client_last_error`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_client_id(
    client: *const dlm_client,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> dlm_status {
    boundary(client, || {
        // SAFETY: per the contract.
        let c = unsafe { client_ref(client) }?;
        // SAFETY: per the contract.
        Ok(unsafe { write_text(c.client.id(), buf, len, out_n) })
    })
}

/// Copies the server the client talks to now (`host:port`,
/// NUL-terminated) into `buf`: the cluster's leader once a member said who
/// leads. For logs: it changes when the client moves on after a failure.
///
/// # Safety
/// As for `dlm_client_last_error`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_client_server(
    client: *const dlm_client,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> dlm_status {
    boundary(client, || {
        // SAFETY: per the contract.
        let c = unsafe { client_ref(client) }?;
        // SAFETY: per the contract.
        Ok(unsafe { write_text(&c.client.server(), buf, len, out_n) })
    })
}

/// Runs `f` on the client, recording the outcome for this thread.
///
/// # Safety
/// `client` must be NULL or a live client.
unsafe fn call(
    client: *const dlm_client,
    f: impl FnOnce(&dlm_client) -> Result<dlm_status, Fail>,
) -> dlm_status {
    boundary(client, || {
        // SAFETY: per the contract.
        f(unsafe { client_ref(client) }?)
    })
}

/// Asks whether `name` is locked, without acquiring it. Writes the state,
/// and (each may be NULL) the token if this client holds it (0 if the
/// server gives no tokens) and the remaining milliseconds if the server
/// said.
///
/// # Safety
/// `client` must be a live client; `name` must point to `name_len` readable
/// bytes; out-pointers must be writable (or NULL where allowed).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_client_test_lock(
    client: *const dlm_client,
    name: *const c_char,
    name_len: usize,
    out_state: *mut dlm_lock_state,
    out_token: *mut u64,
    out_remaining_ms: *mut u64,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        call(client, |c| {
            non_null(out_state, "out_state")?;
            let name = super::name(name, name_len)?;
            let (state, token, left) = match c.client.test_lock(name)? {
                LockState::Free => (dlm_lock_state::DLM_LOCK_FREE, None, None),
                LockState::Mine { token, remaining } => (
                    dlm_lock_state::DLM_LOCK_MINE,
                    Some(token.map_or(0, |Token(t)| t)),
                    remaining,
                ),
                LockState::Taken { remaining } => (dlm_lock_state::DLM_LOCK_TAKEN, None, remaining),
            };
            put(out_state, state);
            if let Some(t) = token {
                put(out_token, t);
            }
            if let Some(left) = left {
                put(
                    out_remaining_ms,
                    u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
                );
            }
            Ok(dlm_status::DLM_OK)
        })
    }
}

/// Releases `name` if this client holds it; with `token` > 0, only the
/// grant with that token. `DLM_ERR_NOT_FOUND` if no lock was live,
/// `DLM_ERR_NOT_OWNER` if another owner (or grant) holds it. Prefer
/// `dlm_lock_release` on a lock handle; this is for recovering by name.
///
/// # Safety
/// `client` must be a live client; `name` must point to `name_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_client_unlock(
    client: *const dlm_client,
    name: *const c_char,
    name_len: usize,
    token: u64,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        call(client, |c| {
            let name = super::name(name, name_len)?;
            let token = (token > 0).then_some(Token(token));
            if c.client.unlock(name, token)? {
                Ok(dlm_status::DLM_OK)
            } else {
                Err(Error::NotFound.into())
            }
        })
    }
}

/// Stores `value` under `name` for `ttl_ms` milliseconds, encoded by the
/// client's encoder. Writes the new revision to `out_revision` (may be
/// NULL; 0 from a server that keeps no revisions, JackrabbitDLM).
///
/// # Safety
/// `client` must be a live client; `name` and `value` must point to their
/// lengths in readable bytes; `out_revision` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_client_put(
    client: *const dlm_client,
    name: *const c_char,
    name_len: usize,
    value: *const c_void,
    value_len: usize,
    ttl_ms: u64,
    out_revision: *mut u64,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        call(client, |c| {
            let name = super::name(name, name_len)?;
            let value = bytes(value, value_len, "the value")?;
            let Revision(r) = c.client.put(name, value, Duration::from_millis(ttl_ms))?;
            put(out_revision, r);
            Ok(dlm_status::DLM_OK)
        })
    }
}

/// Stores `value` under `name` for `ttl_ms` milliseconds, as
/// `dlm_client_put` does, shared with readers (PROTOCOL.md section 8,
/// "Shared values"): the `readers_count` identity names `readers` (each
/// `reader_lens[i]` bytes; at most 32, each 1 to 255 ASCII letters,
/// digits, `-`, `_` or `.`, not starting with `.`) may then read it with
/// `dlm_client_get` of the same name, whatever their client ID; with
/// `DLM_PUT_READERS_ANY` in `flags` (and no names), any client may. No
/// names and no flag: its owner alone, as `dlm_client_put`. Writing stays
/// the owner's, and each put says its readers anew. A JackrabbitDLM
/// server ignores readers (the value stays its owner's).
///
/// # Safety
/// As for `dlm_client_put`; `readers` and `reader_lens` must point to
/// `readers_count` elements (or be NULL with 0), each name to its length
/// in readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_client_put_shared(
    client: *const dlm_client,
    name: *const c_char,
    name_len: usize,
    value: *const c_void,
    value_len: usize,
    ttl_ms: u64,
    readers: *const *const c_char,
    reader_lens: *const usize,
    readers_count: usize,
    flags: u32,
    out_revision: *mut u64,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        call(client, |c| {
            let name = super::name(name, name_len)?;
            let value = bytes(value, value_len, "the value")?;
            if flags & !super::DLM_PUT_READERS_ANY != 0 {
                return Err(Fail::new(
                    dlm_status::DLM_ERR_INVALID_ARGUMENT,
                    "unknown flags",
                ));
            }
            let names = texts(readers, reader_lens, readers_count, "the readers")?;
            let readers = readers_of(flags & super::DLM_PUT_READERS_ANY != 0, &names)?;
            let Revision(r) = c
                .client
                .put_with(name, value)
                .ttl(Duration::from_millis(ttl_ms))
                .readers(readers)
                .send()?;
            put(out_revision, r);
            Ok(dlm_status::DLM_OK)
        })
    }
}

/// Compare-and-set: stores `value` only if the stored revision is
/// `expected` (0: only if there is no entry). On `DLM_OK`, the new revision
/// goes to `out_revision`; on `DLM_ERR_CONFLICT`, the *current* revision
/// does (0 if there is no entry) — the one exception to out-parameters
/// being written only on success. A server without compare-and-set
/// (JackrabbitDLM) writes the value anyway: `DLM_ERR_PROTOCOL` says so.
///
/// # Safety
/// As for `dlm_client_put`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_client_put_if(
    client: *const dlm_client,
    name: *const c_char,
    name_len: usize,
    value: *const c_void,
    value_len: usize,
    ttl_ms: u64,
    expected: u64,
    out_revision: *mut u64,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        call(client, |c| {
            let name = super::name(name, name_len)?;
            let value = bytes(value, value_len, "the value")?;
            match c.client.put_if(
                name,
                value,
                Duration::from_millis(ttl_ms),
                Revision(expected),
            ) {
                Ok(Revision(r)) => {
                    put(out_revision, r);
                    Ok(dlm_status::DLM_OK)
                }
                Err(Error::Conflict { current }) => {
                    put(out_revision, current.0);
                    Err(Error::Conflict { current }.into())
                }
                Err(e) => Err(e.into()),
            }
        })
    }
}

/// Reads `name` into `buf` (decoded by the client's encoder; not
/// NUL-terminated), its length into `out_len`, and (if not NULL) its
/// revision into `out_revision` (0 from a server that keeps none).
/// `DLM_ERR_NOT_FOUND` if there is no entry. If `buf` is too small, returns
/// `DLM_ERR_BUFFER_TOO_SMALL` with the needed length in `out_len` and
/// nothing else written.
///
/// # Safety
/// `client` must be a live client; `name` must point to `name_len` bytes;
/// `buf` to `buf_len` writable bytes (or NULL with 0); `out_len` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_client_get(
    client: *const dlm_client,
    name: *const c_char,
    name_len: usize,
    buf: *mut c_void,
    buf_len: usize,
    out_len: *mut usize,
    out_revision: *mut u64,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        call(client, |c| {
            non_null(out_len, "out_len")?;
            if buf.is_null() && buf_len > 0 {
                return Err(Fail::null("buf (with a non-zero buf_len)"));
            }
            let name = super::name(name, name_len)?;
            let value = c.client.get(name)?.ok_or(Error::NotFound)?;
            put(out_len, value.data.len());
            if value.data.len() > buf_len {
                return Ok(dlm_status::DLM_ERR_BUFFER_TOO_SMALL);
            }
            std::ptr::copy_nonoverlapping(value.data.as_ptr(), buf.cast::<u8>(), value.data.len());
            put(out_revision, value.revision.0);
            Ok(dlm_status::DLM_OK)
        })
    }
}

/// Reads `name` as `dlm_client_get` does, and also whose value it is: its
/// owner's client ID (NUL-terminated) into `owner` (`owner_cap` bytes),
/// its length into `out_owner_len` (0 if the server did not say:
/// JackrabbitDLM). For a value another owner shared with this client
/// (`dlm_client_put_shared`), that owner's ID; for this client's own, its
/// own. If either buffer is too small, returns `DLM_ERR_BUFFER_TOO_SMALL`
/// with both needed lengths (`out_len`, `out_owner_len`, without the NUL)
/// written and nothing else.
///
/// # Safety
/// As for `dlm_client_get`; `owner` must hold `owner_cap` writable bytes
/// (or be NULL with 0); `out_owner_len` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_client_get_with_owner(
    client: *const dlm_client,
    name: *const c_char,
    name_len: usize,
    buf: *mut c_void,
    buf_len: usize,
    out_len: *mut usize,
    out_revision: *mut u64,
    owner: *mut c_char,
    owner_cap: usize,
    out_owner_len: *mut usize,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        call(client, |c| {
            non_null(out_len, "out_len")?;
            non_null(out_owner_len, "out_owner_len")?;
            if buf.is_null() && buf_len > 0 {
                return Err(Fail::null("buf (with a non-zero buf_len)"));
            }
            if owner.is_null() && owner_cap > 0 {
                return Err(Fail::null("owner (with a non-zero owner_cap)"));
            }
            let name = super::name(name, name_len)?;
            let value = c.client.get(name)?.ok_or(Error::NotFound)?;
            let who = value.owner.as_deref().unwrap_or("");
            put(out_len, value.data.len());
            put(out_owner_len, who.len());
            if value.data.len() > buf_len || who.len() >= owner_cap {
                return Ok(dlm_status::DLM_ERR_BUFFER_TOO_SMALL);
            }
            std::ptr::copy_nonoverlapping(value.data.as_ptr(), buf.cast::<u8>(), value.data.len());
            write_text(who, owner, owner_cap, out_owner_len);
            put(out_revision, value.revision.0);
            Ok(dlm_status::DLM_OK)
        })
    }
}

/// Deletes `name`. `DLM_ERR_NOT_FOUND` if there was no entry.
///
/// # Safety
/// `client` must be a live client; `name` must point to `name_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_client_erase(
    client: *const dlm_client,
    name: *const c_char,
    name_len: usize,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        call(client, |c| {
            let name = super::name(name, name_len)?;
            if c.client.erase(name)? {
                Ok(dlm_status::DLM_OK)
            } else {
                Err(Error::NotFound.into())
            }
        })
    }
}

/// Copies the server's version string (NUL-terminated; it contains
/// "JackrabbitDLM") into `buf`.
///
/// # Safety
/// As for `dlm_client_last_error`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_client_server_version(
    client: *const dlm_client,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        call(client, |c| {
            non_null(out_n, "out_n")?;
            let v = c.client.version()?;
            Ok(write_text(&v, buf, len, out_n))
        })
    }
}

/// Copies the server's statistics as a JSON object (NUL-terminated), e.g.
/// `{"ALock":3,"Lock":12,...}`, into `buf`.
///
/// # Safety
/// As for `dlm_client_last_error`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_client_stats_json(
    client: *const dlm_client,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        call(client, |c| {
            non_null(out_n, "out_n")?;
            let stats = c.client.stats()?;
            let mut json = String::from("{");
            for (i, (stat, value)) in stats.iter().enumerate() {
                if i > 0 {
                    json.push(',');
                }
                json.push('"');
                json.push_str(stat.name());
                json.push_str("\":");
                json.push_str(&value.to_string());
            }
            json.push('}');
            Ok(write_text(&json, buf, len, out_n))
        })
    }
}
