//! The consumer's HTTP endpoint on its own thread (`barbridge-http`): `/metrics` (Prometheus),
//! `/status.json` (the status report), `/` (a self-contained page for a person: no CDN, works
//! offline) and `/session.json` (what the page draws). It only reads the consumer; nothing secret
//! is served (the status report holds no credentials, and the sidecar masks them in its status
//! lines). The server under it ([`crate::ops::server`]) bounds what any client can make it spend and cannot
//! stop ingest; its own counters are the status file's `http` section and `barbridge_http_*`.
//!
//! The server thread also keeps the session's timeline (feed state changes, sidecar reconnects
//! and disconnects, seq gaps), sampled twice a second and bounded to [`crate::ops::page::MAX_EVENTS`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::consumer::Consumer;
use crate::ops::metrics::{self, MetricsOptions};
use crate::ops::server::{self, Reply, Server};
pub use crate::ops::server::{HttpError, STATUS_SECTION};
use crate::ops::status::StatusReport;

/// The page, with its script and style inline.
const INDEX_HTML: &str = include_str!("../../assets/index.html");

/// How often the timeline is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

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
    server: Server,
}

impl HttpServer {
    /// Listen on `addr` (`HOST:PORT`, or a bare `PORT` on 127.0.0.1; port 0 picks a free one,
    /// see [`HttpServer::local_addr`]) and serve `consumer` from a new thread, within
    /// [`server::Limits::default`]. The server's own counters go into the status file's
    /// [`STATUS_SECTION`] section (and so into `/metrics`).
    ///
    /// # Errors
    /// [`HttpError::BadAddress`] for an address that is not `HOST:PORT`, [`HttpError::Bind`] when it cannot be bound, [`HttpError::Start`] when the server does not start.
    pub fn start(consumer: Arc<Consumer>, addr: &str, options: HttpOptions) -> Result<HttpServer, HttpError> {
        let listener = server::bind(addr)?;
        let timeline = Arc::new(Mutex::new(crate::ops::page::Timeline::default()));
        let (sampled, sampler) = (timeline.clone(), consumer.clone());
        let tick: server::Tick = (SAMPLE_EVERY, Box::new(move || lock(&sampled).sample(&sampler)));
        let served = consumer.clone();
        let handler: server::Handler = Arc::new(move |path: &str| respond(path, &served, &options, &timeline));
        let server = Server::start(listener, server::Limits::default(), handler, Some(tick), "barbridge-http")?;
        let status = server.status_fn();
        consumer.add_status_section(STATUS_SECTION, move || serde_json::to_value(status()).unwrap_or_default());
        Ok(HttpServer { server })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The server's own counters (connections, refusals, accept errors).
    pub fn status(&self) -> server::ServerStatus {
        self.server.status()
    }

    /// Stop serving and wait for the thread.
    pub fn stop(self) {
        self.server.stop();
    }
}

fn lock(timeline: &Mutex<crate::ops::page::Timeline>) -> std::sync::MutexGuard<'_, crate::ops::page::Timeline> {
    timeline.lock().unwrap_or_else(|e| e.into_inner())
}

fn respond(path: &str, consumer: &Consumer, options: &HttpOptions, timeline: &Mutex<crate::ops::page::Timeline>) -> Reply {
    let fifo = options.fifo.as_deref();
    match path {
        "/metrics" => {
            let report = StatusReport::collect_capped(consumer, fifo, options.metrics.max_symbol_labels);
            Reply::ok(metrics::CONTENT_TYPE, metrics::render(report))
        }
        "/status.json" => {
            let report = StatusReport::collect(consumer, fifo);
            Reply::ok("application/json", serde_json::to_string(&report).unwrap_or_default())
        }
        "/session.json" => {
            let view = crate::ops::page::session_view(consumer, &lock(timeline));
            Reply::ok("application/json", serde_json::to_string(&view).unwrap_or_default())
        }
        "/" | "/index.html" => Reply::ok("text/html; charset=utf-8", INDEX_HTML.to_owned()),
        _ => Reply::not_found(),
    }
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
