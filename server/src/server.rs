//! The entry point: [`run`] hands the listener to the event loop
//! (one thread running an epoll loop that owns the lock engine and every
//! connection, see [`eventloop`](crate::eventloop)) and stays on the tokio
//! runtime to watch for shutdown and `SIGHUP`.
//!
//! ```text
//!   tokio:  run(listener, shutdown) ── SIGHUP ──▶ ReloadIdentities ─┐
//!                     │ shutdown                                     ▼
//!                     └──────────────────────▶ Shutdown ──▶ event loop thread
//!                                                         (accept, connections,
//!                                                          engine, timers, stats)
//! ```

use std::future::Future;
use std::io;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::eventloop::{Control, EventLoop, Handle};

/// A server ready to serve: its listener bound, its identities loaded,
/// its log file open. Everything that can fail at start has failed by the
/// time [`Server::new`] returns, so the caller can say "listening" only
/// once it is true.
pub struct Server {
    event_loop: EventLoop,
    handle: Handle,
    addr: std::net::SocketAddr,
    /// The operator's HTTP listener (`--http`) and the metrics it shows.
    http: Option<(std::net::TcpListener, crate::metrics::Shared)>,
    /// SIGHUP, caught from the moment the server is ready (its default
    /// action would end the process).
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Prepares to serve on `listener` with `settings`. Call it inside a
    /// tokio runtime: it installs the SIGHUP handler (identity reload).
    pub fn new(listener: TcpListener, settings: &Settings) -> io::Result<Self> {
        let listener = listener.into_std()?;
        let addr = listener.local_addr()?;
        let (mut event_loop, handle) = EventLoop::new(listener, settings)?;
        let http = match settings.http {
            None => None,
            Some(at) => {
                let l = std::net::TcpListener::bind(at)
                    .map_err(|e| io::Error::new(e.kind(), format!("--http {at}: {e}")))?;
                tracing::info!("http listening on {}", l.local_addr()?);
                let shared = crate::metrics::Shared::default();
                event_loop.publish_metrics(shared.clone(), settings);
                Some((l, shared))
            }
        };
        Ok(Self {
            event_loop,
            handle,
            addr,
            http,
            #[cfg(unix)]
            hup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// The operator's HTTP address (`--http`), if it serves one.
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then stops accepting, answers
    /// what was received (telling waiters their wait is over), and returns
    /// within about a second.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let Self {
            event_loop,
            handle,
            #[cfg(unix)]
            hup,
            http,
            ..
        } = self;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("dlm-loop".into())
            .spawn(move || {
                let r = event_loop.run();
                let _ = done_tx.send(());
                r
            })?;

        let stop = CancellationToken::new();
        let http = http.map(|(listener, shared)| {
            tokio::spawn(crate::http::serve(
                listener,
                shared,
                handle.clone(),
                stop.clone(),
            ))
        });
        #[cfg(unix)]
        let reload = tokio::spawn(reload_on_sighup(hup, handle.clone(), stop.clone()));
        tokio::pin!(shutdown);
        let mut done_rx = done_rx;
        let ended_by_itself = tokio::select! {
            () = &mut shutdown => false,
            _ = &mut done_rx => true,
        };
        if !ended_by_itself {
            handle.send(Control::Shutdown);
            let _ = done_rx.await;
        }
        stop.cancel();
        #[cfg(unix)]
        let _ = reload.await;
        if let Some(http) = http {
            let _ = http.await;
        }
        thread
            .join()
            .map_err(|_| io::Error::other("the event loop panicked"))?
    }
}

/// Serves on `listener` until `shutdown` completes, then stops accepting,
/// answers what was received (telling waiters their wait is over), and
/// returns within about a second.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    Server::new(listener, &settings)?.run(shutdown).await
}

#[cfg(unix)]
async fn reload_on_sighup(
    hup: Option<tokio::signal::unix::Signal>,
    handle: crate::eventloop::Handle,
    stop: CancellationToken,
) {
    let Some(mut hup) = hup else {
        return;
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            got = hup.recv() => {
                if got.is_none() {
                    return;
                }
                tracing::info!("SIGHUP: reloading identities and TLS files");
                handle.send(Control::ReloadIdentities);
                handle.send(Control::ReloadTls);
            }
        }
    }
}
