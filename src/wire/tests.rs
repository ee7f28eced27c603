use super::*;

#[test]
fn encode_then_parse_round_trips() {
    let bar = Bar {
        timestamp_ms: 1_759_930_080_000,
        open: 671.2,
        high: 671.5,
        low: 671.1,
        close: 671.4,
        volume: 18234.0,
        vwap: Some(671.33),
        trade_count: Some(212),
    };
    let bare = Bar { vwap: None, trade_count: None, ..bar };
    for (bar, kind) in [(bar, BarKind::Bar), (bar, BarKind::UpdatedBar), (bare, BarKind::Bar)] {
        let line = encode_bar("SPY", &bar, kind);
        match parse_line(line.as_bytes()).unwrap() {
            Line::Bar(b) => {
                assert_eq!(b.bar, bar);
                assert_eq!(b.kind, kind);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(!encode_bar("SPY", &bare, BarKind::Bar).contains("vwap"));
    assert!(!encode_bar("SPY", &bare, BarKind::Bar).contains("trade_count"));
    assert!(encode_bar("SPY", &bar, BarKind::Bar).contains("\"volume\":18234,"));
}

/// The fast path either declines or agrees exactly with serde_json, over many mutated lines.
#[test]
fn fast_path_agrees_with_serde() {
    let seeds = [
        r#"{"symbol": "SPY", "timestamp_ms": 1759930080000, "open": 671.2, "high": 671.5, "low": 671.1, "close": 671.4, "volume": 18234, "vwap": 671.33, "trade_count": 212}"#,
        r#"{"type":"updated_bar","symbol":"SH","timestamp_ms":1759930080000,"open":10,"high":10.5,"low":9.99,"close":10.0,"volume":0.25,"seq":7,"source":"backfill","writer":"w1"}"#,
        r#"{"type":"heartbeat","ts_ms":1759930085000,"seq":412}"#,
        r#"{"type":"status","ts_ms":1,"state":"reconnecting","detail":"close 1000"}"#,
        r#"{"symbol":"Q","timestamp_ms":1,"open":0.1,"high":123456789012.345,"low":0.000001,"close":99999.99999,"volume":0,"vwap":7.0e-1}"#,
    ];
    let alphabet: &[u8] = b"{}[]\",:-+.eE0123456789 \tnultrfasyxSPYHopenhighlowclosevolumetypebar_ \\\x01\xc3\xa9";
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut rand = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut fast_hits = 0;
    for round in 0..400_000 {
        let mut line = seeds[round % seeds.len()].as_bytes().to_vec();
        for _ in 0..1 + rand(3) {
            let pos = rand(line.len() + 1);
            match rand(3) {
                0 if pos < line.len() => {
                    line.remove(pos);
                }
                1 if pos < line.len() => line[pos] = alphabet[rand(alphabet.len())],
                _ => line.insert(pos, alphabet[rand(alphabet.len())]),
            }
        }
        let fast = scan_flat(&line);
        let Ok(text) = std::str::from_utf8(&line) else {
            assert!(fast.is_none(), "fast path accepted invalid UTF-8: {line:?}");
            continue;
        };
        if let Some(fast) = fast {
            fast_hits += 1;
            let slow: RawLine<'_> = serde_json::from_str(text).unwrap_or_else(|e| panic!("fast path accepted what serde rejects ({e}): {text}"));
            assert_eq!(fast, slow, "{text}");
        }
    }
    // Random decimals (short ones by division, long ones and exponents by the parser)
    // convert exactly like serde_json.
    for round in 0..200_000 {
        let digits = 1 + rand(19);
        let frac = rand(digits);
        let mut num: String = (0..digits).map(|_| char::from(b'0' + rand(10) as u8)).collect();
        num = num.trim_start_matches('0').to_owned();
        if num.len() <= frac {
            num = format!("{}{num}", "0".repeat(frac + 1 - num.len()));
        }
        if frac > 0 {
            num.insert(num.len() - frac, '.');
        }
        if round % 5 == 0 {
            num.push_str(&format!("e{}{}", ["", "+", "-"][rand(3)], rand(40)));
        }
        let text = format!(r#"{{"open":{num}}}"#);
        let fast = scan_flat(text.as_bytes()).unwrap_or_else(|| panic!("declined {text}"));
        assert_eq!(fast, serde_json::from_str::<RawLine<'_>>(&text).unwrap(), "{text}");
    }
    for seed in seeds.iter().take(4) {
        assert_eq!(scan_flat(seed.as_bytes()), Some(serde_json::from_str(seed).unwrap()), "{seed}");
    }
    assert!(fast_hits > 10_000, "the fast path should take most near-canonical lines ({fast_hits})");
}

#[test]
fn errors_name_the_field() {
    let err = parse_line(br#"{"symbol":"SPY","timestamp_ms":1,"open":1,"high":1,"low":1,"volume":1}"#).unwrap_err();
    assert_eq!(err.to_string(), "bar is missing field `close`");
    let err = parse_line(br#"{"symbol":"SPY","timestamp_ms":1,"open":"x","high":1,"low":1,"close":1,"volume":1}"#).unwrap_err();
    assert!(err.to_string().contains("invalid type: string \"x\", expected f64"), "{err}");
    assert!(err.to_string().contains("`open`"), "{err}");
    let err = parse_line(br#"{"symbol":"SPY","timestamp_ms":1,"open":1,"high":NaN,"low":1,"close":1,"volume":1}"#).unwrap_err();
    assert_eq!(err.to_string(), "field `high` is not a finite number");
}

#[test]
fn trading_status_lines_round_trip_and_a_newer_version_is_unknown() {
    let status = TradingStatus::new("SPY", 1_759_930_212_345, TradingState::Halted, "MWC1", "Market Wide Circuit Breaker");
    let mut out = Vec::new();
    crate::wire::write_trading_status_line(&mut out, &status, Some(7), Some("w1"));
    match parse_line(&out[..out.len() - 1]).unwrap() {
        Line::TradingStatus(t) => assert_eq!((t.status, t.seq, t.writer.as_deref()), (status, Some(7), Some("w1"))),
        other => panic!("{other:?}"),
    }
    let v2 = br#"{"type":"trading_status","v":2,"symbol":"SPY","ts_ms":1759930212345,"status":"frozen","seq":3}"#;
    assert!(matches!(parse_line(v2).unwrap(), Line::Unknown { seq: Some(3), .. }));
    let bad = br#"{"type":"trading_status","v":1,"symbol":"SPY","ts_ms":1759930212345,"status":"frozen"}"#;
    assert!(matches!(parse_line(bad), Err(WireError::WrongType { .. })));
    let no_status = br#"{"type":"trading_status","symbol":"SPY","ts_ms":1759930212345}"#;
    assert_eq!(parse_line(no_status), Err(WireError::MissingField { field: "status" }));
}
