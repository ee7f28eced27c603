//! `FifoWriter`: the sidecar's end of the FIFO, written by a Rust thread.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::bar::{bar_from_dict, bar_kind_from_dict, dict_field};
use super::{lock, to_py, type_name, Float, Int};
use crate::sidecar::writer::WriterError;
use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// What the writer reports, waiting for Python's `logging` (drained by `next_event`).
#[derive(Default)]
struct WriterEvents {
    queue: Mutex<VecDeque<(log::Level, String)>>,
    ready: std::sync::Condvar,
    suppressed: std::sync::atomic::AtomicU64,
    /// Closed: a waiting `next` returns at once.
    closed: std::sync::atomic::AtomicBool,
}

/// Events kept for Python; beyond this they are counted, and the count is reported.
const MAX_WRITER_EVENTS: usize = 1000;

impl WriterEvents {
    fn push(&self, level: log::Level, message: String) {
        let mut q = lock(&self.queue);
        if q.len() >= MAX_WRITER_EVENTS {
            self.suppressed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        q.push_back((level, message));
        self.ready.notify_one();
    }

    fn next(&self, timeout: Duration) -> Option<(log::Level, String)> {
        let n = self.suppressed.swap(0, std::sync::atomic::Ordering::Relaxed);
        if n > 0 {
            return Some((log::Level::Warn, format!("{n} FIFO writer message(s) suppressed (too many at once)")));
        }
        let q = lock(&self.queue);
        let (mut q, _) = self
            .ready
            .wait_timeout_while(q, timeout, |q| q.is_empty() && !self.closed.load(std::sync::atomic::Ordering::Relaxed))
            .unwrap_or_else(|e| e.into_inner());
        q.pop_front()
    }
}

/// The sidecar's FIFO writer: bars are validated and queued by the calling thread (a few hundred
/// nanoseconds, never waiting for the consumer); a Rust thread encodes and writes them.
///
/// Semantics (see the Rust module ``sidecar::writer``): non-blocking open with retry while no reader is
/// there, atomic writes of whole lines, a bounded backlog (oldest dropped, counted, and announced
/// with a ``disconnected`` status line), ``seq``/``writer`` on every line, heartbeats, and every
/// line kept until the consumer acknowledges it (up to ``unacked_bytes``): when a new consumer
/// starts, or a reader returns after EPIPE, what it has not acknowledged is re-sent.
#[pyclass(name = "FifoWriter", module = "barbridge", frozen)]
pub(crate) struct PyFifoWriter {
    pub(crate) inner: crate::sidecar::writer::FifoWriter,
    events: Arc<WriterEvents>,
}

fn level_name(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "error",
        log::Level::Warn => "warning",
        log::Level::Info => "info",
        log::Level::Debug | log::Level::Trace => "debug",
    }
}

#[pymethods]
impl PyFifoWriter {
    #[new]
    #[pyo3(signature = (path, *, writer, backlog = Int::new(100_000), heartbeat = Float(5.0), pipe_size = Int::new(1 << 20), unacked_bytes = Int::new(64 << 20), open_backoff_max = Float(1.0)))]
    #[pyo3(text_signature = "(path, *, writer, backlog=100000, heartbeat=5.0, pipe_size=1048576, unacked_bytes=67108864, open_backoff_max=1.0)")]
    fn new(
        path: PathBuf,
        writer: String,
        backlog: Int,
        heartbeat: Float,
        pipe_size: Int,
        unacked_bytes: Int,
        open_backoff_max: Float,
    ) -> PyResult<PyFifoWriter> {
        let options = crate::sidecar::writer::WriterOptions {
            writer,
            // The backlog grows with what waits, not with its bound; 0 would drop every line.
            backlog: backlog.usize("backlog", 1, usize::MAX)?,
            heartbeat: Some(heartbeat.seconds("heartbeat", true)?).filter(|d| !d.is_zero()),
            // F_SETPIPE_SZ takes a C int; the kernel's own limit is below 2**31.
            pipe_size: pipe_size.usize("pipe_size", 4096, 1 << 30)?,
            unacked_bytes: unacked_bytes.usize("unacked_bytes", 0, usize::MAX)?,
            open_backoff_max: open_backoff_max.seconds("open_backoff_max", true)?,
            ..crate::sidecar::writer::WriterOptions::default()
        };
        let events = Arc::new(WriterEvents::default());
        let sink = events.clone();
        let report: crate::sidecar::writer::Reporter = Arc::new(move |level, message| sink.push(level, message));
        Ok(PyFifoWriter { inner: crate::sidecar::writer::FifoWriter::with_reporter(path, options, report), events })
    }

    /// Create or check the FIFO (private directory, a FIFO of this user's). OSError with one
    /// sentence when it cannot be used.
    fn prepare(&self) -> PyResult<()> {
        self.inner.prepare().map_err(|e| PyOSError::new_err(e.to_string()))
    }

    /// Prepare the FIFO and start the writer thread.
    fn start(&self) -> PyResult<()> {
        self.inner.start().map_err(|e| PyOSError::new_err(e.to_string()))
    }

    /// Queue one bar (a dict with the wire field names; ``kind`` or ``type`` says whether it is
    /// an ``updated_bar``). False when it breaks the protocol's rules: then it is counted
    /// (``stats()["dropped_invalid"]``), reported and not sent.
    fn submit_bar(&self, py: Python<'_>, bar: &Bound<'_, PyAny>) -> PyResult<bool> {
        let d = bar.downcast::<PyDict>().map_err(|_| PyTypeError::new_err(format!("a bar must be a dict, not {}", type_name(bar))))?;
        let parsed = bar_kind_from_dict(py, d).and_then(|kind| bar_from_dict(py, d).map(|b| (kind, b)));
        match parsed {
            Ok((kind, (symbol, bar, source))) => Ok(self.inner.submit_bar(&symbol, bar, kind, source).is_ok()),
            Err(e) => {
                let symbol = dict_field(d, intern!(py, "symbol")).map_or_else(|| "?".to_owned(), |s| s.to_string());
                self.inner.reject(&symbol, &e);
                Ok(false)
            }
        }
    }

    /// Queue a status line. ValueError for a state the protocol does not know.
    #[pyo3(signature = (state, detail = ""))]
    fn submit_status(&self, state: &str, detail: &str) -> PyResult<()> {
        self.inner.submit_connection_state(state, detail).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Lines waiting to be written.
    fn backlog(&self) -> usize {
        self.inner.backlog()
    }

    /// Counters: lines_written, bars_written, dropped_overflow, dropped_invalid, reader_opens,
    /// reader_lost, pipe_full, replayed (lines re-sent), hole_resends (lines re-sent for the
    /// consumer's holes), acked (the consumer's acknowledged seq),
    /// unacked (lines kept for a re-send), unacked_evicted.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.stats())
    }

    /// True while the FIFO is open with a reader on the other end.
    #[getter]
    fn reader_present(&self) -> bool {
        self.inner.reader_present()
    }

    #[getter]
    fn writer(&self) -> &str {
        self.inner.writer_id()
    }

    /// The next message of the writer as ``(level, text)`` (level: "debug", "info", "warning",
    /// "error"), or None after ``timeout`` seconds without one.
    fn next_event(&self, py: Python<'_>, timeout: Float) -> PyResult<Option<(&'static str, String)>> {
        let timeout = timeout.seconds("timeout", true)?;
        let events = self.events.clone();
        Ok(py.allow_threads(move || events.next(timeout)).map(|(level, text)| (level_name(level), text)))
    }

    /// True once the writer thread has ended (closed, or stopped by an error).
    fn finished(&self) -> bool {
        self.inner.finished()
    }

    /// Wait for the writer thread to end: None when it was closed or never started, else
    /// ``(unusable, message)`` for the error that stopped it (unusable: the FIFO itself).
    fn join(&self, py: Python<'_>) -> Option<(bool, String)> {
        py.allow_threads(|| self.inner.join()).and_then(|r| r.err()).map(|e| (matches!(*e, WriterError::Unusable(_)), e.to_string()))
    }

    /// Stop, first trying for ``flush_timeout`` seconds to deliver what is pending.
    #[pyo3(signature = (flush_timeout = Float(2.0)))]
    fn close(&self, py: Python<'_>, flush_timeout: Float) -> PyResult<()> {
        let timeout = flush_timeout.seconds("flush_timeout", true)?;
        py.allow_threads(|| self.inner.close(timeout));
        let _queue = lock(&self.events.queue);
        self.events.closed.store(true, std::sync::atomic::Ordering::Relaxed);
        self.events.ready.notify_all();
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!("FifoWriter({:?}, writer={:?}, backlog={})", self.inner.path(), self.inner.writer_id(), self.inner.backlog())
    }
}
