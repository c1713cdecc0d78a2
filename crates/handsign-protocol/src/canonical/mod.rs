//! RFC 8785 (JSON Canonicalization Scheme): the exact bytes whose SHA-256 a person approves.
//!
//! Because the hash is what gets signed, nothing may be changed silently: input that RFC 8785
//! cannot represent exactly (duplicate keys, lone surrogates, numbers that are not finite doubles,
//! number literals more precise than a double) is refused with an error that says what and where.
//! Otherwise an agent could have one value approved and send a service another that canonicalizes
//! to the same bytes.
//!
//! [`canonicalize`] parses JSON text itself, because `serde_json` keeps the last of duplicate keys
//! and rounds numbers without telling; [`canonicalize_value`] serves callers that already hold a
//! `serde_json::Value` (whose duplicates and number literals are already gone).

mod error;
mod number;
mod parse;
mod value;
mod write;

pub use error::{CanonicalError, CanonicalErrorKind, Position};
pub use number::format_number;

/// Limits on what is canonicalized, so a request cannot make the gateway hash megabytes or
/// recurse without bound. Both are checked while working, not after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest canonical output, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of arrays and objects; a scalar at top level has depth 0, `[[1]]` depth 2.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 64 * 1024,
            max_depth: 32,
        }
    }
}

/// Canonicalizes a JSON text (UTF-8, exactly one value, whitespace allowed around tokens).
///
/// The parser is strict: anything RFC 8259 does not allow, and anything RFC 8785 cannot
/// represent exactly, is refused. A number literal is accepted only when its decimal value equals
/// that of the shortest form of the double it rounds to (`1.0`, `1e21` and `0.1000` pass,
/// `9007199254740993` does not).
pub fn canonicalize(input: &[u8], limits: &Limits) -> Result<Vec<u8>, CanonicalError> {
    parse::canonicalize(input, limits)
}

/// Canonicalizes an already parsed value.
///
/// Integers above 2^53 in magnitude are held to the same rule as literals in text: accepted
/// only when the integer equals the shortest form of the double it rounds to. Floats in a
/// `Value` are already doubles and are always exact.
pub fn canonicalize_value(
    value: &serde_json::Value,
    limits: &Limits,
) -> Result<Vec<u8>, CanonicalError> {
    value::canonicalize_value(value, limits)
}
