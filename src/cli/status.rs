//! `barbridge status`: a running consumer's status file, for a person, as JSON, or as one line
//! and an exit code for health checks.

use std::path::PathBuf;
use std::process::ExitCode;

use barbridge::{Clock, StatusReport, SystemClock};

use super::output::emit;

#[derive(clap::Args)]
pub struct StatusArgs {
    #[arg(long, default_value_os_t = barbridge::default_status_path())]
    pub status_file: PathBuf,
    /// Print the raw JSON instead.
    #[arg(long, conflicts_with = "check")]
    pub json: bool,
    /// For health checks (systemd, docker, monitors): print one line (LIVE, WAITING, STALE
    /// or NOT RUNNING) and exit with the code above.
    #[arg(long)]
    pub check: bool,
}

impl StatusArgs {
    pub fn run(self) -> ExitCode {
        status(&self.status_file, self.json, self.check)
    }
}

fn status(path: &std::path::Path, json: bool, check: bool) -> ExitCode {
    let report = match StatusReport::read(path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("barbridge: {e}");
            if check {
                let _ = emit("NOT RUNNING\n");
            }
            return ExitCode::from(2);
        }
    };
    let now = SystemClock.now_ms();
    let liveness = report.liveness(now);
    let text = if check {
        format!("{}\n", liveness.label())
    } else if json {
        match serde_json::to_string_pretty(&report) {
            Ok(t) => t + "\n",
            Err(e) => {
                eprintln!("barbridge: cannot show status file {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
    } else {
        report.render(now, liveness)
    };
    match emit(&text) {
        Ok(()) => ExitCode::from(liveness.exit_code()),
        Err(code) => code,
    }
}
