//! Records as they flow between tasks, and how keys are extracted from them.
//!
//! Invariant: a record's payload is one JSON document on one line; its key is computed
//! once, on the edge into a keyed operator, and travels with it.

use std::collections::BTreeSet;
use std::sync::Mutex;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::job::JsonPointer;
use crate::small_bytes::SmallBytes;
use crate::state::KeyGroup;

pub mod event_time;
pub(crate) mod scan;

/// A record on an edge into a sink or an operator without `key_by`, or out of an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// One JSON document, without a line break.
    pub payload: Vec<u8>,
    /// Event time in milliseconds since the Unix epoch, when known.
    pub timestamp: Option<i64>,
}

/// Where a record was read, for messages about it: `at` names the source and file (or
/// generator) and the unit, `number` the line (or generated record). Records an operator
/// emitted have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin {
    /// E.g. "source `logs`, data/access.jsonl line" (made by [`Origin::label`]).
    pub at: &'static str,
    /// The line number (1-based) or the generator's index.
    pub number: u64,
}

impl Origin {
    /// `at` as a label every record can carry for free: a reference count shared by
    /// the records of a source would be written by two threads for each of them. Kept
    /// for the life of the process, once per distinct text (one per source and file).
    pub fn label(at: String) -> &'static str {
        static LABELS: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
        let mut labels = LABELS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&label) = labels.get(at.as_str()) {
            return label;
        }
        let label: &'static str = Box::leak(at.into_boxed_str());
        labels.insert(label);
        label
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.at, self.number)
    }
}

/// A record on its way into an operator, with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedRecord {
    /// The key's bytes (empty for an operator without `key_by`), inline when short.
    pub key: SmallBytes,
    /// The key's group.
    pub key_group: KeyGroup,
    /// One JSON document, without a line break.
    pub payload: Vec<u8>,
    /// Event time in milliseconds since the Unix epoch, when known.
    pub timestamp: Option<i64>,
    /// Where a source read it; `None` for an operator's output.
    pub origin: Option<Origin>,
}

/// Why a record has no key.
#[derive(Debug, thiserror::Error)]
#[error("the record has no value at `key_by` pointer `{}`", .0.as_str())]
pub struct MissingKey(pub JsonPointer);

/// Why a key cannot be taken from a payload.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The payload is not one JSON document.
    #[error("not a JSON document: {0}")]
    NotJson(#[from] serde_json::Error),
    /// The document has nothing at the pointer.
    #[error(transparent)]
    Missing(#[from] MissingKey),
}

/// Computes keys and key groups for an edge into a keyed operator.
#[derive(Debug, Clone)]
pub struct KeySelector {
    pointer: JsonPointer,
    pub(crate) tokens: Vec<String>,
    max_parallelism: u16,
}

impl KeySelector {
    /// Keys records by the value at `pointer`.
    pub fn new(pointer: JsonPointer, max_parallelism: u16) -> KeySelector {
        KeySelector {
            tokens: pointer.tokens(),
            pointer,
            max_parallelism,
        }
    }

    /// The key of the record `payload` and its group: a string's UTF-8 bytes, or any
    /// other value's compact JSON. The whole payload is checked to be one JSON document,
    /// in one pass that builds nothing but the key.
    pub fn key(&self, payload: &[u8]) -> Result<(SmallBytes, KeyGroup), KeyError> {
        let key = match scan::string_key(payload, &self.tokens) {
            Some(key) => SmallBytes::from(key),
            None => SmallBytes::from(self.key_by_serde(payload)?),
        };
        let group = KeyGroup::of(&key, self.max_parallelism);
        Ok((key, group))
    }

    /// The key as serde finds it: any document, any pointer, and the errors' wording.
    pub(crate) fn key_by_serde(&self, payload: &[u8]) -> Result<Vec<u8>, KeyError> {
        match value_at(payload, &self.tokens)? {
            Some(Value::String(s)) => Ok(s.into_bytes()),
            Some(other) => Ok(other.to_string().into_bytes()),
            None => Err(MissingKey(self.pointer.clone()).into()),
        }
    }
}

/// The value at `pointer` in the JSON document `payload`, if there is one; checks that
/// the whole payload is one document.
pub(crate) fn value_at(
    payload: &[u8],
    tokens: &[String],
) -> Result<Option<Value>, serde_json::Error> {
    let mut document = serde_json::Deserializer::from_slice(payload);
    let found = Find { tokens }.deserialize(&mut document)?;
    document.end()?;
    Ok(found)
}

/// Finds the value at a pointer's remaining `tokens` while reading a document, skipping
/// (but checking) everything else.
struct Find<'a> {
    tokens: &'a [String],
}

impl<'de> DeserializeSeed<'de> for Find<'_> {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, value: D) -> Result<Option<Value>, D::Error> {
        match self.tokens.split_first() {
            None => Value::deserialize(value).map(Some),
            Some((token, rest)) => value.deserialize_any(Step { token, rest }),
        }
    }
}

/// One pointer token applied to the value being read.
struct Step<'a> {
    token: &'a str,
    rest: &'a [String],
}

impl<'de> Visitor<'de> for Step<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Option<Value>, M::Error> {
        let mut found = None;
        while let Some(matches) = map.next_key_seed(Matches(self.token))? {
            if matches {
                // As in `serde_json::Value`, the last of duplicate names wins.
                found = map.next_value_seed(Find { tokens: self.rest })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Option<Value>, S::Error> {
        // RFC 6901 array indices: digits, no leading zero (as `Value::pointer` reads them).
        let index = (self.token == "0" || !self.token.starts_with(['0', '+']))
            .then(|| self.token.parse::<usize>().ok())
            .flatten();
        let mut found = None;
        for i in 0.. {
            if Some(i) == index {
                match seq.next_element_seed(Find { tokens: self.rest })? {
                    Some(value) => found = value,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
        }
        Ok(found)
    }

    // A scalar has nothing inside: the pointer names nothing.
    fn visit_bool<E>(self, _: bool) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Option<Value>, E> {
        Ok(None)
    }
}

/// Whether an object member's name is the token, without building the name.
struct Matches<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for Matches<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, name: D) -> Result<bool, D::Error> {
        name.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Matches<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, name: &str) -> Result<bool, E> {
        Ok(name == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bytes(value: Value) -> Vec<u8> {
        value.to_string().into_bytes()
    }

    #[test]
    fn finds_what_value_pointer_finds_in_every_document() {
        let documents = [
            r#"{"a": {"b": [10, {"c": "x"}], "a~b": 1, "s/t": 2}, "n": null, "e": "q\"uote"}"#,
            r#"{"a": 1, "a": 2}"#,
            r#"[{"k": 1}, {"k": "two"}, 3]"#,
            r#""just a string""#,
            r#"{"a": {"00": 1, "0": 2, "+1": 3}, "b": [true, false]}"#,
        ];
        let pointers = [
            "", "/a", "/a/b", "/a/b/0", "/a/b/1/c", "/a/b/2", "/a/a~0b", "/a/s~1t", "/n", "/e",
            "/0/k", "/1/k", "/2", "/3", "/a/00", "/a/0", "/a/+1", "/b/1", "/b/01", "/b/-", "/x",
        ];
        for document in documents {
            let value: Value = serde_json::from_str(document).unwrap();
            for pointer in pointers {
                let expected = value.pointer(pointer).map(|v| match v {
                    Value::String(s) => s.clone().into_bytes(),
                    other => other.to_string().into_bytes(),
                });
                let found = selector(pointer)
                    .key(document.as_bytes())
                    .ok()
                    .map(|k| k.0.to_vec());
                assert_eq!(found, expected, "{pointer} in {document}");
            }
        }
    }

    /// The fast path against serde over many mutations of documents near the edges of
    /// what it answers: wherever it answers, serde finds the same key.
    #[test]
    fn the_fast_path_answers_only_what_serde_would() {
        let seeds = [
            r#"{"key":"key-1","seq":12}"#,
            r#" {"a": {"id": "x\"y", "n": [1, -20, 0.5, 1e3, true, null, "\u00e9"]}, "id": "z"} "#,
            r#"{"key": "a", "key": "b", "k\u0065y": {"key": "c"}}"#,
            r#"[{"key": "x"}, "é", {}, []]"#,
        ];
        let alphabet = br#"{}[]:,"\ -0123456789.eEkeyaidnultrfs/u"#;
        let pointers = ["", "/key", "/a/id", "/id", "/0/key"];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut random = move |below: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % below as u64) as usize
        };
        let mut answered = 0;
        for _ in 0..40_000 {
            let mut document = seeds[random(seeds.len())].as_bytes().to_vec();
            for _ in 0..1 + random(3) {
                let at = random(document.len() + 1);
                match random(3) {
                    0 if at < document.len() => {
                        document.remove(at);
                    }
                    1 if at < document.len() => document[at] = alphabet[random(alphabet.len())],
                    _ => document.insert(at, alphabet[random(alphabet.len())]),
                }
            }
            for pointer in pointers {
                let selector = selector(pointer);
                if let Some(fast) = scan::string_key(&document, &selector.tokens) {
                    answered += 1;
                    let slow = selector.key_by_serde(&document);
                    assert_eq!(
                        slow.ok().as_deref(),
                        Some(fast),
                        "{pointer} in {}",
                        String::from_utf8_lossy(&document)
                    );
                }
            }
        }
        assert!(
            answered > 1000,
            "the mutations reach the fast path ({answered})"
        );
    }

    #[test]
    fn the_whole_payload_must_be_one_json_document() {
        for bad in [
            &b"{\"url\": \"/a\"} trailing"[..],
            b"{\"url\": \"/a\", }",
            b"{\"x\": [1,}",
            b"",
        ] {
            assert!(
                matches!(selector("/url").key(bad), Err(KeyError::NotJson(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn selector(pointer: &str) -> KeySelector {
        KeySelector::new(JsonPointer::parse(pointer).unwrap(), 128)
    }

    #[test]
    fn strings_key_by_their_text_and_other_values_by_their_json() {
        let (key, group) = selector("/url")
            .key(&bytes(json!({"url": "/a", "n": 1})))
            .unwrap();
        assert_eq!((&*key, group), (&b"/a"[..], KeyGroup::of(b"/a", 128)));
        assert_eq!(
            *selector("/n").key(&bytes(json!({"n": 17}))).unwrap().0,
            *b"17"
        );
        let (object, _) = selector("/o")
            .key(&bytes(json!({"o": {"b": 1, "a": 2}})))
            .unwrap();
        assert_eq!(*object, *br#"{"a":2,"b":1}"#);
    }

    #[test]
    fn a_missing_key_names_the_pointer() {
        let err = selector("/url")
            .key(&bytes(json!({"path": "/a"})))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the record has no value at `key_by` pointer `/url`"
        );
    }
}
