//! `barbridge replay`: recorded bars (a journal or any wire-format JSONL file) through the
//! consumer path.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use barbridge::consumer::journal::{FsyncPolicy, Journal};
use barbridge::Consumer;

use super::output::{config_error, plural};

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// Files to replay, in order.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long, value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// Print every accepted bar to stdout as a wire line.
    #[arg(long)]
    pub echo: bool,
    /// Journal what is accepted.
    #[arg(long)]
    pub journal: Option<PathBuf>,
}

impl ReplayArgs {
    pub fn run(self) -> ExitCode {
        let journal = match self.journal.map(|dir| Journal::open(dir, FsyncPolicy::default())).transpose() {
            Ok(j) => j,
            Err(e) => return config_error(e),
        };
        replay(&self.files, self.symbols, self.echo, journal)
    }
}

fn replay(files: &[PathBuf], symbols: Vec<String>, echo: bool, journal: Option<Journal>) -> ExitCode {
    // A file of the user's own: its symbols are bounded by its size, not by a live feed's bound.
    let mut builder = Consumer::builder().symbols(symbols).capacity_per_symbol(1 << 20).max_symbols(barbridge::consumer::store::MAX_MAX_SYMBOLS);
    if let Some(j) = journal {
        builder = builder.journal(j);
    }
    let consumer = match builder.build() {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    let echo = echo.then(|| consumer.echo_to_stdout());
    for file in files {
        let text = match std::fs::read(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("barbridge: cannot read {}: {e}", file.display());
                return ExitCode::from(1);
            }
        };
        // One line per `\n`; a last line without one counts too, the empty piece after a
        // final `\n` does not.
        let body = text.strip_suffix(b"\n").unwrap_or(&text);
        if !body.is_empty() {
            for line in body.split(|b| *b == b'\n') {
                let _ = consumer.ingest_line(line);
            }
        }
        consumer.flush();
    }
    if let Some(echo) = echo {
        echo.finish(Duration::from_secs(10));
    }
    let c = consumer.health().counters.snapshot();
    log::info!(
        "replayed {}: {} accepted, {} corrections, {} duplicates, {} rejected, {}",
        plural(usize::try_from(c.lines).unwrap_or(usize::MAX), "line"),
        plural(usize::try_from(c.bars_accepted).unwrap_or(usize::MAX), "bar"),
        c.corrections,
        c.duplicates,
        c.rejects_total,
        plural(consumer.store().symbols().len(), "symbol")
    );
    ExitCode::SUCCESS
}
