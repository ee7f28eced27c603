use super::*;
use crate::capacity::CapacityError;
use std::time::Duration;

#[test]
fn build_checks_every_setting_and_clamps_none() {
    let refused = |b: ConsumerBuilder| b.build().unwrap_err();
    assert_eq!(refused(Consumer::builder().capacity_per_symbol(0)), ConfigError::Capacity(CapacityError::Zero { what: "bars kept per symbol" }));
    assert_eq!(refused(Consumer::builder().stale_after(Duration::ZERO)), ConfigError::ZeroStaleAfter);
    let err = refused(Consumer::builder().symbols(["SPY", "spy"]));
    assert!(matches!(&err, ConfigError::Symbol(WireError::InvalidSymbol { symbol }) if symbol == "spy"), "{err}");
    assert!(err.to_string().starts_with("symbols: symbol \"spy\" is not"), "{err}");
    assert!(matches!(Subscription::symbols(["S P Y"]), Err(ConfigError::Symbol(_))));
    assert_eq!(Consumer::builder().capacity_per_symbol(1).build().unwrap().store().capacity_per_symbol(), 1);
}

/// Minute 0 of these tests (2025-10-08 13:28 UTC): a plausible, minute-aligned time.
const T0: i64 = 1_759_930_080_000;

/// A bar line `ts` ms after [`T0`].
fn line(ts: i64, close: f64, kind: &str) -> String {
    format!(r#"{{"type":"{kind}","symbol":"SPY","timestamp_ms":{},"open":{close},"high":{close},"low":{close},"close":{close},"volume":1}}"#, T0 + ts)
}

#[test]
fn subscribers_get_their_symbols_and_corrections() {
    let consumer = Consumer::builder().build().unwrap();
    let spy = consumer.subscribe(Subscription::symbols(["SPY"]).unwrap());
    let other = consumer.subscribe(Subscription::symbols(["QQQ"]).unwrap());
    consumer.ingest_line(line(60_000, 1.0, "bar").as_bytes()).unwrap();
    consumer.ingest_line(line(60_000, 1.0, "bar").as_bytes()).unwrap();
    consumer.ingest_line(line(60_000, 2.0, "updated_bar").as_bytes()).unwrap();
    let got: Vec<BarEvent> = spy.try_iter().collect();
    assert_eq!(got.len(), 2, "duplicate not delivered");
    assert!(!got[0].correction && got[1].correction);
    assert!(other.try_recv().is_err());
    let c = consumer.health().counters.snapshot();
    assert_eq!((c.bars_accepted, c.duplicates, c.corrections), (1, 1, 1));
}

#[test]
fn full_channel_drops_oldest_and_counts() {
    let consumer = Consumer::builder().build().unwrap();
    let rx = consumer.subscribe(Subscription::all().capacity(2).unwrap());
    for i in 1..=5 {
        consumer.ingest_line(line(i * 60_000, 1.0, "bar").as_bytes()).unwrap();
    }
    let ts: Vec<i64> = rx.try_iter().map(|e| (e.bar.timestamp_ms - T0) / 60_000).collect();
    assert_eq!(ts, vec![4, 5]);
    assert_eq!(rx.dropped(), 3);
    assert_eq!(consumer.health().counters.snapshot().delivery_drops, 3);
    assert_eq!(consumer.store().len("SPY"), 5, "the store keeps everything");
}

#[test]
fn full_channel_drop_newest() {
    let consumer = Consumer::builder().build().unwrap();
    let rx = consumer.subscribe(Subscription::all().capacity(2).unwrap().overflow(Overflow::DropNewest));
    for i in 1..=5 {
        consumer.ingest_line(line(i * 60_000, 1.0, "bar").as_bytes()).unwrap();
    }
    let ts: Vec<i64> = rx.try_iter().map(|e| (e.bar.timestamp_ms - T0) / 60_000).collect();
    assert_eq!(ts, vec![1, 2]);
}

#[test]
fn dropped_receiver_unsubscribes() {
    let consumer = Consumer::builder().build().unwrap();
    let rx = consumer.subscribe(Subscription::all());
    assert_eq!(consumer.subscriber_status().len(), 1);
    drop(rx);
    consumer.ingest_line(line(60_000, 1.0, "bar").as_bytes()).unwrap();
    assert!(consumer.subscriber_status().is_empty());
}

#[test]
fn symbol_filter_counts_others() {
    let consumer = Consumer::builder().symbols(["QQQ"]).build().unwrap();
    assert_eq!(consumer.ingest_line(line(60_000, 1.0, "bar").as_bytes()).unwrap(), Ingested::Filtered);
    assert_eq!(consumer.health().counters.snapshot().filtered, 1);
    assert!(consumer.store().symbols().is_empty());
}
