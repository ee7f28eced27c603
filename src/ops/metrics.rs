//! Prometheus metrics of a running consumer, in the text exposition format (version 0.0.4).
//!
//! Rendered from a [`StatusReport`] at every scrape, so the metrics and the status file never
//! disagree. Names follow Prometheus conventions: prefix `barbridge_`, units in the name
//! (`_seconds`), `_total` on counters. Label sets are bounded: `reason` (the reject codes),
//! `state` (the feed's and the sidecar's states), `subscriber` (the program's subscribers) and
//! `symbol`, which is only given to the [`MetricsOptions::max_symbol_labels`] symbols updated
//! least recently (the first to look at when something is stale); the rest are counted in
//! `barbridge_symbols_unlabeled`.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::consumer::health::{Exported, FeedState, StaleReason};
use crate::ops::server::ServerStatus;
use crate::ops::status::StatusReport;
use crate::wire::RejectReason;

/// The `Content-Type` of what [`render`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Symbols given their own `symbol` label by default.
pub const DEFAULT_MAX_SYMBOL_LABELS: usize = 100;

/// The sidecar states the sidecar sends in its status lines (`barbridge_sidecar_state`);
/// anything else is shown as `other`.
const SIDECAR_STATES: [&str; 7] = ["connected", "subscribed", "disconnected", "reconnecting", "auth_failed", "stale", "error"];

/// What [`render`] exposes.
#[derive(Clone, Copy, Debug)]
pub struct MetricsOptions {
    /// At most this many symbols get a `symbol` label (per-symbol series).
    pub max_symbol_labels: usize,
}

impl Default for MetricsOptions {
    fn default() -> Self {
        MetricsOptions { max_symbol_labels: DEFAULT_MAX_SYMBOL_LABELS }
    }
}

/// The metrics of `report` in the Prometheus text format. `report` should be collected with
/// [`StatusReport::collect_capped`] at [`MetricsOptions::max_symbol_labels`] symbols.
pub fn render(report: StatusReport) -> String {
    let mut registry = Registry::with_prefix("barbridge");
    registry.register_collector(Box::new(ReportCollector(report)));
    let mut out = String::new();
    // Writing into a String cannot fail; an error here would be a bug in an encoder.
    if prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).is_err() {
        log::error!("metrics: the exposition encoder failed");
    }
    out
}

#[derive(Debug)]
struct ReportCollector(StatusReport);

fn ms_to_s(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let m = ConstCounter::new(value);
    m.encode(enc.encode_descriptor(name, help, None, m.metric_type())?)
}

/// A histogram in seconds from a [`crate::consumer::latency::HistogramSnapshot`] in milliseconds.
fn histogram(enc: &mut DescriptorEncoder, name: &str, help: &str, h: &crate::consumer::latency::HistogramSnapshot) -> fmt::Result {
    let buckets: Vec<(f64, u64)> =
        h.buckets.iter().enumerate().map(|(i, n)| (crate::consumer::latency::BOUNDS_MS.get(i).map_or(f64::INFINITY, |b| b / 1000.0), *n)).collect();
    enc.encode_descriptor(name, help, None, MetricType::Histogram)?.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        h.sum_ms as f64 / 1000.0,
        h.count,
        &buckets,
        None,
    )
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> fmt::Result {
    let m = ConstGauge::new(value);
    m.encode(enc.encode_descriptor(name, help, None, m.metric_type())?)
}

/// One family with one label: a counter or a gauge per `(label value, value)`.
fn family<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    label: &str,
    items: impl IntoIterator<Item = (&'a str, f64)>,
) -> fmt::Result {
    let mut me = enc.encode_descriptor(name, help, None, metric_type)?;
    for (value_label, value) in items {
        let labels = [(label, value_label)];
        let series = me.encode_family(&labels)?;
        if metric_type == MetricType::Counter {
            ConstCounter::new(value).encode(series)?;
        } else {
            ConstGauge::new(value).encode(series)?;
        }
    }
    Ok(())
}

impl Collector for ReportCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let r = &self.0;
        let h = &r.health;
        let c = &h.counters;
        let now = h.now_ms;
        let e = &mut enc;

        let info = Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]);
        info.encode(e.encode_descriptor("build", "The consumer's version.", None, info.metric_type())?)?;
        gauge(e, "start_time_seconds", "When the consumer started (UTC epoch seconds).", ms_to_s(h.started_ms))?;

        // The feed.
        let state = h.state;
        family(
            e,
            "feed_state",
            "The feed's state: 1 for the current one of waiting (nothing yet), live, stale.",
            MetricType::Gauge,
            "state",
            [("waiting", FeedState::Waiting), ("live", FeedState::Live), ("stale", FeedState::Stale)]
                .map(|(name, s)| (name, f64::from(u8::from(s == state)))),
        )?;
        family(
            e,
            "feed_stale_reason",
            "Why the feed is stale: 1 for the current reason (all 0 unless stale): nothing_received, or only_conflicts (bars arrive but every one conflicts with a stored minute; none delivered).",
            MetricType::Gauge,
            "reason",
            [StaleReason::NothingReceived, StaleReason::OnlyConflicts]
                .map(|r| (r.as_str(), f64::from(u8::from(state == FeedState::Stale && h.stale_reason == Some(r))))),
        )?;
        let in_session =
            crate::calendar::session_on(crate::calendar::ny_date(now)).ok().flatten().is_some_and(|s| s.open_ms <= now && now < s.close_ms);
        gauge(e, "session_open", "1 during today's regular NYSE session (New York calendar), else 0.", f64::from(u8::from(in_session)))?;
        gauge(e, "stale_after_seconds", "Seconds without any line before the feed is declared stale.", ms_to_s(h.stale_after_ms))?;
        gauge(
            e,
            "last_message_age_seconds",
            "Seconds since the last line of any kind (bar, heartbeat, status); since the start before the first.",
            ms_to_s(now - h.last_message_ms.unwrap_or(h.started_ms)),
        )?;
        let last_bar = i64::try_from(c.last_bar_received_ms).ok().filter(|t| *t > 0);
        gauge(
            e,
            "last_bar_age_seconds",
            "Seconds since the last stored bar arrived; since the start before the first.",
            ms_to_s(now - last_bar.unwrap_or(h.started_ms)),
        )?;

        // Every counter of the table (crate::consumer::health::counters), then the rejects.
        for (export, value) in c.exported() {
            match export {
                Exported::Counter(name, help) => counter(e, name, help, value)?,
                Exported::Gauge(name, help) => gauge(e, name, help, value as f64)?,
                Exported::No => {}
            }
        }
        family(
            e,
            "rejects",
            "Lines rejected, by reason.",
            MetricType::Counter,
            "reason",
            RejectReason::ALL.iter().map(|r| (r.code(), c.rejects.get(r.code()).copied().unwrap_or(0) as f64)),
        )?;

        // The sidecar, from its status lines.
        let sidecar = h.sidecar.as_ref().map(|s| s.state.as_str());
        let known = sidecar.is_none_or(|s| SIDECAR_STATES.contains(&s));
        family(
            e,
            "sidecar_state",
            "The sidecar's last reported state: 1 for the current one (none before its first status line).",
            MetricType::Gauge,
            "state",
            SIDECAR_STATES
                .iter()
                .map(|s| (*s, f64::from(u8::from(sidecar == Some(*s)))))
                .chain(std::iter::once(("other", f64::from(u8::from(!known))))),
        )?;

        // Subscribers.
        family(
            e,
            "subscriber_dropped",
            "Bars dropped because this subscriber's channel was full.",
            MetricType::Counter,
            "subscriber",
            r.subscribers.iter().map(|s| (s.name.as_str(), s.dropped as f64)),
        )?;
        family(
            e,
            "subscriber_queued_bars",
            "Bars waiting in this subscriber's channel.",
            MetricType::Gauge,
            "subscriber",
            r.subscribers.iter().map(|s| (s.name.as_str(), s.queued as f64)),
        )?;

        // Journal.
        if let Some(j) = &r.journal {
            counter(e, "journal_records_written", "Journal records written to disk.", j.records_written)?;
            gauge(e, "journal_pending_records", "Journal records waiting in memory for the disk.", j.pending_records as f64)?;
            counter(e, "journal_dropped_records", "Journal records dropped past the memory bound.", j.dropped_records)?;
            gauge(e, "journal_error", "1 while writing the journal fails.", f64::from(u8::from(j.error.is_some())))?;
        }

        // The metrics server itself (its status section), when one runs.
        if let Some(http) = r.sections.get(crate::ops::server::STATUS_SECTION).and_then(|v| serde_json::from_value::<ServerStatus>(v.clone()).ok()) {
            http_server(e, "http_", &http)?;
        }

        // Per symbol (bounded).
        gauge(e, "symbols", "Symbols with at least one stored bar.", (h.symbols.len() + r.symbols_omitted) as f64)?;
        gauge(e, "symbols_unlabeled", "Symbols left out of the per-symbol series (over the label limit).", r.symbols_omitted as f64)?;
        family(
            e,
            "symbol_bars",
            "Bars stored for this symbol (new minutes and corrections).",
            MetricType::Counter,
            "symbol",
            h.symbols.iter().map(|(s, sh)| (s.as_str(), sh.bars as f64)),
        )?;
        family(
            e,
            "symbol_last_bar_age_seconds",
            "Seconds since this symbol's newest bar arrived.",
            MetricType::Gauge,
            "symbol",
            h.symbols.iter().map(|(s, sh)| (s.as_str(), ms_to_s(now - sh.last_received_ms))),
        )?;
        family(
            e,
            "symbol_last_bar_timestamp_seconds",
            "Start of this symbol's newest bar's minute (UTC epoch seconds, from the data).",
            MetricType::Gauge,
            "symbol",
            h.symbols.iter().map(|(s, sh)| (s.as_str(), ms_to_s(sh.last_bar_ts_ms))),
        )?;
        family(
            e,
            "symbol_session_holes_seconds",
            "Time without a bar between this symbol's first and last bar in today's session.",
            MetricType::Gauge,
            "symbol",
            r.session_holes.iter().map(|(s, m)| (s.as_str(), (*m * 60) as f64)),
        )?;
        for (name, help, h) in [
            (
                "latency_minute_end_to_receipt_seconds",
                "Minute end to the sidecar's receipt of the bar (Alpaca's part; the sidecar's clock).",
                &r.latency.minute_end_to_receipt,
            ),
            (
                "latency_receipt_to_store_seconds",
                "The sidecar's receipt of a bar to its store here (ours; clocks of two hosts may differ).",
                &r.latency.receipt_to_store,
            ),
            ("latency_minute_end_to_closed_seconds", "Minute end to its minute_closed delivered here.", &r.latency.minute_end_to_closed),
        ] {
            histogram(e, name, help, h)?;
        }
        family(
            e,
            "symbol_session_quiet_seconds",
            "Time of today's session without a bar that REST confirmed quiet for this symbol (not in the holes).",
            MetricType::Gauge,
            "symbol",
            r.session_quiet.iter().map(|(s, m)| (s.as_str(), (*m * 60) as f64)),
        )?;
        gauge(e, "symbols_halted", "Symbols not trading now (halted, paused or quoting only).", r.halted.len() as f64)?;
        family(
            e,
            "symbol_halted",
            "1 while this symbol is halted (no trades, so no bars expected), else 0.",
            MetricType::Gauge,
            "symbol",
            h.symbols.keys().map(|s| (s.as_str(), f64::from(u8::from(r.halted.contains_key(s))))),
        )?;
        family(
            e,
            "symbol_session_halted_seconds",
            "Time of today's session without a bar because this symbol was halted (not in the holes).",
            MetricType::Gauge,
            "symbol",
            h.symbols.keys().map(|s| (s.as_str(), (r.session_halted.get(s).copied().unwrap_or(0) * 60) as f64)),
        )?;
        Ok(())
    }
}

/// The counters of a metrics server ([`crate::ops::server`]), named `{prefix}...` under the
/// registry's prefix (`barbridge_http_...` for the consumer's).
pub fn http_server(e: &mut DescriptorEncoder, prefix: &str, s: &ServerStatus) -> fmt::Result {
    let name = |n: &str| format!("{prefix}{n}");
    gauge(e, &name("max_connections"), "Connections the metrics server serves at once (the bound).", s.max_connections as f64)?;
    gauge(e, &name("connections_open"), "Connections open on the metrics server now.", s.connections_open as f64)?;
    counter(e, &name("connections_accepted"), "Connections the metrics server accepted and served.", s.connections_accepted)?;
    counter(e, &name("connections_refused"), "Connections closed at once because the bound was open.", s.connections_refused)?;
    counter(e, &name("accept_errors"), "Failed accepts on the metrics port (e.g. no file descriptor left), each retried.", s.accept_errors)?;
    counter(
        e,
        &name("connection_errors"),
        "Connections ended by a client's fault (head too large or too slow, malformed, cut off).",
        s.connection_errors,
    )?;
    counter(e, &name("deadline_closed"), "Connections closed at their deadline.", s.deadline_closed)?;
    counter(e, &name("requests"), "Requests the metrics server answered.", s.requests)?;
    counter(e, &name("requests_failed"), "Requests the metrics server answered with a 5xx (a failed handler).", s.requests_failed)?;
    counter(e, &name("handler_panics"), "Requests whose handler panicked (answered 500).", s.handler_panics)?;
    gauge(e, &name("up"), "1 while the metrics server's thread runs.", f64::from(u8::from(s.running)))
}

/// The exposition of one metrics server's counters alone, under `prefix` (the sidecar's
/// `barbridge_sidecar_http_...`).
pub fn render_http_server(prefix: &str, status: &ServerStatus) -> String {
    #[derive(Debug)]
    struct One(String, ServerStatus);
    impl Collector for One {
        fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
            http_server(&mut enc, &self.0, &self.1)
        }
    }
    let mut registry = Registry::default();
    registry.register_collector(Box::new(One(prefix.to_owned(), status.clone())));
    let mut out = String::new();
    if prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).is_err() {
        log::error!("metrics: the exposition encoder failed");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::health::ManualClock;
    use crate::consumer::Consumer;
    use std::time::Duration;

    fn line(symbol: &str, minute: i64) -> String {
        let ts = 1_759_930_080_000 + minute * 60_000;
        format!(r#"{{"symbol":"{symbol}","timestamp_ms":{ts},"open":1,"high":2,"low":1,"close":1.5,"volume":10}}"#)
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn every_counter_of_the_table_is_in_the_status_file_and_exported_as_declared() {
        let consumer = Consumer::builder().build().unwrap();
        let report = StatusReport::collect_capped(&consumer, None, 10);
        let json = serde_json::to_value(&report).unwrap();
        let keys = json["health"]["counters"].as_object().unwrap().len();
        let exported = report.health.counters.exported();
        assert_eq!(keys, exported.len() + 2, "every table entry is a status key (besides rejects_total, rejects)");
        let text = render(report);
        for (export, _) in exported {
            match export {
                Exported::Counter(name, _) => assert!(text.contains(&format!("# TYPE barbridge_{name}_total counter")), "{name}: {text}"),
                Exported::Gauge(name, _) => assert!(text.contains(&format!("# TYPE barbridge_{name} gauge")), "{name}: {text}"),
                Exported::No => {}
            }
        }
    }

    #[test]
    fn counters_states_and_ages_are_exposed() {
        let clock = ManualClock::new(1_759_940_000_000); // after the bars (a bar from the future is refused)
        let consumer = Consumer::builder().clock(clock.clone()).stale_after(Duration::from_secs(60)).build().unwrap();
        for m in 0..3 {
            consumer.ingest_line(line("SPY", m).as_bytes()).unwrap();
        }
        consumer.ingest_line(line("SPY", 0).as_bytes()).unwrap();
        let _ = consumer.ingest_line(b"{\"symbol\":\"SPY\"}");
        clock.advance(Duration::from_secs(5));
        let text = render(StatusReport::collect_capped(&consumer, None, 10));
        assert_eq!(value(&text, "barbridge_bars_accepted_total"), Some(3.0));
        assert_eq!(value(&text, "barbridge_duplicates_total"), Some(1.0));
        assert_eq!(value(&text, "barbridge_rejects_total{reason=\"missing_field\"}"), Some(1.0));
        assert_eq!(value(&text, "barbridge_rejects_total{reason=\"non_finite\"}"), Some(0.0));
        assert_eq!(value(&text, "barbridge_feed_state{state=\"live\"}"), Some(1.0));
        assert_eq!(value(&text, "barbridge_feed_state{state=\"stale\"}"), Some(0.0));
        assert_eq!(value(&text, "barbridge_last_bar_age_seconds"), Some(5.0));
        assert_eq!(value(&text, "barbridge_symbol_last_bar_age_seconds{symbol=\"SPY\"}"), Some(5.0));
        assert_eq!(value(&text, "barbridge_symbol_bars_total{symbol=\"SPY\"}"), Some(3.0));
        assert!(text.contains("# TYPE barbridge_bars_accepted_total counter"), "{text}");
        assert!(text.contains("barbridge_build_info{version=\""), "{text}");

        clock.advance(Duration::from_secs(60));
        consumer.health().tick();
        let text = render(StatusReport::collect_capped(&consumer, None, 10));
        assert_eq!(value(&text, "barbridge_feed_state{state=\"stale\"}"), Some(1.0));
        assert_eq!(value(&text, "barbridge_stale_episodes_total"), Some(1.0));
        assert_eq!(value(&text, "barbridge_feed_stale_reason{reason=\"nothing_received\"}"), Some(1.0));
        assert_eq!(value(&text, "barbridge_feed_stale_reason{reason=\"only_conflicts\"}"), Some(0.0));
        assert_eq!(value(&text, "barbridge_fifo_open_errors_total"), Some(0.0));
    }

    #[test]
    fn a_feed_of_only_conflicts_is_stale_with_its_reason() {
        let clock = ManualClock::new(1_759_940_000_000); // after the bars (a bar from the future is refused)
        let consumer = Consumer::builder().clock(clock.clone()).stale_after(Duration::from_secs(60)).build().unwrap();
        consumer.ingest_line(line("SPY", 0).as_bytes()).unwrap();
        let conflict = line("SPY", 0).replace("\"close\":1.5", "\"close\":1.25");
        for _ in 0..4 {
            consumer.ingest_line(conflict.as_bytes()).unwrap();
            clock.advance(Duration::from_secs(20));
        }
        consumer.health().tick();
        let text = render(StatusReport::collect_capped(&consumer, None, 10));
        assert_eq!(value(&text, "barbridge_conflicts_total"), Some(4.0));
        assert_eq!(value(&text, "barbridge_feed_state{state=\"stale\"}"), Some(1.0));
        assert_eq!(value(&text, "barbridge_feed_stale_reason{reason=\"only_conflicts\"}"), Some(1.0));
        assert_eq!(value(&text, "barbridge_feed_stale_reason{reason=\"nothing_received\"}"), Some(0.0));
    }

    #[test]
    fn symbol_labels_stop_at_the_limit() {
        let consumer = Consumer::builder().build().unwrap();
        for s in ["AAA", "BBB", "CCC", "DDD"] {
            consumer.ingest_line(line(s, 0).as_bytes()).unwrap();
        }
        let text = render(StatusReport::collect_capped(&consumer, None, 2));
        let labeled = text.lines().filter(|l| l.starts_with("barbridge_symbol_bars_total{")).count();
        assert_eq!(labeled, 2, "{text}");
        assert_eq!(value(&text, "barbridge_symbols"), Some(4.0));
        assert_eq!(value(&text, "barbridge_symbols_unlabeled"), Some(2.0));
    }
}
