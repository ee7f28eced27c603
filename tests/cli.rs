//! The real `barbridge` binary: echo, status, signals, config errors.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};


use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_barbridge");

struct Running {
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(dir: &Path, extra: &[&str]) -> Running {
    let child = Command::new(BIN)
        .args(["run", "--fifo"])
        .arg(dir.join("run/bars.fifo"))
        .arg("--status-file")
        .arg(dir.join("run/status.json"))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Running { child }
}

fn wait_exit(r: &mut Running) -> std::process::ExitStatus {
    let mut status = None;
    assert!(wait_until(LONG, || {
        status = r.child.try_wait().unwrap();
        status.is_some()
    }), "process did not exit");
    status.unwrap()
}

#[test]
fn echo_prints_each_bar_once_and_sigint_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = spawn(dir.path(), &["--echo"]);
    let fifo = dir.path().join("run/bars.fifo");
    for i in 0..5 {
        // A shell loop echoing lines: one writer session per line.
        let mut w = open_writer(&fifo);
        write_line(&mut w, &seed_line("SPY", i, 10.0));
        write_line(&mut w, &seed_line("SPY", i, 10.0)); // duplicate: not echoed again
    }
    let mut stdout = BufReader::new(r.child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..5 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        lines.push(line);
    }
    assert!(lines[0].starts_with("{\"symbol\":\"SPY\",\"timestamp_ms\":1759930080000,"), "{}", lines[0]);
    kill(Pid::from_raw(r.child.id() as i32), Signal::SIGINT).unwrap();
    assert_eq!(wait_exit(&mut r).code(), Some(0));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest, "", "a duplicate was echoed");
    let mut stderr = String::new();
    std::io::Read::read_to_string(r.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("5 bars accepted") && stderr.contains("5 duplicates"), "{stderr}");
}

#[test]
fn sigterm_with_no_writer_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = spawn(dir.path(), &[]);
    assert!(wait_until(LONG, || dir.path().join("run/status.json").exists()));
    kill(Pid::from_raw(r.child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(wait_exit(&mut r).code(), Some(0));
}

#[test]
fn status_shows_symbols_rejects_and_staleness() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = spawn(dir.path(), &["--stale-after", "0.5"]);
    let fifo = dir.path().join("run/bars.fifo");
    let mut w = open_writer(&fifo);
    write_line(&mut w, &seed_line("SPXL", 1, 10.0));
    write_line(&mut w, "garbage\n");
    write_line(&mut w, "{\"type\":\"status\",\"state\":\"reconnecting\",\"detail\":\"close code 1000\"}\n");
    drop(w);
    let status = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("status")
            .arg("--status-file")
            .arg(dir.path().join("run/status.json"))
            .args(args)
            .output()
            .unwrap();
        // Before the first write of the status file this fails; the polls below retry.
        if out.status.success() { String::from_utf8(out.stdout).unwrap() } else { String::new() }
    };
    assert!(wait_until(LONG, || status(&[]).contains("STALE")), "{}", status(&[]));
    let text = status(&[]);
    assert!(text.contains("SPXL"), "{text}");
    assert!(text.contains("malformed_json=1"), "{text}");
    assert!(text.contains("1 reconnects"), "{text}");
    assert!(text.contains("sidecar   reconnecting: close code 1000"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&status(&["--json"])).unwrap();
    assert_eq!(json["health"]["counters"]["bars_accepted"], 1);
    kill(Pid::from_raw(r.child.id() as i32), Signal::SIGINT).unwrap();
    assert_eq!(wait_exit(&mut r).code(), Some(0));
    let mut stderr = String::new();
    std::io::Read::read_to_string(r.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(stderr.matches("feed stale").count(), 1, "stale logged once per episode: {stderr}");
}

#[test]
fn bad_paths_exit_2_with_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("regular");
    std::fs::write(&file, "x").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    for (path, expect) in [(&file, "is a regular file, not a FIFO"), (&link, "is a symbolic link")] {
        let out = Command::new(BIN).args(["run", "--fifo"]).arg(path).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(expect), "{stderr}");
        assert_eq!(stderr.lines().filter(|l| l.starts_with("barbridge:")).count(), 1, "{stderr}");
    }
    let out = Command::new(BIN).args(["run", "--stale-after", "-1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN).args(["status", "--status-file"]).arg(dir.path().join("nope.json")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr).unwrap().contains("cannot read status file"));
}

#[test]
fn symbols_filter_keeps_other_symbols_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = spawn(dir.path(), &["--symbols", "SH,SDS", "--echo"]);
    let fifo = dir.path().join("run/bars.fifo");
    let mut w = open_writer(&fifo);
    write_line(&mut w, &seed_line("SPY", 1, 10.0));
    write_line(&mut w, &seed_line("SH", 1, 10.0));
    drop(w);
    let mut stdout = BufReader::new(r.child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("\"symbol\":\"SH\""), "{line}");
    kill(Pid::from_raw(r.child.id() as i32), Signal::SIGINT).unwrap();
    assert_eq!(wait_exit(&mut r).code(), Some(0));
}

#[test]
fn once_mode_exits_after_the_writer_and_its_final_status_counts_every_bar() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = spawn(dir.path(), &["--once"]);
    let fifo = dir.path().join("run/bars.fifo");
    let mut w = open_writer(&fifo);
    let mut block = String::new();
    for i in 0..20_000 {
        block.push_str(&seed_line(if i % 2 == 0 { "SPY" } else { "SH" }, i / 2, 10.0));
        if block.len() > 3500 {
            write_line(&mut w, &block);
            block.clear();
        }
    }
    write_line(&mut w, &block);
    drop(w);
    assert_eq!(wait_exit(&mut r).code(), Some(0));
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/status.json")).unwrap()).unwrap();
    assert_eq!(status["health"]["counters"]["bars_accepted"], 20_000, "the final status must include the last bars");
}

#[test]
fn a_second_reader_of_the_same_fifo_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("run/bars.fifo");
    let _first = spawn(dir.path(), &[]);
    assert!(wait_until(LONG, || fifo.with_file_name("bars.fifo.ack").exists()), "first consumer up");
    let out = Command::new(BIN).args(["run", "--fifo"]).arg(&fifo).arg("--status-file").arg(dir.path().join("other.json")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already has a reader") && err.contains(&format!("pid {}", _first.child.id())), "{err}");
}

#[test]
fn echo_into_a_stdout_nobody_reads_never_stalls_ingest_or_sigint() {
    let dir = tempfile::tempdir().unwrap();
    // stdout is a pipe that is never read: 64 KiB fill it.
    let mut r = spawn(dir.path(), &["--echo"]);
    let fifo = dir.path().join("run/bars.fifo");
    let mut w = open_writer(&fifo);
    for i in 0..5_000 {
        write_line(&mut w, &seed_line("SPY", i, 10.0));
    }
    drop(w);
    let status = dir.path().join("run/status.json");
    let accepted = || {
        std::fs::read_to_string(&status)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["health"]["counters"]["bars_accepted"].as_u64())
    };
    assert!(wait_until(LONG, || accepted() == Some(5_000)), "all bars ingested: {:?}", accepted());
    kill(Pid::from_raw(r.child.id() as i32), Signal::SIGINT).unwrap();
    assert!(wait_exit(&mut r).success(), "SIGINT stops it although stdout is blocked");
}
