//! NATS JetStream fan-out with a real `nats-server` (Debian package `nats-server`) on
//! 127.0.0.1 ports picked at run time, and real `barbridge run` processes: a publisher reading
//! the FIFO and journaling, subscribers with their own journals.
//!
//! Needs `nats-server` on PATH (`scripts/test_all.sh` installs it); without it these tests fail
//! with one sentence saying so.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use barbridge::pipe::writer::{FifoWriter, WriterOptions};
use barbridge::{Bar, BarKind, Source};
use common::*;

const BASE_MS: i64 = 1_759_930_080_000; // 2025-10-08 13:28 UTC

/// A free 127.0.0.1 port (bound, then released for the server to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `nats-server` child, killed when dropped.
struct NatsServer {
    child: Option<Child>,
    args: Vec<String>,
    port: u16,
    log: Arc<Mutex<String>>,
}

impl NatsServer {
    fn spawn(args: Vec<String>, port: u16) -> NatsServer {
        let mut server = NatsServer { child: None, args, port, log: Arc::default() };
        server.restart();
        server
    }

    /// A single JetStream server storing under `dir`.
    fn single(dir: &Path) -> NatsServer {
        let port = free_port();
        let args = vec!["-js".into(), "-a".into(), "127.0.0.1".into(), "-p".into(), port.to_string(), "-sd".into(), dir.display().to_string()];
        NatsServer::spawn(args, port)
    }

    /// (Re)start the process with the same arguments (same port, same storage).
    fn restart(&mut self) {
        let mut child = Command::new("nats-server")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run nats-server ({e}): install the Debian package nats-server (scripts/test_all.sh does)"));
        let stderr = child.stderr.take().unwrap();
        let log = self.log.clone();
        log.lock().unwrap().clear();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        self.child = Some(child);
        assert!(wait_until(LONG, || self.log.lock().unwrap().contains("Server is ready")), "nats-server did not start: {}", self.log.lock().unwrap());
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One consumer's files: journal and status under its own directory.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        Node { dir: tempfile::tempdir().unwrap() }
    }
    fn fifo(&self) -> PathBuf {
        fifo_in(&self.dir)
    }
    fn journal(&self) -> PathBuf {
        self.dir.path().join("journal")
    }
    fn status(&self) -> PathBuf {
        self.dir.path().join("run").join("status.json")
    }

    fn run(&self, extra: &[&str]) -> Proc {
        let child = Command::new(env!("CARGO_BIN_EXE_barbridge"))
            .arg("run")
            .arg("--fifo")
            .arg(self.fifo())
            .arg("--journal")
            .arg(self.journal())
            .arg("--status-file")
            .arg(self.status())
            .args(extra)
            .env("RUST_LOG", std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Proc(Some(child))
    }

    fn publisher(&self, url: &str, extra: &[&str]) -> Proc {
        let mut args = vec!["--publish", url];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn subscriber(&self, url: &str, extra: &[&str]) -> Proc {
        let mut args = vec!["--source", url];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// The journal's records in order: (symbol, minute) → versions.
    fn records(&self) -> HashMap<(String, i64), Vec<f64>> {
        let mut out: HashMap<(String, i64), Vec<f64>> = HashMap::new();
        let path = barbridge::journal::day_path(&self.journal(), barbridge::calendar::ny_date(BASE_MS));
        if path.exists() {
            barbridge::journal::read_records(&path, |symbol, bar, _| {
                out.entry((symbol.to_owned(), (bar.timestamp_ms - BASE_MS) / 60_000)).or_default().push(bar.close);
            })
            .unwrap();
        }
        out
    }

    /// The final close per (symbol, minute), corrections applied.
    fn finals(&self) -> HashMap<(String, i64), f64> {
        self.records().into_iter().map(|(k, v)| (k, *v.last().unwrap())).collect()
    }

    fn status_json(&self) -> serde_json::Value {
        std::fs::read_to_string(self.status()).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
    }
}

fn bar(minute: i64, close: f64) -> Bar {
    Bar {
        timestamp_ms: BASE_MS + minute * 60_000,
        open: close,
        high: close + 0.5,
        low: close - 0.5,
        close,
        volume: 100.0,
        vwap: None,
        trade_count: Some(3),
    }
}

fn writer(node: &Node) -> FifoWriter {
    let w = FifoWriter::new(node.fifo(), WriterOptions { heartbeat: None, ..WriterOptions::default() });
    w.start().unwrap();
    w
}

fn symbol(i: usize) -> String {
    format!("S{i:03}")
}

/// Send minutes `minutes` of `symbols` symbols; returns what was sent.
fn send(w: &FifoWriter, minutes: std::ops::Range<i64>, symbols: usize, expected: &mut HashMap<(String, i64), f64>) {
    for m in minutes {
        for i in 0..symbols {
            let close = 100.0 + i as f64 + m as f64 * 0.25;
            w.submit_bar(&symbol(i), bar(m, close), BarKind::Bar, None).unwrap();
            expected.insert((symbol(i), m), close);
        }
    }
}

/// Wait until `node`'s journal holds exactly `expected` (final values) with each version once.
fn assert_exact(node: &Node, expected: &HashMap<(String, i64), f64>, what: &str) {
    let done = wait_until(Duration::from_secs(120), || node.finals() == *expected);
    let finals = node.finals();
    let missing = expected.iter().filter(|(k, v)| finals.get(*k) != Some(v)).count();
    assert!(done, "{what}: {missing} of {} bars missing or wrong; {} extra", expected.len(), finals.len().saturating_sub(expected.len() - missing));
    for (key, versions) in node.records() {
        let mut unique = versions.clone();
        unique.dedup();
        assert_eq!(unique.len(), versions.len(), "{what}: {key:?} journaled twice: {versions:?}");
    }
}

/// A JetStream client for checks and for publishing foreign messages.
fn with_js<T, F: std::future::Future<Output = T>>(url: &str, f: impl FnOnce(async_nats::Client, async_nats::jetstream::Context) -> F) -> T {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client.clone());
        f(client, js).await
    })
}

fn stream_messages(url: &str) -> u64 {
    with_js(url, |_, js| async move {
        match js.get_stream("BARS").await {
            Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        }
    })
}

#[test]
fn two_engines_and_a_remote_subscriber_get_every_bar_once_with_corrections() {
    let store = tempfile::tempdir().unwrap();
    let server = NatsServer::single(store.path());
    let url = server.url();
    let source = Node::new();
    let _publisher = source.publisher(&url, &[]);
    let (a, b, remote) = (Node::new(), Node::new(), Node::new());
    let _a = a.subscriber(&url, &["--durable", "engine-a"]);
    let _b = b.subscriber(&url, &["--durable", "engine-b"]);
    let _remote = remote.subscriber(&url, &[]); // default durable name

    let w = writer(&source);
    let mut expected = HashMap::new();
    send(&w, 0..20, 5, &mut expected);
    // Corrections: an updated_bar, and a REST backfill bar that differs from the stream's.
    for i in 0..5 {
        w.submit_bar(&symbol(i), bar(3, 200.0 + i as f64), BarKind::UpdatedBar, None).unwrap();
        expected.insert((symbol(i), 3), 200.0 + i as f64);
        w.submit_bar(&symbol(i), bar(5, 300.0 + i as f64), BarKind::Bar, Some(Source::Backfill)).unwrap();
        expected.insert((symbol(i), 5), 300.0 + i as f64);
    }
    // Foreign payloads on the subjects: not JSON, not a bar, a bar under another symbol's subject.
    assert!(wait_until(LONG, || stream_messages(&url) > 0), "the publisher created the stream");
    with_js(&url, |client, _| async move {
        client.publish("bars.iex.S000", "not json".into()).await.unwrap();
        client.publish("bars.iex.S000", r#"{"type":"heartbeat"}"#.into()).await.unwrap();
        let other = format!(r#"{{"symbol":"QQQ","timestamp_ms":{BASE_MS},"open":1,"high":1,"low":1,"close":1,"volume":1}}"#);
        client.publish("bars.iex.S000", other.into()).await.unwrap();
        client.flush().await.unwrap();
    });
    send(&w, 20..22, 5, &mut expected);

    for (node, what) in [(&source, "publisher"), (&a, "engine a"), (&b, "engine b"), (&remote, "remote subscriber")] {
        assert_exact(node, &expected, what);
    }
    // 110 bars, 10 corrections, 3 foreign messages; each version once.
    assert!(wait_until(LONG, || stream_messages(&url) == 123), "stream holds {} messages, expected 123", stream_messages(&url));
    for (node, what) in [(&a, "engine a"), (&b, "engine b"), (&remote, "remote subscriber")] {
        assert!(
            wait_until(LONG, || node.status_json()["health"]["counters"]["rejects_total"] == 3),
            "{what}: the 3 foreign messages are counted as rejects: {}",
            node.status_json()["health"]["counters"]
        );
    }
    w.close(Duration::from_secs(5));
}

#[test]
fn a_second_subscriber_on_one_status_file_is_refused() {
    let store = tempfile::tempdir().unwrap();
    let server = NatsServer::single(store.path());
    let node = Node::new();
    let _first = node.subscriber(&server.url(), &[]);
    assert!(wait_until(LONG, || node.status().exists()));
    let out =
        Command::new(env!("CARGO_BIN_EXE_barbridge")).args(["run", "--source", &server.url(), "--status-file"]).arg(node.status()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is written by another consumer"), "{err}");
}

/// `barbridge run` with stderr collected (to wait for a log line).
fn run_logged(node: &Node, extra: &[&str]) -> (Proc, Arc<Mutex<String>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_barbridge"))
        .arg("run")
        .arg("--journal")
        .arg(node.journal())
        .arg("--status-file")
        .arg(node.status())
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log: Arc<Mutex<String>> = Arc::default();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    (Proc(Some(child)), log)
}

#[test]
fn a_subscriber_waits_for_the_publisher_to_create_the_stream() {
    let store = tempfile::tempdir().unwrap();
    let server = NatsServer::single(store.path());
    let url = server.url();
    let sub = Node::new();
    // Its --stream-memory is not the publisher's choice: it must not make the stream.
    let (_subscriber, log) = run_logged(&sub, &["--source", &url, "--durable", "early", "--stream-memory"]);
    assert!(wait_until(LONG, || log.lock().unwrap().contains("waiting for the publisher")), "{}", log.lock().unwrap());
    let exists = |url: &str| with_js(url, |_, js| async move { js.get_stream("BARS").await.is_ok() });
    assert!(!exists(&url), "the subscriber created the stream");

    let source = Node::new();
    let _publisher = source.publisher(&url, &[]);
    let w = writer(&source);
    let mut expected = HashMap::new();
    send(&w, 0..5, 3, &mut expected);
    assert_exact(&sub, &expected, "subscriber started before the stream existed");
    let storage = with_js(&url, |_, js| async move { js.get_stream("BARS").await.unwrap().info().await.unwrap().config.storage });
    assert_eq!(storage, async_nats::jetstream::stream::StorageType::File, "the publisher's settings made the stream");
    w.close(Duration::from_secs(5));
}

#[test]
fn a_second_subscriber_on_one_durable_is_refused() {
    let store = tempfile::tempdir().unwrap();
    let server = NatsServer::single(store.path());
    let url = server.url();
    let source = Node::new();
    let _publisher = source.publisher(&url, &[]);
    let (a, b) = (Node::new(), Node::new());
    let (mut first, _) = run_logged(&a, &["--source", &url, "--durable", "shared"]);
    let w = writer(&source);
    let mut expected = HashMap::new();
    send(&w, 0..2, 3, &mut expected);
    assert_exact(&a, &expected, "the first subscriber");

    // Its own status file and journal, the same durable: refused, whatever host it runs on.
    let (mut second, log) = run_logged(&b, &["--source", &url, "--durable", "shared"]);
    let child = second.0.as_mut().unwrap();
    assert!(wait_until(LONG, || child.try_wait().unwrap().is_some()), "the second subscriber on one durable keeps running");
    assert_eq!(child.try_wait().unwrap().unwrap().code(), Some(2), "{}", log.lock().unwrap());
    let err = log.lock().unwrap().clone();
    assert!(err.contains("durable consumer \"shared\" is in use") && err.contains("--durable"), "{err}");
    assert!(b.records().is_empty(), "the refused subscriber took no bar");

    // A stopped holder releases it at once: the next one with that name goes on where it stopped.
    let pid = first.0.as_ref().unwrap().id();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(wait_until(LONG, || first.0.as_mut().unwrap().try_wait().unwrap().is_some()));
    let lease = with_js(&url, |_, js| async move {
        let leases = js.get_stream(barbridge::nats::LEASE_STREAM).await.unwrap();
        leases.get_last_raw_message_by_subject(&barbridge::nats::lease_subject("BARS", "shared")).await.is_ok()
    });
    assert!(!lease, "a stopped subscriber releases its lease");
    let (_again, log) = run_logged(&a, &["--source", &url, "--durable", "shared"]);
    send(&w, 2..4, 3, &mut expected);
    assert_exact(&a, &expected, "the first subscriber, restarted");
    drop(log);
    w.close(Duration::from_secs(5));
}

#[test]
fn sigkilled_publisher_and_subscriber_end_exact() {
    let store = tempfile::tempdir().unwrap();
    let server = NatsServer::single(store.path());
    let url = server.url();
    let (source, sub) = (Node::new(), Node::new());
    let mut publisher = source.publisher(&url, &[]);
    let mut subscriber = sub.subscriber(&url, &["--durable", "flooded"]);
    let w = writer(&source);
    let mut expected = HashMap::new();
    let symbols = 50;
    let mut minute = 0;
    for round in 0..10 {
        // A flood of minutes, then SIGKILL both mid-stream and restart them.
        send(&w, minute..minute + 20, symbols, &mut expected);
        minute += 20;
        let target = (expected.len() / 2) as u64;
        assert!(wait_until(LONG, || stream_messages(&url) >= target), "round {round}: publishing goes on");
        drop(publisher);
        if round % 2 == 0 {
            // the subscriber dies while the publisher is down and while it is up
            drop(subscriber);
            subscriber = sub.subscriber(&url, &["--durable", "flooded"]);
        }
        publisher = source.publisher(&url, &[]);
        if round % 2 == 1 {
            drop(subscriber);
            subscriber = sub.subscriber(&url, &["--durable", "flooded"]);
        }
    }
    assert_exact(&source, &expected, "publisher's journal");
    assert!(
        wait_until(LONG, || stream_messages(&url) == expected.len() as u64),
        "the stream holds each bar once: {} messages for {} bars",
        stream_messages(&url),
        expected.len()
    );
    assert_exact(&sub, &expected, "subscriber's journal");
    drop((publisher, subscriber));
    w.close(Duration::from_secs(5));
}

/// The issue's case: NATS stopped for 30 s while bars stream in (one minute of 10 symbols a
/// second). The only long test of this file.
#[test]
fn nats_outage_of_30_s_is_a_visible_backlog_that_drains() {
    let store = tempfile::tempdir().unwrap();
    let mut server = NatsServer::single(store.path());
    let url = server.url();
    let source = Node::new();
    let _publisher = source.publisher(&url, &[]);
    let sub = Node::new();
    let _subscriber = sub.subscriber(&url, &["--durable", "outage"]);
    let w = writer(&source);
    let mut expected = HashMap::new();
    send(&w, 0..5, 10, &mut expected);
    assert!(wait_until(LONG, || stream_messages(&url) == 50));
    assert_exact(&sub, &expected, "before the outage");

    server.stop();
    let outage = std::time::Instant::now();
    let backlog = || source.status_json()["sections"]["publish"].clone();
    let mut minute = 5;
    let mut seen: Option<u64> = None;
    while outage.elapsed() < Duration::from_secs(30) {
        send(&w, minute..minute + 1, 10, &mut expected);
        minute += 1;
        let now = backlog();
        if now["connected"] == false {
            seen = seen.max(now["backlog_bytes"].as_u64());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let during = seen.unwrap_or(0);
    assert!(during > 0, "the backlog showed in the status during the outage: {}", backlog());
    assert_exact(&source, &expected, "ingest goes on while NATS is down");
    server.restart();
    let total = expected.len() as u64;
    assert!(wait_until(Duration::from_secs(60), || stream_messages(&url) == total), "drained: {} of {total}", stream_messages(&url));
    assert!(wait_until(LONG, || backlog()["backlog_bytes"] == 0 && backlog()["connected"] == true), "backlog back to 0: {}", backlog());
    assert_exact(&sub, &expected, "subscriber after the outage");
    w.close(Duration::from_secs(5));
}

#[test]
fn three_node_cluster_survives_losing_a_node() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let routes_arg = routes.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let mut nodes: Vec<NatsServer> = Vec::new();
    for i in 0..3 {
        let args = vec![
            "-js".into(),
            "-n".into(),
            format!("n{i}"),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            ports[i].to_string(),
            "-sd".into(),
            dirs[i].path().display().to_string(),
            "--cluster_name".into(),
            "bars".into(),
            "--cluster".into(),
            format!("nats://127.0.0.1:{}", routes[i]),
            "--routes".into(),
            routes_arg.clone(),
        ];
        let mut child = NatsServer { child: None, args, port: ports[i], log: Arc::default() };
        // The cluster is ready only once all three run: start them without waiting.
        let c = Command::new("nats-server").args(&child.args).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        child.child = Some(c.unwrap_or_else(|e| panic!("cannot run nats-server ({e}): install the Debian package nats-server")));
        nodes.push(child);
    }
    let all = ports.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let source = Node::new();
    let _publisher = source.publisher(&all, &["--stream-replicas", "3"]);
    let sub = Node::new();
    // The publisher makes the stream (three replicas); the subscriber waits for it.
    let _subscriber = sub.subscriber(&all, &["--durable", "clustered"]);
    let w = writer(&source);
    let mut expected = HashMap::new();
    send(&w, 0..10, 5, &mut expected);
    assert_exact(&sub, &expected, "before the node is lost");

    nodes[0].stop();
    send(&w, 10..20, 5, &mut expected);
    assert_exact(&sub, &expected, "after node n0 is killed");
    let survivor = format!("nats://127.0.0.1:{}", ports[1]);
    assert_eq!(stream_messages(&survivor), 100, "the replicated stream holds each bar once");
    w.close(Duration::from_secs(5));
}
