//! Numbers: ECMAScript `Number::toString` (RFC 8785 section 3.2.2.3), and the exactness rule that
//! refuses a literal whose value the canonical form would not preserve.

use super::error::{CanonicalError, CanonicalErrorKind, shorten};

/// Integers up to 2^53 are exact doubles whose shortest form is the integer itself.
pub(crate) const MAX_SAFE: u64 = 1 << 53;

/// A finite double's shortest round-trip digits: value = 0.d1d2...dk * 10^point.
/// `len == 0` means zero.
pub(crate) struct Shortest {
    digits: [u8; 17],
    len: usize,
    point: i64,
    negative: bool,
}

impl Shortest {
    pub(crate) fn of(x: f64) -> Shortest {
        let mut shortest = Shortest {
            digits: [0; 17],
            len: 0,
            point: 0,
            negative: x.is_sign_negative(),
        };
        if x == 0.0 {
            return shortest;
        }
        let mut buffer = ryu::Buffer::new();
        // ryu prints forms like "1.0", "0.001", "1.2345e-7", "1e21": scan them generically.
        let text = buffer.format_finite(x).as_bytes();
        let mut seen_point = false;
        let mut int_digits: i64 = 0;
        let mut leading_zeros: i64 = 0;
        let mut exponent: i64 = 0;
        let mut exp_negative = false;
        let mut in_exponent = false;
        for &b in text {
            match b {
                b'-' if in_exponent => exp_negative = true,
                b'-' => {}
                b'.' => seen_point = true,
                b'e' | b'E' => in_exponent = true,
                b'0'..=b'9' if in_exponent => exponent = exponent * 10 + i64::from(b - b'0'),
                b'0'..=b'9' => {
                    if !seen_point {
                        int_digits += 1;
                    }
                    if shortest.len == 0 && b == b'0' {
                        leading_zeros += 1;
                    } else if let Some(slot) = shortest.digits.get_mut(shortest.len) {
                        *slot = b;
                        shortest.len += 1;
                    }
                }
                _ => {}
            }
        }
        while shortest.len > 0 && shortest.digits.get(shortest.len - 1) == Some(&b'0') {
            shortest.len -= 1;
        }
        if exp_negative {
            exponent = -exponent;
        }
        shortest.point = int_digits - leading_zeros + exponent;
        shortest
    }

    fn digits(&self) -> &[u8] {
        self.digits.get(..self.len).unwrap_or(&[])
    }

    /// Writes the ECMAScript `Number::toString` form (`-0` prints as `0`).
    pub(crate) fn write_es(&self, out: &mut Vec<u8>) {
        let digits = self.digits();
        let Some((&first, rest)) = digits.split_first() else {
            out.push(b'0');
            return;
        };
        if self.negative {
            out.push(b'-');
        }
        let k = digits.len() as i64;
        let n = self.point;
        if k <= n && n <= 21 {
            out.extend_from_slice(digits);
            out.resize(out.len() + (n - k) as usize, b'0');
        } else if 0 < n && n <= 21 {
            let (int, frac) = digits.split_at((n as usize).min(digits.len()));
            out.extend_from_slice(int);
            out.push(b'.');
            out.extend_from_slice(frac);
        } else if -6 < n && n <= 0 {
            out.extend_from_slice(b"0.");
            out.resize(out.len() + (-n) as usize, b'0');
            out.extend_from_slice(digits);
        } else {
            out.push(first);
            if !rest.is_empty() {
                out.push(b'.');
                out.extend_from_slice(rest);
            }
            out.push(b'e');
            let e = n - 1;
            out.push(if e < 0 { b'-' } else { b'+' });
            write_u64(out, e.unsigned_abs());
        }
    }

    fn es_string(&self) -> String {
        let mut out = Vec::with_capacity(26);
        self.write_es(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Writes an unsigned integer in decimal without going through `fmt`.
pub(crate) fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(buf.get(i..).unwrap_or(&[]));
}

/// Writes a signed integer of magnitude at most 2^53 (exact, and its own shortest form).
pub(crate) fn write_safe_int(out: &mut Vec<u8>, negative: bool, magnitude: u64) {
    if negative && magnitude != 0 {
        out.push(b'-');
    }
    write_u64(out, magnitude);
}

fn non_finite(x: f64) -> CanonicalError {
    let value = if x.is_nan() {
        "NaN"
    } else if x > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    };
    CanonicalError::new(CanonicalErrorKind::NonFiniteNumber { value })
}

/// Writes a finite double as ECMAScript does; refuses NaN and infinities.
pub(crate) fn write_f64(out: &mut Vec<u8>, x: f64) -> Result<(), CanonicalError> {
    if !x.is_finite() {
        return Err(non_finite(x));
    }
    if x.fract() == 0.0 && x.abs() <= MAX_SAFE as f64 {
        // Exact integer: skip the shortest-digits search.
        write_safe_int(out, x < 0.0, x.abs() as u64);
        return Ok(());
    }
    Shortest::of(x).write_es(out);
    Ok(())
}

/// Serializes a double exactly as ECMAScript `Number.prototype.toString` does, which is what
/// RFC 8785 requires: shortest round-trip digits, `-0` as `0`, exponent form outside
/// [1e-6, 1e21). NaN and infinities have no JSON form and are refused.
pub fn format_number(x: f64) -> Result<String, CanonicalError> {
    let mut out = Vec::with_capacity(26);
    write_f64(&mut out, x)?;
    String::from_utf8(out).map_err(|_| CanonicalError::new(CanonicalErrorKind::Internal))
}

/// Checks an integer above 2^53 in magnitude (from an already parsed value) against the exactness
/// rule, and writes its canonical form.
pub(crate) fn write_big_int(
    out: &mut Vec<u8>,
    negative: bool,
    magnitude: u64,
) -> Result<(), CanonicalError> {
    // `as` rounds to nearest (2^64 itself is possible); the comparison below is on decimal
    // digits, so no conversion back to an integer is needed.
    let f = magnitude as f64;
    let shortest = Shortest::of(if negative { -f } else { f });
    let mut literal = Vec::with_capacity(21);
    if negative {
        literal.push(b'-');
    }
    write_u64(&mut literal, magnitude);
    let digits = literal.strip_prefix(b"-").unwrap_or(&literal);
    if !same_value(digits, shortest.digits(), shortest.point) {
        return Err(CanonicalError::new(CanonicalErrorKind::InexactNumber {
            literal: String::from_utf8_lossy(&literal).into_owned(),
            nearest: shortest.es_string(),
        }));
    }
    shortest.write_es(out);
    Ok(())
}

/// Whether the integer written as `literal` (digits only) equals 0.`digits` * 10^`point`.
fn same_value(literal: &[u8], digits: &[u8], point: i64) -> bool {
    let trimmed = trim_leading_zeros(literal);
    let significant = trim_trailing_zeros(trimmed);
    significant == digits
        && (trimmed.len() as i64 == point || significant.is_empty() && digits.is_empty())
}

fn trim_leading_zeros(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b'0').unwrap_or(s.len());
    s.get(start..).unwrap_or(&[])
}

fn trim_trailing_zeros(s: &[u8]) -> &[u8] {
    let end = s.iter().rposition(|&b| b != b'0').map_or(0, |i| i + 1);
    s.get(..end).unwrap_or(&[])
}

/// A JSON number literal split into its parts; the grammar has already been checked.
pub(crate) struct Literal<'a> {
    pub(crate) text: &'a [u8],
    pub(crate) int: &'a [u8],
    pub(crate) frac: &'a [u8],
    /// Whether the literal had an exponent part (`1e0` has one, with value 0).
    pub(crate) has_exp: bool,
    /// The exponent, saturated far outside the range of doubles (the exact value no longer matters
    /// there: such a literal is infinite or rounds to zero, and the comparison still fails).
    pub(crate) exp: i64,
}

/// The cap on |exponent|: far beyond any double, small enough that sums cannot overflow.
pub(crate) const EXP_CAP: i64 = 1 << 40;

impl Literal<'_> {
    /// Checks the exactness rule and writes the canonical form.
    pub(crate) fn write_canonical(&self, out: &mut Vec<u8>) -> Result<(), CanonicalErrorKind> {
        // Fast path: a plain integer of at most 15 digits is below 2^53, so it is exact and is
        // its own canonical form (save for "-0").
        if self.frac.is_empty() && !self.has_exp && self.int.len() <= 15 {
            if self.int == b"0" {
                out.push(b'0');
            } else {
                out.extend_from_slice(self.text);
            }
            return Ok(());
        }
        let text = std::str::from_utf8(self.text).map_err(|_| CanonicalErrorKind::Internal)?;
        let x: f64 = text.parse().map_err(|_| CanonicalErrorKind::Internal)?;
        if !x.is_finite() {
            return Err(CanonicalErrorKind::NumberOutOfRange {
                literal: shorten(self.text),
            });
        }
        let shortest = Shortest::of(x);
        if !self.equals(&shortest) {
            return Err(CanonicalErrorKind::InexactNumber {
                literal: shorten(self.text),
                nearest: shortest.es_string(),
            });
        }
        shortest.write_es(out);
        Ok(())
    }

    /// Compares exact decimal values: both sides normalized to 0.digits * 10^point.
    fn equals(&self, shortest: &Shortest) -> bool {
        let all = self.int.iter().chain(self.frac.iter());
        let leading = all.clone().take_while(|&&b| b == b'0').count();
        let total = self.int.len() + self.frac.len();
        if leading == total {
            return shortest.len == 0;
        }
        let trailing = self
            .frac
            .iter()
            .rev()
            .chain(self.int.iter().rev())
            .take_while(|&&b| b == b'0')
            .count();
        let significant = total - leading - trailing;
        if significant != shortest.len {
            return false;
        }
        let point = (self.int.len() as i64 - leading as i64).saturating_add(self.exp);
        point == shortest.point
            && all
                .skip(leading)
                .take(significant)
                .eq(shortest.digits().iter())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn es_forms() {
        for (x, s) in [
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-1.5, "-1.5"),
            (0.1, "0.1"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (1e-7, "1e-7"),
            (1e-6, "0.000001"),
            (123e-20, "1.23e-18"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (9007199254740994.0, "9007199254740994"),
            (2f64.powi(60), "1152921504606847000"),
            (333333333.3333333, "333333333.3333333"),
        ] {
            assert_eq!(format_number(x).unwrap(), s, "{x:e}");
        }
        assert!(format_number(f64::NAN).is_err());
        assert!(format_number(f64::INFINITY).is_err());
    }

    #[test]
    fn big_ints() {
        let mut out = Vec::new();
        write_big_int(&mut out, false, 1 << 60).unwrap_err();
        write_big_int(&mut out, false, 1_152_921_504_606_847_000).unwrap();
        assert_eq!(out, b"1152921504606847000");
        assert!(write_big_int(&mut Vec::new(), false, u64::MAX).is_err());
        assert!(write_big_int(&mut Vec::new(), false, (1 << 53) + 1).is_err());
        let mut out = Vec::new();
        write_big_int(&mut out, true, 1 << 54).unwrap();
        assert_eq!(out, b"-18014398509481984");
        let mut out = Vec::new();
        write_big_int(&mut out, false, 18_014_398_509_481_984_000).unwrap();
        assert_eq!(out, b"18014398509481984000");
        let err = write_big_int(&mut Vec::new(), true, (1 << 53) + 1).unwrap_err();
        assert_eq!(
            err.kind(),
            &CanonicalErrorKind::InexactNumber {
                literal: "-9007199254740993".into(),
                nearest: "-9007199254740992".into()
            }
        );
    }
}
