//! The FIFO writer (the sidecar's side) into the real consumer over real FIFOs: a backlog held
//! until a reader comes, two writers sharing one FIFO, a consumer restart, refusals.

mod common;

use std::sync::Arc;
use std::time::Duration;

use barbridge::sidecar::writer::{FifoWriter, WriterError, WriterOptions};
use barbridge::{Bar, BarKind, Consumer, FeedOptions, FifoError, FifoFeed, Source};
use common::*;

fn bar(minute: i64, close: f64) -> Bar {
    Bar {
        timestamp_ms: 1_759_930_080_000 + minute * 60_000,
        open: close,
        high: close + 0.5,
        low: close - 0.5,
        close,
        volume: 100.0 + minute as f64,
        vwap: Some(close),
        trade_count: Some(7),
    }
}

fn options(id: &str) -> WriterOptions {
    WriterOptions { writer: id.into(), heartbeat: Some(Duration::from_millis(100)), ..WriterOptions::default() }
}

fn consumer_on(path: &std::path::Path) -> (Arc<Consumer>, FifoFeed) {
    let consumer = Consumer::builder().build().unwrap();
    let feed = FifoFeed::start(consumer.clone(), path, FeedOptions::default()).unwrap();
    (consumer, feed)
}

const SYMBOLS: [&str; 4] = ["SPY", "SPXL", "SH", "SDS"];

#[test]
fn backlog_waits_for_the_consumer_then_arrives_whole_and_in_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let path = fifo_in(&dir);
    let writer = FifoWriter::new(&path, options("w1"));
    writer.start().unwrap();
    for minute in 0..2_000 {
        for sym in SYMBOLS {
            writer.submit_bar(sym, bar(minute, 100.0), BarKind::Bar, Some(Source::Stream)).unwrap();
        }
    }
    let corrected = bar(5, 101.0);
    writer.submit_bar("SPY", corrected, BarKind::UpdatedBar, Some(Source::Backfill)).unwrap();
    writer.submit_connection_state("subscribed", "SPY,SPXL,SH,SDS").unwrap();
    writer.submit_connection_state("reconnecting", &"€".repeat(5_000)).unwrap(); // cut to fit one atomic write
    assert!(!writer.reader_present());
    assert!(writer.backlog() >= 8_002, "nothing is written without a reader: {}", writer.backlog());

    let (consumer, feed) = consumer_on(&path);
    assert!(wait_until(LONG, || writer.backlog() == 0 && consumer.store().total_len() == 8_000));
    assert!(wait_until(LONG, || consumer.health().counters.snapshot().status_lines == 2));
    let c = consumer.health().counters.snapshot();
    assert_eq!((c.bars_accepted, c.corrections, c.rejects_total, c.seq_gaps, c.lines_lost), (8_000, 1, 0, 0, 0));
    assert_eq!(consumer.store().range("SPY", corrected.timestamp_ms, corrected.timestamp_ms + 1), vec![corrected]);
    let s = writer.stats();
    assert_eq!((s.bars_written, s.dropped_overflow, s.dropped_invalid, s.reader_opens), (8_001, 0, 0, 1));
    assert!(wait_until(LONG, || consumer.health().counters.snapshot().heartbeats >= 2), "heartbeats keep coming");
    assert!(matches!(writer.close(Duration::from_secs(2)), Some(Ok(()))));
    feed.stop();
    feed.join().unwrap();
}

#[test]
fn two_writers_share_one_fifo_without_tearing_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = fifo_in(&dir);
    let (consumer, feed) = consumer_on(&path);
    let writers: Vec<_> = ["A", "B"]
        .into_iter()
        .map(|id| {
            let path = path.clone();
            std::thread::spawn(move || {
                let writer = FifoWriter::new(&path, options(id));
                writer.start().unwrap();
                for minute in 0..20_000 {
                    writer.submit_bar(&format!("{id}{}", minute % 10), bar(minute, 50.0), BarKind::Bar, None).unwrap();
                }
                assert!(matches!(writer.close(Duration::from_secs(30)), Some(Ok(()))));
                assert_eq!(writer.backlog(), 0);
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert!(wait_until(LONG, || consumer.store().total_len() == 40_000), "stored {}", consumer.store().total_len());
    let c = consumer.health().counters.snapshot();
    assert_eq!((c.rejects_total, c.seq_gaps, c.lines_lost), (0, 0, 0), "{c:?}");
    feed.stop();
    feed.join().unwrap();
}

#[test]
fn a_consumer_restart_loses_no_bar() {
    let dir = tempfile::tempdir().unwrap();
    let path = fifo_in(&dir);
    let writer = FifoWriter::new(&path, options("w1"));
    writer.start().unwrap();
    let (first, feed) = consumer_on(&path);
    for minute in 0..100 {
        writer.submit_bar("SPY", bar(minute, 100.0), BarKind::Bar, None).unwrap();
    }
    assert!(wait_until(LONG, || first.store().len("SPY") == 100));
    feed.stop();
    feed.join().unwrap();
    // Written while no consumer reads: the writer notices EPIPE and keeps them.
    for minute in 100..150 {
        writer.submit_bar("SPY", bar(minute, 100.0), BarKind::Bar, None).unwrap();
    }
    assert!(wait_until(LONG, || writer.stats().reader_lost == 1));
    let (second, feed) = consumer_on(&path);
    // Everything written while no consumer read arrives (after whatever the writer re-sends).
    let want: Vec<i64> = (100..150).map(|m| bar(m, 0.0).timestamp_ms).collect();
    let got = || second.store().last_n("SPY", 1_000).iter().map(|b| b.timestamp_ms).collect::<Vec<i64>>();
    assert!(wait_until(LONG, || got().ends_with(&want)), "{:?}", got());
    writer.close(Duration::from_secs(2));
    feed.stop();
    feed.join().unwrap();
}

#[test]
fn invalid_bars_and_unusable_fifos_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = fifo_in(&dir);
    let writer = FifoWriter::new(&path, options("w1"));
    let bad = Bar { high: 1.0, low: 2.0, ..bar(0, 1.5) };
    assert!(writer.submit_bar("SPY", bad, BarKind::Bar, None).is_err());
    assert!(writer.submit_connection_state("sleepy", "").is_err());
    assert_eq!((writer.stats().dropped_invalid, writer.backlog()), (1, 0));

    let file = dir.path().join("regular");
    std::fs::write(&file, "x").unwrap();
    let err = FifoWriter::new(&file, options("w1")).start().unwrap_err();
    assert!(matches!(err, WriterError::Unusable(_)) && err.to_string().contains("is a regular file, not a FIFO"), "{err}");
    let link = dir.path().join("link.fifo");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let err = FifoWriter::new(&link, options("w1")).start().unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    let err = FifoWriter::new(&path, options("has space")).start().unwrap_err();
    assert!(matches!(err, WriterError::InvalidWriterId { .. }), "{err}");
}

#[test]
fn options_out_of_range_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = fifo_in(&dir);
    for options in [
        WriterOptions { backlog: 0, ..options("w1") },
        WriterOptions { pipe_size: 100, ..options("w1") },
        WriterOptions { ack_poll: Duration::ZERO, ..options("w1") },
    ] {
        let err = FifoWriter::new(&path, options).start().unwrap_err();
        assert!(matches!(err, WriterError::InvalidOption { .. }), "{err}");
        assert!(err.to_string().starts_with("writer option "), "{err}");
    }
}

#[test]
fn a_writer_that_stops_by_itself_says_why_with_the_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = fifo_in(&dir);
    let writer = FifoWriter::new(&path, options("w1"));
    writer.start().unwrap(); // no reader: the thread retries its open
                             // Swap the FIFO for a regular file in one rename (never a moment with nothing at the path,
                             // where the writer would recreate the FIFO).
    let file = dir.path().join("regular");
    std::fs::write(&file, "x").unwrap();
    std::fs::rename(&file, &path).unwrap();
    assert!(wait_until(Duration::from_secs(30), || writer.finished()), "the writer kept going on a regular file");
    let err = writer.join().expect("started").expect_err("stopped by itself");
    assert!(matches!(*err, WriterError::Unusable(FifoError::NotAFifo { .. })), "{err}");
    assert!(err.to_string().contains("is a regular file, not a FIFO"), "{err}");
}
