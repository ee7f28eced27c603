//! `Bar` and the conversion of Python values (dicts, wire lines, bytes, `Bar`) into bars.

use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString};

use super::{type_name, wire_error, Float, Int};
use crate::bar::{Bar, BarKind, Source, Symbol};
use crate::consumer::{BarEvent, Consumer, Ingested};
use crate::wire;

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
    pub(super) fn from_event(e: BarEvent) -> PyBar {
        PyBar { symbol: e.symbol, bar: e.bar, correction: e.correction, source: e.source }
    }
    pub(super) fn stored(symbol: &Symbol, bar: Bar) -> PyBar {
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
pub(super) enum Item {
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

pub(super) fn dict_field<'py>(d: &Bound<'py, PyDict>, key: &Bound<'py, PyString>) -> Option<Bound<'py, PyAny>> {
    d.get_item(key).ok().flatten().filter(|v| !v.is_none())
}

fn dict_f64(d: &Bound<'_, PyDict>, key: &Bound<'_, PyString>, name: &'static str) -> Result<f64, wire::WireError> {
    let v = dict_field(d, key).ok_or(wire::WireError::MissingField { field: name })?;
    v.extract::<f64>().map_err(|_| wire::WireError::WrongType { detail: format!("`{name}` must be a number, got {}", type_name(&v)) })
}

/// A dict with the wire field names → a bar (or a line, for control types such as heartbeat).
fn item_from_dict(py: Python<'_>, d: &Bound<'_, PyDict>) -> PyResult<Item> {
    let kind = match dict_field(d, intern!(py, "type")) {
        // No wire `type`: the dicts the extension hands out say `kind` (a correction stays one).
        None => match bar_kind_from_dict(py, d) {
            Ok(kind) => kind,
            Err(e) => return Ok(Item::Bad(e)),
        },
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

pub(super) fn bar_from_dict(py: Python<'_>, d: &Bound<'_, PyDict>) -> Result<(String, Bar, Option<Source>), wire::WireError> {
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
pub(super) fn item_from_py(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Item> {
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

pub(super) fn ingest_item(consumer: &Consumer, item: &Item) -> Result<Ingested, wire::WireError> {
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

pub(super) fn strip_newline(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

pub(super) fn bar_kind_from_dict(py: Python<'_>, d: &Bound<'_, PyDict>) -> Result<BarKind, wire::WireError> {
    let kind = dict_field(d, intern!(py, "kind")).or_else(|| dict_field(d, intern!(py, "type")));
    let Some(kind) = kind else { return Ok(BarKind::Bar) };
    match kind.downcast::<PyString>().ok().and_then(|s| s.to_cow().ok()).as_deref() {
        Some("bar") => Ok(BarKind::Bar),
        Some("updated_bar") => Ok(BarKind::UpdatedBar),
        _ => Err(wire::WireError::WrongType { detail: format!("`kind` must be \"bar\" or \"updated_bar\", got {kind}") }),
    }
}
