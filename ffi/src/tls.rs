//! TLS to the server, with rustls.
//!
//! Why rustls: pure Rust (nothing to install or link, which also keeps
//! libdlm and the Go package free of OpenSSL), safe defaults (TLS 1.2 and
//! 1.3 only, no renegotiation), certificate and name checking always on,
//! and errors precise enough to say *why* a handshake failed.
//!
//! [`Tls`] says whom to trust (a CA file, or the system's roots), which
//! name the server's certificate must carry, and optionally the client
//! certificate to present. The client wraps each of its sockets in a
//! `Stream`: plaintext, or TLS with the handshake done at connect time.
//!
//! An async client drives its own sockets: it reads the files once with
//! [`Tls::config`], hands [`TlsConfig::client_config`] and
//! [`TlsConfig::server_name`] to its TLS library (dlm-tokio: tokio-rustls,
//! over the same rustls), and passes the errors through [`explained`] so
//! that they say why, in the same words as this client's, and
//! [`is_tls_failure`] tells it not to try again.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::error::{Error, Result};

/// The rustls this crate builds its configuration with (0.23, `ring`).
pub use rustls;

/// How to connect with TLS.
///
/// ```no_run
/// # fn main() -> dlm::Result<()> {
/// let tls = dlm::Tls::new()
///     .ca_file("/etc/dlm/ca.pem")
///     .server_name("dlm.internal")
///     .client_cert("/etc/dlm/app.pem", "/etc/dlm/app.key");
/// let client = dlm::Client::connect_with(
///     "dlm.internal:37373",
///     dlm::Options::new().tls(tls),
/// )?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Tls {
    /// CA certificates (PEM) the server's certificate must chain to;
    /// `None`: the operating system's trusted roots.
    pub ca_file: Option<PathBuf>,
    /// The name the server's certificate must be valid for (and the SNI
    /// sent); `None`: the IP address connected to.
    pub server_name: Option<String>,
    /// A client certificate chain and its key (PEM), for servers that ask
    /// for one (with `--tls-client-ca`; its CN can stand for an identity).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl Tls {
    /// TLS trusting the system's roots, checking the server's IP address.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trust the CA certificates of this PEM file instead of the system's.
    #[must_use]
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// The name the server's certificate must be valid for (a DNS name
    /// or an IP address).
    #[must_use]
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Unless a name was given, the host of `addr` (`host:port` or
    /// `[v6]:port`) is the name the server's certificate must carry:
    /// what a caller with the server's address as text wants.
    #[must_use]
    pub fn default_server_name(mut self, addr: &str) -> Self {
        if self.server_name.is_none() {
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            self.server_name = Some(host.to_owned());
        }
        self
    }

    /// Present this certificate chain and key (PEM files).
    #[must_use]
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some((cert.into(), key.into()));
        self
    }

    /// Reads the files and builds what every connection shares: a CA
    /// file that cannot be read or holds no certificate, a client
    /// certificate or key that cannot be read, or a server name that is
    /// neither a DNS name nor an IP address is an error here, before any
    /// connection.
    pub fn config(&self) -> Result<TlsConfig> {
        let roots = match &self.ca_file {
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in read_certs("TLS CA", path)? {
                    roots.add(cert).map_err(|e| setup("TLS CA", path, e))?;
                }
                roots
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let mut roots = rustls::RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(Error::InvalidArgument(
                        "TLS: no trusted root certificates found on this system; give a CA file",
                    ));
                }
                roots
            }
        };
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::System(io::Error::other(e)))?
                .with_root_certificates(roots);
        let config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let certs = read_certs("TLS client certificate", cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| setup("TLS client key", key, e))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| setup("TLS client certificate", cert, e))?
            }
        };
        let name = match &self.server_name {
            Some(n) => Some(ServerName::try_from(n.clone()).map_err(|_| {
                Error::InvalidArgument("TLS: the server name is not a DNS name or IP address")
            })?),
            None => None,
        };
        Ok(TlsConfig {
            config: Arc::new(config),
            name,
        })
    }
}

fn setup(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::System(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what} {}: {e}", path.display()),
    ))
}

fn read_certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| setup(what, path, e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| setup(what, path, e))?;
    if certs.is_empty() {
        return Err(setup(what, path, "no CERTIFICATE block in the file"));
    }
    Ok(certs)
}

/// What a client's connections share, made by [`Tls::config`]: the rustls
/// configuration and the name to check.
#[derive(Clone)]
pub struct TlsConfig {
    config: Arc<ClientConfig>,
    name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// The rustls client configuration: trust, protocol versions, the
    /// client certificate.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// The name the certificate of the server at `ip` must carry (and the
    /// SNI to send): the one given, or else that address.
    pub fn server_name(&self, ip: IpAddr) -> ServerName<'static> {
        self.name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(ip.into()))
    }
}

/// A connection to the server: plaintext, or TLS over TCP.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// Wraps a connected socket: with `tls`, after a handshake that must
    /// finish within `timeout`.
    pub(crate) fn open(
        tcp: TcpStream,
        tls: Option<&TlsConfig>,
        addr: SocketAddr,
        timeout: Duration,
    ) -> io::Result<Self> {
        let Some(tls) = tls else {
            return Ok(Self::Plain(tcp));
        };
        let name = tls.server_name(addr.ip());
        let mut conn = ClientConnection::new(tls.config.clone(), name).map_err(|e| explain(&e))?;
        let mut tcp = tcp;
        let limit = Some(timeout.max(Duration::from_millis(1)));
        tcp.set_read_timeout(limit)?;
        tcp.set_write_timeout(limit)?;
        while conn.is_handshaking() {
            match conn.complete_io(&mut tcp) {
                Ok(_) => {}
                Err(e) => return Err(explained(e)),
            }
        }
        Ok(Self::Tls(Box::new(StreamOwned::new(conn, tcp))))
    }

    /// The socket under it, for timeouts and cancelling.
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            Self::Tls(s) => s.read(buf).map_err(explained),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            Self::Tls(s) => s.write(buf).map_err(explained),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(s) => s.flush().map_err(explained),
        }
    }
}

/// An I/O error that carries a rustls error (as rustls's and
/// tokio-rustls's streams return them) becomes one that says why the
/// handshake or session failed, in words that point at the fix; any other
/// is returned as it is.
pub fn explained(e: io::Error) -> io::Error {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(tls) => explain(tls),
        None => e,
    }
}

/// Why a TLS handshake (or session) failed: what
/// [`Error::tls_failure`](crate::Error::tls_failure) reports, so that a
/// binding can raise a typed error without reading the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The server's certificate is not signed by a trusted CA.
    UnknownCa,
    /// The server's certificate is for another name.
    NameMismatch,
    /// The server's certificate has expired.
    Expired,
    /// The server's certificate is not valid yet.
    NotValidYet,
    /// The server's certificate was refused for another reason.
    BadCertificate,
    /// The server refused the client's certificate (or the lack of one).
    ClientCertificateRefused,
    /// The server did not speak TLS, or refused the handshake.
    NotTls,
    /// Anything else TLS reported.
    Other,
}

impl TlsFailure {
    /// A short name: `unknown_ca`, `name_mismatch`, `expired`,
    /// `not_valid_yet`, `bad_certificate`, `client_certificate_refused`,
    /// `not_tls` or `other`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::UnknownCa => "unknown_ca",
            Self::NameMismatch => "name_mismatch",
            Self::Expired => "expired",
            Self::NotValidYet => "not_valid_yet",
            Self::BadCertificate => "bad_certificate",
            Self::ClientCertificateRefused => "client_certificate_refused",
            Self::NotTls => "not_tls",
            Self::Other => "other",
        }
    }
}

/// The error inside the `io::Error` of a failed handshake: its reason and
/// its explanation.
#[derive(Debug)]
struct Failed {
    reason: TlsFailure,
    text: String,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Failed {}

/// Says why a TLS handshake (or session) failed, in words that point at
/// the fix.
pub(crate) fn explain(e: &rustls::Error) -> io::Error {
    use TlsFailure as R;
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let (reason, why) = match e {
        E::InvalidCertificate(c) => match c {
            C::UnknownIssuer => (
                R::UnknownCa,
                format!(
                    "TLS: the server's certificate is not signed by a trusted CA (unknown CA): {e}"
                ),
            ),
            C::NotValidForName | C::NotValidForNameContext { .. } => (
                R::NameMismatch,
                format!("TLS: the server's certificate is for another name (name mismatch): {e}"),
            ),
            C::Expired | C::ExpiredContext { .. } => (
                R::Expired,
                format!("TLS: the server's certificate has expired: {e}"),
            ),
            C::NotValidYet | C::NotValidYetContext { .. } => (
                R::NotValidYet,
                format!("TLS: the server's certificate is not valid yet (check the clocks): {e}"),
            ),
            _ => (
                R::BadCertificate,
                format!("TLS: the server's certificate was refused: {e}"),
            ),
        },
        E::AlertReceived(
            A::UnknownCA
            | A::BadCertificate
            | A::CertificateRequired
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::AccessDenied,
        ) => (
            R::ClientCertificateRefused,
            format!("TLS: the server refused our client certificate: {e}"),
        ),
        E::AlertReceived(A::HandshakeFailure) => (
            R::NotTls,
            format!("TLS: the server refused the handshake (is that port plaintext?): {e}"),
        ),
        E::InvalidMessage(_) => (
            R::NotTls,
            format!("TLS: the server did not answer in TLS (a plaintext port?): {e}"),
        ),
        _ => (R::Other, format!("TLS: {e}")),
    };
    io::Error::new(io::ErrorKind::InvalidData, Failed { reason, text: why })
}

/// Why `e` failed, if TLS failed it (a refusal that trying again will not
/// fix).
pub(crate) fn failure_of(e: &io::Error) -> Option<TlsFailure> {
    if e.kind() != io::ErrorKind::InvalidData {
        return None;
    }
    e.get_ref()?.downcast_ref::<Failed>().map(|f| f.reason)
}

/// Whether `e` came from TLS, as [`explained`] made it: a refusal that
/// trying again will not fix, so a client says it at once.
pub fn is_tls_failure(e: &io::Error) -> bool {
    failure_of(e).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanations_name_the_cause() {
        use rustls::CertificateError as C;
        let unknown = explain(&rustls::Error::InvalidCertificate(C::UnknownIssuer));
        assert!(unknown.to_string().contains("unknown CA"));
        assert!(is_tls_failure(&unknown));
        let expired = explain(&rustls::Error::InvalidCertificate(C::Expired));
        assert!(expired.to_string().contains("expired"));
        let name = explain(&rustls::Error::InvalidCertificate(C::NotValidForName));
        assert!(name.to_string().contains("name mismatch"));
        assert_eq!(failure_of(&unknown), Some(TlsFailure::UnknownCa));
        assert_eq!(failure_of(&name), Some(TlsFailure::NameMismatch));
        assert!(!is_tls_failure(&io::Error::other("x")));
        // A message that only looks like one is not one.
        let lookalike = io::Error::new(io::ErrorKind::InvalidData, "TLS: unknown CA");
        assert!(!is_tls_failure(&lookalike));
    }

    #[test]
    fn the_default_name_is_the_host_of_the_address() {
        let name = |addr| Tls::new().default_server_name(addr).server_name.unwrap();
        assert_eq!(name("db.example:37373"), "db.example");
        assert_eq!(name("[::1]:37373"), "::1");
        assert_eq!(name("127.0.0.1:1"), "127.0.0.1");
        let given = Tls::new().server_name("x").default_server_name("y:1");
        assert_eq!(given.server_name.as_deref(), Some("x"));
    }
}
