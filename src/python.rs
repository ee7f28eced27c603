//! Python bindings (feature `python`): the extension module `barbridge`, built by maturin
//! (`pyproject.toml`). Everything here is a thin layer over the crate's own types: bars enter
//! through [`Consumer::ingest_line`] / [`Consumer::ingest_bar`] (same validation, dedupe,
//! corrections, counters and delivery as the FIFO path), queries read the [`crate::BarStore`],
//! and [`FifoFeed`] runs the FIFO reader thread. Nothing is parsed, validated or stored twice.
//!
//! GIL policy: batch pushes, waits for new bars and joins release the GIL; single pushes and
//! queries hold it (they take well under a microsecond). No Rust thread ever calls into Python,
//! so there is no lock-order hazard between the GIL and the consumer's internal locks.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use pyo3::exceptions::{PyImportError, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::{intern, IntoPyObjectExt};

use crate::bar::{Bar, BarKind, Source, Symbol};
use crate::feed::{BarEvent, BarReceiver, Consumer, FeedOptions, FifoFeed, Ingested, Subscription};
use crate::health::{Clock as _, SystemClock};
use crate::journal::{FsyncPolicy, Journal};
use crate::status::{StatusReport, StatusWriter};
use crate::store::Inserted;
use crate::wire;

/// How long a blocking wait holds off before looking at signals (Ctrl-C) again.
const WAIT_SLICE: Duration = Duration::from_millis(50);

/// Longest duration any argument may give, in seconds (about 31 years; None waits forever where a
/// wait is meant). Keeps every deadline computed from it far from overflowing.
const MAX_SECONDS: f64 = 1e9;

// --------------------------------------------------------------------------- numeric arguments
//
// Every numeric argument is taken as it comes from Python and checked here, so that a value out
// of range raises ValueError naming the argument. pyo3's own conversions raise OverflowError, and
// a value that converts but is absurd (a capacity of 10**12, a timeout of 1e300 s) must never
// reach an allocation that aborts or a `Duration` constructor that panics.

/// A Python int of any size (not a bool); `None` inside when it does not fit in 128 bits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Int(Option<i128>);

impl Int {
    const fn new(v: i128) -> Int {
        Int(Some(v))
    }

    /// The value if it lies in `min..=max`, else ValueError naming `name`.
    fn within(self, name: &str, min: i128, max: i128) -> PyResult<i128> {
        match self.0 {
            Some(v) if (min..=max).contains(&v) => Ok(v),
            Some(v) => Err(PyValueError::new_err(format!("{name} must be an integer from {min} to {max}, got {v}"))),
            None => Err(PyValueError::new_err(format!("{name} must be an integer from {min} to {max}, got a larger one"))),
        }
    }

    pub(crate) fn usize(self, name: &str, min: usize, max: usize) -> PyResult<usize> {
        let v = self.within(name, min as i128, max as i128)?;
        usize::try_from(v).map_err(|_| PyValueError::new_err(format!("{name} is out of range: {v}")))
    }

    fn i64(self, name: &str) -> PyResult<i64> {
        let v = self.within(name, i128::from(i64::MIN), i128::from(i64::MAX))?;
        i64::try_from(v).map_err(|_| PyValueError::new_err(format!("{name} is out of range: {v}")))
    }
}

impl<'py> FromPyObject<'py> for Int {
    fn extract_bound(obj: &Bound<'py, PyAny>) -> PyResult<Int> {
        if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() {
            return Err(PyTypeError::new_err(format!("expected an int, got {}", type_name(obj))));
        }
        Ok(Int(obj.extract::<i128>().ok()))
    }
}

/// A Python float or int as f64 (not a bool); an int too large for a float is +-infinity, so
/// that the range check, not the conversion, words the error.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Float(f64);

impl<'py> FromPyObject<'py> for Float {
    fn extract_bound(obj: &Bound<'py, PyAny>) -> PyResult<Float> {
        if obj.is_instance_of::<PyBool>() || !(obj.is_instance_of::<PyFloat>() || obj.is_instance_of::<PyInt>()) {
            return Err(PyTypeError::new_err(format!("expected a number, got {}", type_name(obj))));
        }
        match obj.extract::<f64>() {
            Ok(v) => Ok(Float(v)),
            Err(_) => Ok(Float(if obj.lt(0)? { f64::NEG_INFINITY } else { f64::INFINITY })),
        }
    }
}

impl Float {
    /// A duration in seconds: finite, at most [`MAX_SECONDS`], `> 0` (or `>= 0` if `zero_ok`).
    pub(crate) fn seconds(self, name: &str, zero_ok: bool) -> PyResult<Duration> {
        let v = self.0;
        let low_ok = if zero_ok { v >= 0.0 } else { v > 0.0 };
        if low_ok && v <= MAX_SECONDS {
            if let Ok(d) = Duration::try_from_secs_f64(v) {
                return Ok(d);
            }
        }
        let low = if zero_ok { ">= 0" } else { "> 0" };
        Err(PyValueError::new_err(format!("{name} must be a number of seconds {low} and <= {MAX_SECONDS:e}, got {v}")))
    }
}

/// An optional timeout: None waits forever.
fn parse_timeout(timeout: Option<Float>) -> PyResult<Option<Duration>> {
    timeout.map(|t| t.seconds("timeout", true)).transpose()
}

/// `sub` with the buffer a Python argument asks for: ValueError for 0 or beyond the library's
/// bound (the buffer is allocated up front).
fn subscription(sub: Subscription, name: &str, capacity: Int) -> PyResult<Subscription> {
    let n = capacity.usize(name, 1, crate::capacity::MAX_SUBSCRIPTION_CAPACITY)?;
    sub.capacity(n).map_err(|e| PyValueError::new_err(format!("{name}: {e}")))
}

/// Symbols given by the user, by the wire protocol's symbol rule.
fn check_symbols(symbols: &[String]) -> PyResult<()> {
    match symbols.iter().find_map(|s| wire::validate_symbol(s).err()) {
        Some(e) => Err(PyValueError::new_err(format!("symbols: {e}"))),
        None => Ok(()),
    }
}

mod exc {
    pyo3::create_exception!(
        barbridge,
        WireError,
        pyo3::exceptions::PyValueError,
        "A bar or line that breaks the wire protocol (a ValueError).\n\n\
         ``str(err)`` says what is wrong and names the field; ``err.reason`` is the stable\n\
         reject code (``missing_field``, ``wrong_type``, ``high_below_low``, ...), the same codes\n\
         as the consumer's reject counters and ``tests/wire_vectors.json``."
    );
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn wire_error(py: Python<'_>, e: &wire::WireError) -> PyErr {
    let err = exc::WireError::new_err(e.to_string());
    let _ = err.value(py).setattr(intern!(py, "reason"), e.reason().code());
    err
}

fn outcome(i: Ingested) -> &'static str {
    match i {
        Ingested::Bar(Inserted::Appended) => "appended",
        Ingested::Bar(Inserted::InsertedOutOfOrder) => "inserted",
        Ingested::Bar(Inserted::Replaced) => "corrected",
        Ingested::Bar(Inserted::Duplicate) => "duplicate",
        Ingested::Bar(Inserted::Conflict) => "conflict",
        Ingested::Bar(Inserted::TooOld) => "too_old",
        Ingested::Filtered => "filtered",
        Ingested::Heartbeat => "heartbeat",
        Ingested::Status => "status",
        Ingested::Ignored => "ignored",
        Ingested::Resent => "resent",
    }
}

// ------------------------------------------------------------------------------------ Bar

/// One minute bar (read-only).
///
/// Attributes carry the wire field names: ``symbol``, ``timestamp_ms`` (start of the minute, UTC
/// epoch milliseconds), ``open``, ``high``, ``low``, ``close``, ``volume``, ``vwap``,
/// ``trade_count``; ``vwap`` and ``trade_count`` are None when the source did not give them. Bars from a subscription also say whether they are a ``correction`` of a
/// minute delivered before and their ``source`` (``"stream"``, ``"backfill"``, ... or None);
/// bars from queries have ``correction=False, source=None``.
///
/// ``Bar(...)`` validates like the wire protocol and raises :class:`WireError`.
#[pyclass(name = "Bar", module = "barbridge", frozen)]
#[derive(Clone, Debug)]
pub struct PyBar {
    symbol: Symbol,
    bar: Bar,
    correction: bool,
    source: Option<Source>,
}

impl PyBar {
    fn from_event(e: BarEvent) -> PyBar {
        PyBar { symbol: e.symbol, bar: e.bar, correction: e.correction, source: e.source }
    }
    fn stored(symbol: &Symbol, bar: Bar) -> PyBar {
        PyBar { symbol: symbol.clone(), bar, correction: false, source: None }
    }
    fn kind(&self) -> BarKind {
        if self.correction {
            BarKind::UpdatedBar
        } else {
            BarKind::Bar
        }
    }
}

#[pymethods]
impl PyBar {
    #[new]
    #[pyo3(signature = (symbol, timestamp_ms, open, high, low, close, volume, vwap = None, trade_count = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        symbol: String,
        timestamp_ms: Int,
        open: Float,
        high: Float,
        low: Float,
        close: Float,
        volume: Float,
        vwap: Option<Float>,
        trade_count: Option<Int>,
    ) -> PyResult<PyBar> {
        let wrong = |detail: &str| wire_error(py, &wire::WireError::WrongType { detail: detail.to_owned() });
        let timestamp_ms = timestamp_ms.i64("timestamp_ms").map_err(|_| wrong("`timestamp_ms` must fit in 64 bits"))?;
        let trade_count = trade_count
            .map(|n| n.within("trade_count", 0, i128::from(u64::MAX)).map(|v| v as u64))
            .transpose()
            .map_err(|_| wrong("`trade_count` must be a non-negative 64-bit integer"))?;
        let (open, high, low, close, volume) = (open.0, high.0, low.0, close.0, volume.0);
        let bar = Bar { timestamp_ms, open, high, low, close, volume, vwap: vwap.map(|v| v.0), trade_count };
        wire::validate(&symbol, &bar).map_err(|e| wire_error(py, &e))?;
        Ok(PyBar { symbol: Arc::from(symbol), bar, correction: false, source: None })
    }

    #[getter]
    fn symbol(&self) -> &str {
        &self.symbol
    }
    #[getter]
    fn timestamp_ms(&self) -> i64 {
        self.bar.timestamp_ms
    }
    #[getter]
    fn open(&self) -> f64 {
        self.bar.open
    }
    #[getter]
    fn high(&self) -> f64 {
        self.bar.high
    }
    #[getter]
    fn low(&self) -> f64 {
        self.bar.low
    }
    #[getter]
    fn close(&self) -> f64 {
        self.bar.close
    }
    #[getter]
    fn volume(&self) -> f64 {
        self.bar.volume
    }
    /// None when the source gave no vwap.
    #[getter]
    fn vwap(&self) -> Option<f64> {
        self.bar.vwap
    }
    /// None when the source gave no trade count.
    #[getter]
    fn trade_count(&self) -> Option<u64> {
        self.bar.trade_count
    }
    /// True when this bar replaced a bar of the same minute delivered earlier.
    #[getter]
    fn correction(&self) -> bool {
        self.correction
    }
    /// The sidecar's ``source`` label, or None.
    #[getter]
    fn source(&self) -> Option<&'static str> {
        self.source.map(Source::as_str)
    }

    /// The bar as a dict with the wire field names (the form :meth:`Consumer.push` accepts);
    /// ``vwap`` / ``trade_count`` are None when absent.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let b = &self.bar;
        d.set_item(intern!(py, "symbol"), &*self.symbol)?;
        d.set_item(intern!(py, "timestamp_ms"), b.timestamp_ms)?;
        d.set_item(intern!(py, "open"), b.open)?;
        d.set_item(intern!(py, "high"), b.high)?;
        d.set_item(intern!(py, "low"), b.low)?;
        d.set_item(intern!(py, "close"), b.close)?;
        d.set_item(intern!(py, "volume"), b.volume)?;
        d.set_item(intern!(py, "vwap"), b.vwap)?;
        d.set_item(intern!(py, "trade_count"), b.trade_count)?;
        Ok(d)
    }

    /// The bar as one wire line (JSON, no newline), exactly as ``barbridge run --echo`` prints it.
    fn to_line(&self) -> String {
        wire::encode_bar(&self.symbol, &self.bar, self.kind())
    }

    fn __repr__(&self) -> String {
        let b = &self.bar;
        let mut extra = String::new();
        if self.correction {
            extra.push_str(", correction=True");
        }
        if let Some(s) = self.source {
            extra.push_str(&format!(", source='{}'", s.as_str()));
        }
        format!(
            "Bar(symbol='{}', timestamp_ms={}, open={:?}, high={:?}, low={:?}, close={:?}, volume={:?}, vwap={}, trade_count={}{extra})",
            self.symbol.escape_default(),
            b.timestamp_ms,
            b.open,
            b.high,
            b.low,
            b.close,
            b.volume,
            b.vwap.map_or_else(|| "None".to_owned(), |v| format!("{v:?}")),
            b.trade_count.map_or_else(|| "None".to_owned(), |n| n.to_string()),
        )
    }

    /// Equal when symbol and all values are equal (``correction``/``source`` are not compared).
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        match other.downcast::<PyBar>() {
            Ok(o) => {
                let o = o.get();
                o.symbol == self.symbol && o.bar == self.bar
            }
            Err(_) => false,
        }
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.symbol.hash(&mut h);
        self.bar.timestamp_ms.hash(&mut h);
        self.bar.close.to_bits().hash(&mut h);
        h.finish()
    }
}

// ------------------------------------------------------------------- Python values → bars

/// One item of input, converted while holding the GIL, ingested without it.
enum Item {
    Line(Vec<u8>),
    Bar {
        symbol: String,
        bar: Bar,
        kind: BarKind,
        source: Option<Source>,
    },
    /// Could not even be turned into a bar (missing field, wrong type): counted as a reject.
    Bad(wire::WireError),
}

pub(crate) fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

pub(crate) fn dict_field<'py>(d: &Bound<'py, PyDict>, key: &Bound<'py, PyString>) -> Option<Bound<'py, PyAny>> {
    d.get_item(key).ok().flatten().filter(|v| !v.is_none())
}

fn dict_f64(d: &Bound<'_, PyDict>, key: &Bound<'_, PyString>, name: &'static str) -> Result<f64, wire::WireError> {
    let v = dict_field(d, key).ok_or(wire::WireError::MissingField { field: name })?;
    v.extract::<f64>().map_err(|_| wire::WireError::WrongType { detail: format!("`{name}` must be a number, got {}", type_name(&v)) })
}

/// A dict with the wire field names → a bar (or a line, for control types such as heartbeat).
fn item_from_dict(py: Python<'_>, d: &Bound<'_, PyDict>) -> PyResult<Item> {
    let kind = match dict_field(d, intern!(py, "type")) {
        None => BarKind::Bar,
        Some(t) => match t.downcast::<PyString>().ok().map(|s| s.to_cow().map(|c| c.into_owned())) {
            Some(Ok(s)) if s == "bar" => BarKind::Bar,
            Some(Ok(s)) if s == "updated_bar" => BarKind::UpdatedBar,
            _ => {
                // heartbeat / status / a type this version does not know: exactly the wire path.
                let json = py.import(intern!(py, "json"))?;
                let text: String = json.call_method1(intern!(py, "dumps"), (d,))?.extract()?;
                return Ok(Item::Line(text.into_bytes()));
            }
        },
    };
    Ok(match bar_from_dict(py, d) {
        Ok((symbol, bar, source)) => Item::Bar { symbol, bar, kind, source },
        Err(e) => Item::Bad(e),
    })
}

pub(crate) fn bar_from_dict(py: Python<'_>, d: &Bound<'_, PyDict>) -> Result<(String, Bar, Option<Source>), wire::WireError> {
    let sym = dict_field(d, intern!(py, "symbol")).ok_or(wire::WireError::MissingField { field: "symbol" })?;
    let symbol = sym
        .downcast::<PyString>()
        .ok()
        .and_then(|s| s.to_cow().ok().map(|c| c.into_owned()))
        .ok_or_else(|| wire::WireError::WrongType { detail: format!("`symbol` must be a str, got {}", type_name(&sym)) })?;
    let ts = dict_field(d, intern!(py, "timestamp_ms")).ok_or(wire::WireError::MissingField { field: "timestamp_ms" })?;
    let timestamp_ms = ts.extract::<i64>().map_err(|_| wire::WireError::WrongType {
        detail: format!("`timestamp_ms` must be an integer (UTC epoch milliseconds), got {}", type_name(&ts)),
    })?;
    let open = dict_f64(d, intern!(py, "open"), "open")?;
    let high = dict_f64(d, intern!(py, "high"), "high")?;
    let low = dict_f64(d, intern!(py, "low"), "low")?;
    let close = dict_f64(d, intern!(py, "close"), "close")?;
    let volume = dict_f64(d, intern!(py, "volume"), "volume")?;
    let vwap = match dict_field(d, intern!(py, "vwap")) {
        None => None,
        Some(_) => Some(dict_f64(d, intern!(py, "vwap"), "vwap")?),
    };
    let trade_count = match dict_field(d, intern!(py, "trade_count")) {
        None => None,
        Some(v) => Some(
            v.extract::<u64>()
                .map_err(|_| wire::WireError::WrongType { detail: format!("`trade_count` must be a non-negative integer, got {}", type_name(&v)) })?,
        ),
    };
    let source = dict_field(d, intern!(py, "source"))
        .and_then(|s| s.downcast::<PyString>().ok().and_then(|s| s.to_cow().ok().and_then(|c| Source::parse(&c))));
    Ok((symbol, Bar { timestamp_ms, open, high, low, close, volume, vwap, trade_count }, source))
}

/// Any accepted input form → an [`Item`]. TypeError for a type that is no bar at all.
fn item_from_py(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Item> {
    if let Ok(d) = obj.downcast::<PyDict>() {
        return item_from_dict(py, d);
    }
    if let Ok(s) = obj.downcast::<PyString>() {
        return Ok(Item::Line(s.to_cow()?.into_owned().into_bytes()));
    }
    if let Ok(b) = obj.downcast::<PyBytes>() {
        return Ok(Item::Line(b.as_bytes().to_vec()));
    }
    if let Ok(b) = obj.downcast::<PyByteArray>() {
        return Ok(Item::Line(b.to_vec()));
    }
    if let Ok(b) = obj.downcast::<PyBar>() {
        let b = b.get();
        return Ok(Item::Bar { symbol: b.symbol.to_string(), bar: b.bar, kind: b.kind(), source: b.source });
    }
    Err(PyTypeError::new_err(format!(
        "a bar must be a dict with the wire field names, a wire JSON line (str or bytes) or a barbridge.Bar, not {}",
        type_name(obj)
    )))
}

fn ingest_item(consumer: &Consumer, item: &Item) -> Result<Ingested, wire::WireError> {
    match item {
        Item::Line(line) => consumer.ingest_line(strip_newline(line)),
        Item::Bar { symbol, bar, kind, source } => consumer.ingest_bar(symbol, *bar, *kind, *source),
        Item::Bad(e) => {
            // Counted like a line the FIFO reader could not decode.
            consumer.ingest_rejected(e, b"");
            Err(e.clone())
        }
    }
}

fn strip_newline(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

// ------------------------------------------------------------------------------ batches

/// What :meth:`Consumer.push_batch` did. The good bars are stored; the bad ones are listed.
///
/// Counts: ``accepted`` (new minutes), ``corrections``, ``duplicates``, ``conflicts`` (same minute,
/// different values, not sent as a correction: first report kept), ``too_old``, ``filtered`` (not
/// in the consumer's ``symbols``), ``control`` (heartbeat / status / unknown-type / blank lines),
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
            Ok(Ingested::Filtered) => self.filtered += 1,
            Ok(Ingested::Heartbeat | Ingested::Status | Ingested::Ignored) => self.control += 1,
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
        d.set_item("filtered", self.filtered)?;
        d.set_item("control", self.control)?;
        d.set_item("rejected", self.rejected)?;
        d.set_item("errors", self.errors.clone())?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "BatchResult(accepted={}, corrections={}, duplicates={}, conflicts={}, too_old={}, filtered={}, control={}, rejected={}, errors={:?})",
            self.accepted,
            self.corrections,
            self.duplicates,
            self.conflicts,
            self.too_old,
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
    echo: Mutex<Option<crate::feed::Echo>>,
    status_file: Option<PathBuf>,
    /// The metrics/page server started by `serve_metrics`.
    http: Mutex<Option<crate::http::HttpServer>>,
}

impl PyConsumer {
    #[allow(clippy::too_many_arguments)]
    fn build(
        capacity_per_symbol: Int,
        stale_after: Float,
        symbols: Option<Vec<String>>,
        status_file: Option<PathBuf>,
        echo: bool,
        journal: Option<PathBuf>,
        fsync: &str,
        fifo: Option<PathBuf>,
    ) -> PyResult<(PyConsumer, Arc<Consumer>)> {
        let stale_after = stale_after.seconds("stale_after", false)?;
        let capacity_per_symbol = capacity_per_symbol.usize("capacity_per_symbol", 0, usize::MAX)?;
        let symbols = symbols.unwrap_or_default();
        check_symbols(&symbols)?;
        let policy = match fsync {
            "always" => FsyncPolicy::Always,
            "interval" => FsyncPolicy::default(),
            "never" => FsyncPolicy::Never,
            other => return Err(PyValueError::new_err(format!("fsync must be \"always\", \"interval\" or \"never\", got {other:?}"))),
        };
        let mut builder = Consumer::builder()
            .capacity_per_symbol(capacity_per_symbol)
            .map_err(|e| PyValueError::new_err(format!("capacity_per_symbol: {e}")))?
            .stale_after(stale_after)
            .symbols(symbols);
        if let Some(dir) = journal {
            let j = Journal::open(dir, policy).map_err(|e| PyOSError::new_err(e.to_string()))?;
            builder = builder.journal(j);
        }
        let consumer = builder.build();
        // Resume warm, like `barbridge run --journal`: today's bars are back in the store.
        consumer.resume_from_journal(SystemClock.now_ms());
        let echo = echo.then(|| consumer.echo_to_stdout());
        let status = status_file.as_ref().map(|path| StatusWriter::start(consumer.clone(), path.clone(), fifo, Duration::from_secs(1)));
        let py_consumer =
            PyConsumer { inner: consumer.clone(), status: Mutex::new(status), echo: Mutex::new(echo), status_file, http: Mutex::new(None) };
        Ok((py_consumer, consumer))
    }

    fn stop_status(&self, py: Python<'_>) {
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
    #[pyo3(signature = (capacity_per_symbol = Int::new(10_000), stale_after = Float(120.0), symbols = None, status_file = None, echo = false, journal = None, fsync = "interval"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        capacity_per_symbol: Int,
        stale_after: Float,
        symbols: Option<Vec<String>>,
        status_file: Option<PathBuf>,
        echo: bool,
        journal: Option<PathBuf>,
        fsync: &str,
    ) -> PyResult<PyConsumer> {
        Ok(PyConsumer::build(capacity_per_symbol, stale_after, symbols, status_file, echo, journal, fsync, None)?.0)
    }

    /// Push one bar: a dict with the wire field names, a wire JSON line (str or bytes, trailing
    /// newline optional; heartbeat and status lines are accepted too) or a :class:`Bar`.
    ///
    /// Returns what happened: ``"appended"``, ``"inserted"`` (older than the newest bar, put in
    /// time order), ``"corrected"``, ``"duplicate"``, ``"conflict"`` (same minute, different values,
    /// not sent as ``updated_bar``: the first report is kept), ``"too_old"``, ``"filtered"``,
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
    fn latest(&self, symbol: &str) -> Option<PyBar> {
        let bar = self.inner.store().latest(symbol)?;
        Some(PyBar::stored(&Arc::from(symbol), bar))
    }

    /// The newest ``n`` bars of ``symbol``, oldest first.
    fn last_n(&self, symbol: &str, n: Int) -> PyResult<Vec<PyBar>> {
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

    /// The counters (dict): ``lines``, ``bars_accepted``, ``corrections``, ``duplicates``,
    /// ``conflicts``, ``too_old``, ``filtered``, ``heartbeats``, ``status_lines``,
    /// ``unknown_types``, ``rejects_total``, ``rejects`` (per reason code), ``seq_gaps``,
    /// ``lines_lost``, ``writer_sessions``, ``reconnects``, ``disconnects``, ``stale_episodes``,
    /// ``delivery_drops``.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.health().counters.snapshot())
    }

    /// Feed health (dict): ``state`` (``waiting`` / ``live`` / ``stale``), times (UTC epoch ms),
    /// the sidecar's last reported ``status``, ``counters`` (as :meth:`stats`) and per-symbol
    /// ``symbols`` (bars, last bar time, last arrival). Re-evaluates staleness first.
    fn health<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.inner.health().tick();
        to_py(py, &self.inner.health_snapshot())
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
    #[pyo3(signature = (symbols = None, capacity = Int::new(65_536), timeout = None))]
    fn subscribe(&self, py: Python<'_>, symbols: Option<Vec<String>>, capacity: Int, timeout: Option<Float>) -> PyResult<PySubscription> {
        let timeout = parse_timeout(timeout)?;
        let sub = match symbols {
            Some(s) => {
                check_symbols(&s)?;
                Subscription::symbols(s)
            }
            None => Subscription::all(),
        };
        let sub = subscription(sub, "capacity", capacity)?.name("python");
        let consumer = self.inner.clone();
        let rx = py.allow_threads(|| consumer.subscribe(sub));
        Ok(PySubscription { rx: Mutex::new(Some(rx)), timeout, _consumer: self.inner.clone() })
    }

    /// Serve ``/metrics`` (Prometheus), ``/status.json`` and the live page on ``addr``
    /// (``HOST:PORT``; port 0 picks a free one), like ``barbridge run --metrics-addr``, until
    /// :meth:`close`. Returns the port. ``max_symbol_labels``: symbols given a ``symbol`` label.
    /// Raises OSError when the address cannot be used, RuntimeError when already serving.
    #[pyo3(signature = (addr, max_symbol_labels = Int::new(crate::metrics::DEFAULT_MAX_SYMBOL_LABELS as i128)))]
    fn serve_metrics(&self, addr: &str, max_symbol_labels: Int) -> PyResult<u16> {
        let max_symbol_labels = max_symbol_labels.usize("max_symbol_labels", 0, usize::MAX)?;
        let mut slot = lock(&self.http);
        if slot.is_some() {
            return Err(PyRuntimeError::new_err("this Consumer serves metrics already"));
        }
        let options = crate::http::HttpOptions { metrics: crate::metrics::MetricsOptions { max_symbol_labels }, fifo: None };
        let server = crate::http::HttpServer::start(self.inner.clone(), addr, options).map_err(|e| PyOSError::new_err(e.to_string()))?;
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

/// Any serde value → Python objects (dicts, lists, ints, floats, str, None).
pub(crate) fn to_py<'py, T: serde::Serialize>(py: Python<'py>, value: &T) -> PyResult<Bound<'py, PyAny>> {
    let v = serde_json::to_value(value).map_err(|e| PyValueError::new_err(e.to_string()))?;
    json_to_py(py, &v)
}

fn json_to_py<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value;
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_bound_py_any(py)?
            } else if let Some(u) = n.as_u64() {
                u.into_bound_py_any(py)?
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_bound_py_any(py)?
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(a) => {
            let items = a.iter().map(|x| json_to_py(py, x)).collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        }
        Value::Object(m) => {
            let d = PyDict::new(py);
            for (k, x) in m {
                d.set_item(k, json_to_py(py, x)?)?;
            }
            d.into_any()
        }
    })
}

// ---------------------------------------------------------------------- waiting for bars

/// Wait for the next bar in short slices with the GIL released, checking for signals between
/// slices (so Ctrl-C raises KeyboardInterrupt promptly). `Ok(None)`: timeout, channel closed, or
/// `finished()` said no more bars will come and none are left.
fn wait_next(py: Python<'_>, rx: &Receiver<BarEvent>, timeout: Option<Duration>, finished: &dyn Fn() -> bool) -> PyResult<Option<BarEvent>> {
    match rx.try_recv() {
        Ok(ev) => return Ok(Some(ev)),
        Err(TryRecvError::Disconnected) => return Ok(None),
        Err(TryRecvError::Empty) => {}
    }
    // A deadline too far to represent is no deadline (timeouts are bounded well below that).
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        py.check_signals()?;
        if finished() {
            return Ok(rx.try_recv().ok());
        }
        let slice = match deadline {
            None => WAIT_SLICE,
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return Ok(None);
                }
                (d - now).min(WAIT_SLICE)
            }
        };
        match py.allow_threads(|| rx.recv_timeout(slice)) {
            Ok(ev) => return Ok(Some(ev)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(None),
        }
    }
}

/// New bars from :meth:`Consumer.subscribe`: ``for bar in sub: ...``.
///
/// ``next()`` waits (GIL released, Ctrl-C works) until a bar arrives; with a ``timeout`` the
/// iteration ends when none arrives in time. :meth:`get` waits for one bar, :meth:`drain`
/// takes what is queued without waiting. :meth:`close` (or leaving a ``with`` block)
/// unsubscribes.
#[pyclass(name = "Subscription", module = "barbridge", frozen)]
pub struct PySubscription {
    rx: Mutex<Option<BarReceiver>>,
    timeout: Option<Duration>,
    _consumer: Arc<Consumer>,
}

impl PySubscription {
    fn receiver(&self) -> Option<Receiver<BarEvent>> {
        lock(&self.rx).as_ref().map(|r| (**r).clone())
    }

    fn next_event(&self, py: Python<'_>, timeout: Option<Duration>, finished: &dyn Fn() -> bool) -> PyResult<Option<PyBar>> {
        let Some(rx) = self.receiver() else { return Ok(None) };
        let closed = || finished() || lock(&self.rx).is_none();
        Ok(wait_next(py, &rx, timeout, &closed)?.map(PyBar::from_event))
    }

    fn unsubscribe(&self) {
        lock(&self.rx).take();
    }
}

#[pymethods]
impl PySubscription {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyBar>> {
        self.next_event(py, self.timeout, &|| false)
    }

    /// Wait up to ``timeout`` seconds (None = the subscription's timeout; forever if that is
    /// None too) for the next bar; None if none came.
    #[pyo3(signature = (timeout = None))]
    fn get(&self, py: Python<'_>, timeout: Option<Float>) -> PyResult<Option<PyBar>> {
        let timeout = parse_timeout(timeout)?.or(self.timeout);
        self.next_event(py, timeout, &|| false)
    }

    /// Every bar queued now, without waiting.
    fn drain(&self) -> Vec<PyBar> {
        match self.receiver() {
            Some(rx) => rx.try_iter().map(PyBar::from_event).collect(),
            None => Vec::new(),
        }
    }

    /// Bars dropped because this subscription's buffer was full.
    #[getter]
    fn dropped(&self) -> u64 {
        lock(&self.rx).as_ref().map_or(0, |r| r.dropped())
    }

    /// Unsubscribe; iteration ends.
    fn close(&self) {
        self.unsubscribe();
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        self.unsubscribe();
        false
    }
}

// ---------------------------------------------------------------------------- FifoReader

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
                let (c, _) = PyConsumer::build(capacity_per_symbol, stale_after, symbols, status_file, echo, journal, fsync, Some(path.clone()))?;
                Py::new(py, c)?
            }
        };
        let inner = consumer.get().inner.clone();
        // Subscribe before the reader starts: no bar can slip past the iterator.
        let rx = py.allow_threads(|| inner.subscribe(sub));
        let options = FeedOptions { stop_when_writers_gone: once, ..FeedOptions::default() };
        let feed = FifoFeed::start(inner.clone(), &path, options).map_err(|e| PyOSError::new_err(e.to_string()))?;
        Ok(PyFifoReader {
            consumer,
            owns_consumer,
            feed: Mutex::new(Some(feed)),
            sub: PySubscription { rx: Mutex::new(Some(rx)), timeout, _consumer: inner },
            path,
        })
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

// ------------------------------------------------------------------------------ module

// ------------------------------------------------------------------- FIFO writer (the sidecar's side)

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
/// Semantics (see the Rust module ``writer``): non-blocking open with retry while no reader is
/// there, atomic writes of whole lines, a bounded backlog (oldest dropped, counted, and announced
/// with a ``disconnected`` status line), ``seq``/``writer`` on every line, heartbeats, and every
/// line kept until the consumer acknowledges it (up to ``unacked_bytes``): when a new consumer
/// starts, or a reader returns after EPIPE, what it has not acknowledged is re-sent.
#[pyclass(name = "FifoWriter", module = "barbridge", frozen)]
pub(crate) struct PyFifoWriter {
    pub(crate) inner: crate::writer::FifoWriter,
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

pub(crate) fn bar_kind_from_dict(py: Python<'_>, d: &Bound<'_, PyDict>) -> Result<BarKind, wire::WireError> {
    let kind = dict_field(d, intern!(py, "kind")).or_else(|| dict_field(d, intern!(py, "type")));
    let Some(kind) = kind else { return Ok(BarKind::Bar) };
    match kind.downcast::<PyString>().ok().and_then(|s| s.to_cow().ok()).as_deref() {
        Some("bar") => Ok(BarKind::Bar),
        Some("updated_bar") => Ok(BarKind::UpdatedBar),
        _ => Err(wire::WireError::WrongType { detail: format!("`kind` must be \"bar\" or \"updated_bar\", got {kind}") }),
    }
}

#[pymethods]
impl PyFifoWriter {
    #[new]
    #[pyo3(signature = (path, *, writer, backlog = Int::new(100_000), heartbeat = Float(5.0), pipe_size = Int::new(1 << 20), unacked_bytes = Int::new(64 << 20), open_backoff_max = Float(1.0)))]
    fn new(
        path: PathBuf,
        writer: String,
        backlog: Int,
        heartbeat: Float,
        pipe_size: Int,
        unacked_bytes: Int,
        open_backoff_max: Float,
    ) -> PyResult<PyFifoWriter> {
        let options = crate::writer::WriterOptions {
            writer,
            // The backlog grows with what waits, not with its bound; 0 would drop every line.
            backlog: backlog.usize("backlog", 1, usize::MAX)?,
            heartbeat: Some(heartbeat.seconds("heartbeat", true)?).filter(|d| !d.is_zero()),
            // F_SETPIPE_SZ takes a C int; the kernel's own limit is below 2**31.
            pipe_size: pipe_size.usize("pipe_size", 4096, 1 << 30)?,
            unacked_bytes: unacked_bytes.usize("unacked_bytes", 0, usize::MAX)?,
            open_backoff_max: open_backoff_max.seconds("open_backoff_max", true)?,
            ..crate::writer::WriterOptions::default()
        };
        let events = Arc::new(WriterEvents::default());
        let sink = events.clone();
        let report: crate::writer::Reporter = Arc::new(move |level, message| sink.push(level, message));
        Ok(PyFifoWriter { inner: crate::writer::FifoWriter::with_reporter(path, options, report), events })
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
        self.inner.submit_status(state, detail).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Lines waiting to be written.
    fn backlog(&self) -> usize {
        self.inner.backlog()
    }

    /// Counters: lines_written, bars_written, dropped_overflow, dropped_invalid, reader_opens,
    /// reader_lost, pipe_full, replayed (lines re-sent), acked (the consumer's acknowledged seq),
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
        py.allow_threads(|| self.inner.join()).and_then(|r| r.err()).map(|e| (e.unusable, e.message))
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

/// barbridge: market-data bars from the Alpaca sidecar into a per-symbol store (Rust core).
///
/// What it offers Python, all on the same Rust code as the ``barbridge`` CLI (one
/// parser, one validator, one store):
///
/// * :class:`Consumer` - push bars (dicts with the wire field names, wire JSON lines, or
///   batches) and query them: ``latest``, ``last_n``, ``range``, ``columns`` (lists or numpy),
///   ``symbols``, ``stats``, ``health``; ``subscribe()`` iterates new bars.
/// * :class:`FifoReader` - ``for bar in barbridge.FifoReader(path): ...`` reads the sidecar's
///   FIFO on a Rust thread; Ctrl-C interrupts the loop.
/// * :class:`FifoWriter` - the sidecar's side of the FIFO: ``submit_bar`` validates and queues in
///   Rust; a Rust thread writes (what ``bridge.sinks.FifoSink`` runs on).
/// * ``python -m bridge --sink inprocess`` - the sidecar pushing into a Consumer in the same
///   process (one-process mode).
/// * :class:`Publisher` - the sidecar's hot path: Alpaca's raw messages or whole websocket frames
///   → normalise, validate, dedupe → a FifoWriter or a Consumer, one call per bar or per frame;
///   ``in_session``, ``last_session_open``, ``session``: the NYSE session table.
///
/// Example::
///
///     import barbridge
///     c = barbridge.Consumer()
///     c.push({"symbol": "SPY", "timestamp_ms": 1759930080000, "open": 671.2, "high": 671.5,
///             "low": 671.1, "close": 671.4, "volume": 18234, "vwap": 671.33, "trade_count": 212})
///     print(c.latest("SPY"))
///
/// Bad bars raise :class:`WireError` (a ValueError) naming the field; ``err.reason`` is the
/// reject code. The Rust side logs warnings (rejects, a stale feed) to stderr; set ``RUST_LOG``
/// (``info``, ``error``, ``off``) before the import to change that.
#[pymodule]
fn barbridge(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    // The Rust side's warnings (rejects, staleness, dropped deliveries) go to stderr, as with the
    // CLI; RUST_LOG adjusts the level (e.g. RUST_LOG=info, RUST_LOG=off).
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).format_timestamp_millis().try_init();
    m.add_class::<PyConsumer>()?;
    m.add_class::<PyBar>()?;
    m.add_class::<BatchResult>()?;
    m.add_class::<PySubscription>()?;
    m.add_class::<PyFifoReader>()?;
    m.add_class::<PyFifoWriter>()?;
    crate::python_alpaca::register(m)?;
    crate::python_nats::register(m)?;
    m.add("WireError", py.get_type::<exc::WireError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_LINE_BYTES", wire::MAX_LINE_BYTES)?;
    m.add("REJECT_REASONS", PyTuple::new(py, wire::RejectReason::ALL.iter().map(|r| r.code()))?)?;
    /// Default FIFO path: ``$XDG_RUNTIME_DIR/barbridge/bars.fifo`` (else ``/tmp/barbridge-<uid>/``).
    #[pyfunction]
    fn default_fifo_path() -> PathBuf {
        crate::default_fifo_path()
    }
    /// Default status file path, next to the default FIFO.
    #[pyfunction]
    fn default_status_path() -> PathBuf {
        crate::default_status_path()
    }
    m.add_function(wrap_pyfunction!(default_fifo_path, m)?)?;
    m.add_function(wrap_pyfunction!(default_status_path, m)?)?;
    Ok(())
}
