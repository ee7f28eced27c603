//! Journal across restarts of the real binary: SIGKILL loses nothing acknowledged, a restart
//! resumes warm, torn tails are survived, `gaps` and `replay` read the same files.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use barbridge::calendar::{ny_date, session_on};
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_barbridge");

struct Running(Child);
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(dir: &Path) -> Running {
    Running(
        Command::new(BIN)
            .args(["run", "--fifo"])
            .arg(dir.join("run/bars.fifo"))
            .arg("--status-file")
            .arg(dir.join("run/status.json"))
            .arg("--journal")
            .arg(dir.join("journal"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

fn status_json(dir: &Path) -> serde_json::Value {
    std::fs::read_to_string(dir.join("run/status.json")).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(serde_json::Value::Null)
}

/// Today's session (or a recent one) so the journal file is "today's".
fn line_today(symbol: &str, i: i64, close: f64, kind: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let day_start = barbridge::calendar::ny_day_bounds(now).0;
    let ts = day_start + 60_000 * (9 * 60 + 30 + i);
    format!(
        "{{\"type\":\"{kind}\",\"symbol\":\"{symbol}\",\"timestamp_ms\":{ts},\"open\":{close},\"high\":{close},\"low\":{close},\"close\":{close},\"volume\":1}}\n"
    )
}

#[test]
fn sigkill_then_restart_resumes_warm_with_every_bar_and_correction() {
    let dir = tempfile::tempdir().unwrap();
    let r = spawn(dir.path());
    let fifo = dir.path().join("run/bars.fifo");
    let mut w = open_writer(&fifo);
    for i in 0..50 {
        write_line(&mut w, &line_today("SPY", i, 10.0, "bar"));
    }
    write_line(&mut w, &line_today("SPY", 7, 11.0, "updated_bar"));
    drop(w);
    assert!(wait_until(LONG, || status_json(dir.path())["journal"]["records_written"] == 51));
    kill(Pid::from_raw(r.0.id() as i32), Signal::SIGKILL).unwrap();
    drop(r);
    std::fs::remove_file(dir.path().join("run/status.json")).unwrap(); // only the new process's counts

    // A torn record, as a power loss would leave it.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let path = barbridge::consumer::journal::day_path(&dir.path().join("journal"), ny_date(now));
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut f, b"{\"symbol\":\"SPY\",\"timest").unwrap();
    drop(f);

    let r = spawn(dir.path());
    assert!(wait_until(LONG, || status_json(dir.path())["stored"]["SPY"] == 50), "{}", status_json(dir.path()));
    let mut w = open_writer(&fifo);
    write_line(&mut w, &line_today("SPY", 49, 10.0, "bar")); // duplicate after restart
    write_line(&mut w, &line_today("SPY", 50, 10.0, "bar"));
    drop(w);
    assert!(wait_until(LONG, || status_json(dir.path())["journal"]["records_written"] == 1));
    let s = status_json(dir.path());
    assert_eq!(s["health"]["counters"]["duplicates"], 1, "{s}");
    assert_eq!(s["stored"]["SPY"], 51);
    kill(Pid::from_raw(r.0.id() as i32), Signal::SIGINT).unwrap();

    // The journal: 51 bars + 1 correction, the torn tail cut off.
    let mut bars = std::collections::BTreeMap::new();
    let report = barbridge::consumer::journal::read_records(&path, |_, bar, _| {
        bars.insert(bar.timestamp_ms, bar.close);
    })
    .unwrap();
    assert_eq!((report.records, report.corrupt, report.torn_tail), (52, 0, false));
    assert_eq!(bars.len(), 51);
    assert_eq!(bars.values().filter(|c| **c == 11.0).count(), 1, "correction applied");
}

#[test]
fn gaps_and_replay_read_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let date = chrono::NaiveDate::from_ymd_opt(2025, 10, 8).unwrap();
    let s = session_on(date).unwrap().unwrap();
    let mut text = String::new();
    for i in [0, 1, 2, 5, 6, 389] {
        text.push_str(&format!(
            "{{\"symbol\":\"SPY\",\"timestamp_ms\":{},\"open\":1,\"high\":1,\"low\":1,\"close\":1,\"volume\":1}}\n",
            s.open_ms + i * 60_000
        ));
    }
    text.push_str(&format!(
        "{{\"symbol\":\"SH\",\"timestamp_ms\":{},\"open\":1,\"high\":1,\"low\":1,\"close\":1,\"volume\":1}}\n",
        s.open_ms + 100 * 60_000
    ));
    std::fs::create_dir_all(&journal).unwrap();
    std::fs::write(barbridge::consumer::journal::day_path(&journal, date), &text).unwrap();
    let out = Command::new(BIN).args(["gaps", "--date", "2025-10-08", "--json", "--journal"]).arg(&journal).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let spy = v["symbols"].as_array().unwrap().iter().find(|g| g["symbol"] == "SPY").unwrap();
    assert_eq!(spy["bars"], 6);
    assert_eq!(spy["holes"][0]["minutes"], 2);
    assert_eq!(spy["holes"][1]["minutes"], 382);
    let sh = v["symbols"].as_array().unwrap().iter().find(|g| g["symbol"] == "SH").unwrap();
    assert_eq!((sh["before_first"].as_i64(), sh["after_last"].as_i64()), (Some(100), Some(289)));
    let human = Command::new(BIN).args(["gaps", "--date", "2025-10-08", "--journal"]).arg(&journal).output().unwrap();
    let human = String::from_utf8(human.stdout).unwrap();
    assert!(human.contains("hole at 09:33 EDT: 2 minute(s)"), "{human}");
    let weekend = Command::new(BIN).args(["gaps", "--date", "2025-10-11", "--journal"]).arg(&journal).output().unwrap();
    assert!(String::from_utf8(weekend.stdout).unwrap().contains("not a NYSE trading day"));

    let out = Command::new(BIN).args(["replay", "--echo"]).arg(barbridge::consumer::journal::day_path(&journal, date)).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 7);
}

#[test]
fn a_restarted_consumer_does_not_journal_another_days_bar_twice() {
    use barbridge::consumer::journal::{FsyncPolicy, Journal};
    use barbridge::{BarKind, Consumer};
    let dir = tempfile::tempdir().unwrap();
    // A bar of 2025-10-08 (not "today"), journaled by a first process.
    let line = br#"{"symbol":"SPY","timestamp_ms":1759930080000,"open":1,"high":1,"low":1,"close":1,"volume":1}"#;
    {
        let consumer = Consumer::builder().journal(Journal::open(dir.path(), FsyncPolicy::Never).unwrap()).build().unwrap();
        consumer.resume_from_journal(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64);
        consumer.ingest_line(line).unwrap();
        consumer.flush();
    }
    // The restarted process gets the same bar again (sidecar re-send after a broken pipe).
    let consumer = Consumer::builder().journal(Journal::open(dir.path(), FsyncPolicy::Never).unwrap()).build().unwrap();
    consumer.resume_from_journal(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64);
    assert_eq!(consumer.ingest_line(line).unwrap(), barbridge::Ingested::Bar(barbridge::Inserted::Duplicate));
    consumer.flush();
    let path = barbridge::consumer::journal::day_path(dir.path(), ny_date(1_759_930_080_000));
    let mut n = 0;
    barbridge::consumer::journal::read_records(&path, |_, _, kind| {
        assert_eq!(kind, BarKind::Bar);
        n += 1;
    })
    .unwrap();
    assert_eq!(n, 1, "the bar was journaled twice");
}
