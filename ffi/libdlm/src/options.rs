//! `dlm_options`: how a client connects and encodes values.

use std::sync::Arc;
use std::time::Duration;

use super::{Fail, UserData, boundary, bytes, copy_last_error, dlm_status, non_null, quiet, text};
use dlm::{Encoder, Error, Framing, Options, Result, SealedEncoder, Tls};

/// Options for `dlm_client_new`. Not thread-safe: set it up on one thread,
/// then it may be used (read-only) by `dlm_client_new` from any thread.
pub struct dlm_options {
    pub(crate) options: Options,
}

/// A custom value encoder or decoder. libdlm calls it with the data key
/// `name` (UTF-8, `name_len` bytes, not NUL-terminated), the input bytes,
/// and an output buffer of `out_cap` bytes. It
/// writes the output and its length to `*out_len` and returns `DLM_OK`; if
/// the buffer is too small it sets `*out_len` to the size it needs and
/// returns `DLM_ERR_BUFFER_TOO_SMALL` (libdlm calls again with a larger
/// buffer); any other status fails the call with `DLM_ERR_ENCODING`. An
/// encoder's output must be printable text (it is stored as a JSON
/// string). It may be called from several threads at once.
pub type dlm_encode_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut std::ffi::c_void,
        name: *const std::ffi::c_char,
        name_len: usize,
        input: *const u8,
        input_len: usize,
        out: *mut u8,
        out_cap: usize,
        out_len: *mut usize,
    ) -> u32,
>;

/// A custom decoder; same contract as [`dlm_encode_fn`].
pub type dlm_decode_fn = dlm_encode_fn;

/// Most output a custom encoder may ask for.
const MAX_CODED: usize = 64 << 20;

/// The non-optional form of [`dlm_encode_fn`].
type Codec = unsafe extern "C" fn(
    *mut std::ffi::c_void,
    *const std::ffi::c_char,
    usize,
    *const u8,
    usize,
    *mut u8,
    usize,
    *mut usize,
) -> u32;

struct CEncoder {
    encode: Codec,
    decode: Codec,
    userdata: UserData,
}

// SAFETY: the C caller promises (in dlm_options_set_encoder's contract) that
// the callbacks and userdata may be used from any thread.
unsafe impl Send for CEncoder {}
// SAFETY: as above.
unsafe impl Sync for CEncoder {}

impl CEncoder {
    fn run(&self, f: Codec, name: &str, input: &[u8]) -> Result<Vec<u8>> {
        let mut cap = (input.len() * 2).max(64);
        for _ in 0..4 {
            let mut out = vec![0u8; cap];
            let mut len = 0usize;
            // SAFETY: every pointer is valid for the lengths given, and the
            // callback's own contract is the caller's responsibility.
            let status = unsafe {
                f(
                    self.userdata,
                    name.as_ptr().cast(),
                    name.len(),
                    input.as_ptr(),
                    input.len(),
                    out.as_mut_ptr(),
                    out.len(),
                    &raw mut len,
                )
            };
            match dlm_status::from_u32(status) {
                dlm_status::DLM_OK if len <= out.len() => {
                    out.truncate(len);
                    return Ok(out);
                }
                dlm_status::DLM_ERR_BUFFER_TOO_SMALL if len > cap && len <= MAX_CODED => cap = len,
                _ => break,
            }
        }
        Err(Error::Encoding(format!(
            "custom encoder failed for {name:?}"
        )))
    }
}

impl Encoder for CEncoder {
    fn encode(&self, name: &str, plain: &[u8]) -> Result<String> {
        let out = self.run(self.encode, name, plain)?;
        String::from_utf8(out)
            .map_err(|_| Error::Encoding("custom encoder output is not UTF-8".into()))
    }

    fn decode(&self, name: &str, stored: &str) -> Result<Vec<u8>> {
        self.run(self.decode, name, stored.as_bytes())
    }
}

/// Creates options with the defaults: 5 s connect timeout, 10 s I/O
/// timeout, a random client ID, plain JSON framing, the table encoder.
///
/// # Safety
/// `out` must be NULL or valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_options_new(out: *mut *mut dlm_options) -> dlm_status {
    boundary(std::ptr::null::<dlm_options>(), || {
        non_null(out, "out")?;
        let opts = Box::new(dlm_options {
            options: Options::default(),
        });
        // SAFETY: `out` is non-null and writable.
        unsafe { *out = Box::into_raw(opts) };
        Ok(dlm_status::DLM_OK)
    })
}

/// Frees options. NULL is accepted.
///
/// # Safety
/// `opts` must be NULL or a pointer from `dlm_options_new` not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_options_free(opts: *mut dlm_options) {
    if !opts.is_null() {
        quiet(|| {
            // SAFETY: created by Box::into_raw in dlm_options_new.
            drop(unsafe { Box::from_raw(opts) });
            dlm_status::DLM_OK
        });
    }
}

/// Applies `f` to the options behind `opts`, recording the outcome for
/// this thread.
///
/// # Safety
/// `opts` must be NULL or a live pointer from `dlm_options_new`.
unsafe fn with(
    opts: *mut dlm_options,
    f: impl FnOnce(&mut Options) -> Result<(), Fail>,
) -> dlm_status {
    boundary(opts, || {
        // SAFETY: per the caller's contract.
        let o = unsafe { opts.as_mut() }.ok_or_else(|| Fail::null("the options"))?;
        f(&mut o.options)?;
        Ok(dlm_status::DLM_OK)
    })
}

fn invalid(why: &str) -> Fail {
    Fail::new(dlm_status::DLM_ERR_INVALID_ARGUMENT, why)
}

/// Sets the timeout `field` selects to `ms` milliseconds, which must be > 0.
///
/// # Safety
/// As for [`with`].
unsafe fn set_timeout(
    opts: *mut dlm_options,
    ms: u64,
    field: impl FnOnce(&mut Options) -> &mut Duration,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        with(opts, |o| {
            if ms == 0 {
                return Err(invalid("a timeout must be positive"));
            }
            *field(o) = Duration::from_millis(ms);
            Ok(())
        })
    }
}

/// How long to wait for a TCP connection, in milliseconds (> 0).
///
/// # Safety
/// `opts` must be a live pointer from `dlm_options_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_options_set_connect_timeout_ms(
    opts: *mut dlm_options,
    ms: u64,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe { set_timeout(opts, ms, |o| &mut o.connect_timeout) }
}

/// How long to wait for an answer, in milliseconds (> 0), beyond a lock's
/// own wait.
///
/// # Safety
/// `opts` must be a live pointer from `dlm_options_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_options_set_io_timeout_ms(
    opts: *mut dlm_options,
    ms: u64,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe { set_timeout(opts, ms, |o| &mut o.io_timeout) }
}

/// The owner ID to use (UTF-8, not empty), instead of a random one.
///
/// # Safety
/// `opts` must be a live pointer from `dlm_options_new`; `id` must point
/// to `id_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_options_set_client_id(
    opts: *mut dlm_options,
    id: *const std::ffi::c_char,
    id_len: usize,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        with(opts, |o| {
            let id = text(id, id_len, "the client ID")?;
            if id.is_empty() {
                return Err(invalid("the client ID is empty"));
            }
            o.client_id = Some(id.to_owned());
            Ok(())
        })
    }
}

/// Sends JackrabbitDLM's table-encoded framing instead of plain JSON, to
/// talk to a JackrabbitDLM server. Every request then gets a connection of
/// its own, closed after the answer, as that server closes it.
///
/// # Safety
/// `opts` must be a live pointer from `dlm_options_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_options_set_legacy_framing(
    opts: *mut dlm_options,
    legacy: bool,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        with(opts, |o| {
            o.framing = if legacy {
                Framing::Legacy
            } else {
                Framing::Plain
            };
            Ok(())
        })
    }
}

/// Authenticates every request as the identity `name` with `secret`.
///
/// # Safety
/// `opts` must be a live pointer from `dlm_options_new`; the strings must
/// point to their lengths in readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_options_set_credentials(
    opts: *mut dlm_options,
    name: *const std::ffi::c_char,
    name_len: usize,
    secret: *const std::ffi::c_char,
    secret_len: usize,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        with(opts, |o| {
            let name = text(name, name_len, "the identity's name")?;
            let secret = text(secret, secret_len, "the identity's secret")?;
            if name.is_empty() || secret.is_empty() {
                return Err(invalid("an identity needs a name and a secret"));
            }
            o.credentials = Some((name.to_owned(), secret.to_owned()));
            Ok(())
        })
    }
}

/// Seals values with XChaCha20-Poly1305 under this 32-byte key (the server
/// then stores only ciphertext). The key is copied.
///
/// # Safety
/// `opts` must be a live pointer from `dlm_options_new`; `key` must point
/// to `key_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_options_set_sealed_key(
    opts: *mut dlm_options,
    key: *const std::ffi::c_void,
    key_len: usize,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        with(opts, |o| {
            let key = bytes(key, key_len, "the key")?;
            o.encoder = Arc::new(SealedEncoder::from_slice(key)?);
            Ok(())
        })
    }
}

/// Encodes values with your own functions (see [`dlm_encode_fn`]).
/// `userdata` is passed to both and must stay valid, and usable from any
/// thread, for as long as any client made with these options exists.
///
/// # Safety
/// `opts` must be a live pointer from `dlm_options_new`; the functions must
/// follow the [`dlm_encode_fn`] contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_options_set_encoder(
    opts: *mut dlm_options,
    encode: dlm_encode_fn,
    decode: dlm_decode_fn,
    userdata: *mut std::ffi::c_void,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        with(opts, |o| {
            let (Some(encode), Some(decode)) = (encode, decode) else {
                return Err(Fail::null("the encode or decode function"));
            };
            o.encoder = Arc::new(CEncoder {
                encode,
                decode,
                userdata,
            });
            Ok(())
        })
    }
}

/// An optional string argument: NULL or empty is `None`.
///
/// # Safety
/// As for [`text`].
unsafe fn optional_text(
    ptr: *const std::ffi::c_char,
    len: usize,
    what: &str,
) -> Result<Option<String>, Fail> {
    if ptr.is_null() || len == 0 {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    Ok(Some(unsafe { text(ptr, len, what) }?.to_owned()))
}

/// Connects with TLS. `ca_file` is a PEM file of the CA certificates to
/// trust (NULL or empty: the system's trusted roots); `server_name` the
/// name the server's certificate must be valid for (NULL or empty: the
/// host of the address given to `dlm_client_new`). Both are UTF-8, not
/// NUL-terminated. The files are read by `dlm_client_new`, whose error
/// (see `dlm_options_last_error`) says why a handshake failed: an unknown
/// CA, a name mismatch, an expired certificate.
///
/// # Safety
/// `opts` must be a live pointer from `dlm_options_new`; each string must
/// be NULL or point to its length in readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_options_set_tls(
    opts: *mut dlm_options,
    ca_file: *const std::ffi::c_char,
    ca_file_len: usize,
    server_name: *const std::ffi::c_char,
    server_name_len: usize,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        with(opts, |o| {
            let ca = optional_text(ca_file, ca_file_len, "the CA file")?;
            let name = optional_text(server_name, server_name_len, "the server name")?;
            let client_cert = o.tls.take().and_then(|t| t.client_cert);
            o.tls = Some(Tls {
                ca_file: ca.map(Into::into),
                server_name: name,
                client_cert,
            });
            Ok(())
        })
    }
}

/// Presents this client certificate chain and key (PEM files; UTF-8
/// paths, not NUL-terminated) to servers that ask for one; turns TLS on
/// (trusting the system's roots) if `dlm_options_set_tls` was not called.
/// A server with client certificates may take the certificate's CN for an
/// identity: then set credentials with that name and any secret.
///
/// # Safety
/// `opts` must be a live pointer from `dlm_options_new`; the strings must
/// point to their lengths in readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_options_set_tls_client_cert(
    opts: *mut dlm_options,
    cert_file: *const std::ffi::c_char,
    cert_file_len: usize,
    key_file: *const std::ffi::c_char,
    key_file_len: usize,
) -> dlm_status {
    // SAFETY: forwarded contract.
    unsafe {
        with(opts, |o| {
            let cert = text(cert_file, cert_file_len, "the certificate file")?;
            let key = text(key_file, key_file_len, "the key file")?;
            if cert.is_empty() || key.is_empty() {
                return Err(invalid(
                    "a client certificate needs a certificate and a key file",
                ));
            }
            let tls = o.tls.take().unwrap_or_default();
            o.tls = Some(tls.client_cert(cert, key));
            Ok(())
        })
    }
}

/// Copies into `buf` (NUL-terminated) what the calling thread's most
/// recent libdlm call said beyond its status, if that call was made with
/// these options and failed: a `dlm_options_set_*`, or a `dlm_client_new`
/// (why the server could not be reached, for example). Reading it records
/// nothing.
///
/// # Safety
/// `opts` must be a live pointer from `dlm_options_new`; `buf` must hold
/// `len` writable bytes; `out_n` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlm_options_last_error(
    opts: *const dlm_options,
    buf: *mut std::ffi::c_char,
    len: usize,
    out_n: *mut usize,
) -> dlm_status {
    quiet(|| {
        if opts.is_null() {
            return dlm_status::DLM_ERR_NULL_PARAMETER;
        }
        // SAFETY: per the contract.
        unsafe { copy_last_error(opts, buf, len, out_n) }
    })
}
