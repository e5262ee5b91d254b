//! TLS on the client port (README, "TLS").
//!
//! Why rustls: it is pure Rust (no OpenSSL to install, link or patch), its
//! [`ServerConnection`](rustls::ServerConnection) is sans-I/O — the event
//! loop hands it the bytes it read and takes the bytes to write, so TLS
//! fits the one-thread epoll loop without a thread or a task per
//! connection — and its buffers have limits we can count against the
//! connection memory budget ([`CONN_CHARGE`]).
//!
//! This module loads the certificate, key and client CA from PEM files
//! (again on `SIGHUP`: connections keep the configuration they started
//! with, new ones get the new one), maps a client certificate to an
//! identity name, builds the mutual TLS between cluster members
//! ([`PeerTlsSettings`]), and writes a development CA and certificates
//! (`dlm-server tls new`).
//!
//! **Between cluster members** (`--peer-tls-cert`, `--peer-tls-key`,
//! `--peer-tls-ca`): every peer connection is mutual TLS. The dialing
//! member checks that the other's certificate chains to the peer CA and
//! names the IP address it dialed (the address in `--peers`); the
//! accepting member checks that the dialer's certificate chains to the
//! peer CA. The peer CA is a flag of its own, not `--tls-client-ca`:
//! a certificate the peer CA signed makes its holder a member (it can
//! vote, write the log and speak for relayed clients), while client
//! certificates are handed to every application; one CA for both would
//! let any application join the cluster.
//!
//! **A client certificate stands for an identity** (with
//! `--tls-client-ca`): its subject common name (CN) if that is a valid
//! identity name, otherwise its first DNS subject alternative name that
//! is. On that connection, a request whose `Name` is that identity is
//! authenticated by the certificate: its `Identity` field is not compared
//! (send any string, such as `""`). The identity must still exist in the
//! identity directory (for its `MaxSize`); other names still need their
//! secret.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};

/// Most plaintext answers rustls buffers, encrypted and unsent, for one
/// connection; past it, answers stay in the connection's own (counted)
/// output until the client reads.
pub const SEND_LIMIT: usize = 16 * 1024;

/// What a TLS connection's rustls state may hold beyond our own buffers,
/// charged to the connection memory budget for as long as it is open: one
/// incoming record being reassembled (16 KiB of plaintext, 2 KiB of
/// expansion, 5 of header), the decrypted plaintext rustls keeps until we
/// read it (it stops reading the socket past 16 KiB, so at most that and
/// one more record), the [`SEND_LIMIT`], and the connection's own state.
pub const CONN_CHARGE: usize = (16 * 1024 + 2048 + 5) + 2 * (16 * 1024) + SEND_LIMIT + 2048;

/// Where the TLS files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// The server's certificate chain, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates client certificates must chain to (PEM); `None`:
    /// no client certificates asked for.
    pub client_ca: Option<PathBuf>,
}

/// Where the files of the mutual TLS between cluster members are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerTlsSettings {
    /// This member's certificate chain (PEM), presented both when it
    /// dials and when it is dialed: valid for the IP address of its peer
    /// address, for serverAuth and clientAuth.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA certificates (PEM) every member's certificate must chain to.
    pub ca: PathBuf,
}

/// The rustls configurations of the peer connections: dialing and dialed.
#[derive(Clone, Debug)]
pub(crate) struct PeerTls {
    /// For links (this member dials).
    pub(crate) client: Arc<ClientConfig>,
    /// For accepted peer connections (this member is dialed).
    pub(crate) server: Arc<ServerConfig>,
}

/// Builds both sides of the members' mutual TLS from their files; every
/// problem is an error naming the file.
pub(crate) fn peer_config(settings: &PeerTlsSettings) -> io::Result<PeerTls> {
    let certs = read_certs("peer TLS certificate", &settings.cert)?;
    let key = read_key(&settings.key)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs("peer TLS CA", &settings.ca)? {
        roots
            .add(cert)
            .map_err(|e| file_error("peer TLS CA", &settings.ca, e))?;
    }
    let roots = Arc::new(roots);
    let mismatch = |e: rustls::Error| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "peer TLS certificate {} with key {}: {e}",
                settings.cert.display(),
                settings.key.display()
            ),
        )
    };
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .map_err(|e| file_error("peer TLS CA", &settings.ca, e))?;
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs.clone(), key.clone_key())
        .map_err(mismatch)?;
    server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    let client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(mismatch)?;
    Ok(PeerTls {
        client: Arc::new(client),
        server: Arc::new(server),
    })
}

/// A certificate's subject, for logs.
pub(crate) fn certificate_subject(cert: &CertificateDer<'_>) -> String {
    x509_parser::parse_x509_certificate(cert.as_ref()).map_or_else(
        |_| "(unparsable)".to_owned(),
        |(_, c)| c.subject().to_string(),
    )
}

/// The member ID a member certificate names: its subject CN is
/// `dlm-member-<ID>` (as `dlm-server tls new --member` writes it); `None`
/// for any other certificate, which may stand for any member.
pub(crate) fn certificate_member(cert: &CertificateDer<'_>) -> Option<u64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .find_map(|cn| cn.as_str().ok())?;
    cn.strip_prefix(MEMBER_CN_PREFIX)?.parse().ok()
}

/// How a member certificate's CN starts (followed by the member's ID).
pub const MEMBER_CN_PREFIX: &str = "dlm-member-";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(what: &str, path: &Path, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what} {}: {e}", path.display()),
    )
}

/// The certificates of a PEM file, at least one.
pub fn read_certs(what: &str, path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, e))?;
    if certs.is_empty() {
        return Err(file_error(what, path, "no CERTIFICATE block in the file"));
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn read_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error("TLS key", path, e))
}

/// Builds the server's TLS configuration from its files; every problem is
/// an error naming the file.
pub(crate) fn server_config(settings: &TlsSettings) -> io::Result<Arc<ServerConfig>> {
    let certs = read_certs("TLS certificate", &settings.cert)?;
    let key = read_key(&settings.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs("TLS client CA", path)? {
                roots
                    .add(cert)
                    .map_err(|e| file_error("TLS client CA", path, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| file_error("TLS client CA", path, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "TLS certificate {} with key {}: {e}",
                settings.cert.display(),
                settings.key.display()
            ),
        )
    })?;
    // No session tickets or resumption state to keep per client: a lock
    // client holds its connection open.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// The identity a client certificate stands for: its subject CN if that
/// is a valid identity name, otherwise its first DNS SAN that is.
pub(crate) fn certificate_identity(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .find_map(|cn| cn.as_str().ok())
        .filter(|n| crate::identity::valid_name(n));
    if let Some(cn) = cn {
        return Some(cn.to_owned());
    }
    let san = parsed.subject_alternative_name().ok().flatten()?;
    san.value.general_names.iter().find_map(|g| match g {
        x509_parser::extensions::GeneralName::DNSName(n) if crate::identity::valid_name(n) => {
            Some((*n).to_owned())
        }
        _ => None,
    })
}

/// What a TLS client reads when it says hello to the plaintext port: a
/// fatal `handshake_failure` alert (TLS 1.0 record version, which every
/// client accepts for an alert).
pub(crate) const ALERT_HANDSHAKE_FAILURE: &[u8] = &[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28];

/// Whether the first bytes on a plaintext connection are a TLS record
/// (a handshake record: the client hello). No request line starts with
/// the byte 0x16.
pub(crate) fn looks_like_tls(first: &[u8]) -> bool {
    first.first() == Some(&0x16)
}

/// The files `dlm-server tls new` wrote.
#[derive(Debug)]
pub struct DevPki {
    /// Every file written, in order.
    pub files: Vec<PathBuf>,
}

/// Writes a development CA (`ca.pem`, `ca.key`), a server certificate for
/// 127.0.0.1, `::1` and localhost plus `hosts` (`server.pem`, `server.key`),
/// and a client certificate for each of `clients` (`<name>.pem`,
/// `<name>.key`, its CN the name, so it stands for the identity of that
/// name). With `members`, also a CA of the cluster's own
/// (`members-ca.pem`, `members-ca.key`: not the clients' CA, so that no
/// client certificate makes a member) and a certificate per member ID
/// (`member-<ID>.pem`, `member-<ID>.key`, for the same names as the
/// server's, both serverAuth and clientAuth) for `--peer-tls-*`. Keys are
/// written with mode 0600. Refuses to overwrite.
pub fn write_dev_pki(
    dir: &Path,
    hosts: &[String],
    clients: &[String],
    members: &[u64],
) -> io::Result<DevPki> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let rc = |e: rcgen::Error| io::Error::other(e.to_string());
    for name in clients {
        if !crate::identity::valid_name(name)
            || name == "ca"
            || name == "server"
            || name == "members-ca"
            || name.starts_with("member-")
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{name:?} is not a usable client name (an identity name, not ca, server, members-ca or member-*)"
                ),
            ));
        }
    }
    if let Some(id) = members.iter().find(|id| !(1..=255).contains(*id)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("member {id}: a member ID is a number from 1 to 255"),
        ));
    }
    std::fs::create_dir_all(dir)?;
    let mut names = vec!["ca".to_owned(), "server".to_owned()];
    names.extend(clients.iter().cloned());
    if !members.is_empty() {
        names.push("members-ca".to_owned());
        names.extend(members.iter().map(|id| format!("member-{id}")));
    }
    for n in &names {
        for ext in ["pem", "key"] {
            let p = dir.join(format!("{n}.{ext}"));
            if p.exists() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists; not overwriting", p.display()),
                ));
            }
        }
    }

    let new_ca = |what: &str| -> io::Result<(rcgen::Certificate, KeyPair, CertificateParams)> {
        let key = KeyPair::generate().map_err(rc)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut dn = DistinguishedName::new();
        // A name of its own: two development CAs must not look like one
        // (a client would report a bad signature, not an unknown CA).
        let mut tag = [0u8; 4];
        getrandom::fill(&mut tag).map_err(|e| io::Error::other(e.to_string()))?;
        dn.push(
            DnType::CommonName,
            format!("dlm development {what} {}", u32::from_be_bytes(tag)),
        );
        params.distinguished_name = dn;
        let cert = params.self_signed(&key).map_err(rc)?;
        Ok((cert, key, params))
    };
    let (ca_cert, ca_key, ca_params) = new_ca("CA")?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let mut files = Vec::new();
    let mut write = |name: &str, cert: &rcgen::Certificate, key: &KeyPair| -> io::Result<()> {
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem())?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        files.push(cert_path);
        files.push(key_path);
        Ok(())
    };
    write("ca", &ca_cert, &ca_key)?;

    let mut sans = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    sans.extend(hosts.iter().cloned());
    let server_key = KeyPair::generate().map_err(rc)?;
    let mut server_params = CertificateParams::new(sans.clone()).map_err(rc)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "dlm-server");
    server_params.distinguished_name = dn;
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server_params.signed_by(&server_key, &issuer).map_err(rc)?;
    write("server", &server_cert, &server_key)?;

    for name in clients {
        let key = KeyPair::generate().map_err(rc)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name.as_str());
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer).map_err(rc)?;
        write(name, &cert, &key)?;
    }

    if !members.is_empty() {
        let (members_cert, members_key, members_params) = new_ca("members CA")?;
        write("members-ca", &members_cert, &members_key)?;
        let members_issuer = Issuer::new(members_params, &members_key);
        for id in members {
            let key = KeyPair::generate().map_err(rc)?;
            let mut params = CertificateParams::new(sans.clone()).map_err(rc)?;
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, format!("{MEMBER_CN_PREFIX}{id}"));
            params.distinguished_name = dn;
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = params.signed_by(&key, &members_issuer).map_err(rc)?;
            write(&format!("member-{id}"), &cert, &key)?;
        }
    }
    Ok(DevPki { files })
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_pki_loads_and_client_certificates_name_their_identity() {
        let dir = std::env::temp_dir().join(format!("dlm-tls-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pki = write_dev_pki(&dir, &[], &["alice".to_owned()], &[1, 2]).expect("write");
        assert_eq!(pki.files.len(), 12);
        // Member certificates load for both sides of the peer TLS, and
        // chain to the members' CA, not the clients' one.
        let member = |id: u64, ca: &str| PeerTlsSettings {
            cert: dir.join(format!("member-{id}.pem")),
            key: dir.join(format!("member-{id}.key")),
            ca: dir.join(ca),
        };
        assert!(peer_config(&member(1, "members-ca.pem")).is_ok());
        assert!(peer_config(&member(2, "members-ca.pem")).is_ok());
        let m1 = read_certs("t", &dir.join("member-1.pem")).expect("member 1");
        assert!(certificate_subject(&m1[0]).contains("dlm-member-1"));
        assert_eq!(certificate_member(&m1[0]), Some(1));
        let server = read_certs("t", &dir.join("server.pem")).expect("server");
        assert_eq!(certificate_member(&server[0]), None);
        let key_of_another = PeerTlsSettings {
            key: dir.join("member-2.key"),
            ..member(1, "members-ca.pem")
        };
        let err = peer_config(&key_of_another).expect_err("mismatched key");
        assert!(err.to_string().contains("member-1.pem"), "{err}");
        // A client name cannot take a member's file; member IDs are
        // those of --peers.
        assert!(write_dev_pki(&dir.join("x"), &[], &["member-1".to_owned()], &[]).is_err());
        assert!(write_dev_pki(&dir.join("x"), &[], &[], &[0]).is_err());
        let settings = TlsSettings {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            client_ca: Some(dir.join("ca.pem")),
        };
        assert!(server_config(&settings).is_ok());
        let alice = read_certs("t", &dir.join("alice.pem")).expect("alice");
        assert_eq!(certificate_identity(&alice[0]).as_deref(), Some("alice"));
        // The server certificate's CN is a valid identity name too.
        let server = read_certs("t", &dir.join("server.pem")).expect("server");
        assert_eq!(
            certificate_identity(&server[0]).as_deref(),
            Some("dlm-server")
        );
        // Never overwrites.
        assert!(write_dev_pki(&dir, &[], &[], &[]).is_err());
        // A key that is not the certificate's is refused, naming the files.
        let wrong = TlsSettings {
            cert: dir.join("server.pem"),
            key: dir.join("alice.key"),
            client_ca: None,
        };
        let err = server_config(&wrong).expect_err("mismatched key");
        assert!(err.to_string().contains("server.pem"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tls_records_are_told_from_request_lines() {
        assert!(looks_like_tls(&[0x16, 0x03, 0x01]));
        assert!(!looks_like_tls(b"{\"Action\":\"Version\"}\n"));
        assert!(!looks_like_tls(b""));
    }
}
