//! # barbridge
//!
//! Market-data bridge: a Python sidecar on the official `alpaca-py` SDK writes minute bars as
//! newline-delimited JSON into a named pipe; this crate reads them on its own thread, validates
//! them, keeps a bounded per-symbol store, watches the feed's health and delivers bars to a
//! trading engine over channels or callbacks.
//!
//! ```text
//! FIFO ──▶ pipe::reader (framing) ──▶ wire (parse + validate) ──▶ store (per symbol) ──▶ subscribers
//!                                        └──────────────▶ health (staleness, seq gaps, counters)
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
#![deny(unsafe_code)] // one exception: wire::ascii_str, documented and tested there

pub mod alpaca_frame;
pub mod asset;
pub mod bar;
pub mod calendar;
pub mod capacity;
pub mod cursor;
pub mod error;
pub mod feed;
pub mod gaps;
pub mod health;
pub mod http;
pub mod journal;
pub mod latency;
pub mod metrics;
pub mod minute;
pub mod page;
pub mod pipe;
pub mod private;
pub mod publish;
pub mod status;
pub mod store;
pub mod trading;
pub mod wire;

/// NATS JetStream fan-out (cargo feature `nats`).
#[cfg(feature = "nats")]
pub mod nats;

#[cfg(feature = "python")]
mod python;

pub use bar::{Bar, BarKind, Source, Symbol};
pub use capacity::CapacityError;
pub use error::{Error, Result};
pub use feed::{BarEvent, BarReceiver, ConfigError, Consumer, ConsumerBuilder, FeedOptions, FifoFeed, Ingested, Overflow, Subscription};
pub use health::{Clock, FeedState, Health, ManualClock, StaleReason, SystemClock};
pub use pipe::reader::ReaderOptions;
pub use pipe::FifoError;
pub use status::{StatusError, StatusReport, StatusWriter};
pub use store::{BarStore, InsertMode, Inserted};
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
