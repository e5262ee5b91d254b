//! The network between members: every member reaches every other through
//! a TCP proxy of ours (one per ordered pair), so the nemesis can cut,
//! stall, delay, or reset each direction of each link.
//!
//! Bytes from member `a` to member `b` (on whichever connection carries
//! them) obey the link `(a, b)`:
//! - `Up` forwards them;
//! - `Delay(d)` forwards each chunk `d` after it was read (in order);
//! - `Stall` holds them (and, once the proxy's buffer is full, stops
//!   reading, so TCP back-pressure holds the rest): a lossy network with
//!   the connection still open; nothing is lost when the link heals;
//! - `Reset` closes the connections of that pair and refuses new ones
//!   while it lasts: a network that answers with resets.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// What a link does with the bytes that cross it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Forwards at once.
    Up,
    /// Forwards each chunk this long after it was read.
    Delay(Duration),
    /// Holds the bytes until the link changes.
    Stall,
    /// Closes the pair's connections and refuses new ones.
    Reset,
}

/// The state of every link, shared by the proxies and the nemesis.
#[derive(Debug, Default)]
pub struct Net {
    links: Mutex<BTreeMap<(u64, u64), Link>>,
    stop: AtomicBool,
}

impl Net {
    /// What the link from `a` to `b` does now.
    pub fn link(&self, a: u64, b: u64) -> Link {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(a, b))
            .copied()
            .unwrap_or(Link::Up)
    }

    /// Sets the link from `a` to `b`.
    pub fn set(&self, a: u64, b: u64, link: Link) {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((a, b), link);
    }

    /// Sets both directions between `a` and `b`.
    pub fn set_both(&self, a: u64, b: u64, link: Link) {
        self.set(a, b, link);
        self.set(b, a, link);
    }

    /// Every link up.
    pub fn heal(&self) {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Stops every proxy (their threads end within a poll interval).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

const POLL: Duration = Duration::from_millis(5);

/// Starts the proxy that carries connections from member `a` to member
/// `b` (whose peer port is `target`); returns the port it listens on.
pub fn start(net: &Arc<Net>, a: u64, b: u64, target: SocketAddr) -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    listener.set_nonblocking(true)?;
    let net = Arc::clone(net);
    thread::Builder::new()
        .name(format!("proxy-{a}-{b}"))
        .spawn(move || accept_loop(&net, &listener, a, b, target))?;
    Ok(port)
}

fn accept_loop(net: &Arc<Net>, listener: &TcpListener, a: u64, b: u64, target: SocketAddr) {
    while !net.stopped() {
        let client = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                thread::sleep(POLL);
                continue;
            }
            Err(_) => {
                thread::sleep(POLL);
                continue;
            }
        };
        if net.link(a, b) == Link::Reset || net.link(b, a) == Link::Reset {
            drop(client);
            continue;
        }
        let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_millis(500)) else {
            drop(client);
            continue;
        };
        let _ = client.set_nonblocking(false);
        for s in [&client, &server] {
            let _ = s.set_nodelay(true);
            let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
        }
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        let up = Arc::clone(net);
        let down = Arc::clone(net);
        let _ = thread::Builder::new()
            .name(format!("pump-{a}-{b}"))
            .spawn(move || pump(&up, client, server, a, b));
        let _ = thread::Builder::new()
            .name(format!("pump-{b}-{a}"))
            .spawn(move || pump(&down, s2, c2, b, a));
    }
}

/// Copies bytes from `src` (member `from`) to `dst` (member `to`) as the
/// link says, until either end closes or the link resets.
fn pump(net: &Net, mut src: TcpStream, mut dst: TcpStream, from: u64, to: u64) {
    let mut buf = vec![0u8; 64 * 1024];
    let close = |a: &TcpStream, b: &TcpStream| {
        let _ = a.shutdown(Shutdown::Both);
        let _ = b.shutdown(Shutdown::Both);
    };
    loop {
        if net.stopped() || net.link(from, to) == Link::Reset || net.link(to, from) == Link::Reset {
            close(&src, &dst);
            return;
        }
        if net.link(from, to) == Link::Stall {
            thread::sleep(POLL);
            continue;
        }
        let n = match src.read(&mut buf) {
            Ok(0) => {
                let _ = dst.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => {
                close(&src, &dst);
                return;
            }
        };
        let read_at = Instant::now();
        loop {
            if net.stopped() {
                close(&src, &dst);
                return;
            }
            match net.link(from, to) {
                Link::Up => break,
                Link::Delay(d) => {
                    let due = read_at + d;
                    let now = Instant::now();
                    if now >= due {
                        break;
                    }
                    thread::sleep((due - now).min(POLL));
                }
                Link::Stall => thread::sleep(POLL),
                Link::Reset => {
                    close(&src, &dst);
                    return;
                }
            }
        }
        if dst.write_all(&buf[..n]).is_err() {
            close(&src, &dst);
            return;
        }
    }
}
