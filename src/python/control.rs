//! The rules the sidecar's control endpoint (`bridge/control.py`) applies, from the crate's one
//! implementation of each: a symbol by the wire protocol's rule ([`wire::validate_symbol`]), and
//! the directory of the control socket by the private-path rules ([`private::ensure_private_dir`]).

use std::path::PathBuf;

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

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(validate_symbol, m)?)?;
    m.add_function(wrap_pyfunction!(ensure_private_dir, m)?)?;
    Ok(())
}
