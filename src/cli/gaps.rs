//! `barbridge gaps`: per symbol, the session minutes without a bar in a journal (stocks: the
//! NYSE regular session; crypto pairs: the UTC day). The tables are drawn by [`super::render`].

use std::path::PathBuf;
use std::process::ExitCode;

use barbridge::asset::{AssetClass, JournalDay};
use barbridge::calendar::{ny_date, session_on};
use barbridge::consumer::journal::day_path;
use barbridge::{Clock, SystemClock};

use super::output::{config_error, emit};
use super::render::{render_crypto_gaps, render_gaps};

/// What the crypto report says of its holes.
pub const CRYPTO_NOTE: &str = "crypto: every UTC minute counts; Alpaca sends no bar for a minute without trades, so a hole is a quiet minute or a loss (compare with REST bars to tell)";

#[derive(clap::Args)]
pub struct GapsArgs {
    #[arg(long, env = "BARBRIDGE_JOURNAL")]
    pub journal: PathBuf,
    /// Session date (YYYY-MM-DD, New York; crypto pairs: the UTC day); default: today in New York (UTC for crypto).
    #[arg(long)]
    pub date: Option<String>,
    /// Only these symbols (comma-separated); default: every symbol in the journal.
    #[arg(long, value_delimiter = ',')]
    pub symbols: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

impl GapsArgs {
    pub fn run(self) -> ExitCode {
        match super::check_symbols(&self.symbols) {
            Ok(()) => gaps(&self.journal, self.date.as_deref(), &self.symbols, self.json),
            Err(e) => e,
        }
    }
}

fn gaps(journal: &std::path::Path, date: Option<&str>, symbols: &[String], json: bool) -> ExitCode {
    let date = match date {
        Some(d) => match chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d") {
            Ok(d) => Some(d),
            Err(_) => return config_error(format!("--date {d:?} is not a YYYY-MM-DD date")),
        },
        None => None,
    };
    // Crypto pairs have their own UTC days and no calendar (see crypto_gaps); the rest is stocks.
    let (crypto, stocks): (Vec<String>, Vec<String>) = symbols.iter().cloned().partition(|s| AssetClass::of(s) == AssetClass::Crypto);
    let crypto_part = match crypto_gaps(journal, date, &crypto, symbols.is_empty(), json) {
        Ok(part) => part,
        Err(code) => return code,
    };
    if !symbols.is_empty() && stocks.is_empty() {
        let text = crypto_part.map_or_else(String::new, |(text, _)| text);
        return emit(&text).map_or_else(|code| code, |()| ExitCode::SUCCESS);
    }
    let symbols = &stocks;
    let date = date.unwrap_or_else(|| ny_date(SystemClock.now_ms()));
    if let Some(notice) = barbridge::calendar::expiry_notice(ny_date(SystemClock.now_ms())) {
        log::warn!("{notice}");
    }
    let session = match session_on(date) {
        Ok(Some(s)) => s,
        Ok(None) => {
            let text = format!("{date} is not a NYSE trading day (weekend or holiday): no session, no gaps\n");
            let text = text + &crypto_part.map_or_else(String::new, |(text, _)| text);
            return emit(&text).map_or_else(|code| code, |()| ExitCode::SUCCESS);
        }
        Err(e) => return config_error(e),
    };
    let path = day_path(journal, date);
    if !path.exists() && symbols.is_empty() {
        // A crypto-only journal has no stock day file: report what there is, or say what is missing.
        return match crypto_part {
            Some((text, value)) => emit(&if json { value.to_string() + "\n" } else { text }).map_or_else(|code| code, |()| ExitCode::SUCCESS),
            None => {
                eprintln!(
                    "barbridge: no journal for {date} in {}: neither {} nor {} exists (is --journal the directory `run --journal` writes, and --date a day it ran?)",
                    journal.display(),
                    path.display(),
                    JournalDay { asset: AssetClass::Crypto, date }.path(journal).display()
                );
                ExitCode::from(1)
            }
        };
    }
    let until = SystemClock.now_ms();
    let report = match barbridge::consumer::gaps::journal_session_gaps(&path, &session, until, symbols) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("barbridge: {e}");
            return ExitCode::from(1);
        }
    };
    let text = if json {
        let mut doc = serde_json::json!({"date": date.to_string(), "open_ms": session.open_ms, "close_ms": session.close_ms, "symbols": report});
        if let Some((_, crypto)) = crypto_part {
            doc["crypto"] = crypto;
        }
        doc.to_string() + "\n"
    } else {
        render_gaps(&session, until, &report, &path) + &crypto_part.map_or_else(String::new, |(text, _)| text)
    };
    emit(&text).map_or_else(|code| code, |()| ExitCode::SUCCESS)
}

/// The crypto part of `gaps`: the UTC day `date` (default: today, UTC) of `crypto-DATE.jsonl`,
/// every minute in session (crypto trades around the clock, see barbridge::asset). `None` when
/// no crypto pair is asked for and the day has no crypto file. Alpaca sends no bar for a minute
/// without trades, and quiet minutes are common for crypto pairs: a hole here is a quiet minute or
/// a loss, which the journal alone cannot tell apart, and the report says so.
/// Returns (text for a person or one JSON line, the JSON value).
#[allow(clippy::type_complexity)]
fn crypto_gaps(
    journal: &std::path::Path,
    date: Option<chrono::NaiveDate>,
    pairs: &[String],
    all: bool,
    json: bool,
) -> Result<Option<(String, serde_json::Value)>, ExitCode> {
    let now = SystemClock.now_ms();
    let day = JournalDay { asset: AssetClass::Crypto, date: date.unwrap_or_else(|| AssetClass::Crypto.date(now)) };
    let path = day.path(journal);
    if pairs.is_empty() && !(all && path.exists()) {
        return Ok(None);
    }
    let session = barbridge::asset::crypto_session(day.date);
    // The same view as stocks', halts included; a day without a file has no bar.
    let report = if path.exists() {
        match barbridge::consumer::gaps::journal_session_gaps(&path, &session, now, pairs) {
            Ok(report) => report,
            Err(e) => {
                eprintln!("barbridge: {e}");
                return Err(ExitCode::from(1));
            }
        }
    } else {
        pairs.iter().map(|p| barbridge::consumer::gaps::session_gaps(p, &session, now, [])).collect()
    };
    let value = serde_json::json!({"date": day.date.to_string(), "open_ms": session.open_ms, "close_ms": session.close_ms, "symbols": report, "note": CRYPTO_NOTE});
    let text = if json { value.to_string() + "\n" } else { render_crypto_gaps(day.date, &session, now, &report, &path) };
    Ok(Some((text, value)))
}
