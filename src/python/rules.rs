//! The crate's rules that the Python side (`bridge/`) applies, so that Python states none of its
//! own: a symbol's asset class ([`crate::asset::AssetClass::of`]), the minute ([`wire::MINUTE_MS`]),
//! the FIFO writer's id ([`crate::sidecar::writer::default_writer_id`]) and the consumer's status
//! file, read and checked by [`crate::StatusReport::read`] (`barbridge.read_status`), and the FIFO
//! as the preflight sees it ([`crate::fifo::check_existing_fifo`]). The symbol
//! rule itself and the private-path rules are in [`super::control`].

use std::path::PathBuf;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

use crate::asset::AssetClass;
use crate::{wire, Clock, StatusError, StatusReport, SystemClock};

/// ``"crypto"`` for a symbol with a ``/`` (a pair such as ``BTC/USD``), else ``"stock"``: the
/// shape that decides a bar's day and journal file (``src/asset.rs``). Raises ``WireError`` for a
/// symbol that breaks the wire rule (``validate_symbol``), so a class is only given for a valid one.
#[pyfunction]
fn asset_class(py: Python<'_>, symbol: &str) -> PyResult<&'static str> {
    wire::validate_symbol(symbol).map_err(|e| super::wire_error(py, &e))?;
    Ok(match AssetClass::of(symbol) {
        AssetClass::Stock => "stock",
        AssetClass::Crypto => "crypto",
    })
}

/// A FIFO writer id unique to this process (pid and start time, base 36 ms): what
/// ``FifoWriter`` uses when given none.
#[pyfunction]
fn default_writer_id() -> String {
    crate::sidecar::writer::default_writer_id()
}

/// The consumer's status file at ``path`` (``barbridge run --status-file``), read and checked
/// against the status report's layout (the ``StatusReport`` of ``barbridge.pyi``), with
/// ``liveness`` added: ``LIVE``, ``WAITING``, ``STALE`` or ``NOT RUNNING``, as
/// ``barbridge status --check`` says now. Raises ``OSError`` (``FileNotFoundError`` when there is
/// none) or ``ValueError`` for a file that is not a status report, each with one sentence.
#[pyfunction]
fn read_status<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyAny>> {
    let report = StatusReport::read(&path).map_err(|e| match e {
        StatusError::Read { ref source, .. } => PyOSError::new_err((source.raw_os_error().unwrap_or(0), e.to_string())),
        other => PyValueError::new_err(other.to_string()),
    })?;
    let now = SystemClock.now_ms();
    let out = super::to_py(py, &report)?;
    out.set_item("liveness", report.liveness(now).label())?;
    Ok(out)
}

/// Check the FIFO at ``path`` without creating or changing anything (the preflight's question):
/// ``False`` when there is none yet, ``True`` for a FIFO of this user that others can neither read
/// nor write; ``ValueError`` with one sentence for anything else (not a FIFO, a symlink, another
/// user's, open to others: refused, never tightened).
#[pyfunction]
fn check_fifo(path: PathBuf) -> PyResult<bool> {
    crate::fifo::check_existing_fifo(&path).map_err(|e| PyValueError::new_err(e.to_string()))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(check_fifo, m)?)?;
    m.add_function(wrap_pyfunction!(asset_class, m)?)?;
    m.add_function(wrap_pyfunction!(default_writer_id, m)?)?;
    m.add_function(wrap_pyfunction!(read_status, m)?)?;
    m.add("MINUTE_MS", wire::MINUTE_MS)?;
    Ok(())
}
