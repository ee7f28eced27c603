//! The Rust side's log records, into Python's `logging`: a user of the package quiets or formats
//! them as any other library's (`logging.getLogger("barbridge").setLevel(logging.ERROR)`), and
//! the sidecar's own handler (its format, JSON logs, the secret scrubber) covers them.
//!
//! A Rust thread never takes the GIL to log (a thread holding a lock that a Python caller waits
//! on, with the GIL held, would deadlock): records go into a bounded queue, and a Python daemon
//! thread, started at import, hands them to `logging.getLogger(target)` (`barbridge::sidecar::writer`
//! becomes `barbridge.pipe.writer`). A full queue drops the record and counts it; the next
//! record delivered says how many. `RUST_LOG` (default `warn`) still decides which records are
//! made at all.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use pyo3::prelude::*;

/// Records waiting for the Python thread; past it, dropped and counted.
const QUEUE: usize = 10_000;

struct ToPython {
    filter: env_filter::Filter,
    tx: Sender<(String, u8, String)>,
    dropped: AtomicU64,
}

impl log::Log for ToPython {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.filter.matches(record) {
            return;
        }
        // Python's numeric levels.
        let level = match record.level() {
            log::Level::Error => 40,
            log::Level::Warn => 30,
            log::Level::Info => 20,
            log::Level::Debug => 10,
            log::Level::Trace => 5,
        };
        let mut message = record.args().to_string();
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            message.push_str(&format!(" ({dropped} earlier log record(s) dropped: the logging queue was full)"));
        }
        match self.tx.try_send((record.target().replace("::", "."), level, message)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(dropped + 1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn flush(&self) {}
}

static RECORDS: std::sync::OnceLock<Receiver<(String, u8, String)>> = std::sync::OnceLock::new();

/// Up to `max` waiting records, without waiting (and with the GIL held throughout: the daemon
/// thread that calls this must never be inside Rust while the interpreter finalizes, or CPython
/// ending the thread unwinds through Rust frames and aborts the process).
#[pyfunction]
#[pyo3(signature = (max = 1000))]
fn _log_records(max: usize) -> Vec<(String, u8, String)> {
    RECORDS.get().map(|rx| rx.try_iter().take(max).collect()).unwrap_or_default()
}

/// The Python side: a daemon thread that hands each record to `logging`; between polls it sleeps
/// in Python, so at exit it is never inside Rust.
const PUMP: &std::ffi::CStr = c"
import logging, threading, time

def _pump(records=_log_records):
    while True:
        batch = records()
        if not batch:
            time.sleep(0.1)
        for target, level, message in batch:
            try:
                logging.getLogger(target).log(level, '%s', message)
            except Exception:
                pass

threading.Thread(target=_pump, name='barbridge-log', daemon=True).start()
";

/// Install the logger (once per process) and start the thread that hands records to `logging`.
pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let filter = env_filter::Builder::new().parse(&std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned())).build();
    let max_level = filter.filter();
    let (tx, rx) = crossbeam_channel::bounded(QUEUE);
    m.add_function(wrap_pyfunction!(_log_records, m)?)?;
    if RECORDS.set(rx).is_ok() && log::set_boxed_logger(Box::new(ToPython { filter, tx, dropped: AtomicU64::new(0) })).is_ok() {
        log::set_max_level(max_level);
        let globals = pyo3::types::PyDict::new(py);
        globals.set_item("_log_records", m.getattr("_log_records")?)?;
        py.run(PUMP, Some(&globals), None)?;
    }
    Ok(())
}
