//! The HTTP/1.1 server under the consumer's `/metrics` and the sidecar's (`barbridge.MetricsServer`):
//! hyper on a current-thread tokio runtime, on one thread of its own. Whatever a client sends,
//! what it can make the process spend is bounded (see [`Limits`]; the README's bounds table):
//!
//! - a request head of at most [`MAX_HEAD_BYTES`] and [`MAX_HEADERS`] headers, read within
//!   [`HEAD_TIMEOUT`] (else `431`/`408` and the connection closes);
//! - request bodies are never read: a `Content-Length` is only a number (the connection is not
//!   reused after such a request);
//! - at most [`MAX_CONNECTIONS`] connections at once, and never one that would leave fewer than
//!   [`FD_RESERVE`] file descriptors free; past that a connection is closed at once and counted
//!   (`connections_refused`);
//! - each connection lives at most [`CONNECTION_DEADLINE`], writes included (a client that sends
//!   requests and reads nothing is dropped then), keep-alive included;
//! - the accept loop survives every accept error (`EMFILE`, `ENFILE`, ...): counted, logged
//!   (rate-limited), retried after a short backoff;
//! - a panicking handler answers `500`, counted; the server goes on.
//!
//! Each connection is its own task, so a slow or stuck client never delays another one. Its own
//! failures are counted in [`ServerStatus`] (the consumer's status file and `/metrics` show it).

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener, ToSocketAddrs};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore};

use crate::consumer::health::RateLimitedLog;

/// The status file's section with the server's own counters ([`ServerStatus`]).
pub const STATUS_SECTION: &str = "http";

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The address is not `HOST:PORT`.
    #[error("--metrics-addr {addr:?} is not an address (use HOST:PORT, e.g. 127.0.0.1:9464)")]
    BadAddress {
        /// The address given.
        addr: String,
    },
    /// The address could not be bound (in use, not permitted).
    #[error("cannot listen on {addr} for metrics: {source}")]
    Bind {
        /// The address given.
        addr: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The server could not start for another reason.
    #[error("cannot start the metrics server on {addr}: {detail}")]
    Start {
        /// The address given.
        addr: String,
        /// What the server library said.
        detail: String,
    },
}

/// Connections served at once; more are closed at once and counted.
pub const MAX_CONNECTIONS: usize = 64;

/// Time a client has to send a whole request head (on a new connection, and for each further
/// request on a kept-alive one).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest life of one connection, reading and writing included: then an answer being written
/// gets [`SHUTDOWN_GRACE`] more and the connection is closed.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);

/// Time a connection past its deadline has to finish the answer it is writing.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Bytes of a request head (request line and headers) read at most; hyper's read buffer bound.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Headers a request may have.
pub const MAX_HEADERS: usize = 64;

/// File descriptors the server never takes: a connection that would leave fewer free under the
/// process's `RLIMIT_NOFILE` is closed at once (counted as refused), so the FIFO, the journal and
/// the status file can always open theirs.
pub const FD_RESERVE: u64 = 32;

/// First and longest pause after an accept error (doubling in between).
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

/// What the server lets a client spend. [`Limits::default`] is what the consumer and the sidecar use.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time to send a request head.
    pub head_timeout: Duration,
    /// Longest life of a connection.
    pub connection_deadline: Duration,
    /// Time to finish an answer past the deadline.
    pub shutdown_grace: Duration,
    /// Bytes of a request head (at least 8,192: hyper's minimum).
    pub max_head_bytes: usize,
    /// Headers of a request.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            head_timeout: HEAD_TIMEOUT,
            connection_deadline: CONNECTION_DEADLINE,
            shutdown_grace: SHUTDOWN_GRACE,
            max_head_bytes: MAX_HEAD_BYTES,
            max_headers: MAX_HEADERS,
        }
    }
}

/// A handler's answer to a `GET` or `HEAD`.
#[derive(Clone, Debug)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body (left out for `HEAD`).
    pub body: String,
}

impl Reply {
    /// `200` with this body.
    pub fn ok(content_type: &'static str, body: String) -> Reply {
        Reply { status: 200, content_type, body }
    }

    /// `404`.
    pub fn not_found() -> Reply {
        Reply { status: 404, content_type: "text/plain; charset=utf-8", body: "not found\n".into() }
    }

    /// `500` with a one-line reason.
    pub fn error(reason: &str) -> Reply {
        Reply { status: 500, content_type: "text/plain; charset=utf-8", body: format!("{reason}\n") }
    }
}

/// Answers a `GET`/`HEAD` of a path (the query string removed). Runs on the server's thread: it
/// should take milliseconds.
pub type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

/// Work the server's thread does every period besides serving (the consumer's timeline).
pub type Tick = (Duration, Box<dyn FnMut() + Send>);

/// The server's own counters, for the status file and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// The address it listens on.
    pub addr: String,
    /// False once the server thread ended.
    pub running: bool,
    /// The connection bound ([`MAX_CONNECTIONS`]).
    pub max_connections: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// Connections accepted and served.
    pub connections_accepted: u64,
    /// Connections closed at once: [`Limits::max_connections`] were open, or fewer than
    /// [`FD_RESERVE`] file descriptors would have been left.
    pub connections_refused: u64,
    /// Failed `accept()` calls (e.g. `EMFILE`: no file descriptor left); each retried.
    pub accept_errors: u64,
    /// Connections ended by a client's fault: a head too large, too slow, malformed, cut off.
    pub connection_errors: u64,
    /// Connections closed at their deadline ([`CONNECTION_DEADLINE`]).
    pub deadline_closed: u64,
    /// Requests answered.
    pub requests: u64,
    /// Requests answered with a `5xx` (a handler that failed or panicked).
    pub requests_failed: u64,
    /// Requests whose handler panicked (answered `500`; counted in `requests_failed` too).
    pub handler_panics: u64,
    /// The last server-side error (an accept error, a failed or panicking handler), if any.
    pub last_error: Option<String>,
    /// When it happened, UTC epoch milliseconds.
    pub last_error_ms: Option<i64>,
}

/// Live counters behind [`ServerStatus`].
#[derive(Debug)]
struct Stats {
    addr: SocketAddr,
    max_connections: usize,
    running: AtomicBool,
    open: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    accept_errors: AtomicU64,
    connection_errors: AtomicU64,
    deadline_closed: AtomicU64,
    requests: AtomicU64,
    requests_failed: AtomicU64,
    handler_panics: AtomicU64,
    last_error: Mutex<Option<(i64, String)>>,
    log: RateLimitedLog,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Stats {
    fn status(&self) -> ServerStatus {
        let last = self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ServerStatus {
            addr: self.addr.to_string(),
            running: self.running.load(Ordering::Relaxed),
            max_connections: self.max_connections as u64,
            connections_open: get(&self.open),
            connections_accepted: get(&self.accepted),
            connections_refused: get(&self.refused),
            accept_errors: get(&self.accept_errors),
            connection_errors: get(&self.connection_errors),
            deadline_closed: get(&self.deadline_closed),
            requests: get(&self.requests),
            requests_failed: get(&self.requests_failed),
            handler_panics: get(&self.handler_panics),
            last_error_ms: last.as_ref().map(|(t, _)| *t),
            last_error: last.map(|(_, e)| e),
        }
    }

    fn set_error(&self, error: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some((now_ms(), error));
    }

    /// Log `message` at `level` unless `key` was logged too often lately (see [`RateLimitedLog`]).
    fn log(&self, level: log::Level, key: &'static str, message: impl FnOnce() -> String) {
        if let Some(more) = self.log.allow_noting(key, now_ms()) {
            log::log!(level, "{}{more}", message());
        }
    }
}

/// `HOST:PORT`, or a bare `PORT` meaning 127.0.0.1, bound (port 0 picks a free one).
///
/// # Errors
/// [`HttpError::BadAddress`] for an address that is not `HOST:PORT`, [`HttpError::Bind`] when it cannot be bound.
pub fn bind(addr: &str) -> Result<StdListener, HttpError> {
    let addr = if addr.parse::<u16>().is_ok() { format!("127.0.0.1:{addr}") } else { addr.to_owned() };
    let resolved: Vec<SocketAddr> = addr.to_socket_addrs().map_err(|_| HttpError::BadAddress { addr: addr.clone() })?.collect();
    if resolved.is_empty() {
        return Err(HttpError::BadAddress { addr });
    }
    StdListener::bind(&resolved[..]).map_err(|source| HttpError::Bind { addr, source })
}

/// A running server; [`Server::stop`] ends it, dropping it asks it to end.
#[derive(Debug)]
pub struct Server {
    stats: Arc<Stats>,
    shutdown: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serve `handler` on `listener` from a new thread named `thread_name`, within `limits`;
    /// `tick`, if any, runs on that thread every period.
    ///
    /// # Errors
    /// [`HttpError::Start`] when the listener, the runtime or the thread cannot be set up.
    pub fn start(listener: StdListener, limits: Limits, handler: Handler, tick: Option<Tick>, thread_name: &str) -> Result<Server, HttpError> {
        let addr = listener.local_addr().map_err(|e| HttpError::Start { addr: "?".into(), detail: e.to_string() })?;
        let start_error = |detail: String| HttpError::Start { addr: addr.to_string(), detail };
        listener.set_nonblocking(true).map_err(|e| start_error(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build().map_err(|e| start_error(e.to_string()))?;
        let stats = Arc::new(Stats {
            addr,
            max_connections: limits.max_connections,
            running: AtomicBool::new(true),
            open: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            connection_errors: AtomicU64::new(0),
            deadline_closed: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            requests_failed: AtomicU64::new(0),
            handler_panics: AtomicU64::new(0),
            last_error: Mutex::new(None),
            log: RateLimitedLog::new(Duration::from_secs(10), 3),
        });
        let shutdown = Arc::new(Notify::new());
        let (thread_stats, thread_shutdown) = (stats.clone(), shutdown.clone());
        let thread = std::thread::Builder::new()
            .name(thread_name.to_owned())
            .spawn(move || {
                runtime.block_on(run(listener, limits, handler, tick, thread_stats.clone(), thread_shutdown));
                // Connections still open are dropped (closed) here.
                runtime.shutdown_timeout(limits.shutdown_grace);
                thread_stats.running.store(false, Ordering::Relaxed);
            })
            .map_err(|e| start_error(e.to_string()))?;
        Ok(Server { stats, shutdown, thread: Some(thread) })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.stats.addr
    }

    /// Its counters now.
    pub fn status(&self) -> ServerStatus {
        self.stats.status()
    }

    /// A function reading its counters, for a status section that outlives this handle.
    pub fn status_fn(&self) -> impl Fn() -> ServerStatus + Send + Sync + 'static {
        let stats = self.stats.clone();
        move || stats.status()
    }

    /// Stop accepting, close every connection and wait for the thread (at most a handler's
    /// run plus [`SHUTDOWN_GRACE`]).
    pub fn stop(mut self) {
        self.shutdown.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.notify_one();
    }
}

/// The accept loop (and the tick), until `shutdown`.
async fn run(listener: StdListener, limits: Limits, handler: Handler, tick: Option<Tick>, stats: Arc<Stats>, shutdown: Arc<Notify>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            log::error!("http: cannot serve on {}: {e}", stats.addr);
            stats.set_error(format!("cannot serve: {e}"));
            return;
        }
    };
    if let Some((period, mut f)) = tick {
        let tick_stats = stats.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                if std::panic::catch_unwind(AssertUnwindSafe(&mut f)).is_err() {
                    tick_stats.set_error("the periodic task panicked".into());
                }
            }
        });
    }
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        let accepted = tokio::select! {
            () = shutdown.notified() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF.0;
                let permit = if fds_short(&stream) {
                    Err("fewer than the reserved file descriptors would be left")
                } else {
                    permits.clone().try_acquire_owned().map_err(|_| "the bound of connections is open")
                };
                let permit = match permit {
                    Ok(permit) => permit,
                    Err(why) => {
                        stats.refused.fetch_add(1, Ordering::Relaxed);
                        stats.log(log::Level::Warn, "refused", || format!("http: closed a new connection from {peer} at once: {why}"));
                        // A best-effort answer that never waits; then close.
                        let _ = stream.try_write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                        continue;
                    }
                };
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                stats.open.fetch_add(1, Ordering::Relaxed);
                let (handler, stats) = (handler.clone(), stats.clone());
                tokio::spawn(async move {
                    serve_connection(stream, limits, handler, &stats).await;
                    stats.open.fetch_sub(1, Ordering::Relaxed);
                    drop(permit);
                });
            }
            Err(e) => {
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                stats.set_error(format!("accept: {e}"));
                stats.log(log::Level::Error, "accept", || {
                    format!(
                        "http: cannot accept a connection on {}: {e}; retrying in {} ms (ingest is not affected)",
                        stats.addr,
                        backoff.as_millis()
                    )
                });
                tokio::select! {
                    () = shutdown.notified() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
            }
        }
    }
}

/// True when keeping `stream` would leave fewer than [`FD_RESERVE`] descriptors free. Linux
/// gives the lowest free number, so every number below the new one is in use.
fn fds_short(stream: &tokio::net::TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let Ok((soft, _)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) else { return false };
    let fd = u64::try_from(stream.as_raw_fd()).unwrap_or(0);
    fd.saturating_add(FD_RESERVE) >= soft
}

/// One connection, within its deadline.
async fn serve_connection(stream: tokio::net::TcpStream, limits: Limits, handler: Handler, stats: &Arc<Stats>) {
    let service_stats = stats.clone();
    let service = service_fn(move |request: Request<Incoming>| {
        // The body is never read: dropping `request` drops it unread.
        let response = answer(&request, &handler, &service_stats);
        async move { Ok::<_, Infallible>(response) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .max_buf_size(limits.max_head_bytes.max(8192))
        .max_header_size(limits.max_head_bytes)
        .max_headers(limits.max_headers)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = tokio::time::sleep(limits.connection_deadline) => {
            // Let an answer being written finish, then close.
            connection.as_mut().graceful_shutdown();
            if let Ok(result) = tokio::time::timeout(limits.shutdown_grace, connection.as_mut()).await {
                result.ok();
            }
            stats.deadline_closed.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    };
    if let Err(e) = result {
        stats.connection_errors.fetch_add(1, Ordering::Relaxed);
        stats.log(log::Level::Info, "connection", || format!("http: a connection to {} ended: {e}", stats.addr));
    }
}

/// The response to one request: the handler's for `GET`/`HEAD`, `405` for the rest.
fn answer(request: &Request<Incoming>, handler: &Handler, stats: &Stats) -> Response<Full<Bytes>> {
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let mut panicked = false;
    let reply = if matches!(*request.method(), Method::GET | Method::HEAD) {
        let path = request.uri().path();
        match std::panic::catch_unwind(AssertUnwindSafe(|| handler(path))) {
            Ok(reply) => reply,
            Err(panic) => {
                let what = panic.downcast_ref::<&str>().map(|s| (*s).to_owned()).or_else(|| panic.downcast_ref::<String>().cloned());
                let what = what.unwrap_or_else(|| "a panic".into());
                panicked = true;
                stats.handler_panics.fetch_add(1, Ordering::Relaxed);
                stats.set_error(format!("handler of {path} panicked: {what}"));
                stats.log(log::Level::Error, "panic", || format!("http: the handler of {path} panicked ({what}); answered 500, serving on"));
                Reply::error("internal error")
            }
        }
    } else {
        Reply { status: 405, content_type: "text/plain; charset=utf-8", body: "only GET\n".into() }
    };
    if reply.status >= 500 {
        stats.requests_failed.fetch_add(1, Ordering::Relaxed);
        if !panicked {
            stats.set_error(format!("{} answered {}: {}", request.uri().path(), reply.status, reply.body.trim_end()));
        }
    }
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;

    fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    fn start(limits: Limits) -> Server {
        let handler: Handler = Arc::new(|path: &str| match path {
            "/boom" => panic!("boom"),
            "/big" => Reply::ok("text/plain", "x".repeat(64 * 1024)),
            _ => Reply::ok("text/plain", "ok\n".into()),
        });
        Server::start(bind("127.0.0.1:0").unwrap(), limits, handler, None, "test-http").unwrap()
    }

    #[test]
    fn a_panicking_handler_answers_500_and_the_server_goes_on() {
        let server = start(Limits::default());
        let addr = server.local_addr();
        assert!(get(addr, "/boom").starts_with("HTTP/1.0 500"));
        assert!(get(addr, "/").starts_with("HTTP/1.0 200"));
        let s = server.status();
        assert_eq!((s.handler_panics, s.requests_failed, s.requests), (1, 1, 2), "{s:?}");
        assert!(s.last_error.as_deref().unwrap_or("").contains("panicked: boom"), "{s:?}");
        server.stop();
    }

    #[test]
    fn a_client_that_pipelines_and_reads_nothing_is_closed_at_its_deadline_and_blocks_nobody() {
        let limits = Limits { connection_deadline: Duration::from_secs(1), shutdown_grace: Duration::from_millis(200), ..Limits::default() };
        let server = start(limits);
        let addr = server.local_addr();
        let mut greedy = TcpStream::connect(addr).unwrap();
        // Enough answers to fill both socket buffers many times over; it reads none of them.
        let request = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200);
        let writer = {
            let mut w = greedy.try_clone().unwrap();
            w.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
            std::thread::spawn(move || {
                let _ = w.write_all(request.as_bytes());
            })
        };
        wait_until("the greedy client's connection", || server.status().requests >= 1);
        assert!(get(addr, "/").starts_with("HTTP/1.0 200"), "another client is served meanwhile");
        wait_until("the deadline to close the greedy connection", || {
            let s = server.status();
            s.deadline_closed == 1 && s.connections_open == 0
        });
        // What it finally reads ends: the server closed the connection.
        greedy.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut sink = Vec::new();
        let _ = greedy.read_to_end(&mut sink);
        writer.join().unwrap();
        server.stop();
    }

    #[test]
    fn idle_and_slow_heads_are_closed_and_the_bound_refuses_the_rest() {
        let limits = Limits { max_connections: 2, head_timeout: Duration::from_millis(500), ..Limits::default() };
        let server = start(limits);
        let addr = server.local_addr();
        let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
        wait_until("two open connections", || server.status().connections_open == 2);
        let mut third = TcpStream::connect(addr).unwrap();
        third.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut out = String::new();
        let _ = third.read_to_string(&mut out);
        assert!(out.is_empty() || out.starts_with("HTTP/1.1 503"), "{out}");
        wait_until("the refusal to be counted", || server.status().connections_refused == 1);
        // The idle ones are closed at the head timeout; then the server answers again.
        for mut s in idle {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
        wait_until("the idle connections to be gone", || server.status().connections_open == 0);
        assert!(get(addr, "/").starts_with("HTTP/1.0 200"));
        let s = server.status();
        assert!(s.connection_errors >= 2, "{s:?}");
        server.stop();
    }
}
