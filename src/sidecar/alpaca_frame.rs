//! Alpaca's market-data websocket frames (msgpack) read directly: a frame of bar messages is
//! turned into bars without building a Python object per message.
//!
//! A frame is a msgpack array of maps. Bar messages (`"T":"b"` or `"u"`) carry `S` (symbol), `t`
//! (msgpack timestamp extension, type -1), `o h l c v` (numbers) and optional `n vw`. Anything this
//! reader does not recognise makes [`read_bar_frame`] answer `None`, and the caller leaves the
//! frame to the SDK's own path: the fast path may only ever be skipped, never be wrong.

use crate::bar::{Bar, BarKind};

/// One bar message of a frame: where it starts and ends in the frame, and what it says
/// (`Err` for a bar message that is no valid bar: missing or mistyped field).
pub struct FrameBar<'a> {
    /// The bar message's bytes in the frame, from its map header to its last field.
    pub raw: &'a [u8],
    /// The symbol, bar and kind it carries, or which field made it no bar.
    pub bar: Result<(&'a str, Bar, BarKind), &'static str>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// A msgpack value this reader cares about.
enum Value<'a> {
    Nil,
    Int(i128),
    Float(f64),
    Str(&'a str),
    /// A timestamp extension as UTC epoch milliseconds.
    Timestamp(i64),
    Other,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn be(&mut self, n: usize) -> Option<u64> {
        Some(self.take(n)?.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// Array or map header: (is_map, length).
    fn container(&mut self) -> Option<(bool, usize)> {
        let b = self.byte()?;
        Some(match b {
            0x90..=0x9f => (false, usize::from(b & 0x0f)),
            0xdc => (false, self.be(2)? as usize),
            0xdd => (false, self.be(4)? as usize),
            0x80..=0x8f => (true, usize::from(b & 0x0f)),
            0xde => (true, self.be(2)? as usize),
            0xdf => (true, self.be(4)? as usize),
            _ => return None,
        })
    }

    fn str_len(&mut self, b: u8) -> Option<usize> {
        Some(match b {
            0xa0..=0xbf => usize::from(b & 0x1f),
            0xd9 => self.be(1)? as usize,
            0xda => self.be(2)? as usize,
            0xdb => self.be(4)? as usize,
            _ => return None,
        })
    }

    fn timestamp(&mut self, len: usize) -> Option<i64> {
        let (secs, nanos): (i64, i64) = match len {
            4 => (self.be(4)? as i64, 0),
            8 => {
                let v = self.be(8)?;
                ((v & 0x3_ffff_ffff) as i64, (v >> 34) as i64)
            }
            12 => {
                let nanos = self.be(4)? as i64;
                (self.be(8)? as i64, nanos)
            }
            _ => return None,
        };
        secs.checked_mul(1000)?.checked_add(nanos / 1_000_000)
    }

    fn ext(&mut self, len: usize) -> Option<Value<'a>> {
        let kind = self.byte()? as i8;
        if kind == -1 {
            return self.timestamp(len).map(Value::Timestamp);
        }
        self.take(len)?;
        Some(Value::Other)
    }

    /// One value; nested arrays and maps are skipped (`Other`).
    fn value(&mut self) -> Option<Value<'a>> {
        let b = self.byte()?;
        Some(match b {
            0x00..=0x7f => Value::Int(i128::from(b)),
            0xe0..=0xff => Value::Int(i128::from(b as i8)),
            0xc0 => Value::Nil,
            0xc2 | 0xc3 => Value::Other,
            0xcc => Value::Int(i128::from(self.be(1)?)),
            0xcd => Value::Int(i128::from(self.be(2)?)),
            0xce => Value::Int(i128::from(self.be(4)?)),
            0xcf => Value::Int(i128::from(self.be(8)?)),
            0xd0 => Value::Int(i128::from(self.be(1)? as u8 as i8)),
            0xd1 => Value::Int(i128::from(self.be(2)? as u16 as i16)),
            0xd2 => Value::Int(i128::from(self.be(4)? as u32 as i32)),
            0xd3 => Value::Int(i128::from(self.be(8)? as i64)),
            0xca => Value::Float(f64::from(f32::from_bits(self.be(4)? as u32))),
            0xcb => Value::Float(f64::from_bits(self.be(8)?)),
            0xa0..=0xbf | 0xd9..=0xdb => {
                let n = self.str_len(b)?;
                Value::Str(std::str::from_utf8(self.take(n)?).ok()?)
            }
            0xc4..=0xc6 => {
                let n = self.be(1 << (b - 0xc4))? as usize;
                self.take(n)?;
                Value::Other
            }
            0xd4 => self.ext(1)?,
            0xd5 => self.ext(2)?,
            0xd6 => self.ext(4)?,
            0xd7 => self.ext(8)?,
            0xd8 => self.ext(16)?,
            0xc7..=0xc9 => {
                let n = self.be(1 << (b - 0xc7))? as usize;
                self.ext(n)?
            }
            0x90..=0x9f | 0xdc | 0xdd | 0x80..=0x8f | 0xde | 0xdf => {
                self.pos -= 1;
                let (is_map, n) = self.container()?;
                for _ in 0..n * if is_map { 2 } else { 1 } {
                    self.value()?;
                }
                Value::Other
            }
            0xc1 => return None,
        })
    }
}

fn number(v: &Value<'_>) -> Option<f64> {
    match *v {
        Value::Float(f) => Some(f),
        Value::Int(i) => Some(i as f64),
        _ => None,
    }
}

/// The bar messages of a frame made only of bar messages, in order; `None` when the frame is
/// anything else (another message type, a malformed frame): the SDK's path handles it then.
pub fn read_bar_frame(frame: &[u8]) -> Option<Vec<FrameBar<'_>>> {
    let mut r = Reader { buf: frame, pos: 0 };
    let (is_map, n) = r.container()?;
    if is_map || n == 0 {
        return None;
    }
    let mut out = Vec::with_capacity(n.min(frame.len() / 16));
    for _ in 0..n {
        let start = r.pos;
        let (is_map, fields) = r.container()?;
        if !is_map {
            return None;
        }
        let (mut kind, mut symbol, mut t) = (None, None, None);
        let mut nums: [Option<f64>; 6] = [None; 6]; // o h l c v vw
        let mut count: Option<Result<u64, ()>> = None;
        let mut bad: Option<&'static str> = None;
        for _ in 0..fields {
            let Value::Str(key) = r.value()? else { return None };
            let v = r.value()?;
            let slot = match key {
                "T" => {
                    kind = match v {
                        Value::Str("b") => Some(BarKind::Bar),
                        Value::Str("u") => Some(BarKind::UpdatedBar),
                        _ => return None, // not a bar message: the whole frame goes to the SDK
                    };
                    continue;
                }
                "S" => {
                    match v {
                        Value::Str(s) => symbol = Some(s),
                        _ => bad = Some("`S` is not a str"),
                    }
                    continue;
                }
                "t" => {
                    match v {
                        Value::Timestamp(ms) => t = Some(ms),
                        _ => bad = Some("`t` is not a msgpack timestamp"),
                    }
                    continue;
                }
                "n" => {
                    count = match v {
                        Value::Nil => None,
                        Value::Int(i) => Some(u64::try_from(i).map_err(|_| ())),
                        Value::Float(f) if f >= 0.0 && f.fract() == 0.0 && f < 1.8e19 => Some(Ok(f as u64)),
                        _ => Some(Err(())),
                    };
                    continue;
                }
                "o" => 0,
                "h" => 1,
                "l" => 2,
                "c" => 3,
                "v" => 4,
                "vw" => 5,
                _ => continue,
            };
            nums[slot] = match v {
                Value::Nil => None,
                ref other => match number(other) {
                    Some(x) => Some(x),
                    None => {
                        bad = Some("a price or volume is not a number");
                        None
                    }
                },
            };
        }
        let kind = kind?;
        let raw = &frame[start..r.pos];
        let bar = match (bad, symbol, t, nums, count) {
            (Some(why), ..) => Err(why),
            (_, _, _, _, Some(Err(()))) => Err("`n` is not a non-negative integer"),
            (None, Some(symbol), Some(ts), [Some(open), Some(high), Some(low), Some(close), Some(volume), vwap], count) => {
                let bar = Bar { timestamp_ms: ts, open, high, low, close, volume, vwap, trade_count: count.map(|c| c.unwrap_or(0)) };
                Ok((symbol, bar, kind))
            }
            _ => Err("a required field (S, t, o, h, l, c, v) is missing"),
        };
        out.push(FrameBar { raw, bar });
    }
    (r.pos == frame.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // [{"T":"b","S":"SPY","o":1.5,"h":2,"l":1,"c":1.5,"v":100,"t":Timestamp(1759930080, 0),"n":3}]
    fn frame(kind: &str, with_vw: bool) -> Vec<u8> {
        let mut f = vec![0x91, if with_vw { 0x8a } else { 0x89 }];
        let s = |f: &mut Vec<u8>, s: &str| {
            f.push(0xa0 | s.len() as u8);
            f.extend_from_slice(s.as_bytes());
        };
        s(&mut f, "T");
        s(&mut f, kind);
        s(&mut f, "S");
        s(&mut f, "SPY");
        s(&mut f, "o");
        f.push(0xcb);
        f.extend_from_slice(&1.5f64.to_bits().to_be_bytes());
        s(&mut f, "h");
        f.push(0x02);
        s(&mut f, "l");
        f.push(0x01);
        s(&mut f, "c");
        f.push(0xcb);
        f.extend_from_slice(&1.5f64.to_bits().to_be_bytes());
        s(&mut f, "v");
        f.push(0x64);
        s(&mut f, "t");
        f.extend_from_slice(&[0xd6, 0xff]);
        f.extend_from_slice(&1_759_930_080u32.to_be_bytes());
        s(&mut f, "n");
        f.push(0x03);
        if with_vw {
            s(&mut f, "vw");
            f.push(0xc0);
        }
        f
    }

    #[test]
    fn a_bar_frame_is_read() {
        let f = frame("b", true);
        let bars = read_bar_frame(&f).expect("a bar frame");
        assert_eq!(bars.len(), 1);
        let (symbol, bar, kind) = bars[0].bar.expect("a valid bar");
        assert_eq!((symbol, kind), ("SPY", BarKind::Bar));
        assert_eq!(
            bar,
            Bar { timestamp_ms: 1_759_930_080_000, open: 1.5, high: 2.0, low: 1.0, close: 1.5, volume: 100.0, vwap: None, trade_count: Some(3) }
        );
        assert_eq!(bars[0].raw, &f[1..]);
        assert_eq!(read_bar_frame(&frame("u", false)).unwrap()[0].bar.as_ref().unwrap().2, BarKind::UpdatedBar);
    }

    #[test]
    fn anything_else_is_left_to_the_sdk() {
        assert!(read_bar_frame(&frame("q", false)).is_none()); // a quote
        let mut f = frame("b", false);
        f.pop(); // truncated
        assert!(read_bar_frame(&f).is_none());
        assert!(read_bar_frame(&[0x90]).is_none()); // empty
        assert!(read_bar_frame(b"").is_none());
    }

    // {"T":"s","S":"SPY","sc":"H","rc":"T1","rm":"Halt","t":Timestamp(1759930090, 0)}
    fn status_message() -> Vec<u8> {
        let mut f = vec![0x86];
        for (k, v) in [("T", "s"), ("S", "SPY"), ("sc", "H"), ("rc", "T1"), ("rm", "Halt")] {
            for s in [k, v] {
                f.push(0xa0 | s.len() as u8);
                f.extend_from_slice(s.as_bytes());
            }
        }
        f.extend_from_slice(&[0xa1, b't', 0xd6, 0xff]);
        f.extend_from_slice(&1_759_930_090u32.to_be_bytes());
        f
    }

    #[test]
    fn a_frame_mixing_bars_and_a_trading_status_is_not_bars_only() {
        // The status must reach the SDK path with its bars (docs/ARCHITECTURE.md "Trading
        // statuses"): a bars-only reading would drop it, so the whole frame is left to the SDK.
        let bar = frame("b", true)[1..].to_vec();
        let status = status_message();
        for parts in [vec![&bar, &status], vec![&status, &bar], vec![&bar, &bar, &status], vec![&status]] {
            let mut f = vec![0x90 | parts.len() as u8];
            parts.iter().for_each(|p| f.extend_from_slice(p));
            assert!(read_bar_frame(&f).is_none(), "{} message(s) with a status read as bars only", parts.len());
        }
        let mut two_bars = vec![0x92];
        two_bars.extend_from_slice(&bar);
        two_bars.extend_from_slice(&bar);
        assert_eq!(read_bar_frame(&two_bars).map(|b| b.len()), Some(2), "the same bars without the status are read");
    }
}
