//! The order in which the agent wrote its params' object keys, kept for display only.
//!
//! What is hashed and signed is the canonical form (RFC 8785), whose objects are sorted: that
//! stays the one stored copy of the params. A person reads `{"from", "to", "date"}` more easily
//! in the agent's order than sorted (`date`, `from`, `to`), so the page shows the agent's order;
//! since JSON objects are unordered, this changes nothing about what is approved.
//!
//! Rather than a second copy of the params, a request keeps a permutation: for each non-empty
//! object of the canonical params, in the order the canonical form writes them (depth first,
//! keys sorted), the positions of its sorted keys in the order the agent wrote them. Objects
//! already in sorted order are written as nothing, trailing ones are dropped, and params that
//! are sorted throughout keep no order at all. `{"from":1,"to":2,"date":3}` keeps `1,2,0`
//! (`from` is the sorted key 1, `to` key 2, `date` key 0): a few bytes per request.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// The agent's key order (see the module documentation), as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ParamsOrder(String);

impl ParamsOrder {
    /// The key order of params as the agent sent them (`json`, already accepted by the canonical
    /// parser, so without duplicate keys and within the depth limit).
    pub fn of_agent_json(json: &str) -> Result<ParamsOrder, serde_json::Error> {
        let written = Written::deserialize(&mut serde_json::Deserializer::from_str(json))?;
        let mut entries = Vec::new();
        written.record(&mut entries);
        while entries.last().is_some_and(String::is_empty) {
            entries.pop();
        }
        Ok(ParamsOrder(entries.join(";")))
    }

    /// An order as a store kept it; one that does not fit its params is shown sorted.
    pub fn from_stored(text: String) -> ParamsOrder {
        ParamsOrder(text)
    }

    /// Whether the params are shown sorted: there is nothing to keep.
    pub fn is_sorted(&self) -> bool {
        self.0.is_empty()
    }

    /// The stored text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The positions to show, one object after another in canonical order.
    pub fn objects(&self) -> Objects<'_> {
        Objects {
            entries: (!self.0.is_empty()).then(|| self.0.split(';')),
        }
    }
}

/// The objects of a [`ParamsOrder`], in canonical order.
pub struct Objects<'a> {
    entries: Option<std::str::Split<'a, char>>,
}

impl Objects<'_> {
    /// The order in which to show the next object's `len` sorted members: the agent's order, or
    /// sorted when none was kept or what was kept is not an order of `len` members (a record
    /// that does not fit its params is shown sorted, never with a member missing or twice).
    pub fn next_object(&mut self, len: usize) -> Vec<usize> {
        let entry = self.entries.as_mut().and_then(Iterator::next).unwrap_or("");
        let sorted = || (0..len).collect();
        if entry.is_empty() {
            return sorted();
        }
        let Ok(order) = entry
            .split(',')
            .map(str::parse::<usize>)
            .collect::<Result<Vec<_>, _>>()
        else {
            return sorted();
        };
        let mut seen = vec![false; len];
        for &i in &order {
            match seen.get_mut(i) {
                Some(s) if !*s => *s = true,
                _ => return sorted(),
            }
        }
        if order.len() == len { order } else { sorted() }
    }
}

/// The shape of the params as written: objects with their keys in the agent's order.
enum Written {
    Leaf,
    Array(Vec<Written>),
    Object(Vec<(String, Written)>),
}

impl Written {
    /// Appends this value's objects' entries, depth first in canonical (sorted) order.
    fn record(self, entries: &mut Vec<String>) {
        match self {
            Written::Leaf => {}
            Written::Array(items) => items.into_iter().for_each(|item| item.record(entries)),
            Written::Object(members) if members.is_empty() => {}
            Written::Object(members) => {
                let mut sorted: Vec<(usize, String, Written)> = members
                    .into_iter()
                    .enumerate()
                    .map(|(written, (key, value))| (written, key, value))
                    .collect();
                // Byte order, as serde_json's map (and so the page) sorts.
                sorted.sort_by(|a, b| a.1.cmp(&b.1));
                let mut position = vec![0; sorted.len()];
                for (rank, (written, _, _)) in sorted.iter().enumerate() {
                    position[*written] = rank;
                }
                let in_order = position.iter().enumerate().all(|(i, &p)| i == p);
                entries.push(if in_order {
                    String::new()
                } else {
                    position
                        .iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                });
                for (_, _, value) in sorted {
                    value.record(entries);
                }
            }
        }
    }
}

impl<'de> Deserialize<'de> for Written {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(WrittenVisitor)
    }
}

struct WrittenVisitor;

impl<'de> Visitor<'de> for WrittenVisitor {
    type Value = Written;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Written, E> {
        Ok(Written::Leaf)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Written, E> {
        Ok(Written::Leaf)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Written, E> {
        Ok(Written::Leaf)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Written, E> {
        Ok(Written::Leaf)
    }
    fn visit_str<E>(self, _: &str) -> Result<Written, E> {
        Ok(Written::Leaf)
    }
    fn visit_unit<E>(self) -> Result<Written, E> {
        Ok(Written::Leaf)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Written, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Written>()? {
            items.push(item);
        }
        Ok(Written::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Written, A::Error> {
        let mut members = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            members.push((key, map.next_value_seed(Member)?));
        }
        Ok(Written::Object(members))
    }
}

/// A member's value (a named seed, so that numbers of any size are read as leaves too).
struct Member;

impl<'de> DeserializeSeed<'de> for Member {
    type Value = Written;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Written, D::Error> {
        Written::deserialize(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(json: &str) -> ParamsOrder {
        ParamsOrder::of_agent_json(json).unwrap()
    }

    #[test]
    fn sorted_params_keep_nothing() {
        assert!(order(r#"{"a":1,"b":{"c":[{"d":1,"e":2}]}}"#).is_sorted());
        assert!(order(r#"[1,"x",null,{}]"#).is_sorted());
        assert!(order("1").is_sorted());
    }

    #[test]
    fn each_object_keeps_the_positions_of_its_sorted_keys() {
        let kept = order(r#"{"from":"SFO","to":"NYC","date":"2026-12-01","passenger":"A"}"#);
        // sorted: date, from, passenger, to
        assert_eq!(kept.as_str(), "1,3,0,2");
        let nested = order(r#"{"b":{"y":1,"x":2},"a":[{"q":1,"p":2},{"m":1,"n":2}],"c":{}}"#);
        // Objects in canonical order: the root (a, b, c), a[0], a[1], b.
        assert_eq!(nested.as_str(), "1,0,2;1,0;;1,0");
    }

    #[test]
    fn the_kept_order_is_read_back_per_object() {
        let kept = order(r#"{"b":{"y":1,"x":2},"a":[{"q":1,"p":2},{"m":1,"n":2}]}"#);
        let mut objects = kept.objects();
        assert_eq!(objects.next_object(2), [1, 0]);
        assert_eq!(objects.next_object(2), [1, 0]);
        assert_eq!(objects.next_object(2), [0, 1]);
        assert_eq!(objects.next_object(2), [1, 0]);
        // Past the end: sorted.
        assert_eq!(objects.next_object(3), [0, 1, 2]);
    }

    #[test]
    fn an_order_that_does_not_fit_is_shown_sorted() {
        for damaged in ["1,1,0", "0,1", "0,1,3", "x,0,1", "2,1,0,3"] {
            let kept = ParamsOrder(damaged.into());
            assert_eq!(kept.objects().next_object(3), [0, 1, 2], "{damaged}");
        }
    }

    #[test]
    fn big_numbers_and_nested_arrays_are_read() {
        let kept = order(r#"{"z":[[1.5,{"b":1,"a":2}]],"y":123456789012345678901234567890}"#);
        assert_eq!(kept.as_str(), "1,0;1,0");
    }
}
