//! A connection's byte stream: plaintext TCP, or TLS over it with
//! tokio-rustls.
//!
//! Why tokio-rustls: it is rustls (the blocking `dlm` crate's TLS) driven
//! by tokio's sockets, so the trust, versions, client certificates and the
//! words an error is explained in are the blocking client's own: the
//! configuration comes from [`dlm::Tls::config`] and every error passes
//! through [`dlm::tls::explained`]. The handshake is done when the
//! connection is opened, within the connection's time limit.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use dlm::tls::{TlsConfig, explained};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// What every TLS connection of a client shares.
#[derive(Clone)]
pub(crate) struct Tls {
    config: TlsConfig,
    connector: TlsConnector,
}

impl Tls {
    /// Reads the files `tls` names (an error here is the caller's: a file
    /// missing, a name that is no name).
    pub(crate) fn new(tls: &dlm::Tls) -> crate::Result<Self> {
        let config = tls.config()?;
        let connector = TlsConnector::from(config.client_config());
        Ok(Self { config, connector })
    }
}

/// A connected socket, with or without TLS.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Wraps `tcp`, connected to `addr`: with `tls`, once the handshake is
    /// done (the caller bounds how long it may take). A refused handshake
    /// says why ([`dlm::tls::is_tls_failure`] is true of it).
    pub(crate) async fn open(
        tcp: TcpStream,
        tls: Option<&Tls>,
        addr: SocketAddr,
    ) -> io::Result<Self> {
        let _ = tcp.set_nodelay(true);
        let Some(tls) = tls else {
            return Ok(Self::Plain(tcp));
        };
        let name = tls.config.server_name(addr.ip());
        let stream = tls.connector.connect(name, tcp).await.map_err(explained)?;
        Ok(Self::Tls(Box::new(stream)))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf).map_err(explained),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf).map_err(explained),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx).map_err(explained),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx).map_err(explained),
        }
    }
}
