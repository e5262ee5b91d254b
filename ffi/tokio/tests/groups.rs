//! Semaphores and read/write locks through the async client against a real
//! dlm-server: permits counted, a hold per acquisition with its own token,
//! FIFO waits, a waiting writer not overtaken by readers, and sizes fixed
//! while a name lives.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

mod common;

use std::time::Duration;

use common::{client, until_waiting};
use dlm_tests::Server;
use dlm_tokio::Error;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_semaphore_admits_its_permits_and_queues_the_rest() {
    let server = Server::start();
    let (a, b) = (client(&server).await, client(&server).await);
    let first = a.semaphore("s", 2).acquire().await.unwrap();
    let second = b.semaphore("s", 2).acquire().await.unwrap();
    assert_ne!(first.token(), second.token(), "a token per hold");
    assert!(matches!(
        b.semaphore("s", 2).acquire().await,
        Err(Error::NotOwner)
    ));
    assert!(matches!(
        b.semaphore("s", 3).acquire().await,
        Err(Error::Mismatch(m)) if m.contains("2 permits")
    ));
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { b.semaphore("s", 2).wait(WAIT).acquire().await }
    });
    until_waiting(&a, 1).await;
    let t1 = first.token();
    first.unlock().await.unwrap();
    let third = waiter.await.unwrap().unwrap();
    assert!(third.token() > t1.max(second.token()));
    third.unlock().await.unwrap();
    second.unlock().await.unwrap();
}

#[tokio::test]
async fn a_waiting_writer_goes_before_later_readers() {
    let server = Server::start();
    let (a, b) = (client(&server).await, client(&server).await);
    let r1 = a.read_lock("rw").acquire().await.unwrap();
    let r2 = b.read_lock("rw").acquire().await.unwrap();
    assert!(matches!(
        b.write_lock("rw").acquire().await,
        Err(Error::NotOwner)
    ));
    let writer = tokio::spawn({
        let b = b.clone();
        async move { b.write_lock("rw").wait(WAIT).acquire().await }
    });
    until_waiting(&a, 1).await;
    // A reader now would fit beside the readers, but the writer is first.
    assert!(matches!(
        a.read_lock("rw").acquire().await,
        Err(Error::NotOwner)
    ));
    let top = r1.token().max(r2.token());
    r1.unlock().await.unwrap();
    r2.unlock().await.unwrap();
    let w = writer.await.unwrap().unwrap();
    assert!(w.token() > top);
    w.unlock().await.unwrap();
}
