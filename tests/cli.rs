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
    assert!(
        wait_until(LONG, || {
            status = r.child.try_wait().unwrap();
            status.is_some()
        }),
        "process did not exit"
    );
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

/// `barbridge status` on `file`: (exit code, stdout).
fn status_of(file: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN).arg("status").arg("--status-file").arg(file).args(args).output().unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
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
    let file = dir.path().join("run/status.json");
    // Stale: exit code 1 (before the first write of the status file it is 2; the poll retries).
    assert!(wait_until(LONG, || status_of(&file, &[]).1.contains("STALE")), "{:?}", status_of(&file, &[]));
    let (code, text) = status_of(&file, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("SPXL"), "{text}");
    assert!(text.contains("2025-10-08 09:29 EDT"), "last bar in New York time with the zone: {text}");
    assert!(text.contains("malformed_json=1"), "{text}");
    assert!(text.contains("1 reconnects"), "{text}");
    assert!(text.contains("sidecar   reconnecting: close code 1000"), "{text}");
    let (code, json) = status_of(&file, &["--json"]);
    assert_eq!(code, Some(1));
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["health"]["counters"]["bars_accepted"], 1);
    assert_eq!(json["refresh_ms"], 1000);
    kill(Pid::from_raw(r.child.id() as i32), Signal::SIGINT).unwrap();
    assert_eq!(wait_exit(&mut r).code(), Some(0));
    let mut stderr = String::new();
    std::io::Read::read_to_string(r.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(stderr.matches("feed stale").count(), 1, "stale logged once per episode: {stderr}");
}

/// Exit codes a monitor can use: 1 waiting, 0 live, 2 once the consumer is gone (and then the
/// report never says `state LIVE`), 2 for a file that cannot be read.
#[test]
fn status_exit_codes_follow_the_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run/status.json");
    let mut r = spawn(dir.path(), &[]);
    assert!(wait_until(LONG, || status_of(&file, &[]).0 == Some(1)), "waiting: {:?}", status_of(&file, &[]));
    assert!(status_of(&file, &[]).1.contains("state WAITING"));
    let mut w = open_writer(&dir.path().join("run/bars.fifo"));
    write_line(&mut w, &seed_line("SPY", 1, 10.0));
    assert!(wait_until(LONG, || status_of(&file, &[]).0 == Some(0)), "live: {:?}", status_of(&file, &[]));
    assert!(status_of(&file, &[]).1.contains("state LIVE"));
    assert_eq!(status_of(&file, &["--json"]).0, Some(0));
    drop(w);
    kill(Pid::from_raw(r.child.id() as i32), Signal::SIGINT).unwrap();
    assert_eq!(wait_exit(&mut r).code(), Some(0));
    let (code, text) = status_of(&file, &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("NOT RUNNING (last reported LIVE)") && !text.contains("state LIVE"), "{text}");
    assert!(text.starts_with("WARNING: the consumer (pid"), "{text}");
    assert_eq!(status_of(&file, &["--json"]).0, Some(2));
    let (code, _) = status_of(&dir.path().join("nope.json"), &[]);
    assert_eq!(code, Some(2), "unreadable");
    std::fs::write(&file, "{not json").unwrap();
    assert_eq!(status_of(&file, &[]).0, Some(2), "invalid");
}

/// A stdout whose reader is already gone: every write fails with EPIPE.
fn closed_stdout() -> Stdio {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    Stdio::from(write)
}

/// `status | head`, `gaps | head`, `replay --echo | head`: the output ends quietly (no panic, no
/// exit 101) and each command still exits with its own code and finishes its work.
#[test]
fn a_closed_stdout_ends_output_quietly() {
    let dir = tempfile::tempdir().unwrap();
    // A status file of a live consumer (this test's own pid, a refresh period of an hour).
    let consumer = barbridge::Consumer::builder().build().unwrap();
    consumer.ingest_line(seed_line("SPY", 1, 10.0).trim_end().as_bytes()).unwrap();
    let mut report = barbridge::StatusReport::collect(&consumer, None);
    report.refresh_ms = Some(3_600_000);
    let file = dir.path().join("status.json");
    report.write_atomic(&file).unwrap();
    let file_arg = file.to_str().unwrap();
    // A journal day file for `gaps` and `replay`.
    let journal = dir.path().join("journal");
    std::fs::create_dir(&journal).unwrap();
    let day_file = journal.join("bars-2025-10-08.jsonl");
    let lines: String = (0..300).map(|i| seed_line(if i % 2 == 0 { "SPY" } else { "SH" }, i / 2, 10.0)).collect();
    std::fs::write(&day_file, &lines).unwrap();
    let replayed = dir.path().join("replayed");
    let (journal_arg, replayed_arg, day_arg) = (journal.to_str().unwrap(), replayed.to_str().unwrap(), day_file.to_str().unwrap());
    for args in [
        vec!["status", "--status-file", file_arg],
        vec!["status", "--json", "--status-file", file_arg],
        vec!["gaps", "--journal", journal_arg, "--date", "2025-10-08"],
        vec!["gaps", "--json", "--journal", journal_arg, "--date", "2025-10-08"],
        vec!["replay", "--echo", "--journal", replayed_arg, day_arg],
    ] {
        let out = Command::new(BIN).args(&args).stdout(closed_stdout()).output().unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
    let journaled = std::fs::read_to_string(replayed.join("bars-2025-10-08.jsonl")).unwrap();
    assert_eq!(journaled.lines().count(), 300, "replay journals everything even when nobody reads its echo");
}

#[test]
fn replay_counts_lines_and_symbols_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.jsonl");
    std::fs::write(&file, seed_line("SPY", 1, 10.0)).unwrap();
    let out = Command::new(BIN).arg("replay").arg(&file).output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("replayed 1 line: 1 bar accepted,") && stderr.contains(", 1 symbol\n"), "{stderr}");
}

/// `gaps` says which zone its times are in: New York, like the session and the bars.
#[test]
fn gaps_shows_new_york_times_with_the_zone() {
    let dir = tempfile::tempdir().unwrap();
    // 2025-10-08: the session opens 09:30 EDT = 13:30 UTC, minute 2 of seed_line is 13:30 UTC.
    let lines: String = [2, 3, 6].iter().map(|m| seed_line("SPY", *m, 10.0)).collect();
    std::fs::write(dir.path().join("bars-2025-10-08.jsonl"), lines).unwrap();
    let out = Command::new(BIN).args(["gaps", "--date", "2025-10-08", "--journal"]).arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("session 2025-10-08: 09:30 EDT - 16:00 EDT (390 minutes)"), "{stdout}");
    assert!(stdout.contains("hole at 09:32 EDT: 2 minute(s)"), "{stdout}");
    assert!(!stdout.contains("UTC"), "{stdout}");
}

/// A status file has one writer: a second consumer given the same `--status-file` (another FIFO,
/// or a NATS subscriber left on the default) is refused with exit 2 before it reads anything,
/// instead of the file's pid alternating between the two.
#[test]
fn a_second_consumer_on_the_same_status_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = spawn(dir.path(), &[]);
    let status = dir.path().join("run/status.json");
    assert!(wait_until(LONG, || status.exists()), "the first consumer wrote no status file");
    let second =
        Command::new(BIN).args(["run", "--fifo"]).arg(dir.path().join("other/bars.fifo")).arg("--status-file").arg(&status).output().unwrap();
    let stderr = String::from_utf8(second.stderr).unwrap();
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is written by another consumer") && stderr.contains(&format!("pid {}", first.child.id())), "{stderr}");
    assert!(!dir.path().join("other/bars.fifo").exists(), "the refused consumer created its FIFO");
    kill(Pid::from_raw(first.child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(wait_exit(&mut first).code(), Some(0));
}

/// `gaps` on a journal that holds only crypto pairs reports the pairs (with and without `--date`),
/// and a day with no file at all is one sentence naming both files it looked for.
#[test]
fn gaps_on_a_crypto_only_journal_reports_the_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = [2, 3, 6].iter().map(|m| seed_line("BTC/USD", *m, 60_000.0)).collect();
    std::fs::write(dir.path().join("crypto-2025-10-08.jsonl"), &lines).unwrap();
    let out = Command::new(BIN).args(["gaps", "--date", "2025-10-08", "--journal"]).arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("crypto day 2025-10-08 UTC") && stdout.contains("BTC/USD"), "{stdout}");
    let json = Command::new(BIN).args(["gaps", "--json", "--date", "2025-10-08", "--journal"]).arg(dir.path()).output().unwrap();
    assert_eq!(json.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["symbols"][0]["symbol"], "BTC/USD", "{doc}");
    // Today (UTC) with no --date: a crypto-only journal of today.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    std::fs::write(dir.path().join(format!("crypto-{today}.jsonl")), &lines).unwrap();
    let out = Command::new(BIN).args(["gaps", "--journal"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8(out.stdout).unwrap().contains("BTC/USD"));
    let out = Command::new(BIN).args(["gaps", "--date", "2025-10-09", "--journal"]).arg(dir.path()).output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no journal for 2025-10-09") && stderr.contains("crypto-2025-10-09.jsonl"), "{stderr}");
}

/// The README's hand-typed example: its three lines are three minutes, three bars (the loop is
/// run into a file and replayed, so no timing is involved).
#[test]
fn readme_example_stores_three_bars_for_three_minutes() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("Try it by hand:").expect("the README's 'Try it by hand'");
    let block = &readme[start..];
    let loop_start = block.find("for minute").expect("the example's loop");
    let loop_end = loop_start + block[loop_start..].find("\ndone\n").expect("the loop's end") + 6;
    let script = block[loop_start..loop_end].replace(r#"> "$dir/run/bars.fifo""#, r#">> "$dir/lines.jsonl""#);
    assert!(script.contains("lines.jsonl"), "{script}");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash").args(["-euo", "pipefail", "-c", &script]).env("dir", dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(BIN).arg("replay").arg("--echo").arg(dir.path().join("lines.jsonl")).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let minutes: std::collections::BTreeSet<i64> =
        stdout.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["timestamp_ms"].as_i64().unwrap()).collect();
    assert_eq!(minutes.len(), 3, "{stdout}{}", String::from_utf8_lossy(&out.stderr));
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
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("cannot read status file"));
    let fifo = dir.path().join("run/f.fifo");
    let fifo = fifo.to_str().unwrap();
    for (args, expect) in [
        (&["run", "--fifo", fifo, "--capacity", "0"][..], "barbridge: bars kept per symbol must be at least 1, got 0"),
        (&["run", "--fifo", fifo, "--stale-after", "0"][..], "barbridge: stale_after must be more than 0 seconds, got 0"),
        (&["run", "--fifo", fifo, "--symbols", "SPY,spy"][..], "barbridge: symbols: symbol \"spy\" is not"),
        (&["replay", "--symbols", "spy", "x.jsonl"][..], "barbridge: symbols: symbol \"spy\" is not"),
        (&["gaps", "--journal", "j", "--symbols", "spy"][..], "barbridge: symbols: symbol \"spy\" is not"),
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    }
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
    let status: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/status.json")).unwrap()).unwrap();
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

#[test]
fn a_new_symbol_past_max_symbols_is_refused_counted_and_known_ones_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = spawn(dir.path(), &["--once", "--max-symbols", "3"]);
    let fifo = dir.path().join("run/bars.fifo");
    let mut w = open_writer(&fifo);
    let known = ["SPY", "SH", "SDS"];
    for (i, sym) in known.iter().enumerate() {
        write_line(&mut w, &seed_line(sym, i as i64, 10.0));
    }
    // A flood of made-up symbols, interleaved with more bars of the known ones.
    for i in 0..2_000 {
        write_line(&mut w, &seed_line(&format!("X{i}"), 1, 10.0));
        if i % 100 == 0 {
            write_line(&mut w, &seed_line(known[(i / 100) % 3], 10 + i as i64 / 100, 10.0));
        }
    }
    drop(w);
    assert_eq!(wait_exit(&mut r).code(), Some(0));
    let file = dir.path().join("run/status.json");
    let status: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let c = &status["health"]["counters"];
    assert_eq!(c["symbol_bound_refused"], 2_000, "{c}");
    assert_eq!(c["bars_accepted"], 3 + 20, "every bar of the known symbols is stored: {c}");
    let symbols = status["health"]["symbols"].as_object().unwrap();
    assert_eq!(symbols.keys().collect::<Vec<_>>(), ["SDS", "SH", "SPY"]);
    let (_, text) = status_of(&file, &[]);
    assert!(text.contains("refused   2000 bars/statuses of new symbols"), "{text}");
    let report: barbridge::ops::status::StatusReport = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let metrics = barbridge::ops::metrics::render(report);
    assert!(metrics.lines().any(|l| l == "barbridge_symbol_bound_refused_total 2000"), "{metrics}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut r.child.stderr.take().unwrap(), &mut stderr).unwrap();
    let logged = stderr.lines().filter(|l| l.contains("refused a bar or status of the new symbol")).count();
    assert!((1..=10).contains(&logged), "rate-limited: {logged} lines\n{stderr}");

    for (n, expect) in [("0", "must be at least 1, got 0"), ("10000001", "must be at most 10000000")] {
        let out = Command::new(BIN).args(["run", "--fifo"]).arg(dir.path().join("run/f.fifo")).args(["--max-symbols", n]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{n}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(expect) && stderr.contains("max_symbols"), "{stderr}");
    }
}

#[test]
fn a_writer_cannot_flood_the_log_with_status_lines_halts_or_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    // The log goes to a file: a pipe nobody reads would stall a consumer that floods it.
    let child = Command::new(BIN)
        .args(["run", "--once", "--fifo"])
        .arg(dir.path().join("run/bars.fifo"))
        .arg("--status-file")
        .arg(dir.path().join("run/status.json"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut r = Running { child };
    let fifo = dir.path().join("run/bars.fifo");
    let mut w = open_writer(&fifo);
    let detail = "d".repeat(3000);
    for i in 0..500 {
        for state in ["reconnecting", "disconnected", "error", "subscribed"] {
            write_line(&mut w, &format!("{{\"type\":\"status\",\"ts_ms\":1759930085000,\"state\":\"{state}\",\"detail\":\"{detail}\"}}\n"));
        }
        write_line(
            &mut w,
            &format!("{{\"type\":\"trading_status\",\"v\":1,\"symbol\":\"H{i}\",\"ts_ms\":1759932432491,\"status\":\"halted\",\"code\":\"T1\"}}\n"),
        );
        // seq 1, 3, 5, ...: a gap before every line
        let bar = seed_line("SPY", i, 10.0);
        write_line(&mut w, &format!("{},\"seq\":{},\"writer\":\"flood\"}}\n", bar.trim_end().trim_end_matches('}'), 2 * i + 1));
    }
    drop(w);
    assert_eq!(wait_exit(&mut r).code(), Some(0));
    let status: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/status.json")).unwrap()).unwrap();
    let c = &status["health"]["counters"];
    assert_eq!((c["reconnects"].as_u64(), c["halts"].as_u64(), c["bars_accepted"].as_u64()), (Some(500), Some(500), Some(500)), "{c}");
    let stderr = std::fs::read_to_string(&log).unwrap();
    for what in ["sidecar reconnecting", "sidecar disconnected", "sidecar reports error", "sidecar subscribed", "no bars expected", "skipped seq"] {
        let n = stderr.lines().filter(|l| l.contains(what)).count();
        assert!((1..=10).contains(&n), "{what}: {n} lines, not rate-limited");
    }
    assert!(stderr.lines().all(|l| l.len() < 1000), "a writer's detail is cut in the log");
}

#[cfg(feature = "nats")]
#[test]
fn a_stream_age_no_duration_can_hold_is_refused_in_one_sentence() {
    // 1e300 hours overflowed Duration::from_secs_f64: a panic instead of exit 2.
    let dir = tempfile::tempdir().unwrap();
    for flag in ["--stream-max-age-hours", "--stream-duplicate-window-minutes"] {
        let out =
            Command::new(BIN).args(["run", "--publish", "nats://127.0.0.1:1", "--journal"]).arg(dir.path()).args([flag, "1e300"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {err}");
        assert!(err.contains("must be positive") && !err.contains("panicked"), "{flag}: {err}");
    }
}

#[test]
fn a_bar_from_the_future_on_the_fifo_is_refused_counted_and_gets_no_day_file() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let mut r = spawn(dir.path(), &["--once", "--journal", journal.to_str().unwrap()]);
    let mut w = open_writer(&dir.path().join("run/bars.fifo"));
    let minute = |ms: i64| ms / 60_000 * 60_000;
    let now = minute(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64);
    let line = |ts: i64| format!("{{\"symbol\":\"SPY\",\"timestamp_ms\":{ts},\"open\":1,\"high\":1,\"low\":1,\"close\":1,\"volume\":1}}\n");
    // 2095-01-03 15:00 UTC; the first minute past the default skew of 300 s; the minute that just ended.
    for ts in [3_944_905_200_000, now + 360_000, now - 60_000] {
        write_line(&mut w, &line(ts));
    }
    drop(w);
    assert_eq!(wait_exit(&mut r).code(), Some(0));
    let status: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/status.json")).unwrap()).unwrap();
    let c = &status["health"]["counters"];
    assert_eq!(c["rejects"]["future_bar"], 2, "{c}");
    assert_eq!(c["bars_accepted"], 1, "{c}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut r.child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("rejected line (future_bar)") && stderr.contains("2095-01-03"), "{stderr}");
    // One day file at most (the minute that just ended; two around New York midnight), none for 2095.
    let files: Vec<String> = std::fs::read_dir(&journal).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(files.iter().all(|f| !f.contains("2095")), "{files:?}");
    assert_eq!(files.iter().filter(|f| f.ends_with(".jsonl")).count(), 1, "{files:?}");

    for (skew, code) in [("86401", Some(2)), ("abc", Some(2))] {
        let out = Command::new(BIN).args(["run", "--fifo"]).arg(dir.path().join("run/f.fifo")).args(["--max-clock-skew", skew]).output().unwrap();
        assert_eq!(out.status.code(), code, "{skew}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains("clock"), "{stderr}");
    }
}
