//! What the live page (`/`, drawn from `/session.json`) shows: the session's timeline (feed state
//! changes, sidecar reconnects and disconnects, seq gaps), the market's session and clock, and per
//! symbol its last bar (OHLCV), change since the session's first bar, halt, holes and halted
//! minutes (from [`Consumer::session_gaps`], the same view as the status file's) and a sparkline.
//! The HTTP server ([`crate::ops::http`]) samples the timeline and serves the view; it computes nothing.

use std::collections::VecDeque;

use serde::Serialize;

use crate::consumer::health::FeedState;
use crate::consumer::Consumer;

/// Timeline events kept (the oldest are dropped first).
pub const MAX_EVENTS: usize = 2_000;

/// Symbols the page shows (those updated least recently).
pub const PAGE_MAX_SYMBOLS: usize = 50;

/// Points of a symbol's sparkline (today's closes, thinned evenly beyond this).
const SPARKLINE_POINTS: usize = 390;

/// One mark on the session's timeline.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Event {
    t_ms: i64,
    /// `live`, `stale`, `waiting`, `reconnect`, `disconnect` or `gap`.
    kind: &'static str,
}

/// What changed since the last sample, as events (bounded to [`MAX_EVENTS`]).
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    events: VecDeque<Event>,
    state: Option<FeedState>,
    reconnects: u64,
    disconnects: u64,
    seq_gaps: u64,
}

/// Add an event, dropping the oldest past [`MAX_EVENTS`].
fn push(events: &mut VecDeque<Event>, t_ms: i64, kind: &'static str) {
    events.push_back(Event { t_ms, kind });
    while events.len() > MAX_EVENTS {
        events.pop_front();
    }
}

impl Timeline {
    /// Take note of what changed in `consumer` since the last call.
    pub(crate) fn sample(&mut self, consumer: &Consumer) {
        let health = consumer.health();
        let now = health.now_ms();
        let state = health.tick();
        if self.state != Some(state) {
            self.state = Some(state);
            push(&mut self.events, now, state_name(state));
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
                push(&mut self.events, now, kind);
            }
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

/// The newest bar, as the page shows it.
#[derive(Debug, Serialize)]
struct LastBar {
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
}

#[derive(Debug, Serialize)]
struct SymbolView {
    symbol: String,
    /// `stock` or `crypto`.
    asset: &'static str,
    bars: u64,
    last_bar_ts_ms: i64,
    last_received_ms: i64,
    close: Option<f64>,
    last: Option<LastBar>,
    /// The open of the symbol's first bar in its session today, else of its first bar today (the
    /// change is measured from it).
    session_open: Option<f64>,
    /// Whether `now` lies in the symbol's own session (a stock's NYSE hours, a pair's whole day).
    in_session: bool,
    closes: Vec<f64>,
    /// Holes between bars in today's session, halted minutes excluded.
    holes: Vec<HoleView>,
    /// Session minutes without bars because the symbol was halted.
    halted_minutes: i64,
    /// Session minutes without bars that REST confirmed quiet (no trade: not holes).
    quiet_minutes: i64,
    /// The halt now in force, if any (none for a symbol no longer subscribed).
    halted: Option<crate::trading::SymbolTrading>,
    /// Whether the sidecar's latest closed minute lists the symbol (`None`: no minute closed yet,
    /// unknown). An unsubscribed symbol keeps its row with what it has, but its age is no alarm.
    subscribed: Option<bool>,
}

/// The market's regular session (New York) as of now.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Market {
    /// Today is a session day and it has not opened yet.
    PreOpen,
    /// In the regular session.
    Open,
    /// Today's session is over.
    Closed,
    /// No session today (weekend or holiday).
    NoSession,
}

/// The minute barrier's counters the page shows.
#[derive(Debug, Serialize)]
struct MinutesView {
    minutes_closed: u64,
    late_bars: u64,
    quiet_marks: u64,
}

/// What `/session.json` holds.
#[derive(Debug, Serialize)]
pub(crate) struct SessionView {
    now_ms: i64,
    state: FeedState,
    /// Why the feed is stale, while it is.
    stale_reason: Option<crate::consumer::health::StaleReason>,
    /// Conflicting bars since the last delivered one, while they keep arriving.
    conflicts_since_delivered: u64,
    stale_after_ms: i64,
    last_message_ms: Option<i64>,
    started_ms: i64,
    sidecar: Option<crate::consumer::health::SidecarState>,
    /// Today's regular session (New York), if today has one.
    open_ms: Option<i64>,
    close_ms: Option<i64>,
    market: Market,
    /// How late bars and minutes were this session (p50/p99 on the page).
    latency: crate::consumer::latency::LatencySnapshot,
    /// The minute barrier's counters shown (from the counter table).
    minutes: MinutesView,
    day_start_ms: i64,
    day_end_ms: i64,
    bars_accepted: u64,
    symbols_total: usize,
    symbols_halted: usize,
    symbols: Vec<SymbolView>,
    events: Vec<Event>,
}

/// The page's view of `consumer` now.
pub(crate) fn session_view(consumer: &Consumer, timeline: &Timeline) -> SessionView {
    let store = consumer.store();
    let (picked, omitted) = store.symbol_health_least_recent(PAGE_MAX_SYMBOLS);
    let health = consumer.health().snapshot(picked);
    let now = health.now_ms;
    let (day_start_ms, day_end_ms) = crate::calendar::ny_day_bounds(now);
    let session = crate::calendar::session_on(crate::calendar::ny_date(now)).ok().flatten();
    let market = match &session {
        None => Market::NoSession,
        Some(s) if now < s.open_ms => Market::PreOpen,
        Some(s) if now < s.close_ms => Market::Open,
        Some(_) => Market::Closed,
    };
    let halted_now = consumer.halted_now();
    let symbols = health
        .symbols
        .iter()
        .map(|(sym, sh)| {
            // Each symbol's own day and session: New York's for a stock, the UTC day for a pair.
            let asset = crate::asset::AssetClass::of(sym);
            let (start_ms, end_ms) = asset.day_bounds(now);
            let bars = store.range(sym, start_ms, end_ms);
            let step = bars.len().div_ceil(SPARKLINE_POINTS).max(1);
            let closes = bars.iter().step_by(step).map(|b| b.close).collect();
            let own_session = crate::asset::session_today(sym, now);
            // The session lies within the symbol's day: its first bar is among the day's.
            let session_open = own_session
                .as_ref()
                .and_then(|s| bars.iter().find(|b| (s.open_ms..s.close_ms).contains(&b.timestamp_ms)))
                .or_else(|| bars.first())
                .map(|b| b.open);
            let gaps = consumer.session_gaps(sym, now);
            let latest = store.latest(sym);
            SymbolView {
                symbol: sym.clone(),
                asset: if asset == crate::asset::AssetClass::Crypto { "crypto" } else { "stock" },
                bars: sh.bars,
                last_bar_ts_ms: sh.last_bar_ts_ms,
                last_received_ms: sh.last_received_ms,
                close: latest.as_ref().map(|b| b.close),
                last: latest.map(|b| LastBar { open: b.open, high: b.high, low: b.low, close: b.close, volume: b.volume }),
                session_open,
                in_session: own_session.as_ref().is_some_and(|s| s.open_ms <= now && now < s.close_ms),
                closes,
                holes: gaps
                    .as_ref()
                    .map(|g| g.holes.iter().map(|h| HoleView { start_ms: h.start_ms, minutes: h.minutes }).collect())
                    .unwrap_or_default(),
                halted_minutes: gaps.as_ref().map_or(0, |g| g.halted_minutes),
                quiet_minutes: gaps.as_ref().map_or(0, |g| g.quiet_minutes),
                halted: halted_now.get(sym).cloned(),
                subscribed: consumer.minutes.subscribed(sym),
            }
        })
        .collect::<Vec<_>>();
    SessionView {
        now_ms: now,
        state: health.state,
        stale_reason: health.stale_reason,
        conflicts_since_delivered: health.conflicts_since_delivered,
        stale_after_ms: health.stale_after_ms,
        last_message_ms: health.last_message_ms,
        started_ms: health.started_ms,
        sidecar: health.sidecar,
        open_ms: session.as_ref().map(|s| s.open_ms),
        close_ms: session.as_ref().map(|s| s.close_ms),
        market,
        day_start_ms,
        day_end_ms,
        bars_accepted: health.counters.bars_accepted,
        symbols_total: symbols.len() + omitted,
        symbols_halted: halted_now.len(),
        symbols,
        events: timeline.events.iter().cloned().collect(),
        latency: consumer.latency(),
        minutes: MinutesView {
            minutes_closed: health.counters.minutes_closed,
            late_bars: health.counters.late_bars,
            quiet_marks: health.counters.quiet_marks,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_ms() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
    }

    fn line(symbol: &str, ts: i64, open: f64, close: f64) -> String {
        format!(
            r#"{{"symbol":"{symbol}","timestamp_ms":{ts},"open":{open},"high":{},"low":{},"close":{close},"volume":0.5}}"#,
            open.max(close),
            open.min(close)
        )
    }

    #[test]
    fn a_crypto_pair_s_holes_are_counted_over_its_utc_day() {
        let consumer = Consumer::builder().build().unwrap();
        let now = now_ms();
        let midnight = now - now.rem_euclid(86_400_000);
        if now - midnight < 10 * 60_000 {
            return; // the bars below would lie in the future
        }
        // 00:00 and 00:04 UTC today (a 3-minute hole between), whatever New York's session says.
        consumer.ingest_line(line("BTC/USD", midnight, 1.0, 1.0).as_bytes()).unwrap();
        consumer.ingest_line(line("BTC/USD", midnight + 4 * 60_000, 1.0, 1.0).as_bytes()).unwrap();
        let view = session_view(&consumer, &Timeline::default());
        let btc = view.symbols.iter().find(|s| s.symbol == "BTC/USD").expect("the pair is on the page");
        let first = btc.holes.first().expect("a hole inside the UTC day");
        assert_eq!((first.start_ms, first.minutes), (midnight + 60_000, 3));
        assert_eq!(btc.closes.len(), 2, "the sparkline covers the pair's UTC day");
        assert!(btc.in_session && btc.asset == "crypto");
    }

    /// A halted pair: the page says halted (with its code), counts its bar-less minutes as halted
    /// and not as holes, as the status file does; the last bar's OHLCV and the session's first
    /// open (for the change) are there.
    #[test]
    fn a_halted_symbol_is_halted_on_the_page_not_a_hole() {
        let consumer = Consumer::builder().build().unwrap();
        let now = now_ms();
        let midnight = now - now.rem_euclid(86_400_000);
        if now - midnight < 30 * 60_000 {
            return; // the bars below would lie in the future
        }
        consumer.ingest_line(line("ETH/USD", midnight, 100.0, 101.0).as_bytes()).unwrap();
        let halt = format!(
            r#"{{"type":"trading_status","v":1,"symbol":"ETH/USD","ts_ms":{},"status":"halted","code":"T1","reason":"news"}}"#,
            midnight + 60_000
        );
        consumer.ingest_line(halt.as_bytes()).unwrap();
        let resume = format!(
            r#"{{"type":"trading_status","v":1,"symbol":"ETH/USD","ts_ms":{},"status":"trading","code":"","reason":""}}"#,
            midnight + 10 * 60_000
        );
        consumer.ingest_line(resume.as_bytes()).unwrap();
        consumer.ingest_line(line("ETH/USD", midnight + 10 * 60_000, 101.0, 103.0).as_bytes()).unwrap();
        let view = session_view(&consumer, &Timeline::default());
        let eth = view.symbols.iter().find(|s| s.symbol == "ETH/USD").unwrap();
        assert!(eth.holes.is_empty(), "halted minutes shown as holes: {:?}", eth.holes);
        assert_eq!(eth.halted_minutes, 9);
        assert!(eth.halted.is_none(), "trading again");
        assert_eq!(eth.session_open, Some(100.0));
        assert_eq!(eth.last.as_ref().map(|b| (b.open, b.close)), Some((101.0, 103.0)));
        let halt_now = format!(
            r#"{{"type":"trading_status","v":1,"symbol":"ETH/USD","ts_ms":{},"status":"halted","code":"T1","reason":"news"}}"#,
            midnight + 12 * 60_000
        );
        consumer.ingest_line(halt_now.as_bytes()).unwrap();
        let view = session_view(&consumer, &Timeline::default());
        let eth = view.symbols.iter().find(|s| s.symbol == "ETH/USD").unwrap();
        assert_eq!(eth.halted.as_ref().map(|h| h.code.as_str()), Some("T1"));
        assert_eq!(view.symbols_halted, 1);
        assert!(eth.holes.is_empty(), "{:?}", eth.holes);
        let report = crate::ops::status::StatusReport::collect(&consumer, None);
        assert_eq!(report.session_halted.get("ETH/USD").copied(), Some(eth.halted_minutes), "page and status file agree");
    }
}
