//! The FIFO reader on real FIFOs with real writer threads: an open-write-close-per-bar writer,
//! concurrent writers, bad lines among good ones, shutdown in every state.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use barbridge::consumer::reader::{read_fifo, Flow, FrameSink, ReaderOptions};
use barbridge::fifo::prepare_fifo;
use barbridge::{Consumer, FeedOptions, FifoFeed};
use common::*;

fn start(dir: &tempfile::TempDir) -> (Arc<Consumer>, FifoFeed, std::path::PathBuf) {
    let consumer = Consumer::builder().build().unwrap();
    let path = fifo_in(dir);
    let feed = FifoFeed::start(consumer.clone(), &path, FeedOptions::default()).unwrap();
    (consumer, feed, path)
}

/// Stop the feed and require the reader thread to end (generous bound: it must not hang).
fn stop_and_join(feed: FifoFeed) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    feed.stop();
    std::thread::spawn(move || tx.send(feed.join()).unwrap());
    let result = rx.recv_timeout(Duration::from_secs(10)).expect("reader did not stop: shutdown is blocked");
    result.unwrap();
}

#[test]
fn seed_writer_opening_and_closing_per_bar_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (consumer, feed, path) = start(&dir);
    for i in 0..1000 {
        let mut w = open_writer(&path);
        write_line(&mut w, &seed_line("SPY", i, 100.0));
        drop(w);
    }
    assert!(wait_until(LONG, || consumer.store().len("SPY") == 1000), "stored {}", consumer.store().len("SPY"));
    let c = consumer.health().counters.snapshot();
    assert_eq!((c.bars_accepted, c.rejects_total, c.duplicates), (1000, 0, 0));
    stop_and_join(feed);
}

#[test]
fn four_concurrent_writers_never_tear_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let (consumer, feed, path) = start(&dir);
    let symbols = ["SPY", "SPXL", "SH", "SDS"];
    let writers: Vec<_> = symbols
        .iter()
        .map(|sym| {
            let (path, sym) = (path.clone(), sym.to_string());
            std::thread::spawn(move || {
                let mut w = open_writer(&path);
                for i in 0..10_000 {
                    write_line(&mut w, &seed_line(&sym, i, 50.0 + (i % 7) as f64));
                }
            })
        })
        .collect();
    writers.into_iter().for_each(|w| w.join().unwrap());
    assert!(wait_until(LONG, || consumer.health().counters.snapshot().bars_accepted == 40_000));
    let c = consumer.health().counters.snapshot();
    assert_eq!(c.rejects_total, 0, "torn lines: {:?}", c.rejects);
    for sym in symbols {
        let bars = consumer.store().last_n(sym, 10_000);
        assert_eq!(bars.len(), 10_000, "{sym}");
        assert!(bars.windows(2).all(|w| w[1].timestamp_ms - w[0].timestamp_ms == 60_000), "{sym} out of order");
    }
    stop_and_join(feed);
}

#[test]
fn bad_lines_cost_no_good_line_and_are_counted_by_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (consumer, feed, path) = start(&dir);
    let good = |i| seed_line("SPY", i, 10.0);
    let mut bad: Vec<Vec<u8>> = vec![
        b"{not json\n".to_vec(),
        b"{\"symbol\":\"SPY\",\"timestamp_ms\":1759930080000,\"open\":1,\"high\":1,\"low\":1,\"volume\":1}\n".to_vec(),
        b"{\"symbol\":\"SPY\",\"timestamp_ms\":1759930080000,\"open\":1,\"high\":1,\"low\":1,\"close\":NaN,\"volume\":1}\n".to_vec(),
        b"{\"symbol\":\"SPY\",\"timestamp_ms\":1759930080000,\"open\":1,\"high\":0.5,\"low\":1,\"close\":1,\"volume\":1}\n".to_vec(),
        b"{\"symbol\":\"SP\xff\",\"timestamp_ms\":1,\"open\":1,\"high\":1,\"low\":1,\"close\":1,\"volume\":1}\n".to_vec(),
    ];
    let mut oversize = vec![b'x'; 10_000];
    oversize.push(b'\n');
    bad.push(oversize);
    let mut w = open_writer(&path);
    let mut n_good = 0;
    for (i, b) in bad.iter().enumerate() {
        write_line(&mut w, &good(n_good));
        n_good += 1;
        w.write_all(b).unwrap(); // the oversize one takes several writes: still one line
        let _ = i;
    }
    write_line(&mut w, &good(n_good));
    n_good += 1;
    drop(w);
    assert!(wait_until(LONG, || consumer.health().counters.snapshot().rejects_total == 6));
    assert!(wait_until(LONG, || consumer.store().len("SPY") == n_good as usize));
    let c = consumer.health().counters.snapshot();
    for reason in ["malformed_json", "missing_field", "non_finite", "high_below_low", "invalid_utf8", "oversize"] {
        assert_eq!(c.rejects.get(reason), Some(&1), "{reason}: {:?}", c.rejects);
    }
    assert_eq!(c.bars_accepted, n_good as u64);
    stop_and_join(feed);
}

#[test]
fn shutdown_when_no_writer_ever_came() {
    let dir = tempfile::tempdir().unwrap();
    let (_consumer, feed, _path) = start(&dir);
    std::thread::sleep(Duration::from_millis(50)); // let it reach poll()
    stop_and_join(feed);
}

#[test]
fn shutdown_mid_stream_while_a_writer_holds_the_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let (consumer, feed, path) = start(&dir);
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (path, writing) = (path.clone(), writing.clone());
        std::thread::spawn(move || {
            let mut w = open_writer(&path);
            let _ = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
            let mut i = 0;
            while writing.load(Ordering::Relaxed) {
                let _ = w.write(seed_line("SPY", i, 1.0).as_bytes()); // EAGAIN/EPIPE once the reader is gone
                i += 1;
            }
        })
    };
    assert!(wait_until(LONG, || consumer.store().len("SPY") > 100));
    stop_and_join(feed);
    writing.store(false, Ordering::Relaxed);
    writer.join().unwrap();
}

#[test]
fn after_the_last_writer_leaves_the_reader_waits_without_spinning() {
    struct Counting<'a> {
        lines: &'a AtomicUsize,
        gone: &'a AtomicUsize,
    }
    impl FrameSink for Counting<'_> {
        fn line(&mut self, _: &[u8]) {
            self.lines.fetch_add(1, Ordering::SeqCst);
        }
        fn oversize(&mut self, _: usize) {}
        fn writers_gone(&mut self) -> Flow {
            self.gone.fetch_add(1, Ordering::SeqCst);
            Flow::Continue
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = fifo_in(&dir);
    prepare_fifo(&path).unwrap();
    let (lines, gone, stop) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicBool::new(false));
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let opts = ReaderOptions { poll_interval: Duration::from_millis(20), ..ReaderOptions::default() };
            read_fifo(&path, &opts, &stop, &mut Counting { lines: &lines, gone: &gone })
        });
        let mut w = open_writer(&path);
        write_line(&mut w, "a\n");
        drop(w);
        assert!(wait_until(LONG, || gone.load(Ordering::SeqCst) == 1));
        // Idle for many poll intervals: a reader that kept seeing the old hang-up would count
        // thousands of "writers gone" here.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(gone.load(Ordering::SeqCst), 1, "reader is spinning on EOF");
        // And the next writer is heard.
        let mut w = open_writer(&path);
        write_line(&mut w, "b\n");
        drop(w);
        assert!(wait_until(LONG, || lines.load(Ordering::SeqCst) == 2 && gone.load(Ordering::SeqCst) == 2));
        stop.store(true, Ordering::SeqCst);
        reader.join().unwrap().unwrap();
    });
}

#[test]
fn once_mode_ends_after_the_first_writer_session() {
    let dir = tempfile::tempdir().unwrap();
    let consumer = Consumer::builder().build().unwrap();
    let path = fifo_in(&dir);
    let feed = FifoFeed::start(consumer.clone(), &path, FeedOptions { stop_when_writers_gone: true, ..Default::default() }).unwrap();
    let mut w = open_writer(&path);
    for i in 0..10 {
        write_line(&mut w, &seed_line("SH", i, 5.0));
    }
    drop(w);
    assert!(wait_until(LONG, || feed.is_finished()));
    feed.join().unwrap();
    assert_eq!(consumer.store().len("SH"), 10);
}

#[test]
fn the_fifo_is_private() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let dir = tempfile::tempdir().unwrap();
    let path = fifo_in(&dir);
    prepare_fifo(&path).unwrap();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_fifo());
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777, 0o700);
}

#[test]
fn refuses_regular_files_symlinks_foreign_fifos_open_fifos_and_open_directories() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::File::create(&file).unwrap().write_all(b"x").unwrap();
    let err = prepare_fifo(&file).unwrap_err().to_string();
    assert!(err.contains("is a regular file, not a FIFO"), "{err}");

    let real = fifo_in(&dir);
    prepare_fifo(&real).unwrap();
    let link = dir.path().join("link.fifo");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let err = prepare_fifo(&link).unwrap_err().to_string();
    assert!(err.contains("symbolic link"), "{err}");

    let open_dir = dir.path().join("open");
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = prepare_fifo(&open_dir.join("bars.fifo")).unwrap_err().to_string();
    assert!(err.contains("writable by other users"), "{err}");

    // A FIFO of ours others can open: refused, never tightened (whoever opened it keeps the handle).
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = prepare_fifo(&real).unwrap_err().to_string();
    assert!(err.contains("mode 666") && err.contains("never tightened"), "{err}");
    assert_eq!(std::fs::symlink_metadata(&real).unwrap().mode() & 0o777, 0o666, "left as it was");

    if nix::unistd::getuid().is_root() {
        let foreign = dir.path().join("run").join("foreign.fifo");
        nix::unistd::mkfifo(&foreign, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
        let err = prepare_fifo(&foreign).unwrap_err().to_string();
        assert!(err.contains("owned by uid 65534"), "{err}");
    }
}

#[test]
fn a_channel_subscriber_gets_every_bar_in_order_while_the_pipe_never_runs_dry() {
    let dir = tempfile::tempdir().unwrap();
    let consumer = Consumer::builder().capacity_per_symbol(100_000).build().unwrap();
    let rx = consumer.subscribe(barbridge::Subscription::symbols(["SPY"]).unwrap().capacity(1 << 17).unwrap());
    let path = fifo_in(&dir);
    let feed = FifoFeed::start(consumer.clone(), &path, FeedOptions::default()).unwrap();
    let n = 50_000;
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || {
            let mut w = open_writer(&path);
            let mut block = String::new();
            for i in 0..n {
                block.push_str(&seed_line("SPY", i, 10.0));
                if block.len() > 3500 {
                    write_line(&mut w, &block); // whole lines, < PIPE_BUF per write
                    block.clear();
                }
            }
            write_line(&mut w, &block);
        })
    };
    let mut got = Vec::with_capacity(n as usize);
    while got.len() < n as usize {
        let ev = rx.recv_timeout(LONG).expect("bars stopped arriving on the channel");
        got.push(ev.bar.timestamp_ms);
    }
    writer.join().unwrap();
    assert!(got.windows(2).all(|w| w[1] > w[0]), "out of order");
    assert_eq!(rx.dropped(), 0);
    stop_and_join(feed);
}

/// A stray writer's unfinished line glues onto the next writer's first line and destroys it:
/// the destroyed line is counted as a reject, and the writer's first seq above 1 as lost lines.
#[test]
fn a_line_destroyed_by_a_stray_writer_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (consumer, feed, path) = start(&dir);
    let mut stray = open_writer(&path);
    stray.write_all(b"{\"symbol\":\"ST").unwrap(); // no newline: it stays in the pipe
    let mut w = open_writer(&path);
    for seq in 1..=3 {
        let line = seed_line("SPY", seq, 10.0);
        let line = format!("{},\"seq\":{seq},\"writer\":\"w\"}}\n", line.trim_end().trim_end_matches('}'));
        write_line(&mut w, &line);
    }
    assert!(wait_until(LONG, || consumer.store().len("SPY") == 2), "the two intact bars");
    let c = consumer.health().counters.snapshot();
    assert_eq!((c.rejects_total, c.seq_gaps, c.lines_lost), (1, 1, 1), "{c:?}");
    drop((stray, w));
    stop_and_join(feed);
}

/// A callback that ingests a bar of its own on the reader thread (a derived series, say) has it
/// delivered at once, not held until the reader's batch ends.
#[test]
fn a_callback_ingesting_on_the_reader_thread_is_delivered_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (consumer, feed, path) = start(&dir);
    let derived = Arc::new(consumer.subscribe(barbridge::Subscription::symbols(["DRV"]).unwrap()));
    let seen_at_once = Arc::new(AtomicUsize::new(0));
    {
        let (consumer, derived, seen) = (Arc::downgrade(&consumer), derived.clone(), seen_at_once.clone());
        consumer.upgrade().unwrap().on_bar(&["SPY"], move |event| {
            let Some(consumer) = consumer.upgrade() else { return };
            let line = seed_line("DRV", (event.bar.timestamp_ms - 1_759_930_080_000) / 60_000, 10.0);
            consumer.ingest_line(line.trim_end().as_bytes()).unwrap();
            if derived.try_recv().is_ok() {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let mut w = open_writer(&path);
    for i in 0..3 {
        write_line(&mut w, &seed_line("SPY", i, 10.0));
    }
    assert!(wait_until(LONG, || consumer.store().len("DRV") == 3));
    assert_eq!(seen_at_once.load(Ordering::Relaxed), 3, "each derived bar reached its subscriber inside the callback");
    drop(w);
    stop_and_join(feed);
}
