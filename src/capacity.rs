//! Capacities a user chooses (bars kept per symbol, a subscriber's buffer): checked once, here,
//! and refused with a typed error instead of being clamped to something the user did not ask for.

use std::num::NonZeroUsize;

use thiserror::Error;

/// Largest subscriber buffer, in bars: a whole trading day of minute bars (390) for 10,000
/// symbols fits. A subscriber's channel allocates its buffer up front, so a larger one would
/// take gigabytes before the first bar.
pub const MAX_SUBSCRIPTION_CAPACITY: usize = 1 << 22;

/// Default bound on the symbols a store holds: twice the full US market (about 10,000), so a
/// real feed never meets it while a writer sending made-up symbols cannot grow memory without end.
pub const DEFAULT_MAX_SYMBOLS: usize = 20_000;

/// Largest symbol bound accepted: past it the bound would bound nothing (10 million symbols are
/// gigabytes of per-symbol overhead).
pub const MAX_MAX_SYMBOLS: usize = 10_000_000;

/// A capacity outside what the library can honour.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CapacityError {
    /// Zero: nothing could ever be kept.
    #[error("{what} must be at least 1, got 0")]
    Zero {
        /// The capacity that was given, in words (e.g. "a subscription's capacity").
        what: &'static str,
    },
    /// More than the stated maximum.
    #[error("{what} must be at most {max}, got {got}")]
    TooLarge {
        /// The capacity that was given, in words.
        what: &'static str,
        /// The largest value accepted.
        max: usize,
        /// The value given.
        got: usize,
    },
}

/// `n` if it lies in `1..=max`, else the error naming `what`.
pub(crate) fn check(what: &'static str, n: usize, max: usize) -> Result<NonZeroUsize, CapacityError> {
    let n = NonZeroUsize::new(n).ok_or(CapacityError::Zero { what })?;
    if n.get() > max {
        return Err(CapacityError::TooLarge { what, max, got: n.get() });
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_too_large_are_errors_not_clamps() {
        assert_eq!(check("x", 0, 5), Err(CapacityError::Zero { what: "x" }));
        assert_eq!(check("x", 6, 5), Err(CapacityError::TooLarge { what: "x", max: 5, got: 6 }));
        assert_eq!(check("x", 5, 5).map(NonZeroUsize::get), Ok(5));
        assert_eq!(check("bars kept per symbol", 0, 5).unwrap_err().to_string(), "bars kept per symbol must be at least 1, got 0");
    }
}
