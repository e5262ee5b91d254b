//! The operator's HTTP listener (`--http`): Prometheus metrics, health
//! and readiness, and the dashboard.
//!
//! It runs on the tokio runtime around the event loop, never on the loop:
//! it reads the [`Snapshot`](crate::metrics::Snapshot) the loop publishes,
//! and asks the loop only for an administrator's lock table (a message
//! and a one-shot answer, never a wait on the loop's side). A slow or
//! hostile client costs one of [`MAX_CONNECTIONS`] slots for at most
//! [`READ_TIMEOUT`] plus [`WRITE_TIMEOUT`]; a request head is at most
//! [`MAX_HEAD`] bytes; only `GET` and `HEAD`, no bodies, one request per
//! connection.
//!
//! | Path | Answer |
//! |---|---|
//! | `/metrics` | Prometheus text format 0.0.4 |
//! | `/healthz` | 200 if the event loop published within [`STALE_AFTER`] |
//! | `/readyz` | 200 if the server serves (listening; in a cluster, a leader known) |
//! | `/` , `/dashboard.js`, `/dashboard.css` | the dashboard, embedded in the binary |
//! | `/api/sample` | the latest statistics as JSON |
//! | `/api/history?since=MS` | the samples of the last hour (every 2 s) after `MS` |
//! | `/api/locks?prefix=P` , `/api/lock?name=N` | the lock table, for an administrator (`Authorization: Basic` name:secret) |

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::admin::Query;
use crate::eventloop::{Control, Handle};
use crate::metrics::{History, Shared};

/// Largest request head (request line and headers) read.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a client may take to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to read its answer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// `/healthz` fails if the loop has not published for this long.
pub const STALE_AFTER: Duration = Duration::from_secs(5);
/// How long an administrator's query waits for the loop.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Most headers parsed.
const MAX_HEADERS: usize = 32;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("dashboard/dashboard.css");

/// What every connection's task shares.
struct State {
    shared: Shared,
    registry: prometheus_client::registry::Registry,
    history: Mutex<History>,
    handle: Handle,
}

/// Serves `listener` until `stop` is cancelled.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    shared: Shared,
    handle: Handle,
    stop: CancellationToken,
) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            warn!("http listener: {e}");
            return;
        }
    };
    let state = Arc::new(State {
        registry: crate::metrics::registry(shared.clone()),
        shared,
        history: Mutex::new(History::default()),
        handle,
    });
    let sampler = tokio::spawn(sample(state.clone(), stop.clone()));
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    let state = state.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        if let Err(e) = connection(stream, &state).await {
                            debug!(%peer, "http: {e}");
                        }
                    });
                }
                // Full: closed at once (its owner retries).
                Err(_) => drop(stream),
            },
            Err(e) => {
                // Out of descriptors and the like: try again shortly.
                debug!("http accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    sampler.abort();
}

/// Keeps the dashboard's history.
async fn sample(state: Arc<State>, stop: CancellationToken) {
    let mut every = tokio::time::interval(crate::metrics::HISTORY_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let s = state.shared.latest();
        let text = crate::metrics::sample_json(&s).to_string();
        state
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(s.unix_ms, text);
    }
}

/// An answer.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Reply {
    fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type,
            body: body.into(),
        }
    }

    fn text(status: u16, body: &str) -> Self {
        Self::new(status, "text/plain; charset=utf-8", format!("{body}\n"))
    }

    fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::new(status, "application/json", body)
    }

    fn error(status: u16, why: &str) -> Self {
        Self::json(status, serde_json::json!({ "Error": why }).to_string())
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Reads one request head, answers it, and closes.
async fn connection(mut stream: TcpStream, state: &State) -> std::io::Result<()> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        loop {
            if len == buf.len() {
                return Ok(None);
            }
            let n = stream.read(&mut buf[len..]).await?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
            len += n;
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf[..len]) {
                Ok(httparse::Status::Complete(_)) => return Ok(Some(true)),
                Ok(httparse::Status::Partial) => {}
                Err(_) => return Ok(Some(false)),
            }
        }
    })
    .await;
    let (reply, head_only) = match read {
        Err(_) => return Ok(()), // too slow: closed without an answer
        Ok(Err(e)) => return Err(e),
        Ok(Ok(None)) => (Reply::text(431, "request head too large"), false),
        Ok(Ok(Some(false))) => (Reply::text(400, "malformed request"), false),
        Ok(Ok(Some(true))) => {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            // It parsed above; parse again to borrow it here.
            let _ = req.parse(&buf[..len]);
            let head = req.method == Some("HEAD");
            (answer(&req, state).await, head)
        }
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         X-Content-Type-Options: nosniff\r\nContent-Security-Policy: default-src 'self'; \
         frame-ancestors 'none'\r\nConnection: close\r\n\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(&reply.body);
    }
    tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&out).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// `%XX` and `+` decoded; `None` if it is not UTF-8 or a `%` is broken.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The value of query parameter `key`, decoded: `Ok(None)` if absent,
/// `Err` if its encoding is broken.
fn param(query: &str, key: &str) -> Result<Option<String>, BadEncoding> {
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            return percent_decode(v).map(Some).ok_or(BadEncoding);
        }
    }
    Ok(None)
}

/// A query parameter's `%` escapes are broken or not UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BadEncoding;

/// `Authorization: Basic base64(name:secret)`.
fn credentials(req: &httparse::Request<'_, '_>) -> Option<(String, String)> {
    let h = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"))?;
    let v = std::str::from_utf8(h.value).ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (name, secret) = text.split_once(':')?;
    Some((name.to_owned(), secret.to_owned()))
}

async fn answer(req: &httparse::Request<'_, '_>, state: &State) -> Reply {
    if !matches!(req.method, Some("GET" | "HEAD")) {
        return Reply::text(405, "only GET and HEAD");
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/metrics" => Reply::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            crate::metrics::prometheus_text(&state.registry),
        ),
        "/healthz" => {
            let s = state.shared.latest();
            if s.taken.elapsed() <= STALE_AFTER {
                Reply::text(200, "ok")
            } else {
                Reply::text(503, "the event loop has not reported for 5 s")
            }
        }
        "/readyz" => {
            let s = state.shared.latest();
            if s.ready && s.taken.elapsed() <= STALE_AFTER {
                Reply::text(200, "ready")
            } else {
                Reply::text(503, "not ready")
            }
        }
        "/" | "/index.html" => Reply::new(200, "text/html; charset=utf-8", INDEX_HTML),
        "/dashboard.js" => Reply::new(200, "text/javascript; charset=utf-8", DASHBOARD_JS),
        "/dashboard.css" => Reply::new(200, "text/css; charset=utf-8", DASHBOARD_CSS),
        "/api/sample" => Reply::json(
            200,
            crate::metrics::sample_json(&state.shared.latest()).to_string(),
        ),
        "/api/history" => {
            let since = match param(query, "since") {
                Ok(None) => 0,
                Ok(Some(v)) if v.parse::<u64>().is_ok() => v.parse::<u64>().unwrap_or(0),
                _ => return Reply::error(400, "since: milliseconds since 1970"),
            };
            let text = state
                .history
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .since_json(since);
            Reply::json(200, text)
        }
        "/api/locks" | "/api/lock" => {
            let q = if path == "/api/locks" {
                match param(query, "prefix") {
                    Ok(p) => Query::Locks(p.unwrap_or_default()),
                    Err(BadEncoding) => return Reply::error(400, "prefix: bad encoding"),
                }
            } else {
                match param(query, "name") {
                    Ok(Some(n)) if !n.is_empty() => Query::Lock(n),
                    _ => return Reply::error(400, "name: the lock's name"),
                }
            };
            admin(req, state, q).await
        }
        _ => Reply::text(404, "not found"),
    }
}

async fn admin(req: &httparse::Request<'_, '_>, state: &State, query: Query) -> Reply {
    let Some((name, secret)) = credentials(req) else {
        return Reply::error(401, "an administrator's name and secret are required");
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    state.handle.send(Control::Admin {
        name,
        secret,
        query,
        reply: tx,
    });
    match tokio::time::timeout(ADMIN_TIMEOUT, rx).await {
        Ok(Ok(Some(a))) => {
            let mut table: serde_json::Value = a
                .table
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or(serde_json::Value::Null);
            tokens_as_text(&mut table);
            let members: Vec<serde_json::Value> = a
                .members
                .iter()
                .map(|(id, peer)| serde_json::json!({"ID": id, "Peer": peer}))
                .collect();
            let status = if a.table.is_some() { 200 } else { 404 };
            Reply::json(
                status,
                serde_json::json!({ "Table": table, "Members": members }).to_string(),
            )
        }
        Ok(Ok(None)) => Reply::error(403, "not an administrator"),
        _ => Reply::error(503, "the server did not answer"),
    }
}

/// Fencing tokens exceed what a JavaScript number holds exactly (2^53):
/// the browser gets them as text.
fn tokens_as_text(table: &mut serde_json::Value) {
    fn token(v: &mut serde_json::Value) {
        if let Some(t) = v.get("Token").and_then(serde_json::Value::as_u64) {
            v["Token"] = serde_json::Value::String(t.to_string());
        }
    }
    // A lock's token, and each holder's of a semaphore or read/write lock.
    let mut fix = |lock: &mut serde_json::Value| {
        token(lock);
        if let Some(holders) = lock
            .get_mut("Holders")
            .and_then(serde_json::Value::as_array_mut)
        {
            holders.iter_mut().for_each(token);
        }
    };
    if let Some(locks) = table
        .get_mut("Locks")
        .and_then(serde_json::Value::as_array_mut)
    {
        locks.iter_mut().for_each(&mut fix);
    }
    if let Some(lock) = table.get_mut("Lock") {
        fix(lock);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_reach_the_browser_exactly() {
        let mut v: serde_json::Value =
            serde_json::from_str(r#"{"Locks":[{"Token":1796125439187295201}],"Count":1}"#).unwrap();
        super::tokens_as_text(&mut v);
        assert_eq!(v["Locks"][0]["Token"], "1796125439187295201");
        let mut one: serde_json::Value =
            serde_json::from_str(r#"{"Lock":{"Token":9007199254740993}}"#).unwrap();
        super::tokens_as_text(&mut one);
        assert_eq!(one["Lock"]["Token"], "9007199254740993");
        let mut sem: serde_json::Value = serde_json::from_str(
            r#"{"Locks":[{"Token":9007199254740993,"Holders":[{"Token":9007199254740993},{"Token":9007199254740995}]}]}"#,
        )
        .unwrap();
        super::tokens_as_text(&mut sem);
        assert_eq!(sem["Locks"][0]["Token"], "9007199254740993");
        assert_eq!(sem["Locks"][0]["Holders"][1]["Token"], "9007199254740995");
    }

    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        assert_eq!(
            param("a=1&prefix=jobs%2Fx+y", "prefix"),
            Ok(Some("jobs/x y".into()))
        );
        assert_eq!(param("prefix=%zz", "prefix"), Err(BadEncoding));
        assert_eq!(param("prefix=%2", "prefix"), Err(BadEncoding));
        assert_eq!(param("prefix=%ff", "prefix"), Err(BadEncoding), "not UTF-8");
        assert_eq!(param("other=1", "prefix"), Ok(None));
        assert_eq!(param("prefix", "prefix"), Ok(Some(String::new())));
    }

    #[test]
    fn basic_credentials_are_read() {
        let mut headers = [httparse::EMPTY_HEADER; 4];
        let mut req = httparse::Request::new(&mut headers);
        let raw = b"GET / HTTP/1.1\r\nAuthorization: Basic cm9vdDpzM2M6cmV0\r\n\r\n";
        req.parse(raw).unwrap();
        assert_eq!(credentials(&req), Some(("root".into(), "s3c:ret".into())));
        let mut headers = [httparse::EMPTY_HEADER; 4];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(b"GET / HTTP/1.1\r\nAuthorization: Bearer x\r\n\r\n")
            .unwrap();
        assert_eq!(credentials(&req), None);
    }
}
