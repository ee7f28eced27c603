//! The consumer's HTTP endpoint on its own thread (`barbridge-http`): `/metrics` (Prometheus),
//! `/status.json` (the status report), `/` (a self-contained page for a person: no CDN, works
//! offline) and `/session.json` (what the page draws). It only reads the consumer; nothing secret
//! is served (the status report holds no credentials, and the sidecar masks them in its status
//! lines). The server under it ([`server`]) bounds what any client can make it spend and cannot
//! stop ingest; its own counters are the status file's `http` section and `barbridge_http_*`.
//!
//! The server thread also keeps the session's timeline (feed state changes, sidecar reconnects
//! and disconnects, seq gaps), sampled twice a second and bounded to [`MAX_EVENTS`].

pub mod server;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::feed::Consumer;
use crate::health::FeedState;
use crate::metrics::{self, MetricsOptions};
use crate::status::StatusReport;
use server::{Reply, Server};

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

/// The status file's section with the server's own counters ([`server::ServerStatus`]).
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
        let timeline = Arc::new(Mutex::new(Timeline::default()));
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

fn lock(timeline: &Mutex<Timeline>) -> std::sync::MutexGuard<'_, Timeline> {
    timeline.lock().unwrap_or_else(|e| e.into_inner())
}

fn respond(path: &str, consumer: &Consumer, options: &HttpOptions, timeline: &Mutex<Timeline>) -> Reply {
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
            let view = session_view(consumer, &lock(timeline));
            Reply::ok("application/json", serde_json::to_string(&view).unwrap_or_default())
        }
        "/" | "/index.html" => Reply::ok("text/html; charset=utf-8", INDEX_HTML.to_owned()),
        _ => Reply::not_found(),
    }
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
