//! A bar from the future published straight into the NATS stream (as a raw client can) is
//! refused by every `--source nats://` subscriber, counted `rejects{future_bar}`, and gets no
//! journal day file (issue 23, "Bad input"). Real `nats-server` and `barbridge run` processes.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(dir: &std::path::Path, extra: &[&str]) -> Killed {
    let child = Command::new(env!("CARGO_BIN_EXE_barbridge"))
        .arg("run")
        .arg("--fifo")
        .arg(dir.join("run/bars.fifo"))
        .arg("--journal")
        .arg(dir.join("journal"))
        .arg("--status-file")
        .arg(dir.join("run/status.json"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Killed(child)
}

fn counters(dir: &std::path::Path) -> serde_json::Value {
    std::fs::read_to_string(dir.join("run/status.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .map(|v| v["health"]["counters"].clone())
        .unwrap_or_default()
}

fn line(ts: i64) -> String {
    format!(r#"{{"symbol":"SPY","timestamp_ms":{ts},"open":1,"high":1,"low":1,"close":1,"volume":1}}"#)
}

#[test]
fn a_bar_from_the_future_published_into_the_stream_is_refused_by_subscribers() {
    let store = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run nats-server ({e}): install the Debian package nats-server (scripts/test_all.sh does)"));
    let _server = Killed(server);
    let url = format!("nats://127.0.0.1:{port}");
    let (source, sub) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _publisher = run(source.path(), &["--publish", &url]);
    let _subscriber = run(sub.path(), &["--source", &url]);

    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64 / 60_000 * 60_000;
    // One true bar through the publisher's FIFO: the stream exists and the subscriber is live.
    let mut w = open_writer(&source.path().join("run/bars.fifo"));
    write_line(&mut w, &format!("{}\n", line(now - 120_000)));
    assert!(wait_until(LONG, || counters(sub.path())["bars_accepted"] == 1), "{}", counters(sub.path()));
    // A raw client publishes into the stream: 2095, a minute past the skew, one inside it. `now`
    // is rounded down to its minute, so +7 min is at least 6 min ahead when published: a full
    // minute past the 5 min skew, whatever delay a loaded machine adds before the subscriber
    // checks it (+6 min left as little as a second, and failed once so). The exact boundary is
    // tests/future_bars.rs's, on a manual clock.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(&url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        for ts in [3_944_905_200_000, now + 420_000, now - 60_000] {
            js.publish("bars.iex.SPY", line(ts).into()).await.unwrap().await.unwrap();
        }
    });
    assert!(
        wait_until(LONG, || counters(sub.path())["rejects"]["future_bar"] == 2 && counters(sub.path())["bars_accepted"] == 2),
        "{}",
        counters(sub.path())
    );
    std::thread::sleep(Duration::from_millis(300)); // the journal flushes after each chunk
    let files: Vec<String> =
        std::fs::read_dir(sub.path().join("journal")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(files.iter().all(|f| !f.contains("2095")), "{files:?}");
    // Today's file (and yesterday's, when the two bars straddle New York midnight), none for 2095.
    assert!((1..=2).contains(&files.iter().filter(|f| f.ends_with(".jsonl")).count()), "{files:?}");
}
