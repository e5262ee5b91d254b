//! The async client and the blocking `dlm` client side by side on one
//! server: what one writes the other reads, and their locks exclude each
//! other.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use dlm_tests::Server;
use dlm_tokio::{Client, Error, LockState, Revision, SealedEncoder};

const SECOND: Duration = Duration::from_secs(1);

fn blocking(server: &Server, id: &str) -> dlm::Client {
    dlm::Client::connect_with(
        server.addr(),
        dlm::Options {
            client_id: Some(id.into()),
            ..dlm::Options::default()
        },
    )
    .unwrap()
}

async fn asynchronous(server: &Server, id: &str) -> Client {
    Client::builder()
        .client_id(id)
        .connect(server.addr())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_put_by_one_client_is_read_by_the_other() {
    let server = Server::start();
    let (sync, not_sync) = (blocking(&server, "me"), asynchronous(&server, "me").await);
    let bytes = b"\x00\x01 caf\xc3\xa9 \xff";
    let r1 = not_sync.put("k", bytes, 10 * SECOND).await.unwrap();
    let v = sync.get("k").unwrap().unwrap();
    assert_eq!((v.data.as_slice(), v.revision), (&bytes[..], r1));
    let r2 = sync.put_if("k", b"from blocking", 10 * SECOND, r1).unwrap();
    let v = not_sync.get("k").await.unwrap().unwrap();
    assert_eq!((v.data.as_slice(), v.revision), (&b"from blocking"[..], r2));
    assert!(matches!(
        not_sync.put_if("k", b"late", SECOND, r1).await,
        Err(Error::Conflict { current }) if current == r2
    ));
    assert_eq!(r2, Revision(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_values_open_with_the_same_key_in_either_client() {
    let server = Server::start();
    let key = SealedEncoder::generate_key().unwrap();
    let sync = dlm::Client::connect_with(
        server.addr(),
        dlm::Options {
            client_id: Some("s".into()),
            encoder: Arc::new(dlm::SealedEncoder::new(key)),
            ..dlm::Options::default()
        },
    )
    .unwrap();
    let not_sync = Client::builder()
        .client_id("s")
        .encoder(SealedEncoder::new(key))
        .connect(server.addr())
        .await
        .unwrap();
    sync.put("secret", b"hunter2", 10 * SECOND).unwrap();
    assert_eq!(
        not_sync.get("secret").await.unwrap().unwrap().data,
        b"hunter2"
    );
    not_sync
        .put("other", b"swordfish", 10 * SECOND)
        .await
        .unwrap();
    assert_eq!(sync.get("other").unwrap().unwrap().data, b"swordfish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn their_locks_exclude_each_other_and_fence_in_one_order() {
    let server = Server::start();
    let (sync, not_sync) = (blocking(&server, "a"), asynchronous(&server, "b").await);
    let held = sync.lock("shared").acquire().unwrap();
    assert!(matches!(
        not_sync.test_lock("shared").await.unwrap(),
        LockState::Taken { .. }
    ));
    let waiter = tokio::spawn(not_sync.lock("shared").wait(10 * SECOND).acquire());
    common::until_waiting(&not_sync, 1).await;
    let first = held.token();
    held.unlock().unwrap();
    let lock = waiter.await.unwrap().unwrap();
    assert!(lock.token() > first);
    assert!(sync.try_lock("shared", SECOND).unwrap().is_none());
    lock.unlock().await.unwrap();
    assert!(sync.try_lock("shared", SECOND).unwrap().is_some());
}

#[test]
fn the_error_kinds_are_the_blocking_clients() {
    // One list, dlm-core's: the same kind for the same failure.
    assert_eq!(Error::Timeout.kind(), dlm::Error::Timeout.kind());
    assert_eq!(Error::LockLost.kind(), dlm::Error::LockLost.kind());
    assert_eq!(
        Error::Conflict {
            current: Revision(1)
        }
        .to_string(),
        dlm::Error::Conflict {
            current: Revision(1)
        }
        .to_string()
    );
}
