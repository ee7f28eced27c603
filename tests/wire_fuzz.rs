//! Property tests of the wire parser (run in CI in a few seconds; `PROPTEST_CASES=100000 cargo
//! test --test wire_fuzz` runs longer): whatever bytes arrive, `parse_line` never panics, and
//! whatever it accepts as a bar obeys the protocol's rules and survives encode → parse unchanged.

use barbridge::wire::{encode_bar, parse_line, validate, Line, MAX_LINE_BYTES, MINUTE_MS};
use proptest::prelude::*;
use serde_json::Value;

/// The lines of `tests/wire_vectors.json`: the lines that mutations start from (read once).
fn vector_lines() -> &'static [Vec<u8>] {
    static LINES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    LINES.get_or_init(read_vector_lines)
}

fn read_vector_lines() -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wire_vectors.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| match v["line"].as_str() {
            Some(line) => line.as_bytes().to_vec(),
            None => {
                let hex = v["line_hex"].as_str().unwrap();
                (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
            }
        })
        .collect()
}

/// Bytes that make interesting JSON and number edits.
const ALPHABET: &[u8] = b"{}[]\",:-+.eE0123456789 \tnulltruefalseNaNInfinitySPYspyvwaptrade_count\\\x00\x7f\xc3\xa9\xff";

#[derive(Clone, Debug)]
enum Edit {
    Insert(usize, u8),
    Delete(usize),
    Replace(usize, u8),
    /// Replace a run of digits at a position with another number.
    Number(usize, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    let byte = prop::sample::select(ALPHABET);
    let number = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        (0u64..4_200_000_000_000).prop_map(|n| n.to_string()),
        Just("1e999".to_owned()),
        Just("-0".to_owned()),
        Just("18446744073709551616".to_owned()),
    ];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), byte).prop_map(|(i, b)| Edit::Replace(i, b)),
        (any::<usize>(), number).prop_map(|(i, n)| Edit::Number(i, n)),
    ]
}

fn apply(line: &mut Vec<u8>, e: &Edit) {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
    match e {
        Edit::Insert(i, b) => {
            let i = at(*i, line.len() + 1);
            line.insert(i, *b);
        }
        Edit::Delete(i) if !line.is_empty() => {
            let i = at(*i, line.len());
            line.remove(i);
        }
        Edit::Replace(i, b) if !line.is_empty() => {
            let i = at(*i, line.len());
            line[i] = *b;
        }
        Edit::Number(i, n) => {
            let start = at(*i, line.len() + 1);
            let end = start + line[start..].iter().take_while(|b| b.is_ascii_digit()).count();
            line.splice(start..end, n.bytes());
        }
        _ => {}
    }
}

/// What must hold for any input: no panic (the test itself would fail), and an accepted bar
/// obeys every rule, re-encodes within the line limit and parses back to itself.
fn check(bytes: &[u8]) {
    let Ok(Line::Bar(b)) = parse_line(bytes) else { return };
    assert_eq!(validate(&b.symbol, &b.bar), Ok(()), "accepted a bar that breaks a rule: {:?}", String::from_utf8_lossy(bytes));
    // The rules restated independently of `validate`.
    let bar = &b.bar;
    assert!(!b.symbol.is_empty() && b.symbol.bytes().all(|c| c.is_ascii_graphic() && !c.is_ascii_lowercase()));
    assert_eq!(bar.timestamp_ms % MINUTE_MS, 0);
    assert!((631_152_000_000..4_102_444_800_000).contains(&bar.timestamp_ms));
    assert!(bar.low <= bar.high && (bar.low..=bar.high).contains(&bar.open) && (bar.low..=bar.high).contains(&bar.close));
    assert!(bar.volume >= 0.0 && bar.volume.is_finite() && bar.vwap.is_none_or(f64::is_finite));
    let line = encode_bar(&b.symbol, bar, b.kind);
    assert!(line.len() < MAX_LINE_BYTES, "{line}");
    match parse_line(line.as_bytes()) {
        Ok(Line::Bar(again)) => {
            assert_eq!((&again.symbol, again.bar, again.kind), (&b.symbol, b.bar, b.kind), "{line}");
        }
        other => panic!("re-encoded bar does not parse back: {line}: {other:?}"),
    }
}

fn config() -> ProptestConfig {
    // A few thousand cases each: seconds in CI. PROPTEST_CASES overrides for a longer hunt.
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(3000);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_vector_lines_never_panic_and_accepted_bars_round_trip(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let lines = vector_lines();
        let mut line = lines[seed.index(lines.len())].clone();
        for e in &edits {
            apply(&mut line, e);
        }
        check(&line);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..5000)) {
        check(&bytes);
    }

    #[test]
    fn random_bars_are_accepted_exactly_when_valid(
        symbol in "[A-Za-z0-9./ ]{0,34}",
        minute in -10i64..80_000_000,
        offset_ms in prop_oneof![Just(0i64), -59_999i64..60_000],
        prices in prop::array::uniform4(prop_oneof![0.0..1e6f64, Just(0.0), Just(-1.0), Just(1e300)]),
        volume in prop_oneof![0.0..1e9f64, Just(-0.5), Just(0.0)],
        vwap in prop::option::of(0.0..1e6f64),
        trade_count in prop::option::of(any::<u64>()),
    ) {
        let [open, high, low, close] = prices;
        let timestamp_ms = minute * MINUTE_MS + offset_ms;
        let mut obj = serde_json::json!({
            "symbol": symbol, "timestamp_ms": timestamp_ms, "open": open, "high": high, "low": low,
            "close": close, "volume": volume,
        });
        if let Some(v) = vwap {
            obj["vwap"] = v.into();
        }
        if let Some(n) = trade_count {
            obj["trade_count"] = n.into();
        }
        let text = obj.to_string();
        let bar = barbridge::Bar { timestamp_ms, open, high, low, close, volume, vwap, trade_count };
        let parsed = parse_line(text.as_bytes());
        prop_assert_eq!(parsed.is_ok(), validate(&symbol, &bar).is_ok(), "{}: {:?}", text, parsed);
        if let Ok(Line::Bar(b)) = parsed {
            prop_assert_eq!(b.bar, bar);
        }
        check(text.as_bytes());
    }

    #[test]
    fn a_slash_makes_a_crypto_pair_and_stock_symbols_keep_their_rule(symbol in "[A-Za-z0-9./ -]{0,34}") {
        // The rule before crypto pairs: printable ASCII, no space, no lower case, 1-32 bytes.
        let stock_rule = !symbol.is_empty() && symbol.len() <= 32 && symbol.bytes().all(|b| b.is_ascii_graphic() && !b.is_ascii_lowercase());
        let accepted = barbridge::wire::validate_symbol(&symbol).is_ok();
        if symbol.contains('/') {
            let pair = symbol.split_once('/').is_some_and(|(b, q)| {
                [b, q].iter().all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
            });
            prop_assert_eq!(accepted, stock_rule && pair, "{:?}", symbol);
            prop_assert_eq!(barbridge::asset::AssetClass::of(&symbol), barbridge::asset::AssetClass::Crypto);
        } else {
            prop_assert_eq!(accepted, stock_rule, "{:?}", symbol);
            prop_assert_eq!(barbridge::asset::AssetClass::of(&symbol), barbridge::asset::AssetClass::Stock);
        }
    }
}
