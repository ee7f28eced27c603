//! The shared wire test vectors (also read by the Python tests) decode as documented.

use barbridge::wire::{parse_line, Line};
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wire_vectors.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["vectors"].as_array().unwrap().clone()
}

fn bytes_of(v: &Value) -> Vec<u8> {
    if let Some(line) = v["line"].as_str() {
        return line.as_bytes().to_vec();
    }
    let hex = v["line_hex"].as_str().expect("line or line_hex");
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn every_vector_decodes_as_expected() {
    let vectors = vectors();
    assert!(vectors.len() >= 45);
    let mut seen_reasons = std::collections::BTreeSet::new();
    for v in &vectors {
        let name = v["name"].as_str().unwrap();
        let bytes = bytes_of(v);
        let got = parse_line(&bytes);
        match v["expect"].as_str().unwrap() {
            "reject" => {
                let err = got.expect_err(name);
                seen_reasons.insert(err.reason().code());
                assert_eq!(err.reason().code(), v["reason"].as_str().unwrap(), "{name}: {err}");
                assert!(!err.to_string().is_empty());
            }
            "bar" => {
                let want = &v["bar"];
                let Ok(Line::Bar(b)) = got else { panic!("{name}: {got:?}") };
                assert_eq!(b.symbol, want["symbol"].as_str().unwrap(), "{name}");
                assert_eq!(b.bar.timestamp_ms, want["timestamp_ms"].as_i64().unwrap(), "{name}");
                for (field, value) in
                    [("open", b.bar.open), ("high", b.bar.high), ("low", b.bar.low), ("close", b.bar.close), ("volume", b.bar.volume)]
                {
                    assert_eq!(value, want[field].as_f64().unwrap(), "{name}: {field}");
                }
                // Absent optional fields are null in the vector and None here, never 0.
                assert_eq!(b.bar.vwap, want["vwap"].as_f64(), "{name}: vwap");
                assert!(want["vwap"].is_null() || want["vwap"].is_number(), "{name}: vwap");
                assert_eq!(b.bar.trade_count, want["trade_count"].as_u64(), "{name}: trade_count");
                assert!(want["trade_count"].is_null() || want["trade_count"].is_u64(), "{name}: trade_count");
                assert_eq!(b.kind.as_str(), want["kind"].as_str().unwrap(), "{name}");
                assert_eq!(b.seq, want["seq"].as_u64(), "{name}");
                assert_eq!(b.source.map(|s| s.as_str()), want["source"].as_str(), "{name}");
                // Encoding the decoded bar gives a line that decodes to the same bar.
                let again = barbridge::wire::encode_bar(&b.symbol, &b.bar, b.kind);
                let Ok(Line::Bar(b2)) = parse_line(again.as_bytes()) else { panic!("{name}: re-encode") };
                assert_eq!((b2.bar, b2.kind), (b.bar, b.kind), "{name}");
            }
            "heartbeat" => {
                let Ok(Line::Heartbeat(h)) = got else { panic!("{name}: {got:?}") };
                assert_eq!(h.ts_ms, v["ts_ms"].as_i64(), "{name}");
                assert_eq!(h.seq, v["seq"].as_u64(), "{name}");
                assert_eq!((h.sent, h.acked), (v["sent"].as_u64(), v["acked"].as_u64()), "{name}");
            }
            "status" => {
                let Ok(Line::ConnectionState(s)) = got else { panic!("{name}: {got:?}") };
                assert_eq!(s.state, v["state"].as_str().unwrap(), "{name}");
                assert_eq!(s.detail.as_deref(), v["detail"].as_str(), "{name}");
            }
            "trading_status" => {
                let want = &v["trading_status"];
                let Ok(Line::TradingStatus(t)) = got else { panic!("{name}: {got:?}") };
                assert_eq!(t.status.symbol, want["symbol"].as_str().unwrap(), "{name}");
                assert_eq!(t.status.ts_ms, want["ts_ms"].as_i64().unwrap(), "{name}");
                assert_eq!(t.status.state.as_str(), want["status"].as_str().unwrap(), "{name}");
                assert_eq!(
                    (t.status.code.as_str(), t.status.reason.as_str()),
                    (want["code"].as_str().unwrap(), want["reason"].as_str().unwrap()),
                    "{name}"
                );
                assert_eq!(t.seq, want["seq"].as_u64(), "{name}");
            }
            "ignored" => assert!(matches!(got, Ok(Line::Unknown { .. } | Line::Empty)), "{name}: {got:?}"),
            other => panic!("{name}: unknown expectation {other}"),
        }
    }
    // Every reject reason has at least one vector, so both languages test every rule.
    // Except `future_bar`: it needs the consumer's clock, and a vector has none (tests/future_bars.rs).
    let all: std::collections::BTreeSet<_> =
        barbridge::RejectReason::ALL.iter().filter(|r| **r != barbridge::RejectReason::FutureBar).map(|r| r.code()).collect();
    assert_eq!(seen_reasons, all);
}
