//! Operator state (seed 000, "Operator State"): state of one operator subtask, not of a
//! key. Named list states, each registered with how it is shared out when the
//! operator's parallelism changes, and broadcast states (maps that are the same on every
//! subtask); their checksummed file format; and that sharing out.
//!
//! Invariants: `split` redistribution keeps every element exactly once (the old
//! subtasks' lists concatenated in subtask order, then cut into even contiguous runs; at
//! an unchanged parallelism each subtask keeps its own); `union` gives every new subtask
//! every old subtask's elements, at any parallelism; every new subtask gets a copy of old
//! subtask 0's broadcast states (they are equal on every subtask: only broadcast records,
//! which every subtask sees in the same order, change them); a new subtask's watermark
//! is the lowest of the old subtasks' (so that no timer is skipped: one that fired
//! before is no longer in state, so none fires twice). Pure: no I/O.

use crate::wire::{Reader, Truncated, put_bytes, put_u32};
use std::collections::BTreeMap;

/// How a list state's elements are shared out when the parallelism changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redistribution {
    /// All subtasks' elements are concatenated and dealt evenly.
    Split,
    /// Every subtask gets every subtask's elements.
    Union,
}

impl Redistribution {
    /// The name the WIT, `host state` and job files use.
    pub fn name(self) -> &'static str {
        match self {
            Redistribution::Split => "split",
            Redistribution::Union => "union",
        }
    }
}

/// One named list state of a subtask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListState {
    /// Its registered name.
    pub name: String,
    /// How it is shared out on rescale.
    pub mode: Redistribution,
    /// Its elements, in order.
    pub elements: Vec<Vec<u8>>,
}

/// One named broadcast state: a map from key bytes to value bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastState {
    /// Its registered name.
    pub name: String,
    /// Its entries, ordered by key.
    pub entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// The operator state of one subtask: its list and broadcast states, each in
/// registration order, and the event-time watermark its timers have seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorState {
    /// The list states.
    pub lists: Vec<ListState>,
    /// The broadcast states.
    pub broadcast: Vec<BroadcastState>,
    /// The subtask's watermark: every event-time timer at or below it has fired. None
    /// before the first watermark.
    pub watermark: Option<i64>,
}

const MAGIC: &[u8; 8] = b"weir-ops";
/// Version 2 adds broadcast states after the lists, version 3 the watermark; older
/// files are still read.
const VERSION: u8 = 3;

/// Why an operator state file cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OperatorStateError {
    /// Not an operator state file, or another version.
    #[error("not an operator state file of version {VERSION}")]
    Header,
    /// The checksum does not match.
    #[error("checksum mismatch: the file is damaged")]
    Checksum,
    /// The contents end early or do not parse.
    #[error("malformed operator state: {0}")]
    Malformed(&'static str),
}

impl OperatorState {
    /// Whether it holds no state at all (nothing to write).
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty() && self.broadcast.is_empty() && self.watermark.is_none()
    }

    /// The broadcast state `name`, if registered or restored.
    pub fn broadcast(&self, name: &str) -> Option<&BroadcastState> {
        self.broadcast.iter().find(|b| b.name == name)
    }

    /// The list state `name`, if registered or restored.
    pub fn list(&self, name: &str) -> Option<&ListState> {
        self.lists.iter().find(|l| l.name == name)
    }

    /// The file's bytes: magic, version, the lists (name, mode, elements, each
    /// length-prefixed), the broadcast states (name, entries as key then value), the
    /// watermark (a flag, then 8 bytes), and a CRC-32C of everything before it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.push(VERSION);
        put_u32(&mut out, self.lists.len());
        for list in &self.lists {
            put_bytes(&mut out, list.name.as_bytes());
            out.push(match list.mode {
                Redistribution::Split => 0,
                Redistribution::Union => 1,
            });
            put_u32(&mut out, list.elements.len());
            for element in &list.elements {
                put_bytes(&mut out, element);
            }
        }
        put_u32(&mut out, self.broadcast.len());
        for state in &self.broadcast {
            put_bytes(&mut out, state.name.as_bytes());
            put_u32(&mut out, state.entries.len());
            for (key, value) in &state.entries {
                put_bytes(&mut out, key);
                put_bytes(&mut out, value);
            }
        }
        match self.watermark {
            Some(watermark) => {
                out.push(1);
                out.extend_from_slice(&watermark.to_le_bytes());
            }
            None => out.push(0),
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a file written by [`OperatorState::encode`], checking it.
    pub fn decode(bytes: &[u8]) -> Result<OperatorState, OperatorStateError> {
        if bytes.len() < MAGIC.len() + 1 + 4 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(OperatorStateError::Header);
        }
        let version = bytes[MAGIC.len()];
        if !(1..=VERSION).contains(&version) {
            return Err(OperatorStateError::Header);
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return Err(OperatorStateError::Checksum);
        }
        let mut reader = Reader::new(&body[MAGIC.len() + 1..]);
        let count = reader.u32()?;
        let mut lists = Vec::new();
        for _ in 0..count {
            let name = String::from_utf8(reader.bytes()?.to_vec())
                .map_err(|_| OperatorStateError::Malformed("a state name is not UTF-8"))?;
            let mode = match reader.take(1)?[0] {
                0 => Redistribution::Split,
                1 => Redistribution::Union,
                _ => return Err(OperatorStateError::Malformed("unknown redistribution")),
            };
            let elements = (0..reader.u32()?)
                .map(|_| reader.bytes().map(<[u8]>::to_vec))
                .collect::<Result<_, _>>()?;
            lists.push(ListState {
                name,
                mode,
                elements,
            });
        }
        let mut broadcast = Vec::new();
        let count = if version >= 2 { reader.u32()? } else { 0 };
        for _ in 0..count {
            let name = String::from_utf8(reader.bytes()?.to_vec())
                .map_err(|_| OperatorStateError::Malformed("a state name is not UTF-8"))?;
            let mut entries = BTreeMap::new();
            for _ in 0..reader.u32()? {
                let key = reader.bytes()?.to_vec();
                entries.insert(key, reader.bytes()?.to_vec());
            }
            broadcast.push(BroadcastState { name, entries });
        }
        let watermark = match (version >= 3).then(|| reader.take(1)).transpose()? {
            None | Some([0]) => None,
            Some([1]) => Some(i64::from_le_bytes(reader.array()?)),
            Some(_) => return Err(OperatorStateError::Malformed("a bad watermark flag")),
        };
        if !reader.is_empty() {
            return Err(OperatorStateError::Malformed("bytes after the last state"));
        }
        Ok(OperatorState {
            lists,
            broadcast,
            watermark,
        })
    }
}

/// Shares the old subtasks' operator states (in subtask order) out to `parallelism` new
/// subtasks, each list as it was registered; each gets a copy of the broadcast states.
pub fn redistribute(old: &[OperatorState], parallelism: usize) -> Vec<OperatorState> {
    let parallelism = parallelism.max(1);
    let unchanged = old.len() == parallelism;
    let broadcast = old.first().map(|s| s.broadcast.clone()).unwrap_or_default();
    // None (no watermark yet) is the lowest.
    let watermark = old.iter().map(|s| s.watermark).min().flatten();
    let mut new = vec![
        OperatorState {
            lists: Vec::new(),
            broadcast,
            watermark,
        };
        parallelism
    ];
    let mut names: Vec<(&str, Redistribution)> = Vec::new();
    for list in old.iter().flat_map(|s| &s.lists) {
        if !names.iter().any(|(n, _)| *n == list.name) {
            names.push((&list.name, list.mode));
        }
    }
    for (name, mode) in names {
        let all: Vec<&Vec<u8>> = old
            .iter()
            .filter_map(|s| s.list(name))
            .flat_map(|l| &l.elements)
            .collect();
        for (subtask, state) in new.iter_mut().enumerate() {
            let elements = match mode {
                Redistribution::Union => all.iter().map(|e| e.to_vec()).collect(),
                Redistribution::Split if unchanged => old[subtask]
                    .list(name)
                    .map_or_else(Vec::new, |l| l.elements.clone()),
                Redistribution::Split => {
                    // Even contiguous runs: the first `all.len() % p` get one more.
                    let (each, extra) = (all.len() / parallelism, all.len() % parallelism);
                    let start = subtask * each + subtask.min(extra);
                    let len = each + usize::from(subtask < extra);
                    all[start..start + len].iter().map(|e| e.to_vec()).collect()
                }
            };
            state.lists.push(ListState {
                name: name.to_string(),
                mode,
                elements,
            });
        }
    }
    new
}

impl From<Truncated> for OperatorStateError {
    fn from(_: Truncated) -> OperatorStateError {
        OperatorStateError::Malformed("it ends early")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subtask(split: &[&str], union: &[&str]) -> OperatorState {
        let list = |name: &str, mode, elements: &[&str]| ListState {
            name: name.into(),
            mode,
            elements: elements.iter().map(|e| e.as_bytes().to_vec()).collect(),
        };
        OperatorState {
            lists: vec![
                list("offsets", Redistribution::Split, split),
                list("rules", Redistribution::Union, union),
            ],
            broadcast: vec![BroadcastState {
                name: "limits".into(),
                entries: [
                    (b"food".to_vec(), b"100".to_vec()),
                    (b"".to_vec(), b"".to_vec()),
                ]
                .into_iter()
                .collect(),
            }],
            watermark: Some(-3),
        }
    }

    fn elements(state: &OperatorState, name: &str) -> Vec<String> {
        state
            .list(name)
            .map(|l| {
                l.elements
                    .iter()
                    .map(|e| String::from_utf8(e.clone()).unwrap())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn round_trips_and_detects_damage() {
        let state = subtask(&["a", "bb", ""], &["r"]);
        let bytes = state.encode();
        assert_eq!(OperatorState::decode(&bytes).unwrap(), state);
        for len in 0..bytes.len() {
            assert!(
                OperatorState::decode(&bytes[..len]).is_err(),
                "cut at {len}"
            );
        }
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x20;
            assert!(OperatorState::decode(&damaged).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn version_1_files_have_no_broadcast_state() {
        let mut state = subtask(&["a"], &["r"]);
        state.broadcast.clear();
        state.watermark = None;
        let mut bytes = state.encode();
        // A version 1 file is a version 3 file without the broadcast count and the
        // watermark's flag.
        bytes.truncate(bytes.len() - 9);
        bytes[MAGIC.len()] = 1;
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(OperatorState::decode(&bytes).unwrap(), state);
    }

    #[test]
    fn a_new_subtask_has_the_lowest_watermark_of_the_old_ones() {
        let at = |watermark| OperatorState {
            watermark,
            ..OperatorState::default()
        };
        for p in [1, 3] {
            let new = redistribute(&[at(Some(9)), at(Some(4)), at(Some(7))], p);
            assert!(new.iter().all(|s| s.watermark == Some(4)));
            let new = redistribute(&[at(Some(9)), at(None)], p);
            assert!(new.iter().all(|s| s.watermark.is_none()), "none is lowest");
        }
    }

    #[test]
    fn split_keeps_every_element_once_and_union_gives_all_to_all() {
        let old = [
            subtask(&["a", "b", "c"], &["x"]),
            subtask(&["d"], &["y"]),
            subtask(&["e", "f", "g"], &[]),
        ];
        for parallelism in [1, 2, 4, 7] {
            let new = redistribute(&old, parallelism);
            assert_eq!(new.len(), parallelism);
            let split: Vec<String> = new.iter().flat_map(|s| elements(s, "offsets")).collect();
            assert_eq!(
                split,
                ["a", "b", "c", "d", "e", "f", "g"],
                "p={parallelism}"
            );
            let sizes: Vec<usize> = new.iter().map(|s| elements(s, "offsets").len()).collect();
            assert!(
                sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
                "even: {sizes:?}"
            );
            for state in &new {
                assert_eq!(elements(state, "rules"), ["x", "y"]);
                assert_eq!(state.broadcast, old[0].broadcast, "a copy everywhere");
            }
        }
        let same = redistribute(&old, 3);
        for (subtask, state) in same.iter().enumerate() {
            assert_eq!(
                state.list("offsets"),
                old[subtask].list("offsets"),
                "split unmoved"
            );
            assert_eq!(
                elements(state, "rules"),
                ["x", "y"],
                "union to all, even unchanged"
            );
        }
    }
}
