//! What the test files share: clients of a test server, and waiting for a
//! condition without sleeping a guessed time.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use dlm_tests::Server;
use dlm_tokio::{Client, Stat};
use tokio::time::Instant;

/// A client of `server` with a random owner ID.
pub(crate) async fn client(server: &Server) -> Client {
    Client::connect(server.addr()).await.unwrap()
}

/// Polls `f` every 5 ms until it is true, for at most 5 s: how these tests
/// wait for something to happen elsewhere (the server, a spawned task),
/// rather than sleeping and hoping.
#[track_caller]
pub(crate) fn eventually<F, Fut>(mut f: F) -> impl Future<Output = ()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_some(move || {
        let check = f();
        async move { check.await.then_some(()) }
    })
}

/// As [`eventually`], for a check that yields something.
#[track_caller]
pub(crate) fn eventually_some<T, F, Fut>(mut f: F) -> impl Future<Output = T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let caller = std::panic::Location::caller();
    async move {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(t) = f().await {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "condition at {caller} not met within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Waits until the server counts `stat` at `n`.
#[track_caller]
pub(crate) fn until_stat(c: &Client, stat: Stat, n: u64) -> impl Future<Output = ()> + '_ {
    eventually(move || async move { c.stats().await.unwrap().get(stat) == n })
}

/// Waits until the server has `n` waiters queued.
#[track_caller]
pub(crate) fn until_waiting(c: &Client, n: u64) -> impl Future<Output = ()> + '_ {
    until_stat(c, Stat::AWait, n)
}
