//! Errors that say what was refused, where, and how to fix it: these messages reach the authors of
//! agents and services through the CLI and the HTTP API.

use std::fmt;

/// Where in a JSON text something went wrong. Both numbers start at 1; the column counts Unicode
/// characters, not bytes, so it matches what an editor shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line number, 1-based; only `\n` starts a new line.
    pub line: usize,
    /// Column number in characters, 1-based.
    pub column: usize,
}

impl Position {
    /// Computes the line and column of a byte offset. Only called when building an error, so the
    /// linear scan costs nothing on the success path.
    pub(crate) fn of_offset(input: &[u8], offset: usize) -> Position {
        let prefix = input.get(..offset).unwrap_or(input);
        let mut line = 1;
        let mut column = 1;
        for &b in prefix {
            if b == b'\n' {
                line += 1;
                column = 1;
            } else if b & 0xC0 != 0x80 {
                // Count lead bytes only: one per character (invalid bytes count as one each).
                column += 1;
            }
        }
        Position { line, column }
    }
}

/// The reason a document was refused.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CanonicalErrorKind {
    /// The input is not valid UTF-8 (RFC 8785 is defined over UTF-8 only).
    InvalidUtf8,
    /// The input is empty or only whitespace.
    Empty,
    /// The input ended where more was required.
    UnexpectedEnd {
        /// What was required, e.g. `a value` or `',' or ']'`.
        expected: &'static str,
    },
    /// A character that cannot appear here.
    UnexpectedChar {
        /// The offending character.
        found: char,
        /// What was required instead.
        expected: &'static str,
    },
    /// Something follows the end of the JSON document.
    TrailingData {
        /// The first character after the document.
        found: char,
    },
    /// A string has no closing quote; the position is that of its opening quote.
    UnterminatedString,
    /// A control character (below U+0020) written raw inside a string.
    ControlCharacterInString {
        /// The character's code.
        code: u8,
    },
    /// A backslash escape JSON does not define, such as `\x` or `\u12G4`.
    InvalidEscape {
        /// The escape as written (possibly shortened).
        sequence: String,
    },
    /// A `\u` escape of a UTF-16 surrogate that is not part of a high + low pair; such a string has
    /// no UTF-8 form.
    LoneSurrogate {
        /// The surrogate code unit.
        code_unit: u16,
    },
    /// A number literal JSON does not allow (`01`, `+1`, `.5`, `1.`, `NaN`, `Infinity`, ...).
    InvalidNumber {
        /// The literal as written (possibly shortened).
        literal: String,
        /// Why the literal is not a JSON number.
        reason: &'static str,
    },
    /// A number whose magnitude is too large for an IEEE-754 double.
    NumberOutOfRange {
        /// The literal as written (possibly shortened).
        literal: String,
    },
    /// A number that does not survive the round trip through a double: approving it would approve
    /// every other number that rounds to the same double.
    InexactNumber {
        /// The literal as written (possibly shortened).
        literal: String,
        /// The canonical form of the double it rounds to.
        nearest: String,
    },
    /// NaN or an infinity passed to [`format_number`](super::format_number).
    NonFiniteNumber {
        /// `NaN`, `Infinity` or `-Infinity`.
        value: &'static str,
    },
    /// The same key twice in one object (compared after unescaping). Parsers disagree on which
    /// one wins, so the person could approve one value while a service acts on the other.
    DuplicateKey {
        /// The key, unescaped.
        key: String,
    },
    /// Arrays and objects nested deeper than the limit.
    TooDeep {
        /// The limit in force.
        max_depth: usize,
    },
    /// The canonical form is larger than the limit.
    TooLarge {
        /// The limit in force, in bytes.
        max_bytes: usize,
    },
    /// A broken internal invariant: a bug in this crate, never caused by the input alone.
    Internal,
}

const NUMBER_HINT: &str = "send big integers and exact decimals as strings";

impl CanonicalErrorKind {
    /// Advice shown after the description, when there is useful advice to give.
    fn hint(&self) -> Option<&'static str> {
        match self {
            CanonicalErrorKind::InexactNumber { .. }
            | CanonicalErrorKind::NumberOutOfRange { .. } => Some(NUMBER_HINT),
            CanonicalErrorKind::TooDeep { .. } => {
                Some("nest less deeply, or raise the configured limit")
            }
            CanonicalErrorKind::TooLarge { .. } => {
                Some("send less data, or raise the configured limit")
            }
            _ => None,
        }
    }
}

/// Shows a character so that invisible and control characters can be seen in a message.
struct ShowChar(char);

impl fmt::Display for ShowChar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        if c.is_ascii_graphic() {
            write!(f, "'{c}'")
        } else if c.is_ascii() || c.is_whitespace() || c.is_control() || c == '\u{feff}' {
            write!(f, "U+{:04X}", u32::from(c))
        } else {
            write!(f, "'{c}' (U+{:04X})", u32::from(c))
        }
    }
}

impl fmt::Display for CanonicalErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CanonicalErrorKind::InvalidUtf8 => {
                f.write_str("invalid UTF-8 (JSON text must be UTF-8)")
            }
            CanonicalErrorKind::Empty => f.write_str("empty input: expected a JSON value"),
            CanonicalErrorKind::UnexpectedEnd { expected } => {
                write!(f, "unexpected end of input: expected {expected}")
            }
            CanonicalErrorKind::UnexpectedChar { found, expected } => {
                if *found == '\u{feff}' {
                    write!(
                        f,
                        "unexpected byte order mark U+FEFF: expected {expected} (remove the BOM)"
                    )
                } else {
                    write!(f, "unexpected {}: expected {expected}", ShowChar(*found))
                }
            }
            CanonicalErrorKind::TrailingData { found } => {
                write!(
                    f,
                    "unexpected {} after the end of the JSON value (only one value is allowed)",
                    ShowChar(*found)
                )
            }
            CanonicalErrorKind::UnterminatedString => {
                f.write_str("unterminated string: no closing '\"'")
            }
            CanonicalErrorKind::ControlCharacterInString { code } => {
                let escape = match code {
                    0x08 => "\\b".to_owned(),
                    0x09 => "\\t".to_owned(),
                    0x0A => "\\n".to_owned(),
                    0x0C => "\\f".to_owned(),
                    0x0D => "\\r".to_owned(),
                    _ => format!("\\u{code:04x}"),
                };
                write!(
                    f,
                    "raw control character U+{code:04X} in a string: write it as {escape}"
                )
            }
            CanonicalErrorKind::InvalidEscape { sequence } => write!(
                f,
                "invalid escape {sequence} in a string (allowed: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)"
            ),
            CanonicalErrorKind::LoneSurrogate { code_unit } => {
                if (0xD800..0xDC00).contains(code_unit) {
                    write!(
                        f,
                        "lone surrogate \\u{code_unit:04X} in a string: a high surrogate must be followed by a low surrogate \\uDC00-\\uDFFF"
                    )
                } else {
                    write!(
                        f,
                        "lone surrogate \\u{code_unit:04X} in a string: a low surrogate must follow a high surrogate \\uD800-\\uDBFF"
                    )
                }
            }
            CanonicalErrorKind::InvalidNumber { literal, reason } => {
                write!(f, "invalid number {literal}: {reason}")
            }
            CanonicalErrorKind::NumberOutOfRange { literal } => {
                write!(f, "number {literal} is too large for a double")
            }
            CanonicalErrorKind::InexactNumber { literal, nearest } => write!(
                f,
                "number {literal} cannot be represented exactly as a double (nearest is {nearest})"
            ),
            CanonicalErrorKind::NonFiniteNumber { value } => {
                write!(
                    f,
                    "{value} has no JSON representation (RFC 8785 requires finite numbers)"
                )
            }
            CanonicalErrorKind::DuplicateKey { key } => write!(f, "duplicate key {key:?}"),
            CanonicalErrorKind::TooDeep { max_depth } => {
                write!(
                    f,
                    "arrays and objects nested deeper than the limit of {max_depth} levels"
                )
            }
            CanonicalErrorKind::TooLarge { max_bytes } => {
                write!(
                    f,
                    "canonical form larger than the limit of {max_bytes} bytes"
                )
            }
            CanonicalErrorKind::Internal => {
                f.write_str("internal error in the canonicalizer (a bug in handsign-protocol)")
            }
        }
    }
}

/// Why a document cannot be canonicalized: a [`CanonicalErrorKind`], the position in the JSON
/// text when the input was text, and the JSON Pointer (RFC 6901) of the offending value.
#[derive(Debug, Clone, PartialEq)]
pub struct CanonicalError {
    kind: CanonicalErrorKind,
    position: Option<Position>,
    path: Option<String>,
}

impl std::error::Error for CanonicalError {}

impl CanonicalError {
    pub(crate) fn new(kind: CanonicalErrorKind) -> Self {
        CanonicalError {
            kind,
            position: None,
            path: None,
        }
    }

    pub(crate) fn at(kind: CanonicalErrorKind, input: &[u8], offset: usize) -> Self {
        CanonicalError {
            kind,
            position: Some(Position::of_offset(input, offset)),
            path: None,
        }
    }

    pub(crate) fn with_path(mut self, path: String) -> Self {
        self.path = Some(path);
        self
    }

    /// Prepends one reference token while the error travels up the tree.
    pub(crate) fn within(mut self, token: &str) -> Self {
        let mut path =
            String::with_capacity(token.len() + 1 + self.path.as_ref().map_or(0, String::len));
        path.push('/');
        push_pointer_token(&mut path, token);
        if let Some(rest) = &self.path {
            path.push_str(rest);
        }
        self.path = Some(path);
        self
    }

    /// Prepends an array index while the error travels up the tree.
    pub(crate) fn within_index(self, index: usize) -> Self {
        self.within(&index.to_string())
    }

    /// The reason.
    pub fn kind(&self) -> &CanonicalErrorKind {
        &self.kind
    }

    /// Line and column in the JSON text; `None` when the input was an already parsed value.
    pub fn position(&self) -> Option<Position> {
        self.position
    }

    /// JSON Pointer (RFC 6901) of the offending value, or of the object or array it is in;
    /// `Some("")` is the whole document, `None` when no value is concerned (e.g. invalid UTF-8).
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }
}

/// Appends a JSON Pointer reference token, escaped as RFC 6901 requires.
pub(crate) fn push_pointer_token(path: &mut String, token: &str) {
    for c in token.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            _ => path.push(c),
        }
    }
}

impl fmt::Display for CanonicalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        let hint = self.kind.hint();
        if let Some(hint) = hint {
            write!(f, "; {hint}")?;
        }
        if let Some(Position { line, column }) = self.position {
            let sep = if hint.is_some() { "," } else { "" };
            write!(f, "{sep} at line {line}, column {column}")?;
        }
        match self.path.as_deref() {
            Some(path) if !path.is_empty() => write!(f, " (at {path})"),
            _ => Ok(()),
        }
    }
}

/// Shortens a literal for an error message: a megabyte of digits helps nobody.
pub(crate) fn shorten(literal: &[u8]) -> String {
    const MAX: usize = 64;
    let text = String::from_utf8_lossy(literal);
    if text.chars().count() <= MAX {
        text.into_owned()
    } else {
        let mut short: String = text.chars().take(MAX).collect();
        short.push_str("...");
        short
    }
}
