//! RFC 8785 canonicalization against the reference implementation's test data
//! (cyberphone/json-canonicalization `testdata/`, Apache-2.0, copied into `tests/vectors/jcs/`),
//! and the refusals Handsign adds: input RFC 8785 cannot represent exactly is an error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use handsign_protocol::canonical::{
    CanonicalError, CanonicalErrorKind, Limits, Position, canonicalize, canonicalize_value,
    format_number,
};

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/jcs")
}

fn read(relative: &str) -> Vec<u8> {
    let path = vectors().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn canon(input: &str) -> Result<String, CanonicalError> {
    canonicalize(input.as_bytes(), &Limits::default()).map(|b| String::from_utf8(b).unwrap())
}

fn refused(input: &[u8]) -> CanonicalError {
    match canonicalize(input, &Limits::default()) {
        Ok(out) => panic!(
            "{:?} was accepted as {:?}",
            String::from_utf8_lossy(input),
            String::from_utf8_lossy(&out)
        ),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_refused(
    input: &[u8],
    kind: CanonicalErrorKind,
    line: usize,
    column: usize,
    path: &str,
    message_has: &[&str],
) {
    let err = refused(input);
    assert_eq!(err.kind(), &kind, "{err}");
    assert_eq!(err.position(), Some(Position { line, column }), "{err}");
    assert_eq!(err.path(), Some(path), "{err}");
    let message = err.to_string();
    let position = format!("at line {line}, column {column}");
    assert!(
        message.contains(&position),
        "{message:?} lacks {position:?}"
    );
    if !path.is_empty() {
        let at = format!("(at {path})");
        assert!(message.contains(&at), "{message:?} lacks {at:?}");
    }
    for needle in message_has {
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
}

// ---- reference documents ----

#[test]
fn reference_documents_byte_for_byte() {
    let names = [
        "arrays.json",
        "french.json",
        "structures.json",
        "unicode.json",
        "values.json",
        "weird.json",
    ];
    for name in names {
        let input = read(&format!("input/{name}"));
        let expected = read(&format!("output/{name}"));
        let from_text = if name == "values.json" {
            // The reference input writes 333333333.33333329, more digits than the double it
            // rounds to (333333333.3333333) holds: Handsign refuses that literal by design.
            let err = canonicalize(&input, &Limits::default()).unwrap_err();
            assert_eq!(
                err.kind(),
                &CanonicalErrorKind::InexactNumber {
                    literal: "333333333.33333329".into(),
                    nearest: "333333333.3333333".into()
                }
            );
            assert_eq!(err.path(), Some("/numbers/0"));
            let exact = String::from_utf8(input.clone())
                .unwrap()
                .replace("333333333.33333329", "333333333.3333333");
            canonicalize(exact.as_bytes(), &Limits::default()).unwrap()
        } else {
            canonicalize(&input, &Limits::default()).unwrap()
        };
        assert_eq!(
            String::from_utf8_lossy(&from_text),
            String::from_utf8_lossy(&expected),
            "canonicalize {name}"
        );
        let value: serde_json::Value = serde_json::from_slice(&input).unwrap();
        let from_value = canonicalize_value(&value, &Limits::default()).unwrap();
        assert_eq!(from_value, expected, "canonicalize_value {name}");
    }
}

fn number_lines(relative: &str) -> Vec<(u64, String)> {
    let text = String::from_utf8(read(relative)).unwrap();
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (hex, expected) = line.split_once(',').unwrap();
            (u64::from_str_radix(hex, 16).unwrap(), expected.to_owned())
        })
        .collect()
}

#[test]
fn es6_number_serialization_first_10000() {
    let lines = number_lines("numbers/es6testfile_first10000.txt");
    assert_eq!(lines.len(), 10_000);
    for (bits, expected) in lines {
        let x = f64::from_bits(bits);
        assert_eq!(format_number(x).unwrap(), expected, "bits {bits:016x}");
        // The canonical text of a number is itself accepted and is a fixed point.
        assert_eq!(canon(&expected).unwrap(), expected, "text {expected}");
    }
}

#[test]
fn readme_number_samples() {
    let lines = number_lines("numbers/readme_samples.txt");
    assert_eq!(lines.len(), 7);
    for (bits, expected) in lines {
        assert_eq!(
            format_number(f64::from_bits(bits)).unwrap(),
            expected,
            "bits {bits:016x}"
        );
    }
}

#[test]
fn non_finite_numbers_are_refused() {
    let lines = number_lines("numbers/invalid_must_reject.txt");
    assert_eq!(lines.len(), 3);
    let mut names = Vec::new();
    for (bits, _) in lines {
        let err = format_number(f64::from_bits(bits)).unwrap_err();
        match err.kind() {
            CanonicalErrorKind::NonFiniteNumber { value } => names.push(*value),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("no JSON representation"), "{err}");
    }
    assert_eq!(names, ["NaN", "Infinity", "-Infinity"]);
}

// ---- refusals ----

#[test]
fn duplicate_keys_are_refused() {
    assert_refused(
        b"{\n  \"payment\": {\n    \"amount\": 1,\n    \"amount\": 2\n  }\n}",
        CanonicalErrorKind::DuplicateKey {
            key: "amount".into(),
        },
        4,
        5,
        "/payment",
        &["duplicate key \"amount\""],
    );
    // Same key once unescaped.
    assert_refused(
        br#"{"a":1,"\u0061":2}"#,
        CanonicalErrorKind::DuplicateKey { key: "a".into() },
        1,
        8,
        "",
        &["duplicate key \"a\""],
    );
    // Out of order first, so found when the object closes: the later occurrence is reported.
    assert_refused(
        br#"{"b":1,"a":2,"b":3}"#,
        CanonicalErrorKind::DuplicateKey { key: "b".into() },
        1,
        14,
        "",
        &["duplicate key \"b\""],
    );
    assert_refused(
        br#"{"x":[{"z":1,"y":2,"\u007a":3}]}"#,
        CanonicalErrorKind::DuplicateKey { key: "z".into() },
        1,
        20,
        "/x/0",
        &["duplicate key"],
    );
}

#[test]
fn lone_surrogates_are_refused() {
    assert_refused(
        br#"{"s":"a\ud800"}"#,
        CanonicalErrorKind::LoneSurrogate { code_unit: 0xD800 },
        1,
        8,
        "/s",
        &["lone surrogate \\uD800", "high surrogate"],
    );
    assert_refused(
        br#"["\udc00"]"#,
        CanonicalErrorKind::LoneSurrogate { code_unit: 0xDC00 },
        1,
        3,
        "/0",
        &["lone surrogate \\uDC00", "low surrogate"],
    );
    assert_refused(
        br#"["\ud83d\u0041"]"#,
        CanonicalErrorKind::LoneSurrogate { code_unit: 0xD83D },
        1,
        3,
        "/0",
        &["lone surrogate"],
    );
    assert_refused(
        br#"["\ud83dx"]"#,
        CanonicalErrorKind::LoneSurrogate { code_unit: 0xD83D },
        1,
        3,
        "/0",
        &["lone surrogate"],
    );
    // In a key too; the path is then the object.
    assert_refused(
        br#"{"\udfff":1}"#,
        CanonicalErrorKind::LoneSurrogate { code_unit: 0xDFFF },
        1,
        3,
        "",
        &["lone surrogate"],
    );
    // A proper pair is fine.
    assert_eq!(canon(r#""\ud83d\ude02""#).unwrap(), "\"\u{1f602}\"");
}

#[test]
fn numbers_beyond_a_double_are_refused() {
    assert_refused(
        br#"{"n":1e400}"#,
        CanonicalErrorKind::NumberOutOfRange {
            literal: "1e400".into(),
        },
        1,
        6,
        "/n",
        &["1e400", "too large", "as strings"],
    );
    assert_refused(
        br#"{"n": 9007199254740993}"#,
        CanonicalErrorKind::InexactNumber {
            literal: "9007199254740993".into(),
            nearest: "9007199254740992".into(),
        },
        1,
        7,
        "/n",
        &[
            "number 9007199254740993 cannot be represented exactly as a double (nearest is 9007199254740992); send big integers and exact decimals as strings, at line 1, column 7 (at /n)",
        ],
    );
    assert_refused(
        b"[0.10000000000000000001]",
        CanonicalErrorKind::InexactNumber {
            literal: "0.10000000000000000001".into(),
            nearest: "0.1".into(),
        },
        1,
        2,
        "/0",
        &["nearest is 0.1"],
    );
    assert_refused(
        b"1e-400",
        CanonicalErrorKind::InexactNumber {
            literal: "1e-400".into(),
            nearest: "0".into(),
        },
        1,
        1,
        "",
        &["1e-400", "nearest is 0"],
    );
    assert_refused(
        b"-18446744073709551616",
        CanonicalErrorKind::InexactNumber {
            literal: "-18446744073709551616".into(),
            nearest: "-18446744073709552000".into(),
        },
        1,
        1,
        "",
        &[],
    );
    // Exactly a double, but not its shortest form: 2^60 prints as 1152921504606847000.
    let err = refused(b"1152921504606846976");
    assert!(
        matches!(err.kind(), CanonicalErrorKind::InexactNumber { .. }),
        "{err}"
    );
    // A huge literal is shortened in the message.
    let long = format!("0.{}1", "0".repeat(5000));
    let err = refused(long.as_bytes());
    assert!(err.to_string().len() < 300, "{err}");
}

#[test]
fn depth_limit() {
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert_eq!(canon(&nested(32)).unwrap(), nested(32));
    assert_refused(
        nested(33).as_bytes(),
        CanonicalErrorKind::TooDeep { max_depth: 32 },
        1,
        33,
        &"/0".repeat(32),
        &["limit of 32"],
    );
    let objects = |n: usize| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
    assert!(canon(&objects(32)).is_ok());
    assert!(matches!(
        canon(&objects(33)).unwrap_err().kind(),
        CanonicalErrorKind::TooDeep { max_depth: 32 }
    ));
    // No stack overflow, and refused at the first bracket too many.
    let err = refused("[".repeat(100_000).as_bytes());
    assert_eq!(err.kind(), &CanonicalErrorKind::TooDeep { max_depth: 32 });
    assert_eq!(
        err.position(),
        Some(Position {
            line: 1,
            column: 33
        })
    );

    // A scalar is depth 0.
    let none = Limits {
        max_depth: 0,
        ..Limits::default()
    };
    assert!(canonicalize(b"1", &none).is_ok());
    assert!(canonicalize(b"[]", &none).is_err());

    // Same limit on values.
    let value: serde_json::Value = serde_json::from_str(&nested(33)).unwrap();
    let err = canonicalize_value(&value, &Limits::default()).unwrap_err();
    assert_eq!(err.kind(), &CanonicalErrorKind::TooDeep { max_depth: 32 });
    assert_eq!(err.path(), Some("/0".repeat(32).as_str()));
    let value: serde_json::Value = serde_json::from_str(&nested(32)).unwrap();
    assert!(canonicalize_value(&value, &Limits::default()).is_ok());
}

#[test]
fn size_limit() {
    let limits = Limits {
        max_bytes: 10,
        ..Limits::default()
    };
    // Exactly at the limit passes; the canonical size counts, not the input size.
    assert!(canonicalize(b"[ 1 , 2 , 3 , 4 , 5 ]", &limits).is_err());
    assert_eq!(
        canonicalize(b"[1, 2, 3, 4]", &limits).unwrap(),
        b"[1,2,3,4]"
    );
    assert_eq!(canonicalize(b"\"12345678\"", &limits).unwrap().len(), 10);
    let err = canonicalize(b"\"123456789\"", &limits).unwrap_err();
    assert_eq!(err.kind(), &CanonicalErrorKind::TooLarge { max_bytes: 10 });
    assert!(err.to_string().contains("limit of 10 bytes"), "{err}");
    // 1e20 is 4 bytes of input and 21 of canonical output.
    let err = canonicalize(
        b"{\"a\":[1e20]}",
        &Limits {
            max_bytes: 20,
            ..limits
        },
    )
    .unwrap_err();
    assert_eq!(err.kind(), &CanonicalErrorKind::TooLarge { max_bytes: 20 });
    assert_eq!(err.path(), Some("/a/0"));
    assert_eq!(err.position(), Some(Position { line: 1, column: 7 }));
    // Default limit: 64 KiB.
    let big = format!("\"{}\"", "x".repeat(64 * 1024 - 2));
    assert!(canon(&big).is_ok());
    let bigger = format!("\"{}\"", "x".repeat(64 * 1024 - 1));
    assert!(matches!(
        canon(&bigger).unwrap_err().kind(),
        CanonicalErrorKind::TooLarge { max_bytes: 65536 }
    ));
    // Same limit on values.
    let value = serde_json::json!(["abc", "defg"]);
    let err = canonicalize_value(&value, &limits).unwrap_err();
    assert_eq!(err.kind(), &CanonicalErrorKind::TooLarge { max_bytes: 10 });
    assert_eq!(err.path(), Some("/1"));
    assert!(canonicalize_value(&serde_json::json!(["ab", "c"]), &limits).is_ok());
}

#[test]
fn syntax_errors_are_refused() {
    use CanonicalErrorKind as K;
    assert_refused(
        b"{\"a\":1} x",
        K::TrailingData { found: 'x' },
        1,
        9,
        "",
        &["after the end"],
    );
    assert_refused(
        b"1 2",
        K::TrailingData { found: '2' },
        1,
        3,
        "",
        &["after the end"],
    );
    assert_refused(
        b"[\"a\tb\"]",
        K::ControlCharacterInString { code: 9 },
        1,
        4,
        "/0",
        &["control character U+0009", "\\t"],
    );
    for code in [0x00u8, 0x0A, 0x1F] {
        let input = [b'"', b'a', code, b'"'];
        let err = refused(&input);
        assert_eq!(err.kind(), &K::ControlCharacterInString { code }, "{err}");
        assert_eq!(err.position().map(|p| p.column), Some(3));
    }
    assert_eq!(canon("\"\u{7f} \u{2028}\"").unwrap(), "\"\u{7f} \u{2028}\"");
    let err = refused(b"{\"k\":\n \"\xff\"}");
    assert_eq!(err.kind(), &K::InvalidUtf8);
    assert_eq!(err.position(), Some(Position { line: 2, column: 3 }));
    assert_eq!(err.path(), None);
    assert_eq!(
        err.to_string(),
        "invalid UTF-8 (JSON text must be UTF-8) at line 2, column 3"
    );
    assert_refused(
        b"[01]",
        K::InvalidNumber {
            literal: "01".into(),
            reason: "leading zeros are not allowed",
        },
        1,
        2,
        "/0",
        &["leading zeros"],
    );
    assert_refused(
        b"+1",
        K::InvalidNumber {
            literal: "+1".into(),
            reason: "a number must not start with '+'",
        },
        1,
        1,
        "",
        &["'+'"],
    );
    assert_refused(
        b"[.5]",
        K::InvalidNumber {
            literal: ".5".into(),
            reason: "a number must start with a digit (write 0.5, not .5)",
        },
        1,
        2,
        "/0",
        &["0.5"],
    );
    assert_refused(
        b"1.",
        K::InvalidNumber {
            literal: "1.".into(),
            reason: "a decimal point must be followed by a digit",
        },
        1,
        1,
        "",
        &["decimal point"],
    );
    assert_refused(
        b"1e",
        K::InvalidNumber {
            literal: "1e".into(),
            reason: "an exponent must have at least one digit",
        },
        1,
        1,
        "",
        &["exponent"],
    );
    for (text, literal) in [
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("-Infinity", "-Infinity"),
    ] {
        assert_refused(
            format!("{{\"n\":{text}}}").as_bytes(),
            K::InvalidNumber {
                literal: literal.into(),
                reason: "NaN and Infinity are not JSON numbers",
            },
            1,
            6,
            "/n",
            &["not JSON numbers"],
        );
    }
    assert_refused(b"", K::Empty, 1, 1, "", &["empty"]);
    assert_refused(b" \n\t ", K::Empty, 2, 3, "", &["empty"]);
    assert_refused(
        b"{\"a\":\"abc",
        K::UnterminatedString,
        1,
        6,
        "/a",
        &["unterminated string"],
    );
    assert_refused(
        b"\"ab\\",
        K::UnterminatedString,
        1,
        1,
        "",
        &["unterminated"],
    );
    assert_refused(
        b"[\"\\x\"]",
        K::InvalidEscape {
            sequence: "\\x".into(),
        },
        1,
        3,
        "/0",
        &["invalid escape \\x"],
    );
    assert_refused(
        b"[\"\\u12G4\"]",
        K::InvalidEscape {
            sequence: "\\u12G4".into(),
        },
        1,
        3,
        "/0",
        &["invalid escape \\u12G4"],
    );
    assert_refused(
        b"[1,]",
        K::UnexpectedChar {
            found: ']',
            expected: "a JSON value",
        },
        1,
        4,
        "/1",
        &["unexpected ']'"],
    );
    assert_refused(
        b"{\"a\":1,}",
        K::UnexpectedChar {
            found: '}',
            expected: "a string key (in double quotes)",
        },
        1,
        8,
        "",
        &["string key"],
    );
    assert_refused(
        b"{\"a\" 1}",
        K::UnexpectedChar {
            found: '1',
            expected: "':' after an object key",
        },
        1,
        6,
        "",
        &["':'"],
    );
    assert_refused(
        b"[1 2]",
        K::UnexpectedChar {
            found: '2',
            expected: "',' or ']' after an array element",
        },
        1,
        4,
        "",
        &["','"],
    );
    assert_refused(
        b"{\"a\":[1,\n  2",
        K::UnexpectedEnd {
            expected: "',' or ']' after an array element",
        },
        2,
        4,
        "/a",
        &["unexpected end"],
    );
    assert_refused(
        b"[tru]",
        K::UnexpectedChar {
            found: ']',
            expected: "true",
        },
        1,
        5,
        "/0",
        &["expected true"],
    );
    assert_refused(
        b"\xef\xbb\xbf1",
        K::UnexpectedChar {
            found: '\u{feff}',
            expected: "a JSON value",
        },
        1,
        1,
        "",
        &["byte order mark"],
    );
    assert_refused(
        b"['a']",
        K::UnexpectedChar {
            found: '\'',
            expected: "a JSON value",
        },
        1,
        2,
        "/0",
        &["unexpected '''"],
    );
    // Columns count characters, not bytes.
    assert_refused(
        "{\"é€😂\":1 x}".as_bytes(),
        K::UnexpectedChar {
            found: 'x',
            expected: "',' or '}' after an object member",
        },
        1,
        10,
        "",
        &[],
    );
}

// ---- acceptance ----

#[test]
fn exact_numbers_are_accepted() {
    for (input, expected) in [
        ("1.0", "1"),
        ("1e21", "1e+21"),
        ("1E2", "100"),
        ("1e+2", "100"),
        ("1e0", "1"),
        ("-5E+0", "-5"),
        ("12E-0", "12"),
        ("0e0", "0"),
        ("-0E-0", "0"),
        ("7.0", "7"),
        ("123456789012345", "123456789012345"),
        ("-123456789012345.000", "-123456789012345"),
        ("-0", "0"),
        ("-0.0", "0"),
        ("0e-999999999999999999999", "0"),
        ("9007199254740992", "9007199254740992"),
        ("-9007199254740992", "-9007199254740992"),
        ("9007199254740994", "9007199254740994"),
        ("0.1000", "0.1"),
        ("0.1", "0.1"),
        ("100e-2", "1"),
        ("1152921504606847000", "1152921504606847000"),
        ("0.000001", "0.000001"),
        ("1e-7", "1e-7"),
        ("5e-324", "5e-324"),
        ("1.7976931348623157e308", "1.7976931348623157e+308"),
        ("333333333.3333333", "333333333.3333333"),
    ] {
        match canon(input) {
            Ok(out) => assert_eq!(out, expected, "{input}"),
            Err(e) => panic!("{input}: {e}"),
        }
    }
}

#[test]
fn numbers_more_precise_than_a_double_are_refused() {
    for (input, nearest) in [
        ("123456789012345678901234567890e-30", "0.12345678901234568"),
        ("333333333.33333329", "333333333.3333333"),
        ("12345678901234567", "12345678901234568"),
        ("1.00000000000000001", "1"),
        ("4.9e-324", "5e-324"),
        ("2e-324", "0"),
    ] {
        let err = refused(input.as_bytes());
        assert_eq!(
            err.kind(),
            &CanonicalErrorKind::InexactNumber {
                literal: input.into(),
                nearest: nearest.into()
            },
            "{input}"
        );
    }
}

#[test]
fn whitespace_everywhere_legal_is_accepted() {
    let input = b" \t\r\n{ \t\r\n\"b\" \t\r\n: \t\r\n[ \t\r\n1 \t\r\n, \t\r\ntrue \t\r\n] \t\r\n, \t\r\n\"a\" \t\r\n: \t\r\n{ \t\r\n} \t\r\n, \"c\":[ ] } \t\r\n";
    assert_eq!(
        canonicalize(input, &Limits::default()).unwrap(),
        br#"{"a":{},"b":[1,true],"c":[]}"#
    );
}

#[test]
fn strings_are_escaped_as_es6() {
    assert_eq!(
        canon(r#""\u0000\u001F\u007f\/\u2028\u2029\b\f\n\r\t\"\\\u00e9""#).unwrap(),
        "\"\\u0000\\u001f\u{7f}/\u{2028}\u{2029}\\b\\f\\n\\r\\t\\\"\\\\é\""
    );
}

#[test]
fn keys_sort_by_utf16_code_units() {
    // U+E000 and U+FFFF sort after a supplementary character in UTF-16, before it in UTF-8.
    let input = "{\"\u{ffff}\":1,\"\u{1f602}\":2,\"\u{e000}\":3,\"a\":4,\"\\ud800\\udc00\":5}";
    let expected = "{\"a\":4,\"\u{10000}\":5,\"\u{1f602}\":2,\"\u{e000}\":3,\"\u{ffff}\":1}";
    assert_eq!(canon(input).unwrap(), expected);
    let value: serde_json::Value = serde_json::from_str(input).unwrap();
    assert_eq!(
        canonicalize_value(&value, &Limits::default()).unwrap(),
        expected.as_bytes()
    );
}

#[test]
fn big_integers_in_values() {
    use serde_json::json;
    let limits = Limits::default();
    let err = canonicalize_value(&json!({"n": 9_007_199_254_740_993u64}), &limits).unwrap_err();
    assert_eq!(
        err.kind(),
        &CanonicalErrorKind::InexactNumber {
            literal: "9007199254740993".into(),
            nearest: "9007199254740992".into()
        }
    );
    assert_eq!(err.path(), Some("/n"));
    assert_eq!(err.position(), None);
    assert_eq!(
        err.to_string(),
        "number 9007199254740993 cannot be represented exactly as a double (nearest is 9007199254740992); send big integers and exact decimals as strings (at /n)"
    );
    assert!(canonicalize_value(&json!(u64::MAX), &limits).is_err());
    assert!(canonicalize_value(&json!(i64::MIN), &limits).is_err());
    assert!(canonicalize_value(&json!(-9_007_199_254_740_993i64), &limits).is_err());
    assert_eq!(
        canonicalize_value(
            &json!([
                9_007_199_254_740_992u64,
                -9_007_199_254_740_992i64,
                1_152_921_504_606_847_000u64
            ]),
            &limits
        )
        .unwrap(),
        b"[9007199254740992,-9007199254740992,1152921504606847000]"
    );
    // Keys with '/' and '~' are escaped in the path (RFC 6901).
    let err = canonicalize_value(&json!({"a/b": {"c~d": u64::MAX}}), &limits).unwrap_err();
    assert_eq!(err.path(), Some("/a~1b/c~0d"));
}
