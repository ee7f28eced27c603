//! The real `barbridge run`: a source that restarted inside minutes the consumer already
//! journaled, and sends them again with other values as first reports, produces only conflicts.
//! Lines keep arriving, yet nothing is delivered: the feed must say STALE (`only_conflicts`),
//! not LIVE, until a bar is delivered again.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_barbridge");

fn spawn(dir: &Path) -> Proc {
    let child = Command::new(BIN)
        .args(["run", "--stale-after", "2", "--fifo"])
        .arg(dir.join("run/bars.fifo"))
        .arg("--status-file")
        .arg(dir.join("run/status.json"))
        .arg("--journal")
        .arg(dir.join("journal"))
        .arg("--fsync")
        .arg("always")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Proc(Some(child))
}

/// SIGINT, exit 0, and what it logged.
fn stop(mut proc: Proc) -> String {
    let mut child: Child = proc.0.take().unwrap();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    assert!(wait_until(LONG, || child.try_wait().unwrap().is_some()), "did not exit");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    stderr
}

/// `barbridge status` on `file` with `args`: (exit code, stdout).
fn status_of(file: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN).arg("status").arg("--status-file").arg(file).args(args).output().unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
}

#[test]
fn a_feed_of_only_conflicts_is_stale_until_a_bar_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = fifo_in(&dir);
    let status = dir.path().join("run/status.json");

    // The first consumer journals minutes 0..5.
    let consumer = spawn(dir.path());
    let mut w = open_writer(&fifo);
    for m in 0..5 {
        write_line(&mut w, &seed_line("SPY", m, 10.0));
    }
    drop(w);
    let accepted = || {
        let json: Option<serde_json::Value> = serde_json::from_str(&status_of(&status, &["--json"]).1).ok();
        json.and_then(|j| j["health"]["counters"]["bars_accepted"].as_u64())
    };
    assert!(wait_until(LONG, || accepted() == Some(5)), "{:?}", status_of(&status, &[]));
    let first = stop(consumer);
    assert!(first.contains("5 bars accepted"), "{first}");

    // A restarted consumer, and a restarted source that sends the same minutes with other values
    // (as first reports, not updated_bar), with heartbeats, for longer than --stale-after.
    let consumer = spawn(dir.path());
    let sending = Arc::new(AtomicBool::new(true));
    let source = {
        let (fifo, sending) = (fifo.clone(), sending.clone());
        std::thread::spawn(move || {
            let mut w = open_writer(&fifo);
            let mut i = 0;
            while sending.load(Ordering::Relaxed) {
                write_line(&mut w, &seed_line("SPY", i % 5, 20.0 + (i % 5) as f64));
                write_line(&mut w, "{\"type\":\"heartbeat\",\"ts_ms\":1759930085000}\n");
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            w
        })
    };
    assert!(
        wait_until(LONG, || status_of(&status, &["--check"]) == (Some(1), "STALE\n".to_owned())),
        "conflicts only for well over --stale-after 2, yet: {:?}",
        status_of(&status, &[])
    );
    let (code, text) = status_of(&status, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("state STALE") && text.contains("only conflicts"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&status_of(&status, &["--json"]).1).unwrap();
    assert_eq!(json["health"]["stale_reason"], "only_conflicts", "{json}");
    assert_eq!(json["health"]["counters"]["bars_accepted"], 0, "{json}");
    assert!(json["health"]["conflicts_since_delivered"].as_u64().unwrap() > 0, "{json}");

    // More conflicts and heartbeats do not revive it (several status periods).
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(status_of(&status, &["--check"]), (Some(1), "STALE\n".to_owned()));
        std::thread::sleep(Duration::from_millis(200));
    }

    // A new minute is delivered: LIVE again.
    sending.store(false, Ordering::Relaxed);
    let mut w = source.join().unwrap();
    write_line(&mut w, &seed_line("SPY", 5, 11.0));
    assert!(wait_until(LONG, || status_of(&status, &["--check"]) == (Some(0), "LIVE\n".to_owned())), "{:?}", status_of(&status, &[]));
    drop(w);

    let log = stop(consumer);
    assert_eq!(log.matches("every one was a conflict").count(), 1, "one error per episode: {log}");
    assert!(log.contains("send corrections as updated_bar"), "{log}");
    assert!(log.contains("feed recovered: a bar was delivered again"), "{log}");
    assert!(log.contains("1 bars accepted"), "{log}");
}
