//! A completed checkpoint's metadata: where each source was in each of its splits, which
//! file holds each operator subtask's state, and each sink subtask's uncommitted part
//! files.
//!
//! File format: a header line `weir-checkpoint <version> <crc32c of the rest, hex>`,
//! then the metadata as JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The metadata format version this host writes and reads.
///
/// Version 4: channel state of unaligned checkpoints (a host that reads only version 3
/// would skip it and lose those records). Version 3: a source's progress is per split,
/// not per subtask (version 2 could not be resumed at another source parallelism, so it
/// is not read); a version 3 checkpoint is read as one without channel state.
pub const FORMAT_VERSION: u32 = 4;
/// The oldest version read.
const OLDEST_READ: u32 = 3;
pub(crate) const HEADER: &str = "weir-checkpoint";

/// What a completed checkpoint holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The job's name.
    pub job: String,
    /// The checkpoint's number.
    pub checkpoint: u64,
    /// The job's maximum parallelism (key groups).
    pub max_parallelism: u16,
    /// Per source, the splits each subtask held, with their progress (split state:
    /// restored at any parallelism by concatenating and dealing them out again).
    pub sources: BTreeMap<String, Vec<Vec<SourceSplit>>>,
    /// Per operator, the keyed state file of each subtask.
    pub operators: BTreeMap<String, Vec<StateFile>>,
    /// Per operator, the operator state file of each subtask that has operator state.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub operator_states: BTreeMap<String, Vec<SubtaskFile>>,
    /// Per sink, the state of each subtask.
    pub sinks: BTreeMap<String, Vec<SinkState>>,
    /// Per operator or sink, the channel state file of each subtask that had records in
    /// flight across an unaligned barrier.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub channel_states: BTreeMap<String, Vec<SubtaskFile>>,
}

/// A unit of a source's input with how far it has been read: the source's state, dealt
/// among its subtasks (each split is read by exactly one subtask at a time, in order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum SourceSplit {
    /// The lines of a file that start in the byte range `start..end`.
    File {
        /// The file: its name in the source's directory, or empty when the source's
        /// `path` is the file itself.
        file: String,
        /// The range's first byte.
        start: u64,
        /// The byte after the range; none: the end of the file, whatever it is when read.
        /// Set to the final offset once the split has been read to the end.
        end: Option<u64>,
        /// The byte offset of the next line to read (`start`: none read yet).
        offset: u64,
        /// Lines before `offset`, when the range starts at the file's start (line
        /// numbers for messages); none for later ranges, which name byte offsets.
        line: Option<u64>,
    },
    /// The generator's records whose key `k` has `k % splits == split`.
    Generator {
        /// This split's number.
        split: u64,
        /// The number of splits the keys were divided into.
        splits: u64,
        /// The generator's key count when the split was made.
        keys: u64,
        /// The next record index of this split to generate: every index below it is done.
        next: u64,
    },
    /// A partition of a Kafka topic.
    Kafka {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset of the next message to read: every message before it is done.
        next: i64,
        /// For a bounded source (`stop = "latest"`), the offset it stops at: the
        /// partition's end when the split was made.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        end: Option<i64>,
    },
}

/// One operator subtask's state in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "format")]
pub enum StateFile {
    /// A canonical state file (see `state::snapshot`): the memory backend, full RocksDB
    /// checkpoints, and every savepoint.
    Canonical(CanonicalFile),
    /// An incremental RocksDB checkpoint: the database's small private files in the
    /// checkpoint's folder, its SST files in the job's `shared/` folder.
    Rocksdb(RocksDbFiles),
}

impl StateFile {
    /// Bytes of state this subtask's checkpoint refers to.
    pub fn bytes(&self) -> u64 {
        match self {
            StateFile::Canonical(file) => file.bytes,
            StateFile::Rocksdb(files) => files
                .private
                .iter()
                .chain(files.shared.iter().map(|s| &s.file))
                .map(|f| f.bytes)
                .sum(),
        }
    }

    /// Bytes this checkpoint wrote for it (less than [`StateFile::bytes`] when
    /// incremental).
    pub fn copied(&self) -> u64 {
        match self {
            StateFile::Canonical(file) => file.bytes,
            StateFile::Rocksdb(files) => files.copied,
        }
    }
}

/// A file of one subtask: its operator state (see `state::operator`) or its channel
/// state (see `checkpoint::channel_state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskFile {
    /// The subtask whose state it is.
    pub subtask: usize,
    /// The file.
    #[serde(flatten)]
    pub file: CanonicalFile,
}

/// A canonical state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanonicalFile {
    /// File name inside the checkpoint's directory.
    pub file: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// CRC-32C of its contents.
    pub crc32c: u32,
}

/// The files of one RocksDB checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RocksDbFiles {
    /// Folder inside the checkpoint's directory holding the private files.
    pub dir: String,
    /// The operator's registered states, in state-id order.
    pub states: Vec<NamedState>,
    /// Files of this checkpoint only (`CURRENT`, `MANIFEST-*`, `OPTIONS-*`).
    pub private: Vec<FileCheck>,
    /// SST files in the job's `shared/` folder, possibly shared with other checkpoints.
    pub shared: Vec<SharedFile>,
    /// Bytes this checkpoint copied: its private files and the SST files no retained
    /// checkpoint already held.
    pub copied: u64,
    /// The clocks when it was taken, if it has TTL states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_at: Option<TakenAt>,
}

/// A registered state, by name and kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedState {
    /// The state's name.
    pub name: String,
    /// Its kind (`value`, `list`, `map`, `reducing`, `aggregating`).
    pub kind: String,
    /// Its time-to-live, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<NamedTtl>,
}

/// A state's time-to-live (`state::ttl::Ttl`), by names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedTtl {
    /// How long an entry lives, in milliseconds.
    pub ms: u64,
    /// `event-time` or `processing-time`.
    pub domain: String,
    /// `create-and-write` or `read-and-write`.
    pub update: String,
}

/// The clocks when a RocksDB checkpoint was taken (`state::ttl::Now`): its TTL entries
/// expired then are left out when it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakenAt {
    /// The task's watermark, if it had one.
    pub watermark: Option<i64>,
    /// The wall clock, in milliseconds since the Unix epoch.
    pub processing: i64,
}

/// A file and what it must contain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheck {
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// CRC-32C of its contents.
    pub crc32c: u32,
}

/// An SST file in the shared folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedFile {
    /// The file in `shared/`.
    #[serde(flatten)]
    pub file: FileCheck,
    /// Its name inside the database (what RocksDB's manifest calls it).
    pub local: String,
}

/// One sink subtask's two-phase-commit state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SinkState {
    /// Pending part files (names inside the sink's directory) that this checkpoint
    /// commits when it completes, or when a job resumes from it.
    pub pending: Vec<String>,
    /// The subtask's first part number after this checkpoint: every part below it is
    /// committed by this checkpoint or an earlier one, so a committed part at or above it
    /// was committed by a later checkpoint. Absent in older metadata and for stdout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_part: Option<u64>,
}

/// Why metadata cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetadataError {
    /// The header line is missing or wrong.
    #[error("not checkpoint metadata (no `{HEADER}` header)")]
    Header,
    /// Another format version.
    #[error(
        "metadata format version {0} is not supported (this host reads versions {OLDEST_READ} to {FORMAT_VERSION})"
    )]
    Version(u32),
    /// The checksum does not match.
    #[error("checksum mismatch: the file is damaged")]
    Checksum,
    /// The JSON does not parse.
    #[error("malformed metadata: {0}")]
    Json(String),
}

impl Metadata {
    /// The metadata file's contents.
    pub fn encode(&self) -> Vec<u8> {
        let body = serde_json::to_vec_pretty(self).expect("metadata serializes");
        let mut out =
            format!("{HEADER} {FORMAT_VERSION} {:08x}\n", crc32c::crc32c(&body)).into_bytes();
        out.extend_from_slice(&body);
        out
    }

    /// Parses a metadata file, checking header, version and checksum.
    pub fn decode(bytes: &[u8]) -> Result<Metadata, MetadataError> {
        let newline = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(MetadataError::Header)?;
        let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| MetadataError::Header)?;
        let body = &bytes[newline + 1..];
        let mut words = header.split(' ');
        if words.next() != Some(HEADER) {
            return Err(MetadataError::Header);
        }
        let version: u32 = words
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or(MetadataError::Header)?;
        if !(OLDEST_READ..=FORMAT_VERSION).contains(&version) {
            return Err(MetadataError::Version(version));
        }
        let crc = words
            .next()
            .and_then(|c| u32::from_str_radix(c, 16).ok())
            .ok_or(MetadataError::Header)?;
        if crc != crc32c::crc32c(body) {
            return Err(MetadataError::Checksum);
        }
        serde_json::from_slice(body).map_err(|e| MetadataError::Json(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metadata {
        Metadata {
            job: "j".into(),
            checkpoint: 7,
            max_parallelism: 128,
            sources: [(
                "in".to_string(),
                vec![vec![
                    SourceSplit::File {
                        file: "a.jsonl".into(),
                        start: 0,
                        end: None,
                        offset: 120,
                        line: Some(3),
                    },
                    SourceSplit::Generator {
                        split: 1,
                        splits: 4,
                        keys: 10,
                        next: 9,
                    },
                ]],
            )]
            .into(),
            operators: [(
                "count".to_string(),
                vec![
                    StateFile::Canonical(CanonicalFile {
                        file: "count-0.state".into(),
                        bytes: 10,
                        crc32c: 1,
                    }),
                    StateFile::Rocksdb(RocksDbFiles {
                        dir: "count-1.rocksdb".into(),
                        states: vec![NamedState {
                            name: "n".into(),
                            kind: "value".into(),
                            ttl: None,
                        }],
                        private: vec![FileCheck {
                            name: "CURRENT".into(),
                            bytes: 16,
                            crc32c: 2,
                        }],
                        shared: vec![SharedFile {
                            file: FileCheck {
                                name: "count-1-ab-000009.sst".into(),
                                bytes: 1000,
                                crc32c: 3,
                            },
                            local: "000009.sst".into(),
                        }],
                        copied: 16,
                        taken_at: None,
                    }),
                ],
            )]
            .into(),
            operator_states: [(
                "count".to_string(),
                vec![SubtaskFile {
                    subtask: 1,
                    file: CanonicalFile {
                        file: "count-1.opstate".into(),
                        bytes: 20,
                        crc32c: 4,
                    },
                }],
            )]
            .into(),
            sinks: [(
                "out".to_string(),
                vec![SinkState {
                    pending: vec![".part-0-2.pending".into()],
                    next_part: Some(3),
                }],
            )]
            .into(),
            channel_states: [(
                "out".to_string(),
                vec![SubtaskFile {
                    subtask: 0,
                    file: CanonicalFile {
                        file: "out-0.channels".into(),
                        bytes: 40,
                        crc32c: 5,
                    },
                }],
            )]
            .into(),
        }
    }

    #[test]
    fn round_trips_and_detects_damage() {
        let bytes = sample().encode();
        assert_eq!(Metadata::decode(&bytes).unwrap(), sample());
        for len in 0..bytes.len() {
            assert!(
                Metadata::decode(&bytes[..len]).is_err(),
                "truncated to {len}"
            );
        }
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x04;
            assert!(Metadata::decode(&damaged).is_err(), "bit flip at {i}");
        }
    }

    #[test]
    fn version_3_is_read_as_having_no_channel_state_and_version_2_is_refused() {
        let mut aligned = sample();
        aligned.channel_states.clear();
        let current = String::from_utf8(aligned.encode()).unwrap();
        let header = format!("{HEADER} {FORMAT_VERSION} ");
        let written_by = |version: u32| {
            let old = current.replacen(&header, &format!("{HEADER} {version} "), 1);
            Metadata::decode(old.as_bytes())
        };
        assert_eq!(written_by(3).unwrap(), aligned);
        assert_eq!(written_by(2), Err(MetadataError::Version(2)));
    }
}
