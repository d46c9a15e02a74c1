//! Poison records: records that fail an operator again after a restore.
//!
//! A record is identified by where a source read it (or, for an operator's output, by its
//! key and contents). When a batch fails, the record the guest named is *accused*; after
//! a trap, which names none, every record of the batch is a *suspect*. After the restart,
//! suspects and accused records are processed alone: a suspect that fails alone is
//! accused, and an accused record that fails again is poison (a failure is held against
//! a record only when it names it, so a transient trap that happens to land on a suspect
//! once does not condemn it). `on_poison = "fail"` fails the job
//! naming the record, its source and position; `skip` and `dead-letter` restart once
//! more, and from then on the record never reaches the guest. Restores roll every other
//! record back, so they keep exactly-once; a dead letter is written once per record,
//! whatever the restarts (its id is checked against the file before appending).
//!
//! The guard lives as long as `host run`: after a crash, a poison record is found again.

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::hash::{BuildHasher, Hash, Hasher};
use std::io::Write;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::Failure;
use crate::job::OnPoison;
use crate::record::KeyedRecord;
use crate::wasm::OperatorError;
use crate::wasm::excerpt;

/// Identity of a record within this process.
pub type RecordId = u64;

/// One operator's suspects and poison records, shared by its subtasks and kept across
/// the attempts of a run.
pub struct Guard {
    operator: String,
    policy: OnPoison,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Records of a batch that trapped: any of them may be the cause.
    suspects: HashSet<RecordId>,
    /// Records that failed once, named by the guest's error or processed alone.
    accused: HashSet<RecordId>,
    /// Poison records, with the error they failed with.
    poison: HashMap<RecordId, String>,
    /// Stable ids of the dead letters in the file, once read.
    written: Option<HashSet<String>>,
}

/// What to do with a record before it reaches the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    /// Process it with its batch.
    Normal,
    /// Process it alone: it was in a batch that trapped, or it failed once.
    Alone,
    /// Keep it from the guest (skip, or dead-letter): it failed again.
    Divert,
}

/// The identity of `record`: where it was read, else its key and contents.
pub fn identity(record: &KeyedRecord) -> RecordId {
    let mut hasher = foldhash::fast::FixedState::with_seed(0x5eed).build_hasher();
    match &record.origin {
        Some(origin) => origin.hash(&mut hasher),
        None => (&record.key, &record.payload).hash(&mut hasher),
    }
    hasher.finish()
}

impl Guard {
    /// The guard of operator `operator`.
    pub fn new(operator: &str, policy: OnPoison) -> Guard {
        Guard {
            operator: operator.to_string(),
            policy,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether any record needs more than normal processing (the common case is no).
    pub fn armed(&self) -> bool {
        let state = self.state();
        !state.suspects.is_empty() || !state.accused.is_empty() || !state.poison.is_empty()
    }

    /// How to treat the record `id`.
    pub fn treatment(&self, id: RecordId) -> Treatment {
        let state = self.state();
        if state.poison.contains_key(&id) {
            Treatment::Divert
        } else if state.suspects.contains(&id) || state.accused.contains(&id) {
            Treatment::Alone
        } else {
            Treatment::Normal
        }
    }

    /// A batch of records `ids` failed with `error`; `alone` is the record when the batch
    /// was that one record. Returns the failure that ends the attempt.
    pub fn failed(
        &self,
        ids: &[RecordId],
        alone: Option<&KeyedRecord>,
        error: OperatorError,
    ) -> Failure {
        let named = match &error {
            OperatorError::Failed { index, .. } => index.and_then(|i| ids.get(i)).copied(),
            _ => None,
        };
        let culprit = named.or(alone.and(ids.first().copied()));
        let mut state = self.state();
        let Some(id) = culprit else {
            // A trap in a batch: any of its records may be the cause.
            state.suspects.extend(ids);
            return error.into();
        };
        if state.accused.insert(id) {
            return error.into();
        }
        match (&self.policy, alone) {
            (OnPoison::Fail, Some(record)) => Failure::Poison {
                operator: self.operator.clone(),
                origin: record.origin.as_ref().map_or_else(
                    || "emitted by an upstream operator".into(),
                    |o| o.to_string(),
                ),
                record: excerpt(&record.payload),
                error: error.to_string(),
            },
            _ => {
                state.poison.insert(id, error.to_string());
                error.into()
            }
        }
    }

    /// Record `id` was processed alone without failing: it was not the cause.
    pub fn cleared(&self, id: RecordId) {
        let mut state = self.state();
        state.suspects.remove(&id);
        state.accused.remove(&id);
    }

    /// Keeps poison record `id` from the guest: skips it, or writes it to the dead
    /// letters (once per record, whatever the restarts).
    pub fn divert(&self, id: RecordId, record: &KeyedRecord) -> Result<(), Failure> {
        let OnPoison::DeadLetter(dir) = &self.policy else {
            return Ok(());
        };
        let mut state = self.state();
        let error = state.poison.get(&id).cloned().unwrap_or_default();
        let file = dir.join(format!("{}.jsonl", self.operator));
        let io = |what: String| {
            move |error| Failure::Io {
                task: format!("operator `{}` dead letters", self.operator),
                what,
                error,
            }
        };
        if state.written.is_none() {
            state.written =
                Some(read_ids(&file).map_err(io(format!("cannot read {}", file.display())))?);
        }
        let stable = stable_id(record);
        let written = state.written.get_or_insert_with(HashSet::new);
        if written.contains(&stable) {
            return Ok(());
        }
        let payload = serde_json::from_slice::<serde_json::Value>(&record.payload)
            .unwrap_or_else(|_| String::from_utf8_lossy(&record.payload).into());
        let entry = serde_json::json!({
            "id": stable,
            "operator": self.operator,
            "origin": record.origin.as_ref().map(ToString::to_string),
            "key": String::from_utf8_lossy(&record.key),
            "record": payload,
            "error": error,
            "time_ms": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        });
        fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .map_err(io(format!("cannot open {}", file.display())))?;
        writeln!(out, "{entry}")
            .and_then(|()| out.sync_data())
            .map_err(io(format!("cannot write {}", file.display())))?;
        written.insert(stable);
        Ok(())
    }
}

/// An id that is the same in every run: SHA-256 of where the record was read (or its
/// key and contents), in hex.
fn stable_id(record: &KeyedRecord) -> String {
    let mut hash = Sha256::new();
    match &record.origin {
        Some(origin) => hash.update(origin.to_string()),
        None => {
            hash.update(&record.key);
            hash.update([0]);
            hash.update(&record.payload);
        }
    }
    hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The ids of the dead letters already in `file`.
fn read_ids(file: &std::path::Path) -> std::io::Result<HashSet<String>> {
    let text = match fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|entry| entry["id"].as_str().map(str::to_string))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Origin;
    use crate::state::KeyGroup;

    fn record(line: u64) -> KeyedRecord {
        KeyedRecord {
            key: Default::default(),
            key_group: KeyGroup(0),
            payload: format!("{{\"n\":{line}}}").into_bytes(),
            timestamp: None,
            origin: Some(Origin {
                at: "source `in`, in.jsonl line",
                number: line,
            }),
        }
    }

    fn trap() -> OperatorError {
        OperatorError::Trap {
            operator: "op".into(),
            message: "unreachable".into(),
        }
    }

    fn named(index: usize) -> OperatorError {
        OperatorError::Failed {
            operator: "op".into(),
            message: "bad".into(),
            on_record: None,
            index: Some(index),
        }
    }

    fn is_poison(failure: &Failure) -> bool {
        matches!(failure, Failure::Poison { .. })
    }

    #[test]
    fn a_record_an_error_names_is_poison_when_it_fails_again_alone() {
        let guard = Guard::new("op", OnPoison::Fail);
        let batch: Vec<KeyedRecord> = (1..=3).map(record).collect();
        let ids: Vec<RecordId> = batch.iter().map(identity).collect();
        assert!(!is_poison(&guard.failed(&ids, None, named(1))));
        assert_eq!(guard.treatment(ids[0]), Treatment::Normal);
        assert_eq!(guard.treatment(ids[1]), Treatment::Alone);
        assert!(is_poison(&guard.failed(
            &ids[1..2],
            Some(&batch[1]),
            named(0)
        )));
    }

    #[test]
    fn a_trap_accuses_no_one_until_a_suspect_fails_alone_twice() {
        let guard = Guard::new("op", OnPoison::Fail);
        let batch: Vec<KeyedRecord> = (1..=3).map(record).collect();
        let ids: Vec<RecordId> = batch.iter().map(identity).collect();
        assert!(!is_poison(&guard.failed(&ids, None, trap())));
        assert!(
            ids.iter()
                .all(|&id| guard.treatment(id) == Treatment::Alone)
        );
        // A trap that lands on a suspect once (a transient fault, say) only accuses it.
        assert!(!is_poison(&guard.failed(
            &ids[2..],
            Some(&batch[2]),
            trap()
        )));
        guard.cleared(ids[0]);
        assert_eq!(guard.treatment(ids[0]), Treatment::Normal);
        assert!(is_poison(&guard.failed(&ids[2..], Some(&batch[2]), trap())));
    }

    #[test]
    fn an_accused_record_that_then_succeeds_alone_starts_over() {
        let guard = Guard::new("op", OnPoison::Fail);
        let batch = [record(7)];
        let ids = [identity(&batch[0])];
        assert!(!is_poison(&guard.failed(&ids, Some(&batch[0]), trap())));
        guard.cleared(ids[0]);
        assert!(!guard.armed());
        assert!(!is_poison(&guard.failed(&ids, Some(&batch[0]), trap())));
    }

    #[test]
    fn skip_diverts_a_poison_record_instead_of_failing() {
        let guard = Guard::new("op", OnPoison::Skip);
        let batch = [record(9)];
        let ids = [identity(&batch[0])];
        guard.failed(&ids, Some(&batch[0]), named(0));
        assert!(!is_poison(&guard.failed(&ids, Some(&batch[0]), named(0))));
        assert_eq!(guard.treatment(ids[0]), Treatment::Divert);
    }
}
