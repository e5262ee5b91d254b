//! Configuration: command line (clap), `DLM_*` environment variables and an
//! optional TOML file, merged in that order of precedence over defaults.
//!
//! `dlm-server [HOST] [PORT]` takes its address as JackrabbitDLM does; every
//! other setting is a flag. Sizes accept `K`/`KiB`, `M`/`MiB`, `G`/`GiB`
//! suffixes; durations accept `ms`, `s`, `m`, `h` (bare numbers are seconds).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser};
use dlm_core::limits::{self, Limits};
use dlm_core::time::Ttl;
use serde::Deserialize;

/// The default port (JackrabbitDLM's).
pub const DEFAULT_PORT: u16 = 37373;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "dlm-server",
    version,
    about = "dlm: a distributed lock manager and volatile state coordinator",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// A subcommand instead of serving.
    #[command(subcommand)]
    pub command: Option<Subcommand>,
    /// Server settings.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Subcommand {
    /// Manage identities (named secrets for authenticated requests).
    #[command(subcommand)]
    Identity(IdentitySubcommand),
    /// TLS certificates for development.
    #[command(subcommand)]
    Tls(TlsSubcommand),
}

/// `tls` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TlsSubcommand {
    /// Write a development CA (`ca.pem`/`ca.key`), a server certificate
    /// for localhost, 127.0.0.1 and `::1` (`server.pem`/`server.key`) and a
    /// client certificate per `--client NAME` (`NAME.pem`/`NAME.key`, its
    /// CN the identity it stands for) into DIR; with `--member ID`, also
    /// a CA for cluster members (`members-ca.pem`) and a certificate per
    /// member (`member-ID.pem`/`member-ID.key`) for `--peer-tls-*`. Never
    /// overwrites.
    New {
        /// Where to write them (created if missing).
        dir: PathBuf,
        /// A client certificate for this identity name (repeatable).
        #[arg(long = "client", value_name = "NAME")]
        clients: Vec<String>,
        /// Another DNS name or IP address for the server certificate
        /// and the member certificates (repeatable; a member's must name
        /// the IP address of its peer address).
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
        /// A certificate for the cluster member of this ID, signed by a
        /// CA of the members' own (repeatable).
        #[arg(long = "member", value_name = "ID")]
        members: Vec<u64>,
    },
}

/// `identity` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum IdentitySubcommand {
    /// Create `<dir>/<NAME>.cfg` with a new random secret (mode 0600).
    New {
        /// The identity's name: letters, digits, `-`, `_`, `.`.
        name: String,
        /// Where identities live.
        #[arg(long, env = "DLM_IDENTITY_DIR", default_value = ".")]
        identity_dir: PathBuf,
        /// Largest `DataStore` the identity may put, in bytes.
        #[arg(long, value_parser = parse_size)]
        max_size: Option<u64>,
        /// Make it an administrator: it may list the lock table, see a
        /// lock's queue and revoke locks (`dlm admin`, the dashboard).
        #[arg(long)]
        admin: bool,
    },
}

/// Settings for serving; every one may also come from the environment or
/// the config file.
#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1; give 0.0.0.0 for all
    /// interfaces).
    #[arg(value_name = "HOST")]
    pub host_pos: Option<String>,
    /// Port to listen on (default 37373; 0 picks a free one).
    #[arg(value_name = "PORT")]
    pub port_pos: Option<u16>,
    /// TOML config file.
    #[arg(short, long, env = "DLM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (same as HOST).
    #[arg(long, env = "DLM_HOST")]
    pub host: Option<String>,
    /// Port to listen on (same as PORT).
    #[arg(long, env = "DLM_PORT")]
    pub port: Option<u16>,
    /// Longest request line, enforced while reading [default: 1MiB].
    #[arg(long, env = "DLM_MAX_LINE", value_parser = parse_size)]
    pub max_line: Option<u64>,
    /// Largest anonymous `DataStore` [default: 16KiB].
    #[arg(long, env = "DLM_MAX_DATA", value_parser = parse_size)]
    pub max_data: Option<u64>,
    /// Longest anonymous `Expire`/`Wait` [default: 3543s].
    #[arg(long, env = "DLM_MAX_TTL_ANONYMOUS", value_parser = parse_duration)]
    pub max_ttl_anonymous: Option<Duration>,
    /// Longest `Expire`/`Wait` for identities [default: 366 days].
    #[arg(long, env = "DLM_MAX_TTL", value_parser = parse_duration)]
    pub max_ttl: Option<Duration>,
    /// Most open connections; when full, the connection idle longest
    /// (and at least the idle timeout) makes room, or the newcomer is
    /// refused with an error line (a cluster follower counts the clients
    /// it relays to the leader too, and refuses past it) [default: 4096].
    #[arg(long, env = "DLM_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Close a connection that stalls this long in the middle of a line,
    /// sends nothing this long after connecting, or does not read its
    /// answers for this long [default: 10s].
    #[arg(long, env = "DLM_IDLE_TIMEOUT", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Most memory all connections together may hold beyond 32 KiB each
    /// (partial lines, answers unsent or held behind a wait); past it,
    /// reading pauses until answers drain [default: 256MiB].
    #[arg(long, env = "DLM_CONNECTION_MEMORY", value_parser = parse_size)]
    pub connection_memory: Option<u64>,
    /// Most memory for locks, data and waiters; past it, new entries are
    /// refused with `NO` [default: 1GiB].
    #[arg(long, env = "DLM_MEMORY_BUDGET", value_parser = parse_size)]
    pub memory_budget: Option<u64>,
    /// Most bytes of events a watching connection may leave unread; past
    /// it, the watcher is cut off with a line saying so [default: 1MiB].
    #[arg(long, env = "DLM_WATCH_BUDGET", value_parser = parse_size)]
    pub watch_budget: Option<u64>,
    /// Most changes kept for watchers that resume from a revision (and at
    /// most 16 MiB of them). A cluster member keeps them from its start,
    /// watched or not, which costs it a copy of every change; 0 keeps
    /// none (a watch then starts only from the current revision)
    /// [default: 10000].
    #[arg(long, env = "DLM_WATCH_HISTORY")]
    pub watch_history: Option<usize>,
    /// Directory of `<Name>.cfg` identity files.
    #[arg(long, env = "DLM_IDENTITY_DIR")]
    pub identity_dir: Option<PathBuf>,
    /// How often to append the statistics line to the log file [default: 1h].
    #[arg(long, env = "DLM_STATS_INTERVAL", value_parser = parse_duration)]
    pub stats_interval: Option<Duration>,
    /// File the statistics lines are appended to (JackrabbitDLM's format).
    #[arg(long, env = "DLM_LOG_FILE")]
    pub log_file: Option<PathBuf>,
    /// Worker threads of the runtime around the connection loop
    /// [default: 1].
    #[arg(long, env = "DLM_THREADS")]
    pub threads: Option<usize>,
    /// After serving a burst, keep polling this long before sleeping: lower
    /// latency for lone clients and lock hand-overs, for CPU spent waiting
    /// [default: 0, off].
    #[arg(long, env = "DLM_BUSY_POLL", value_parser = parse_duration)]
    pub busy_poll: Option<Duration>,
    /// This member's ID in a cluster (with --peers).
    #[arg(long, env = "DLM_NODE")]
    pub node: Option<u64>,
    /// Every cluster member as ID=HOST:PORT (this one included: it listens
    /// there for its peers), comma-separated.
    #[arg(long, env = "DLM_PEERS", value_parser = parse_peers)]
    pub peers: Option<Peers>,
    /// Keep the log and snapshots here (durable; alone: a cluster of one).
    #[arg(long, env = "DLM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Join a running cluster as a new member (added with `dlm cluster
    /// add`) instead of starting a new one with --peers.
    #[arg(long, env = "DLM_JOIN")]
    pub join: bool,
    /// Applied entries between a cluster member's snapshots (after which
    /// its log is compacted) [default: 20000].
    #[arg(long, env = "DLM_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,
    /// The address (HOST:PORT) clients reach this member at, which the
    /// `Cluster` answer tells them so that they can find the leader
    /// [default: the address it listens on, unless that is 0.0.0.0 or ::].
    #[arg(long, env = "DLM_ADVERTISE", value_parser = parse_advertise)]
    pub advertise: Option<String>,
    /// Serve Prometheus metrics (`/metrics`), `/healthz`, `/readyz` and the
    /// dashboard (`/`) over HTTP on this address [default: off].
    #[arg(long, env = "DLM_HTTP")]
    pub http: Option<SocketAddr>,
    /// Serve TLS on the client port with this certificate chain (PEM);
    /// needs --tls-key. Re-read on SIGHUP.
    #[arg(long, env = "DLM_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM). Re-read on SIGHUP.
    #[arg(long, env = "DLM_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates chaining to these CA certificates
    /// (PEM); a certificate stands for the identity named by its subject
    /// CN (or first DNS SAN). Re-read on SIGHUP.
    #[arg(long, env = "DLM_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// With TLS on the client port: also serve plaintext on this port of
    /// the same host (0 picks a free one), for clients without TLS.
    #[arg(long, env = "DLM_PLAINTEXT_PORT")]
    pub plaintext_port: Option<u16>,
    /// Refuse requests carrying an identity (`Name`/`Identity`) on
    /// plaintext connections, so no secret crosses the network in clear.
    #[arg(long, env = "DLM_REQUIRE_TLS_FOR_IDENTITIES")]
    pub require_tls_for_identities: bool,
    /// In a cluster: mutual TLS between members, this member presenting
    /// this certificate chain (PEM; valid for the IP address of its peer
    /// address, for server and client authentication); needs
    /// --peer-tls-key and --peer-tls-ca. Required with --tls-cert in a
    /// cluster (followers relay their clients' bytes to the leader).
    /// Re-read on SIGHUP.
    #[arg(long, env = "DLM_PEER_TLS_CERT")]
    pub peer_tls_cert: Option<PathBuf>,
    /// The private key of --peer-tls-cert (PEM). Re-read on SIGHUP.
    #[arg(long, env = "DLM_PEER_TLS_KEY")]
    pub peer_tls_key: Option<PathBuf>,
    /// The CA certificates (PEM) every member's certificate must chain
    /// to; a member presenting another, or no TLS, is refused. Keep it
    /// apart from --tls-client-ca: whoever holds a certificate it signed
    /// is a member. Re-read on SIGHUP.
    #[arg(long, env = "DLM_PEER_TLS_CA")]
    pub peer_tls_ca: Option<PathBuf>,
}

/// Checks an advertised client address (`HOST:PORT`, as clients take it).
pub fn parse_advertise(text: &str) -> Result<String, String> {
    let text = text.trim();
    dlm_core::client::failover::check_address(text).map_err(|e| format!("{text:?}: {e}"))?;
    Ok(text.to_owned())
}

/// Cluster members: ID to peer address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peers(pub std::collections::BTreeMap<u64, SocketAddr>);

/// Parses `1=127.0.0.1:7001,2=127.0.0.1:7002`.
pub fn parse_peers(text: &str) -> Result<Peers, String> {
    let mut peers = std::collections::BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: expected ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("{part:?}: the ID must be a number from 1 to 255"))?;
        if !(1..=255).contains(&id) {
            return Err(format!("{part:?}: the ID must be a number from 1 to 255"));
        }
        let addr = addr
            .trim()
            .to_socket_addrs()
            .map_err(|e| format!("{part:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("{part:?}: no address"))?;
        if peers.insert(id, addr).is_some() {
            return Err(format!("member {id} given twice"));
        }
    }
    if peers.is_empty() {
        return Err("no members".into());
    }
    Ok(peers.into())
}

impl From<std::collections::BTreeMap<u64, SocketAddr>> for Peers {
    fn from(m: std::collections::BTreeMap<u64, SocketAddr>) -> Self {
        Self(m)
    }
}

/// How this server takes part in a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSettings {
    /// This member's ID.
    pub node: u64,
    /// Every member (this one included) and its peer address.
    pub peers: std::collections::BTreeMap<u64, SocketAddr>,
    /// Where the log and snapshots live (`None`: in memory).
    pub data_dir: Option<PathBuf>,
    /// Join a running cluster instead of starting one.
    pub join: bool,
    /// Applied entries between snapshots.
    pub snapshot_every: u64,
    /// Where clients reach this member (`--advertise`), if given.
    pub advertise: Option<String>,
    /// Mutual TLS between members (`None`: plaintext peer connections).
    pub peer_tls: Option<crate::tls::PeerTlsSettings>,
}

/// The TOML config file: the same settings, in `snake_case`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    host: Option<String>,
    port: Option<u16>,
    max_line: Option<SizeOrText>,
    max_data: Option<SizeOrText>,
    max_ttl_anonymous: Option<SizeOrText>,
    max_ttl: Option<SizeOrText>,
    max_connections: Option<usize>,
    idle_timeout: Option<SizeOrText>,
    connection_memory: Option<SizeOrText>,
    memory_budget: Option<SizeOrText>,
    watch_budget: Option<SizeOrText>,
    watch_history: Option<usize>,
    identity_dir: Option<PathBuf>,
    stats_interval: Option<SizeOrText>,
    log_file: Option<PathBuf>,
    threads: Option<usize>,
    busy_poll: Option<SizeOrText>,
    http: Option<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    plaintext_port: Option<u16>,
    require_tls_for_identities: Option<bool>,
    peer_tls_cert: Option<PathBuf>,
    peer_tls_key: Option<PathBuf>,
    peer_tls_ca: Option<PathBuf>,
}

/// A number, or text with a unit.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SizeOrText {
    Number(f64),
    Text(String),
}

impl SizeOrText {
    fn size(&self) -> Result<u64, String> {
        match self {
            Self::Text(t) => parse_size(t),
            Self::Number(n) if *n >= 0.0 && n.fract() == 0.0 && *n < 1.8e19 =>
            {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(*n as u64)
            }
            Self::Number(n) => Err(format!("{n} is not a size in bytes")),
        }
    }

    fn duration(&self) -> Result<Duration, String> {
        match self {
            Self::Text(t) => parse_duration(t),
            Self::Number(n) => Duration::try_from_secs_f64(*n).map_err(|e| e.to_string()),
        }
    }
}

/// The merged settings the server runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Protocol limits.
    pub limits: Limits,
    /// Most open connections.
    pub max_connections: usize,
    /// Stall allowed mid-line, before the first line, or writing.
    pub idle_timeout: Duration,
    /// Bytes all connections may hold beyond their base.
    pub connection_memory: usize,
    /// Engine memory budget in bytes.
    pub memory_budget: usize,
    /// How watches are bounded.
    pub watch: crate::watch::WatchLimits,
    /// Identity files.
    pub identity_dir: Option<PathBuf>,
    /// Statistics line period.
    pub stats_interval: Duration,
    /// Statistics log file.
    pub log_file: Option<PathBuf>,
    /// Runtime worker threads (the connections run on their own loop).
    pub threads: usize,
    /// How long the connection loop polls before sleeping.
    pub busy_poll: Duration,
    /// Cluster membership (`None`: a single server in memory, no log).
    pub cluster: Option<ClusterSettings>,
    /// Where to serve metrics and the dashboard over HTTP (`None`: off).
    pub http: Option<SocketAddr>,
    /// TLS on the client port (`None`: the client port is plaintext).
    pub tls: Option<crate::tls::TlsSettings>,
    /// With TLS: the port of the same host that also serves plaintext.
    pub plaintext_port: Option<u16>,
    /// Refuse identities on plaintext connections.
    pub require_tls_for_identities: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT),
            limits: Limits::DEFAULT,
            max_connections: 4096,
            idle_timeout: Duration::from_secs(10),
            connection_memory: 256 << 20,
            memory_budget: 1 << 30,
            watch: crate::watch::WatchLimits::default(),
            identity_dir: None,
            stats_interval: Duration::from_secs(3600),
            log_file: None,
            threads: 1,
            busy_poll: Duration::ZERO,
            cluster: None,
            http: None,
            tls: None,
            plaintext_port: None,
            require_tls_for_identities: false,
        }
    }
}

/// A configuration problem, reported before the server starts.
#[derive(Debug)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn usize_of(v: u64, what: &str) -> Result<usize, ConfigError> {
    usize::try_from(v).map_err(|_| ConfigError(format!("{what} {v} is too large")))
}

fn ttl_of(d: Duration) -> Ttl {
    Ttl::from(d)
}

impl ServeArgs {
    /// Merges command line (and environment, which clap folds in), the
    /// config file it names, and the defaults.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let d = Settings::default();
        let cluster = self.cluster_settings(&file)?;
        let bad = |key: &str, e: String| ConfigError(format!("config file: {key}: {e}"));
        let size = |cli: Option<u64>, file: &Option<SizeOrText>, key: &str| {
            cli.map(Ok)
                .or_else(|| file.as_ref().map(|v| v.size().map_err(|e| bad(key, e))))
                .transpose()
        };
        let duration = |cli: Option<Duration>, file: &Option<SizeOrText>, key: &str| {
            cli.map(Ok)
                .or_else(|| file.as_ref().map(|v| v.duration().map_err(|e| bad(key, e))))
                .transpose()
        };

        let host = self
            .host_pos
            .clone()
            .or_else(|| self.host.clone())
            .or(file.host);
        let port = self
            .port_pos
            .or(self.port)
            .or(file.port)
            .unwrap_or(DEFAULT_PORT);
        let listen = match host {
            None => SocketAddr::new(d.listen.ip(), port),
            Some(h) => resolve(&h, port)?,
        };

        let mut limits = d.limits;
        if let Some(v) = size(self.max_line, &file.max_line, "max_line")? {
            limits.max_line = usize_of(v, "max line")?;
        }
        if let Some(v) = size(self.max_data, &file.max_data, "max_data")? {
            limits.max_data_anonymous = usize_of(v, "max data")?;
        }
        if let Some(v) = duration(
            self.max_ttl_anonymous,
            &file.max_ttl_anonymous,
            "max_ttl_anonymous",
        )? {
            limits.max_ttl_anonymous = ttl_of(v);
        }
        if let Some(v) = duration(self.max_ttl, &file.max_ttl, "max_ttl")? {
            limits.max_ttl = ttl_of(v);
        }
        if limits.max_ttl > limits::TTL_CEILING {
            return Err(ConfigError(format!(
                "max TTL is above the ceiling of {} s",
                limits::TTL_CEILING
            )));
        }
        if limits.max_line < 64 {
            return Err(ConfigError("max line must be at least 64 bytes".into()));
        }
        if limits.max_line > MAX_LINE_CEILING {
            return Err(ConfigError(format!(
                "max line must be at most {} MiB",
                MAX_LINE_CEILING >> 20
            )));
        }

        let settings = Settings {
            listen,
            limits,
            max_connections: self
                .max_connections
                .or(file.max_connections)
                .unwrap_or(d.max_connections),
            idle_timeout: duration(self.idle_timeout, &file.idle_timeout, "idle_timeout")?
                .unwrap_or(d.idle_timeout),
            connection_memory: match size(
                self.connection_memory,
                &file.connection_memory,
                "connection_memory",
            )? {
                Some(v) => usize_of(v, "connection memory")?,
                None => d.connection_memory,
            },
            memory_budget: match size(self.memory_budget, &file.memory_budget, "memory_budget")? {
                Some(v) => usize_of(v, "memory budget")?,
                None => d.memory_budget,
            },
            watch: crate::watch::WatchLimits {
                budget: match size(self.watch_budget, &file.watch_budget, "watch_budget")? {
                    Some(v) => usize_of(v, "watch budget")?,
                    None => d.watch.budget,
                },
                history_events: self
                    .watch_history
                    .or(file.watch_history)
                    .unwrap_or(d.watch.history_events),
                history_bytes: d.watch.history_bytes,
            },
            identity_dir: self.identity_dir.clone().or(file.identity_dir),
            stats_interval: duration(self.stats_interval, &file.stats_interval, "stats_interval")?
                .unwrap_or(d.stats_interval),
            log_file: self.log_file.clone().or(file.log_file),
            threads: self.threads.or(file.threads).unwrap_or(d.threads),
            busy_poll: duration(self.busy_poll, &file.busy_poll, "busy_poll")?
                .unwrap_or(d.busy_poll)
                .min(Duration::from_millis(10)),
            cluster,
            http: self.http.or(file.http),
            tls: {
                let client_ca = self.tls_client_ca.clone().or(file.tls_client_ca);
                match (
                    self.tls_cert.clone().or(file.tls_cert),
                    self.tls_key.clone().or(file.tls_key),
                ) {
                    (Some(cert), Some(key)) => Some(crate::tls::TlsSettings {
                        cert,
                        key,
                        client_ca,
                    }),
                    (None, None) if client_ca.is_none() => None,
                    (None, None) => {
                        return Err(ConfigError(
                            "--tls-client-ca needs --tls-cert and --tls-key".into(),
                        ));
                    }
                    (Some(_), None) => {
                        return Err(ConfigError("--tls-cert needs --tls-key".into()));
                    }
                    (None, Some(_)) => {
                        return Err(ConfigError("--tls-key needs --tls-cert".into()));
                    }
                }
            },
            plaintext_port: self.plaintext_port.or(file.plaintext_port),
            require_tls_for_identities: self.require_tls_for_identities
                || file.require_tls_for_identities.unwrap_or(false),
        };
        settings.check()?;
        Ok(settings)
    }
}

impl ServeArgs {
    fn peer_tls(
        &self,
        file: &FileConfig,
    ) -> Result<Option<crate::tls::PeerTlsSettings>, ConfigError> {
        let cert = self
            .peer_tls_cert
            .clone()
            .or_else(|| file.peer_tls_cert.clone());
        let key = self
            .peer_tls_key
            .clone()
            .or_else(|| file.peer_tls_key.clone());
        let ca = self
            .peer_tls_ca
            .clone()
            .or_else(|| file.peer_tls_ca.clone());
        match (cert, key, ca) {
            (None, None, None) => Ok(None),
            (Some(cert), Some(key), Some(ca)) => {
                Ok(Some(crate::tls::PeerTlsSettings { cert, key, ca }))
            }
            _ => Err(ConfigError(
                "--peer-tls-cert, --peer-tls-key and --peer-tls-ca go together (mutual TLS: each member presents its certificate and checks the others')".into(),
            )),
        }
    }

    fn cluster_settings(&self, file: &FileConfig) -> Result<Option<ClusterSettings>, ConfigError> {
        let peer_tls = self.peer_tls(file)?;
        match (self.node, &self.peers, &self.data_dir) {
            (None, None, None) if peer_tls.is_some() => Err(ConfigError(
                "--peer-tls-cert is for cluster members (with --peers)".into(),
            )),
            (None, None, None) => Ok(None),
            (node, Some(peers), data_dir) => {
                let node = match node {
                    Some(n) => n,
                    None if peers.0.len() == 1 => peers.0.keys().copied().next().unwrap_or(1),
                    None => {
                        return Err(ConfigError(
                            "--peers needs --node (this member's ID)".into(),
                        ));
                    }
                };
                if !peers.0.contains_key(&node) {
                    return Err(ConfigError(format!(
                        "--node {node} is not one of --peers ({})",
                        peers
                            .0
                            .keys()
                            .map(u64::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                Ok(Some(ClusterSettings {
                    node,
                    peers: peers.0.clone(),
                    data_dir: data_dir.clone(),
                    join: self.join,
                    snapshot_every: self.snapshot_every.unwrap_or(20_000).max(10),
                    advertise: self.advertise.clone(),
                    peer_tls,
                }))
            }
            (Some(_), None, _) => Err(ConfigError(
                "--node needs --peers (every member's address)".into(),
            )),
            (None, None, Some(dir)) => {
                // A cluster of one: durable, no peers to talk to (its peer
                // port is any free one on loopback).
                let mut peers = std::collections::BTreeMap::new();
                peers.insert(1, SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0));
                Ok(Some(ClusterSettings {
                    node: 1,
                    peers,
                    data_dir: Some(dir.clone()),
                    join: false,
                    snapshot_every: self.snapshot_every.unwrap_or(20_000).max(10),
                    advertise: self.advertise.clone(),
                    peer_tls,
                }))
            }
        }
    }
}

/// The longest request line a server may be configured for.
pub const MAX_LINE_CEILING: usize = 1 << 30;

impl Settings {
    /// Refuses settings that cannot work, each with a reason.
    pub fn check(&self) -> Result<(), ConfigError> {
        let fail = |m: &str| Err(ConfigError(m.to_owned()));
        if self.max_connections == 0 {
            return fail("max connections must be at least 1");
        }
        if self.memory_budget < 1024 {
            return fail("memory budget must be at least 1KiB");
        }
        if self.watch.budget < 4096 {
            return fail("watch budget must be at least 4KiB");
        }
        if self.connection_memory < 1 << 20 {
            return fail("connection memory must be at least 1MiB");
        }
        if self.idle_timeout < Duration::from_millis(100) {
            return fail(
                "idle timeout must be at least 100ms (a request split across two TCP segments would be cut)",
            );
        }
        if self.stats_interval < Duration::from_millis(100) {
            return fail("stats interval must be at least 100ms");
        }
        if self.threads == 0 {
            return fail("threads must be at least 1");
        }
        if self.tls.is_none() && self.plaintext_port.is_some() {
            return fail(
                "--plaintext-port needs --tls-cert (without TLS the client port is plaintext already)",
            );
        }
        if self.tls.is_none() && self.require_tls_for_identities {
            return fail(
                "--require-tls-for-identities needs --tls-cert (without TLS it would refuse every identity)",
            );
        }
        if let Some(c) = &self.cluster
            && self.tls.is_some()
            && c.peer_tls.is_none()
            && (c.peers.len() > 1 || c.join)
        {
            return fail(
                "--tls-cert on a cluster member needs --peer-tls-cert, --peer-tls-key and --peer-tls-ca: a follower relays its clients' requests (secrets included) to the leader, and those must not cross the network in clear either",
            );
        }
        if let Some(path) = &self.log_file {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
            if let Some(dir) = dir
                && !dir.is_dir()
            {
                return Err(ConfigError(format!(
                    "log file {}: directory {} does not exist",
                    path.display(),
                    dir.display()
                )));
            }
        }
        if let Some(dir) = &self.identity_dir
            && !dir.is_dir()
        {
            return Err(ConfigError(format!(
                "identity directory {} does not exist",
                dir.display()
            )));
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, ConfigError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| ConfigError(format!("cannot resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| ConfigError(format!("{host} has no address")))
}

/// Parses a byte size: `1048576`, `16KiB`, `1M`, `2 GiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a size (try 1048576 or 1MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{text:?}: unknown size unit")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses a duration: `30` (seconds), `1.5`, `250ms`, `100us`, `10s`, `5m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try 30, 250ms, 5m)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "us" => n / 1_000_000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return Err(format!("{text:?}: unknown duration unit")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("16KiB"), Ok(16 << 10));
        assert_eq!(parse_size("1 M"), Ok(1 << 20));
        assert!(parse_size("1 parsec").is_err());
        assert!(parse_size("-1").is_err());
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn positional_address_like_jackrabbit() {
        let cli = Cli::try_parse_from(["dlm-server", "0.0.0.0", "4000"]).unwrap();
        let s = cli.serve.settings().unwrap();
        assert_eq!(s.listen, "0.0.0.0:4000".parse().unwrap());
        let cli = Cli::try_parse_from(["dlm-server"]).unwrap();
        assert_eq!(
            cli.serve.settings().unwrap().listen,
            "127.0.0.1:37373".parse().unwrap()
        );
        let cli = Cli::try_parse_from(["dlm-server", "identity", "new", "alice"]).unwrap();
        assert!(matches!(cli.command, Some(Subcommand::Identity(_))));
    }

    #[test]
    fn tls_on_a_cluster_needs_mutual_tls_between_members() {
        let settings = |extra: &[&str]| {
            let mut args = vec!["dlm-server"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args).unwrap().serve.settings()
        };
        let peers = [
            "--node",
            "1",
            "--peers",
            "1=127.0.0.1:7001,2=127.0.0.1:7002",
        ];
        let client_tls = ["--tls-cert", "s.pem", "--tls-key", "s.key"];
        let peer_tls = [
            "--peer-tls-cert",
            "m.pem",
            "--peer-tls-key",
            "m.key",
            "--peer-tls-ca",
            "ca.pem",
        ];
        // Client TLS on a cluster without peer TLS: relayed secrets would
        // cross in clear.
        let err = settings(&[&peers[..], &client_tls[..]].concat()).unwrap_err();
        assert!(err.to_string().contains("--peer-tls-cert"), "{err}");
        // With it, both; and peer TLS alone.
        let s = settings(&[&peers[..], &client_tls[..], &peer_tls[..]].concat()).unwrap();
        let c = s.cluster.unwrap();
        assert_eq!(c.peer_tls.map(|t| t.ca), Some(PathBuf::from("ca.pem")));
        assert!(s.tls.is_some());
        assert!(settings(&[&peers[..], &peer_tls[..]].concat()).is_ok());
        // The three go together, and only on a cluster.
        let err = settings(&[&peers[..], &peer_tls[..4]].concat()).unwrap_err();
        assert!(err.to_string().contains("go together"), "{err}");
        let err = settings(&peer_tls).unwrap_err();
        assert!(err.to_string().contains("cluster members"), "{err}");
    }

    #[test]
    fn file_settings_apply_under_flags() {
        let dir = std::env::temp_dir().join(format!("dlm-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dlm.toml");
        std::fs::write(
            &path,
            "port = 4100\nmax_line = \"64KiB\"\nidle_timeout = 2\nmax_ttl_anonymous = \"1m\"\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "dlm-server",
            "--config",
            path.to_str().unwrap(),
            "--idle-timeout",
            "3s",
        ])
        .unwrap();
        let s = cli.serve.settings().unwrap();
        assert_eq!(s.listen.port(), 4100);
        assert_eq!(s.limits.max_line, 64 << 10);
        assert_eq!(s.idle_timeout, Duration::from_secs(3));
        assert_eq!(s.limits.max_ttl_anonymous, Ttl::from_secs(60));
        std::fs::write(&path, "bogus = 1\n").unwrap();
        let cli = Cli::try_parse_from(["dlm-server", "--config", path.to_str().unwrap()]).unwrap();
        assert!(cli.serve.settings().is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
