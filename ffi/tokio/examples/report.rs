//! A job that must run on one machine at a time: it waits for the lock,
//! keeps it renewed while it works, stops if the lock is lost, and shares
//! its progress as a value.
//!
//! ```sh
//! cargo run --release -p dlm-server &          # 127.0.0.1:37373
//! cargo run -p dlm-tokio --example report -- 127.0.0.1:37373
//! ```
//!
//! The server is the first argument, else `DLM_SERVER` (as for the `dlm`
//! command), else 127.0.0.1:37373; a cluster's members may be listed,
//! `host:port,host:port,...`.

// An application, not dlm-core: std is the natural import.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::time::Duration;

use dlm_tokio::{Client, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("DLM_SERVER").ok())
        .unwrap_or_else(|| "127.0.0.1:37373".to_owned());
    let client = Client::connect(addr.as_str()).await?;

    // Queue up to 10 s behind whoever runs the report now; dropping this
    // future (Ctrl-C, a timeout) would leave the queue at once.
    let lock = match client
        .lock("nightly-report")
        .ttl(Duration::from_secs(30))
        .wait(Duration::from_secs(10))
        .auto_renew(true)
        .acquire()
        .await
    {
        Ok(lock) => lock,
        Err(Error::Timeout) => {
            eprintln!("someone else is running the report");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    // Pass it to whatever the lock protects (JackrabbitDLM gives none).
    if let Some(token) = lock.token() {
        println!("fencing token: {token}");
    }

    let work = async {
        for step in 1..=3 {
            let status = format!("step {step} of 3");
            client
                .put("report-status", status.as_bytes(), Duration::from_secs(300))
                .await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok::<_, Error>(())
    };
    tokio::select! {
        () = lock.lost() => {
            eprintln!("lost the lock: stopping before someone else starts");
            return Err(Error::LockLost);
        }
        done = work => done?,
    }

    if let Some(status) = client.get("report-status").await? {
        println!(
            "status: {} (revision {})",
            String::from_utf8_lossy(&status.data),
            status.revision
        );
    }
    lock.unlock().await
}
