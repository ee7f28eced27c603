//! A small HTTP server on its own thread: `/metrics` (Prometheus), `/status.json` (the status
//! report), `/` (a self-contained page for a person: no CDN, works offline) and `/session.json`
//! (what the page draws). It only reads the consumer; nothing secret is served (the status
//! report holds no credentials, and the sidecar masks them in its status lines).
//!
//! The server thread also keeps the session's timeline (feed state changes, sidecar reconnects
//! and disconnects, seq gaps), sampled twice a second and bounded to [`MAX_EVENTS`].

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use tiny_http::{Header, Method, Request, Response, Server};

use crate::feed::Consumer;
use crate::health::FeedState;
use crate::metrics::{self, MetricsOptions};
use crate::status::StatusReport;

/// The page, with its script and style inline.
const INDEX_HTML: &str = include_str!("../assets/index.html");

/// Timeline events kept (the oldest are dropped first).
pub const MAX_EVENTS: usize = 2_000;

/// Symbols the page shows (those updated least recently).
pub const PAGE_MAX_SYMBOLS: usize = 50;

/// Points of a symbol's sparkline (today's closes, thinned evenly beyond this).
const SPARKLINE_POINTS: usize = 390;

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
    let mut timeline = Timeline::default();
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

fn respond(request: Request, consumer: &Consumer, options: &HttpOptions, timeline: &Timeline) -> std::io::Result<()> {
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
        "/session.json" => (serde_json::to_string(&session_view(consumer, timeline)).unwrap_or_default(), "application/json"),
        "/" | "/index.html" => (INDEX_HTML.to_owned(), "text/html; charset=utf-8"),
        _ => return request.respond(Response::from_string("not found\n").with_status_code(404)),
    };
    let response = Response::from_string(body).with_header(header("Content-Type", content_type)).with_header(header("Cache-Control", "no-store"));
    request.respond(response)
}

/// One mark on the session's timeline.
#[derive(Clone, Debug, Serialize)]
struct Event {
    t_ms: i64,
    /// `live`, `stale`, `waiting`, `reconnect`, `disconnect` or `gap`.
    kind: &'static str,
}

/// What changed since the last sample, as events.
#[derive(Debug, Default)]
struct Timeline {
    events: VecDeque<Event>,
    state: Option<FeedState>,
    reconnects: u64,
    disconnects: u64,
    seq_gaps: u64,
}

impl Timeline {
    fn push(&mut self, t_ms: i64, kind: &'static str) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(Event { t_ms, kind });
    }

    fn sample(&mut self, consumer: &Consumer) {
        let health = consumer.health();
        let now = health.now_ms();
        let state = health.tick();
        if self.state != Some(state) {
            self.state = Some(state);
            self.push(now, state_name(state));
        }
        let c = health.counters.snapshot();
        for (seen, current, kind) in [
            (&mut self.reconnects, c.reconnects, "reconnect"),
            (&mut self.disconnects, c.disconnects, "disconnect"),
            (&mut self.seq_gaps, c.seq_gaps, "gap"),
        ] {
            let new = current > *seen;
            *seen = current;
            if new {
                self.events.push_back(Event { t_ms: now, kind });
            }
        }
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }
}

fn state_name(state: FeedState) -> &'static str {
    match state {
        FeedState::Waiting => "waiting",
        FeedState::Live => "live",
        FeedState::Stale => "stale",
    }
}

#[derive(Debug, Serialize)]
struct HoleView {
    start_ms: i64,
    minutes: i64,
}

#[derive(Debug, Serialize)]
struct SymbolView {
    symbol: String,
    bars: u64,
    last_bar_ts_ms: i64,
    last_received_ms: i64,
    close: Option<f64>,
    closes: Vec<f64>,
    holes: Vec<HoleView>,
}

#[derive(Debug, Serialize)]
struct SessionView {
    now_ms: i64,
    state: FeedState,
    stale_after_ms: i64,
    last_message_ms: Option<i64>,
    started_ms: i64,
    sidecar: Option<crate::health::SidecarStatus>,
    /// Today's regular session (New York), if today has one.
    open_ms: Option<i64>,
    close_ms: Option<i64>,
    day_start_ms: i64,
    day_end_ms: i64,
    bars_accepted: u64,
    symbols_total: usize,
    symbols: Vec<SymbolView>,
    events: Vec<Event>,
}

fn session_view(consumer: &Consumer, timeline: &Timeline) -> SessionView {
    let store = consumer.store();
    let (picked, omitted) = store.symbol_health_least_recent(PAGE_MAX_SYMBOLS);
    let health = consumer.health().snapshot(picked);
    let now = health.now_ms;
    let (day_start_ms, day_end_ms) = crate::calendar::ny_day_bounds(now);
    let session = crate::calendar::session_on(crate::calendar::ny_date(now)).ok().flatten();
    let symbols = health
        .symbols
        .iter()
        .map(|(sym, sh)| {
            // Each symbol's own day and session: New York's for a stock, the UTC day for a pair.
            let (start_ms, end_ms) = crate::asset::AssetClass::of(sym).day_bounds(now);
            let bars = store.range(sym, start_ms, end_ms);
            let step = bars.len().div_ceil(SPARKLINE_POINTS).max(1);
            let closes = bars.iter().step_by(step).map(|b| b.close).collect();
            let holes = crate::asset::session_today(sym, now)
                .as_ref()
                .map(|s| {
                    let minutes = store.timestamps(sym, s.open_ms, s.close_ms);
                    crate::gaps::session_gaps(sym, s, now, minutes)
                        .holes
                        .into_iter()
                        .map(|h| HoleView { start_ms: h.start_ms, minutes: h.minutes })
                        .collect()
                })
                .unwrap_or_default();
            SymbolView {
                symbol: sym.clone(),
                bars: sh.bars,
                last_bar_ts_ms: sh.last_bar_ts_ms,
                last_received_ms: sh.last_received_ms,
                close: store.latest(sym).map(|b| b.close),
                closes,
                holes,
            }
        })
        .collect::<Vec<_>>();
    SessionView {
        now_ms: now,
        state: health.state,
        stale_after_ms: health.stale_after_ms,
        last_message_ms: health.last_message_ms,
        started_ms: health.started_ms,
        sidecar: health.sidecar,
        open_ms: session.as_ref().map(|s| s.open_ms),
        close_ms: session.as_ref().map(|s| s.close_ms),
        day_start_ms,
        day_end_ms,
        bars_accepted: health.counters.bars_accepted,
        symbols_total: symbols.len() + omitted,
        symbols,
        events: timeline.events.iter().cloned().collect(),
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
    fn a_crypto_pair_s_holes_are_counted_over_its_utc_day() {
        let consumer = Consumer::builder().build().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let midnight = now - now.rem_euclid(86_400_000);
        if now - midnight < 10 * 60_000 {
            return; // the bars below would lie in the future
        }
        let line = |ts: i64| format!(r#"{{"symbol":"BTC/USD","timestamp_ms":{ts},"open":1,"high":1,"low":1,"close":1,"volume":0.5}}"#);
        // 00:00 and 00:04 UTC today (a 3-minute hole between), whatever New York's session says.
        consumer.ingest_line(line(midnight).as_bytes()).unwrap();
        consumer.ingest_line(line(midnight + 4 * 60_000).as_bytes()).unwrap();
        let view = session_view(&consumer, &Timeline::default());
        let btc = view.symbols.iter().find(|s| s.symbol == "BTC/USD").expect("the pair is on the page");
        let first = btc.holes.first().expect("a hole inside the UTC day");
        assert_eq!((first.start_ms, first.minutes), (midnight + 60_000, 3));
        assert_eq!(btc.closes.len(), 2, "the sparkline covers the pair's UTC day");
    }

    #[test]
    fn a_bad_address_is_one_sentence() {
        let err = HttpServer::start(Consumer::builder().build().unwrap(), "localhost:x", HttpOptions::default()).unwrap_err();
        assert_eq!(err.to_string(), "--metrics-addr \"localhost:x\" is not an address (use HOST:PORT, e.g. 127.0.0.1:9464)");
    }
}
