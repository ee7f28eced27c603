//! `Subscription`: iterating new bars with the GIL released.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::bar::PyBar;
use super::minute::PyMinuteClosed;
use super::{lock, parse_timeout, Float};
use crate::consumer::minutes::MinuteReceiver;
use crate::consumer::{BarEvent, BarReceiver, Consumer};
use crate::wire::minute::MinuteClosed;
use std::collections::VecDeque;

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
        let Some(slice) = wait_slice(deadline) else { return Ok(None) };
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
    /// Closed minutes too (``subscribe(minutes=True)``), and one taken while a bar it covers
    /// was still queued (it waits for that bar to be yielded first).
    minutes: Mutex<Option<(MinuteReceiver, VecDeque<Arc<MinuteClosed>>)>>,
}

impl PySubscription {
    /// A subscription reading `rx`; `consumer` is kept alive as long as the subscription is.
    pub(super) fn new(rx: BarReceiver, timeout: Option<Duration>, consumer: Arc<Consumer>) -> PySubscription {
        PySubscription { rx: Mutex::new(Some(rx)), timeout, _consumer: consumer, minutes: Mutex::new(None) }
    }

    /// Yield closed minutes too, each after the bars queued before it.
    pub(super) fn with_minutes(self, minutes: MinuteReceiver) -> PySubscription {
        *lock(&self.minutes) = Some((minutes, VecDeque::new()));
        self
    }

    /// The next bar or, with minutes, closed minute: bars queued before a minute come first.
    fn next_item(&self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<Option<PyObject>> {
        let mrx = lock(&self.minutes).as_ref().map(|(m, _)| (**m).clone());
        let Some(mrx) = mrx else {
            return self.next_event(py, timeout, &|| false)?.map(|b| Ok(Py::new(py, b)?.into_any())).transpose();
        };
        let Some(rx) = self.receiver() else { return Ok(None) };
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            if let Some(item) = self.take_ready(py, &rx, &mrx)? {
                return Ok(Some(item));
            }
            py.check_signals()?;
            if lock(&self.rx).is_none() {
                return Ok(None);
            }
            let Some(slice) = wait_slice(deadline) else { return Ok(None) };
            py.allow_threads(|| {
                let mut sel = crossbeam_channel::Select::new();
                sel.recv(&rx);
                sel.recv(&mrx);
                let _ = sel.ready_timeout(slice);
            });
        }
    }

    /// A bar if one is queued, else a closed minute (re-checking the bars after taking it).
    fn take_ready(&self, py: Python<'_>, rx: &Receiver<BarEvent>, mrx: &Receiver<Arc<MinuteClosed>>) -> PyResult<Option<PyObject>> {
        if let Ok(ev) = rx.try_recv() {
            return Ok(Some(Py::new(py, PyBar::from_event(ev))?.into_any()));
        }
        let mut slot = lock(&self.minutes);
        let Some((_, stash)) = slot.as_mut() else { return Ok(None) };
        let Some(m) = stash.pop_front().or_else(|| mrx.try_recv().ok()) else { return Ok(None) };
        if let Ok(ev) = rx.try_recv() {
            stash.push_front(m); // a bar sent before the minute: it goes first
            drop(slot);
            return Ok(Some(Py::new(py, PyBar::from_event(ev))?.into_any()));
        }
        drop(slot);
        Ok(Some(Py::new(py, PyMinuteClosed::new(m))?.into_any()))
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

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyObject>> {
        self.next_item(py, self.timeout)
    }

    /// Wait up to ``timeout`` seconds (None = the subscription's timeout; forever if that is
    /// None too) for the next bar; None if none came.
    #[pyo3(signature = (timeout = None))]
    fn get(&self, py: Python<'_>, timeout: Option<Float>) -> PyResult<Option<PyObject>> {
        let timeout = parse_timeout(timeout)?.or(self.timeout);
        self.next_item(py, timeout)
    }

    /// Every bar (and, with minutes, closed minute) queued now, in order, without waiting.
    fn drain(&self, py: Python<'_>) -> PyResult<Vec<PyObject>> {
        let mut out = Vec::new();
        let Some(rx) = self.receiver() else { return Ok(out) };
        let mrx = lock(&self.minutes).as_ref().map(|(m, _)| (**m).clone());
        match mrx {
            None => {
                for ev in rx.try_iter() {
                    out.push(Py::new(py, PyBar::from_event(ev))?.into_any());
                }
            }
            Some(mrx) => {
                while let Some(item) = self.take_ready(py, &rx, &mrx)? {
                    out.push(item);
                }
            }
        }
        Ok(out)
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

/// The next wait: [`WAIT_SLICE`], or less up to `deadline`; `None` once it has passed.
fn wait_slice(deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        None => Some(WAIT_SLICE),
        Some(d) => d.checked_duration_since(Instant::now()).filter(|left| !left.is_zero()).map(|left| left.min(WAIT_SLICE)),
    }
}
