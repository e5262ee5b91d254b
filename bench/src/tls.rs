//! The load generator's TLS client: rustls (the workspace's TLS stack, with
//! `ring`, as the server and the Rust client use it) on tokio's sockets,
//! the same configuration for dlm and for Redis, so that the client side of
//! a TLS row costs the same whichever server it measures.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A client configuration trusting one CA, checking the server's
/// certificate against the IP address it connects to.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
}

impl core::fmt::Debug for Tls {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// Trusts the CA certificates in the PEM file `ca`.
    pub fn from_ca_file(ca: &Path) -> io::Result<Self> {
        let bad = |e: &dyn core::fmt::Display| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", ca.display()))
        };
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
        if roots.is_empty() {
            return Err(bad(&"no CA certificate"));
        }
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(io::Error::other)?
                .with_root_certificates(roots)
                .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// Runs the handshake on a connected socket to `addr`.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
    ) -> io::Result<TlsStream<TcpStream>> {
        let name = ServerName::IpAddress(addr.ip().into());
        TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
    }

    /// The protocol version and cipher suite a handshake with `addr`
    /// settles on (to print beside the figures).
    pub async fn negotiated(&self, addr: SocketAddr) -> io::Result<String> {
        let s = self.connect(TcpStream::connect(addr).await?, addr).await?;
        let (_, c) = s.get_ref();
        Ok(format!(
            "{:?} {:?}",
            c.protocol_version()
                .map_or_else(|| "?".into(), |v| format!("{v:?}")),
            c.negotiated_cipher_suite()
                .map_or_else(|| "?".into(), |s| format!("{:?}", s.suite())),
        )
        .replace('"', ""))
    }
}
