//! Value encoders for Python: the client's own two (the table codec and the
//! sealed XChaCha20-Poly1305 encoder), a pass-through one for the Locker,
//! and an adapter that lets any Python object with `encode(name, value)` and
//! `decode(name, stored)` methods serve as the client's encoder.
//!
//! The native encoders run entirely in Rust; a Python encoder is called
//! back with the GIL taken for the call only.

use std::sync::Arc;

use pyo3::PyTypeInfo as _;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView, PyString};

use crate::errors::{stash_callback_error, to_py};

/// Bytes from `bytes`, `bytearray`, `memoryview` or `str` (UTF-8).
pub(crate) fn bytes_of(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(s.to_cow()?.as_bytes().to_vec());
    }
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(b) = value.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    if value.cast::<PyMemoryView>().is_ok() {
        let b = PyBytes::type_object(value.py()).call1((value,))?;
        return Ok(b.cast::<PyBytes>()?.as_bytes().to_vec());
    }
    // Not bytes(n) of an int, nor any iterable: a value is bytes or text.
    Err(PyTypeError::new_err(format!(
        "expected bytes, bytearray, memoryview or str, not {}",
        value.get_type().name()?
    )))
}

/// JackrabbitDLM's table codec, the default: every binding and
/// JackrabbitDLM's own Python client read what it writes.
#[pyclass(frozen, module = "dlm._native")]
#[derive(Clone, Copy, Debug, Default)]
pub struct TableEncoder;

#[pymethods]
impl TableEncoder {
    #[new]
    fn new() -> Self {
        Self
    }

    /// The stored text of `value` (`bytes` or `str`); `name` is unused.
    fn encode(&self, py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<String> {
        let plain = bytes_of(value)?;
        dlm::Encoder::encode(&dlm::TableEncoder, name, &plain).map_err(|e| to_py(py, e))
    }

    /// The bytes of a stored text; `EncodingError` if it is not the codec's.
    fn decode<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        stored: &str,
    ) -> PyResult<Bound<'py, PyBytes>> {
        dlm::Encoder::decode(&dlm::TableEncoder, name, stored)
            .map(|v| PyBytes::new(py, &v))
            .map_err(|e| to_py(py, e))
    }

    fn __repr__(&self) -> &'static str {
        "TableEncoder()"
    }
}

/// XChaCha20-Poly1305 under a 32-byte key, a random nonce per value and
/// the key's name as associated data: the server stores only ciphertext.
#[pyclass(frozen, module = "dlm._native")]
pub struct SealedEncoder {
    inner: Arc<dlm::SealedEncoder>,
}

#[pymethods]
impl SealedEncoder {
    /// An encoder with this key (exactly 32 bytes).
    #[new]
    fn new(py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Self> {
        let key = if key.is_instance_of::<PyString>() {
            // A str key would be a password, not 32 random bytes.
            return Err(crate::errors::invalid(
                py,
                "a sealed encoder's key is 32 bytes, not a str",
            ));
        } else {
            bytes_of(key)?
        };
        let inner = dlm::SealedEncoder::from_slice(&key).map_err(|e| to_py(py, e))?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// A fresh random 32-byte key from the operating system.
    #[staticmethod]
    fn generate_key(py: Python<'_>) -> PyResult<Bound<'_, PyBytes>> {
        dlm::SealedEncoder::generate_key()
            .map(|k| PyBytes::new(py, &k))
            .map_err(|e| to_py(py, e))
    }

    /// The sealed text of `value` for the key `name`.
    fn encode(&self, py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<String> {
        let plain = bytes_of(value)?;
        dlm::Encoder::encode(&*self.inner, name, &plain).map_err(|e| to_py(py, e))
    }

    /// Opens a sealed text; `EncodingError` if the key or name is wrong or
    /// the text was altered.
    fn decode<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        stored: &str,
    ) -> PyResult<Bound<'py, PyBytes>> {
        dlm::Encoder::decode(&*self.inner, name, stored)
            .map(|v| PyBytes::new(py, &v))
            .map_err(|e| to_py(py, e))
    }

    fn __repr__(&self) -> &'static str {
        "SealedEncoder(<key redacted>)"
    }
}

/// Stores the value's text as it is (it must be UTF-8) and reads it back
/// as bytes: for callers that encode values themselves, as the Locker does
/// with JackrabbitDLM's `Encoder`/`Decoder` functions.
#[pyclass(frozen, module = "dlm._native")]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawEncoder;

impl dlm::Encoder for RawEncoder {
    fn encode(&self, _name: &str, plain: &[u8]) -> dlm::Result<String> {
        String::from_utf8(plain.to_vec())
            .map_err(|_| dlm::Error::Encoding("a raw value must be UTF-8 text".to_owned()))
    }

    fn decode(&self, _name: &str, stored: &str) -> dlm::Result<Vec<u8>> {
        Ok(stored.as_bytes().to_vec())
    }
}

#[pymethods]
impl RawEncoder {
    #[new]
    fn new() -> Self {
        Self
    }

    fn __repr__(&self) -> &'static str {
        "RawEncoder()"
    }
}

/// A Python object with `encode(name, value: bytes) -> str` and
/// `decode(name, stored: str) -> bytes`.
struct PyEncoder(Py<PyAny>);

impl PyEncoder {
    fn call<T>(
        &self,
        method: &'static str,
        name: &str,
        arg: impl FnOnce(Python<'_>) -> PyResult<Bound<'_, PyAny>>,
        out: impl FnOnce(&Bound<'_, PyAny>) -> PyResult<T>,
    ) -> dlm::Result<T> {
        Python::attach(|py| {
            let result = arg(py)
                .and_then(|a| self.0.bind(py).call_method1(method, (name, a)))
                .and_then(|r| out(&r));
            result.map_err(|e| {
                let why = format!("the encoder's {method} failed: {e}");
                stash_callback_error(e);
                dlm::Error::Encoding(why)
            })
        })
    }
}

impl dlm::Encoder for PyEncoder {
    fn encode(&self, name: &str, plain: &[u8]) -> dlm::Result<String> {
        self.call(
            "encode",
            name,
            |py| Ok(PyBytes::new(py, plain).into_any()),
            |r| r.extract::<String>(),
        )
    }

    fn decode(&self, name: &str, stored: &str) -> dlm::Result<Vec<u8>> {
        self.call(
            "decode",
            name,
            |py| Ok(PyString::new(py, stored).into_any()),
            bytes_of,
        )
    }
}

/// The client's encoder for a Python `encoder=` argument: the native ones
/// as they are, anything else through its methods.
pub(crate) fn from_py(obj: &Bound<'_, PyAny>) -> PyResult<Arc<dyn dlm::Encoder>> {
    if obj.cast::<TableEncoder>().is_ok() {
        return Ok(Arc::new(dlm::TableEncoder));
    }
    if let Ok(sealed) = obj.cast::<SealedEncoder>() {
        return Ok(sealed.get().inner.clone());
    }
    if obj.cast::<RawEncoder>().is_ok() {
        return Ok(Arc::new(RawEncoder));
    }
    for method in ["encode", "decode"] {
        if !obj.getattr(method).is_ok_and(|m| m.is_callable()) {
            return Err(crate::errors::invalid(
                obj.py(),
                "an encoder needs encode(name, value) and decode(name, stored) methods",
            ));
        }
    }
    Ok(Arc::new(PyEncoder(obj.clone().unbind())))
}
