//! The sidecar's hot path in the extension: Alpaca's raw bar messages → bars, the publisher's
//! bookkeeping ([`crate::sidecar::gate`]) and the sink, in one call per bar; and the NYSE session
//! clock ([`crate::calendar`]) for the sidecar's staleness watchdog.
//!
//! Registered by the module init in `mod.rs` (`register`).

use std::sync::Arc;

use chrono::{DateTime, NaiveDate};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyString};

use super::bar::{bar_from_dict, bar_kind_from_dict, dict_field};
use super::consumer::PyConsumer;
use super::writer::PyFifoWriter;
use super::{to_py, type_name, Int};
use crate::bar::{Bar, BarKind, Source};
use crate::calendar;
use crate::consumer::health::{Clock as _, SystemClock};
use crate::sidecar::gate::{BarGate, Outcome, DEFAULT_REMEMBER};
use crate::wire::trading::TradingStatus;
use crate::wire::WireError;

/// Where published bars go.
enum Sink {
    Writer(Py<PyFifoWriter>),
    Consumer(Py<PyConsumer>),
}

impl Sink {
    fn send(&self, symbol: &str, bar: Bar, kind: BarKind, source: Option<Source>, received_ms: Option<i64>) -> Result<(), WireError> {
        match self {
            Sink::Writer(w) => w.get().inner.submit_bar_received(symbol, bar, kind, source, received_ms),
            Sink::Consumer(c) => c.get().inner.ingest_bar_received(symbol, bar, kind, source, received_ms).map(|_| ()),
        }
    }

    fn send_trading_status(&self, status: TradingStatus) -> Result<(), WireError> {
        match self {
            Sink::Writer(w) => w.get().inner.submit_trading_status(status),
            Sink::Consumer(c) => c.get().inner.ingest_trading_status(status).map(|_| ()),
        }
    }

    /// A closed minute (see [`crate::wire::minute`]): the FIFO writer queues its line(s) after the
    /// minute's bars; an in-process consumer takes its parts at once.
    fn send_minute_closed(&self, minute: &crate::wire::minute::MinuteClosed) {
        match self {
            Sink::Writer(w) => w.get().inner.submit_minute_closed(minute),
            Sink::Consumer(c) => {
                for part in crate::wire::minute::split(minute) {
                    let _ = c.get().inner.ingest_minute_part("", part); // a refusal is counted and logged
                }
            }
        }
    }

    /// Quiet marks of a closed minute (REST has no bar: no trade).
    fn send_minute_quiet(&self, minute_ms: i64, quiet: &[String]) {
        match self {
            Sink::Writer(w) => w.get().inner.submit_minute_quiet(minute_ms, quiet),
            Sink::Consumer(c) => {
                let _ = c.get().inner.ingest_minute_quiet("", minute_ms, quiet);
                // a refusal is counted and logged
            }
        }
    }

    /// Count and report a bar refused before or by the sink.
    fn reject(&self, symbol: &str, e: &WireError) {
        match self {
            Sink::Writer(w) => w.get().inner.reject(symbol, e),
            Sink::Consumer(c) => c.get().inner.ingest_rejected(e, symbol.as_bytes()),
        }
    }

    /// After a publish: an in-process consumer journals before the call returns.
    fn settle(&self) {
        if let Sink::Consumer(c) = self {
            c.get().inner.flush();
        }
    }
}

/// The sidecar's publisher: every bar from every source goes through it, once, into the sink
/// (a :class:`FifoWriter`, or a :class:`Consumer` in the same process).
///
/// Per (symbol, minute) it remembers the values last sent (``remember`` entries, oldest minutes
/// forgotten first): the very same values again are a suppressed duplicate; a backfill bar for a
/// minute the stream delivered after :meth:`mark` is not sent (the stream's version is newer).
/// It keeps the last minute sent per symbol (:meth:`last_seen`) and when the stream last
/// delivered a bar (:meth:`silent_for`). Bars breaking the protocol's rules are counted by the
/// sink and reported, never raised: a handler on the SDK's event loop must not fail.
#[pyclass(name = "Publisher", module = "barbridge", frozen)]
pub(crate) struct PyPublisher {
    core: Arc<BarGate>,
    sink: Sink,
    /// The minute barrier, once [`PyPublisher::minute_barrier`] set it up: held across a bar's
    /// hand-over to the sink and its note, so a minute's close never overtakes its bars.
    barrier: std::sync::Mutex<Option<crate::sidecar::barrier::Barrier>>,
    /// The receipt time of the frame whose last bar the SDK hands back to `submit_alpaca`.
    frame_received: AtomicCell,
}

/// An `Option<i64>` shared between the SDK's thread calls (one frame at a time).
#[derive(Default)]
struct AtomicCell(std::sync::atomic::AtomicI64);

impl AtomicCell {
    fn set(&self, v: Option<i64>) {
        self.0.store(v.unwrap_or(i64::MIN), std::sync::atomic::Ordering::Relaxed);
    }
    fn take(&self) -> Option<i64> {
        Some(self.0.swap(i64::MIN, std::sync::atomic::Ordering::Relaxed)).filter(|v| *v != i64::MIN)
    }
}

fn str_field(d: &Bound<'_, PyDict>, key: &Bound<'_, PyString>, name: &'static str) -> Result<String, WireError> {
    let v = dict_field(d, key).ok_or(WireError::MissingField { field: name })?;
    let s = v.downcast::<PyString>().map_err(|_| WireError::WrongType { detail: format!("`{name}` must be a str, got {}", type_name(&v)) })?;
    s.to_cow().map(|c| c.into_owned()).map_err(|_| WireError::WrongType { detail: format!("`{name}` is not valid text") })
}

fn num_field(d: &Bound<'_, PyDict>, key: &Bound<'_, PyString>, name: &'static str) -> Result<f64, WireError> {
    let v = dict_field(d, key).ok_or(WireError::MissingField { field: name })?;
    v.extract::<f64>().map_err(|_| WireError::WrongType { detail: format!("`{name}` must be a number, got {}", type_name(&v)) })
}

/// An Alpaca timestamp → UTC epoch milliseconds: ``msgpack.Timestamp`` (the stream), an RFC 3339
/// string (REST), an aware ``datetime``, or an int of milliseconds.
fn timestamp_ms(py: Python<'_>, t: &Bound<'_, PyAny>) -> Result<i64, WireError> {
    let wrong = || WireError::WrongType { detail: format!("`t` is not a timestamp: {}", type_name(t)) };
    if let Ok(s) = t.downcast::<PyString>() {
        let text = s.to_cow().map_err(|_| wrong())?;
        let parsed = DateTime::parse_from_rfc3339(text.trim())
            .map_err(|e| WireError::WrongType { detail: format!("`t` {text:?} is not an RFC 3339 time: {e}") })?;
        return Ok(parsed.timestamp_millis());
    }
    if t.is_instance_of::<PyInt>() {
        return t.extract::<i64>().map_err(|_| wrong());
    }
    if let (Ok(secs), Ok(nanos)) = (t.getattr(intern!(py, "seconds")), t.getattr(intern!(py, "nanoseconds"))) {
        let secs: i64 = secs.extract().map_err(|_| wrong())?;
        let nanos: i64 = nanos.extract().map_err(|_| wrong())?;
        return secs.checked_mul(1000).and_then(|ms| ms.checked_add(nanos.div_euclid(1_000_000))).ok_or_else(wrong);
    }
    if t.hasattr(intern!(py, "tzinfo")).unwrap_or(false) {
        if t.getattr(intern!(py, "tzinfo")).map_or(true, |z| z.is_none()) {
            return Err(WireError::WrongType { detail: "`t` is a naive datetime: refusing to guess its time zone".into() });
        }
        let secs: f64 = t.call_method0(intern!(py, "timestamp")).and_then(|v| v.extract()).map_err(|_| wrong())?;
        return Ok((secs * 1000.0).round() as i64);
    }
    Err(wrong())
}

/// Alpaca's short-key bar (``S t o h l c v`` and optional ``n vw``; ``T`` "u" for an updated bar)
/// → symbol, bar, kind. `symbol` replaces ``S`` (REST answers are grouped by symbol).
fn alpaca_bar(py: Python<'_>, d: &Bound<'_, PyDict>, symbol: Option<&str>) -> Result<(String, Bar, BarKind), WireError> {
    let symbol = match symbol {
        Some(s) => s.to_owned(),
        None => str_field(d, intern!(py, "S"), "S")?,
    };
    let t = dict_field(d, intern!(py, "t")).ok_or(WireError::MissingField { field: "t" })?;
    let bar = Bar {
        timestamp_ms: timestamp_ms(py, &t)?,
        open: num_field(d, intern!(py, "o"), "o")?,
        high: num_field(d, intern!(py, "h"), "h")?,
        low: num_field(d, intern!(py, "l"), "l")?,
        close: num_field(d, intern!(py, "c"), "c")?,
        volume: num_field(d, intern!(py, "v"), "v")?,
        vwap: match dict_field(d, intern!(py, "vw")) {
            None => None,
            Some(_) => Some(num_field(d, intern!(py, "vw"), "vw")?),
        },
        trade_count: match dict_field(d, intern!(py, "n")) {
            None => None,
            // REST sends JSON numbers; a float count that is whole is still a count.
            Some(v) => Some(match v.extract::<u64>() {
                Ok(n) => n,
                Err(_) => match v.extract::<f64>() {
                    Ok(f) if f >= 0.0 && f.fract() == 0.0 && f < 1.8e19 => f as u64,
                    _ => return Err(WireError::WrongType { detail: format!("`n` must be a non-negative integer, got {}", type_name(&v)) }),
                },
            }),
        },
    };
    let updated =
        dict_field(d, intern!(py, "T")).and_then(|t| t.downcast::<PyString>().ok().map(|s| s.to_cow().is_ok_and(|s| s == "u"))).unwrap_or(false);
    Ok((symbol, bar, if updated { BarKind::UpdatedBar } else { BarKind::Bar }))
}

fn symbol_of(py: Python<'_>, d: &Bound<'_, PyDict>, key: &str) -> String {
    dict_field(d, &PyString::new(py, key)).map_or_else(|| "?".to_owned(), |s| s.to_string())
}

impl PyPublisher {
    fn barrier(&self) -> std::sync::MutexGuard<'_, Option<crate::sidecar::barrier::Barrier>> {
        self.barrier.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hand a bar to the sink and note it in the barrier (if any).
    fn send_noting(
        &self,
        barrier: &mut Option<crate::sidecar::barrier::Barrier>,
        s: &str,
        b: Bar,
        k: BarKind,
        src: Option<Source>,
        received: i64,
    ) -> Result<(), WireError> {
        self.sink.send(s, b, k, src, Some(received))?;
        let advanced =
            barrier.as_mut().is_some_and(|br| br.note(s, b.timestamp_ms, matches!(src, Some(Source::Stream | Source::Synthetic | Source::Replay))));
        if advanced {
            // The first bar of a later minute: earlier minutes may be past their deadline now,
            // and close before the rest of this frame's bars (a late bar among them is late).
            self.close_minutes(barrier);
        }
        Ok(())
    }

    /// Close the minutes that are complete or past their deadline; how many.
    fn close_minutes(&self, barrier: &mut Option<crate::sidecar::barrier::Barrier>) -> usize {
        let Some(b) = barrier else { return 0 };
        let closed = b.poll(self.core.trading(), SystemClock.now_ms());
        for m in &closed {
            self.sink.send_minute_closed(m);
        }
        closed.len()
    }

    fn publish(&self, symbol: &str, bar: Bar, kind: BarKind, source: Source, since: Option<u64>) -> bool {
        let received = SystemClock.now_ms(); // when the sidecar got it (a frame's bars: its receipt)
        let received = self.frame_received.take().filter(|_| source == Source::Stream).unwrap_or(received);
        let mut barrier = self.barrier();
        let out = self.core.publish(symbol, bar, kind, Some(source), since, |s, b, k, src| self.send_noting(&mut barrier, s, b, k, src, received));
        self.close_minutes(&mut barrier);
        drop(barrier);
        if let Outcome::Invalid(e) = &out {
            // A bar the sink refused was counted there; one refused here is counted now.
            if crate::wire::validate(symbol, &bar).is_err() {
                self.sink.reject(symbol, e);
            }
        }
        self.sink.settle();
        out == Outcome::Sent
    }
}

#[pymethods]
impl PyPublisher {
    #[new]
    #[pyo3(signature = (sink, *, remember = None))]
    fn new(sink: &Bound<'_, PyAny>, remember: Option<Int>) -> PyResult<PyPublisher> {
        let remember = match remember {
            Some(n) => n.usize("remember", 1, usize::MAX)?,
            None => DEFAULT_REMEMBER,
        };
        let sink = if let Ok(w) = sink.downcast::<PyFifoWriter>() {
            Sink::Writer(w.clone().unbind())
        } else if let Ok(c) = sink.downcast::<PyConsumer>() {
            Sink::Consumer(c.clone().unbind())
        } else {
            return Err(PyTypeError::new_err(format!(
                "a Publisher's sink is a barbridge.FifoWriter or a barbridge.Consumer, not {}",
                type_name(sink)
            )));
        };
        Ok(PyPublisher {
            core: Arc::new(BarGate::new(remember)),
            sink,
            barrier: Default::default(),
            frame_received: AtomicCell(std::sync::atomic::AtomicI64::new(i64::MIN)),
        })
    }

    /// Start the minute barrier (docs/ARCHITECTURE.md, "Minute barrier") over ``symbols``: a
    /// minute closes, as ``minute_closed`` line(s) after its bars, as soon as every subscribed,
    /// non-halted symbol has its bar, or ``deadline`` seconds after its end. ``every_minute``:
    /// close every minute (crypto, ``--market-hours always``), else the NYSE session's minutes
    /// and those with a bar.
    #[pyo3(signature = (symbols, *, deadline = super::Float(crate::wire::minute::DEFAULT_DEADLINE_MS as f64 / 1000.0), every_minute = false))]
    fn minute_barrier(&self, symbols: Vec<String>, deadline: super::Float, every_minute: bool) -> PyResult<()> {
        let deadline = deadline.seconds("deadline", true)?;
        for s in &symbols {
            crate::wire::validate_symbol(s).map_err(|e| PyValueError::new_err(e.to_string()))?;
        }
        let ms = i64::try_from(deadline.as_millis()).unwrap_or(i64::MAX / 4);
        *self.barrier() = Some(crate::sidecar::barrier::Barrier::new(symbols, ms, every_minute));
        Ok(())
    }

    /// Close minutes from ``minute_ms`` (the start of the start-up backfill) rather than from the
    /// first live bar, once :meth:`minutes_backfilled` says the backfill's bars are handed over
    /// (or ``hold`` seconds have passed): a restarted sidecar closes the minutes its predecessor
    /// left unclosed. No-op without a barrier.
    #[pyo3(signature = (minute_ms, *, hold = super::Float(120.0)))]
    fn minutes_from(&self, minute_ms: i64, hold: super::Float) -> PyResult<()> {
        let hold = hold.seconds("hold", true)?;
        if let Some(b) = self.barrier().as_mut() {
            b.start_at(minute_ms, hold);
        }
        Ok(())
    }

    /// The start-up backfill's bars are handed over (or it gave up): the barrier closes again.
    fn minutes_backfilled(&self, py: Python<'_>) {
        py.allow_threads(|| {
            let mut barrier = self.barrier();
            if let Some(b) = barrier.as_mut() {
                b.backfilled();
            }
            self.close_minutes(&mut barrier);
            drop(barrier);
            self.sink.settle();
        });
    }

    /// The barrier's symbols changed (a live ``--subscribe`` / ``--unsubscribe``).
    fn minute_symbols(&self, symbols: Vec<String>) -> PyResult<()> {
        for s in &symbols {
            crate::wire::validate_symbol(s).map_err(|e| PyValueError::new_err(e.to_string()))?;
        }
        if let Some(b) = self.barrier().as_mut() {
            b.set_symbols(symbols);
        }
        Ok(())
    }

    /// Close the minutes past their deadline (the sidecar calls it a few times a second);
    /// returns how many closed. GIL released.
    fn tick_minutes(&self, py: Python<'_>) -> usize {
        py.allow_threads(|| {
            let mut barrier = self.barrier();
            let n = self.close_minutes(&mut barrier);
            drop(barrier);
            self.sink.settle();
            n
        })
    }

    /// The closed minutes with symbols still without a bar, taken (oldest first): ``[(minute_ms,
    /// [symbol, ...]), ...]`` for the REST confirmation (``bridge.confirm``) to ask about.
    fn take_unconfirmed(&self) -> Vec<(i64, Vec<String>)> {
        self.barrier().as_mut().map(|b| b.take_unconfirmed()).unwrap_or_default()
    }

    /// REST confirmed that ``symbols`` had no bar in the closed minute ``minute_ms`` (no trade):
    /// sent as ``minute_quiet`` line(s), so the minute is no hole for them.
    fn mark_quiet(&self, minute_ms: i64, symbols: Vec<String>) -> PyResult<()> {
        if minute_ms % crate::wire::MINUTE_MS != 0 {
            return Err(PyValueError::new_err(format!("minute_ms {minute_ms} is not the start of a minute")));
        }
        for s in &symbols {
            crate::wire::validate_symbol(s).map_err(|e| PyValueError::new_err(e.to_string()))?;
        }
        if !symbols.is_empty() {
            let _guard = self.barrier(); // after any minute_closed being written now
            self.sink.send_minute_quiet(minute_ms, &symbols);
            self.sink.settle();
        }
        Ok(())
    }

    /// Minutes the barrier closed so far (0 without one).
    #[getter]
    fn minutes_closed(&self) -> u64 {
        self.barrier().as_ref().map_or(0, |b| b.closed())
    }

    /// One bar message from Alpaca's stream, as the SDK hands it over with ``raw_data=True``
    /// (``T`` "b" or "u", ``S``, ``t`` a ``msgpack.Timestamp``, ``o h l c v``, optional ``n vw``).
    /// True when it was sent; False for a duplicate or a malformed bar (counted, reported).
    /// Restarts the staleness clock. Never raises for a bad message.
    fn submit_alpaca(&self, py: Python<'_>, msg: &Bound<'_, PyAny>) -> bool {
        let Ok(d) = msg.downcast::<PyDict>() else {
            self.sink.reject("?", &WireError::WrongType { detail: format!("a bar message is a dict, not {}", type_name(msg)) });
            return false;
        };
        match alpaca_bar(py, d, None) {
            Ok((symbol, bar, kind)) => self.publish(&symbol, bar, kind, Source::Stream, None),
            Err(e) => {
                self.sink.reject(&symbol_of(py, d, "S"), &e);
                false
            }
        }
    }

    /// A whole websocket frame from Alpaca's stream (msgpack bytes). When it holds only bar
    /// messages (a minute's burst), every bar but the last is published here, without a Python
    /// object per message, and the frame with just the last bar is returned for the SDK to
    /// dispatch as usual (its data clock sees data; the bar reaches :meth:`submit_alpaca`).
    /// None when the frame is anything else: the SDK handles it unchanged.
    fn submit_frame<'py>(&self, py: Python<'py>, frame: &[u8]) -> Option<Bound<'py, pyo3::types::PyBytes>> {
        let received = SystemClock.now_ms(); // the frame's receipt: every bar of it carries it
        let last = py.allow_threads(|| {
            let bars = crate::sidecar::alpaca_frame::read_bar_frame(frame)?;
            let (last, rest) = bars.split_last()?;
            if rest.is_empty() {
                return None;
            }
            for b in rest {
                if let Err(why) = &b.bar {
                    self.sink.reject("?", &WireError::WrongType { detail: format!("bar message: {why}") });
                }
            }
            let bars = rest.iter().filter_map(|b| b.bar.as_ref().ok().map(|(s, bar, k)| (*s, *bar, *k)));
            let mut barrier = self.barrier();
            self.core.publish_stream_batch(
                bars,
                |s, b, k, src| self.send_noting(&mut barrier, s, b, k, src, received),
                |symbol, out| {
                    // Refused by the rules here (the sink counts what it refuses itself).
                    if let Outcome::Invalid(e) = out {
                        if !matches!(e, WireError::MissingField { .. } | WireError::WrongType { .. }) {
                            self.sink.reject(symbol, e);
                        }
                    }
                },
            );
            drop(barrier); // the frame's last bar comes through submit_alpaca, which closes minutes
            self.sink.settle();
            self.frame_received.set(Some(received)); // the last bar, back through the SDK, was received with its frame
            Some(last.raw)
        })?;
        let mut out = Vec::with_capacity(last.len() + 1);
        out.push(0x91); // a one-element msgpack array
        out.extend_from_slice(last);
        Some(pyo3::types::PyBytes::new(py, &out))
    }

    /// One bar of a REST answer (raw dict: ``t`` RFC 3339, ``o h l c v``, optional ``n vw``) for
    /// ``symbol``; ``since`` is the :meth:`mark` taken before the request. True when sent.
    fn submit_backfill(&self, py: Python<'_>, symbol: &str, msg: &Bound<'_, PyAny>, since: u64) -> bool {
        let Ok(d) = msg.downcast::<PyDict>() else {
            self.sink.reject(symbol, &WireError::WrongType { detail: format!("a REST bar is a dict, not {}", type_name(msg)) });
            return false;
        };
        match alpaca_bar(py, d, Some(symbol)) {
            Ok((symbol, bar, _)) => self.publish(&symbol, bar, BarKind::Bar, Source::Backfill, Some(since)),
            Err(e) => {
                self.sink.reject(symbol, &e);
                false
            }
        }
    }

    /// A bar dict with the wire field names (``kind``/``type``, ``source``: replay, synthetic),
    /// as :meth:`FifoWriter.submit_bar` takes it. True when sent.
    fn submit_bar(&self, py: Python<'_>, bar: &Bound<'_, PyAny>) -> PyResult<bool> {
        let d = bar.downcast::<PyDict>().map_err(|_| PyTypeError::new_err(format!("a bar must be a dict, not {}", type_name(bar))))?;
        match bar_kind_from_dict(py, d).and_then(|k| bar_from_dict(py, d).map(|b| (k, b))) {
            Ok((kind, (symbol, bar, source))) => Ok(self.publish(&symbol, bar, kind, source.unwrap_or(Source::Replay), None)),
            Err(e) => {
                self.sink.reject(&symbol_of(py, d, "symbol"), &e);
                Ok(false)
            }
        }
    }

    /// One trading status message from Alpaca's stream as the SDK hands it over with
    /// ``raw_data=True`` (``T`` "s", ``S``, ``sc`` H/P/Q/T, ``rc`` reason code, ``rm`` reason,
    /// ``t``): recorded for the staleness rule and sent as a ``trading_status`` line when new.
    /// True when sent; False for one already sent or a malformed message (counted, reported).
    /// Never raises for a bad message.
    fn submit_trading_status(&self, py: Python<'_>, msg: &Bound<'_, PyAny>) -> bool {
        let Ok(d) = msg.downcast::<PyDict>() else {
            self.sink.reject("?", &WireError::WrongType { detail: format!("a trading status message is a dict, not {}", type_name(msg)) });
            return false;
        };
        let opt = |key: &Bound<'_, PyString>, name: &'static str| match dict_field(d, key) {
            None => Ok(String::new()),
            Some(v) if v.is_none() => Ok(String::new()),
            Some(_) => str_field(d, key, name),
        };
        let status = (|| {
            let symbol = str_field(d, intern!(py, "S"), "S")?;
            let t = dict_field(d, intern!(py, "t")).ok_or(WireError::MissingField { field: "t" })?;
            let code = str_field(d, intern!(py, "sc"), "sc")?;
            TradingStatus::from_alpaca(&symbol, timestamp_ms(py, &t)?, &code, &opt(intern!(py, "rc"), "rc")?, &opt(intern!(py, "rm"), "rm")?)
        })();
        let sent = match status {
            Ok(status) => self.core.trading_status(status, |s| self.sink.send_trading_status(s)),
            Err(e) => Err(e),
        };
        match sent {
            Ok(sent) => {
                self.sink.settle();
                sent
            }
            Err(e) => {
                self.sink.reject(&symbol_of(py, d, "S"), &e);
                false
            }
        }
    }

    /// True when ``symbols`` is not empty and the stream reported every one of them halted.
    fn all_halted(&self, symbols: Vec<String>) -> bool {
        self.core.trading().all_halted(&symbols)
    }

    /// The symbols the stream reported halted (paused, quoting) and not yet trading again.
    fn halted(&self) -> Vec<String> {
        self.core.trading().halted_now().into_keys().collect()
    }

    /// A point in the stream's history, for :meth:`submit_backfill`.
    fn mark(&self) -> u64 {
        self.core.mark()
    }

    /// The latest minute (epoch ms) sent for ``symbol``, or None.
    fn last_seen(&self, symbol: &str) -> Option<i64> {
        self.core.last_seen(symbol)
    }

    /// ``{symbol: latest minute sent}`` for every symbol sent so far.
    fn last_seen_all(&self) -> std::collections::HashMap<String, i64> {
        self.core.last_seen_all().into_iter().map(|(s, t)| (s.to_string(), t)).collect()
    }

    /// Counters: published, duplicates_suppressed, backfill_superseded, invalid, received_<source>.
    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.core.counts())
    }

    /// Seconds since the stream's last bar (or the last :meth:`reset_clock`).
    fn silent_for(&self) -> f64 {
        self.core.silent_for().as_secs_f64()
    }

    /// The watchdog's question, asked every fraction of a second: True exactly when the stream
    /// turns stale - no stream bar for ``stale_after`` seconds while ``active`` (subscribed) and
    /// the NYSE regular session is open (``always``: every instant counts). Quiet time inactive or
    /// out of session never counts; after a True the next needs another full period; 0 = off.
    /// With ``symbols`` (the subscribed ones): while every one is halted (trading statuses),
    /// silence is expected and never stale.
    #[pyo3(signature = (active, stale_after, *, always = false, symbols = None))]
    fn check_stale(&self, active: bool, stale_after: super::Float, always: bool, symbols: Option<Vec<String>>) -> PyResult<bool> {
        let stale_after = stale_after.seconds("stale_after", true)?;
        let in_session = always || calendar::in_session(SystemClock.now_ms());
        Ok(self.core.check_stale_of(active, stale_after, in_session, symbols.as_deref().unwrap_or_default()))
    }

    /// Restart the staleness clock (a new subscription; quiet time that must not count).
    fn reset_clock(&self) {
        self.core.reset_clock();
    }

    /// Send a status line (``connected``, ``subscribed``, ``disconnected``, ``reconnecting``,
    /// ``auth_failed``, ``stale``). ValueError for another state.
    #[pyo3(signature = (state, detail = ""))]
    fn status(&self, state: &str, detail: &str) -> PyResult<()> {
        match &self.sink {
            Sink::Writer(w) => w.get().inner.submit_connection_state(state, detail).map_err(|e| PyValueError::new_err(e.to_string())),
            Sink::Consumer(c) => {
                if !crate::sidecar::writer::STATES.contains(&state) {
                    return Err(PyValueError::new_err(format!("unknown status state {state:?}")));
                }
                let c = &c.get().inner;
                c.health().on_message();
                c.health().on_sidecar_status(state, Some(detail).filter(|d| !d.is_empty()));
                Ok(())
            }
        }
    }
}

/// An Alpaca bar message (stream or REST raw dict) as a bar dict with the wire field names,
/// ``kind`` and ``source``: what :meth:`Publisher.submit_alpaca` sends. ``symbol`` replaces ``S``.
/// :class:`WireError` for a message that is no valid bar.
#[pyfunction]
#[pyo3(signature = (msg, *, source = "stream", symbol = None))]
fn normalise_alpaca<'py>(py: Python<'py>, msg: &Bound<'py, PyDict>, source: &str, symbol: Option<&str>) -> PyResult<Bound<'py, PyDict>> {
    let source = Source::parse(source).ok_or_else(|| PyValueError::new_err(format!("unknown source {source:?}")))?;
    let (symbol, bar, kind) = alpaca_bar(py, msg, symbol).map_err(|e| super::wire_error(py, &e))?;
    crate::wire::validate(&symbol, &bar).map_err(|e| super::wire_error(py, &e))?;
    bar_dict(py, &symbol, &bar, kind, Some(source))
}

fn bar_dict<'py>(py: Python<'py>, symbol: &str, bar: &Bar, kind: BarKind, source: Option<Source>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("symbol", symbol)?;
    d.set_item("timestamp_ms", bar.timestamp_ms)?;
    d.set_item("open", bar.open)?;
    d.set_item("high", bar.high)?;
    d.set_item("low", bar.low)?;
    d.set_item("close", bar.close)?;
    d.set_item("volume", bar.volume)?;
    d.set_item("vwap", bar.vwap)?;
    d.set_item("trade_count", bar.trade_count)?;
    d.set_item("kind", kind.as_str())?;
    d.set_item("source", source.map(Source::as_str))?;
    Ok(d)
}

/// A bar dict with the wire field names (``kind``/``type``, optional ``source``) → one wire line
/// (bytes, with its newline). :class:`WireError` for a bar breaking the protocol's rules.
#[pyfunction]
fn encode_bar<'py>(py: Python<'py>, bar: &Bound<'py, PyDict>) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
    let (kind, (symbol, b, source)) = bar_kind_from_dict(py, bar)
        .and_then(|k| bar_from_dict(py, bar).map(|b| (k, b)))
        .and_then(|x| crate::wire::validate(&x.1 .0, &x.1 .1).map(|_| x))
        .map_err(|e| super::wire_error(py, &e))?;
    let mut out = Vec::with_capacity(192);
    crate::wire::write_bar_line(&mut out, &symbol, &b, kind, &crate::wire::Envelope { source, ..Default::default() });
    Ok(pyo3::types::PyBytes::new(py, &out))
}

/// One wire line (without its newline) → a bar dict (wire field names, ``kind``, ``source``), or
/// None for a heartbeat, status, blank or unknown-type line. :class:`WireError` for a line the
/// consumer would reject (``err.reason`` its reject code).
#[pyfunction]
fn decode_line<'py>(py: Python<'py>, line: &[u8]) -> PyResult<Option<Bound<'py, PyDict>>> {
    match crate::wire::parse_line(line) {
        Ok(crate::wire::Line::Bar(b)) => Ok(Some(bar_dict(py, &b.symbol, &b.bar, b.kind, b.source)?)),
        Ok(_) => Ok(None),
        Err(e) => Err(super::wire_error(py, &e)),
    }
}

/// An Alpaca timestamp (``msgpack.Timestamp``, RFC 3339 text, aware ``datetime``, int ms) → UTC
/// epoch milliseconds. ValueError for anything else.
#[pyfunction]
#[pyo3(name = "timestamp_ms")]
fn py_timestamp_ms(py: Python<'_>, t: &Bound<'_, PyAny>) -> PyResult<i64> {
    timestamp_ms(py, t).map_err(|e| PyValueError::new_err(e.to_string()))
}

fn now_or(now_ms: Option<i64>) -> i64 {
    now_ms.unwrap_or_else(|| SystemClock.now_ms())
}

/// True when the NYSE regular session is open at ``now_ms`` (UTC epoch ms; default: now).
#[pyfunction]
#[pyo3(signature = (now_ms = None))]
fn in_session(now_ms: Option<i64>) -> bool {
    calendar::in_session(now_or(now_ms))
}

/// The open (epoch ms) of the session in progress at ``now_ms``, or of the most recent one.
#[pyfunction]
#[pyo3(signature = (now_ms = None))]
fn last_session_open(now_ms: Option<i64>) -> i64 {
    calendar::last_session_open(now_or(now_ms))
}

/// The NYSE regular session of a New York date (``"YYYY-MM-DD"``) as ``(open_ms, close_ms)``,
/// or None on weekends and holidays. Outside the embedded table: Mon-Fri 09:30-16:00.
#[pyfunction]
fn session(date: &str) -> PyResult<Option<(i64, i64)>> {
    let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| PyValueError::new_err(format!("date must be YYYY-MM-DD, got {date:?}")))?;
    Ok(calendar::session_or_weekday(d).map(|s| (s.open_ms, s.close_ms)))
}

/// ``(first, last)`` dates (``YYYY-MM-DD``) of the embedded NYSE session table.
#[pyfunction]
fn calendar_coverage() -> (String, String) {
    let (a, b) = calendar::coverage();
    (a.to_string(), b.to_string())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPublisher>()?;
    m.add_function(wrap_pyfunction!(normalise_alpaca, m)?)?;
    m.add_function(wrap_pyfunction!(encode_bar, m)?)?;
    m.add_function(wrap_pyfunction!(decode_line, m)?)?;
    m.add_function(wrap_pyfunction!(py_timestamp_ms, m)?)?;
    m.add_function(wrap_pyfunction!(in_session, m)?)?;
    m.add_function(wrap_pyfunction!(last_session_open, m)?)?;
    m.add_function(wrap_pyfunction!(session, m)?)?;
    m.add_function(wrap_pyfunction!(calendar_coverage, m)?)?;
    Ok(())
}
