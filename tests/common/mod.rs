//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Poll `cond` until it holds or `timeout` passes (generous timeouts, no fixed sleeps).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

pub const LONG: Duration = Duration::from_secs(30);

/// A bar line in the original format (exactly as Python's json.dump writes it, with spaces).
pub fn seed_line(symbol: &str, minute: i64, close: f64) -> String {
    format!(
        "{{\"symbol\": \"{symbol}\", \"timestamp_ms\": {}, \"open\": {close}, \"high\": {}, \"low\": {}, \"close\": {close}, \"volume\": 100, \"vwap\": {close}, \"trade_count\": 5}}\n",
        1_759_930_080_000 + minute * 60_000,
        close + 0.5,
        close - 0.5
    )
}

/// Open the FIFO for writing, waiting for a reader (ENXIO) like the sidecar does.
pub fn open_writer(path: &Path) -> std::fs::File {
    let mut file = None;
    assert!(
        wait_until(LONG, || {
            file = OpenOptions::new().write(true).custom_flags(nix::libc::O_NONBLOCK).open(path).ok();
            file.is_some()
        }),
        "no reader appeared on {}",
        path.display()
    );
    let file = file.unwrap();
    // Blocking writes from here on: a full pipe waits for the reader instead of failing.
    let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    let mut flags = nix::fcntl::OFlag::from_bits_truncate(flags);
    flags.remove(nix::fcntl::OFlag::O_NONBLOCK);
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(flags)).unwrap();
    file
}

/// Write each line with a single write() (atomic below PIPE_BUF).
pub fn write_line(file: &mut std::fs::File, line: &str) {
    assert_eq!(file.write(line.as_bytes()).unwrap(), line.len());
}

pub fn fifo_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("run").join("bars.fifo")
}

/// A child process (a `barbridge run`), killed when dropped: a failing test leaves none behind.
pub struct Proc(pub Option<std::process::Child>);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
