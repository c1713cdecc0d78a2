//! What the person sees of agent-written text: the params tree, and every string an agent chose
//! (keys, values, its name, the audience, the action, its message).
//!
//! The approval page is only worth its passkey if what it shows is what gets signed. An agent
//! that wants a yes for something the person would refuse can try to make the page lie without
//! changing the bytes: a RIGHT-TO-LEFT OVERRIDE that shows `moc.evil` as `live.com`, a zero-width
//! space or a tag character that hides text, a no-break space that looks like a space, a
//! newline that pushes the real value out of sight, a Cyrillic `а` in `pаypal`, or the number
//! `1` dressed as the string `"1"`. So nothing here is emitted raw unless it is plainly visible
//! and unambiguous:
//!
//! - invisible, formatting, bidirectional-control, control, separator and non-ASCII space
//!   characters become a marker showing `U+XXXX` and, where cheap, the character's name;
//! - newlines and tabs become `\n` and `\t` markers (a newline also breaks the line, so a value
//!   that spans lines is seen to), and leading or trailing spaces become markers;
//! - combining marks on Latin, Greek, Cyrillic or symbol letters become markers, so `é` written
//!   as `e` + U+0301 does not look like the single letter `é`;
//! - a letter whose script differs from the string's dominant one is shown with its code point
//!   and script, and the string is flagged as mixed-script; a string whose letters are all in a
//!   non-Latin script is labelled with that script (an all-Cyrillic `рау` is not `pay`);
//! - compatibility forms (fullwidth `ｐ`, the Kelvin sign, math letters), uncommon Latin letters
//!   (`ɑ`, `ǀ`) and look-alikes of ASCII punctuation (`∕` for `/`) are shown with their code
//!   point, and text not in Unicode form NFC is flagged (a jamo sequence looks like a syllable);
//! - strings, numbers, booleans and null are typed, and the page lays every string out in
//!   stored order, left to right, so bidirectional reordering cannot make two strings alike.
//!
//! The result is data for the askama templates, which do all HTML escaping. Nothing is ever
//! truncated: a 2,000-character value is shown in full.

use std::borrow::Cow;

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;
use unicode_script::{Script, UnicodeScript};
use unicode_security::GeneralSecurityProfile as _;
use unicode_security::general_security_profile::IdentifierType;

use crate::params_order::{Objects, ParamsOrder};

/// A string as the page shows it: plain runs and markers, plus what is notable about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownText {
    pub parts: Vec<Part>,
    /// The scripts of its letters, most used first (`"Latin + Cyrillic"`), when there is more
    /// than one: the look-alike letters are the [`Part::Flagged`] ones.
    pub mixed_scripts: Option<String>,
    /// The script of its letters when that is not Latin, so an all-Cyrillic look-alike of a
    /// Latin word is labelled as such.
    pub script: Option<&'static str>,
    /// Whether it holds right-to-left letters; the page shows them in stored order, left to
    /// right, and says so.
    pub has_rtl: bool,
    /// Whether it is not in Unicode normalization form C: some of its characters are written as
    /// sequences that can look exactly like other text (decomposed accents, Hangul jamo).
    pub not_nfc: bool,
}

/// A piece of a [`ShownText`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Visible, unambiguous characters, emitted as they are (escaped by the template).
    Plain(String),
    /// A character that would be invisible or misleading if emitted raw: shown as its code
    /// point and, where known, its name.
    Hidden {
        code: String,
        name: Cow<'static, str>,
    },
    /// A visible character that could pass for another: a letter from a script other than the
    /// string's dominant one, a compatibility form (fullwidth `ｐ`, the Kelvin sign `K`), an
    /// uncommon Latin letter (`ɑ`, `ǀ`) or a look-alike of ASCII punctuation (`∕`). Shown, with
    /// its code point and what it is beside it.
    Flagged {
        letter: String,
        code: String,
        note: Cow<'static, str>,
    },
    /// A line feed, U+000A: shown as `\n`, then a line break.
    Newline,
    /// A tab, U+0009: shown as `\t`.
    Tab,
    /// A space, U+0020, at the start or end of the string.
    EdgeSpace,
}

impl ShownText {
    /// Splits `text` into plain runs and markers.
    pub fn new(text: &str) -> ShownText {
        let chars: Vec<char> = text.chars().collect();
        let scripts = ScriptCount::of(&chars);
        let dominant = scripts.dominant();
        let leading = chars.iter().take_while(|&&c| c == ' ').count();
        let trailing = if leading == chars.len() {
            0
        } else {
            chars.iter().rev().take_while(|&&c| c == ' ').count()
        };

        let mut parts = Vec::new();
        let mut plain = String::new();
        // The script of the last character that was not a combining mark, to tell a combining
        // mark that could fake a precomposed letter from one that belongs to its script.
        let mut base = None;
        for (i, &c) in chars.iter().enumerate() {
            let part = if c == '\n' {
                Some(Part::Newline)
            } else if c == '\t' {
                Some(Part::Tab)
            } else if c == ' ' && (i < leading || i >= chars.len() - trailing) {
                Some(Part::EdgeSpace)
            } else if let Some(name) = hidden_name(c) {
                Some(hidden(c, name))
            } else {
                match c.script() {
                    Script::Unknown => Some(hidden(c, "UNASSIGNED OR PRIVATE USE".into())),
                    Script::Inherited if fakes_precomposed(base) => {
                        Some(hidden(c, "COMBINING MARK".into()))
                    }
                    Script::Inherited => None,
                    Script::Common => look_alike_note(c, dominant).map(|note| flagged(c, note)),
                    script if Some(group(script)) != dominant => {
                        Some(flagged(c, script.full_name().into()))
                    }
                    _ => look_alike_note(c, dominant).map(|note| flagged(c, note)),
                }
            };
            if c.script() != Script::Inherited {
                base = Some(c.script());
            }
            match part {
                Some(part) => {
                    if !plain.is_empty() {
                        parts.push(Part::Plain(std::mem::take(&mut plain)));
                    }
                    parts.push(part);
                }
                None => plain.push(c),
            }
        }
        if !plain.is_empty() {
            parts.push(Part::Plain(plain));
        }

        ShownText {
            parts,
            mixed_scripts: scripts.mixed(),
            script: dominant.filter(|&s| s != Script::Latin).map(group_name),
            has_rtl: scripts.counts.iter().any(|&(s, _)| is_rtl(s)),
            not_nfc: !unicode_normalization::is_nfc(text),
        }
    }

    /// Whether the string is empty (the page says so rather than showing nothing).
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The text as one line of plain text, for channels that cannot style a marker (push
    /// notifications, Slack, ntfy): each marker is written in brackets (`[U+202E RIGHT-TO-LEFT
    /// OVERRIDE]`, `а[U+0430 Cyrillic]`, `[\n]`), so the line shows what the page shows, in
    /// words. Cut after `max_chars` characters, never inside a marker, ending in `…`; empty text
    /// reads `(empty)`.
    pub fn plain_line(&self, max_chars: usize) -> String {
        if self.is_empty() {
            return "(empty)".to_owned();
        }
        let mut line = String::new();
        let mut chars = 0;
        for part in &self.parts {
            let written: Cow<'_, str> = match part {
                Part::Plain(s) => s.as_str().into(),
                Part::Hidden { code, name } if name.is_empty() => format!("[{code}]").into(),
                Part::Hidden { code, name } => format!("[{code} {name}]").into(),
                Part::Flagged { letter, code, note } => format!("{letter}[{code} {note}]").into(),
                Part::Newline => "[\\n]".into(),
                Part::Tab => "[\\t]".into(),
                Part::EdgeSpace => "[space]".into(),
            };
            let count = written.chars().count();
            if chars + count > max_chars {
                if let Part::Plain(s) = part {
                    line.extend(s.chars().take(max_chars - chars));
                }
                line.push('…');
                return line;
            }
            line.push_str(&written);
            chars += count;
        }
        line
    }

    /// Whether any character is shown as a marker or flagged rather than as plain text.
    pub fn has_markers(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Plain(_)))
    }
}

fn hidden(c: char, name: Cow<'static, str>) -> Part {
    Part::Hidden {
        code: code_point(c),
        name,
    }
}

fn flagged(c: char, note: Cow<'static, str>) -> Part {
    Part::Flagged {
        letter: c.to_string(),
        code: code_point(c),
        note,
    }
}

/// What a visible character of the string's own script (or a symbol) could be mistaken for, if
/// anything: the kinds that fake ASCII. `dominant` is the string's dominant script group:
/// fullwidth punctuation and digits are the norm in Chinese, Japanese and Korean text, and are
/// not flagged there. Letters of other scripts are not looked up here: a letter outside the
/// dominant script is flagged with its script, and a whole string in one is labelled with it.
fn look_alike_note(c: char, dominant: Option<Script>) -> Option<Cow<'static, str>> {
    let cp = u32::from(c);
    // The ellipsis is everywhere in prose and plainly one character wide.
    if c.is_ascii() || cp == 0x2026 {
        return None;
    }
    if dominant == Some(Script::Han) && (0xFF01..=0xFF65).contains(&cp) {
        return None;
    }
    // Compatibility and singleton forms (fullwidth letters, ligatures, the Kelvin sign, math
    // alphanumerics, the micro sign) normalize to another character that they look like.
    let mut normal = std::iter::once(c).nfkc();
    if !(normal.next() == Some(c) && normal.next().is_none()) {
        let normal: String = std::iter::once(c).nfkc().collect();
        return Some(if normal.bytes().all(|b| b.is_ascii_graphic()) {
            format!("compatibility form of {normal}").into()
        } else {
            "compatibility form".into()
        });
    }
    if !matches!(c.script(), Script::Common | Script::Latin) {
        return None;
    }
    if let Some(ascii) = ascii_look_alike(c) {
        return Some(format!("looks like {ascii}").into());
    }
    // IPA and phonetic letters, small capitals, obsolete and technical letters (UTS #39's
    // identifier types other than Recommended): rarely meant in data, and full of look-alikes.
    let common = matches!(
        c.identifier_type(),
        Some(IdentifierType::Recommended | IdentifierType::Inclusion)
    );
    (c.script() == Script::Latin && !common).then(|| "uncommon Latin letter".into())
}

/// The ASCII text `c` is confusable with in Unicode's confusables table (UTS #39 skeleton), when
/// that is a letter, a digit, or punctuation that structures names and paths (`/ \ : . - @`).
/// Quotes and dashes of prose are left alone: they do not change where a value points.
fn ascii_look_alike(c: char) -> Option<String> {
    let own = c.to_string();
    let skeleton: String = unicode_security::skeleton(&own).collect();
    let fakes = skeleton != own
        && !skeleton.is_empty()
        && skeleton
            .chars()
            .all(|s| s.is_ascii_alphanumeric() || "/\\:.-@".contains(s));
    fakes.then_some(skeleton)
}

fn code_point(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// Whether a combining mark after a character of script `base` could fake a precomposed
/// letter. Scripts whose vowel signs are combining marks of their own (Devanagari, Thai, ...)
/// are not affected: their marks have their script, not `Inherited`. Arabic harakat are
/// `Inherited` but belong on Arabic letters and are left alone there.
fn fakes_precomposed(base: Option<Script>) -> bool {
    match base {
        None => true,
        Some(script) => matches!(
            script,
            Script::Latin | Script::Greek | Script::Cyrillic | Script::Common | Script::Unknown
        ),
    }
}

/// Scripts that are written together in one language count as one, so Japanese text (Han,
/// Hiragana and Katakana) or Korean text (Hangul and Han) is not flagged as mixed.
fn group(script: Script) -> Script {
    match script {
        Script::Hiragana | Script::Katakana | Script::Hangul | Script::Bopomofo => Script::Han,
        other => other,
    }
}

fn group_name(script: Script) -> &'static str {
    match script {
        Script::Han => "Han/Kana/Hangul",
        other => other.full_name(),
    }
}

fn is_rtl(script: Script) -> bool {
    matches!(
        script,
        Script::Arabic
            | Script::Hebrew
            | Script::Syriac
            | Script::Thaana
            | Script::Nko
            | Script::Samaritan
            | Script::Mandaic
            | Script::Adlam
            | Script::Hanifi_Rohingya
            | Script::Yezidi
            | Script::Mende_Kikakui
            | Script::Imperial_Aramaic
            | Script::Phoenician
            | Script::Old_South_Arabian
            | Script::Old_North_Arabian
            | Script::Avestan
            | Script::Nabataean
            | Script::Palmyrene
            | Script::Hatran
            | Script::Manichaean
            | Script::Kharoshthi
    )
}

/// How many letters of each script group a string has (characters that end up as markers,
/// and Common/Inherited ones such as digits and punctuation, do not count).
struct ScriptCount {
    /// In order of first appearance.
    counts: Vec<(Script, usize)>,
}

impl ScriptCount {
    fn of(chars: &[char]) -> ScriptCount {
        let mut counts: Vec<(Script, usize)> = Vec::new();
        for &c in chars {
            if hidden_name(c).is_some() {
                continue;
            }
            let script = c.script();
            if matches!(script, Script::Common | Script::Inherited | Script::Unknown) {
                continue;
            }
            let script = group(script);
            match counts.iter_mut().find(|(s, _)| *s == script) {
                Some((_, n)) => *n += 1,
                None => counts.push((script, 1)),
            }
        }
        ScriptCount { counts }
    }

    /// The most used group; on a tie Latin, else the first seen. Letters of every other group
    /// are marked.
    fn dominant(&self) -> Option<Script> {
        let most = self.counts.iter().map(|&(_, n)| n).max()?;
        let tied = || self.counts.iter().filter(move |&&(_, n)| n == most);
        tied()
            .find(|&&(s, _)| s == Script::Latin)
            .or_else(|| tied().next())
            .map(|&(s, _)| s)
    }

    fn mixed(&self) -> Option<String> {
        if self.counts.len() < 2 {
            return None;
        }
        let mut sorted = self.counts.clone();
        // Stable: equal counts stay in order of first appearance.
        sorted.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        Some(
            sorted
                .iter()
                .map(|&(s, _)| group_name(s))
                .collect::<Vec<_>>()
                .join(" + "),
        )
    }
}

/// The name shown for a character that must never be emitted raw, or `None` for one that may.
/// Newline, tab and the ASCII space are handled by the caller; `Unknown`-script characters
/// (unassigned and private use) and combining marks are caught after this.
fn hidden_name(c: char) -> Option<Cow<'static, str>> {
    let cp = u32::from(c);
    let name: &'static str = match cp {
        0x0D => "CARRIAGE RETURN",
        0x0B => "LINE TABULATION",
        0x0C => "FORM FEED",
        0x1B => "ESCAPE",
        0x00..=0x1F => "CONTROL",
        0x7F => "DELETE",
        0x85 => "NEXT LINE",
        0x80..=0x9F => "CONTROL",
        0xA0 => "NO-BREAK SPACE",
        0xAD => "SOFT HYPHEN",
        0x034F => "COMBINING GRAPHEME JOINER",
        0x0600..=0x0605 | 0x06DD | 0x070F | 0x0890 | 0x0891 | 0x08E2 => "FORMAT",
        0x061C => "ARABIC LETTER MARK",
        0x115F => "HANGUL CHOSEONG FILLER",
        0x1160 => "HANGUL JUNGSEONG FILLER",
        0x1680 => "OGHAM SPACE MARK",
        0x17B4 | 0x17B5 => "KHMER INHERENT VOWEL",
        0x180B..=0x180D | 0x180F => "MONGOLIAN FREE VARIATION SELECTOR",
        0x180E => "MONGOLIAN VOWEL SEPARATOR",
        0x2000 => "EN QUAD",
        0x2001 => "EM QUAD",
        0x2002 => "EN SPACE",
        0x2003 => "EM SPACE",
        0x2004 => "THREE-PER-EM SPACE",
        0x2005 => "FOUR-PER-EM SPACE",
        0x2006 => "SIX-PER-EM SPACE",
        0x2007 => "FIGURE SPACE",
        0x2008 => "PUNCTUATION SPACE",
        0x2009 => "THIN SPACE",
        0x200A => "HAIR SPACE",
        0x200B => "ZERO WIDTH SPACE",
        0x200C => "ZERO WIDTH NON-JOINER",
        0x200D => "ZERO WIDTH JOINER",
        0x200E => "LEFT-TO-RIGHT MARK",
        0x200F => "RIGHT-TO-LEFT MARK",
        0x2028 => "LINE SEPARATOR",
        0x2029 => "PARAGRAPH SEPARATOR",
        0x202A => "LEFT-TO-RIGHT EMBEDDING",
        0x202B => "RIGHT-TO-LEFT EMBEDDING",
        0x202C => "POP DIRECTIONAL FORMATTING",
        0x202D => "LEFT-TO-RIGHT OVERRIDE",
        0x202E => "RIGHT-TO-LEFT OVERRIDE",
        0x202F => "NARROW NO-BREAK SPACE",
        0x205F => "MEDIUM MATHEMATICAL SPACE",
        0x2060 => "WORD JOINER",
        0x2061 => "FUNCTION APPLICATION",
        0x2062 => "INVISIBLE TIMES",
        0x2063 => "INVISIBLE SEPARATOR",
        0x2064 => "INVISIBLE PLUS",
        0x2066 => "LEFT-TO-RIGHT ISOLATE",
        0x2067 => "RIGHT-TO-LEFT ISOLATE",
        0x2068 => "FIRST STRONG ISOLATE",
        0x2069 => "POP DIRECTIONAL ISOLATE",
        0x2800 => "BRAILLE PATTERN BLANK",
        0x3000 => "IDEOGRAPHIC SPACE",
        0x3164 => "HANGUL FILLER",
        0xFE00..=0xFE0F => return Some(format!("VARIATION SELECTOR-{}", cp - 0xFE00 + 1).into()),
        0xFEFF => "ZERO WIDTH NO-BREAK SPACE",
        0xFFA0 => "HALFWIDTH HANGUL FILLER",
        0xFFF0..=0xFFF8 => "UNASSIGNED",
        0xFFF9..=0xFFFB => "INTERLINEAR ANNOTATION",
        0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A => "FORMAT",
        0xE0001 => "LANGUAGE TAG",
        // Tag characters spell ASCII invisibly ("ASCII smuggling"): show which letter.
        0xE0020 => "TAG SPACE",
        0xE0021..=0xE007E => {
            let ascii = char::from_u32(cp - 0xE0000).unwrap_or('?');
            return Some(format!("TAG {ascii}").into());
        }
        0xE007F => "CANCEL TAG",
        0xE0000..=0xE00FF => "TAG",
        0xE0100..=0xE01EF => {
            return Some(format!("VARIATION SELECTOR-{}", cp - 0xE0100 + 17).into());
        }
        // Whatever else Unicode says renders as nothing (UTS #39 identifier type).
        _ if c.identifier_type() == Some(IdentifierType::Default_Ignorable) => "DEFAULT IGNORABLE",
        _ => return None,
    };
    Some(name.into())
}

/// The params as rows for the page: each value on its own line, objects and arrays opened and
/// closed around their members, nested in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamsView {
    pub rows: Vec<Row>,
}

/// One line of the params tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    /// A string, number, boolean, null, or empty object or array.
    Value {
        label: Label,
        value: Scalar,
    },
    /// The start of a non-empty object or array; its members follow, then a [`Row::Close`].
    Open {
        label: Label,
        kind: Container,
        len: usize,
    },
    Close {
        kind: Container,
    },
}

/// What a value is called within its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Label {
    /// The params themselves.
    Root,
    /// A member of an object: its key, shown like any string.
    Key(ShownText),
    /// An element of an array.
    Index(usize),
}

/// A value with no members to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scalar {
    String(ShownText),
    /// In RFC 8785 form, the form that was hashed.
    Number(String),
    Bool(bool),
    Null,
    EmptyObject,
    EmptyArray,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Object,
    Array,
}

impl Container {
    pub fn open(&self) -> &'static str {
        match self {
            Container::Object => "{",
            Container::Array => "[",
        }
    }

    pub fn close(&self) -> &'static str {
        match self {
            Container::Object => "}",
            Container::Array => "]",
        }
    }

    /// "1 key", "3 items": how many members follow.
    pub fn count(&self, len: &usize) -> String {
        let (one, many) = match self {
            Container::Object => ("key", "keys"),
            Container::Array => ("item", "items"),
        };
        format!("{len} {}", if *len == 1 { one } else { many })
    }
}

impl ParamsView {
    /// Parses canonical params text (as stored in an approval record), to show its objects'
    /// members in the agent's `order`.
    pub fn parse(canonical: &str, order: &ParamsOrder) -> Result<ParamsView, serde_json::Error> {
        serde_json::from_str(canonical).map(|value| ParamsView::in_order(&value, order))
    }

    /// `value` with its objects' members sorted.
    pub fn new(value: &Value) -> ParamsView {
        ParamsView::in_order(value, &ParamsOrder::default())
    }

    fn in_order(value: &Value, order: &ParamsOrder) -> ParamsView {
        let mut rows = Vec::new();
        push_rows(&mut rows, &mut order.objects(), Label::Root, value);
        ParamsView { rows }
    }
}

fn push_rows(rows: &mut Vec<Row>, order: &mut Objects<'_>, label: Label, value: &Value) {
    let scalar = match value {
        Value::Null => Scalar::Null,
        Value::Bool(b) => Scalar::Bool(*b),
        Value::Number(n) => Scalar::Number(number_text(n)),
        Value::String(s) => Scalar::String(ShownText::new(s)),
        Value::Object(map) if map.is_empty() => Scalar::EmptyObject,
        Value::Array(items) if items.is_empty() => Scalar::EmptyArray,
        Value::Object(map) => {
            let kind = Container::Object;
            rows.push(Row::Open {
                label,
                kind,
                len: map.len(),
            });
            // Canonical order is depth first with sorted keys: the order of each object is
            // taken before its members' own.
            let members: Vec<(&String, &Value)> = map.iter().collect();
            for i in order.next_object(members.len()) {
                let (key, member) = members[i];
                push_rows(rows, order, Label::Key(ShownText::new(key)), member);
            }
            rows.push(Row::Close { kind });
            return;
        }
        Value::Array(items) => {
            let kind = Container::Array;
            rows.push(Row::Open {
                label,
                kind,
                len: items.len(),
            });
            for (index, item) in items.iter().enumerate() {
                push_rows(rows, order, Label::Index(index), item);
            }
            rows.push(Row::Close { kind });
            return;
        }
    };
    rows.push(Row::Value {
        label,
        value: scalar,
    });
}

/// A number as RFC 8785 writes it (`1e+21`, `0.1`), which is what was hashed; serde_json's own
/// form is the fallback for a value the canonical writer refuses (not possible for stored
/// params, which were canonicalized on the way in).
fn number_text(n: &serde_json::Number) -> String {
    n.as_f64()
        .and_then(|x| handsign_protocol::canonical::format_number(x).ok())
        .unwrap_or_else(|| n.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    fn plain(text: &str) -> Part {
        Part::Plain(text.to_owned())
    }

    fn codes(shown: &ShownText) -> Vec<String> {
        shown
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Hidden { code, .. } | Part::Flagged { code, .. } => Some(code.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every character that must never be emitted raw, one of each kind.
    pub(crate) const MARKED: &[char] = &[
        '\u{0}',
        '\u{7}',
        '\r',
        '\u{1B}',
        '\u{7F}',
        '\u{85}',
        '\u{9B}',
        '\u{A0}',
        '\u{AD}',
        '\u{34F}',
        '\u{61C}',
        '\u{115F}',
        '\u{1160}',
        '\u{180E}',
        '\u{2000}',
        '\u{2007}',
        '\u{200A}',
        '\u{200B}',
        '\u{200C}',
        '\u{200D}',
        '\u{200E}',
        '\u{200F}',
        '\u{2028}',
        '\u{2029}',
        '\u{202A}',
        '\u{202B}',
        '\u{202C}',
        '\u{202D}',
        '\u{202E}',
        '\u{202F}',
        '\u{205F}',
        '\u{2060}',
        '\u{2061}',
        '\u{2062}',
        '\u{2063}',
        '\u{2064}',
        '\u{2066}',
        '\u{2067}',
        '\u{2068}',
        '\u{2069}',
        '\u{3000}',
        '\u{3164}',
        '\u{FE00}',
        '\u{FE0F}',
        '\u{FEFF}',
        '\u{FFA0}',
        '\u{E0001}',
        '\u{E0041}',
        '\u{E007F}',
        '\u{E0100}',
        '\u{E01EF}',
        '\u{E000}',
        '\u{10FFFD}',
        '\u{0378}',
    ];

    #[test]
    fn plain_text_stays_one_run() {
        let shown = ShownText::new("Paris CDG, 2 adults — 14:05 ✈");
        assert_eq!(shown.parts, vec![plain("Paris CDG, 2 adults — 14:05 ✈")]);
        assert!(!shown.has_markers());
        assert_eq!(shown.mixed_scripts, None);
        assert_eq!(shown.script, None);
    }

    #[test]
    fn every_misleading_character_becomes_a_marker() {
        for &c in MARKED {
            let shown = ShownText::new(&format!("a{c}b"));
            let code = format!("U+{:04X}", u32::from(c));
            assert_eq!(shown.parts.len(), 3, "{code}: {:?}", shown.parts);
            assert!(
                matches!(&shown.parts[1], Part::Hidden { code: c, .. } if *c == code),
                "{code}: {:?}",
                shown.parts
            );
            for part in &shown.parts {
                if let Part::Plain(s) = part {
                    assert!(!s.contains(c), "{code} left raw");
                }
            }
        }
    }

    #[test]
    fn markers_carry_names() {
        let shown = ShownText::new("\u{202E}\u{200B}\u{E0061}\u{FE0F}");
        let names: Vec<_> = shown
            .parts
            .iter()
            .map(|p| match p {
                Part::Hidden { name, .. } => name.to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            names,
            [
                "RIGHT-TO-LEFT OVERRIDE",
                "ZERO WIDTH SPACE",
                "TAG a",
                "VARIATION SELECTOR-16"
            ]
        );
    }

    #[test]
    fn newlines_tabs_and_edge_spaces_are_visible() {
        let shown = ShownText::new("  two\tcols\nnext line ");
        assert_eq!(
            shown.parts,
            vec![
                Part::EdgeSpace,
                Part::EdgeSpace,
                plain("two"),
                Part::Tab,
                plain("cols"),
                Part::Newline,
                plain("next line"),
                Part::EdgeSpace,
            ]
        );
        assert_eq!(
            ShownText::new("   ").parts,
            vec![Part::EdgeSpace, Part::EdgeSpace, Part::EdgeSpace]
        );
        assert!(ShownText::new("").is_empty());
    }

    #[test]
    fn a_cyrillic_letter_in_a_latin_word_is_marked() {
        let shown = ShownText::new("p\u{0430}ypal.com");
        assert_eq!(
            shown.parts,
            vec![
                plain("p"),
                Part::Flagged {
                    letter: "\u{0430}".into(),
                    code: "U+0430".into(),
                    note: "Cyrillic".into()
                },
                plain("ypal.com"),
            ]
        );
        assert_eq!(shown.mixed_scripts.as_deref(), Some("Latin + Cyrillic"));
        assert_eq!(shown.script, None);
    }

    #[test]
    fn the_minority_script_is_marked_whichever_it_is() {
        // A Latin "o" among Greek letters.
        let shown = ShownText::new("λoγος");
        assert_eq!(codes(&shown), ["U+006F"]);
        assert_eq!(shown.mixed_scripts.as_deref(), Some("Greek + Latin"));
        assert_eq!(shown.script, Some("Greek"));
        // A tie marks everything but Latin.
        assert_eq!(codes(&ShownText::new("aа")), ["U+0430"]);
    }

    #[test]
    fn a_whole_script_look_alike_is_labelled() {
        // "рау" in Cyrillic looks like "pay".
        let shown = ShownText::new("\u{0440}\u{0430}\u{0443}");
        assert!(codes(&shown).is_empty());
        assert_eq!(shown.script, Some("Cyrillic"));
        assert_eq!(shown.mixed_scripts, None);
    }

    #[test]
    fn japanese_is_not_mixed_script() {
        let shown = ShownText::new("東京タワーへ行く");
        assert_eq!(shown.mixed_scripts, None);
        assert!(!shown.has_markers());
    }

    #[test]
    fn digits_and_punctuation_do_not_count_as_a_script() {
        let shown = ShownText::new("Москва, 2 взрослых");
        assert_eq!(shown.mixed_scripts, None);
        assert!(!shown.has_markers());
    }

    #[test]
    fn decomposed_accents_on_latin_are_marked_but_arabic_vowels_are_not() {
        let composed = ShownText::new("caf\u{E9}");
        let decomposed = ShownText::new("cafe\u{301}");
        assert_eq!(composed.parts, vec![plain("caf\u{E9}")]);
        assert_eq!(codes(&decomposed), ["U+0301"]);
        assert!(decomposed.not_nfc && !composed.not_nfc);
        assert_ne!(composed, decomposed);
        let arabic = ShownText::new("\u{0643}\u{064E}\u{062A}\u{064E}\u{0628}\u{064E}");
        assert!(!arabic.has_markers());
        assert!(arabic.has_rtl);
    }

    #[test]
    fn look_alikes_of_ascii_are_flagged() {
        for (text, code, note) in [
            ("\u{FF50}ay", "U+FF50", "compatibility form of p"),
            ("\u{212A}elvin", "U+212A", "compatibility form of K"),
            ("\u{1D68A}", "U+1D68A", "compatibility form of a"),
            ("\u{FB01}le", "U+FB01", "compatibility form of fi"),
            ("\u{0251}pple", "U+0251", "looks like a"),
            ("\u{1D00}BC", "U+1D00", "uncommon Latin letter"),
            ("\u{0138}ilo", "U+0138", "uncommon Latin letter"),
            ("a.com\u{2215}b", "U+2215", "looks like /"),
            ("a.com\u{2044}b", "U+2044", "looks like /"),
            ("rm \u{2010}rf", "U+2010", "looks like -"),
            ("\u{01C0}ogin", "U+01C0", "looks like l"),
        ] {
            let shown = ShownText::new(text);
            let flagged: Vec<_> = shown
                .parts
                .iter()
                .filter_map(|p| match p {
                    Part::Flagged { code, note, .. } => Some((code.as_str(), note.as_ref())),
                    _ => None,
                })
                .collect();
            assert_eq!(flagged, [(code, note)], "{text:?}");
        }
    }

    #[test]
    fn fullwidth_punctuation_is_at_home_in_cjk_text() {
        assert!(!ShownText::new("東京、大阪（１２）！").has_markers());
        assert_eq!(codes(&ShownText::new("paypal\u{FF0E}com")), ["U+FF0E"]);
        assert!(!ShownText::new("Booking your trip…").has_markers());
    }

    #[test]
    fn look_alike_strings_never_share_a_rendering() {
        let pairs = [
            ("pay", "p\u{0430}y"),
            ("a b", "a\u{A0}b"),
            ("ab", "a\u{200B}b"),
            ("ab ", "ab"),
            ("a\nb", "a\u{2028}b"),
            ("a\tb", "a    b"),
            ("abc", "\u{202E}cba"),
            ("K", "\u{212A}"),
            ("\u{AC00}", "\u{1100}\u{1161}"),
        ];
        for (a, b) in pairs {
            assert_ne!(ShownText::new(a), ShownText::new(b), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn the_tree_holds_every_key_and_value_in_order() {
        let view = ParamsView::new(&json!({
            "a": 1,
            "b": "1",
            "c": {"d": [true, null, {}, []]},
            "e": {}
        }));
        let key = |k: &str| Label::Key(ShownText::new(k));
        assert_eq!(
            view.rows,
            vec![
                Row::Open {
                    label: Label::Root,
                    kind: Container::Object,
                    len: 4
                },
                Row::Value {
                    label: key("a"),
                    value: Scalar::Number("1".into())
                },
                Row::Value {
                    label: key("b"),
                    value: Scalar::String(ShownText::new("1"))
                },
                Row::Open {
                    label: key("c"),
                    kind: Container::Object,
                    len: 1
                },
                Row::Open {
                    label: key("d"),
                    kind: Container::Array,
                    len: 4
                },
                Row::Value {
                    label: Label::Index(0),
                    value: Scalar::Bool(true)
                },
                Row::Value {
                    label: Label::Index(1),
                    value: Scalar::Null
                },
                Row::Value {
                    label: Label::Index(2),
                    value: Scalar::EmptyObject
                },
                Row::Value {
                    label: Label::Index(3),
                    value: Scalar::EmptyArray
                },
                Row::Close {
                    kind: Container::Array
                },
                Row::Close {
                    kind: Container::Object
                },
                Row::Value {
                    label: key("e"),
                    value: Scalar::EmptyObject
                },
                Row::Close {
                    kind: Container::Object
                },
            ]
        );
    }

    #[test]
    fn numbers_are_shown_in_canonical_form() {
        let view = ParamsView::parse(
            r#"[1e+21,0.1,-0,9007199254740992,1.5e-7]"#,
            &ParamsOrder::default(),
        )
        .unwrap();
        let numbers: Vec<_> = view
            .rows
            .iter()
            .filter_map(|r| match r {
                Row::Value {
                    value: Scalar::Number(n),
                    ..
                } => Some(n.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(numbers, ["1e+21", "0.1", "0", "9007199254740992", "1.5e-7"]);
    }

    #[test]
    fn a_scalar_root_is_one_row() {
        let view = ParamsView::new(&json!("just this"));
        assert_eq!(
            view.rows,
            vec![Row::Value {
                label: Label::Root,
                value: Scalar::String(ShownText::new("just this"))
            }]
        );
    }
}
