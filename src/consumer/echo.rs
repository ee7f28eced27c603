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
        let minutes = self.subscribe_minutes(4096);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("barbridge-echo".into())
            .spawn(move || {
                use std::io::Write;
                let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
                let mut line = Vec::with_capacity(256);
                loop {
                    let mut ready = crossbeam_channel::Select::new();
                    ready.recv(&rx);
                    ready.recv(&minutes);
                    if ready.ready_timeout(Duration::from_millis(100)).is_err() {
                        if stopping.load(Ordering::Relaxed) {
                            break;
                        }
                        continue;
                    }
                    let mut result = Ok(());
                    let mut write_bar = |event: super::BarEvent, out: &mut std::io::BufWriter<_>| {
                        let kind = if event.correction { BarKind::UpdatedBar } else { BarKind::Bar };
                        line.clear();
                        crate::wire::write_bar_line(&mut line, &event.symbol, &event.bar, kind, &Default::default());
                        out.write_all(&line)
                    };
                    for event in rx.try_iter() {
                        result = write_bar(event, &mut out);
                        if result.is_err() {
                            break;
                        }
                    }
                    // A closed minute after every bar sent before it (its bars are queued first).
                    while result.is_ok() {
                        let Ok(m) = minutes.try_recv() else { break };
                        for event in rx.try_iter() {
                            result = result.and_then(|()| write_bar(event, &mut out));
                        }
                        result = result.and_then(|()| out.write_all(&super::minutes::lines_of(&m)));
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
