//! `cargo bench --bench consumer`: the hot path piece by piece, each next to a baseline measured
//! in the same run (a generic `serde_json::Value` parse; a `HashMap<String, Vec>` store).

use std::collections::HashMap;
use std::hint::black_box;

use barbridge::wire::parse_line;
use barbridge::{Bar, BarStore, Consumer, InsertMode};
/// The fair baseline for the parser: serde into the same fields, typed, borrowing the symbol.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct TypedBar<'a> {
    symbol: &'a str,
    timestamp_ms: i64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
    vwap: Option<f64>,
    trade_count: Option<u64>,
}

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const SEED_LINE: &[u8] = br#"{"symbol": "SPY", "timestamp_ms": 1759930080000, "open": 671.2, "high": 671.5, "low": 671.1, "close": 671.4, "volume": 18234, "vwap": 671.33, "trade_count": 212}"#;

fn bar(ts: i64) -> Bar {
    Bar { timestamp_ms: ts, open: 671.2, high: 671.5, low: 671.1, close: 671.4, volume: 18234.0, vwap: Some(671.33), trade_count: Some(212) }
}

fn lines(symbols: usize, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let sym = format!("S{}", i % symbols);
            let ts = 1_759_930_080_000 + (i / symbols) as i64 * 60_000;
            barbridge::wire::encode_bar(&sym, &bar(ts), barbridge::BarKind::Bar).into_bytes()
        })
        .collect()
}

fn wire(c: &mut Criterion) {
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_line+validate (seed line)", |b| b.iter(|| parse_line(black_box(SEED_LINE)).unwrap()));
    g.bench_function("baseline: serde_json into a typed struct (no validation)", |b| {
        b.iter(|| serde_json::from_slice::<TypedBar>(black_box(SEED_LINE)).unwrap())
    });
    g.bench_function("baseline: serde_json::Value parse", |b| b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(SEED_LINE)).unwrap()));
    g.finish();
}

fn store(c: &mut Criterion) {
    let mut g = c.benchmark_group("store insert");
    for symbols in [4usize, 10_000] {
        let names: Vec<String> = (0..symbols).map(|i| format!("S{i}")).collect();
        let n = 100_000;
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("BarStore, {symbols} symbols"), |b| {
            b.iter_batched(
                || BarStore::new(10_000).unwrap(),
                |store| {
                    for i in 0..n {
                        store.insert(&names[i % symbols], bar((i / symbols) as i64 * 60_000), InsertMode::FirstReport);
                    }
                    store
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_function(format!("baseline: HashMap<String, Vec<Bar>>, {symbols} symbols"), |b| {
            b.iter_batched(
                HashMap::<String, Vec<Bar>>::new,
                |mut map| {
                    for i in 0..n {
                        map.entry(names[i % symbols].clone()).or_default().push(bar((i / symbols) as i64 * 60_000));
                    }
                    map
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn ingest(c: &mut Criterion) {
    let mut g = c.benchmark_group("consumer ingest_line (parse, validate, store, health, 1 subscriber)");
    for symbols in [4usize, 10_000] {
        let input = lines(symbols, 100_000);
        g.throughput(Throughput::Elements(input.len() as u64));
        g.bench_function(format!("{symbols} symbols"), |b| {
            b.iter_batched(
                || {
                    let consumer = Consumer::builder().build().unwrap();
                    let rx = consumer.subscribe(barbridge::Subscription::all().capacity(1 << 20).unwrap());
                    (consumer, rx)
                },
                |(consumer, rx)| {
                    for line in &input {
                        let _ = consumer.ingest_line(line);
                    }
                    (consumer, rx)
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn queries(c: &mut Criterion) {
    let store = BarStore::new(10_000).unwrap();
    for i in 0..10_000 {
        store.insert("SPY", bar(i * 60_000), InsertMode::FirstReport);
    }
    let mut g = c.benchmark_group("queries (10,000 bars stored)");
    g.bench_function("latest", |b| b.iter(|| store.latest(black_box("SPY"))));
    g.bench_function("last_n(100)", |b| b.iter(|| store.last_n(black_box("SPY"), 100)));
    g.bench_function("range(390 minutes)", |b| b.iter(|| store.range(black_box("SPY"), 5_000 * 60_000, 5_390 * 60_000)));
    g.finish();
}

criterion_group!(benches, wire, store, ingest, queries);
criterion_main!(benches);
