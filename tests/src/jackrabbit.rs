//! A stand-in for the original JackrabbitDLM server, to hold dlm's clients
//! to what that server answers (PROTOCOL.md sections 1-5 and the original's
//! observable behaviour), written for these tests, not taken from it:
//!
//! - it reads **legacy framing only** (a plain JSON line does not decode and
//!   is answered `BadPayload`), answers in legacy framing, and **closes the
//!   connection after each answer**: one request per connection;
//! - every request needs `FileName`, `Action`, `ID` and a numeric `Expire`;
//!   an `Expire` over 3543 s, or a `DataStore` over 16 KiB, is `BadPayload`
//!   (identities are not supported here: `Name` is `BadPayload` too);
//! - locks and values share **one namespace**; expired entries are purged
//!   before each request, as the original purges once per turn of its loop;
//! - `Lock` answers `{"Status": "Locked", "ID": ...}`: no `Token`, no
//!   `Expire`; a re-lock by the same ID extends it; `Wait`, `Token` and
//!   `Revision` are ignored (there is no queue, no fencing, no
//!   compare-and-set);
//! - `Put` answers `Done` with `ID` and no `Revision`; `Get` answers `Done`
//!   with `ID` and `DataStore` (or `NoData` for a lock's name); `Erase` of a
//!   lock's name is `Corruption`; `Version` is
//!   `{"Status": "Version", "ID": "JackrabbitDLM/0.0.0.2.300"}`; `TestLock`,
//!   `Stats` and every other action are `BadAction`;
//! - its JSON is Python's `json.dumps`: `", "` and `": "` separators and
//!   non-ASCII escaped as `\uXXXX`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dlm_core::codec;
use serde_json::Value;

/// The version string the stand-in reports.
pub const VERSION: &str = "JackrabbitDLM/0.0.0.2.300";

const MAX_TTL_SECS: f64 = 3543.0;
const MAX_DATA: usize = 16 * 1024;

struct Entry {
    id: String,
    expires: Instant,
    /// `Some` for a value, `None` for a lock.
    data: Option<String>,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
}

/// A running stand-in on `127.0.0.1`, stopped when dropped.
pub struct Jackrabbit {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Jackrabbit {
    /// Starts one on a free port.
    pub fn start() -> Self {
        Self::on("127.0.0.1:0")
    }

    /// Starts one on `addr` (`host:port`).
    pub fn on(addr: &str) -> Self {
        let listener = TcpListener::bind(addr).expect("bind the stand-in");
        let addr = listener.local_addr().expect("stand-in address");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(State::default()));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let state = state.clone();
                            std::thread::spawn(move || serve(stream, &state));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            // Polling accept keeps stopping simple; 2 ms is
                            // nothing next to a client's round trip.
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        Err(_) => return,
                    }
                }
            })
        };
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Jackrabbit {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One connection: one request line, one answer, closed (the stream is
/// dropped at the end, as the original closes after sending).
#[allow(clippy::needless_pass_by_value)]
fn serve(stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let answer = {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        answer(&mut state, line.trim())
    };
    let mut framed = codec::encode(answer.as_bytes());
    framed.push('\n');
    let _ = (&stream).write_all(framed.as_bytes());
}

/// The answer (JSON, before framing) to one request line.
fn answer(state: &mut State, line: &str) -> String {
    let Some(request) = codec::decode(line.as_bytes())
        .ok()
        .and_then(|json| serde_json::from_slice::<Value>(&json).ok())
    else {
        return status("BadPayload", None, None);
    };
    let field = |k: &str| request.get(k);
    let text = |k: &str| field(k).and_then(Value::as_str);
    let (Some(name), Some(action), Some(id), Some(expire)) = (
        text("FileName"),
        text("Action"),
        text("ID"),
        field("Expire").and_then(number),
    ) else {
        return status("BadPayload", None, None);
    };
    let data = field("DataStore").and_then(Value::as_str);
    if data.is_some_and(|d| d.len() > MAX_DATA) || expire > MAX_TTL_SECS || field("Name").is_some()
    {
        return status("BadPayload", None, None);
    }
    let now = Instant::now();
    state.entries.retain(|_, e| e.expires > now);
    let until = now + Duration::from_secs_f64(expire.max(0.0));
    let entries = &mut state.entries;
    match action.to_ascii_lowercase().as_str() {
        "lock" => match entries.get_mut(name) {
            None => {
                entries.insert(
                    name.to_owned(),
                    Entry {
                        id: id.to_owned(),
                        expires: until,
                        data: None,
                    },
                );
                status("Locked", Some(id), None)
            }
            Some(e) if e.id == id => {
                e.expires = until;
                status("Locked", Some(id), None)
            }
            Some(_) => status("NotOwner", None, None),
        },
        "unlock" => match entries.get(name) {
            None => status("Unlocked", None, None),
            Some(e) if e.id == id => {
                entries.remove(name);
                status("Unlocked", Some(id), None)
            }
            Some(_) => status("NotOwner", None, None),
        },
        "get" => match entries.get(name) {
            None => status("NotFound", None, None),
            Some(e) if e.id == id => match &e.data {
                Some(d) => status("Done", Some(id), Some(d)),
                None => status("NoData", Some(id), None),
            },
            Some(_) => status("NotOwner", None, None),
        },
        "put" => {
            let Some(data) = data else {
                return status("BadPayload", None, None);
            };
            match entries.get_mut(name) {
                Some(e) if e.id != id => status("NotOwner", None, None),
                _ => {
                    entries.insert(
                        name.to_owned(),
                        Entry {
                            id: id.to_owned(),
                            expires: until,
                            data: Some(data.to_owned()),
                        },
                    );
                    status("Done", Some(id), None)
                }
            }
        }
        "erase" => match entries.get(name) {
            None => status("NotFound", None, None),
            Some(e) if e.data.is_none() => {
                entries.remove(name);
                status("Corruption", None, None)
            }
            Some(e) if e.id == id => {
                entries.remove(name);
                status("Done", Some(id), None)
            }
            Some(_) => status("NotOwner", None, None),
        },
        "version" => status("Version", Some(VERSION), None),
        _ => status("BadAction", None, None),
    }
}

/// `Expire` as Python's `float()` takes it: a number, or a string of one.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `{"Status": status, "ID": id, "DataStore": data}` as `json.dumps` writes
/// it (absent fields left out).
fn status(status: &str, id: Option<&str>, data: Option<&str>) -> String {
    let mut out = format!("{{\"Status\": {}", py_string(status));
    if let Some(id) = id {
        out.push_str(", \"ID\": ");
        out.push_str(&py_string(id));
    }
    if let Some(data) = data {
        out.push_str(", \"DataStore\": ");
        out.push_str(&py_string(data));
    }
    out.push('}');
    out
}

/// A JSON string as Python's `json.dumps` writes it (`ensure_ascii`).
fn py_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(state: &mut State, json: &str) -> String {
        answer(state, &codec::encode(json.as_bytes()))
    }

    #[test]
    fn answers_as_the_original_does() {
        let mut s = State::default();
        let lock = r#"{"Action":"Lock","FileName":"f","ID":"a","Expire":"30","Token":5}"#;
        assert_eq!(ask(&mut s, lock), r#"{"Status": "Locked", "ID": "a"}"#);
        assert_eq!(ask(&mut s, lock), r#"{"Status": "Locked", "ID": "a"}"#);
        let other = r#"{"Action":"lock","FileName":"f","ID":"b","Expire":1,"Wait":9}"#;
        assert_eq!(ask(&mut s, other), r#"{"Status": "NotOwner"}"#);
        let get = r#"{"Action":"Get","FileName":"f","ID":"a","Expire":0}"#;
        assert_eq!(ask(&mut s, get), r#"{"Status": "NoData", "ID": "a"}"#);
        let put = r#"{"Action":"Put","FileName":"v","ID":"a","Expire":5,"DataStore":"\u00e9","Revision":9}"#;
        assert_eq!(ask(&mut s, put), r#"{"Status": "Done", "ID": "a"}"#);
        let get = r#"{"Action":"Get","FileName":"v","ID":"a","Expire":0}"#;
        assert_eq!(
            ask(&mut s, get),
            r#"{"Status": "Done", "ID": "a", "DataStore": "\u00e9"}"#
        );
        let stats = r#"{"Action":"Stats","FileName":"-","ID":"-","Expire":0}"#;
        assert_eq!(ask(&mut s, stats), r#"{"Status": "BadAction"}"#);
        let no_expire = r#"{"Action":"Unlock","FileName":"f","ID":"a"}"#;
        assert_eq!(ask(&mut s, no_expire), r#"{"Status": "BadPayload"}"#);
        let unlock = r#"{"Action":"Unlock","FileName":"f","ID":"a","Expire":0}"#;
        assert_eq!(ask(&mut s, unlock), r#"{"Status": "Unlocked", "ID": "a"}"#);
        assert_eq!(ask(&mut s, unlock), r#"{"Status": "Unlocked"}"#);
        assert_eq!(
            answer(&mut s, r#"{"Action":"Version"}"#),
            r#"{"Status": "BadPayload"}"#,
            "plain JSON is not its framing"
        );
        assert_eq!(py_string("a\u{1F512}"), r#""a\ud83d\udd12""#);
    }
}
