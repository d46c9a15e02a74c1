//! Records as they flow between tasks, and how keys are extracted from them.
//!
//! Invariant: a record's payload is one JSON document on one line; its key is computed
//! once, on the edge into a keyed operator, and travels with it.

use serde_json::Value;

use crate::job::JsonPointer;
use crate::state::KeyGroup;

/// A record on an edge into a sink or an operator without `key_by`, or out of an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// One JSON document, without a line break.
    pub payload: Vec<u8>,
    /// Event time in milliseconds since the Unix epoch, when known.
    pub timestamp: Option<i64>,
}

/// A record on its way into an operator, with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedRecord {
    /// The key's bytes (empty for an operator without `key_by`).
    pub key: Vec<u8>,
    /// The key's group.
    pub key_group: KeyGroup,
    /// One JSON document, without a line break.
    pub payload: Vec<u8>,
    /// Event time in milliseconds since the Unix epoch, when known.
    pub timestamp: Option<i64>,
}

/// Why a record has no key.
#[derive(Debug, thiserror::Error)]
#[error("the record has no value at `key_by` pointer `{}`", .0.as_str())]
pub struct MissingKey(pub JsonPointer);

/// Computes keys and key groups for an edge into a keyed operator.
#[derive(Debug, Clone)]
pub struct KeySelector {
    pointer: JsonPointer,
    max_parallelism: u16,
}

impl KeySelector {
    /// Keys records by the value at `pointer`.
    pub fn new(pointer: JsonPointer, max_parallelism: u16) -> KeySelector {
        KeySelector {
            pointer,
            max_parallelism,
        }
    }

    /// The key of a record whose payload parsed to `document`, and its group: a string's
    /// UTF-8 bytes, or any other value's compact JSON.
    pub fn key(&self, document: &Value) -> Result<(Vec<u8>, KeyGroup), MissingKey> {
        let key = match self.pointer.resolve(document) {
            Some(Value::String(s)) => s.clone().into_bytes(),
            Some(other) => other.to_string().into_bytes(),
            None => return Err(MissingKey(self.pointer.clone())),
        };
        let group = KeyGroup::of(&key, self.max_parallelism);
        Ok((key, group))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn selector(pointer: &str) -> KeySelector {
        KeySelector::new(JsonPointer::parse(pointer).unwrap(), 128)
    }

    #[test]
    fn strings_key_by_their_text_and_other_values_by_their_json() {
        let (key, group) = selector("/url").key(&json!({"url": "/a", "n": 1})).unwrap();
        assert_eq!(
            (key.as_slice(), group),
            (&b"/a"[..], KeyGroup::of(b"/a", 128))
        );
        assert_eq!(selector("/n").key(&json!({"n": 17})).unwrap().0, b"17");
        assert_eq!(
            selector("/o")
                .key(&json!({"o": {"b": 1, "a": 2}}))
                .unwrap()
                .0,
            br#"{"a":2,"b":1}"#
        );
    }

    #[test]
    fn a_missing_key_names_the_pointer() {
        let err = selector("/url").key(&json!({"path": "/a"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the record has no value at `key_by` pointer `/url`"
        );
    }
}
