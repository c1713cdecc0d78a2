//! String escaping as ECMAScript `JSON.stringify` does it, and key order by UTF-16 code units.

use std::cmp::Ordering;

/// For each byte: 0 = copy raw, otherwise the letter of its short escape, or `u` for `\u00xx`.
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = b'u';
        i += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0A] = b'n';
    table[0x0C] = b'f';
    table[0x0D] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes the escape of one byte that needs escaping (`"`, `\` or a control character).
#[inline]
pub(crate) fn write_escape(out: &mut Vec<u8>, byte: u8) {
    let letter = ESCAPE[usize::from(byte)];
    if letter == b'u' {
        out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(byte >> 4)],
            HEX[usize::from(byte & 0xF)],
        ]);
    } else {
        out.extend_from_slice(&[b'\\', letter]);
    }
}

/// Whether a byte must be escaped in a canonical string.
#[inline]
pub(crate) fn needs_escape(byte: u8) -> bool {
    ESCAPE[usize::from(byte)] != 0
}

/// Writes a string's contents (without quotes) escaped canonically: only `"`, `\` and control
/// characters below U+0020 are escaped; everything else, including `/`, DEL and U+2028/9, is raw.
#[inline]
pub(crate) fn write_str_contents(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if needs_escape(b) {
            out.extend_from_slice(bytes.get(start..i).unwrap_or(&[]));
            write_escape(out, b);
            start = i + 1;
        }
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or(&[]));
}

/// Writes a quoted, canonically escaped string.
#[inline]
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_str_contents(out, s);
    out.push(b'"');
}

/// Writes one character canonically escaped (used for characters that came from escapes).
#[inline]
pub(crate) fn write_char(out: &mut Vec<u8>, c: char) {
    if let Ok(b) = u8::try_from(u32::from(c))
        && needs_escape(b)
    {
        write_escape(out, b);
        return;
    }
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// Compares two UTF-8 strings by their UTF-16 code units, as RFC 8785 orders object keys.
///
/// UTF-8 byte order is code point order, and UTF-16 order differs from it in one case only: a
/// character in U+E000..=U+FFFF (lead byte 0xEE or 0xEF) against a supplementary character (lead
/// byte 0xF0..=0xF4, a surrogate pair in UTF-16, which sorts below U+E000). The first differing
/// byte decides: the bytes before it are shared, so both differing bytes are lead bytes or both
/// are continuation bytes of characters with the same lead byte.
#[inline]
pub(crate) fn utf16_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let Some((&x, &y)) = a.iter().zip(b.iter()).find(|(x, y)| x != y) else {
        return a.len().cmp(&b.len());
    };
    if x >= 0xEE && y >= 0xEE && (x >= 0xF0) != (y >= 0xF0) {
        // One is U+E000..=U+FFFF, the other supplementary: the supplementary one sorts first.
        y.cmp(&x)
    } else {
        x.cmp(&y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oracle(a: &str, b: &str) -> Ordering {
        a.encode_utf16().cmp(b.encode_utf16())
    }

    #[test]
    fn utf16_order_matches_oracle() {
        let samples = [
            "",
            "a",
            "ab",
            "b",
            "\u{7f}",
            "\u{80}",
            "\u{7ff}",
            "\u{800}",
            "\u{d7ff}",
            "\u{e000}",
            "\u{efff}",
            "\u{f000}",
            "\u{fb33}",
            "\u{ffff}",
            "\u{10000}",
            "\u{1f602}",
            "\u{10ffff}",
            "a\u{e000}",
            "a\u{1f602}",
            "\u{e000}a",
            "\u{1f602}a",
        ];
        for a in samples {
            for b in samples {
                assert_eq!(
                    utf16_cmp(a.as_bytes(), b.as_bytes()),
                    oracle(a, b),
                    "{a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn escapes() {
        let mut out = Vec::new();
        write_str(
            &mut out,
            "a\"\\/\u{8}\u{c}\n\r\t\u{1}\u{1f}\u{7f}\u{2028}\u{2029}é",
        );
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            "\"a\\\"\\\\/\\b\\f\\n\\r\\t\\u0001\\u001f\u{7f}\u{2028}\u{2029}é\""
        );
    }
}
