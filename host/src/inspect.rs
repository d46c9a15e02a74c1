//! Reading a checkpoint without the operators' code (`host state`): what each operator
//! keeps, and one key's state, shown as JSON where the bytes are JSON.
//!
//! Every file is checked (metadata header and CRC, state file size and CRC) before
//! anything is shown, as for a restore.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::checkpoint::channel_state::ChannelState;
use crate::checkpoint::files::read_metadata;
use crate::checkpoint::metadata::{CanonicalFile, SubtaskFile};
use crate::checkpoint::storage::{read_channel_state, read_operator_state, read_state_file};
use crate::checkpoint::{CheckpointError, Metadata};
use crate::state::operator::OperatorState;
use crate::state::snapshot::{SlotData, Snapshot, Timer};
use crate::state::ttl::{self, Ttl};
use crate::state::{KeyGroup, TimeDomain};

/// A checkpoint opened for reading.
pub struct Checkpoint {
    /// Its folder.
    pub dir: PathBuf,
    /// Its metadata.
    pub metadata: Metadata,
    /// Per operator, the snapshots of its subtasks.
    pub operators: BTreeMap<String, Vec<Snapshot>>,
    /// Per operator, the operator state of its subtasks that have some: (subtask, state).
    pub operator_states: BTreeMap<String, Vec<(usize, OperatorState)>>,
    /// Per operator or sink, the channel state of its subtasks that had records in
    /// flight across an unaligned barrier: (subtask, state).
    pub channel_states: BTreeMap<String, Vec<(usize, ChannelState)>>,
}

/// Per node, each of its subtask files read with `read`: (subtask, contents).
fn read_per_subtask<T>(
    dir: &Path,
    files: &BTreeMap<String, Vec<SubtaskFile>>,
    read: fn(&Path, &CanonicalFile) -> Result<T, CheckpointError>,
) -> Result<BTreeMap<String, Vec<(usize, T)>>, CheckpointError> {
    files
        .iter()
        .map(|(name, files)| {
            let read = files.iter().map(|f| Ok((f.subtask, read(dir, &f.file)?)));
            Ok((
                name.clone(),
                read.collect::<Result<Vec<_>, CheckpointError>>()?,
            ))
        })
        .collect()
}

/// Why a checkpoint cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// A file is missing or damaged.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// `PATH` is neither a checkpoint nor a folder of checkpoints.
    #[error(
        "{0}: no checkpoint here (expected a chk-<n> folder with _metadata, or a job's checkpoint folder)"
    )]
    NotACheckpoint(PathBuf),
    /// The operator is not in the checkpoint.
    #[error("no operator `{name}` in this checkpoint; it has: {known}")]
    NoOperator {
        /// The name asked for.
        name: String,
        /// The names it has.
        known: String,
    },
}

impl Checkpoint {
    /// Opens the checkpoint in `path`: a `chk-<n>` folder, or a job's checkpoint folder
    /// (its latest completed checkpoint).
    pub fn open(path: &Path) -> Result<Checkpoint, InspectError> {
        let dir = if path.join("_metadata").is_file() {
            path.to_path_buf()
        } else {
            // A job's checkpoint folder `<dir>/<job>` is the store of job "" under it.
            crate::checkpoint::Store::new(path, "")
                .latest_dir()?
                .ok_or_else(|| InspectError::NotACheckpoint(path.to_path_buf()))?
        };
        let metadata = read_metadata(&dir)?;
        let mut operators = BTreeMap::new();
        for (name, files) in &metadata.operators {
            let snapshots = files
                .iter()
                .map(|file| read_state_file(&dir, file))
                .collect::<Result<Vec<_>, _>>()?;
            operators.insert(name.clone(), snapshots);
        }
        let operator_states =
            read_per_subtask(&dir, &metadata.operator_states, read_operator_state)?;
        let channel_states = read_per_subtask(&dir, &metadata.channel_states, read_channel_state)?;
        Ok(Checkpoint {
            dir,
            metadata,
            operators,
            operator_states,
            channel_states,
        })
    }

    /// Every operator's states: kind, number of keys and bytes.
    pub fn summary(&self) -> String {
        let m = &self.metadata;
        let mut out = format!(
            "checkpoint {} of job `{}` (max_parallelism {}): {}\n",
            m.checkpoint,
            m.job,
            m.max_parallelism,
            self.dir.display()
        );
        for (name, snapshots) in &self.operators {
            let bytes: u64 = m
                .operators
                .get(name)
                .into_iter()
                .flatten()
                .map(|f| f.bytes())
                .sum();
            let _ = writeln!(
                out,
                "operator `{name}`: {} state files, {bytes} bytes",
                snapshots.len()
            );
            // Per state name: kind and TTL, keys, bytes of keys and values.
            let mut states: BTreeMap<&str, (String, u64, u64)> = BTreeMap::new();
            let described = |state: &crate::state::snapshot::StateInfo| match state.ttl {
                None => state.kind.name().to_string(),
                Some(ttl) => format!("{}, {ttl}", state.kind.name()),
            };
            for snapshot in snapshots {
                for state in &snapshot.states {
                    states
                        .entry(&state.name)
                        .or_insert((described(state), 0, 0));
                }
                for entry in snapshot.groups.iter().flat_map(|g| &g.entries) {
                    let state = &snapshot.states[entry.state as usize];
                    let totals = states
                        .entry(&state.name)
                        .or_insert((described(state), 0, 0));
                    totals.1 += 1;
                    totals.2 += (entry.key.len() + data_len(&entry.data)) as u64;
                }
            }
            for (state, (kind, keys, bytes)) in states {
                let _ = writeln!(
                    out,
                    "  state `{state}` ({kind}): {keys} keys, {bytes} bytes"
                );
            }
            for domain in [TimeDomain::Event, TimeDomain::Processing] {
                let timers: Vec<&Timer> = (snapshots.iter())
                    .flat_map(|s| s.groups.iter().flat_map(|g| &g.timers))
                    .filter(|t| t.domain == domain)
                    .collect();
                let keys: BTreeSet<&[u8]> = timers.iter().map(|t| t.key.as_slice()).collect();
                let earliest = timers.iter().map(|t| t.timestamp).min();
                let latest = timers.iter().map(|t| t.timestamp).max();
                if let (Some(earliest), Some(latest)) = (earliest, latest) {
                    let _ = writeln!(
                        out,
                        "  {} timers: {} pending on {} keys, from {} to {} (see --key)",
                        domain.name(),
                        timers.len(),
                        keys.len(),
                        time(earliest),
                        time(latest)
                    );
                }
            }
        }
        for (name, subtasks) in &self.operator_states {
            let _ = writeln!(out, "operator `{name}`: operator state");
            for (subtask, state) in subtasks {
                if let Some(watermark) = state.watermark {
                    let _ = writeln!(out, "  subtask {subtask}: watermark {}", time(watermark));
                }
                for list in &state.lists {
                    let _ = writeln!(
                        out,
                        "  subtask {subtask}: list `{}` ({}): {} elements",
                        list.name,
                        list.mode.name(),
                        list.elements.len()
                    );
                    for element in &list.elements {
                        let _ = writeln!(out, "    {}", render(element));
                    }
                }
                for broadcast in &state.broadcast {
                    let _ = writeln!(
                        out,
                        "  subtask {subtask}: broadcast `{}`: {} entries",
                        broadcast.name,
                        broadcast.entries.len()
                    );
                    for (key, value) in &broadcast.entries {
                        let _ = writeln!(out, "    {}: {}", render(key), render(value));
                    }
                }
            }
        }
        for (name, subtasks) in &self.channel_states {
            let _ = writeln!(out, "`{name}`: channel state (records in flight)");
            let files = m.channel_states.get(name).into_iter().flatten();
            for ((subtask, state), file) in subtasks.iter().zip(files) {
                let _ = writeln!(
                    out,
                    "  subtask {subtask}: {} records on {} channels, {} bytes",
                    state.records(),
                    state.channels.len(),
                    file.file.bytes
                );
            }
        }
        for (name, subtasks) in &m.sources {
            let _ = writeln!(out, "source `{name}`:");
            for (subtask, splits) in subtasks.iter().enumerate() {
                let _ = writeln!(out, "  subtask {subtask}: {} splits", splits.len());
                for split in splits {
                    let _ = writeln!(
                        out,
                        "    {}",
                        serde_json::to_string(split).unwrap_or_default()
                    );
                }
            }
        }
        out
    }

    /// The state of `key` in `operator`, one line per state that has it.
    pub fn key(&self, operator: &str, key: &str) -> Result<String, InspectError> {
        let snapshots = self
            .operators
            .get(operator)
            .ok_or_else(|| InspectError::NoOperator {
                name: operator.to_string(),
                known: self
                    .operators
                    .keys()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let group = KeyGroup::of(key.as_bytes(), self.metadata.max_parallelism);
        let mut out = format!("operator `{operator}`, key `{key}` (key group {group}):\n");
        let mut found = false;
        for snapshot in snapshots {
            let entries = snapshot
                .groups
                .iter()
                .filter(|g| g.group == group)
                .flat_map(|g| &g.entries)
                .filter(|e| e.key == key.as_bytes());
            for entry in entries {
                found = true;
                let state = &snapshot.states[entry.state as usize];
                let _ = writeln!(
                    out,
                    "  {} ({}): {}",
                    state.name,
                    state.kind.name(),
                    render_data(&entry.data, state.ttl)
                );
            }
            let timers = (snapshot.groups.iter())
                .filter(|g| g.group == group)
                .flat_map(|g| &g.timers)
                .filter(|t| t.key == key.as_bytes());
            for timer in timers {
                found = true;
                let _ = writeln!(
                    out,
                    "  {} timer at {}",
                    timer.domain.name(),
                    time(timer.timestamp)
                );
            }
        }
        if !found {
            out += "  no state\n";
        }
        Ok(out)
    }
}

/// A timestamp as `host state` shows it: epoch milliseconds, and the end of time.
fn time(timestamp: i64) -> String {
    match timestamp {
        i64::MAX => "the end of time".to_string(),
        ms => format!("{ms} ms"),
    }
}

fn data_len(data: &SlotData) -> usize {
    match data {
        SlotData::Value(v) => v.len(),
        SlotData::List(l) => l.iter().map(Vec::len).sum(),
        SlotData::Map(m) => m.iter().map(|(k, v)| k.len() + v.len()).sum(),
    }
}

/// JSON bytes as JSON; anything else as `0x…` hex.
fn render(bytes: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(value) => value.to_string(),
        Err(_) => format!(
            "0x{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

/// A slot's contents; with a TTL, each entry without its stamp, followed by when it was
/// last renewed.
fn render_data(data: &SlotData, ttl: Option<Ttl>) -> String {
    let entry = |stored: &[u8]| match (ttl, ttl::split(stored)) {
        (Some(_), Some((stamp, value))) => format!("{} (renewed at {stamp} ms)", render(value)),
        _ => render(stored),
    };
    match data {
        SlotData::Value(v) => entry(v),
        SlotData::List(l) => format!(
            "[{}]",
            l.iter().map(|e| entry(e)).collect::<Vec<_>>().join(", ")
        ),
        SlotData::Map(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", render(k), entry(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_json_as_json_and_other_bytes_as_hex() {
        assert_eq!(render(br#"{"a": 1}"#), r#"{"a":1}"#);
        assert_eq!(render(&[0xff, 0x01]), "0xff01");
        let map = SlotData::Map(vec![(b"\"k\"".to_vec(), b"2".to_vec())]);
        assert_eq!(render_data(&map, None), r#"{"k": 2}"#);
        assert_eq!(
            render_data(&SlotData::List(vec![b"1".to_vec(), b"x".to_vec()]), None),
            "[1, 0x78]"
        );
        let ttl = Ttl {
            ttl_ms: 10,
            domain: TimeDomain::Event,
            update: ttl::TtlUpdate::OnCreateAndWrite,
        };
        let stamped = SlotData::Value(ttl::stamped(1_000, b"7"));
        assert_eq!(render_data(&stamped, Some(ttl)), "7 (renewed at 1000 ms)");
    }
}
