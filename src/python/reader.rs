//! `FifoReader`: the consumer's end of the FIFO, read on a Rust thread.

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::bar::PyBar;
use super::consumer::PyConsumer;
use super::subscription::PySubscription;
use super::{lock, parse_timeout, subscription, Float, Int};
use crate::consumer::{FeedOptions, FifoFeed, Subscription};

/// Read bars from a FIFO written by the sidecar: ``for bar in barbridge.FifoReader(path): ...``.
///
/// The reader thread is Rust's (the same as ``barbridge run``): it never blocks shutdown,
/// survives writers coming and going, and validates, dedupes and stores every line in
/// :attr:`consumer` (query it for history while iterating). Iteration yields each new bar
/// (corrections again, with ``correction=True``); it waits with the GIL released, and Ctrl-C
/// raises KeyboardInterrupt in the iterating thread. :meth:`close` (or leaving a ``with``
/// block, or dropping the reader) stops the thread.
///
/// Args:
///     path: the FIFO; created (mode 0600, directory 0700) if absent, refused if it is not a
///         FIFO, a symlink, another user's, or in a directory others can write to (OSError).
///     symbols, stale_after, capacity_per_symbol, status_file, echo, journal, fsync: as for
///         :class:`Consumer` (ignored when ``consumer`` is given).
///     consumer: an existing :class:`Consumer` to feed instead of a new one.
///     once: end the iteration when the first writer session ends (batch loads, tests).
///     timeout: seconds to wait for a bar before ending the iteration; None = forever.
///     capacity: bars buffered for the iterator when it falls behind (oldest dropped first;
///         1 to 4,194,304).
#[pyclass(name = "FifoReader", module = "barbridge", frozen)]
pub struct PyFifoReader {
    consumer: Py<PyConsumer>,
    owns_consumer: bool,
    feed: Mutex<Option<FifoFeed>>,
    sub: PySubscription,
    path: PathBuf,
}

impl PyFifoReader {
    fn finished(&self) -> bool {
        lock(&self.feed).as_ref().is_none_or(|f| f.is_finished())
    }

    /// Stop and join the reader thread; its error, if it ended with one.
    fn shutdown(&self, py: Python<'_>) -> PyResult<()> {
        let feed = lock(&self.feed).take();
        if let Some(feed) = feed {
            feed.stop();
            py.allow_threads(|| feed.join()).map_err(|e| PyOSError::new_err(e.to_string()))?;
        }
        Ok(())
    }
}

#[pymethods]
impl PyFifoReader {
    #[new]
    #[pyo3(signature = (path, symbols = None, stale_after = Float(120.0), capacity_per_symbol = Int::new(10_000), status_file = None, echo = false, consumer = None, once = false, timeout = None, capacity = Int::new(65_536), journal = None, fsync = "interval"))]
    #[pyo3(
        text_signature = "(path, symbols=None, stale_after=120.0, capacity_per_symbol=10000, status_file=None, echo=False, consumer=None, once=False, timeout=None, capacity=65536, journal=None, fsync='interval')"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        symbols: Option<Vec<String>>,
        stale_after: Float,
        capacity_per_symbol: Int,
        status_file: Option<PathBuf>,
        echo: bool,
        consumer: Option<Py<PyConsumer>>,
        once: bool,
        timeout: Option<Float>,
        capacity: Int,
        journal: Option<PathBuf>,
        fsync: &str,
    ) -> PyResult<PyFifoReader> {
        let timeout = parse_timeout(timeout)?;
        let sub = subscription(Subscription::all(), "capacity", capacity)?.name("FifoReader");
        let owns_consumer = consumer.is_none();
        let consumer = match consumer {
            Some(c) => c,
            None => {
                let (c, _) = PyConsumer::build(
                    capacity_per_symbol,
                    stale_after,
                    symbols,
                    status_file,
                    echo,
                    journal,
                    fsync,
                    Some(path.clone()),
                    Int::new(crate::consumer::store::DEFAULT_MAX_SYMBOLS as i128),
                    Float(crate::consumer::DEFAULT_MAX_CLOCK_SKEW.as_secs_f64()),
                )?;
                Py::new(py, c)?
            }
        };
        let inner = consumer.get().inner.clone();
        // Subscribe before the reader starts: no bar can slip past the iterator.
        let rx = py.allow_threads(|| inner.subscribe(sub));
        let options = FeedOptions { stop_when_writers_gone: once, ..FeedOptions::default() };
        let feed = FifoFeed::start(inner.clone(), &path, options).map_err(|e| PyOSError::new_err(e.to_string()))?;
        Ok(PyFifoReader { consumer, owns_consumer, feed: Mutex::new(Some(feed)), sub: PySubscription::new(rx, timeout, inner), path })
    }

    /// The :class:`Consumer` the reader feeds (store, stats, health).
    #[getter]
    fn consumer(&self, py: Python<'_>) -> Py<PyConsumer> {
        self.consumer.clone_ref(py)
    }

    /// The FIFO path.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// True while the reader thread runs.
    #[getter]
    fn running(&self) -> bool {
        !self.finished()
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyBar>> {
        let next = self.sub.next_event(py, self.sub.timeout, &|| self.finished())?;
        if next.is_none() && self.finished() {
            self.shutdown(py)?; // raises the reader's error, if it failed
        }
        Ok(next)
    }

    /// Wait up to ``timeout`` seconds (None = the reader's timeout) for the next bar; None if
    /// none came.
    #[pyo3(signature = (timeout = None))]
    fn get(&self, py: Python<'_>, timeout: Option<Float>) -> PyResult<Option<PyBar>> {
        let timeout = parse_timeout(timeout)?.or(self.sub.timeout);
        self.sub.next_event(py, timeout, &|| self.finished())
    }

    /// Stop the reader thread and wait for it (at most one poll interval, 0.1 s); stops the
    /// status file writer of a consumer the reader created. Raises OSError if the reader had
    /// failed. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let result = self.shutdown(py);
        self.sub.unsubscribe();
        if self.owns_consumer {
            self.consumer.get().stop_status(py);
        }
        result
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    // Query shortcuts on the reader's consumer.

    /// ``consumer.latest(symbol)``.
    fn latest(&self, symbol: &str) -> Option<PyBar> {
        self.consumer.get().latest(symbol)
    }
    /// ``consumer.last_n(symbol, n)``.
    fn last_n(&self, symbol: &str, n: Int) -> PyResult<Vec<PyBar>> {
        self.consumer.get().last_n(symbol, n)
    }
    /// ``consumer.stats()``.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.consumer.get().stats(py)
    }

    fn __repr__(&self) -> String {
        format!("<barbridge.FifoReader {} ({})>", self.path.display(), if self.finished() { "stopped" } else { "running" })
    }
}

impl Drop for PyFifoReader {
    fn drop(&mut self) {
        // Never join here (we may hold the GIL); the thread sees the flag within a poll interval.
        if let Some(feed) = lock(&self.feed).take() {
            feed.stop();
        }
    }
}
