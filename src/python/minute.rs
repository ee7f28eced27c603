//! `MinuteClosed`: a closed minute as Python sees it (docs/ARCHITECTURE.md, "Minute barrier").

use std::sync::Arc;

use pyo3::prelude::*;

use crate::wire::minute::MinuteClosed;

/// One closed minute, from a ``Consumer.subscribe(..., minutes=True)`` subscription (after the
/// bars it covers): which subscribed symbols have a bar (``bars``), which were halted
/// (``halted``) and which have none yet (``none``: late, lost or quiet). ``complete``: closed
/// because every non-halted symbol had its bar (else by the sidecar's deadline).
#[pyclass(name = "MinuteClosed", module = "barbridge", frozen)]
pub struct PyMinuteClosed {
    inner: Arc<MinuteClosed>,
}

impl PyMinuteClosed {
    pub(super) fn new(inner: Arc<MinuteClosed>) -> PyMinuteClosed {
        PyMinuteClosed { inner }
    }
}

#[pymethods]
impl PyMinuteClosed {
    /// Start of the minute (UTC epoch ms).
    #[getter]
    fn minute_ms(&self) -> i64 {
        self.inner.minute_ms
    }
    /// When the sidecar closed it (its clock, UTC epoch ms).
    #[getter]
    fn closed_ms(&self) -> i64 {
        self.inner.closed_ms
    }
    /// Every subscribed, non-halted symbol had its bar.
    #[getter]
    fn complete(&self) -> bool {
        self.inner.complete
    }
    /// Subscribed symbols with a bar of this minute.
    #[getter]
    fn bars(&self) -> Vec<String> {
        self.inner.bars.clone()
    }
    /// Subscribed symbols halted during the minute (no bar expected).
    #[getter]
    fn halted(&self) -> Vec<String> {
        self.inner.halted.clone()
    }
    /// Subscribed symbols without a bar at the deadline.
    #[getter]
    fn none(&self) -> Vec<String> {
        self.inner.none.clone()
    }
    /// The sidecar (writer id) that closed it; None in the one-process mode.
    #[getter]
    fn writer(&self) -> Option<String> {
        self.inner.writer.clone()
    }
    fn __repr__(&self) -> String {
        let m = &self.inner;
        format!(
            "MinuteClosed(minute_ms={}, complete={}, bars={}, halted={:?}, none={:?})",
            m.minute_ms,
            if m.complete { "True" } else { "False" },
            m.bars.len(),
            m.halted,
            m.none
        )
    }
}
