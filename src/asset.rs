//! Asset classes: stocks and crypto, told apart by the symbol's shape.
//!
//! A crypto symbol is a pair `BASE/QUOTE` (`BTC/USD`, `ETH/USDT`): exactly one `/` between two
//! non-empty runs of upper-case letters and digits. Any other symbol is a stock (`SPY`, `BRK.B`).
//! The shape is the only thing that decides, so one consumer can take both at once (a stock
//! sidecar and a crypto sidecar writing into one FIFO) and each bar still goes to its own day:
//!
//! | class | day | journal file | session |
//! |---|---|---|---|
//! | stock | New York trading date | `bars-YYYY-MM-DD.jsonl` | the NYSE regular session ([`crate::calendar`]) |
//! | crypto | UTC date | `crypto-YYYY-MM-DD.jsonl` | every minute of the UTC day (24/7, no calendar) |
//!
//! See docs/ARCHITECTURE.md, "Crypto".

use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use crate::calendar::{ny_date, ny_day_bounds, Session};

const DAY_MS: i64 = 86_400_000;

/// Which market a symbol trades in, which decides its journal day and its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AssetClass {
    /// US stocks: New York trading days, the NYSE regular session.
    Stock,
    /// Crypto pairs: UTC days, trading around the clock.
    Crypto,
}

impl AssetClass {
    /// Both classes, in journal-file order.
    pub const ALL: [AssetClass; 2] = [AssetClass::Stock, AssetClass::Crypto];

    /// The class of `symbol` by its shape: a `/` makes it crypto (see the module docs).
    pub fn of(symbol: &str) -> AssetClass {
        if symbol.as_bytes().contains(&b'/') {
            AssetClass::Crypto
        } else {
            AssetClass::Stock
        }
    }

    /// The day an instant belongs to: the New York date for stocks, the UTC date for crypto.
    pub fn date(self, ts_ms: i64) -> NaiveDate {
        match self {
            AssetClass::Stock => ny_date(ts_ms),
            AssetClass::Crypto => chrono::DateTime::from_timestamp_millis(ts_ms).unwrap_or_default().date_naive(),
        }
    }

    /// `[start, end)` of the day containing `ts_ms`, in UTC epoch ms.
    pub fn day_bounds(self, ts_ms: i64) -> (i64, i64) {
        match self {
            AssetClass::Stock => ny_day_bounds(ts_ms),
            AssetClass::Crypto => {
                let start = ts_ms - ts_ms.rem_euclid(DAY_MS);
                (start, start + DAY_MS)
            }
        }
    }

    /// The journal file name's prefix: `bars` or `crypto`.
    pub fn journal_prefix(self) -> &'static str {
        match self {
            AssetClass::Stock => "bars",
            AssetClass::Crypto => "crypto",
        }
    }
}

/// The crypto symbol shape: `BASE/QUOTE`, each side 1 or more upper-case ASCII letters or digits.
pub fn is_crypto_pair(symbol: &str) -> bool {
    let part = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    symbol.split_once('/').is_some_and(|(base, quote)| part(base) && part(quote))
}

/// Crypto trades around the clock: the "session" of a UTC day is the whole day.
pub fn crypto_session(date: NaiveDate) -> Session {
    let open_ms = date.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_millis();
    Session { date, open_ms, close_ms: open_ms + DAY_MS }
}

/// The session `symbol` trades in on the day of `now_ms`: the NYSE regular session for a stock
/// (`None` on a weekend or holiday), the whole UTC day for a crypto pair.
pub fn session_today(symbol: &str, now_ms: i64) -> Option<Session> {
    match AssetClass::of(symbol) {
        AssetClass::Stock => crate::calendar::session_on(ny_date(now_ms)).ok().flatten(),
        AssetClass::Crypto => Some(crypto_session(AssetClass::Crypto.date(now_ms))),
    }
}

/// One journal day file: an asset class and its date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JournalDay {
    /// Stock (New York date) or crypto (UTC date).
    pub asset: AssetClass,
    /// The day.
    pub date: NaiveDate,
}

impl JournalDay {
    /// The day file a bar of `symbol` at `ts_ms` is journaled in.
    pub fn of(symbol: &str, ts_ms: i64) -> JournalDay {
        let asset = AssetClass::of(symbol);
        JournalDay { asset, date: asset.date(ts_ms) }
    }

    /// `bars-YYYY-MM-DD.jsonl` or `crypto-YYYY-MM-DD.jsonl`.
    pub fn file_name(&self) -> String {
        format!("{}-{}.jsonl", self.asset.journal_prefix(), self.date)
    }

    /// The file in the journal directory `dir`.
    pub fn path(&self, dir: &Path) -> PathBuf {
        dir.join(self.file_name())
    }

    /// `[start, end)` of the day in UTC epoch ms.
    pub fn bounds(&self) -> (i64, i64) {
        let noon = self.date.and_hms_opt(12, 0, 0).expect("noon").and_utc().timestamp_millis();
        self.asset.day_bounds(noon)
    }

    /// The day a journal file name stands for, `None` for any other file.
    pub fn parse(name: &str) -> Option<JournalDay> {
        let body = name.strip_suffix(".jsonl")?;
        let (prefix, date) = body.split_once('-')?;
        let asset = AssetClass::ALL.into_iter().find(|a| a.journal_prefix() == prefix)?;
        let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok().filter(|d| d.to_string() == date)?;
        Some(JournalDay { asset, date })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_decides_the_class() {
        for s in ["BTC/USD", "ETH/USDT", "1INCH/USD"] {
            assert!(is_crypto_pair(s), "{s}");
            assert_eq!(AssetClass::of(s), AssetClass::Crypto);
        }
        for s in ["BTC/", "/USD", "BTC//USD", "BTC/USD/EUR", "btc/usd", "BTC-USD", "BRK.B/USD", "SPY"] {
            assert!(!is_crypto_pair(s), "{s}");
        }
        assert_eq!(AssetClass::of("BRK.B"), AssetClass::Stock);
    }

    #[test]
    fn crypto_days_are_utc_stock_days_new_york() {
        // 2025-10-09 00:30 UTC is 2025-10-08 20:30 in New York.
        let ts = 1_759_969_800_000;
        assert_eq!(JournalDay::of("BTC/USD", ts).file_name(), "crypto-2025-10-09.jsonl");
        assert_eq!(JournalDay::of("SPY", ts).file_name(), "bars-2025-10-08.jsonl");
        let day = JournalDay::of("BTC/USD", ts);
        assert_eq!(day.bounds(), (1_759_968_000_000, 1_759_968_000_000 + DAY_MS));
        assert_eq!(JournalDay::parse("crypto-2025-10-09.jsonl"), Some(day));
        assert_eq!(JournalDay::parse("bars-2025-10-08.jsonl"), Some(JournalDay::of("SPY", ts)));
        for other in ["cursor.json", "bars-2025-1-08.jsonl", "crypto-x.jsonl", "options-2025-10-08.jsonl"] {
            assert_eq!(JournalDay::parse(other), None, "{other}");
        }
        let s = crypto_session(day.date);
        assert_eq!((s.open_ms, s.minutes()), (1_759_968_000_000, 1440));
    }
}
