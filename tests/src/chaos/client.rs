//! The chaos clients: each a thread speaking the line protocol directly
//! (plain JSON) to one member at a time, moving to the next member when
//! its connection fails or answers `NO`. Every call has a timeout; a call
//! whose request was written but whose answer did not come is recorded as
//! indeterminate (it may or may not have been applied).

#![allow(clippy::cast_precision_loss)] // seconds for people to read

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::history::{Clock, Grant, History, KvInput, KvOp, KvOutput, Write, push};
use super::rng::Rng;

/// How a call ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// An answer (`Status` other than `NO`).
    Answer(Value),
    /// Certainly not applied: not connected, nothing written, or `NO`.
    Refused(String),
    /// Written, not answered in time (or the connection ended).
    Unknown(String),
}

/// A connection that fails over to the next member.
pub struct Conn {
    addrs: Vec<SocketAddr>,
    at: usize,
    stream: Option<(BufReader<TcpStream>, TcpStream)>,
    /// Where the last call's time went: connect, write, read
    /// (milliseconds) and the number of reads, for an overrun's report.
    phases: [u64; 4],
}

impl Conn {
    /// A client of the members at `addrs`, starting with the `first`th.
    pub fn new(addrs: Vec<SocketAddr>, first: usize) -> Self {
        let at = first % addrs.len().max(1);
        Self {
            addrs,
            at,
            stream: None,
            phases: [0; 4],
        }
    }

    /// Where the last call's time went, for a person reading an overrun.
    pub fn phases(&self) -> String {
        let [connect, write, read, reads] = self.phases;
        format!("connect {connect} ms, write {write} ms, read {read} ms in {reads} reads")
    }

    /// The index of the member it talks to (or will next).
    pub fn member(&self) -> usize {
        self.at
    }

    fn next_member(&mut self) {
        self.stream = None;
        self.at = (self.at + 1) % self.addrs.len().max(1);
    }

    /// Sends `request` and waits up to `timeout` for its answer: the write
    /// and every read of it share that one deadline (a connect, if one is
    /// needed first, takes up to 300 ms more).
    pub fn call(&mut self, request: &Value, timeout: Duration) -> Outcome {
        let ms = |since: Instant| u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.phases = [0; 4];
        let started = Instant::now();
        if self.stream.is_none() {
            let Some(addr) = self.addrs.get(self.at).copied() else {
                return Outcome::Refused("no members".into());
            };
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let Ok(w) = s.try_clone() else {
                        return Outcome::Refused("clone".into());
                    };
                    self.stream = Some((BufReader::new(s), w));
                }
                Err(e) => {
                    self.next_member();
                    return Outcome::Refused(format!("connect {addr}: {e}"));
                }
            }
        }
        self.phases[0] = ms(started);
        let Some((reader, writer)) = self.stream.as_mut() else {
            return Outcome::Refused("not connected".into());
        };
        let mut line = request.to_string();
        line.push('\n');
        let writing = Instant::now();
        let deadline = writing + timeout;
        let _ = writer.set_write_timeout(Some(timeout));
        let wrote = writer.write_all(line.as_bytes());
        self.phases[1] = ms(writing);
        if let Err(e) = wrote {
            // Part of it may have gone out: a whole line could have.
            self.next_member();
            return Outcome::Unknown(format!("write: {e}"));
        }
        let reading = Instant::now();
        let read = read_line_by(reader, deadline, &mut self.phases[3]);
        self.phases[2] = ms(reading);
        let answer = match read {
            Ok(answer) => answer,
            Err(why) => {
                self.next_member();
                return Outcome::Unknown(why);
            }
        };
        match serde_json::from_slice::<Value>(&answer) {
            Ok(v) if v["Status"] == "NO" => {
                self.next_member();
                Outcome::Refused(format!("NO: {}", v["Error"]))
            }
            Ok(v) => Outcome::Answer(v),
            Err(_) => {
                self.next_member();
                Outcome::Unknown(format!("bad answer {:?}", String::from_utf8_lossy(&answer)))
            }
        }
    }
}

/// Reads one line by `deadline`: each read waits only for what is left of
/// the time, so a slow answer in pieces cannot stretch a call past its
/// timeout. Counts the reads in `reads`.
fn read_line_by(
    reader: &mut BufReader<TcpStream>,
    deadline: Instant,
    reads: &mut u64,
) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("read: timed out".into());
        }
        let _ = reader.get_ref().set_read_timeout(Some(left));
        *reads += 1;
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read: {e}")),
        };
        if buf.is_empty() {
            return Err("connection closed".into());
        }
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&buf[..=i]);
            reader.consume(i + 1);
            return Ok(line);
        }
        let n = buf.len();
        line.extend_from_slice(buf);
        reader.consume(n);
    }
}

/// What every client shares.
pub struct Shared {
    /// The run's clock.
    pub clock: Clock,
    /// Where everything is recorded.
    pub history: Arc<History>,
    /// Set when the clients should stop.
    pub stop: Arc<AtomicBool>,
    /// Member client addresses.
    pub addrs: Vec<SocketAddr>,
    /// The guarded resource.
    pub resource: Arc<Resource>,
    /// Lock TTL.
    pub ttl: Duration,
    /// The run's seed.
    pub seed: u64,
}

impl Shared {
    /// Whether the clients should stop.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Records how far a call overran its timeout, if it did.
    pub fn overrun(&self, call: u64, ret: u64, timeout: Duration, what: &str) {
        self.overrun_with(call, ret, timeout, what, String::new);
    }

    /// [`overrun`](Self::overrun), saying where the call's time went
    /// (`detail`, asked only if it overran).
    pub fn overrun_with(
        &self,
        call: u64,
        ret: u64,
        timeout: Duration,
        what: &str,
        detail: impl FnOnce() -> String,
    ) {
        let limit = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        let took = ret.saturating_sub(call);
        // The connect (300 ms) and the write come before the read timeout.
        let slack = 500_000_000;
        if took > limit + slack {
            let mut o = self
                .history
                .overrun
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if o.as_ref().is_none_or(|(d, _)| took - limit > *d) {
                *o = Some((
                    took - limit,
                    format!(
                        "{what} (sent at {:.3}s, took {:.3}s{})",
                        call as f64 / 1e9,
                        took as f64 / 1e9,
                        Some(detail())
                            .filter(|d| !d.is_empty())
                            .map_or_else(String::new, |d| format!(": {d}"))
                    ),
                ));
            }
        }
    }
}

/// A resource guarded by the lock (as a storage service would guard
/// itself): it takes a write only with a token at least the highest it
/// has seen for that name.
#[derive(Debug, Default)]
pub struct Resource {
    highest: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Resource {
    /// A write by `client` holding `token` on `name`, made only if the
    /// holder's lease (as the holder counts it) still runs when the
    /// resource takes it; recorded. Returns whether the lease still ran.
    pub fn write(
        &self,
        shared: &Shared,
        client: u64,
        name: &str,
        token: u64,
        lease_end: u64,
    ) -> bool {
        let mut highest = self.highest.lock().unwrap_or_else(PoisonError::into_inner);
        let at = shared.clock.now();
        if at >= lease_end {
            return false;
        }
        let h = highest.entry(name.to_owned()).or_insert(0);
        let accepted = token >= *h;
        if accepted {
            *h = token;
        }
        push(
            &shared.history.writes,
            Write {
                client,
                name: name.to_owned(),
                token,
                at,
                accepted,
            },
        );
        true
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn sleep_ms(rng: &mut Rng, lo: u64, hi: u64) {
    std::thread::sleep(Duration::from_millis(rng.range(lo, hi)));
}

/// How much later than asked a cluster may end a wait (its deadline
/// slack, `dlm_server::cluster::node::CLOCK_JUMP_SLACK` plus a millisecond;
/// the plain server's is a millisecond).
pub const WAIT_SLACK: Duration = Duration::from_millis(201);

/// Names the lock clients fight over.
pub const LOCK_NAMES: [&str; 2] = ["hot-a", "hot-b"];
/// Keys the key/value clients share.
pub const KEYS: [&str; 3] = ["k1", "k2", "k3"];
/// The owner ID of every key/value client (they share the entries).
pub const KV_OWNER: &str = "kv";

/// A lock client: Lock (often with Wait), writes to the resource while
/// its lease runs, Extend (Lock with Token), Unlock with Token.
pub fn lock_client(shared: &Shared, client: u64) {
    let mut rng = Rng::fork(shared.seed, 1000 + client);
    let mut conn = Conn::new(shared.addrs.clone(), usize::try_from(client).unwrap_or(0));
    let ttl = shared.ttl;
    let mut attempt = 0u64;
    while !shared.stopped() {
        attempt += 1;
        let name = *rng.pick(&LOCK_NAMES);
        let owner = format!("c{client}-{attempt}");
        let wait = if rng.chance(70) {
            Duration::from_millis(rng.range(100, 600))
        } else {
            Duration::ZERO
        };
        let mut req = json!({"Action":"Lock","FileName":name,"ID":owner,"Expire":secs(ttl)});
        if !wait.is_zero() {
            req["Wait"] = json!(secs(wait));
        }
        // The server ends a wait up to its deadline slack (201 ms in a
        // cluster: a millisecond for truncation, 200 for jumps of the
        // leader's clock) after the wait asked for; then 2 s to answer.
        let timeout = wait + WAIT_SLACK + Duration::from_secs(2);
        let call = shared.clock.now();
        let via = conn.member();
        let out = conn.call(&req, timeout);
        let ret = shared.clock.now();
        shared.overrun_with(call, ret, timeout, "Lock", || conn.phases());
        let (token, answer_owner) = match out {
            Outcome::Answer(v) if v["Status"] == "Locked" => (
                v["Token"].as_u64(),
                v["ID"].as_str().unwrap_or("").to_owned(),
            ),
            Outcome::Answer(_) => {
                sleep_ms(&mut rng, 0, 30);
                continue;
            }
            Outcome::Refused(_) => {
                sleep_ms(&mut rng, 20, 80);
                continue;
            }
            Outcome::Unknown(_) => {
                *shared
                    .history
                    .unknown_locks
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) += 1;
                sleep_ms(&mut rng, 20, 80);
                continue;
            }
        };
        let Some(token) = token else {
            // Locked without a token: recorded as a grant of token 0,
            // which the checker's rules will refuse.
            push(
                &shared.history.grants,
                Grant {
                    client,
                    owner,
                    name: name.to_owned(),
                    token: 0,
                    call,
                    ret,
                    lease_end: call,
                    wrong_extend_tokens: vec![],
                    answer_owner,
                    via,
                },
            );
            continue;
        };
        let mut lease_end = call + ns(ttl);
        let mut wrong = Vec::new();
        let steps = rng.range(1, 5);
        for _ in 0..steps {
            if !shared
                .resource
                .write(shared, client, name, token, lease_end)
            {
                break;
            }
            sleep_ms(
                &mut rng,
                0,
                u64::try_from(ttl.as_millis() / 3).unwrap_or(100),
            );
            if rng.chance(50) && !shared.stopped() {
                let req = json!({"Action":"Lock","FileName":name,"ID":owner,
                                 "Expire":secs(ttl),"Token":token});
                let timeout = Duration::from_secs(2);
                let c = shared.clock.now();
                let out = conn.call(&req, timeout);
                let r = shared.clock.now();
                shared.overrun_with(c, r, timeout, "Extend", || conn.phases());
                match out {
                    Outcome::Answer(v) if v["Status"] == "Locked" => {
                        if v["Token"].as_u64() == Some(token) {
                            lease_end = lease_end.max(c + ns(ttl));
                        } else {
                            wrong.push(v["Token"].as_u64().unwrap_or(0));
                        }
                    }
                    Outcome::Answer(_) => {
                        // Lost: the holder stops counting on it.
                        lease_end = lease_end.min(c);
                        break;
                    }
                    Outcome::Refused(_) | Outcome::Unknown(_) => {}
                }
            }
        }
        // Now and then the holder uses its lease to the end: a last write
        // just before it runs out, where a lease the cluster ended early
        // (a leader's clock that jumped) meets the next holder's writes.
        if rng.chance(30) && !shared.stopped() {
            let margin = rng.range(1, 30) * 1_000_000;
            let now = shared.clock.now();
            if lease_end > now + margin {
                std::thread::sleep(Duration::from_nanos(lease_end - now - margin));
                shared
                    .resource
                    .write(shared, client, name, token, lease_end);
            }
        }
        let c = shared.clock.now();
        lease_end = lease_end.min(c);
        push(
            &shared.history.grants,
            Grant {
                client,
                owner: owner.clone(),
                name: name.to_owned(),
                token,
                call,
                ret,
                lease_end,
                wrong_extend_tokens: wrong,
                answer_owner,
                via,
            },
        );
        let req = json!({"Action":"Unlock","FileName":name,"ID":owner,"Token":token});
        let timeout = Duration::from_secs(2);
        let out = conn.call(&req, timeout);
        shared.overrun_with(c, shared.clock.now(), timeout, "Unlock", || conn.phases());
        drop(out);
    }
}

/// A key/value client: Put, Get, compare-and-set, now and then Erase, on
/// a few shared keys; every value it writes is unique.
pub fn kv_client(shared: &Shared, client: u64) {
    let mut rng = Rng::fork(shared.seed, 2000 + client);
    let mut conn = Conn::new(shared.addrs.clone(), usize::try_from(client).unwrap_or(0));
    let mut n = 0u64;
    let mut seen_rev = 0u64;
    while !shared.stopped() {
        n += 1;
        let key = *rng.pick(&KEYS);
        let value = format!("v{client}x{n}");
        let roll = rng.range(0, 100);
        let input = match roll {
            0..=29 => KvInput::Put(value),
            30..=64 => KvInput::Get,
            65..=94 => KvInput::Cas(value, if rng.chance(20) { 0 } else { seen_rev }),
            _ => KvInput::Erase,
        };
        let out = kv_call(&mut conn, shared, client, key, &input);
        if let Some(KvOutput::Answer {
            revision: Some(r), ..
        }) = out
        {
            seen_rev = r;
        }
        sleep_ms(&mut rng, 0, 20);
    }
}

/// An operator's monitoring: asks every member in turn for its `Stats`
/// and `Version`, which a member answers outside the log. They change no
/// state, so nothing is recorded: the checkers see what they would have
/// done wrong (an engine moved by them once expired locks early).
pub fn monitor_client(shared: &Shared) {
    let mut rng = Rng::fork(shared.seed, 3000);
    let members = shared.addrs.len().max(1);
    let mut conns: Vec<Conn> = (0..members)
        .map(|i| Conn::new(vec![shared.addrs[i]], 0))
        .collect();
    let stats = serde_json::json!({"Action":"Stats"});
    let version = serde_json::json!({"Action":"Version"});
    while !shared.stopped() {
        for conn in &mut conns {
            let ask = if rng.chance(50) { &stats } else { &version };
            let _ = conn.call(ask, Duration::from_millis(500));
        }
        sleep_ms(&mut rng, 0, 20);
    }
}

/// One key/value call, recorded unless it was certainly not applied;
/// returns its output if recorded.
pub fn kv_call(
    conn: &mut Conn,
    shared: &Shared,
    client: u64,
    key: &str,
    input: &KvInput,
) -> Option<KvOutput> {
    let req = match input {
        KvInput::Put(v) => {
            json!({"Action":"Put","FileName":key,"ID":KV_OWNER,"Expire":3000,"DataStore":v})
        }
        KvInput::Cas(v, r) => json!({"Action":"Put","FileName":key,"ID":KV_OWNER,
                                     "Expire":3000,"DataStore":v,"Revision":r}),
        KvInput::Get => json!({"Action":"Get","FileName":key,"ID":KV_OWNER}),
        KvInput::Erase => json!({"Action":"Erase","FileName":key,"ID":KV_OWNER}),
    };
    let timeout = Duration::from_secs(2);
    let call = shared.clock.now();
    let out = conn.call(&req, timeout);
    let ret = shared.clock.now();
    shared.overrun_with(call, ret, timeout, "kv", || conn.phases());
    let output = match out {
        Outcome::Refused(_) => return None,
        Outcome::Unknown(_) => KvOutput::Unknown,
        Outcome::Answer(v) => KvOutput::Answer {
            status: v["Status"].as_str().unwrap_or("?").to_owned(),
            value: v["DataStore"].as_str().map(str::to_owned),
            revision: v["Revision"].as_u64(),
        },
    };
    push(
        &shared.history.kv,
        KvOp {
            client,
            key: key.to_owned(),
            input: input.clone(),
            call,
            ret,
            output: output.clone(),
        },
    );
    Some(output)
}
