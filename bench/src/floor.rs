//! The floor: a trivial tokio server that answers every line with a
//! constant. It does nothing a lock server could skip (no parsing, no
//! state), so the gap between it and dlm-server is what the protocol and
//! the engine cost; almost all of its own time is the kernel's loopback
//! TCP path.

use std::io;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;

const ANSWER: &[u8] = b"{\"Status\":\"Locked\"}\n";

/// Serves forever on `listener`.
pub async fn serve(listener: TcpListener) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut r = BufReader::new(r);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if w.write_all(ANSWER).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
}
