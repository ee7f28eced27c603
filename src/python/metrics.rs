//! `MetricsServer`: the sidecar's `/metrics` on the crate's HTTP server ([`crate::ops::server`]),
//! so the sidecar's endpoint has the same bounds as the consumer's (one implementation). The
//! server's thread calls the Python `render` callable for each scrape, holding the GIL only for
//! that call and no lock of the crate meanwhile.

use std::sync::{Arc, Mutex, OnceLock};

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

use crate::ops::http::HttpError;
use crate::ops::server::{self, Reply, Server};

/// Content type of the Prometheus text format (what ``prometheus_client.generate_latest`` writes).
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serve ``GET /metrics`` on ``addr`` (``HOST:PORT``, or ``PORT`` meaning 127.0.0.1; port 0
/// picks a free one) from a Rust thread, within the consumer's HTTP bounds (connections, head
/// size and time, per-connection deadline; request bodies are never read). ``render()`` is
/// called for each scrape and returns the exposition text (e.g.
/// ``prometheus_client.generate_latest(registry).decode()``); the server's own counters are
/// appended as ``{prefix}http_*``. An exception in ``render`` answers 500 and is logged. Raises
/// ValueError for an address that is not ``HOST:PORT``, OSError when it cannot be bound.
#[pyclass(name = "MetricsServer", module = "barbridge")]
pub(crate) struct PyMetricsServer {
    server: Mutex<Option<Server>>,
    addr: std::net::SocketAddr,
    status: Box<dyn Fn() -> server::ServerStatus + Send + Sync>,
}

impl std::fmt::Debug for PyMetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// Call `render` under the GIL; its text or why not.
fn call_render(render: &Py<PyAny>) -> Result<String, String> {
    Python::with_gil(|py| render.call0(py).and_then(|v| v.extract::<String>(py)).map_err(|e| e.to_string()))
}

#[pymethods]
impl PyMetricsServer {
    #[new]
    #[pyo3(signature = (addr, render, prefix = "barbridge_sidecar_"))]
    fn new(addr: &str, render: Py<PyAny>, prefix: &str) -> PyResult<Self> {
        let listener = server::bind(addr).map_err(|e| match e {
            HttpError::BadAddress { .. } => PyValueError::new_err(e.to_string()),
            _ => PyOSError::new_err(e.to_string()),
        })?;
        let own_prefix = format!("{prefix}http_");
        // The handler appends the server's own counters: a cell filled once the server runs.
        let status_cell: Arc<OnceLock<Box<dyn Fn() -> server::ServerStatus + Send + Sync>>> = Arc::new(OnceLock::new());
        let for_handler = status_cell.clone();
        let handler: server::Handler = Arc::new(move |path: &str| {
            if path != "/metrics" {
                return Reply::not_found();
            }
            match call_render(&render) {
                Ok(mut text) => {
                    if let Some(status) = for_handler.get() {
                        text.push_str(&crate::ops::metrics::render_http_server(&own_prefix, &status()));
                    }
                    Reply::ok(TEXT_FORMAT, text)
                }
                Err(e) => {
                    log::error!("metrics: the render callable failed: {e}");
                    Reply::error("the metrics could not be rendered")
                }
            }
        });
        let server =
            Server::start(listener, server::Limits::default(), handler, None, "barbridge-metrics").map_err(|e| PyOSError::new_err(e.to_string()))?;
        let _ = status_cell.set(Box::new(server.status_fn()));
        Ok(PyMetricsServer { addr: server.local_addr(), status: Box::new(server.status_fn()), server: Mutex::new(Some(server)) })
    }

    /// The port it listens on.
    #[getter]
    fn port(&self) -> u16 {
        self.addr.port()
    }

    /// ``HOST:PORT`` it listens on.
    #[getter]
    fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// The server's own counters: connections open, accepted, refused past the bound, accept
    /// errors, connection errors, deadline closes, requests, failed requests (render errors), last error.
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        super::to_py(py, &(self.status)())
    }

    /// Stop serving and wait for its thread (the GIL is released meanwhile). Idempotent.
    fn stop(&self, py: Python<'_>) {
        let server = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(server) = server {
            py.allow_threads(|| server.stop());
        }
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyMetricsServer>()
}
