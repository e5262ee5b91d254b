//! Multi-locks through the async client against a real dlm-server: all or
//! none, a token per name, crossing waiters served in turn, pipelined
//! release, and a dropped acquisition that gives back what it was granted.

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

mod common;

use std::time::Duration;

use common::{client, eventually, until_waiting};
use dlm_tests::Server;
use dlm_tokio::{Error, LockState};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn all_or_none_each_with_its_token_released_together() {
    let server = Server::start();
    let (a, b) = (client(&server).await, client(&server).await);
    let set = a.lock_all(["k1", "k2", "k3"]).acquire().await.unwrap();
    let tokens = set.tokens();
    assert_eq!(tokens.len(), 3);
    assert!(tokens.windows(2).all(|w| w[0] < w[1]));
    assert!(matches!(
        a.test_lock("k2").await.unwrap(),
        LockState::Mine { token, .. } if token == tokens[1]
    ));
    assert!(matches!(
        b.lock_all(["k0", "k3"]).acquire().await,
        Err(Error::NotOwner)
    ));
    assert_eq!(b.test_lock("k0").await.unwrap(), LockState::Free);
    set.extend(Duration::from_secs(60)).await.unwrap();
    set.unlock().await.unwrap();
    for n in ["k1", "k2", "k3"] {
        assert_eq!(b.test_lock(n).await.unwrap(), LockState::Free);
    }
    assert!(matches!(
        b.lock_all(["x", "x"]).acquire().await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn crossing_waiters_are_served_in_turn() {
    let server = Server::start();
    let (a, b, c) = (
        client(&server).await,
        client(&server).await,
        client(&server).await,
    );
    let first = a.lock_all(["p", "q"]).acquire().await.unwrap();
    let tb = tokio::spawn(b.lock_all(["q", "p"]).wait(WAIT).acquire());
    until_waiting(&a, 1).await;
    let tc = tokio::spawn(c.lock_all(["p", "q"]).wait(WAIT).acquire());
    until_waiting(&a, 2).await;
    let before = first.tokens();
    first.unlock().await.unwrap();
    let bset = tb.await.unwrap().unwrap();
    assert!(bset.tokens()[0] > before[1]);
    let bt = bset.tokens();
    bset.unlock().await.unwrap();
    let cset = tc.await.unwrap().unwrap();
    assert!(cset.tokens()[0] > bt[1]);
}

#[tokio::test]
async fn a_dropped_wait_gives_back_a_grant_that_raced_it() {
    let server = Server::start();
    let (a, b) = (client(&server).await, client(&server).await);
    let held = a.lock("m").acquire().await.unwrap();
    // b waits for m and n, then gives up: the server forgets the wait.
    let r = tokio::time::timeout(
        Duration::from_millis(200),
        b.lock_all(["m", "n"]).wait(WAIT).acquire(),
    )
    .await;
    assert!(r.is_err(), "still waiting");
    eventually(|| async { a.stats().await.unwrap().get(dlm_tokio::Stat::AWait) == 0 }).await;
    held.unlock().await.unwrap();
    // Nothing of b's stays: both names are free.
    eventually(|| async {
        a.test_lock("m").await.unwrap() == LockState::Free
            && a.test_lock("n").await.unwrap() == LockState::Free
    })
    .await;
    assert!(a.lock_all(["m", "n"]).acquire().await.is_ok());
}
