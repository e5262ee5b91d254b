//! The async client across a cluster's failover: a real 3-member cluster,
//! its leader killed (SIGKILL) while one client holds an auto-renewed
//! lock, another waits for it and a third writes values in a loop; the
//! same scenarios as the blocking client's (`ffi/tests/failover.rs`).

// Test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use dlm_tests::cluster::Cluster;
use dlm_tokio::{Client, ClusterOp, Error, LockState, Revision, Stat, Token};
use tokio::task::block_in_place;

/// How long anything may take on a loaded two-core machine: elections,
/// failovers, the calls' timeouts. Only an upper bound: nothing waits it out.
const LONG: Duration = Duration::from_secs(60);

/// Polls `f` every 10 ms until it is true, for at most `LONG`. `f` may
/// block (it asks a member for its statistics): it runs outside the
/// runtime's scheduling.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !block_in_place(&mut f) {
        assert!(Instant::now() < deadline, "not within {LONG:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every member's client address, as a list.
fn server_list(cluster: &Cluster) -> String {
    cluster
        .members
        .values()
        .map(|s| s.addr().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

async fn client(servers: &str, timeout: Duration) -> Client {
    Client::builder()
        .io_timeout(timeout)
        .connect(servers)
        .await
        .unwrap()
}

/// The number of waiters queued at member `id` (read on the member itself).
fn waiters(cluster: &Cluster, id: u64) -> u64 {
    cluster.member(id).stats().get(Stat::AWait)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_waiter_and_writer_ride_through_the_leaders_death() {
    let mut cluster = block_in_place(|| Cluster::start(3, &[]));
    let leader = block_in_place(|| cluster.leader());
    let old_addr = cluster.member(leader).addr().to_string();
    let list = server_list(&cluster);

    // Given one follower's address, a client finds the leader.
    let follower = cluster.followers(leader)[0];
    let one = client(&cluster.member(follower).addr().to_string(), LONG).await;
    assert_eq!(one.server(), old_addr, "discovery goes to the leader");
    assert_eq!(one.servers().len(), 3, "{:?}", one.servers());

    let holder = client(&list, LONG).await;
    let waiter = client(&list, LONG).await;
    let writer = client(&list, LONG).await;
    assert_eq!(holder.server(), old_addr);

    // The holder: an auto-renewed lock whose TTL outlasts an election on
    // a loaded machine, renewed every third of it. A task watches for its
    // loss the whole time.
    let ttl = Duration::from_secs(15);
    let lock = Arc::new(
        holder
            .lock("resource")
            .ttl(ttl)
            .auto_renew(true)
            .acquire()
            .await
            .unwrap(),
    );
    let token = lock.token().unwrap();
    let lost = Arc::new(AtomicBool::new(false));
    let watching = {
        let (lock, lost) = (lock.clone(), lost.clone());
        tokio::spawn(async move {
            lock.lost().await;
            lost.store(true, Ordering::SeqCst);
        })
    };

    // The waiter queues on the leader.
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let r = waiter.lock("resource").ttl(ttl).wait(LONG).acquire().await;
        (r.map(|l| (l.token(), waiter.server())), started.elapsed())
    });
    eventually("the waiter queued on the leader", || {
        waiters(&cluster, leader) == 1
    })
    .await;

    // The writer: a compare-and-set chain (a Put applied twice would make
    // the second a Conflict) and one key per Put, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let writing = {
        let (stop, acked) = (stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut revision = Revision(0);
            let mut slowest = Duration::ZERO;
            for i in 1..=20_000u64 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let started = Instant::now();
                let value = i.to_string();
                let ttl = Duration::from_secs(600);
                revision = writer
                    .put_if("chain", value.as_bytes(), ttl, revision)
                    .await
                    .unwrap_or_else(|e| panic!("put {i} of the chain: {e:?}"));
                writer
                    .put(&format!("k{i}"), value.as_bytes(), ttl)
                    .await
                    .unwrap_or_else(|e| panic!("put k{i}: {e:?}"));
                slowest = slowest.max(started.elapsed());
                acked.store(i, Ordering::SeqCst);
            }
            (writer, revision, slowest)
        })
    };
    eventually("the writer wrote", || acked.load(Ordering::SeqCst) >= 20).await;

    let killed = Instant::now();
    let deadline_before = killed + lock.remaining();
    block_in_place(|| cluster.kill(leader));
    let new_leader = block_in_place(|| cluster.leader());
    assert_ne!(new_leader, leader);
    let new_addr = cluster.member(new_leader).addr().to_string();

    // The writer goes on through the new leader.
    let at_kill = acked.load(Ordering::SeqCst);
    eventually("the writer wrote after the failover", || {
        acked.load(Ordering::SeqCst) >= at_kill + 20
    })
    .await;

    // The holder's lock was extended through the new leader: its deadline
    // moved past where it stood when the leader died.
    eventually("an extension confirmed after the failover", || {
        Instant::now() + lock.remaining() > deadline_before + Duration::from_secs(1)
    })
    .await;
    assert_eq!(holder.server(), new_addr);
    assert!(!lost.load(Ordering::SeqCst), "reported lost on a failover");
    assert!(!lock.is_lost());
    assert_eq!(lock.token(), Some(token));
    let LockState::Mine { token: seen, .. } = holder.test_lock("resource").await.unwrap() else {
        panic!("the holder no longer holds it")
    };
    assert_eq!(seen, Some(token), "same grant, same token");

    // The waiter queued again on the new leader, still waiting.
    eventually("the waiter queued on the new leader", || {
        waiters(&cluster, new_leader) == 1
    })
    .await;
    assert!(!waiting.is_finished());

    // Released: the waiter is granted, with a newer token.
    watching.abort();
    assert!(watching.await.unwrap_err().is_cancelled(), "lock lost");
    let lock = Arc::into_inner(lock).unwrap();
    lock.unlock().await.unwrap();
    let (granted, took) = waiting.await.unwrap();
    let (waiter_token, waiter_server) = granted.unwrap();
    assert!(waiter_token.unwrap() > token);
    assert_eq!(waiter_server, new_addr);
    assert!(took < LONG + Duration::from_secs(5), "{took:?}");
    assert!(!lost.load(Ordering::SeqCst));

    // Every acknowledged Put is readable, none applied twice.
    stop.store(true, Ordering::SeqCst);
    let (writer, revision, slowest) = writing.await.unwrap();
    assert!(slowest < LONG + Duration::from_secs(5), "{slowest:?}");
    let n = acked.load(Ordering::SeqCst);
    let chain = writer.get("chain").await.unwrap().unwrap();
    assert_eq!(chain.data, n.to_string().as_bytes());
    assert_eq!(chain.revision, revision);
    for i in 1..=n {
        let v = writer.get(&format!("k{i}")).await.unwrap().unwrap();
        assert_eq!(v.data, i.to_string().as_bytes(), "k{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_only_once_no_member_answers_within_the_timeout() {
    let mut cluster = block_in_place(|| Cluster::start(3, &[]));
    block_in_place(|| cluster.leader());
    let timeout = Duration::from_secs(3);
    let c = client(&server_list(&cluster), timeout).await;
    c.put("x", b"1", Duration::from_secs(60)).await.unwrap();
    for id in cluster.members.keys().copied().collect::<Vec<_>>() {
        block_in_place(|| cluster.kill(id));
    }
    let started = Instant::now();
    let r = c.get("x").await;
    let took = started.elapsed();
    assert!(matches!(r, Err(Error::Unavailable(_))), "{r:?}");
    assert!(took < timeout + Duration::from_secs(5), "{took:?}");
    // Not a list at all: the caller's mistake, said at once.
    let r = Client::connect("127.0.0.1:1,nonsense").await;
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
}

/// A server that answers the client's question about the cluster (a
/// single server) and grants every lock (token 77), and on each connection
/// reads one other request, writes it down and closes the connection
/// without answering, as a server killed after applying it would.
struct Dropper {
    addr: std::net::SocketAddr,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Dropper {
    fn start() -> Self {
        use std::io::{BufRead as _, BufReader, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let log = log.clone();
                thread::spawn(move || {
                    let mut reader = BufReader::new(stream);
                    let mut line = String::new();
                    while reader.read_line(&mut line).unwrap_or(0) > 0 {
                        let answer = if line.contains("\"Action\":\"Cluster\"")
                            && !line.contains("\"Op\"")
                        {
                            Some("{\"Status\":\"Done\",\"Cluster\":{\"Mode\":\"single\"}}\n")
                        } else if line.contains("\"Action\":\"Lock\"") {
                            Some("{\"Status\":\"Locked\",\"Token\":77}\n")
                        } else {
                            None
                        };
                        if let Some(answer) = answer {
                            let _ = reader.get_mut().write_all(answer.as_bytes());
                            line.clear();
                            continue;
                        }
                        log.lock().unwrap().push(line);
                        return;
                    }
                });
            }
        });
        Self { addr, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// The value of `"Key":"..."` in a request line.
fn text_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.split(&format!("\"{key}\":\"")).nth(1)?;
    rest.split('"').next()
}

#[tokio::test]
async fn what_may_have_been_applied_is_resent_only_with_its_request_id() {
    let server = Dropper::start();
    let c = client(&server.addr.to_string(), Duration::from_secs(2)).await;

    // A membership change carries none: written once, never again.
    let r = c.cluster(ClusterOp::Remove { node: 7 }).await;
    assert!(matches!(r, Err(Error::Unavailable(_))), "{r:?}");
    let sent = server.seen();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].contains("\"Op\":\"remove\""), "{sent:?}");

    // A Put is resent while time is left, always with the one ID the
    // server applies once.
    let r = c.put("k", b"v", Duration::from_secs(60)).await;
    assert!(matches!(r, Err(Error::Unavailable(_))), "{r:?}");
    let puts = server.seen().split_off(1);
    assert!(puts.len() >= 2, "resent: {puts:?}");
    let id = text_field(&puts[0], "RequestID").expect("a RequestID");
    assert!(puts.iter().all(|p| text_field(p, "RequestID") == Some(id)));
}

#[tokio::test]
async fn a_release_is_resent_with_its_grants_id_a_tools_unlock_with_its_own() {
    let server = Dropper::start();
    let c = client(&server.addr.to_string(), Duration::from_secs(2)).await;
    let lock = c.lock("l").acquire().await.unwrap();
    assert_eq!(lock.token(), Some(Token(77)));

    // The lock's release: every resend is the same intent, the grant's.
    // (The guard, dropped unreleased, asks again on a task of its own:
    // with the same ID.)
    let r = lock.unlock().await;
    assert!(matches!(r, Err(Error::Unavailable(_))), "{r:?}");
    let releases = server.seen();
    assert!(releases.len() >= 2, "resent: {releases:?}");
    for u in &releases {
        assert!(u.contains("\"Action\":\"Unlock\""), "{u}");
        assert_eq!(text_field(u, "RequestID"), Some("u.77"), "{u}");
    }

    // An unlock by name and token is a request of its own: a second one
    // must be able to answer that the lock is gone.
    let r = c.unlock("l", Some(Token(77))).await;
    assert!(matches!(r, Err(Error::Unavailable(_))), "{r:?}");
    let others: Vec<String> = server
        .seen()
        .into_iter()
        .filter(|u| text_field(u, "RequestID") != Some("u.77"))
        .collect();
    assert!(!others.is_empty(), "sent: {others:?}");
    let id = text_field(&others[0], "RequestID").expect("a RequestID");
    assert!(
        others
            .iter()
            .all(|u| text_field(u, "RequestID") == Some(id))
    );
}

/// A call that gives up in the pause earlier failures set (no attempt of
/// its own) still says why no server could be reached: the last failure
/// this client gave up with, as the blocking client does.
#[tokio::test]
async fn a_call_given_up_in_the_backoff_says_why_the_last_one_failed() {
    let server = dlm_tests::Server::start();
    let c = client(&server.addr().to_string(), Duration::from_millis(300)).await;
    c.put("x", b"1", Duration::from_secs(60)).await.unwrap();
    drop(server);
    // The pause doubles with each failure: it soon outlasts a call.
    for i in 0..20 {
        match c.get("x").await {
            Err(Error::Unavailable(e)) => {
                assert!(e.to_string().contains("refused"), "call {i}: {e}");
            }
            r => panic!("call {i}: {r:?}"),
        }
    }
}
