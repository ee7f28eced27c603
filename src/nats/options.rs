//! The rules a [`StreamOptions`] must meet, checked before anything connects (`run --publish`,
//! `run --source`, `NatsFeed` from Python): one typed error per rule.

use super::StreamOptions;

/// A stream setting that cannot work. Each message is one sentence naming `run`'s flag.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamOptionsError {
    /// Zero replicas, or a max age or duplicate window that is not positive.
    #[error(
        "--stream-replicas, --stream-max-age-hours and --stream-duplicate-window-minutes must be positive (hours and minutes at most 1,000,000)"
    )]
    NotPositive,
    /// A duplicate window longer than the stream keeps messages.
    #[error("--stream-duplicate-window-minutes cannot be longer than --stream-max-age-hours")]
    DuplicateWindowTooLong,
    /// A `<feed>` token that is not one NATS subject token.
    #[error("--feed {0:?} must be one subject token (no '.', '*', '>' or space)")]
    BadFeed(String),
}

impl StreamOptions {
    /// Check the options: replicas, max age and duplicate window positive, the window no longer
    /// than the max age, the feed one subject token.
    ///
    /// # Errors
    /// The [`StreamOptionsError`] of the first rule broken, in that order.
    pub fn validate(&self) -> Result<(), StreamOptionsError> {
        if self.replicas == 0 || self.max_age.is_zero() || self.duplicate_window.is_zero() {
            return Err(StreamOptionsError::NotPositive);
        }
        if self.duplicate_window > self.max_age {
            return Err(StreamOptionsError::DuplicateWindowTooLong);
        }
        validate_feed(&self.feed)
    }
}

/// The `<feed>` token rule: one subject token, no `.`, `*`, `>` or space, not empty.
///
/// # Errors
/// [`StreamOptionsError::BadFeed`].
pub fn validate_feed(feed: &str) -> Result<(), StreamOptionsError> {
    if feed.is_empty() || feed.contains(['.', '*', '>', ' ']) {
        return Err(StreamOptionsError::BadFeed(feed.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_rule_has_its_error() {
        let ok = StreamOptions::default();
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(StreamOptions { replicas: 0, ..ok.clone() }.validate(), Err(StreamOptionsError::NotPositive));
        assert_eq!(StreamOptions { max_age: Duration::ZERO, ..ok.clone() }.validate(), Err(StreamOptionsError::NotPositive));
        let long = StreamOptions { duplicate_window: ok.max_age + Duration::from_secs(1), ..ok.clone() };
        assert_eq!(long.validate(), Err(StreamOptionsError::DuplicateWindowTooLong));
        for feed in ["", "a.b", "*", ">", "a b"] {
            assert_eq!(StreamOptions { feed: feed.into(), ..ok.clone() }.validate(), Err(StreamOptionsError::BadFeed(feed.into())));
        }
    }
}
