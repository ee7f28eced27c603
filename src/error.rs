//! [`Error`]: the crate's one error type. Each module keeps its own error, which carries the
//! context of what failed (a path, a field, a setting); `Error` wraps each of them, so a library
//! user can `?` anything this crate returns into one type and still match on the module error.
//! See `docs/ARCHITECTURE.md`, "Errors".

use std::sync::Arc;

/// Any error this crate returns. Its message is the module error's own sentence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A consumer or subscription setting the library cannot honour.
    #[error(transparent)]
    Config(#[from] crate::consumer::ConfigError),
    /// A capacity of 0 or beyond its bound.
    #[error(transparent)]
    Capacity(#[from] crate::capacity::CapacityError),
    /// A line or bar that breaks the wire protocol.
    #[error(transparent)]
    Wire(#[from] crate::wire::WireError),
    /// The FIFO (consumer side) cannot be used.
    #[error(transparent)]
    Fifo(#[from] crate::fifo::FifoError),
    /// The FIFO writer (sidecar side) cannot start or stopped on an error.
    #[error(transparent)]
    Writer(#[from] Arc<crate::sidecar::writer::WriterError>),
    /// The journal cannot be opened or read.
    #[error(transparent)]
    Journal(#[from] crate::consumer::journal::JournalError),
    /// A path another user could have prepared, or a private file that cannot be written.
    #[error(transparent)]
    Private(#[from] crate::private::PrivateError),
    /// An ack or cursor file cannot be read.
    #[error(transparent)]
    CursorFile(#[from] crate::consumer::cursor::CursorFileError),
    /// A status file cannot be read or written.
    #[error(transparent)]
    Status(#[from] crate::ops::status::StatusError),
    /// A date outside the embedded NYSE session table.
    #[error(transparent)]
    Calendar(#[from] crate::calendar::OutsideTable),
    /// The metrics/status HTTP server cannot start.
    #[error(transparent)]
    Http(#[from] crate::ops::http::HttpError),
    /// The NATS fan-out cannot start or stopped on an error.
    #[cfg(feature = "nats")]
    #[error(transparent)]
    Nats(#[from] crate::nats::NatsError),
    /// A NATS server or stream check failed ([`crate::nats::check_server`]).
    #[cfg(feature = "nats")]
    #[error(transparent)]
    NatsCheck(#[from] crate::nats::CheckFailed),
}

impl From<crate::sidecar::writer::WriterError> for Error {
    fn from(e: crate::sidecar::writer::WriterError) -> Error {
        Error::Writer(Arc::new(e))
    }
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn build(capacity: usize) -> Result<std::sync::Arc<crate::Consumer>> {
        Ok(crate::Consumer::builder().capacity_per_symbol(capacity).build()?)
    }

    #[test]
    fn module_errors_convert_and_keep_their_message_and_variant() {
        let err = build(0).unwrap_err();
        assert_eq!(err.to_string(), "bars kept per symbol must be at least 1, got 0");
        assert!(matches!(err, Error::Config(crate::consumer::ConfigError::Capacity(crate::CapacityError::Zero { .. }))));
        let wire: Error = crate::wire::validate_symbol("spy").unwrap_err().into();
        assert!(matches!(wire, Error::Wire(crate::WireError::InvalidSymbol { .. })));
    }
}
