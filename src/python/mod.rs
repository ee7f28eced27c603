//! Python bindings (feature `python`): the extension module `barbridge`, built by maturin
//! (`pyproject.toml`). Everything here is a thin layer over the crate's own types: bars enter
//! through [`Consumer::ingest_line`] / [`Consumer::ingest_bar`] (same validation, dedupe,
//! corrections, counters and delivery as the FIFO path), queries read the [`crate::BarStore`],
//! and [`FifoFeed`] runs the FIFO reader thread. Nothing is parsed, validated or stored twice.
//!
//! GIL policy: batch pushes, waits for new bars and joins release the GIL; single pushes and
//! queries hold it (they take well under a microsecond). The only Rust thread that calls into
//! Python is a [`metrics`] server's (its `render` callable), and it holds no lock of the crate
//! meanwhile, so there is no lock-order hazard between the GIL and the consumer's internal locks.
//!
//! One file per group of classes: [`bar`] (`Bar`, Python values → bars), [`consumer`]
//! (`Consumer`, `BatchResult`), [`subscription`] (`Subscription`), [`reader`] (`FifoReader`),
//! [`writer`] (`FifoWriter`), [`alpaca`] (`Publisher`, the Alpaca and calendar functions), [`control`]
//! (the symbol and private-directory checks of the sidecar's control endpoint), [`metrics`]
//! (`MetricsServer`, the sidecar's `/metrics` on the crate's HTTP server). This file holds
//! the module init and what they share: argument conversion, `ConfigError` and `WireError` →
//! Python exceptions, serde → Python.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::{intern, IntoPyObjectExt};

use crate::consumer::{ConfigError, Subscription};
use crate::wire;

mod alpaca;
mod bar;
mod consumer;
mod control;
mod logs;
mod metrics;
mod minute;
mod nats;
mod reader;
mod rules;
mod subscription;
mod writer;

use bar::PyBar;
use consumer::{BatchResult, PyConsumer};
use reader::PyFifoReader;
use subscription::PySubscription;
use writer::PyFifoWriter;

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
    sub.capacity(capacity.usize(name, 0, usize::MAX)?).map_err(|e| config_error(e.into()))
}

/// A setting the library refuses ([`ConfigError`]): ValueError with the library's sentence, the
/// one the CLI prints.
pub(crate) fn config_error(e: ConfigError) -> PyErr {
    PyValueError::new_err(e.to_string())
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

/// The type name of a Python value, for error messages.
fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn wire_error(py: Python<'_>, e: &wire::WireError) -> PyErr {
    let err = exc::WireError::new_err(e.to_string());
    let _ = err.value(py).setattr(intern!(py, "reason"), e.reason().code());
    err
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
/// reject code. The Rust side's warnings (rejects, a stale feed) go to Python's ``logging``, to
/// loggers named after the Rust module (``barbridge.pipe.writer``): quiet them with
/// ``logging.getLogger("barbridge").setLevel(logging.ERROR)``. ``RUST_LOG`` (default ``warn``; set
/// before the import) decides which records the Rust side makes at all.
#[pymodule]
fn barbridge(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    // The Rust side's warnings (rejects, staleness, dropped deliveries) go to Python's logging
    // (loggers named after the Rust module: `barbridge.…`); RUST_LOG decides which are made.
    logs::register(m)?;
    m.add_class::<PyConsumer>()?;
    m.add_class::<PyBar>()?;
    m.add_class::<BatchResult>()?;
    m.add_class::<PySubscription>()?;
    m.add_class::<minute::PyMinuteClosed>()?;
    m.add_class::<PyFifoReader>()?;
    m.add_class::<PyFifoWriter>()?;
    alpaca::register(m)?;
    control::register(m)?;
    rules::register(m)?;
    metrics::register(m)?;
    nats::register(m)?;
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

/// The bindings from Rust, in an embedded interpreter:
/// `PYO3_PYTHON=$PWD/.venv/bin/python cargo test --features python,nats --lib python::`.
#[cfg(test)]
mod tests {
    use pyo3::types::PyDict;

    use super::*;
    use crate::consumer::Consumer;

    /// The module as `import barbridge` gives it, and a scope where `barbridge` names it.
    fn with_module(f: impl FnOnce(Python<'_>, &Bound<'_, PyDict>)) {
        pyo3::prepare_freethreaded_python();
        Python::with_gil(|py| {
            let m = PyModule::new(py, "barbridge").unwrap();
            barbridge(&m).unwrap();
            let scope = PyDict::new(py);
            scope.set_item("barbridge", m).unwrap();
            f(py, &scope);
        });
    }

    fn run(py: Python<'_>, scope: &Bound<'_, PyDict>, code: &std::ffi::CStr) -> PyResult<()> {
        py.run(code, Some(scope), None)
    }

    #[test]
    fn a_bar_dict_goes_in_and_comes_back_the_same() {
        with_module(|py, scope| {
            run(
                py,
                scope,
                c"d = {'symbol': 'SPY', 'timestamp_ms': 1759930080000, 'open': 671.2, 'high': 671.5, 'low': 671.1,
     'close': 671.4, 'volume': 18234.0, 'vwap': 671.33, 'trade_count': 212}
c = barbridge.Consumer()
assert c.push(d) == 'appended'
assert c.push(d) == 'duplicate'
back = c.latest('SPY').to_dict()
assert back == d, back
assert barbridge.decode_line(barbridge.encode_bar(d).rstrip(b'\\n'))['close'] == 671.4",
            )
            .unwrap();
        });
    }

    #[test]
    fn a_bad_bar_is_a_value_error_with_the_reject_code() {
        with_module(|py, scope| {
            let err = run(
                py,
                scope,
                c"barbridge.Consumer().push({'symbol': 'SPY', 'timestamp_ms': 1759930080000, 'open': 1.0, 'high': 1.0,
    'low': 2.0, 'close': 1.0, 'volume': 1.0})",
            )
            .unwrap_err();
            assert!(err.is_instance_of::<PyValueError>(py), "{err}");
            let reason: String = err.value(py).getattr("reason").unwrap().extract().unwrap();
            assert_eq!(reason, "high_below_low");
            assert_eq!(err.value(py).to_string(), "high 1 is below low 2");
        });
    }

    #[test]
    fn the_builders_refusals_are_value_errors_with_the_cli_sentence() {
        with_module(|py, scope| {
            let cases: [(&std::ffi::CStr, String); 4] = [
                (c"barbridge.Consumer(capacity_per_symbol=0)", Consumer::builder().capacity_per_symbol(0).build().unwrap_err().to_string()),
                (c"barbridge.Consumer(stale_after=0)", Consumer::builder().stale_after(Duration::ZERO).build().unwrap_err().to_string()),
                (c"barbridge.Consumer(symbols=['SPY', 'spy'])", Consumer::builder().symbols(["spy"]).build().unwrap_err().to_string()),
                (c"barbridge.Consumer().subscribe(symbols=['spy'])", Subscription::symbols(["spy"]).unwrap_err().to_string()),
            ];
            for (code, sentence) in cases {
                let err = run(py, scope, code).unwrap_err();
                assert!(err.is_instance_of::<PyValueError>(py), "{code:?}: {err}");
                assert_eq!(err.value(py).to_string(), sentence, "{code:?}");
            }
            let err = run(py, scope, c"barbridge.Consumer().subscribe(capacity=0)").unwrap_err();
            assert!(err.is_instance_of::<PyValueError>(py));
            assert_eq!(err.value(py).to_string(), "a subscription's capacity must be at least 1, got 0");
        });
    }
}
