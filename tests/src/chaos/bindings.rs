//! Chaos clients through the real bindings, with their failover on: the
//! `dlm` Rust crate (threads of this process) and the Python package (a
//! worker process, `tests/chaos/python_worker.py`, speaking JSON lines with
//! this one). Both record into the same history as the protocol clients,
//! on the same keys and lock names, and write to the same guarded
//! resource; a call that failed after it may have been sent is recorded
//! as indeterminate.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use dlm::{Client, Error, Options, Revision};
use serde_json::{Value, json};

use super::client::{KEYS, KV_OWNER, LOCK_NAMES, Shared, WAIT_SLACK};
use super::history::{Grant, KvInput, KvOp, KvOutput, push};
use super::rng::Rng;

/// Values stored as their text (the protocol clients share the keys).
struct Raw;

impl dlm::Encoder for Raw {
    fn encode(&self, _name: &str, plain: &[u8]) -> dlm::Result<String> {
        String::from_utf8(plain.to_vec()).map_err(|_| Error::Encoding("not UTF-8".into()))
    }

    fn decode(&self, _name: &str, stored: &str) -> dlm::Result<Vec<u8>> {
        Ok(stored.as_bytes().to_vec())
    }
}

/// How long a binding call may take to answer (beyond a lock's wait).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

fn options(id: &str) -> Options {
    Options::new()
        .client_id(id)
        .io_timeout(CALL_TIMEOUT)
        .connect_timeout(Duration::from_millis(300))
        .encoder(Raw)
}

fn servers(shared: &Shared) -> String {
    shared
        .addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether an error means the request was certainly not applied (the
/// server refused it); otherwise it may have been.
fn refused(e: &Error) -> bool {
    matches!(
        e,
        Error::NotOwner
            | Error::BadRequest(_)
            | Error::InvalidArgument(_)
            | Error::NoMemory
            | Error::Cancelled
    )
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A lock client through the `dlm` crate: Lock (often with a wait),
/// writes to the resource while its lease runs, extends, unlocks; each
/// attempt under an owner ID of its own.
pub fn rust_lock_client(shared: &Shared, client: u64) {
    let mut rng = Rng::fork(shared.seed, 3000 + client);
    let ttl = shared.ttl;
    let list = servers(shared);
    let mut attempt = 0u64;
    while !shared.stopped() {
        attempt += 1;
        let name = *rng.pick(&LOCK_NAMES);
        let owner = format!("rs{client}-{attempt}");
        let Ok(c) = Client::connect_with(list.as_str(), options(&owner)) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let wait = if rng.chance(70) {
            Duration::from_millis(rng.range(100, 600))
        } else {
            Duration::ZERO
        };
        let call = shared.clock.now();
        let got = c.lock(name).ttl(ttl).wait(wait).acquire();
        let ret = shared.clock.now();
        shared.overrun(
            call,
            ret,
            wait + WAIT_SLACK + CALL_TIMEOUT,
            "Rust crate Lock",
        );
        let held = match got {
            Ok(l) => l,
            Err(Error::NotOwner | Error::Timeout) => {
                std::thread::sleep(Duration::from_millis(rng.range(0, 30)));
                continue;
            }
            Err(e) => {
                if !refused(&e) {
                    *shared
                        .history
                        .unknown_locks
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) += 1;
                }
                std::thread::sleep(Duration::from_millis(rng.range(20, 80)));
                continue;
            }
        };
        let token = held.token().map_or(0, |t| t.0);
        let mut lease_end = call + ns(ttl);
        for _ in 0..rng.range(1, 5) {
            if !shared
                .resource
                .write(shared, client, name, token, lease_end)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(
                rng.range(0, u64::try_from(ttl.as_millis() / 3).unwrap_or(100)),
            ));
            if rng.chance(50) && !shared.stopped() {
                let c0 = shared.clock.now();
                let r = held.extend(ttl);
                shared.overrun(c0, shared.clock.now(), CALL_TIMEOUT, "Rust crate Extend");
                match r {
                    Ok(()) => lease_end = lease_end.max(c0 + ns(ttl)),
                    Err(Error::LockLost | Error::NotOwner) => {
                        lease_end = lease_end.min(c0);
                        break;
                    }
                    Err(_) => {}
                }
            }
        }
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
        let c0 = shared.clock.now();
        lease_end = lease_end.min(c0);
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
                wrong_extend_tokens: vec![],
                answer_owner: owner,
                via: 0,
            },
        );
        // `unlock` consumes the guard: if its release failed to reach a
        // member, the guard's `Drop` tries once more (documented), so the
        // call may take two timeouts.
        let _ = held.unlock();
        shared.overrun(
            c0,
            shared.clock.now(),
            CALL_TIMEOUT * 2,
            "Rust crate Unlock (and Drop's retry)",
        );
    }
}

/// A key/value client through the `dlm` crate, on the protocol clients'
/// keys and owner ID.
pub fn rust_kv_client(shared: &Shared, client: u64) {
    let mut rng = Rng::fork(shared.seed, 4000 + client);
    let c = loop {
        match Client::connect_with(servers(shared).as_str(), options(KV_OWNER)) {
            Ok(c) => break c,
            Err(_) if !shared.stopped() => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => return,
        }
    };
    let ttl = Duration::from_secs(3000);
    let mut n = 0u64;
    let mut seen_rev = 0u64;
    while !shared.stopped() {
        n += 1;
        let key = *rng.pick(&KEYS);
        let value = format!("r{client}x{n}");
        let input = match rng.range(0, 100) {
            0..=29 => KvInput::Put(value),
            30..=64 => KvInput::Get,
            65..=94 => KvInput::Cas(value, if rng.chance(20) { 0 } else { seen_rev }),
            _ => KvInput::Erase,
        };
        let call = shared.clock.now();
        let answer = |status: &str, value: Option<String>, revision: Option<u64>| {
            Ok(KvOutput::Answer {
                status: status.to_owned(),
                value,
                revision,
            })
        };
        let out: Result<KvOutput, Error> = match &input {
            KvInput::Put(v) => c
                .put(key, v.as_bytes(), ttl)
                .and_then(|r| answer("Done", None, Some(r.0))),
            KvInput::Cas(v, r) => match c.put_if(key, v.as_bytes(), ttl, Revision(*r)) {
                Ok(r) => answer("Done", None, Some(r.0)),
                Err(Error::Conflict { current }) => answer("Conflict", None, Some(current.0)),
                Err(e) => Err(e),
            },
            KvInput::Get => match c.get(key) {
                Ok(Some(v)) => answer(
                    "Done",
                    Some(String::from_utf8_lossy(&v.data).into_owned()),
                    Some(v.revision.0),
                ),
                Ok(None) => answer("NotFound", None, None),
                Err(e) => Err(e),
            },
            KvInput::Erase => match c.erase(key) {
                Ok(true) => answer("Done", None, None),
                Ok(false) => answer("NotFound", None, None),
                Err(e) => Err(e),
            },
        };
        let ret = shared.clock.now();
        shared.overrun(call, ret, CALL_TIMEOUT, "Rust crate key/value");
        let output = match out {
            Ok(o) => o,
            Err(e) if refused(&e) => continue,
            Err(_) => KvOutput::Unknown,
        };
        if let KvOutput::Answer {
            revision: Some(r), ..
        } = &output
        {
            seen_rev = *r;
        }
        push(
            &shared.history.kv,
            KvOp {
                client,
                key: key.to_owned(),
                input,
                call,
                ret,
                output,
            },
        );
        std::thread::sleep(Duration::from_millis(rng.range(0, 20)));
    }
}

/// A Python worker process (`tests/chaos/python_worker.py` under the
/// interpreter `python`, which has the `dlm` package): `role` is `lock` or
/// `kv`. Runs until the clients stop; what it records goes into the
/// history. Returns why it could not run, if it could not.
pub fn python_client(
    shared: &Arc<Shared>,
    python: &Path,
    role: &str,
    client: u64,
) -> Result<(), String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("chaos/python_worker.py");
    let mut child: Child = Command::new(python)
        .arg(&script)
        .args([
            "--servers",
            &servers(shared),
            "--role",
            role,
            "--client",
            &client.to_string(),
            "--seed",
            &shared.seed.to_string(),
            "--ttl-ms",
            &shared.ttl.as_millis().to_string(),
            "--origin",
            &shared.clock.origin().to_string(),
            "--timeout",
            &CALL_TIMEOUT.as_secs_f64().to_string(),
            "--wait-slack",
            &WAIT_SLACK.as_secs_f64().to_string(),
            "--kv-owner",
            KV_OWNER,
            "--keys",
            &KEYS.join(","),
            "--names",
            &LOCK_NAMES.join(","),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    let (Some(mut to), Some(from)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("no pipes to the worker".into());
    };
    let mut from = BufReader::new(from);
    let mut line = String::new();
    let mut result = Ok(());
    loop {
        line.clear();
        match from.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                result = Err(format!("reading the worker: {e}"));
                break;
            }
        }
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            result = Err(format!("the worker said {line:?}"));
            break;
        };
        let answer = handle(shared, client, &msg);
        let Some(answer) = answer else { continue };
        if to.write_all(format!("{answer}\n").as_bytes()).is_err() {
            break;
        }
    }
    drop(to);
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// One message from a Python worker; the answer it waits for, if any.
fn handle(shared: &Shared, client: u64, msg: &Value) -> Option<Value> {
    let u = |k: &str| msg[k].as_u64().unwrap_or(0);
    let s = |k: &str| msg[k].as_str().unwrap_or("").to_owned();
    match msg["t"].as_str().unwrap_or("") {
        // Is it time to stop?
        "stop?" => Some(json!({"stop": shared.stopped()})),
        "write" => {
            let ran = shared
                .resource
                .write(shared, client, &s("name"), u("token"), u("lease_end"));
            Some(json!({"ran": ran}))
        }
        "grant" => {
            push(
                &shared.history.grants,
                Grant {
                    client,
                    owner: s("owner"),
                    name: s("name"),
                    token: u("token"),
                    call: u("call"),
                    ret: u("ret"),
                    lease_end: u("lease_end"),
                    wrong_extend_tokens: vec![],
                    answer_owner: s("owner"),
                    via: 0,
                },
            );
            None
        }
        "unknown_lock" => {
            *shared
                .history
                .unknown_locks
                .lock()
                .unwrap_or_else(PoisonError::into_inner) += 1;
            None
        }
        "call" => {
            // A call's duration, checked against its timeout.
            let timeout = Duration::from_nanos(u("timeout"));
            shared.overrun(
                u("call"),
                u("ret"),
                timeout,
                &format!("Python {}", s("what")),
            );
            None
        }
        "kv" => {
            let input = match msg["op"].as_str().unwrap_or("") {
                "put" => KvInput::Put(s("value")),
                "cas" => KvInput::Cas(s("value"), u("expect")),
                "get" => KvInput::Get,
                _ => KvInput::Erase,
            };
            let output = if msg["unknown"].as_bool() == Some(true) {
                KvOutput::Unknown
            } else {
                KvOutput::Answer {
                    status: s("status"),
                    value: msg["out_value"].as_str().map(str::to_owned),
                    revision: msg["out_rev"].as_u64(),
                }
            };
            push(
                &shared.history.kv,
                KvOp {
                    client,
                    key: s("key"),
                    input,
                    call: u("call"),
                    ret: u("ret"),
                    output,
                },
            );
            None
        }
        _ => None,
    }
}
