//! The fast scanner (SWAR) for the flat lines every writer sends; serde_json decides the rest.

use std::borrow::Cow;

use super::RawLine;

/// Fast path for what every writer sends: a flat object of known fields holding printable-ASCII
/// strings and non-negative numbers. Returns `None` for anything else — escapes, non-ASCII,
/// nesting, `null`, unknown, duplicate or mistyped fields, negative numbers — and the caller falls
/// back to serde_json, which decides and words any error. When it returns `Some`, the line is
/// ASCII (so valid UTF-8) and the result equals serde_json's (with `float_roundtrip`, both round
/// correctly); a differential test checks this over mutated lines and random numbers.
///
/// Per byte it costs about one compare: a key is found by a perfect hash of its first 4 bytes and
/// checked with two masked 8-byte compares, and digits are read 8 at a time (SWAR).
pub(super) fn scan_flat(b: &[u8]) -> Option<RawLine<'_>> {
    let mut strs: [&str; 6] = [""; 6];
    let mut ints = [0u64; 5];
    let mut nums = [0f64; 6];
    let mut seen = 0u32;
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    loop {
        let (field, after_key) = known_key(b, i)?;
        i = skip_ws(b, after_key);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        if seen & (1 << field) != 0 {
            return None; // a duplicate field is an error for serde
        }
        seen |= 1 << field;
        let end = match field {
            F_SYMBOL..=F_DETAIL => {
                let (value, end) = plain_string(b, i)?;
                strs[field as usize] = value;
                end
            }
            F_TIMESTAMP_MS..=F_RECEIVED_MS => {
                let (value, end) = plain_integer(b, i)?;
                ints[field as usize - F_TIMESTAMP_MS as usize] = value;
                end
            }
            _ => {
                let (value, end) = plain_decimal(b, i)?;
                nums[field as usize - F_OPEN as usize] = value;
                end
            }
        };
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') if skip_ws(b, i + 1) == b.len() => break,
            _ => return None,
        }
    }
    let str_at = |f: u32| (seen & (1 << f) != 0).then(|| Cow::Borrowed(strs[f as usize]));
    let int_at = |f: u32| (seen & (1 << f) != 0).then_some(ints[(f - F_TIMESTAMP_MS) as usize]);
    let num_at = |f: u32| (seen & (1 << f) != 0).then_some(nums[(f - F_OPEN) as usize]);
    let signed = |v: Option<u64>| v.map(i64::try_from).transpose().ok();
    Some(RawLine {
        symbol: str_at(F_SYMBOL),
        kind: str_at(F_TYPE),
        source: str_at(F_SOURCE),
        writer: str_at(F_WRITER),
        state: str_at(F_STATE),
        detail: str_at(F_DETAIL),
        timestamp_ms: signed(int_at(F_TIMESTAMP_MS))?,
        ts_ms: signed(int_at(F_TS_MS))?,
        seq: int_at(F_SEQ),
        trade_count: int_at(F_TRADE_COUNT),
        received_ms: signed(int_at(F_RECEIVED_MS))?,
        open: num_at(F_OPEN),
        high: num_at(F_HIGH),
        low: num_at(F_LOW),
        close: num_at(F_CLOSE),
        volume: num_at(F_VOLUME),
        vwap: num_at(F_VWAP),
        retained_from: None,
        sent: None,
        acked: None,
        v: None,
        status: None,
        code: None,
        reason: None,
    })
}

// The fields the fast path knows, numbered by kind: strings, then integers, then decimals.
const F_SYMBOL: u32 = 0;
const F_TYPE: u32 = 1;
const F_SOURCE: u32 = 2;
const F_WRITER: u32 = 3;
const F_STATE: u32 = 4;
const F_DETAIL: u32 = 5;
const F_TIMESTAMP_MS: u32 = 6;
const F_TS_MS: u32 = 7;
const F_SEQ: u32 = 8;
const F_TRADE_COUNT: u32 = 9;
const F_RECEIVED_MS: u32 = 10;
const F_OPEN: u32 = 11;
const F_HIGH: u32 = 12;
const F_LOW: u32 = 13;
const F_CLOSE: u32 = 14;
const F_VOLUME: u32 = 15;
const F_VWAP: u32 = 16;

const FIELD_NAMES: [&str; 17] = [
    "symbol",
    "type",
    "source",
    "writer",
    "state",
    "detail",
    "timestamp_ms",
    "ts_ms",
    "seq",
    "trade_count",
    "received_ms",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
];

/// Multiplier of the perfect hash on a key's first 4 bytes (a 3-letter name's closing quote
/// included): `(prefix × KEY_HASH) >> 27` is different for each of the 17 names (found by
/// search; the `key_hash_is_perfect` test checks it).
const KEY_HASH: u32 = 0xbd6b_881b;

/// A known name followed by its closing quote, as up to 16 bytes read little-endian:
/// `(first 8, mask, next 8, mask)`, so that checking a key is two masked compares.
#[derive(Clone, Copy)]
struct KeyPattern {
    head: u64,
    head_mask: u64,
    tail: u64,
    tail_mask: u64,
    /// Bytes from the key's first byte to just past its closing quote.
    len: usize,
    field: u32,
}

const fn key_pattern(field: u32) -> KeyPattern {
    let name = FIELD_NAMES[field as usize].as_bytes();
    let mut bytes = [0u8; 16];
    let mut mask = [0u8; 16];
    let mut j = 0;
    while j <= name.len() {
        bytes[j] = if j < name.len() { name[j] } else { b'"' };
        mask[j] = 0xff;
        j += 1;
    }
    let (bytes, mask) = (u128::from_le_bytes(bytes), u128::from_le_bytes(mask));
    KeyPattern { head: bytes as u64, head_mask: mask as u64, tail: (bytes >> 64) as u64, tail_mask: (mask >> 64) as u64, len: name.len() + 1, field }
}

const fn key_slot(prefix: u32) -> usize {
    (prefix.wrapping_mul(KEY_HASH) >> 27) as usize
}

/// Hash slot of a key's first 4 bytes → the one name that can start that way.
const KEY_TABLE: [KeyPattern; 32] = {
    // An empty slot matches no key (no head is 1 under a mask of 0).
    let mut table = [KeyPattern { head: 1, head_mask: 0, tail: 0, tail_mask: 0, len: 0, field: 0 }; 32];
    let mut f = 0;
    while f < FIELD_NAMES.len() {
        let pattern = key_pattern(f as u32);
        table[key_slot(pattern.head as u32)] = pattern;
        f += 1;
    }
    table
};

/// 8 bytes from `at`, little-endian; zeros past the end of the line (a zero byte never matches
/// a name or its quote).
fn word_at(b: &[u8], at: usize) -> u64 {
    match b.get(at..at + 8) {
        Some(w) => u64::from_le_bytes(w.try_into().expect("8 bytes")),
        None => {
            let mut w = [0u8; 8];
            let tail = b.get(at..).unwrap_or_default();
            w[..tail.len()].copy_from_slice(tail);
            u64::from_le_bytes(w)
        }
    }
}

/// The field named by the key starting at `i` (its opening quote), and where the key ends.
/// `None` for a name the fast path does not know — including any escaped name, since the raw
/// bytes are compared; serde then decides.
fn known_key(b: &[u8], i: usize) -> Option<(u32, usize)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let head = word_at(b, i + 1);
    let key = &KEY_TABLE[key_slot(head as u32)];
    if head & key.head_mask != key.head || (key.len > 8 && word_at(b, i + 9) & key.tail_mask != key.tail) {
        return None;
    }
    Some((key.field, i + 1 + key.len))
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// A string of printable ASCII without escapes, starting at its opening quote.
fn plain_string(b: &[u8], i: usize) -> Option<(&str, usize)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    let mut end = start;
    loop {
        match *b.get(end)? {
            b'"' => return Some((ascii_str(&b[start..end]), end + 1)),
            b'\\' | 0..=0x1f | 0x7f.. => return None,
            _ => end += 1,
        }
    }
}

/// Bytes the scanner has checked byte by byte to be ASCII (a string of printable characters, a
/// number's digits and signs), as a `str` without validating them a second time.
#[allow(unsafe_code)] // the crate's only unsafe: the scan's byte checks make a UTF-8 pass redundant
fn ascii_str(bytes: &[u8]) -> &str {
    debug_assert!(bytes.is_ascii());
    // SAFETY: every caller has checked that each byte is ASCII, and ASCII is valid UTF-8.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

/// Digits starting at `i`, appended to `value`: (how many, the new value modulo 2^64 — exact
/// while the total stays within 19 digits). Reads 8 bytes at a time where the line allows.
fn digits(b: &[u8], mut i: usize, mut value: u64) -> (usize, u64) {
    const ONES: u64 = u64::MAX / 0xff;
    let start = i;
    while let Some(chunk) = b.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let low = word.wrapping_sub(ONES * u64::from(b'0'));
        let high = word.wrapping_add(ONES * (0x7f - u64::from(b'9')));
        // Lowest set high bit: the first byte that is not '0'..='9'.
        let n = ((low | high | word) & (ONES << 7)).trailing_zeros() as usize / 8;
        if n == 0 {
            return (i - start, value);
        }
        // The n digits, most significant first, moved to the top bytes (the rest are zeros).
        let mut v = low << (8 * (8 - n));
        v = (v.wrapping_mul(10) + (v >> 8)) & 0x00ff_00ff_00ff_00ff;
        v = (v.wrapping_mul(100) + (v >> 16)) & 0x0000_ffff_0000_ffff;
        v = (v.wrapping_mul(10_000) + (v >> 32)) & 0xffff_ffff;
        value = value.wrapping_mul(POW10_U64[n]).wrapping_add(v);
        i += n;
        if n < 8 {
            return (i - start, value);
        }
    }
    while let Some(&c) = b.get(i) {
        let digit = c.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        value = value.wrapping_mul(10).wrapping_add(u64::from(digit));
        i += 1;
    }
    (i - start, value)
}

const POW10_U64: [u64; 9] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000];

/// A non-negative JSON integer (no leading zeros) of at most 19 digits (so it fits in u64).
fn plain_integer(b: &[u8], i: usize) -> Option<(u64, usize)> {
    let (n, value) = digits(b, i, 0);
    if n == 0 || n > 19 || (n > 1 && b[i] == b'0') || matches!(b.get(i + n), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    Some((value, i + n))
}

/// A non-negative number in strict JSON grammar, converted with correct rounding. Without an
/// exponent, a mantissa of at most 2^53 and at most 22 decimals converts exactly by one division
/// (both operands are exact in an f64: Clinger's fast path); anything else goes to the standard
/// library's correctly rounded parser (serde_json's `float_roundtrip` agrees with both).
fn plain_decimal(b: &[u8], i: usize) -> Option<(f64, usize)> {
    const POW10: [f64; 23] =
        [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22];
    let (int_digits, mut mantissa) = digits(b, i, 0);
    if int_digits == 0 || (int_digits > 1 && b[i] == b'0') {
        return None;
    }
    let mut end = i + int_digits;
    let mut frac_digits = 0;
    if b.get(end) == Some(&b'.') {
        (frac_digits, mantissa) = digits(b, end + 1, mantissa);
        if frac_digits == 0 {
            return None;
        }
        end += 1 + frac_digits;
    }
    let mut exact = int_digits + frac_digits <= 19 && mantissa <= 1 << 53 && frac_digits < POW10.len();
    if matches!(b.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(end + 1), Some(b'+' | b'-')));
        let (exp_digits, _) = digits(b, end + 1 + sign, 0);
        if exp_digits == 0 {
            return None;
        }
        end += 1 + sign + exp_digits;
        exact = false;
    }
    if exact {
        return Some((mantissa as f64 / POW10[frac_digits], end));
    }
    let v: f64 = ascii_str(&b[i..end]).parse().ok()?;
    v.is_finite().then_some((v, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_is_perfect() {
        for (f, name) in FIELD_NAMES.iter().enumerate() {
            assert_eq!(KEY_TABLE[key_slot(key_pattern(f as u32).head as u32)].field, f as u32, "{name}");
            assert_eq!(known_key(format!("\"{name}\": 1").as_bytes(), 0), Some((f as u32, name.len() + 2)), "{name}");
            assert_eq!(known_key(format!("\"{name}\"").as_bytes(), 0), Some((f as u32, name.len() + 2)), "{name}");
            // A prefix, an extension or a NUL-padded copy of a name is not that name.
            for other in [&name[..name.len() - 1], &format!("{name}x"), &format!("{name}\0")] {
                let field = known_key(format!("\"{other}\"").as_bytes(), 0).map(|(f, _)| FIELD_NAMES[f as usize]);
                assert!(field.is_none_or(|n| n == other), "{other:?} taken for {field:?}");
            }
        }
    }
}
