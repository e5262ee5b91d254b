//! `dlm-server`: run the lock server, or manage identities.
//!
//! ```text
//! dlm-server [HOST] [PORT] [OPTIONS]       serve (default 127.0.0.1 37373)
//! dlm-server identity new NAME             create an identity file
//! dlm-server tls new DIR [--client NAME] [--member ID]
//!                                          write a development CA and certificates
//! ```

// A std crate: the no_std discipline lints of the workspace are for dlm-core.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use dlm_server::config::{Cli, IdentitySubcommand, Subcommand, TlsSubcommand};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("DLM_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    if let Some(Subcommand::Identity(IdentitySubcommand::New {
        name,
        identity_dir,
        max_size,
        admin,
    })) = cli.command
    {
        return match dlm_server::identity::create(&identity_dir, &name, max_size, admin) {
            Ok(path) => {
                println!("{}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("dlm-server: cannot create identity {name}: {e}");
                ExitCode::FAILURE
            }
        };
    }

    if let Some(Subcommand::Tls(TlsSubcommand::New {
        dir,
        clients,
        hosts,
        members,
    })) = cli.command
    {
        return match dlm_server::tls::write_dev_pki(&dir, &hosts, &clients, &members) {
            Ok(pki) => {
                for f in pki.files {
                    println!("{}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "dlm-server: cannot write TLS files into {}: {e}",
                    dir.display()
                );
                ExitCode::FAILURE
            }
        };
    }

    let settings = match cli.serve.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dlm-server: {e}");
            return ExitCode::from(2);
        }
    };
    raise_fd_limit(settings.max_connections);

    let mut runtime = if settings.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if settings.threads > 1 {
        runtime.worker_threads(settings.threads);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dlm-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        // Signal handlers first: a SIGTERM right after "listening" must
        // stop the server cleanly, not kill it.
        let stop = shutdown_signal()?;
        let listener = listen(settings.listen)?;
        let server = dlm_server::Server::new(listener, &settings)?;
        let addr = server.local_addr();
        // The one line tests (and people) wait for, once it is true.
        println!("dlm-server listening on {addr}");
        let _ = std::io::stdout().flush();
        tracing::info!(%addr, version = env!("CARGO_PKG_VERSION"), "dlm-server started");
        server.run(stop).await
    });
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dlm-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Binds with a deep accept queue: a burst of connections waits in the
/// kernel instead of having its handshakes dropped (tokio's default is 1024;
/// the kernel caps it at `net.core.somaxconn`).
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(8192)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// Installs the SIGINT and SIGTERM handlers now, and returns a future that
/// completes on either.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// Raises the soft open-files limit to the hard one, so the connection cap
/// rather than the descriptor limit decides how many clients fit, and warns
/// when even the hard limit is below what `--max-connections` needs.
fn raise_fd_limit(max_connections: usize) {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
        #[allow(unsafe_code)]
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) != 0 {
                return;
            }
            if lim.rlim_cur < lim.rlim_max {
                lim.rlim_cur = lim.rlim_max;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) != 0 {
                    let _ = libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim);
                }
            }
        }
        // A few descriptors go to the listener, epoll, logs and the runtime.
        let needed = (max_connections as u64).saturating_add(32);
        if lim.rlim_cur < needed {
            tracing::warn!(
                limit = lim.rlim_cur,
                max_connections,
                "the open-files limit is below what --max-connections needs; \
                 connections past it wait in the kernel until descriptors free up \
                 (raise `ulimit -n` or lower --max-connections)"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = max_connections;
}
