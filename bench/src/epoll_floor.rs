//! A Redis-shaped floor: one thread, one epoll loop (mio), every ready
//! connection read and answered, then every answer written, per turn.
//! An experiment to see what an event-loop server costs per request.

use std::io::{self, Read as _, Write as _};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

const ANSWER: &[u8] = b"{\"Status\":\"Locked\"}\n";
const LISTENER: Token = Token(usize::MAX);

struct Conn {
    stream: mio::net::TcpStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
}

/// Serves forever.
pub fn serve(std_listener: std::net::TcpListener) -> io::Result<()> {
    std_listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(std_listener);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut pending: Vec<usize> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        poll.poll(&mut events, None)?;
        for ev in &events {
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut s, _)) => {
                            s.set_nodelay(true)?;
                            let id = conns
                                .iter()
                                .position(Option::is_none)
                                .unwrap_or(conns.len());
                            poll.registry()
                                .register(&mut s, Token(id), Interest::READABLE)?;
                            let c = Conn {
                                stream: s,
                                inbuf: Vec::new(),
                                out: Vec::new(),
                            };
                            if id == conns.len() {
                                conns.push(Some(c));
                            } else {
                                conns[id] = Some(c);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                continue;
            }
            let id = ev.token().0;
            let Some(c) = conns.get_mut(id).and_then(Option::as_mut) else {
                continue;
            };
            let mut closed = false;
            loop {
                match c.stream.read(&mut chunk) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => {
                        c.inbuf.extend_from_slice(&chunk[..n]);
                        if n < chunk.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            let lines = memchr::memchr_iter(b'\n', &c.inbuf).count();
            if lines > 0 {
                let last = c.inbuf.iter().rposition(|&b| b == b'\n').unwrap_or(0);
                c.inbuf.drain(..=last);
                for _ in 0..lines {
                    c.out.extend_from_slice(ANSWER);
                }
                pending.push(id);
            }
            if closed {
                conns[id] = None;
            }
        }
        for id in pending.drain(..) {
            if let Some(c) = conns.get_mut(id).and_then(Option::as_mut) {
                let _ = c.stream.write_all(&c.out);
                c.out.clear();
            }
        }
    }
}
