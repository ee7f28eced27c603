//! `barbridge nats-check URL`: is a NATS server reachable, with JetStream, and is the bars
//! stream usable? One sentence per check, for the launcher's `--check`.

use std::time::Duration;

use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::ErrorCode;

use super::connect::connect_once;
use super::{runtime, NatsConnect, NatsError, StreamOptions};

/// What [`check_server`] found: one sentence per check that passed.
#[derive(Debug)]
pub struct CheckReport {
    /// One sentence per check that passed, in order.
    pub lines: Vec<String>,
}

/// The reason a check failed, as one sentence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[error("{0}")]
pub struct CheckFailed(pub String);

/// Connect to `target` (waiting at most `timeout`) with its credentials and TLS, and look up the
/// stream in JetStream: it must exist with subjects covering `bars.<feed>.>`, or be absent (the
/// publisher creates it). Nothing is created or changed.
///
/// # Errors
/// [`CheckFailed`] with the sentence of the first check that failed (a refusal of our
/// credentials or certificate, or of the stream lookup, names the server and what it refused).
pub fn check_server(target: &NatsConnect, stream: &StreamOptions, timeout: Duration) -> Result<CheckReport, CheckFailed> {
    let url = target.shown();
    let rt = runtime().map_err(|e| CheckFailed(NatsError::Thread(e).to_string()))?;
    rt.block_on(async {
        let link = connect_once(target, timeout).await.map_err(CheckFailed)?;
        let client = link.client.clone();
        let tls = if target.tls() { ", TLS" } else { "" };
        let mut lines = vec![format!("NATS {url} is reachable (server {}{tls}) and accepts {}", client.server_info().version, target.identity())];
        let js = async_nats::jetstream::new(client);
        let name = &stream.name;
        let found = tokio::time::timeout(timeout, js.get_stream(name)).await;
        // Let a permission violation sent with the failure arrive.
        if !matches!(found, Ok(Ok(_))) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        link.check().map_err(|e| CheckFailed(e.to_string()))?;
        match found {
            Err(_) => return Err(CheckFailed(format!("JetStream on {url} did not answer within {} s", timeout.as_secs_f64()))),
            Ok(Ok(mut found)) => {
                let info = found.info().await.map_err(|e| CheckFailed(format!("cannot read stream {name} on {url} ({e})")))?;
                let wanted = format!("bars.{}.>", stream.feed);
                if !info.config.subjects.iter().any(|s| s == &wanted || s == ">" || s == "bars.>") {
                    return Err(CheckFailed(format!(
                        "stream {name} on {url} does not take the subjects {wanted} (it has {:?})",
                        info.config.subjects
                    )));
                }
                lines.push(format!("JetStream stream {name} is usable ({} messages, {} replica(s))", info.state.messages, info.config.num_replicas));
            }
            Ok(Err(e)) if matches!(e.kind(), GetStreamErrorKind::JetStream(ref j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND) => {
                lines.push(format!("JetStream is enabled; stream {name} does not exist yet and is created by the first publish"));
            }
            Ok(Err(e)) => return Err(CheckFailed(format!("JetStream is not usable on {url} ({e}; is nats-server started with -js?)"))),
        }
        Ok(CheckReport { lines })
    })
}
