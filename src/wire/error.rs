//! Why a line was rejected: [`WireError`] in words a user can act on, and [`RejectReason`], its
//! stable code, derived from it (one list of variants declares both: a new error is one entry).

use thiserror::Error;

use super::{MAX_LINE_BYTES, MAX_SYMBOL_BYTES, MAX_WRITER_BYTES};

/// Declares [`WireError`] and, from the same list, [`RejectReason`] (a fieldless twin of every
/// variant, with its snake_case code), [`RejectReason::ALL`] and [`WireError::reason`].
macro_rules! wire_errors {
    ($(
        $(#[doc = $doc:literal])*
        #[error($($msg:tt)*)]
        $variant:ident = $code:literal { $( $(#[doc = $fdoc:literal])* $field:ident : $ty:ty ),* $(,)? }
    ),* $(,)?) => {
        /// A rejected line: what was wrong, in words a user can act on.
        #[derive(Clone, Debug, PartialEq, Error)]
        #[non_exhaustive]
        pub enum WireError {
            $( $(#[doc = $doc])* #[error($($msg)*)] $variant { $( $(#[doc = $fdoc])* $field: $ty ),* }, )*
        }

        /// Why a line was rejected: one per [`WireError`] variant. Each reason has a stable
        /// snake_case code (used in counters, the status file and the shared test vectors).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum RejectReason {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl RejectReason {
            /// Every reason, in counter order.
            pub const ALL: [RejectReason; [$($code),*].len()] = [$(RejectReason::$variant),*];

            /// The stable snake_case code (counters, status file, test vectors).
            pub fn code(self) -> &'static str {
                match self {
                    $(RejectReason::$variant => $code,)*
                }
            }

            /// Position in [`RejectReason::ALL`] (for counter arrays).
            pub fn index(self) -> usize {
                self as usize
            }
        }

        impl WireError {
            /// The reject reason this error counts under.
            pub fn reason(&self) -> RejectReason {
                match self {
                    $(WireError::$variant { .. } => RejectReason::$variant,)*
                }
            }
        }
    };
}

wire_errors! {
    /// Not UTF-8.
    #[error("line is not valid UTF-8 (byte {valid_up_to} starts an invalid sequence)")]
    InvalidUtf8 = "invalid_utf8" {
        /// Bytes before the first invalid sequence.
        valid_up_to: usize,
    },
    /// Longer than [`MAX_LINE_BYTES`].
    #[error("line of {len} bytes exceeds the {MAX_LINE_BYTES}-byte limit")]
    Oversize = "oversize" {
        /// The line's length so far, bytes.
        len: usize,
    },
    /// Not a JSON object.
    #[error("line is not a JSON object: {detail}")]
    MalformedJson = "malformed_json" {
        /// What the JSON parser said.
        detail: String,
    },
    /// A required bar field is absent.
    #[error("bar is missing field `{field}`")]
    MissingField = "missing_field" {
        /// The missing field.
        field: &'static str,
    },
    /// A field has the wrong JSON type.
    #[error("field has the wrong type: {detail}")]
    WrongType = "wrong_type" {
        /// Which field, and what it was.
        detail: String,
    },
    /// A price or volume is NaN or infinite.
    #[error("field `{field}` is not a finite number")]
    NonFinite = "non_finite" {
        /// The field concerned.
        field: &'static str,
    },
    /// `high` below `low`.
    #[error("high {high} is below low {low}")]
    HighBelowLow = "high_below_low" {
        /// The bar's high.
        high: f64,
        /// The bar's low.
        low: f64,
    },
    /// `open` outside `[low, high]`.
    #[error("open {open} is outside [low {low}, high {high}]")]
    OpenOutsideRange = "open_outside_range" {
        /// The bar's open.
        open: f64,
        /// The bar's low.
        low: f64,
        /// The bar's high.
        high: f64,
    },
    /// `close` outside `[low, high]`.
    #[error("close {close} is outside [low {low}, high {high}]")]
    CloseOutsideRange = "close_outside_range" {
        /// The bar's close.
        close: f64,
        /// The bar's low.
        low: f64,
        /// The bar's high.
        high: f64,
    },
    /// `volume` below zero.
    #[error("volume {volume} is negative")]
    NegativeVolume = "negative_volume" {
        /// The bar's volume.
        volume: f64,
    },
    /// The symbol breaks the symbol rule.
    #[error("symbol {symbol:?} is not 1-{MAX_SYMBOL_BYTES} printable ASCII characters without spaces or lower-case letters (with a `/`: a crypto pair BASE/QUOTE)")]
    InvalidSymbol = "invalid_symbol" {
        /// The symbol given.
        symbol: String,
    },
    /// `timestamp_ms` is not epoch milliseconds in range.
    #[error("timestamp_ms {timestamp_ms} is not UTC epoch milliseconds between 1990-01-01 and 2100-01-01 (seconds or microseconds?)")]
    InvalidTimestamp = "invalid_timestamp" {
        /// The value given.
        timestamp_ms: i64,
    },
    /// `timestamp_ms` is not the start of a minute.
    #[error("timestamp_ms {timestamp_ms} is not the start of a minute (a multiple of 60000): bars are minute bars")]
    OffMinute = "off_minute" {
        /// The value given.
        timestamp_ms: i64,
    },
    /// The writer id breaks the writer id rule.
    #[error("writer id {shown:?} ({len} bytes) is not 1-{MAX_WRITER_BYTES} printable ASCII characters")]
    InvalidWriter = "invalid_writer" {
        /// The id given, cut to 80 characters.
        shown: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A bar, trading status, `minute_closed` part or quiet mark whose time lies further ahead of
    /// the consumer's clock than its allowed clock skew (`ConsumerBuilder::max_clock_skew`): a
    /// writer's clock ahead, or a forged line. Needs the consumer's clock: the wire vectors have none.
    #[error("time {timestamp_ms} ({shown}) lies {ahead_secs} s ahead of this consumer's clock, more than the allowed clock skew of {skew_secs} s (--max-clock-skew): a bar from the future is refused (is the writer's clock or the consumer's wrong?)")]
    FutureBar = "future_bar" {
        /// The line's time (a bar's or minute's start, a trading status's `ts_ms`), epoch ms.
        timestamp_ms: i64,
        /// That time, readable (New York).
        shown: String,
        /// How far ahead of the consumer's clock, seconds.
        ahead_secs: i64,
        /// The allowed clock skew, seconds.
        skew_secs: u64,
    },
    /// A seq, or a heartbeat's claim about seqs, that no writer can have made.
    #[error("impossible seq claim: {detail}")]
    ImpossibleSeq = "impossible_seq" {
        /// What was claimed, and the rule it breaks.
        detail: String,
    },
}
