//! `--echo`: every delivered bar printed to stdout as a wire line, from a thread of its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Consumer, Subscription};
use crate::bar::BarKind;

/// The `--echo` printer started by [`Consumer::echo_to_stdout`].
#[derive(Debug)]
pub struct Echo {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Echo {
    /// Print what is queued (waiting at most `timeout` for stdout), then stop.
    pub fn finish(self, timeout: Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = std::time::Instant::now() + timeout;
        while !self.thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.thread.is_finished() {
            let _ = self.thread.join();
        } else {
            log::warn!("--echo: stdout is not being read; bars still queued for it are not printed");
        }
    }
}

impl Consumer {
    /// Print every delivered bar to stdout as one wire line (corrections as `updated_bar`),
    /// like `barbridge run --echo`, from a thread of its own: a stdout nobody reads never stalls
    /// ingest or shutdown. It is a channel subscriber named `echo` (65,536 bars; beyond, the
    /// oldest are dropped, counted and logged); a closed stdout ends the echo with one log line.
    /// Call [`Echo::finish`] before exiting so that what is queued gets printed.
    pub fn echo_to_stdout(&self) -> Echo {
        let rx = self.subscribe(Subscription::all().name("echo"));
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("barbridge-echo".into())
            .spawn(move || {
                use std::io::Write;
                let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
                let mut line = Vec::with_capacity(256);
                loop {
                    let first = match rx.recv_timeout(Duration::from_millis(100)) {
                        Ok(event) => event,
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) if !stopping.load(Ordering::Relaxed) => continue,
                        Err(_) => break,
                    };
                    let mut result = Ok(());
                    for event in std::iter::once(first).chain(rx.try_iter()) {
                        let kind = if event.correction { BarKind::UpdatedBar } else { BarKind::Bar };
                        line.clear();
                        crate::wire::write_bar_line(&mut line, &event.symbol, &event.bar, kind, &Default::default());
                        result = out.write_all(&line);
                        if result.is_err() {
                            break;
                        }
                    }
                    match result.and_then(|()| out.flush()) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                            log::info!("stdout was closed: --echo stops; the store, journal and subscribers still get every bar");
                            return;
                        }
                        Err(e) => {
                            log::warn!("writing to stdout failed ({e}): --echo stops; the store, journal and subscribers still get every bar");
                            return;
                        }
                    }
                }
            })
            .expect("spawning the echo thread");
        Echo { stop, thread }
    }
}
