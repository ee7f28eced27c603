//! `barbridge.NatsFeed`: a [`Consumer`](crate::python::consumer::PyConsumer) fed from NATS JetStream, the
//! Python face of [`crate::nats::NatsFeed`] (Rust does all the NATS work). Present when the
//! extension is built with the cargo feature `nats`.

use pyo3::prelude::*;

/// Register the class (nothing without the `nats` feature).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    #[cfg(feature = "nats")]
    m.add_class::<feed::PyNatsFeed>()?;
    let _ = m;
    Ok(())
}

#[cfg(feature = "nats")]
mod feed {
    use std::path::PathBuf;
    use std::sync::{Mutex, MutexGuard};

    use pyo3::exceptions::{PyOSError, PyValueError};
    use pyo3::prelude::*;
    use pyo3::types::PyTuple;

    use crate::nats::{NatsConnect, NatsError, NatsFeed, StreamOptions, SubscribeOptions};
    use crate::python::consumer::PyConsumer;

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn py_err(e: NatsError) -> PyErr {
        match e {
            NatsError::BadUrl { .. } | NatsError::BadSince(_) | NatsError::Config(_) => PyValueError::new_err(e.to_string()),
            other => PyOSError::new_err(other.to_string()),
        }
    }

    /// Feed a :class:`Consumer` from a NATS JetStream stream that ``barbridge run --publish``
    /// fills, on any host: the same store, journal, status file and subscriptions as a FIFO
    /// reader, through a durable pull consumer. A message is acknowledged only once its bar is
    /// journaled (or stored, without a journal), so a new ``NatsFeed`` with the same ``durable``
    /// resumes exactly where the last one stopped. A malformed or foreign message is rejected
    /// and counted like a bad FIFO line. While the server is unreachable the feed waits and
    /// retries (logged); it never raises for an outage. A server that refuses it (wrong
    /// credentials, an untrusted certificate, a permission denied) ends it: ``running`` turns
    /// False and ``close()`` raises OSError with one sentence naming the server.
    ///
    /// ``sub = consumer.subscribe(); feed = NatsFeed(consumer, "nats://127.0.0.1:4222",
    /// durable="engine-a"); for bar in sub: ...``
    ///
    /// Args:
    ///     consumer: the :class:`Consumer` to feed (subscribe to it before starting the feed so
    ///         no bar slips past).
    ///     url: ``nats://HOST:PORT`` or ``tls://HOST:PORT`` (several comma-separated for a
    ///         cluster), optionally ``nats://USER:PASSWORD@HOST:PORT``; ValueError if not. Shown
    ///         with its password masked.
    ///     durable: the durable consumer's name; two programs must not share one (they would
    ///         split the bars).
    ///     stream: the stream name (default ``BARS``); feed: the ``<feed>`` token of the
    ///         subjects ``bars.<feed>.<SYMBOL>`` (default ``iex``).
    ///     since: for a new durable, start at this time (RFC 3339 or ``YYYY-MM-DD``) instead of
    ///         the stream's beginning; ValueError if it is not a time.
    ///     user, password: authenticate with a user name and password; or token: a token; or
    ///         nkey_seed: an nkey seed (``SU…``); or creds: a ``.creds`` file. At most one way;
    ///         what is not given is taken from ``BARBRIDGE_NATS_USER``, ``BARBRIDGE_NATS_PASSWORD``
    ///         (or ``…_PASSWORD_FILE``), ``BARBRIDGE_NATS_TOKEN`` (``…_TOKEN_FILE``),
    ///         ``BARBRIDGE_NATS_NKEY`` (``…_NKEY_FILE``), ``BARBRIDGE_NATS_CREDS``.
    ///         ``password_file``/``token_file``/``nkey_file``: the secret in a file (mode 0600),
    ///         read again at every reconnection.
    ///     tls: require TLS (``BARBRIDGE_NATS_TLS=1``); ca: a PEM file of root certificates to
    ///         trust (``BARBRIDGE_NATS_CA``); cert and key: a client certificate and its key
    ///         (``BARBRIDGE_NATS_CERT``, ``BARBRIDGE_NATS_KEY``). ValueError (one sentence) for
    ///         settings that cannot work.
    #[pyclass(name = "NatsFeed", module = "barbridge", frozen)]
    pub struct PyNatsFeed {
        feed: Mutex<Option<NatsFeed>>,
        url: String,
        durable: String,
    }

    impl PyNatsFeed {
        fn shutdown(&self, py: Python<'_>) -> PyResult<()> {
            let feed = lock(&self.feed).take();
            if let Some(feed) = feed {
                feed.stop();
                py.allow_threads(|| feed.join()).map_err(py_err)?;
            }
            Ok(())
        }
    }

    #[pymethods]
    impl PyNatsFeed {
        #[new]
        #[pyo3(signature = (consumer, url, durable, stream = "BARS", feed = "iex", since = None, *, user = None, password = None,
            password_file = None, token = None, token_file = None, nkey_seed = None, nkey_file = None, creds = None, tls = false, ca = None,
            cert = None, key = None))]
        #[allow(clippy::too_many_arguments)]
        fn new(
            py: Python<'_>,
            consumer: PyRef<'_, PyConsumer>,
            url: &str,
            durable: &str,
            stream: &str,
            feed: &str,
            since: Option<&str>,
            user: Option<String>,
            password: Option<String>,
            password_file: Option<PathBuf>,
            token: Option<String>,
            token_file: Option<PathBuf>,
            nkey_seed: Option<String>,
            nkey_file: Option<PathBuf>,
            creds: Option<PathBuf>,
            tls: bool,
            ca: Option<PathBuf>,
            cert: Option<PathBuf>,
            key: Option<PathBuf>,
        ) -> PyResult<PyNatsFeed> {
            let mut b = NatsConnect::builder(url);
            if let Some(user) = user {
                b = b.user(user);
            }
            match (password, password_file) {
                (Some(_), Some(_)) => return Err(PyValueError::new_err("give password or password_file, not both")),
                (Some(p), None) => b = b.password(p),
                (None, Some(f)) => b = b.password_file(f),
                (None, None) => {}
            }
            match (token, token_file) {
                (Some(_), Some(_)) => return Err(PyValueError::new_err("give token or token_file, not both")),
                (Some(t), None) => b = b.token(t),
                (None, Some(f)) => b = b.token_file(f),
                (None, None) => {}
            }
            match (nkey_seed, nkey_file) {
                (Some(_), Some(_)) => return Err(PyValueError::new_err("give nkey_seed or nkey_file, not both")),
                (Some(s), None) => b = b.nkey_seed(s),
                (None, Some(f)) => b = b.nkey_file(f),
                (None, None) => {}
            }
            if let Some(c) = creds {
                b = b.creds_file(c);
            }
            if let Some(ca) = ca {
                b = b.root_ca(ca);
            }
            match (cert, key) {
                (Some(c), Some(k)) => b = b.client_cert(c, k),
                (None, None) => {}
                _ => return Err(PyValueError::new_err("a client certificate needs both cert and key")),
            }
            let target = b.require_tls(tls).from_env().build().map_err(py_err)?;
            // One subject-token rule (the library's), said in this API's terms.
            if crate::nats::validate_feed(durable).is_err() {
                return Err(PyValueError::new_err(format!("durable {durable:?} must be a non-empty name without '.', '*', '>' or space")));
            }
            if crate::nats::validate_feed(feed).is_err() {
                return Err(PyValueError::new_err(format!("feed {feed:?} must be one subject token (no '.', '*', '>' or space)")));
            }
            let since_ms = since.map(crate::nats::parse_since).transpose().map_err(py_err)?;
            let options = SubscribeOptions {
                stream: StreamOptions { name: stream.to_owned(), feed: feed.to_owned(), ..StreamOptions::default() },
                durable: durable.to_owned(),
                since_ms,
                stop_flag: None,
            };
            let inner = consumer.inner.clone();
            let shown = target.shown().to_owned();
            let started = py.allow_threads(|| NatsFeed::start(inner, target, options)).map_err(py_err)?;
            Ok(PyNatsFeed { feed: Mutex::new(Some(started)), url: shown, durable: durable.to_owned() })
        }

        /// The server URL (its password or token masked).
        #[getter]
        fn url(&self) -> String {
            self.url.clone()
        }

        /// The durable consumer's name.
        #[getter]
        fn durable(&self) -> String {
            self.durable.clone()
        }

        /// True while the feed's thread runs.
        #[getter]
        fn running(&self) -> bool {
            lock(&self.feed).as_ref().is_some_and(|f| !f.is_finished())
        }

        /// Stop the feed's thread and wait for it; what was received but not yet acknowledged is
        /// delivered again to the next feed on this durable (and recognised as a duplicate).
        /// Raises OSError if the feed had failed. Idempotent.
        fn close(&self, py: Python<'_>) -> PyResult<()> {
            self.shutdown(py)
        }

        fn __enter__(slf: Py<Self>) -> Py<Self> {
            slf
        }

        #[pyo3(signature = (*_args))]
        fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
            self.shutdown(py)?;
            Ok(false)
        }

        fn __repr__(&self) -> String {
            format!("NatsFeed({:?}, durable={:?}, running={})", self.url, self.durable, self.running())
        }
    }

    impl Drop for PyNatsFeed {
        fn drop(&mut self) {
            if let Some(feed) = lock(&self.feed).take() {
                feed.stop();
            }
        }
    }
}
