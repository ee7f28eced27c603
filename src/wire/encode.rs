//! The one encoder of wire lines, both directions: bars, the sidecar's connection-state lines,
//! heartbeats and trading statuses.

use serde::Serialize;

use super::trading::{TradingStatus, TRADING_STATUS_VERSION};
use crate::bar::{Bar, BarKind, Source};

/// Encode a bar as one wire line (without the newline), fields in the order of the README's
/// example. Integral volumes are written as integers; an absent `vwap` or `trade_count` is left
/// out.
pub fn encode_bar(symbol: &str, bar: &Bar, kind: BarKind) -> String {
    let mut out = Vec::with_capacity(192);
    write_bar_line(&mut out, symbol, bar, kind, &Envelope::default());
    out.pop(); // the newline
    String::from_utf8(out).expect("the encoder writes ASCII")
}

/// What a writer adds to a bar line after the bar's fields: where the bar came from and the
/// writer's sequence number and id (README, "Wire protocol").
#[derive(Clone, Copy, Debug, Default)]
pub struct Envelope<'a> {
    /// Where the bar came from (`source`).
    pub source: Option<Source>,
    /// The writer's sequence number (`seq`).
    pub seq: Option<u64>,
    /// The writer's id (`writer`).
    pub writer: Option<&'a str>,
    /// When the sidecar received the bar (`received_ms`, its clock, UTC epoch ms).
    pub received_ms: Option<i64>,
}

/// Append one bar as a wire line, newline included, to `out`: the bar's fields in the order of
/// the README's example (an absent `vwap` or `trade_count` left out), then the envelope's.
/// Numbers use the shortest text that reads back to the same value.
pub fn write_bar_line(out: &mut Vec<u8>, symbol: &str, bar: &Bar, kind: BarKind, envelope: &Envelope<'_>) {
    let mut ints = itoa::Buffer::new();
    let mut floats = zmij::Buffer::new();
    out.extend_from_slice(if kind == BarKind::UpdatedBar { b"{\"type\":\"updated_bar\",\"symbol\":" } else { b"{\"symbol\":" });
    write_json_str(out, symbol);
    out.extend_from_slice(b",\"timestamp_ms\":");
    out.extend_from_slice(ints.format(bar.timestamp_ms).as_bytes());
    for (key, value) in [(&b",\"open\":"[..], bar.open), (b",\"high\":", bar.high), (b",\"low\":", bar.low), (b",\"close\":", bar.close)] {
        out.extend_from_slice(key);
        out.extend_from_slice(floats.format_finite(value).as_bytes());
    }
    out.extend_from_slice(b",\"volume\":");
    if bar.volume.fract() == 0.0 && bar.volume.abs() < 9.0e15 {
        out.extend_from_slice(ints.format(bar.volume as i64).as_bytes());
    } else {
        out.extend_from_slice(floats.format_finite(bar.volume).as_bytes());
    }
    if let Some(vwap) = bar.vwap {
        out.extend_from_slice(b",\"vwap\":");
        out.extend_from_slice(floats.format_finite(vwap).as_bytes());
    }
    if let Some(trade_count) = bar.trade_count {
        out.extend_from_slice(b",\"trade_count\":");
        out.extend_from_slice(ints.format(trade_count).as_bytes());
    }
    if let Some(source) = envelope.source {
        out.extend_from_slice(b",\"source\":\"");
        out.extend_from_slice(source.as_str().as_bytes());
        out.push(b'"');
    }
    if let Some(received_ms) = envelope.received_ms {
        out.extend_from_slice(b",\"received_ms\":");
        out.extend_from_slice(ints.format(received_ms).as_bytes());
    }
    if let Some(seq) = envelope.seq {
        out.extend_from_slice(b",\"seq\":");
        out.extend_from_slice(ints.format(seq).as_bytes());
    }
    if let Some(writer) = envelope.writer {
        out.extend_from_slice(b",\"writer\":");
        write_json_str(out, writer);
    }
    out.extend_from_slice(b"}\n");
}

/// `s` as a JSON string (quoted and escaped).
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\' || b == b' ') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
    }
}

#[derive(Serialize)]
struct TradingStatusOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    v: u64,
    symbol: &'a str,
    ts_ms: i64,
    status: &'static str,
    code: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    writer: Option<&'a str>,
}

/// Append `status` as one `trading_status` wire line, newline included (README, "Wire
/// protocol"): `{"type":"trading_status","v":1,"symbol":..,"ts_ms":..,"status":..,"code":..,
/// "reason":..}` and the writer's envelope when given. The journal writes it without one.
pub fn write_trading_status_line(out: &mut Vec<u8>, status: &TradingStatus, seq: Option<u64>, writer: Option<&str>) {
    let line = TradingStatusOut {
        kind: "trading_status",
        v: TRADING_STATUS_VERSION,
        symbol: &status.symbol,
        ts_ms: status.ts_ms,
        status: status.state.as_str(),
        code: &status.code,
        reason: &status.reason,
        seq,
        writer,
    };
    serde_json::to_writer(&mut *out, &line).expect("writing to a Vec cannot fail");
    out.push(b'\n');
}

#[derive(Serialize)]
struct ConnectionStateOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    ts_ms: i64,
    state: &'a str,
    detail: &'a str,
    seq: u64,
    writer: &'a str,
}

/// Append a `status` line (the sidecar's connection state changed), newline included:
/// `{"type":"status","ts_ms":..,"state":..,"detail":..,"seq":..,"writer":..}`.
pub fn write_connection_state_line(out: &mut Vec<u8>, ts_ms: i64, state: &str, detail: &str, seq: u64, writer: &str) {
    let line = ConnectionStateOut { kind: "status", ts_ms, state, detail, seq, writer };
    serde_json::to_writer(&mut *out, &line).expect("writing to a Vec cannot fail");
    out.push(b'\n');
}

/// What a writer's `heartbeat` line says (README, "Wire protocol"); read back as
/// [`super::Heartbeat`].
#[derive(Clone, Copy, Debug)]
pub struct HeartbeatOut<'a> {
    /// When the writer sent it (its clock, UTC epoch ms).
    pub ts_ms: i64,
    /// The heartbeat's own seq.
    pub seq: u64,
    /// The writer's id.
    pub writer: &'a str,
    /// Lines waiting in the writer's backlog.
    pub backlog: usize,
    /// Lines the writer dropped so far.
    pub dropped: u64,
    /// The oldest seq the writer can still re-send.
    pub retained_from: u64,
    /// The highest seq written, this heartbeat included.
    pub sent: u64,
    /// The highest seq a consumer has acknowledged.
    pub acked: u64,
}

#[derive(Serialize)]
struct HeartbeatLineOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    ts_ms: i64,
    seq: u64,
    writer: &'a str,
    backlog: usize,
    dropped: u64,
    retained_from: u64,
    sent: u64,
    acked: u64,
}

/// Append a `heartbeat` line, newline included:
/// `{"type":"heartbeat","ts_ms":..,"seq":..,"writer":..,"backlog":..,"dropped":..,"retained_from":..,"sent":..,"acked":..}`.
pub fn write_heartbeat_line(out: &mut Vec<u8>, hb: &HeartbeatOut<'_>) {
    let HeartbeatOut { ts_ms, seq, writer, backlog, dropped, retained_from, sent, acked } = *hb;
    let line = HeartbeatLineOut { kind: "heartbeat", ts_ms, seq, writer, backlog, dropped, retained_from, sent, acked };
    serde_json::to_writer(&mut *out, &line).expect("writing to a Vec cannot fail");
    out.push(b'\n');
}
