//! TLS settings for Python: [`Tls`] is the blocking crate's `dlm::Tls`
//! (rustls underneath), checked and built here, handed to the client
//! as is. The rules (which roots, which name is checked, what a refused
//! handshake says) are the Rust client's.

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::errors::invalid;

/// How a `Client` connects over TLS: the CA certificates to trust (a PEM
/// file, or the system's roots when `ca_file` is `None`), an optional
/// client certificate and key (PEM files, for servers started with
/// `--tls-client-ca`), and the name the server's certificate must carry.
/// The name is always checked: without `server_name`, it is the host of
/// the address given (for one address) or the IP address connected to.
#[pyclass(frozen, module = "dlm._native")]
pub struct Tls {
    inner: dlm::Tls,
}

impl Tls {
    /// The Rust settings for a client of `servers`: with one address, its
    /// host is the name checked unless one was given.
    pub(crate) fn for_servers(&self, servers: &str) -> dlm::Tls {
        let tls = self.inner.clone();
        if servers.contains(',') {
            tls
        } else {
            tls.default_server_name(servers.trim())
        }
    }
}

#[pymethods]
impl Tls {
    /// TLS settings. `ca_file`: PEM file of the CA certificates to trust
    /// (`None`: the operating system's roots); `client_cert` and
    /// `client_key`: PEM files of a certificate to present and its key,
    /// both or neither; `server_name`: the name the server's certificate
    /// must be valid for.
    #[new]
    #[pyo3(signature = (ca_file = None, *, client_cert = None, client_key = None, server_name = None))]
    fn new(
        py: Python<'_>,
        ca_file: Option<PathBuf>,
        client_cert: Option<PathBuf>,
        client_key: Option<PathBuf>,
        server_name: Option<String>,
    ) -> PyResult<Self> {
        let mut inner = dlm::Tls::new();
        if let Some(ca) = ca_file {
            inner = inner.ca_file(ca);
        }
        match (client_cert, client_key) {
            (Some(cert), Some(key)) => inner = inner.client_cert(cert, key),
            (None, None) => {}
            _ => {
                return Err(invalid(
                    py,
                    "client_cert and client_key go together: give both or neither",
                ));
            }
        }
        if let Some(name) = server_name {
            if name.is_empty() {
                return Err(invalid(py, "server_name is empty"));
            }
            inner = inner.server_name(name);
        }
        Ok(Self { inner })
    }

    /// The CA file trusted, or `None` for the system's roots.
    #[getter]
    fn ca_file(&self) -> Option<PathBuf> {
        self.inner.ca_file.clone()
    }

    /// The client certificate presented, if any.
    #[getter]
    fn client_cert(&self) -> Option<PathBuf> {
        self.inner.client_cert.as_ref().map(|(c, _)| c.clone())
    }

    /// The client certificate's key, if any.
    #[getter]
    fn client_key(&self) -> Option<PathBuf> {
        self.inner.client_cert.as_ref().map(|(_, k)| k.clone())
    }

    /// The name checked, if given (`None`: see the class).
    #[getter]
    fn server_name(&self) -> Option<String> {
        self.inner.server_name.clone()
    }

    fn __repr__(&self) -> String {
        let path = |p: &Option<PathBuf>| match p {
            Some(p) => format!("{:?}", p.display().to_string()),
            None => "None".to_owned(),
        };
        format!(
            "Tls(ca_file={}, client_cert={}, client_key={}, server_name={})",
            path(&self.inner.ca_file),
            path(&self.client_cert()),
            path(&self.client_key()),
            self.inner
                .server_name
                .as_ref()
                .map_or_else(|| "None".to_owned(), |n| format!("{n:?}")),
        )
    }
}
