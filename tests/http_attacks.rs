//! Issue 22, item 1: nothing a local user sends to the metrics port can hurt ingest. Each test
//! runs the real binary (`barbridge run --metrics-addr 127.0.0.1:0`) on a real FIFO, attacks the
//! port from a process running as `nobody` (this test binary re-executed with another uid, see
//! [`attacker`]), writes bars into the FIFO during the attack and checks that every one is
//! accepted, exactly, and that `/metrics` answers again afterwards.
//!
//! `BARBRIDGE_BIN` runs them against another build of the binary (e.g. one from before the fix).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// `nobody`/`nogroup`: the attacker is another local user than the consumer's.
const NOBODY: u32 = 65534;

fn bin() -> PathBuf {
    std::env::var_os("BARBRIDGE_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_barbridge")), PathBuf::from)
}

/// A running `barbridge run --metrics-addr 127.0.0.1:0` and where it serves.
struct Consumer {
    proc: Proc,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    written: i64,
    /// The consumer's log, as it comes.
    log: mpsc::Receiver<String>,
}

impl Consumer {
    fn start() -> Consumer {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(bin())
            .args(["run", "--fifo"])
            .arg(fifo_in(&dir))
            .arg("--status-file")
            .arg(dir.path().join("run/status.json"))
            .args(["--metrics-addr", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, log) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("consumer: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let addr = loop {
            let line = log.recv_timeout(LONG).expect("the consumer logs its metrics address");
            if let Some(rest) = line.split("metrics on http://").nth(1) {
                break rest.split('/').next().unwrap().parse().unwrap();
            }
        };
        Consumer { proc: Proc(Some(child)), addr, dir, written: 0, log }
    }

    fn pid(&self) -> u32 {
        self.proc.0.as_ref().unwrap().id()
    }

    /// Write `n` new bars (one minute each) into the FIFO, each line in one write.
    fn write_bars(&mut self, n: i64) {
        let mut w = open_writer(&fifo_in(&self.dir));
        for _ in 0..n {
            write_line(&mut w, &seed_line("SPY", self.written, 10.0));
            self.written += 1;
        }
    }

    fn status_file(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(self.dir.path().join("run/status.json")).ok()?).ok()
    }

    /// Every bar written is accepted, exactly: the count reaches the number written and no more.
    fn assert_all_bars_accepted(&mut self) {
        let want = u64::try_from(self.written).unwrap();
        let mut seen = None;
        let ok = wait_until(LONG, || {
            self.assert_alive();
            seen = self.status_file().and_then(|s| s["health"]["counters"]["bars_accepted"].as_u64());
            seen == Some(want)
        });
        assert!(ok, "bars_accepted is {seen:?}, {want} bars were written");
        let status = self.status_file().unwrap();
        assert_eq!(status["health"]["counters"]["rejects_total"].as_u64(), Some(0), "{status}");
    }

    fn assert_alive(&mut self) {
        let status = self.proc.0.as_mut().unwrap().try_wait().unwrap();
        assert!(status.is_none(), "the consumer died: {status:?}");
    }

    /// `GET path` answered 200 within a generous time (polled: the server may be busy shedding
    /// an attack); its body.
    fn get_eventually(&mut self, path: &str) -> String {
        let mut body = None;
        let ok = wait_until(LONG, || {
            self.assert_alive();
            body = get(self.addr, path);
            body.is_some()
        });
        assert!(ok, "GET {path} on {} was not answered", self.addr);
        body.unwrap()
    }

    /// The metrics server's counters, from `/status.json`.
    fn http_section(&mut self) -> serde_json::Value {
        let status: serde_json::Value = serde_json::from_str(&self.get_eventually("/status.json")).unwrap();
        status["sections"]["http"].clone()
    }

    /// Wait until the metrics server has taken (served or refused) `n` connections in all, by
    /// the status file (the port itself may be full).
    fn wait_connections_taken(&mut self, n: u64) {
        let mut seen = None;
        let ok = wait_until(LONG, || {
            self.assert_alive();
            let http = self.status_file().map(|s| s["sections"]["http"].clone());
            let taken = http.as_ref().and_then(|h| Some(h["connections_accepted"].as_u64()? + h["connections_refused"].as_u64()?));
            seen = http;
            taken >= Some(n)
        });
        assert!(ok, "the server did not take {n} connections: {seen:?}");
    }

    /// Resident memory (and its peak) of the consumer, in KiB.
    fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let field = |name: &str| {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap();
            line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// `GET path` with HTTP/1.0 on a fresh connection: the body if answered 200 within 10 s.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| body.to_owned())
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// An attack running as `nobody`: what it reports on stdout, and its stdin (closing it ends the attack).
struct Attack {
    child: Child,
    stdin: Option<ChildStdin>,
    out: mpsc::Receiver<String>,
}

impl Attack {
    fn start(kind: &str, addr: SocketAddr) -> Attack {
        let mut command = Command::new(std::env::current_exe().unwrap());
        // Another local user than the consumer's (root can switch; anyone else attacks as itself).
        if nix::unistd::Uid::effective().is_root() {
            command.uid(NOBODY).gid(NOBODY);
        }
        let mut child = command
            .args(["attacker", "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
            .env("BARBRIDGE_ATTACK", format!("{kind} {addr}"))
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, out) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may print "test attacker ... " on the same line first.
                if let Some((_, report)) = line.split_once("ATTACK: ") {
                    let _ = tx.send(report.to_owned());
                }
            }
        });
        Attack { child, stdin, out }
    }

    /// The attacker's next report line.
    fn report(&self) -> String {
        self.out.recv_timeout(LONG * 2).expect("the attacker reports")
    }

    /// End the attack (its connections close) and wait for the attacker.
    fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the attacker failed: {status}");
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait for the parent test to close stdin.
fn hold() {
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// The attacking side, run as `nobody` by [`Attack::start`] (does nothing when run otherwise).
#[test]
#[ignore = "the attacker process of the other tests"]
fn attacker() {
    let Ok(spec) = std::env::var("BARBRIDGE_ATTACK") else { return };
    let (kind, addr) = spec.split_once(' ').unwrap();
    let addr: SocketAddr = addr.parse().unwrap();
    let report = |s: &str| {
        println!("ATTACK: {s}");
        std::io::stdout().flush().unwrap();
    };
    match kind {
        // A GET declaring a body of 93 GiB, which it never sends.
        "huge-length" => {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n").unwrap();
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
            let line = String::from_utf8_lossy(&answer).lines().next().unwrap_or("(closed)").to_owned();
            report(&format!("answer {line}"));
        }
        // Connections that send nothing, held until told.
        idle if idle.starts_with("idle-") => {
            let count: usize = idle["idle-".len()..].parse().unwrap();
            let mut held = Vec::new();
            let mut failed = 0;
            for _ in 0..count {
                match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                    Ok(s) => held.push(s),
                    Err(_) => failed += 1,
                }
            }
            report(&format!("opened {} failed {failed}", held.len()));
            hold();
        }
        // One header line that never ends: 64 MiB of it, or until the server closes.
        "endless-header" => {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
            let chunk = vec![b'a'; 64 * 1024];
            let mut sent = 0usize;
            if s.write_all(b"GET /metrics HTTP/1.1\r\nX-Endless: ").is_ok() {
                while sent < 64 << 20 {
                    match s.write(&chunk) {
                        Ok(n) => sent += n,
                        Err(_) => break,
                    }
                }
            }
            report(&format!("sent {sent}"));
            hold();
        }
        // 4,000 pipelined requests, none of the answers read, the connection held.
        "pipeline" => {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
            let requests = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(4_000);
            let sent = s.write(requests.as_bytes()).unwrap_or(0);
            report(&format!("sent {sent}"));
            hold();
        }
        other => panic!("no attack {other}"),
    }
}

#[test]
fn a_get_declaring_a_huge_body_is_answered_and_allocates_nothing() {
    let mut c = Consumer::start();
    c.write_bars(20);
    let (_, peak_before) = c.memory_kib();
    let attack = Attack::start("huge-length", c.addr);
    c.write_bars(20);
    let answer = attack.report();
    attack.finish();
    c.write_bars(20);
    assert!(answer.starts_with("answer HTTP/1.1 200") || answer == "answer (closed)", "{answer}");
    c.assert_all_bars_accepted();
    let metrics = c.get_eventually("/metrics");
    assert_eq!(metric(&metrics, "barbridge_bars_accepted_total"), Some(60.0));
    let (_, peak_after) = c.memory_kib();
    assert!(peak_after < peak_before + 16 * 1024, "resident memory peaked at {peak_after} KiB (from {peak_before} KiB)");
}

/// Set the soft `RLIMIT_NOFILE` of process `pid` (the hard one stays); the old soft one.
fn set_soft_nofile(pid: u32, soft: u64) -> u64 {
    let pid = nix::libc::pid_t::try_from(pid).unwrap();
    let mut old = nix::libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: a null new limit only reads; `old` is a live rlimit.
    assert_eq!(unsafe { nix::libc::prlimit(pid, nix::libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) }, 0, "prlimit");
    let new = nix::libc::rlimit { rlim_cur: soft, rlim_max: old.rlim_max };
    // SAFETY: `new` is a live rlimit, only read.
    assert_eq!(unsafe { nix::libc::prlimit(pid, nix::libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) }, 0, "prlimit");
    old.rlim_cur
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as u64
}

#[test]
fn idle_connections_past_the_bound_and_past_the_fd_limit_are_shed_and_metrics_come_back() {
    let mut c = Consumer::start();
    c.write_bars(10);
    c.get_eventually("/metrics");

    // More idle connections than the bound: the rest are closed at once, counted.
    let attack = Attack::start("idle-200", c.addr);
    c.write_bars(10);
    let opened = attack.report();
    c.write_bars(10);
    c.wait_connections_taken(1 + 200);
    attack.finish();
    eprintln!("idle attack: {opened}");
    let http = c.http_section();
    assert!(http["connections_refused"].as_u64().unwrap() >= 200 - 64, "{http}");
    c.assert_all_bars_accepted();

    // Few file descriptors left: the server keeps its reserve free for ingest (a writer
    // reconnecting makes the consumer reopen the FIFO) and refuses the connections instead.
    let pid = c.pid();
    let taken = c.http_section();
    let taken = taken["connections_accepted"].as_u64().unwrap() + taken["connections_refused"].as_u64().unwrap();
    let normal = set_soft_nofile(pid, open_fds(pid) + 16);
    let attack = Attack::start("idle-60", c.addr);
    c.write_bars(10);
    let opened = attack.report();
    c.write_bars(10);
    c.wait_connections_taken(taken + 60);
    attack.finish();
    set_soft_nofile(pid, normal);
    eprintln!("idle attack with 16 fds free: {opened}");
    let http = c.http_section();
    assert!(http["connections_refused"].as_u64().unwrap() >= 136 + 60, "{http}");
    assert_eq!(http["accept_errors"].as_u64(), Some(0), "{http}");
    c.assert_all_bars_accepted();

    // No descriptor left at all (another part of the process took them): accept() fails with
    // EMFILE, is counted, logged and retried; the server answers once descriptors are back.
    let mut writer = open_writer(&fifo_in(&c.dir));
    write_line(&mut writer, &seed_line("SPY", c.written, 10.0));
    c.written += 1;
    set_soft_nofile(pid, 3); // not even a hole below the number of open ones is left
    let attack = Attack::start("idle-20", c.addr);
    let opened = attack.report();
    for _ in 0..10 {
        write_line(&mut writer, &seed_line("SPY", c.written, 10.0));
        c.written += 1;
    }
    let logged = wait_until(LONG, || c.log.try_iter().any(|l| l.contains("cannot accept a connection")));
    assert!(logged, "the accept errors are logged");
    attack.finish();
    set_soft_nofile(pid, normal);
    eprintln!("idle attack with no fd free: {opened}");
    let metrics = c.get_eventually("/metrics");
    assert!(metric(&metrics, "barbridge_http_accept_errors_total").unwrap_or(0.0) >= 1.0, "{metrics}");
    assert!(metric(&metrics, "barbridge_http_connections_refused_total").unwrap_or(0.0) >= 196.0, "{metrics}");
    let http = c.http_section();
    assert!(http["last_error"].as_str().unwrap_or("").contains("accept"), "{http}");
    drop(writer);
    c.assert_all_bars_accepted();
    // The failure is in the status file too.
    let file = c.status_file().unwrap();
    assert!(file["sections"]["http"]["accept_errors"].as_u64().unwrap() >= 1, "{file}");
}

#[test]
fn a_header_line_that_never_ends_does_not_grow_memory() {
    let mut c = Consumer::start();
    c.write_bars(10);
    let (_, peak_before) = c.memory_kib();
    let attack = Attack::start("endless-header", c.addr);
    c.write_bars(10);
    let sent = attack.report();
    c.write_bars(10);
    let (rss, peak_after) = c.memory_kib();
    attack.finish();
    eprintln!("endless header: {sent}; resident {rss} KiB, peak {peak_before} -> {peak_after} KiB");
    assert!(peak_after < peak_before + 16 * 1024, "resident memory peaked at {peak_after} KiB (from {peak_before} KiB) after {sent}");
    c.assert_all_bars_accepted();
    c.get_eventually("/metrics");
    let http = c.http_section();
    assert!(http["connection_errors"].as_u64().unwrap() >= 1, "{http}");
}

#[test]
fn a_client_that_pipelines_and_reads_nothing_blocks_nobody_else() {
    let mut c = Consumer::start();
    c.write_bars(10);
    let attack = Attack::start("pipeline", c.addr);
    let sent = attack.report();
    eprintln!("pipeline: {sent}");
    // While it holds its connection, others are served, and ingest goes on.
    for _ in 0..3 {
        c.write_bars(10);
        let started = Instant::now();
        let metrics = c.get_eventually("/metrics");
        assert!(metric(&metrics, "barbridge_bars_accepted_total").is_some(), "{metrics}");
        eprintln!("/metrics answered in {:?} during the pipeline attack", started.elapsed());
    }
    let http = c.http_section();
    assert!(http["connections_open"].as_u64().unwrap() >= 2, "the greedy connection is still open: {http}");
    attack.finish();
    c.assert_all_bars_accepted();
}
