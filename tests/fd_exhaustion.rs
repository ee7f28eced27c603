//! The real `barbridge run` when the process has no file descriptor left: the FIFO reader must
//! keep reading (never drop its descriptor before a new one is open), count the failed
//! reopens, and lose nothing.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use nix::libc;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_barbridge");

/// Set the soft `RLIMIT_NOFILE` of process `pid` to `soft` (hard limit unchanged); returns the
/// old soft limit.
fn set_soft_nofile(pid: u32, soft: libc::rlim_t) -> libc::rlim_t {
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscall on valid pointers; a null new limit only reads.
    assert_eq!(unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) }, 0);
    let new = libc::rlimit { rlim_cur: soft, rlim_max: old.rlim_max };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) }, 0, "prlimit");
    old.rlim_cur
}

/// Open the FIFO for writing like the sidecar (non-blocking; ENXIO while it has no reader),
/// giving up after `timeout`.
fn try_open_writer(path: &Path, timeout: Duration) -> Option<std::fs::File> {
    let mut file = None;
    wait_until(timeout, || {
        file = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(path).ok();
        file.is_some()
    });
    file
}

/// Lines a child writes to `stream`, collected by a thread.
fn collect(stream: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            out.lock().unwrap().push(line);
        }
    });
    lines
}

fn status_json(file: &Path) -> Option<serde_json::Value> {
    let out = Command::new(BIN).arg("status").arg("--status-file").arg(file).arg("--json").output().ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// With the soft descriptor limit lowered after start below what the process holds open (3:
/// not 0, with which `poll()` itself fails with EINVAL), every open fails with EMFILE. A
/// writer writes, closes and reopens again and again: the reader's reopen after each close
/// fails, yet writers still connect (the old descriptor is kept, so the FIFO has its reader),
/// every bar is delivered while descriptors are exhausted, stored once, and the failures are
/// counted in `fifo_open_errors`. Before the fix the reader closed its descriptor: the next
/// writer found no reader (ENXIO) for as long as descriptors were short.
#[test]
fn reopen_without_a_free_descriptor_keeps_the_old_one_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("run/bars.fifo");
    let status = dir.path().join("run/status.json");
    let mut child = Command::new(BIN)
        .args(["run", "--echo", "--fifo"])
        .arg(&fifo)
        .arg("--status-file")
        .arg(&status)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let echoed = collect(child.stdout.take().unwrap());
    let logged = collect(child.stderr.take().unwrap());
    let pid = child.id();
    let proc = Proc(Some(child));
    let echoed_n = || echoed.lock().unwrap().len();
    let logged_has = |what: &str| logged.lock().unwrap().iter().any(|l| l.contains(what));

    const PER_WRITER: i64 = 10;
    let mut minute = 0;
    let mut write_session = |w: &mut std::fs::File| {
        for _ in 0..PER_WRITER {
            write_line(w, &seed_line("SPY", minute, 10.0 + minute as f64));
            minute += 1;
        }
    };
    let mut w = open_writer(&fifo);
    write_session(&mut w);
    assert!(wait_until(LONG, || echoed_n() == 10), "echoed {}", echoed_n());
    assert!(wait_until(LONG, || status.exists()));

    // From here on the consumer cannot open anything.
    let old_soft = set_soft_nofile(pid, 3);
    drop(w); // all writers gone: the reader tries to reopen, and fails
    assert!(wait_until(LONG, || logged_has("Too many open files")), "{:?}", logged.lock().unwrap());
    for round in 0..5 {
        let mut w = try_open_writer(&fifo, Duration::from_secs(10)).unwrap_or_else(|| {
            panic!(
                "round {round}: the FIFO has no reader while descriptors are exhausted (the reader dropped its descriptor): {:?}",
                logged.lock().unwrap()
            )
        });
        write_session(&mut w);
        drop(w);
        let want = 10 * (round + 2);
        assert!(wait_until(LONG, || echoed_n() == want), "round {round}: echoed {} of {want} with no descriptor free", echoed_n());
    }
    let still_failing = logged.lock().unwrap().iter().filter(|l| l.contains("file descriptor")).count();

    // Descriptors come back: the reader gets its new descriptor and carries on.
    set_soft_nofile(pid, old_soft);
    assert!(wait_until(LONG, || logged_has("reopened")), "{:?}", logged.lock().unwrap());
    let mut w = open_writer(&fifo);
    write_session(&mut w);
    drop(w);
    assert!(wait_until(LONG, || echoed_n() == 70), "echoed {}", echoed_n());

    let mut report = None;
    assert!(
        wait_until(LONG, || {
            report = status_json(&status);
            report.as_ref().is_some_and(|r| r["health"]["counters"]["bars_accepted"] == 70)
        }),
        "{report:?}"
    );
    let c = &report.unwrap()["health"]["counters"];
    assert_eq!((c["duplicates"].as_u64(), c["conflicts"].as_u64(), c["lines_lost"].as_u64()), (Some(0), Some(0), Some(0)), "{c}");
    let failures = c["fifo_open_errors"].as_u64().unwrap();
    assert!(failures >= 1, "{c}");
    let echoed: Vec<String> = echoed.lock().unwrap().clone();
    let unique: std::collections::HashSet<&String> = echoed.iter().collect();
    assert_eq!(unique.len(), 70, "every bar delivered once");
    // The failures are logged rate-limited: not one line per attempt.
    assert!(still_failing <= 3, "{still_failing} log lines about descriptors for {failures} failures");

    let mut child = proc;
    let mut c = child.0.take().unwrap();
    kill(Pid::from_raw(pid as i32), Signal::SIGINT).unwrap();
    assert!(wait_until(LONG, || c.try_wait().unwrap().is_some()), "did not exit");
    assert_eq!(c.wait().unwrap().code(), Some(0));
}
