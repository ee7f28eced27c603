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

use barbridge::sidecar::writer::{FifoWriter, WriterOptions};
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

    /// A JetStream server storing under `dir`, with `settings` (nats-server config syntax:
    /// authorization, tls) added to its config file.
    fn configured(dir: &Path, settings: &str) -> NatsServer {
        let port = free_port();
        let conf = dir.join("server.conf");
        let js = dir.join("js");
        std::fs::write(&conf, format!("listen: 127.0.0.1:{port}\njetstream {{ store_dir: {js:?} }}\n{settings}\n")).unwrap();
        NatsServer::spawn(vec!["-c".into(), conf.display().to_string()], port)
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
        let path = barbridge::consumer::journal::day_path(&self.journal(), barbridge::calendar::ny_date(BASE_MS));
        if path.exists() {
            barbridge::consumer::journal::read_records(&path, |symbol, bar, _| {
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
        // S000's bar on a subject that only ends in S000: not its subject.
        let minute = BASE_MS + 30 * 60_000;
        let evil = format!(r#"{{"symbol":"S000","timestamp_ms":{minute},"open":1,"high":1,"low":1,"close":1,"volume":1}}"#);
        client.publish("bars.iex.EVIL.S000", evil.into()).await.unwrap();
        client.flush().await.unwrap();
    });
    send(&w, 20..22, 5, &mut expected);

    for (node, what) in [(&source, "publisher"), (&a, "engine a"), (&b, "engine b"), (&remote, "remote subscriber")] {
        assert_exact(node, &expected, what);
    }
    // 110 bars, 10 corrections, 4 foreign messages; each version once.
    assert!(wait_until(LONG, || stream_messages(&url) == 124), "stream holds {} messages, expected 124", stream_messages(&url));
    for (node, what) in [(&a, "engine a"), (&b, "engine b"), (&remote, "remote subscriber")] {
        assert!(
            wait_until(LONG, || node.status_json()["health"]["counters"]["rejects_total"] == 4),
            "{what}: the 4 foreign messages are counted as rejects: {}",
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
    run_env(node, extra, &[])
}

/// `barbridge run` on `node`'s FIFO, journal and status file, with `env` added and stderr collected.
fn run_env(node: &Node, extra: &[&str], env: &[(&str, &str)]) -> (Proc, Arc<Mutex<String>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_barbridge"))
        .arg("run")
        .arg("--fifo")
        .arg(node.fifo())
        .arg("--journal")
        .arg(node.journal())
        .arg("--status-file")
        .arg(node.status())
        .args(extra)
        .envs(env.iter().copied())
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

/// A subscriber SIGKILLed three times in the middle of a 20,000-bar flood (prefetched
/// messages in hand, a chunk ingested and not yet acknowledged) and restarted each time stores
/// every bar once.
#[test]
fn subscriber_sigkilled_mid_flood_stores_every_bar_once() {
    let store = tempfile::tempdir().unwrap();
    let server = NatsServer::single(store.path());
    let url = server.url();
    let (source, sub) = (Node::new(), Node::new());
    let _publisher = source.publisher(&url, &[]);
    let mut subscriber = sub.subscriber(&url, &["--durable", "killed"]);
    let w = writer(&source);
    let mut expected = HashMap::new();
    send(&w, 0..200, 100, &mut expected);
    let journaled = |node: &Node| node.records().values().map(Vec::len).sum::<usize>();
    for kill in 1..=3 {
        // SIGKILL once it holds part of the flood, then restart on the same durable.
        let target = expected.len() * kill / 4;
        assert!(wait_until(LONG, || journaled(&sub) >= target), "kill {kill}: the subscriber journals ({} of {target})", journaled(&sub));
        drop(subscriber);
        subscriber = sub.subscriber(&url, &["--durable", "killed"]);
    }
    assert_exact(&source, &expected, "publisher's journal");
    assert_exact(&sub, &expected, "subscriber killed mid-flood");
    drop(subscriber);
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

// ------------------------------------------------------------------ credentials and TLS

/// A 0600 file holding `text`.
fn secret_file(dir: &Path, name: &str, text: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("{text}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.display().to_string()
}

/// Wait for `proc` to exit; its code.
fn exit_code(proc: &mut Proc) -> Option<i32> {
    let child = proc.0.as_mut().unwrap();
    assert!(wait_until(LONG, || child.try_wait().unwrap().is_some()), "still running");
    child.try_wait().unwrap().unwrap().code()
}

/// Bars through a publisher and a subscriber started with these flags and environments.
fn round_trip(
    pub_args: &[&str],
    pub_env: &[(&str, &str)],
    sub_args: &[&str],
    sub_env: &[(&str, &str)],
) -> (Node, Arc<Mutex<String>>, Arc<Mutex<String>>) {
    let (source, sub) = (Node::new(), Node::new());
    let (_publisher, pub_log) = run_env(&source, pub_args, pub_env);
    let (_subscriber, sub_log) = run_env(&sub, sub_args, sub_env);
    // The bars are of an earlier day: written before the publisher's first start, they would be
    // taken as history journaled before publishing was turned on.
    assert!(wait_until(LONG, || source.journal().join(barbridge::nats::PUBLISH_CURSOR_FILE).exists()), "{}", pub_log.lock().unwrap());
    let w = writer(&source);
    let mut expected = HashMap::new();
    send(&w, 0..3, 2, &mut expected);
    let arrived = wait_until(Duration::from_secs(60), || sub.finals() == expected);
    assert!(arrived, "no bars through NATS\npublisher: {}\nsubscriber: {}", pub_log.lock().unwrap(), sub_log.lock().unwrap());
    assert_exact(&sub, &expected, "subscriber");
    w.close(Duration::from_secs(5));
    (source, pub_log, sub_log)
}

#[test]
fn user_and_password_from_a_file_or_the_url_in_the_environment_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let users = r#"authorization { users = [ {user: pub, password: "pw-SECRET-pub"}, {user: sub, password: "pw-SECRET-sub"} ] }"#;
    let server = NatsServer::configured(dir.path(), users);
    let port = server.port;
    let url = server.url();
    let with_password = format!("nats://pub:pw-SECRET-pub@127.0.0.1:{port}");
    let password_file = secret_file(dir.path(), "sub.password", "pw-SECRET-sub");
    let (source, pub_log, sub_log) = round_trip(
        &[],
        &[("BARBRIDGE_PUBLISH", &with_password)],
        &["--source", &url, "--nats-user", "sub", "--nats-password-file", &password_file],
        &[],
    );
    let status = std::fs::read_to_string(source.status()).unwrap();
    assert!(status.contains(&format!("nats://pub:***@127.0.0.1:{port}")), "{status}");
    for text in [status, pub_log.lock().unwrap().clone(), sub_log.lock().unwrap().clone()] {
        assert!(!text.contains("SECRET"), "a password is shown: {text}");
    }

    // A wrong password: one sentence naming the server, exit 2, no retry loop.
    let wrong = secret_file(dir.path(), "wrong.password", "pw-WRONG");
    let (mut refused, log) = run_env(&Node::new(), &["--source", &url, "--nats-user", "sub", "--nats-password-file", &wrong], &[]);
    assert_eq!(exit_code(&mut refused), Some(2), "{}", log.lock().unwrap());
    let err = log.lock().unwrap().clone();
    assert!(err.contains(&format!("NATS {url} refused the connection as user \"sub\" (authorization violation")), "{err}");
    assert!(!err.contains("WRONG"), "{err}");
    // A password typed on the command line is refused before anything starts (ps shows it).
    let (mut typed, log) = run_env(&Node::new(), &["--source", &format!("nats://sub:pw-SECRET-sub@127.0.0.1:{port}")], &[]);
    assert_eq!(exit_code(&mut typed), Some(2));
    let err = log.lock().unwrap().clone();
    assert!(err.contains("on the command line") && err.contains("BARBRIDGE_SOURCE") && !err.contains("SECRET"), "{err}");
}

#[test]
fn token_and_nkey_authenticate() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::configured(dir.path(), r#"authorization { token: "tok-SECRET" }"#);
    let url = server.url();
    let token_file = secret_file(dir.path(), "token", "tok-SECRET");
    round_trip(&["--publish", &url], &[("BARBRIDGE_NATS_TOKEN", "tok-SECRET")], &["--source", &url, "--nats-token-file", &token_file], &[]);

    let dir = tempfile::tempdir().unwrap();
    let (publisher, subscriber) = (nkeys::KeyPair::new_user(), nkeys::KeyPair::new_user());
    let users = format!("authorization {{ users = [ {{nkey: {}}}, {{nkey: {}}} ] }}", publisher.public_key(), subscriber.public_key());
    let server = NatsServer::configured(dir.path(), &users);
    let url = server.url();
    let seed_file = secret_file(dir.path(), "sub.nk", &subscriber.seed().unwrap());
    round_trip(
        &["--publish", &url],
        &[("BARBRIDGE_NATS_NKEY", &publisher.seed().unwrap())],
        &["--source", &url, "--nats-nkey-file", &seed_file],
        &[],
    );
    // An nkey the server does not know is refused in one sentence.
    let stranger = secret_file(dir.path(), "stranger.nk", &nkeys::KeyPair::new_user().seed().unwrap());
    let (mut refused, log) = run_env(&Node::new(), &["--source", &url, "--nats-nkey-file", &stranger], &[]);
    assert_eq!(exit_code(&mut refused), Some(2), "{}", log.lock().unwrap());
    assert!(log.lock().unwrap().contains("refused the connection as nkey U"), "{}", log.lock().unwrap());
}

/// `openssl` in `dir`: a CA, a server certificate for 127.0.0.1 and a client certificate, both
/// signed by it; and a second CA nobody trusts.
fn make_certs(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let ssl = |args: &str| {
        let out = Command::new("openssl").args(args.split(' ')).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&out.stderr));
    };
    // Extensions make them X.509 v3 (webpki refuses v1 certificates).
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for ca in ["ca", "other-ca"] {
        ssl(&format!("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN={ca} -keyout {ca}.key -out {ca}.pem"));
    }
    for name in ["server", "client"] {
        ssl(&format!("req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN={name} -keyout {name}.key -out {name}.csr"));
        ssl(&format!("x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out {name}.pem -extfile {name}.ext"));
        std::fs::set_permissions(dir.join(format!("{name}.key")), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

#[test]
fn tls_with_a_ca_and_a_client_certificate_and_an_untrusted_server_refused() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let p = |name: &str| dir.path().join(name).display().to_string();
    let tls = format!("tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, verify: true }}", p("server.pem"), p("server.key"), p("ca.pem"));
    let server = NatsServer::configured(dir.path(), &tls);
    let url = format!("tls://127.0.0.1:{}", server.port);
    let (ca, cert, key) = (p("ca.pem"), p("client.pem"), p("client.key"));
    let flags = ["--nats-ca", &ca, "--nats-cert", &cert, "--nats-key", &key];
    let sub_args: Vec<&str> = ["--source", &url].into_iter().chain(flags).collect();
    round_trip(
        &[],
        &[("BARBRIDGE_PUBLISH", &url), ("BARBRIDGE_NATS_CA", &ca), ("BARBRIDGE_NATS_CERT", &cert), ("BARBRIDGE_NATS_KEY", &key)],
        &sub_args,
        &[],
    );

    // A server certificate from a CA we do not trust: refused, one sentence, exit 2.
    let other = p("other-ca.pem");
    let check = |extra: &[&str]| Command::new(env!("CARGO_BIN_EXE_barbridge")).args(["nats-check", &url]).args(extra).output().unwrap();
    let out = check(&["--nats-ca", &other, "--nats-cert", &cert, "--nats-key", &key]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains(&format!("FAIL  NATS {url} refused the TLS handshake")) && text.contains("certificate"), "{text}");
    // The right CA, no client certificate: the server refuses us.
    let out = check(&["--nats-ca", &ca]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    let (mut refused, log) = run_env(&Node::new(), &["--source", &url, "--nats-ca", &other], &[]);
    assert_eq!(exit_code(&mut refused), Some(2), "{}", log.lock().unwrap());
    assert!(log.lock().unwrap().contains("refused the TLS handshake"), "{}", log.lock().unwrap());
}

#[test]
fn a_publisher_denied_the_stream_or_the_subjects_exits_2_in_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let users = r#"authorization { users = [
        {user: nojs, password: a, permissions: {publish: ["bars.>"], subscribe: ["_INBOX.>"]}},
        {user: nobars, password: b, permissions: {publish: ["$JS.API.>"], subscribe: ["_INBOX.>"]}} ] }"#;
    let server = NatsServer::configured(dir.path(), users);
    let port = server.port;
    for (user, refused) in [("nojs", "Publish to \"$JS.API.STREAM"), ("nobars", "Publish to \"bars.iex.S000\"")] {
        let node = Node::new();
        let url = format!("nats://{user}:{}@127.0.0.1:{port}", if user == "nojs" { "a" } else { "b" });
        let (mut publisher, log) = run_env(&node, &[], &[("BARBRIDGE_PUBLISH", &url)]);
        let w = writer(&node);
        w.submit_bar("S000", bar(0, 1.0), BarKind::Bar, None).unwrap();
        assert_eq!(exit_code(&mut publisher), Some(2), "{user}: {}", log.lock().unwrap());
        let err = log.lock().unwrap().clone();
        let sentence = format!("barbridge: NATS nats://{user}:***@127.0.0.1:{port} refused a request: Permissions Violation for {refused}");
        assert!(err.contains(&sentence), "{user}: {err}");
        w.close(Duration::from_secs(1));
    }
}
