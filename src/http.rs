//! A small HTTP server on its own thread: `/metrics` (Prometheus), `/status.json` (the status
//! report), `/` (a self-contained page for a person: no CDN, works offline) and `/session.json`
//! (what the page draws). It only reads the consumer; nothing secret is served (the status
//! report holds no credentials, and the sidecar masks them in its status lines).
//!
//! The server thread also keeps the session's timeline (feed state changes, sidecar reconnects
//! and disconnects, seq gaps), sampled twice a second and bounded to [`crate::page::MAX_EVENTS`].

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tiny_http::{Header, Method, Request, Response, Server};

use crate::feed::Consumer;
use crate::metrics::{self, MetricsOptions};
use crate::status::StatusReport;

/// The page, with its script and style inline.
const INDEX_HTML: &str = include_str!("../assets/index.html");

/// How often the timeline is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

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

/// What the server serves besides the consumer itself.
#[derive(Clone, Debug, Default)]
pub struct HttpOptions {
    /// What `/metrics` exports and how many symbols get a label.
    pub metrics: MetricsOptions,
    /// The FIFO, shown in the status report.
    pub fifo: Option<PathBuf>,
}

/// The running server; [`HttpServer::stop`] ends its thread.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Listen on `addr` (`HOST:PORT`, or a bare `PORT` on 127.0.0.1; port 0 picks a free one,
    /// see [`HttpServer::local_addr`]) and serve `consumer` from a new thread.
    ///
    /// # Errors
    /// [`HttpError::BadAddress`] for an address that is not `HOST:PORT`, [`HttpError::Bind`] when it cannot be bound, [`HttpError::Start`] when the server does not start.
    pub fn start(consumer: Arc<Consumer>, addr: &str, options: HttpOptions) -> Result<HttpServer, HttpError> {
        let with_host;
        let addr = if addr.parse::<u16>().is_ok() {
            with_host = format!("127.0.0.1:{addr}");
            with_host.as_str()
        } else {
            addr
        };
        let resolved: Vec<SocketAddr> = addr.to_socket_addrs().map_err(|_| HttpError::BadAddress { addr: addr.to_owned() })?.collect();
        if resolved.is_empty() {
            return Err(HttpError::BadAddress { addr: addr.to_owned() });
        }
        let listener = TcpListener::bind(&resolved[..]).map_err(|source| HttpError::Bind { addr: addr.to_owned(), source })?;
        let local = listener.local_addr().map_err(|source| HttpError::Bind { addr: addr.to_owned(), source })?;
        let server = Server::from_listener(listener, None).map_err(|e| HttpError::Start { addr: addr.to_owned(), detail: e.to_string() })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("barbridge-http".into())
            .spawn(move || serve(&server, &consumer, &options, &flag))
            .map_err(|e| HttpError::Start { addr: addr.to_owned(), detail: e.to_string() })?;
        Ok(HttpServer { addr: local, stop, thread: Some(thread) })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving and wait for the thread (at most one sampling period).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(server: &Server, consumer: &Consumer, options: &HttpOptions, stop: &AtomicBool) {
    let mut timeline = crate::page::Timeline::default();
    while !stop.load(Ordering::Relaxed) {
        timeline.sample(consumer);
        match server.recv_timeout(SAMPLE_EVERY) {
            Ok(Some(request)) => {
                if let Err(e) = respond(request, consumer, options, &timeline) {
                    log::debug!("http: cannot answer a request: {e}");
                }
            }
            Ok(None) => {}
            Err(e) => {
                log::error!("http: the metrics server stopped: {e}");
                return;
            }
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    // Both are ASCII literals of this module: parsing cannot fail.
    Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap_or_else(|()| unreachable!("ASCII header"))
}

fn respond(request: Request, consumer: &Consumer, options: &HttpOptions, timeline: &crate::page::Timeline) -> std::io::Result<()> {
    if !matches!(request.method(), Method::Get | Method::Head) {
        return request.respond(Response::from_string("only GET\n").with_status_code(405));
    }
    let path = request.url().split('?').next().unwrap_or("");
    let fifo = options.fifo.as_deref();
    let (body, content_type) = match path {
        "/metrics" => {
            let report = StatusReport::collect_capped(consumer, fifo, options.metrics.max_symbol_labels);
            (metrics::render(report), metrics::CONTENT_TYPE)
        }
        "/status.json" => {
            let report = StatusReport::collect(consumer, fifo);
            (serde_json::to_string(&report).unwrap_or_default(), "application/json")
        }
        "/session.json" => (serde_json::to_string(&crate::page::session_view(consumer, timeline)).unwrap_or_default(), "application/json"),
        "/" | "/index.html" => (INDEX_HTML.to_owned(), "text/html; charset=utf-8"),
        _ => return request.respond(Response::from_string("not found\n").with_status_code(404)),
    };
    let response = Response::from_string(body).with_header(header("Content-Type", content_type)).with_header(header("Cache-Control", "no-store"));
    request.respond(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn fetch(addr: SocketAddr, request: &str) -> String {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn a_bare_port_binds_loopback_and_only_known_paths_answer() {
        let consumer = Consumer::builder().build().unwrap();
        let server = HttpServer::start(consumer, "0", HttpOptions::default()).unwrap();
        let addr = server.local_addr();
        assert!(addr.ip().is_loopback(), "{addr}");
        let metrics = fetch(addr, "GET /metrics HTTP/1.0\r\n\r\n");
        assert!(metrics.starts_with("HTTP/1.0 200") && metrics.contains("barbridge_lines_total 0"), "{metrics}");
        assert!(fetch(addr, "GET /etc/passwd HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 404"));
        assert!(fetch(addr, "POST /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 405"));
        server.stop();
    }

    #[test]
    fn a_bad_address_is_one_sentence() {
        let err = HttpServer::start(Consumer::builder().build().unwrap(), "localhost:x", HttpOptions::default()).unwrap_err();
        assert_eq!(err.to_string(), "--metrics-addr \"localhost:x\" is not an address (use HOST:PORT, e.g. 127.0.0.1:9464)");
    }
}
