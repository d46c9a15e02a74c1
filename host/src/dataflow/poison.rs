//! Poison records: records that fail an operator again after a restore.
//!
//! A record is identified by where a source read it (or, for an operator's output, by its
//! key and contents). When a batch fails, the record the guest named (or, after a trap,
//! every record of the batch) becomes a *suspect*. After the restart, a suspect is
//! processed alone; if it fails again it is poison: `on_poison = "fail"` fails the job
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
    suspects: HashSet<RecordId>,
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
    /// Process it alone: it failed once.
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
        !state.suspects.is_empty() || !state.poison.is_empty()
    }

    /// How to treat the record `id`.
    pub fn treatment(&self, id: RecordId) -> Treatment {
        let state = self.state();
        if state.poison.contains_key(&id) {
            Treatment::Divert
        } else if state.suspects.contains(&id) {
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
        if !state.suspects.contains(&id) {
            state.suspects.insert(id);
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

    /// Suspect `id` was processed alone without failing: it was not the cause.
    pub fn cleared(&self, id: RecordId) {
        self.state().suspects.remove(&id);
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
