//! A strict JSON parser that writes the canonical form as it reads.
//!
//! It builds no tree: each value is written to the output as soon as it is read, and an object's
//! members are reordered in place when the object closes, only if they did not arrive in order.
//! Nesting is tracked on an explicit stack, so deep input cannot overflow the call stack.

use std::cmp::Ordering;

use super::Limits;
use super::error::{CanonicalError, CanonicalErrorKind, push_pointer_token, shorten};
use super::number::{EXP_CAP, Literal};
use super::write::{utf16_cmp, write_char};

pub(crate) fn canonicalize(input: &[u8], limits: &Limits) -> Result<Vec<u8>, CanonicalError> {
    if let Err(e) = std::str::from_utf8(input) {
        return Err(CanonicalError::at(
            CanonicalErrorKind::InvalidUtf8,
            input,
            e.valid_up_to(),
        ));
    }
    let mut parser = Parser {
        input,
        pos: 0,
        out: Vec::with_capacity(input.len().min(limits.max_bytes.saturating_add(1))),
        limits: *limits,
        frames: Vec::new(),
        members: Vec::new(),
        keys: Vec::new(),
        scratch: Vec::new(),
    };
    match parser.run() {
        Ok(()) => Ok(parser.out),
        Err(fail) => {
            let path = parser.path(fail.slot);
            Err(CanonicalError::at(fail.kind, input, fail.offset).with_path(path))
        }
    }
}

/// A failure inside the parser; the position and path are added once, on the way out.
struct Fail {
    kind: CanonicalErrorKind,
    offset: usize,
    /// Whether the path names the value being read (`true`) or the array or object around it.
    slot: bool,
}

type PResult<T> = Result<T, Fail>;

fn fail<T>(kind: CanonicalErrorKind, offset: usize, slot: bool) -> PResult<T> {
    Err(Fail { kind, offset, slot })
}

#[derive(Clone, Copy)]
enum Frame {
    Array {
        /// Index of the element being read.
        index: usize,
        /// Input offset of the `[`.
        start: usize,
    },
    Object {
        /// This object's members are `members[members_base..]`.
        members_base: usize,
        /// Unescaped keys of this object live in `keys[keys_base..]`.
        keys_base: usize,
        /// Output offset just after the `{`.
        content_start: usize,
        /// Whether the keys so far arrived in canonical order.
        sorted: bool,
        /// Index in `members` of the member being read.
        current: usize,
        /// Input offset of the `{`.
        start: usize,
    },
}

/// Where a key's unescaped text is: in the input when it had no escapes (the usual case, no
/// copy), otherwise in the `keys` scratch buffer.
#[derive(Clone, Copy)]
struct KeyRef {
    in_scratch: bool,
    start: usize,
    end: usize,
}

#[derive(Clone, Copy)]
struct Member {
    key: KeyRef,
    /// Input offset of the key's opening quote, for duplicate-key errors.
    key_offset: usize,
    /// Output span of `"key":value`.
    out_start: usize,
    out_end: usize,
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    out: Vec<u8>,
    limits: Limits,
    frames: Vec<Frame>,
    members: Vec<Member>,
    keys: Vec<u8>,
    scratch: Vec<u8>,
}

const EXPECT_VALUE: &str = "a JSON value";
const NAN_REASON: &str = "NaN and Infinity are not JSON numbers";

fn key_bytes<'k>(input: &'k [u8], keys: &'k [u8], key: KeyRef) -> &'k [u8] {
    let source = if key.in_scratch { keys } else { input };
    source.get(key.start..key.end).unwrap_or(&[])
}

#[inline]
fn is_number_char(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
}

impl Parser<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// The character at a byte offset; the input is valid UTF-8 and offsets are on boundaries.
    fn char_at(&self, offset: usize) -> char {
        self.input
            .get(offset..)
            .and_then(|rest| std::str::from_utf8(rest).ok())
            .and_then(|s| s.chars().next())
            .unwrap_or(char::REPLACEMENT_CHARACTER)
    }

    fn unexpected<T>(&self, expected: &'static str, slot: bool) -> PResult<T> {
        match self.peek() {
            None => fail(
                CanonicalErrorKind::UnexpectedEnd { expected },
                self.pos,
                slot,
            ),
            Some(_) => fail(
                CanonicalErrorKind::UnexpectedChar {
                    found: self.char_at(self.pos),
                    expected,
                },
                self.pos,
                slot,
            ),
        }
    }

    /// JSON Pointer of the value being read (`slot`) or of its container.
    fn path(&self, slot: bool) -> String {
        let upto = if slot {
            self.frames.len()
        } else {
            self.frames.len().saturating_sub(1)
        };
        let mut path = String::new();
        for frame in self.frames.iter().take(upto) {
            match *frame {
                Frame::Array { index, .. } => {
                    path.push('/');
                    path.push_str(&index.to_string());
                }
                Frame::Object { current, .. } => {
                    if let Some(member) = self.members.get(current) {
                        let key = key_bytes(self.input, &self.keys, member.key);
                        path.push('/');
                        push_pointer_token(&mut path, &String::from_utf8_lossy(key));
                    }
                }
            }
        }
        path
    }

    fn run(&mut self) -> PResult<()> {
        self.skip_ws();
        if self.pos >= self.input.len() {
            return fail(CanonicalErrorKind::Empty, self.pos, true);
        }
        'value: loop {
            let value_start = self.pos;
            match self.peek() {
                Some(b'[') => {
                    self.check_depth()?;
                    self.pos += 1;
                    self.out.push(b'[');
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        self.out.push(b']');
                    } else {
                        self.frames.push(Frame::Array {
                            index: 0,
                            start: value_start,
                        });
                        continue 'value;
                    }
                }
                Some(b'{') => {
                    self.check_depth()?;
                    self.pos += 1;
                    self.out.push(b'{');
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        self.out.push(b'}');
                    } else {
                        self.frames.push(Frame::Object {
                            members_base: self.members.len(),
                            keys_base: self.keys.len(),
                            content_start: self.out.len(),
                            sorted: true,
                            current: self.members.len(),
                            start: value_start,
                        });
                        self.member_key()?;
                        continue 'value;
                    }
                }
                Some(b'"') => {
                    self.string(false)?;
                }
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.word(b"true", "true")?,
                Some(b'f') => self.word(b"false", "false")?,
                Some(b'n') => self.word(b"null", "null")?,
                _ => return self.bad_value(),
            }
            // A value is complete: close every container that ends here, then find the next value.
            let mut completed_start = value_start;
            loop {
                if self.out.len() > self.limits.max_bytes {
                    return fail(
                        CanonicalErrorKind::TooLarge {
                            max_bytes: self.limits.max_bytes,
                        },
                        completed_start,
                        true,
                    );
                }
                self.skip_ws();
                match self.frames.last_mut() {
                    None => {
                        return match self.peek() {
                            None => Ok(()),
                            Some(_) => fail(
                                CanonicalErrorKind::TrailingData {
                                    found: self.char_at(self.pos),
                                },
                                self.pos,
                                true,
                            ),
                        };
                    }
                    Some(Frame::Array { index, start }) => match self.input.get(self.pos) {
                        Some(b',') => {
                            *index += 1;
                            self.pos += 1;
                            self.out.push(b',');
                            self.skip_ws();
                            continue 'value;
                        }
                        Some(b']') => {
                            completed_start = *start;
                            self.pos += 1;
                            self.out.push(b']');
                            self.frames.pop();
                        }
                        _ => return self.unexpected("',' or ']' after an array element", false),
                    },
                    Some(Frame::Object { start, .. }) => {
                        let start = *start;
                        if let Some(member) = self.members.last_mut() {
                            member.out_end = self.out.len();
                        }
                        match self.peek() {
                            Some(b',') => {
                                self.pos += 1;
                                self.out.push(b',');
                                self.skip_ws();
                                self.member_key()?;
                                continue 'value;
                            }
                            Some(b'}') => {
                                self.close_object()?;
                                completed_start = start;
                                self.pos += 1;
                                self.out.push(b'}');
                                self.frames.pop();
                            }
                            _ => {
                                return self.unexpected("',' or '}' after an object member", false);
                            }
                        }
                    }
                }
            }
        }
    }

    fn check_depth(&self) -> PResult<()> {
        if self.frames.len() >= self.limits.max_depth {
            return fail(
                CanonicalErrorKind::TooDeep {
                    max_depth: self.limits.max_depth,
                },
                self.pos,
                true,
            );
        }
        Ok(())
    }

    /// Explains a value that does not start like one, naming common mistakes.
    fn bad_value<T>(&self) -> PResult<T> {
        let rest = self.input.get(self.pos..).unwrap_or(&[]);
        for word in [&b"NaN"[..], b"Infinity"] {
            if rest.starts_with(word) {
                let literal = String::from_utf8_lossy(word).into_owned();
                return fail(
                    CanonicalErrorKind::InvalidNumber {
                        literal,
                        reason: NAN_REASON,
                    },
                    self.pos,
                    true,
                );
            }
        }
        let reason = match rest.first() {
            Some(b'+') => "a number must not start with '+'",
            Some(b'.') => "a number must start with a digit (write 0.5, not .5)",
            _ => return self.unexpected(EXPECT_VALUE, true),
        };
        let len = rest.iter().take_while(|&&b| is_number_char(b)).count();
        fail(
            CanonicalErrorKind::InvalidNumber {
                literal: shorten(rest.get(..len).unwrap_or(&[])),
                reason,
            },
            self.pos,
            true,
        )
    }

    fn word(&mut self, word: &'static [u8], expected: &'static str) -> PResult<()> {
        let rest = self.input.get(self.pos..).unwrap_or(&[]);
        if rest.starts_with(word) {
            self.out.extend_from_slice(word);
            self.pos += word.len();
            return Ok(());
        }
        let matched = rest
            .iter()
            .zip(word.iter())
            .take_while(|(a, b)| a == b)
            .count();
        self.pos += matched;
        self.unexpected(expected, true)
    }

    /// Reads an object key and the `:` after it, and records the member.
    fn member_key(&mut self) -> PResult<()> {
        if self.peek() != Some(b'"') {
            return self.unexpected("a string key (in double quotes)", false);
        }
        let key_offset = self.pos;
        let out_start = self.out.len();
        let key = self.string(true)?;
        let Some(Frame::Object {
            members_base,
            sorted,
            current,
            ..
        }) = self.frames.last_mut()
        else {
            return fail(CanonicalErrorKind::Internal, key_offset, false);
        };
        if *sorted
            && self.members.len() > *members_base
            && let Some(previous) = self.members.last()
        {
            let before = key_bytes(self.input, &self.keys, previous.key);
            let this = key_bytes(self.input, &self.keys, key);
            match utf16_cmp(before, this) {
                Ordering::Less => {}
                Ordering::Equal => {
                    return fail(
                        CanonicalErrorKind::DuplicateKey {
                            key: String::from_utf8_lossy(this).into_owned(),
                        },
                        key_offset,
                        false,
                    );
                }
                Ordering::Greater => *sorted = false,
            }
        }
        *current = self.members.len();
        self.members.push(Member {
            key,
            key_offset,
            out_start,
            out_end: out_start,
        });
        self.skip_ws();
        if self.peek() != Some(b':') {
            return self.unexpected("':' after an object key", false);
        }
        self.pos += 1;
        self.out.push(b':');
        self.skip_ws();
        Ok(())
    }

    /// Finds duplicates and puts the members in canonical order, if they did not arrive so.
    fn close_object(&mut self) -> PResult<()> {
        let Some(&Frame::Object {
            members_base,
            keys_base,
            content_start,
            sorted,
            ..
        }) = self.frames.last()
        else {
            return fail(CanonicalErrorKind::Internal, self.pos, false);
        };
        if !sorted {
            let (input, keys) = (self.input, &self.keys);
            let Some(members) = self.members.get_mut(members_base..) else {
                return fail(CanonicalErrorKind::Internal, self.pos, false);
            };
            members.sort_unstable_by(|a, b| {
                utf16_cmp(key_bytes(input, keys, a.key), key_bytes(input, keys, b.key))
                    .then(a.key_offset.cmp(&b.key_offset))
            });
            for pair in members.windows(2) {
                if let [a, b] = pair {
                    let key = key_bytes(input, keys, b.key);
                    if key_bytes(input, keys, a.key) == key {
                        return fail(
                            CanonicalErrorKind::DuplicateKey {
                                key: String::from_utf8_lossy(key).into_owned(),
                            },
                            b.key_offset,
                            false,
                        );
                    }
                }
            }
            self.scratch.clear();
            self.scratch
                .extend_from_slice(self.out.get(content_start..).unwrap_or(&[]));
            self.out.truncate(content_start);
            for (i, member) in members.iter().enumerate() {
                if i > 0 {
                    self.out.push(b',');
                }
                // Spans lie after `content_start`; a broken invariant wraps and fails `get`.
                let span = self.scratch.get(
                    member.out_start.wrapping_sub(content_start)
                        ..member.out_end.wrapping_sub(content_start),
                );
                let Some(span) = span else {
                    return fail(CanonicalErrorKind::Internal, self.pos, false);
                };
                self.out.extend_from_slice(span);
            }
        }
        self.members.truncate(members_base);
        self.keys.truncate(keys_base);
        Ok(())
    }

    /// Reads a string at `self.pos` (on its opening quote) and writes it canonically escaped.
    /// For a key, also returns where its unescaped text is.
    fn string(&mut self, is_key: bool) -> PResult<KeyRef> {
        let open = self.pos;
        let content_start = open + 1;
        self.out.push(b'"');
        let mut raw_start = content_start;
        let mut i = content_start;
        // Set once a key has an escape: its unescaped text is then built in `keys`.
        let mut scratch_start: Option<usize> = None;
        loop {
            let Some(&b) = self.input.get(i) else {
                return fail(CanonicalErrorKind::UnterminatedString, open, true);
            };
            if b >= 0x20 && b != b'"' && b != b'\\' {
                i += 1;
                continue;
            }
            let raw = self.input.get(raw_start..i).unwrap_or(&[]);
            // Raw input bytes need no escaping: the bytes that would have ended or been refused.
            self.out.extend_from_slice(raw);
            if let Some(_start) = scratch_start {
                self.keys.extend_from_slice(raw);
            }
            match b {
                b'"' => {
                    self.out.push(b'"');
                    self.pos = i + 1;
                    return Ok(match scratch_start {
                        Some(start) => KeyRef {
                            in_scratch: true,
                            start,
                            end: self.keys.len(),
                        },
                        None => KeyRef {
                            in_scratch: false,
                            start: content_start,
                            end: i,
                        },
                    });
                }
                b'\\' => {
                    if is_key && scratch_start.is_none() {
                        scratch_start = Some(self.keys.len());
                        self.keys
                            .extend_from_slice(self.input.get(content_start..i).unwrap_or(&[]));
                    }
                    let (c, next) = self.escape(i, open)?;
                    write_char(&mut self.out, c);
                    if scratch_start.is_some() {
                        let mut buf = [0u8; 4];
                        self.keys
                            .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                    i = next;
                    raw_start = i;
                }
                _ => {
                    return fail(
                        CanonicalErrorKind::ControlCharacterInString { code: b },
                        i,
                        true,
                    );
                }
            }
        }
    }

    /// Decodes the escape whose backslash is at `at`; returns the character and the offset after.
    fn escape(&self, at: usize, open: usize) -> PResult<(char, usize)> {
        let Some(&letter) = self.input.get(at + 1) else {
            return fail(CanonicalErrorKind::UnterminatedString, open, true);
        };
        let c = match letter {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => return self.unicode_escape(at),
            _ => return fail(self.invalid_escape(at, 2), at, true),
        };
        Ok((c, at + 2))
    }

    fn invalid_escape(&self, at: usize, chars: usize) -> CanonicalErrorKind {
        let rest = self.input.get(at..).unwrap_or(&[]);
        let text = String::from_utf8_lossy(rest);
        CanonicalErrorKind::InvalidEscape {
            sequence: text.chars().take(chars).collect(),
        }
    }

    fn hex4(&self, at: usize) -> Option<u16> {
        let digits = self.input.get(at..at + 4)?;
        let mut value: u16 = 0;
        for &d in digits {
            let v = (d as char).to_digit(16)?;
            value = value << 4 | v as u16;
        }
        Some(value)
    }

    /// Decodes `\uXXXX` (and the low half of a surrogate pair) at `at`.
    fn unicode_escape(&self, at: usize) -> PResult<(char, usize)> {
        let Some(unit) = self.hex4(at + 2) else {
            return fail(self.invalid_escape(at, 6), at, true);
        };
        match unit {
            0xD800..=0xDBFF => {
                let next = at + 6;
                let low = if self.input.get(next..next + 2) == Some(b"\\u") {
                    self.hex4(next + 2)
                } else {
                    None
                };
                match low {
                    Some(low @ 0xDC00..=0xDFFF) => {
                        let code = 0x10000
                            + ((u32::from(unit) - 0xD800) << 10)
                            + (u32::from(low) - 0xDC00);
                        match char::from_u32(code) {
                            Some(c) => Ok((c, next + 6)),
                            None => fail(CanonicalErrorKind::Internal, at, true),
                        }
                    }
                    _ => fail(
                        CanonicalErrorKind::LoneSurrogate { code_unit: unit },
                        at,
                        true,
                    ),
                }
            }
            0xDC00..=0xDFFF => fail(
                CanonicalErrorKind::LoneSurrogate { code_unit: unit },
                at,
                true,
            ),
            _ => match char::from_u32(u32::from(unit)) {
                Some(c) => Ok((c, at + 6)),
                None => fail(CanonicalErrorKind::Internal, at, true),
            },
        }
    }

    /// Reads a number literal, checks the grammar and the exactness rule, writes its canonical form.
    fn number(&mut self) -> PResult<()> {
        let start = self.pos;
        let input = self.input;
        let at = |i: usize| input.get(i).copied();
        let digits_from = |mut i: usize| {
            while let Some(b'0'..=b'9') = at(i) {
                i += 1;
            }
            i
        };
        let invalid = |reason: &'static str| {
            let len = input
                .get(start..)
                .unwrap_or(&[])
                .iter()
                .take_while(|&&b| is_number_char(b))
                .count();
            let literal = shorten(input.get(start..start + len).unwrap_or(&[]));
            fail(
                CanonicalErrorKind::InvalidNumber { literal, reason },
                start,
                true,
            )
        };
        let mut p = start;
        let negative = at(p) == Some(b'-');
        if negative {
            p += 1;
        }
        let int_start = p;
        match at(p) {
            Some(b'0') => {
                p += 1;
                if let Some(b'0'..=b'9') = at(p) {
                    return invalid("leading zeros are not allowed");
                }
            }
            Some(b'1'..=b'9') => p = digits_from(p),
            _ => {
                if input
                    .get(p..)
                    .is_some_and(|rest| rest.starts_with(b"Infinity"))
                {
                    let literal = "-Infinity".to_owned();
                    return fail(
                        CanonicalErrorKind::InvalidNumber {
                            literal,
                            reason: NAN_REASON,
                        },
                        start,
                        true,
                    );
                }
                return invalid("'-' must be followed by a digit");
            }
        }
        let int = input.get(int_start..p).unwrap_or(&[]);
        let mut frac: &[u8] = &[];
        if at(p) == Some(b'.') {
            let frac_start = p + 1;
            p = digits_from(frac_start);
            if p == frac_start {
                return invalid("a decimal point must be followed by a digit");
            }
            frac = input.get(frac_start..p).unwrap_or(&[]);
        }
        let mut exp: i64 = 0;
        let has_exp = matches!(at(p), Some(b'e' | b'E'));
        if has_exp {
            p += 1;
            let exp_negative = at(p) == Some(b'-');
            if let Some(b'+' | b'-') = at(p) {
                p += 1;
            }
            let exp_start = p;
            p = digits_from(exp_start);
            if p == exp_start {
                return invalid("an exponent must have at least one digit");
            }
            for &d in input.get(exp_start..p).unwrap_or(&[]) {
                exp = (exp * 10 + i64::from(d - b'0')).min(EXP_CAP);
            }
            if exp_negative {
                exp = -exp;
            }
        }
        let literal = Literal {
            text: input.get(start..p).unwrap_or(&[]),
            int,
            frac,
            has_exp,
            exp,
        };
        self.pos = p;
        match literal.write_canonical(&mut self.out) {
            Ok(()) => Ok(()),
            Err(kind) => fail(kind, start, true),
        }
    }
}
