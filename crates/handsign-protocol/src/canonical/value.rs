//! Canonical form of an already parsed `serde_json::Value`.
//!
//! The error path is built while the error travels back up the tree, so the success path keeps
//! no path at all.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use super::Limits;
use super::error::{CanonicalError, CanonicalErrorKind};
use super::number::{MAX_SAFE, write_big_int, write_f64, write_safe_int};
use super::write::{utf16_cmp, write_str};

pub(crate) fn canonicalize_value(
    value: &Value,
    limits: &Limits,
) -> Result<Vec<u8>, CanonicalError> {
    let mut writer = Writer {
        out: Vec::with_capacity(512),
        limits: *limits,
    };
    writer.value(value, 0).map_err(|e| {
        if e.path().is_none() {
            e.with_path(String::new())
        } else {
            e
        }
    })?;
    Ok(writer.out)
}

struct Writer {
    out: Vec<u8>,
    limits: Limits,
}

impl Writer {
    #[inline]
    fn check_size(&self) -> Result<(), CanonicalError> {
        if self.out.len() > self.limits.max_bytes {
            return Err(CanonicalError::new(CanonicalErrorKind::TooLarge {
                max_bytes: self.limits.max_bytes,
            }));
        }
        Ok(())
    }

    fn enter(&self, depth: usize) -> Result<usize, CanonicalError> {
        if depth >= self.limits.max_depth {
            return Err(CanonicalError::new(CanonicalErrorKind::TooDeep {
                max_depth: self.limits.max_depth,
            }));
        }
        Ok(depth + 1)
    }

    /// `depth` is the number of containers around `value`. Recursion is bounded by `max_depth`.
    fn value(&mut self, value: &Value, depth: usize) -> Result<(), CanonicalError> {
        match value {
            Value::Null => self.out.extend_from_slice(b"null"),
            Value::Bool(true) => self.out.extend_from_slice(b"true"),
            Value::Bool(false) => self.out.extend_from_slice(b"false"),
            Value::Number(n) => self.number(n)?,
            Value::String(s) => write_str(&mut self.out, s),
            Value::Array(items) => {
                let inner = self.enter(depth)?;
                self.out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    self.value(item, inner).map_err(|e| e.within_index(i))?;
                }
                self.out.push(b']');
            }
            Value::Object(map) => {
                let inner = self.enter(depth)?;
                self.object(map, inner)?;
            }
        }
        self.check_size()
    }

    fn object(&mut self, map: &Map<String, Value>, inner: usize) -> Result<(), CanonicalError> {
        self.out.push(b'{');
        // serde_json's default map iterates in UTF-8 byte order, which is UTF-16 order unless
        // keys mix U+E000..=U+FFFF with supplementary characters (and `preserve_order` keeps
        // insertion order): check, and sort only when needed.
        let mut previous: Option<&str> = None;
        let sorted = map.keys().all(|key| {
            let ok =
                previous.is_none_or(|p| utf16_cmp(p.as_bytes(), key.as_bytes()) == Ordering::Less);
            previous = Some(key);
            ok
        });
        if sorted {
            for (i, (key, value)) in map.iter().enumerate() {
                self.member(i, key, value, inner)?;
            }
        } else {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| utf16_cmp(a.0.as_bytes(), b.0.as_bytes()));
            for (i, (key, value)) in members.into_iter().enumerate() {
                self.member(i, key, value, inner)?;
            }
        }
        self.out.push(b'}');
        Ok(())
    }

    #[inline]
    fn member(
        &mut self,
        i: usize,
        key: &str,
        value: &Value,
        inner: usize,
    ) -> Result<(), CanonicalError> {
        if i > 0 {
            self.out.push(b',');
        }
        write_str(&mut self.out, key);
        self.out.push(b':');
        self.value(value, inner).map_err(|e| e.within(key))
    }

    fn number(&mut self, n: &Number) -> Result<(), CanonicalError> {
        if let Some(u) = n.as_u64() {
            if u <= MAX_SAFE {
                write_safe_int(&mut self.out, false, u);
                Ok(())
            } else {
                write_big_int(&mut self.out, false, u)
            }
        } else if let Some(i) = n.as_i64() {
            let magnitude = i.unsigned_abs();
            if magnitude <= MAX_SAFE {
                write_safe_int(&mut self.out, i < 0, magnitude);
                Ok(())
            } else {
                write_big_int(&mut self.out, i < 0, magnitude)
            }
        } else if let Some(f) = n.as_f64() {
            write_f64(&mut self.out, f)
        } else {
            Err(CanonicalError::new(CanonicalErrorKind::NumberOutOfRange {
                literal: n.to_string(),
            }))
        }
    }
}
