//! `barbridge` CLI: run the consumer on a FIFO, or show a running consumer's status. Each
//! subcommand is a module of [`cli`]; this file only dispatches.
//!
//! Output to a closed stdout (`barbridge status | head -3`) ends that output quietly; the
//! command still finishes its work and exits with its own code.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cli::output::init_logging(cli.log_format);
    cli.command.run()
}
