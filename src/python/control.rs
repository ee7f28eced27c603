//! The rules the sidecar's control endpoint (`bridge/control.py`) applies, from the crate's one
//! implementation of each: a symbol by the wire protocol's rule ([`wire::validate_symbol`]), and
//! the control socket's directory and the live symbol list's file by the private-path rules
//! ([`private::ensure_private_dir`], [`private::open_private_file`], [`private::write_atomic`]).

use std::io::Read;
use std::path::PathBuf;

use pyo3::types::PyBytes;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::{private, wire};

/// Check ``symbol`` by the wire protocol's symbol rule (1-32 printable ASCII characters, no
/// space, no lower-case letter); raises ``WireError`` (reason ``invalid_symbol``) if it breaks it.
#[pyfunction]
fn validate_symbol(py: Python<'_>, symbol: &str) -> PyResult<()> {
    wire::validate_symbol(symbol).map_err(|e| super::wire_error(py, &e))
}

/// Make sure ``path`` is a private directory of this user (created 0700 with its missing parents;
/// no symlink, not another user's, not writable by others); raises ``ValueError`` with one
/// sentence saying what is wrong.
#[pyfunction]
fn ensure_private_dir(path: PathBuf) -> PyResult<()> {
    private::ensure_private_dir(&path).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Replace ``dir/name`` with ``data`` atomically: a fresh 0600 file (a symlink is never followed)
/// renamed over it; raises ``ValueError`` with one sentence.
#[pyfunction]
fn write_private_file(dir: PathBuf, name: &str, data: &[u8]) -> PyResult<()> {
    private::write_atomic(&dir, name, data, private::Durability::Cached).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// The first ``limit`` bytes of ``path``, a regular file of this user not writable by others,
/// opened without following a symlink; ``None`` if it does not exist; ``ValueError`` (one
/// sentence) for anything else.
#[pyfunction]
fn read_private_file(py: Python<'_>, path: PathBuf, limit: u64) -> PyResult<Option<Py<PyBytes>>> {
    let file = match private::open_private_file(&path, std::fs::OpenOptions::new().read(true)) {
        Ok(file) => file,
        Err(private::PrivateError::Open { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(PyValueError::new_err(e.to_string())),
    };
    let mut data = Vec::new();
    file.take(limit).read_to_end(&mut data).map_err(|e| PyValueError::new_err(format!("cannot read {}: {e}", path.display())))?;
    Ok(Some(PyBytes::new(py, &data).unbind()))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(validate_symbol, m)?)?;
    m.add_function(wrap_pyfunction!(ensure_private_dir, m)?)?;
    m.add_function(wrap_pyfunction!(write_private_file, m)?)?;
    m.add_function(wrap_pyfunction!(read_private_file, m)?)?;
    Ok(())
}
