//! What every subcommand shares: stdout that may be closed, the one-sentence config error, and
//! the log format (text, or one JSON object a line).

use std::io::Write;
use std::process::ExitCode;

use clap::ValueEnum;

/// Log lines on stderr: text for a person, json for log shippers.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Write `text` to stdout. A closed stdout (the reader of a pipe went away) is not an error:
/// nobody is left to read, so the output just ends. Any other write error is reported.
pub fn emit(text: &str) -> Result<(), ExitCode> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => {
            eprintln!("barbridge: cannot write to stdout: {e}");
            Err(ExitCode::from(1))
        }
    }
}

/// `n word` or `n words`.
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// env_logger on stderr, as text or one JSON object a line.
pub fn init_logging(format: LogFormat) {
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    builder.format_timestamp_millis();
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            let line = serde_json::json!({
                "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "level": record.level().as_str(),
                "target": record.target(),
                "message": record.args().to_string(),
                "pid": std::process::id(),
            });
            writeln!(buf, "{line}")
        });
    }
    builder.init();
}

/// One sentence on stderr, exit 2: how every wrong setting ends.
pub fn config_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("barbridge: {msg}");
    ExitCode::from(2)
}
