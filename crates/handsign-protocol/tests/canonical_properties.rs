//! Properties of RFC 8785 canonicalization over arbitrary JSON: a fixed point, blind to key order,
//! whitespace and escaping choices, the same from text and from a parsed value, and byte for byte
//! the same as an independent implementation (`serde_json_canonicalizer`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use handsign_protocol::canonical::{Limits, canonicalize, canonicalize_value};
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

fn limits() -> Limits {
    Limits {
        max_bytes: usize::MAX,
        max_depth: 32,
    }
}

/// Characters where UTF-8 and UTF-16 order disagree, and ones that need escaping.
fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        Just('a'),
        Just('B'),
        Just('\u{0}'),
        Just('\n'),
        Just('"'),
        Just('\\'),
        Just('/'),
        Just('~'),
        Just('\u{7f}'),
        Just('é'),
        Just('\u{2028}'),
        Just('\u{d7ff}'),
        Just('\u{e000}'),
        Just('\u{fb33}'),
        Just('\u{ffff}'),
        Just('\u{10000}'),
        Just('\u{1f602}'),
        Just('\u{10ffff}'),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(tricky_char(), 0..4).prop_map(|c| c.into_iter().collect()),
        any::<String>(),
        "[a-c]{0,3}",
    ]
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(tricky_char(), 0..8).prop_map(|c| c.into_iter().collect()),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    const SAFE: i64 = 1 << 53;
    prop_oneof![
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
        (-SAFE..=SAFE).prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        (-1000i64..1000, -30i32..30).prop_map(|(m, e)| Value::from(m as f64 * 10f64.powi(e))),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A small deterministic generator, so the writer's choices come from the proptest seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Writes JSON with shuffled keys, random whitespace, random `\u` escapes (surrogate pairs for
/// supplementary characters) and numbers in another legal spelling of the same value.
fn write_scrambled(value: &Value, rng: &mut Rng, out: &mut String) {
    let ws = |rng: &mut Rng, out: &mut String| {
        for _ in 0..rng.below(3) {
            out.push([' ', '\t', '\n', '\r'][rng.below(4)]);
        }
    };
    ws(rng, out);
    match value {
        Value::Object(map) => {
            let mut members: Vec<_> = map.iter().collect();
            for i in (1..members.len()).rev() {
                members.swap(i, rng.below(i + 1));
            }
            out.push('{');
            ws(rng, out);
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ws(rng, out);
                write_string(k, rng, out);
                ws(rng, out);
                out.push(':');
                write_scrambled(v, rng, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            ws(rng, out);
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_scrambled(v, rng, out);
            }
            out.push(']');
        }
        Value::String(s) => write_string(s, rng, out),
        Value::Number(n) => {
            let text = n.to_string();
            // Same value, other spelling: trailing fraction zeros, or an exponent shift.
            match rng.below(5) {
                0 if !text.contains(['e', 'E']) && text.contains('.') => {
                    out.push_str(&text);
                    out.push_str("00");
                }
                1 if !text.contains(['e', 'E', '.']) => {
                    out.push_str(&text);
                    out.push_str(".0E0");
                }
                2 if !text.contains(['e', 'E']) => {
                    out.push_str(&text);
                    out.push_str(["e0", "E+0", "e-0", "E00"][rng.below(4)]);
                }
                _ => out.push_str(&text),
            }
        }
        other => out.push_str(&other.to_string()),
    }
    ws(rng, out);
}

fn write_string(s: &str, rng: &mut Rng, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        let must = matches!(c, '"' | '\\') || c < ' ';
        if must || rng.below(4) == 0 {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                if rng.below(2) == 0 {
                    out.push_str(&format!("\\u{unit:04x}"));
                } else {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
        } else if c == '/' && rng.below(2) == 0 {
            out.push_str("\\/");
        } else {
            out.push(c);
        }
    }
    out.push('"');
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn canonical_output_is_a_fixed_point(value in json()) {
        let canonical = canonicalize_value(&value, &limits()).unwrap();
        prop_assert_eq!(&canonicalize(&canonical, &limits()).unwrap(), &canonical);
        let reparsed: Value = serde_json::from_slice(&canonical).unwrap();
        prop_assert_eq!(canonicalize_value(&reparsed, &limits()).unwrap(), canonical);
    }

    #[test]
    fn key_order_whitespace_and_escapes_do_not_matter(value in json(), seed in any::<u64>()) {
        let canonical = canonicalize_value(&value, &limits()).unwrap();
        let pretty = serde_json::to_vec_pretty(&value).unwrap();
        prop_assert_eq!(&canonicalize(&pretty, &limits()).unwrap(), &canonical);
        let mut scrambled = String::new();
        write_scrambled(&value, &mut Rng(seed), &mut scrambled);
        let out = canonicalize(scrambled.as_bytes(), &limits());
        prop_assert!(out.is_ok(), "{:?}: {:?}", scrambled, out);
        prop_assert_eq!(out.unwrap(), canonical);
    }

    #[test]
    fn text_and_value_agree(value in json()) {
        let text = serde_json::to_vec(&value).unwrap();
        prop_assert_eq!(
            canonicalize(&text, &limits()).unwrap(),
            canonicalize_value(&value, &limits()).unwrap()
        );
    }

    #[test]
    fn big_integers_agree_between_text_and_value(n in any::<i64>(), u in any::<u64>()) {
        for value in [Value::from(n), Value::from(u)] {
            let text = serde_json::to_vec(&value).unwrap();
            let from_text = canonicalize(&text, &limits());
            let from_value = canonicalize_value(&value, &limits());
            match (from_text, from_value) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(a), Err(b)) => prop_assert_eq!(a.kind(), b.kind()),
                (a, b) => prop_assert!(false, "{}: text {:?} value {:?}", value, a, b),
            }
        }
    }

    #[test]
    fn same_bytes_as_serde_json_canonicalizer(value in json()) {
        prop_assert_eq!(
            canonicalize_value(&value, &limits()).unwrap(),
            serde_json_canonicalizer::to_vec(&value).unwrap()
        );
    }
}
