//! A peer connection's bytes, in plaintext or through rustls (mutual TLS
//! between members, `--peer-tls-*`), for the non-blocking loop: reads and
//! writes never block, and a TLS connection's records move as the socket
//! takes them, like the client port's TLS connections.
//!
//! A member with peer TLS refuses a member without (its first bytes are
//! not a TLS record), and one without refuses one with (its first bytes
//! are a TLS hello, not a frame): each with a reason in the log, rather
//! than a stall or a confusing frame error.

use std::io::{self, Read as _, Write as _};
use std::sync::Arc;

use mio::net::TcpStream;

use crate::cluster::transport::FrameReader;

/// Most plaintext rustls holds for one peer connection, encrypted and
/// unsent, beyond which the link's own (bounded) buffer keeps it.
const PEER_SEND_LIMIT: usize = 256 * 1024;

/// How a read ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ReadEnd {
    /// Everything there was was read; the connection stays.
    Open,
    /// The other side closed (or the socket failed).
    Closed,
    /// Refused, and why: not TLS where TLS is wanted, TLS where it is
    /// not, a failed handshake (a certificate from another CA, none).
    Refused(String),
}

/// A peer connection's socket and, with peer TLS, its rustls side.
pub(super) struct PeerStream {
    pub(super) stream: TcpStream,
    tls: Option<Box<rustls::Connection>>,
    /// Nothing was read yet (the first bytes are checked).
    fresh: bool,
    /// The member dialed, whose certificate is checked once the
    /// handshake is done (before anything is sent on it).
    dialed: Option<u64>,
}

impl PeerStream {
    /// A connection this member dialed: TLS with `config` (checking that
    /// the other's certificate names `addr`'s IP), or plaintext.
    pub(super) fn dialed(
        stream: TcpStream,
        config: Option<&Arc<rustls::ClientConfig>>,
        node: u64,
        addr: std::net::SocketAddr,
    ) -> Result<Self, String> {
        let tls = match config {
            None => None,
            Some(c) => {
                let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                let mut conn = rustls::ClientConnection::new(c.clone(), name)
                    .map_err(|e| format!("cannot start TLS: {e}"))?;
                conn.set_buffer_limit(Some(PEER_SEND_LIMIT));
                Some(Box::new(rustls::Connection::Client(conn)))
            }
        };
        // What the dialed member sends back is TLS's own (its hello, or
        // an alert that says why it refuses): not checked.
        Ok(Self {
            stream,
            tls,
            fresh: false,
            dialed: Some(node),
        })
    }

    /// A connection this member accepted: TLS with `config` (which asks
    /// for the dialer's certificate), or plaintext.
    pub(super) fn accepted(
        stream: TcpStream,
        config: Option<&Arc<rustls::ServerConfig>>,
    ) -> Result<Self, String> {
        let tls = match config {
            None => None,
            Some(c) => {
                let mut conn = rustls::ServerConnection::new(c.clone())
                    .map_err(|e| format!("cannot start TLS: {e}"))?;
                conn.set_buffer_limit(Some(PEER_SEND_LIMIT));
                Some(Box::new(rustls::Connection::Server(conn)))
            }
        };
        Ok(Self {
            stream,
            tls,
            fresh: true,
            dialed: None,
        })
    }

    /// Whether it speaks TLS.
    pub(super) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether frames can flow: plaintext, or the handshake is done.
    pub(super) fn handshaken(&self) -> bool {
        self.tls.as_ref().is_none_or(|t| !t.is_handshaking())
    }

    /// The subject of the other side's certificate (TLS, after the
    /// handshake), for logs.
    pub(super) fn peer_subject(&self) -> Option<String> {
        let t = self.tls.as_ref()?;
        t.peer_certificates()
            .and_then(|c| c.first())
            .map(crate::tls::certificate_subject)
    }

    /// Whether the other side's certificate may stand for member `node`:
    /// a certificate naming a member (CN `dlm-member-<ID>`) only for that
    /// one; any other (and plaintext) for any member. `Err` says why not.
    pub(super) fn check_member(&self, node: u64) -> Result<(), String> {
        self.tls
            .as_deref()
            .map_or(Ok(()), |t| check_member(t, node))
    }

    /// Checks the first bytes, once: a TLS record where plaintext frames
    /// are expected, or anything else where TLS is.
    fn check_first(&mut self) -> Option<ReadEnd> {
        if !self.fresh {
            return None;
        }
        let mut first = [0u8; 2];
        let Ok(n) = self.stream.peek(&mut first) else {
            return None;
        };
        if n == 0 {
            return None;
        }
        self.fresh = false;
        let tls_record = first[0] == 0x16 && (n < 2 || first[1] == 0x03);
        match (self.tls.is_some(), tls_record) {
            (true, false) => Some(ReadEnd::Refused(
                "not TLS: this member's peer connections are mutual TLS (--peer-tls-cert), the other member has none".into(),
            )),
            // A frame's length never has 0x03 for its second byte below
            // 1 KiB, and a hello is shorter: this is a TLS hello.
            (false, true) if n == 2 => Some(ReadEnd::Refused(
                "a TLS hello: the other member uses peer TLS (--peer-tls-cert), this one does not".into(),
            )),
            _ => None,
        }
    }

    /// Reads what arrived, decrypted if TLS, into `into`. Without TLS a
    /// short read ends it (the socket is drained; edge-triggered epoll
    /// says when more arrives) unless `hung_up` (epoll said the other end
    /// closed: read to that end).
    pub(super) fn read_into(
        &mut self,
        into: &mut FrameReader,
        chunk: &mut [u8],
        hung_up: bool,
    ) -> ReadEnd {
        if let Some(refused) = self.check_first() {
            return refused;
        }
        let Some(tls) = self.tls.as_deref_mut() else {
            loop {
                match self.stream.read(chunk) {
                    Ok(0) => return ReadEnd::Closed,
                    Ok(n) => {
                        into.push(&chunk[..n]);
                        if n < chunk.len() && !hung_up {
                            return ReadEnd::Open;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadEnd::Open,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return ReadEnd::Closed,
                }
            }
        };
        loop {
            let (eof, drained) = match tls.read_tls(&mut self.stream) {
                Ok(0) => (true, false),
                Ok(_) => (false, false),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => (false, true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return ReadEnd::Closed,
            };
            if let Err(e) = tls.process_new_packets() {
                // rustls queued an alert that tells the other side why.
                let _ = flush_tls(tls, &mut self.stream);
                return ReadEnd::Refused(explain(&e));
            }
            // The member dialed must be the one its certificate names,
            // before the frames rustls now holds go out.
            if !tls.is_handshaking()
                && let Some(node) = self.dialed.take()
                && let Err(why) = check_member(tls, node)
            {
                return ReadEnd::Refused(why);
            }
            loop {
                match tls.reader().read(chunk) {
                    // close_notify.
                    Ok(0) => return ReadEnd::Closed,
                    Ok(n) => into.push(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => return ReadEnd::Closed,
                }
            }
            // Handshake messages to answer with.
            if flush_tls(tls, &mut self.stream).is_err() {
                return ReadEnd::Closed;
            }
            if eof {
                return if tls.is_handshaking() {
                    ReadEnd::Refused("TLS: the connection closed during the handshake".into())
                } else {
                    ReadEnd::Closed
                };
            }
            if drained {
                return ReadEnd::Open;
            }
        }
    }

    /// Writes as much of `data` as the socket (and rustls) take; returns
    /// how much was taken. `Ok(0)` with data: come back when writable.
    pub(super) fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return match self.stream.write(data) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(0),
                other => other,
            };
        };
        let took = if data.is_empty() {
            0
        } else {
            tls.writer().write(data)?
        };
        flush_tls(tls, &mut self.stream)?;
        Ok(took)
    }

    /// Writes what rustls holds (handshake records, encrypted frames).
    pub(super) fn flush(&mut self) -> io::Result<()> {
        match self.tls.as_deref_mut() {
            Some(tls) => flush_tls(tls, &mut self.stream),
            None => Ok(()),
        }
    }

    /// Says goodbye in TLS (`close_notify`), best effort.
    pub(super) fn close_notify(&mut self) {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.send_close_notify();
            let _ = flush_tls(tls, &mut self.stream);
        }
    }
}

/// Whether `tls`'s other side may stand for member `node`: a certificate
/// naming a member (CN `dlm-member-<ID>`) only for that one.
fn check_member(tls: &rustls::Connection, node: u64) -> Result<(), String> {
    let named = tls
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(crate::tls::certificate_member);
    match named {
        Some(id) if id != node => Err(format!(
            "it is member {node} by its address or hello, but its certificate is member {id}'s"
        )),
        _ => Ok(()),
    }
}

/// Why a TLS peer connection failed, in an operator's words.
fn explain(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(why) => format!(
            "its certificate is refused ({why:?}): not signed by --peer-tls-ca, expired, or not for the address dialed"
        ),
        rustls::Error::NoCertificatesPresented => {
            "it presented no certificate (mutual TLS: every member needs --peer-tls-cert)".into()
        }
        rustls::Error::AlertReceived(alert) => format!(
            "it refused this member ({alert:?}): it does not trust this member's certificate (another --peer-tls-ca?)"
        ),
        other => format!("TLS: {other}"),
    }
}

/// Writes rustls's records until it has none or the socket is full.
fn flush_tls(tls: &mut rustls::Connection, stream: &mut TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(stream) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
