//! The `barbridge` binary's subcommands, one module each, and what they share. A module of the
//! binary (`mod cli;` in main.rs), not of the library: nothing here is an API, and the library's
//! public surface stays what an embedding program uses. Tests drive these through the binary.
//!
//! A new subcommand: a module here with its `clap::Args` struct and a `run(self) -> ExitCode`,
//! and one variant of [`Command`].

pub mod gaps;
pub mod nats;
pub mod output;
pub mod render;
pub mod replay;
pub mod run;
pub mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use output::{config_error, LogFormat};

#[derive(Parser)]
#[command(name = "barbridge", version, about = "Market-data bridge consumer: Alpaca bars from the sidecar's FIFO into a per-symbol store")]
pub struct Cli {
    /// Log lines on stderr: text for a person, json (one object a line: ts, level, target,
    /// message, pid) for log shippers.
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text, env = "BARBRIDGE_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Command {
    /// Read bars from the FIFO until SIGINT/SIGTERM.
    Run(run::RunArgs),
    /// List, per symbol, the regular-session minutes without a bar in a journal (times of day
    /// in New York time).
    Gaps(gaps::GapsArgs),
    /// Feed recorded bars (a journal or any wire-format JSONL file) through the consumer path.
    Replay(replay::ReplayArgs),
    /// Check a NATS server for `run --publish`/`--source`: reachable, JetStream enabled, the
    /// stream usable (nothing is created). One line per check; exit 0 all good, 2 otherwise.
    NatsCheck(nats::NatsCheckArgs),
    /// Show a running consumer's status. Times of day are New York time.
    ///
    /// Exit code: 0 live; 1 stale or waiting for the first line; 2 not running (its process is
    /// gone, or the file was not rewritten for 5 of its refresh periods) or the file is
    /// unreadable.
    Status(status::StatusArgs),
}

impl Command {
    /// Run the subcommand; its exit code.
    pub fn run(self) -> ExitCode {
        match self {
            Command::Run(args) => args.run(),
            Command::Gaps(args) => args.run(),
            Command::Replay(args) => args.run(),
            Command::NatsCheck(args) => args.run(),
            Command::Status(args) => args.run(),
        }
    }
}

/// `gaps --symbols` (a report, no consumer) by the wire protocol's symbol rule, worded as the
/// consumer's own [`barbridge::ConfigError`]; the error exit otherwise.
pub fn check_symbols(symbols: &[String]) -> Result<(), ExitCode> {
    match symbols.iter().find_map(|s| barbridge::wire::validate_symbol(s).err()) {
        Some(e) => Err(config_error(barbridge::ConfigError::Symbol(e))),
        None => Ok(()),
    }
}
