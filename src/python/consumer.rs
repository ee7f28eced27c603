//! `Consumer` (push, query, subscribe) and `BatchResult`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyImportError, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyString, PyTuple};

use super::bar::{ingest_item, item_from_py, strip_newline, Item, PyBar};
use super::subscription::PySubscription;
use super::{config_error, lock, parse_timeout, subscription, to_py, type_name, wire_error, Float, Int};
use crate::bar::{Bar, Symbol};
use crate::consumer::health::{Clock as _, SystemClock};
use crate::consumer::journal::{FsyncPolicy, Journal};
use crate::consumer::store::Inserted;
use crate::consumer::{Consumer, Ingested, Subscription};
use crate::ops::status::{StatusReport, StatusWriter};
use crate::wire;

// ------------------------------------------------------------------------------ batches

fn outcome(i: Ingested) -> &'static str {
    match i {
        Ingested::Bar(Inserted::Appended) => "appended",
        Ingested::Bar(Inserted::InsertedOutOfOrder) => "inserted",
        Ingested::Bar(Inserted::Replaced) => "corrected",
        Ingested::Bar(Inserted::Duplicate) => "duplicate",
        Ingested::Bar(Inserted::Conflict) => "conflict",
        Ingested::Bar(Inserted::TooOld) => "too_old",
        Ingested::Bar(Inserted::SymbolBound) => "symbol_bound",
        Ingested::Filtered => "filtered",
        Ingested::Heartbeat => "heartbeat",
        Ingested::ConnectionState => "status",
        Ingested::TradingStatus(_) => "trading_status",
        Ingested::MinuteClosed => "minute_closed",
        Ingested::Ignored => "ignored",
        Ingested::Resent => "resent",
    }
}

/// What :meth:`Consumer.push_batch` did. The good bars are stored; the bad ones are listed.
///
/// Counts: ``accepted`` (new minutes), ``corrections``, ``duplicates``, ``conflicts`` (same minute,
/// different values, not sent as a correction: first report kept), ``too_old``, ``refused`` (a new
/// symbol past the store's symbol bound), ``filtered`` (not
/// in the consumer's ``symbols``), ``control`` (heartbeat / status / trading status / unknown-type /
/// blank lines),
/// ``rejected``; ``errors`` is a list of ``(index, reason_code, message)`` for the rejected items
/// (index = position in the list, or line number from 0 in a bytes batch).
#[pyclass(name = "BatchResult", module = "barbridge", frozen, get_all)]
#[derive(Debug, Default)]
pub struct BatchResult {
    accepted: u64,
    corrections: u64,
    duplicates: u64,
    conflicts: u64,
    too_old: u64,
    refused: u64,
    filtered: u64,
    control: u64,
    rejected: u64,
    errors: Vec<(usize, &'static str, String)>,
}

impl BatchResult {
    fn record(&mut self, index: usize, r: Result<Ingested, wire::WireError>) {
        match r {
            Ok(Ingested::Bar(Inserted::Appended | Inserted::InsertedOutOfOrder)) => self.accepted += 1,
            Ok(Ingested::Bar(Inserted::Replaced)) => self.corrections += 1,
            Ok(Ingested::Bar(Inserted::Duplicate) | Ingested::Resent) => self.duplicates += 1,
            Ok(Ingested::Bar(Inserted::Conflict)) => self.conflicts += 1,
            Ok(Ingested::Bar(Inserted::TooOld)) => self.too_old += 1,
            Ok(Ingested::Bar(Inserted::SymbolBound)) => self.refused += 1,
            Ok(Ingested::Filtered) => self.filtered += 1,
            Ok(Ingested::Heartbeat | Ingested::ConnectionState | Ingested::TradingStatus(_) | Ingested::MinuteClosed | Ingested::Ignored) => {
                self.control += 1
            }
            Err(e) => {
                self.rejected += 1;
                self.errors.push((index, e.reason().code(), e.to_string()));
            }
        }
    }
}

#[pymethods]
impl BatchResult {
    /// True when nothing was rejected.
    #[getter]
    fn ok(&self) -> bool {
        self.rejected == 0
    }

    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("accepted", self.accepted)?;
        d.set_item("corrections", self.corrections)?;
        d.set_item("duplicates", self.duplicates)?;
        d.set_item("conflicts", self.conflicts)?;
        d.set_item("too_old", self.too_old)?;
        d.set_item("refused", self.refused)?;
        d.set_item("filtered", self.filtered)?;
        d.set_item("control", self.control)?;
        d.set_item("rejected", self.rejected)?;
        d.set_item("errors", self.errors.clone())?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "BatchResult(accepted={}, corrections={}, duplicates={}, conflicts={}, too_old={}, refused={}, filtered={}, control={}, rejected={}, errors={:?})",
            self.accepted,
            self.corrections,
            self.duplicates,
            self.conflicts,
            self.too_old,
            self.refused,
            self.filtered,
            self.control,
            self.rejected,
            self.errors.iter().take(3).collect::<Vec<_>>()
        )
    }
}

fn ingest_lines(consumer: &Consumer, data: &[u8], result: &mut BatchResult) {
    let mut start = 0;
    let mut index = 0;
    for end in memchr::memchr_iter(b'\n', data) {
        result.record(index, consumer.ingest_line(&data[start..end]));
        start = end + 1;
        index += 1;
    }
    if start < data.len() {
        result.record(index, consumer.ingest_line(&data[start..]));
    }
}

// ---------------------------------------------------------------------------- Consumer

/// The bar consumer: validates, dedupes and stores bars per symbol, tracks feed health and
/// delivers new bars to subscribers. The same pipeline as ``barbridge run`` (the Rust CLI).
///
/// Args:
///     capacity_per_symbol: bars kept per symbol (oldest evicted first).
///     stale_after: seconds without any input before health says ``stale``.
///     symbols: accept only these symbols (others are counted as ``filtered``); None = all.
///     status_file: rewrite this JSON status file every second (``barbridge status
///         --status-file PATH`` reads it); written once more on :meth:`close`.
///     echo: print every accepted bar (after dedupe; corrections again) to stdout as one wire
///         line, like ``barbridge run --echo``.
///     journal: a directory: append every accepted bar to ``bars-YYYY-MM-DD.jsonl`` (New York
///         trading day), written after every push / batch, and load today's file into the store
///         at start (like ``barbridge run --journal``).
///     fsync: journal fsync policy: ``"interval"`` (at most once a second), ``"always"``,
///         ``"never"``.
///
/// Thread-safe: any number of Python threads may push and query concurrently.
#[pyclass(name = "Consumer", module = "barbridge", frozen)]
pub struct PyConsumer {
    pub(crate) inner: Arc<Consumer>,
    status: Mutex<Option<StatusWriter>>,
    echo: Mutex<Option<crate::consumer::Echo>>,
    status_file: Option<PathBuf>,
    /// The metrics/page server started by `serve_metrics`.
    http: Mutex<Option<crate::ops::http::HttpServer>>,
}

impl PyConsumer {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn build(
        capacity_per_symbol: Int,
        stale_after: Float,
        symbols: Option<Vec<String>>,
        status_file: Option<PathBuf>,
        echo: bool,
        journal: Option<PathBuf>,
        fsync: &str,
        fifo: Option<PathBuf>,
        max_symbols: Int,
        max_clock_skew: Float,
    ) -> PyResult<(PyConsumer, Arc<Consumer>)> {
        let stale_after = stale_after.seconds("stale_after", true)?;
        let capacity_per_symbol = capacity_per_symbol.usize("capacity_per_symbol", 0, usize::MAX)?;
        let max_symbols = max_symbols.usize("max_symbols", 0, usize::MAX)?;
        let max_clock_skew = max_clock_skew.seconds("max_clock_skew", true)?;
        let policy = match fsync {
            "always" => FsyncPolicy::Always,
            "interval" => FsyncPolicy::default(),
            "never" => FsyncPolicy::Never,
            other => return Err(PyValueError::new_err(format!("fsync must be \"always\", \"interval\" or \"never\", got {other:?}"))),
        };
        let mut builder = Consumer::builder()
            .capacity_per_symbol(capacity_per_symbol)
            .stale_after(stale_after)
            .symbols(symbols.unwrap_or_default())
            .max_symbols(max_symbols)
            .max_clock_skew(max_clock_skew);
        if let Some(dir) = journal {
            let j = Journal::open(dir, policy).map_err(|e| PyOSError::new_err(e.to_string()))?;
            builder = builder.journal(j);
        }
        let consumer = builder.build().map_err(config_error)?;
        // Resume warm, like `barbridge run --journal`: today's bars are back in the store.
        consumer.resume_from_journal(SystemClock.now_ms());
        let echo = echo.then(|| consumer.echo_to_stdout());
        let status = status_file
            .as_ref()
            .map(|path| StatusWriter::start(consumer.clone(), path.clone(), fifo, Duration::from_secs(1)))
            .transpose()
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        let py_consumer =
            PyConsumer { inner: consumer.clone(), status: Mutex::new(status), echo: Mutex::new(echo), status_file, http: Mutex::new(None) };
        Ok((py_consumer, consumer))
    }

    pub(super) fn stop_status(&self, py: Python<'_>) {
        if let Some(writer) = lock(&self.status).take() {
            py.allow_threads(|| writer.stop());
        }
        if let Some(echo) = lock(&self.echo).take() {
            py.allow_threads(|| echo.finish(Duration::from_secs(2)));
        }
        if let Some(http) = lock(&self.http).take() {
            py.allow_threads(|| http.stop());
        }
    }

    fn bars(&self, symbol: &str, n: Option<usize>, from_ms: Option<i64>, to_ms: Option<i64>) -> Vec<Bar> {
        let store = self.inner.store();
        let mut bars = if from_ms.is_some() || to_ms.is_some() {
            store.range(symbol, from_ms.unwrap_or(i64::MIN), to_ms.unwrap_or(i64::MAX))
        } else {
            store.last_n(symbol, n.unwrap_or(usize::MAX))
        };
        if let Some(n) = n {
            let skip = bars.len().saturating_sub(n);
            bars.drain(..skip);
        }
        bars
    }
}

#[pymethods]
impl PyConsumer {
    #[new]
    #[pyo3(signature = (capacity_per_symbol = Int::new(10_000), stale_after = Float(120.0), symbols = None, status_file = None, echo = false, journal = None, fsync = "interval", max_symbols = Int::new(crate::consumer::store::DEFAULT_MAX_SYMBOLS as i128), max_clock_skew = Float(300.0)))]
    #[pyo3(
        text_signature = "(capacity_per_symbol=10000, stale_after=120.0, symbols=None, status_file=None, echo=False, journal=None, fsync='interval', max_symbols=20000, max_clock_skew=300.0)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        capacity_per_symbol: Int,
        stale_after: Float,
        symbols: Option<Vec<String>>,
        status_file: Option<PathBuf>,
        echo: bool,
        journal: Option<PathBuf>,
        fsync: &str,
        max_symbols: Int,
        max_clock_skew: Float,
    ) -> PyResult<PyConsumer> {
        Ok(PyConsumer::build(capacity_per_symbol, stale_after, symbols, status_file, echo, journal, fsync, None, max_symbols, max_clock_skew)?.0)
    }

    /// Push one bar: a dict with the wire field names, a wire JSON line (str or bytes, trailing
    /// newline optional; heartbeat and status lines are accepted too) or a :class:`Bar`.
    ///
    /// Returns what happened: ``"appended"``, ``"inserted"`` (older than the newest bar, put in
    /// time order), ``"corrected"``, ``"duplicate"``, ``"conflict"`` (same minute, different values,
    /// not sent as ``updated_bar``: the first report is kept), ``"too_old"``, ``"symbol_bound"`` (a new
    /// symbol past the store's symbol bound: not stored, counted), ``"filtered"``,
    /// ``"heartbeat"``, ``"status"`` or ``"ignored"``.
    ///
    /// Raises :class:`WireError` (a ValueError naming the field) for a bar that breaks the
    /// protocol; it is counted as a reject in :meth:`stats` like a bad FIFO line.
    fn push(&self, py: Python<'_>, bar: &Bound<'_, PyAny>) -> PyResult<&'static str> {
        let item = item_from_py(py, bar)?;
        let result = ingest_item(&self.inner, &item);
        self.inner.flush();
        result.map(outcome).map_err(|e| wire_error(py, &e))
    }

    /// Push one wire line (str or bytes). Same as :meth:`push` for a line.
    fn push_line(&self, py: Python<'_>, line: &Bound<'_, PyAny>) -> PyResult<&'static str> {
        let result = if let Ok(b) = line.downcast::<PyBytes>() {
            self.inner.ingest_line(strip_newline(b.as_bytes()))
        } else if let Ok(s) = line.downcast::<PyString>() {
            let text = s.to_cow()?;
            self.inner.ingest_line(strip_newline(text.as_bytes()))
        } else {
            return Err(PyTypeError::new_err(format!("push_line() takes a str or bytes, not {}", type_name(line))));
        };
        self.inner.flush();
        result.map(outcome).map_err(|e| wire_error(py, &e))
    }

    /// Push many bars in one call, without holding the GIL while they are ingested.
    ///
    /// ``bars`` is either bytes (or str) holding ``\n``-separated wire lines, or a list/iterable
    /// of items :meth:`push` accepts. Bad items do not stop the batch: the good ones are stored
    /// and the returned :class:`BatchResult` lists the bad ones.
    fn push_batch(&self, py: Python<'_>, bars: &Bound<'_, PyAny>) -> PyResult<BatchResult> {
        let mut result = BatchResult::default();
        let consumer = &self.inner;
        if let Ok(b) = bars.downcast::<PyBytes>() {
            let data = b.as_bytes();
            py.allow_threads(|| {
                ingest_lines(consumer, data, &mut result);
                consumer.flush();
            });
            return Ok(result);
        }
        if let Ok(s) = bars.downcast::<PyString>() {
            let text = s.to_cow()?;
            let data = text.as_bytes();
            py.allow_threads(|| {
                ingest_lines(consumer, data, &mut result);
                consumer.flush();
            });
            return Ok(result);
        }
        if let Ok(b) = bars.downcast::<PyByteArray>() {
            let data = b.to_vec();
            py.allow_threads(|| {
                ingest_lines(consumer, &data, &mut result);
                consumer.flush();
            });
            return Ok(result);
        }
        // A length hint is only a hint: an object may claim any __len__.
        let mut items = Vec::with_capacity(bars.len().unwrap_or(0).min(1 << 16));
        for obj in bars.try_iter()? {
            // An item that is no bar at all (an int, an unserialisable dict) is one bad row too.
            items.push(item_from_py(py, &obj?).unwrap_or_else(|e| Item::Bad(wire::WireError::WrongType { detail: e.to_string() })));
        }
        py.allow_threads(|| {
            for (i, item) in items.iter().enumerate() {
                result.record(i, ingest_item(consumer, item));
            }
            consumer.flush();
        });
        Ok(result)
    }

    /// The newest bar of ``symbol``, or None.
    pub(super) fn latest(&self, symbol: &str) -> Option<PyBar> {
        let bar = self.inner.store().latest(symbol)?;
        Some(PyBar::stored(&Arc::from(symbol), bar))
    }

    /// The newest ``n`` bars of ``symbol``, oldest first.
    pub(super) fn last_n(&self, symbol: &str, n: Int) -> PyResult<Vec<PyBar>> {
        let n = n.usize("n", 0, usize::MAX)?;
        let name: Symbol = Arc::from(symbol);
        Ok(self.inner.store().last_n(symbol, n).into_iter().map(|b| PyBar::stored(&name, b)).collect())
    }

    /// Bars of ``symbol`` with ``from_ms <= timestamp_ms < to_ms``, oldest first.
    fn range(&self, symbol: &str, from_ms: Int, to_ms: Int) -> PyResult<Vec<PyBar>> {
        let (from_ms, to_ms) = (from_ms.i64("from_ms")?, to_ms.i64("to_ms")?);
        let name: Symbol = Arc::from(symbol);
        Ok(self.inner.store().range(symbol, from_ms, to_ms).into_iter().map(|b| PyBar::stored(&name, b)).collect())
    }

    /// Every symbol that has bars, sorted.
    fn symbols(&self) -> Vec<String> {
        self.inner.store().symbols().iter().map(|s| s.to_string()).collect()
    }

    /// Number of bars stored for ``symbol``.
    fn count(&self, symbol: &str) -> usize {
        self.inner.store().len(symbol)
    }

    /// Total bars stored over all symbols.
    fn __len__(&self) -> usize {
        self.inner.store().total_len()
    }

    fn __contains__(&self, symbol: &str) -> bool {
        self.inner.store().len(symbol) > 0
    }

    /// Bars of ``symbol`` as columns: a dict of lists keyed ``timestamp_ms``, ``open``, ``high``,
    /// ``low``, ``close``, ``volume``, ``vwap``, ``trade_count``, oldest first.
    ///
    /// Without arguments: every stored bar; ``from_ms``/``to_ms``: the range
    /// ``from_ms <= timestamp_ms < to_ms`` (either bound may be omitted); ``n``: only the newest
    /// ``n`` of those. ``numpy=True`` returns numpy arrays instead of lists (``timestamp_ms``
    /// int64, every other column float64); numpy is imported only then (ImportError if it is not
    /// installed). An absent ``vwap`` or ``trade_count`` is None in a list and NaN in an array
    /// (as pandas marks a missing value), never 0.
    #[pyo3(signature = (symbol, n = None, from_ms = None, to_ms = None, numpy = false))]
    fn columns<'py>(
        &self,
        py: Python<'py>,
        symbol: &str,
        n: Option<Int>,
        from_ms: Option<Int>,
        to_ms: Option<Int>,
        numpy: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let n = n.map(|n| n.usize("n", 0, usize::MAX)).transpose()?;
        let from_ms = from_ms.map(|t| t.i64("from_ms")).transpose()?;
        let to_ms = to_ms.map(|t| t.i64("to_ms")).transpose()?;
        let np = if numpy {
            Some(py.import("numpy").map_err(|e| {
                PyImportError::new_err(format!(
                    "columns(numpy=True) needs numpy, which is not importable ({e}); pip install numpy, or use numpy=False for lists"
                ))
            })?)
        } else {
            None
        };
        let bars = self.bars(symbol, n, from_ms, to_ms);
        let d = PyDict::new(py);
        type Column = (&'static str, fn(&Bar) -> f64);
        let f64_cols: [Column; 5] =
            [("open", |b| b.open), ("high", |b| b.high), ("low", |b| b.low), ("close", |b| b.close), ("volume", |b| b.volume)];
        match np {
            None => {
                d.set_item("timestamp_ms", PyList::new(py, bars.iter().map(|b| b.timestamp_ms))?)?;
                for (name, get) in f64_cols {
                    d.set_item(name, PyList::new(py, bars.iter().map(get))?)?;
                }
                d.set_item("vwap", PyList::new(py, bars.iter().map(|b| b.vwap))?)?;
                d.set_item("trade_count", PyList::new(py, bars.iter().map(|b| b.trade_count))?)?;
            }
            Some(np) => {
                let array = |bytes: Vec<u8>, dtype: &str| -> PyResult<Bound<'py, PyAny>> {
                    // A bytearray backs a writable array; one copy, no per-element objects.
                    np.call_method1("frombuffer", (PyByteArray::new(py, &bytes), dtype))
                };
                let ts: Vec<u8> = bars.iter().flat_map(|b| b.timestamp_ms.to_ne_bytes()).collect();
                d.set_item("timestamp_ms", array(ts, "int64")?)?;
                for (name, get) in f64_cols {
                    let col: Vec<u8> = bars.iter().flat_map(|b| get(b).to_ne_bytes()).collect();
                    d.set_item(name, array(col, "float64")?)?;
                }
                let missing_nan = |v: Option<f64>| v.unwrap_or(f64::NAN).to_ne_bytes();
                let vwap: Vec<u8> = bars.iter().flat_map(|b| missing_nan(b.vwap)).collect();
                d.set_item("vwap", array(vwap, "float64")?)?;
                let tc: Vec<u8> = bars.iter().flat_map(|b| missing_nan(b.trade_count.map(|n| n as f64))).collect();
                d.set_item("trade_count", array(tc, "float64")?)?;
            }
        }
        Ok(d)
    }

    /// Stored bars as a pandas DataFrame, as alpaca-py's ``BarSet.df``: indexed by
    /// (``symbol``, ``timestamp``) with ``timestamp`` timezone-aware (UTC), columns ``open``,
    /// ``high``, ``low``, ``close``, ``volume``, ``vwap`` (float64, NaN where absent) and
    /// ``trade_count`` (nullable ``Int64``, ``<NA>`` where absent); symbols in sorted order, each
    /// oldest first. ``symbols`` (default: every stored symbol), ``n``, ``from_ms`` and ``to_ms``
    /// select as in :meth:`columns`. ImportError naming pandas when it is not installed.
    #[pyo3(signature = (symbols = None, n = None, from_ms = None, to_ms = None))]
    fn df<'py>(
        &self,
        py: Python<'py>,
        symbols: Option<Vec<String>>,
        n: Option<Int>,
        from_ms: Option<Int>,
        to_ms: Option<Int>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let pd = py
            .import("pandas")
            .map_err(|e| PyImportError::new_err(format!("df() needs pandas, which is not importable ({e}); pip install pandas, or use columns()")))?;
        let n = n.map(|n| n.usize("n", 0, usize::MAX)).transpose()?;
        let from_ms = from_ms.map(|t| t.i64("from_ms")).transpose()?;
        let to_ms = to_ms.map(|t| t.i64("to_ms")).transpose()?;
        let mut symbols = symbols.unwrap_or_else(|| self.symbols());
        symbols.sort();
        symbols.dedup();
        let mut rows: Vec<(usize, Bar)> = Vec::new();
        for (i, symbol) in symbols.iter().enumerate() {
            rows.extend(self.bars(symbol, n, from_ms, to_ms).into_iter().map(|b| (i, b)));
        }
        let data = PyDict::new(py);
        data.set_item("symbol", PyList::new(py, rows.iter().map(|(i, _)| symbols[*i].as_str()))?)?;
        let ts = PyList::new(py, rows.iter().map(|(_, b)| b.timestamp_ms))?;
        let to_datetime = pd.getattr("to_datetime")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("unit", "ms")?;
        kwargs.set_item("utc", true)?;
        data.set_item("timestamp", to_datetime.call((ts,), Some(&kwargs))?)?;
        type Column = (&'static str, fn(&Bar) -> f64);
        let f64_cols: [Column; 5] =
            [("open", |b| b.open), ("high", |b| b.high), ("low", |b| b.low), ("close", |b| b.close), ("volume", |b| b.volume)];
        let float64 = |values: Vec<f64>| -> PyResult<Bound<'py, PyAny>> {
            let kwargs = PyDict::new(py);
            kwargs.set_item("dtype", "float64")?;
            pd.getattr("array")?.call((PyList::new(py, values)?,), Some(&kwargs))
        };
        for (name, get) in f64_cols {
            data.set_item(name, float64(rows.iter().map(|(_, b)| get(b)).collect())?)?;
        }
        data.set_item("vwap", float64(rows.iter().map(|(_, b)| b.vwap.unwrap_or(f64::NAN)).collect())?)?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("dtype", "Int64")?;
        data.set_item("trade_count", pd.getattr("array")?.call((PyList::new(py, rows.iter().map(|(_, b)| b.trade_count))?,), Some(&kwargs))?)?;
        let frame = pd.getattr("DataFrame")?.call1((data,))?;
        frame.call_method1("set_index", (PyList::new(py, ["symbol", "timestamp"])?,))
    }

    /// The counters (dict): ``lines``, ``bars_accepted``, ``corrections``, ``duplicates``,
    /// ``conflicts``, ``too_old``, ``filtered``, ``heartbeats``, ``status_lines``,
    /// ``unknown_types``, ``rejects_total``, ``rejects`` (per reason code), ``seq_gaps``,
    /// ``lines_lost``, ``writer_sessions``, ``reconnects``, ``disconnects``, ``stale_episodes``,
    /// ``delivery_drops``.
    pub(super) fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.health().counters.snapshot())
    }

    /// The counters (as :meth:`stats`: one table), among them the minute barrier's:
    /// ``minutes_closed``, ``minutes_incomplete``, ``minute_parts``, ``minute_duplicates``,
    /// ``minute_rejected``, ``minute_parts_evicted``, ``minute_delivery_drops``, ``late_bars``,
    /// ``quiet_marks``, ``quiet_rejected``, ``last_minute_ms``.
    fn minute_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.stats(py)
    }

    /// Feed health (dict): ``state`` (``waiting`` / ``live`` / ``stale``), times (UTC epoch ms),
    /// the sidecar's last reported ``status``, ``counters`` (as :meth:`stats`) and per-symbol
    /// ``symbols`` (bars, last bar time, last arrival). Re-evaluates staleness first.
    fn health<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.inner.health().tick();
        to_py(py, &self.inner.health_snapshot())
    }

    /// Symbols not trading now (dict): symbol → ``{"state": "halted"|"paused"|"quoting",
    /// "since_ms", "code", "reason"}`` (Alpaca's trading statuses; a halted symbol sends no bars).
    /// A halted symbol the minute barrier's latest closed minute no longer lists (unsubscribed) is
    /// left out; its history stays in :meth:`halts`.
    fn halted<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.halted_now())
    }

    /// ``symbol``'s recent times without trading (list of dicts, oldest first): ``start_ms``,
    /// ``end_ms`` (None while it lasts), ``code``, ``reason``.
    fn halts<'py>(&self, py: Python<'py>, symbol: &str) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.trading().halts(symbol))
    }

    /// The status report (dict), as written to the status file: health, stored bars per symbol,
    /// subscribers.
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.inner.health().tick();
        to_py(py, &StatusReport::collect(&self.inner, None))
    }

    /// The status file path given at construction, or None.
    #[getter]
    fn status_file(&self) -> Option<PathBuf> {
        self.status_file.clone()
    }

    /// Subscribe to new bars (new minutes and corrections; not duplicates) as they are pushed
    /// or read from a FIFO. Returns a :class:`Subscription`, an iterator whose ``next()`` waits
    /// without holding the GIL (Ctrl-C interrupts it).
    ///
    /// Args:
    ///     symbols: only these symbols; None = all.
    ///     capacity: bars buffered for a slow reader (1 to 4,194,304); when full the oldest is
    ///         dropped (and counted in ``dropped`` and ``stats()['delivery_drops']``).
    ///     timeout: seconds ``next()`` waits for a bar before ending the iteration; None = forever.
    ///     minutes: yield :class:`MinuteClosed` events too, each after the bars it covers.
    #[pyo3(signature = (symbols = None, capacity = Int::new(65_536), timeout = None, minutes = false))]
    fn subscribe(
        &self,
        py: Python<'_>,
        symbols: Option<Vec<String>>,
        capacity: Int,
        timeout: Option<Float>,
        minutes: bool,
    ) -> PyResult<PySubscription> {
        let timeout = parse_timeout(timeout)?;
        let sub = match symbols {
            Some(s) => Subscription::symbols(s).map_err(config_error)?,
            None => Subscription::all(),
        };
        let sub = subscription(sub, "capacity", capacity)?.name("python");
        let consumer = self.inner.clone();
        let rx = py.allow_threads(|| consumer.subscribe(sub));
        let sub = PySubscription::new(rx, timeout, self.inner.clone());
        Ok(if minutes { sub.with_minutes(self.inner.subscribe_minutes(4096)) } else { sub })
    }

    /// Serve ``/metrics`` (Prometheus), ``/status.json`` and the live page on ``addr``
    /// (``HOST:PORT``; port 0 picks a free one), like ``barbridge run --metrics-addr``, until
    /// :meth:`close`. Returns the port. ``max_symbol_labels``: symbols given a ``symbol`` label.
    /// Raises OSError when the address cannot be used, RuntimeError when already serving.
    #[pyo3(signature = (addr, max_symbol_labels = Int::new(crate::ops::metrics::DEFAULT_MAX_SYMBOL_LABELS as i128)))]
    fn serve_metrics(&self, addr: &str, max_symbol_labels: Int) -> PyResult<u16> {
        let max_symbol_labels = max_symbol_labels.usize("max_symbol_labels", 0, usize::MAX)?;
        let mut slot = lock(&self.http);
        if slot.is_some() {
            return Err(PyRuntimeError::new_err("this Consumer serves metrics already"));
        }
        let options = crate::ops::http::HttpOptions { metrics: crate::ops::metrics::MetricsOptions { max_symbol_labels }, fifo: None };
        let server = crate::ops::http::HttpServer::start(self.inner.clone(), addr, options).map_err(|e| PyOSError::new_err(e.to_string()))?;
        let port = server.local_addr().port();
        *slot = Some(server);
        Ok(port)
    }

    /// Stop the status file writer (after one final write), the metrics server, and flush the
    /// journal. Queries keep working.
    fn close(&self, py: Python<'_>) {
        self.inner.flush();
        self.stop_status(py);
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> bool {
        self.stop_status(py);
        false
    }

    fn __repr__(&self) -> String {
        let store = self.inner.store();
        format!(
            "<barbridge.Consumer: {} symbol{}, {} bar{}, state {:?}>",
            store.symbols().len(),
            if store.symbols().len() == 1 { "" } else { "s" },
            store.total_len(),
            if store.total_len() == 1 { "" } else { "s" },
            self.inner.health().state()
        )
    }
}

impl Drop for PyConsumer {
    fn drop(&mut self) {
        if let Some(writer) = lock(&self.status).take() {
            writer.stop();
        }
        if let Some(echo) = lock(&self.echo).take() {
            echo.finish(Duration::from_secs(2));
        }
    }
}
