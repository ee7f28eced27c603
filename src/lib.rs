//! # barbridge
//!
//! Market-data bridge: a Python sidecar on the official `alpaca-py` SDK writes minute bars as
//! newline-delimited JSON into a named pipe; this crate reads them on its own thread, validates
//! them, keeps a bounded per-symbol store, watches the feed's health and delivers bars to a
//! trading engine over channels or callbacks.
//!
//! ```text
//! FIFO ──▶ consumer::reader (framing) ──▶ wire (parse + validate) ──▶ store (per symbol) ──▶ subscribers
//!                                            └──────────────▶ health (staleness, seq gaps, counters)
//! ```
//!
//! ## Embedding in a trading engine
//! ```no_run
//! use barbridge::{Consumer, FifoFeed, FeedOptions, Subscription};
//! use std::time::Duration;
//!
//! let consumer = Consumer::builder().stale_after(Duration::from_secs(120)).build()?;
//! let bars = consumer.subscribe(Subscription::symbols(["SPY", "SPXL"])?.name("engine"));
//! let feed = FifoFeed::start(consumer.clone(), barbridge::default_fifo_path(), FeedOptions::default())?;
//! while let Ok(event) = bars.recv() {
//!     let history = consumer.store().last_n(&event.symbol, 20); // indicators
//!     println!("{} close {} ({} bars of history)", event.symbol, event.bar.close, history.len());
//! }
//! feed.stop();
//! feed.join()?;
//! # Ok::<(), barbridge::Error>(())
//! ```
//!
//! ## Errors
//! Every module has its own error type carrying what failed ([`WireError`], [`FifoError`],
//! [`ConfigError`], ...); [`Error`] wraps them all, so `?` collects any of them into one type.
//! See `examples/engine.rs` for a complete program.

#![deny(missing_docs)]
#![deny(unsafe_code)] // one exception: wire::scan::ascii_str, documented and tested there

// Shared by every product: the bar, asset classes and the trading calendar, bounds, private files.
pub mod asset;
pub mod bar;
pub mod calendar;
pub mod capacity;
pub mod error;
pub mod fifo;
pub mod private;
pub mod trading;

// The wire format: every line type in both directions, its rules and its encoder.
pub mod wire;

// The consumer: pipeline, delivery, store, journal, cursor, health.
pub mod consumer;

// The sidecar's side, run inside the Python process: the bar gate, the Alpaca frame reader and
// the FIFO writer.
pub mod sidecar;

// Operations: the status file, Prometheus metrics, the HTTP endpoint and its page.
pub mod ops;

// NATS JetStream fan-out (cargo feature `nats`).
#[cfg(feature = "nats")]
pub mod nats;

#[cfg(feature = "python")]
mod python;

pub use bar::{Bar, BarKind, Source, Symbol};
pub use capacity::CapacityError;
pub use consumer::health::{Clock, FeedState, Health, ManualClock, StaleReason, SystemClock};
pub use consumer::reader::ReaderOptions;
pub use consumer::store::{BarStore, InsertMode, Inserted};
pub use consumer::{BarEvent, BarReceiver, ConfigError, Consumer, ConsumerBuilder, FeedOptions, FifoFeed, Ingested, Overflow, Subscription};
pub use error::{Error, Result};
pub use fifo::FifoError;
pub use ops::status::{StatusError, StatusReport, StatusWriter};
pub use wire::{RejectReason, WireError};

use std::path::PathBuf;

/// The private runtime directory: `$XDG_RUNTIME_DIR/barbridge`, else `/tmp/barbridge-<uid>`.
pub fn default_runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("barbridge"),
        _ => PathBuf::from(format!("/tmp/barbridge-{}", nix::unistd::getuid())),
    }
}

/// `<runtime dir>/bars.fifo`.
pub fn default_fifo_path() -> PathBuf {
    default_runtime_dir().join("bars.fifo")
}

/// `<runtime dir>/status.json`.
pub fn default_status_path() -> PathBuf {
    default_runtime_dir().join("status.json")
}
