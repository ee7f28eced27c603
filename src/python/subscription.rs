//! `Subscription`: iterating new bars with the GIL released.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::bar::PyBar;
use super::{lock, parse_timeout, Float};
use crate::consumer::{BarEvent, BarReceiver, Consumer};

// ---------------------------------------------------------------------- waiting for bars

/// How long a blocking wait holds off before looking at signals (Ctrl-C) again.
const WAIT_SLICE: Duration = Duration::from_millis(50);

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
    pub(super) timeout: Option<Duration>,
    _consumer: Arc<Consumer>,
}

impl PySubscription {
    /// A subscription reading `rx`; `consumer` is kept alive as long as the subscription is.
    pub(super) fn new(rx: BarReceiver, timeout: Option<Duration>, consumer: Arc<Consumer>) -> PySubscription {
        PySubscription { rx: Mutex::new(Some(rx)), timeout, _consumer: consumer }
    }

    fn receiver(&self) -> Option<Receiver<BarEvent>> {
        lock(&self.rx).as_ref().map(|r| (**r).clone())
    }

    pub(super) fn next_event(&self, py: Python<'_>, timeout: Option<Duration>, finished: &dyn Fn() -> bool) -> PyResult<Option<PyBar>> {
        let Some(rx) = self.receiver() else { return Ok(None) };
        let closed = || finished() || lock(&self.rx).is_none();
        Ok(wait_next(py, &rx, timeout, &closed)?.map(PyBar::from_event))
    }

    pub(super) fn unsubscribe(&self) {
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
