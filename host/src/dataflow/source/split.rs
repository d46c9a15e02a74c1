//! A source's splits, its operator state: what they are for each kind of source, how a
//! checkpoint's splits meet the source's input as it is now, and how they are dealt
//! among subtasks (pure, but for listing a source's files).
//!
//! Invariants: every record of a source belongs to exactly one split, and a split is read
//! by one subtask at a time, front to back; dealing depends only on the splits and the
//! parallelism, so a checkpoint taken at one source parallelism resumes at any other with
//! every record read exactly once. A generator splits by key, so each key's records come
//! from one split, in order, at every parallelism.

use std::io;
use std::path::{Path, PathBuf};

use crate::checkpoint::SourceSplit;
use crate::job::SourceKind;

/// The most splits a generator's keys are divided into (fewer when it has fewer keys):
/// the most subtasks a generator can keep busy.
pub const GENERATOR_SPLITS: u64 = 128;

/// Why a checkpoint's splits cannot resume this source.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SplitError {
    /// The generator's keys changed, so its records and splits are not the ones read.
    #[error(
        "its generator splits were made for keys = {then} ({then_splits} splits), but the job's source has keys = {now} ({now_splits} splits). Resume with the settings the checkpoint was taken with, or run without the checkpoint"
    )]
    GeneratorChanged {
        /// Keys then.
        then: u64,
        /// Splits then.
        then_splits: u64,
        /// Keys now.
        now: u64,
        /// Splits now.
        now_splits: u64,
    },
    /// A split of another kind of source (the source's `type` changed).
    #[error("it holds {found} splits, but the job's source is of another type")]
    OtherKind {
        /// The kind found.
        found: &'static str,
    },
}

/// The splits a source starts with when no checkpoint has any: a file source's files (cut
/// into byte ranges of `split_bytes`), a generator's key splits; none for stdin, which
/// one subtask reads and no checkpoint can rewind.
pub fn initial(kind: &SourceKind) -> io::Result<Vec<SourceSplit>> {
    Ok(match kind {
        SourceKind::File { path, split_bytes } => {
            let mut splits = Vec::new();
            for (name, size) in files(path)? {
                splits.extend(file_ranges(&name, size, *split_bytes));
            }
            splits
        }
        SourceKind::Stdin => Vec::new(),
        SourceKind::Kafka(kafka) => crate::kafka::initial_splits(kafka)?,
        SourceKind::Generator { keys, .. } => {
            let splits = generator_splits(*keys);
            (0..splits)
                .map(|split| SourceSplit::Generator {
                    split,
                    splits,
                    keys: *keys,
                    next: 0,
                })
                .collect()
        }
    })
}

/// The splits to resume with from a checkpoint's: all of them, and for a file source the
/// files that have appeared since (read from their start).
pub fn resume(kind: &SourceKind, restored: Vec<SourceSplit>) -> Result<Vec<SourceSplit>, Resume> {
    for split in &restored {
        let found = match (split, kind) {
            (SourceSplit::File { .. }, SourceKind::File { .. }) => continue,
            (
                SourceSplit::Generator { keys, splits, .. },
                SourceKind::Generator { keys: now, .. },
            ) => {
                let now_splits = generator_splits(*now);
                if (keys, splits) != (now, &now_splits) {
                    return Err(Resume::Split(SplitError::GeneratorChanged {
                        then: *keys,
                        then_splits: *splits,
                        now: *now,
                        now_splits,
                    }));
                }
                continue;
            }
            (SourceSplit::Kafka { .. }, SourceKind::Kafka(_)) => continue,
            (SourceSplit::File { .. }, _) => "file",
            (SourceSplit::Generator { .. }, _) => "generator",
            (SourceSplit::Kafka { .. }, _) => "kafka",
        };
        return Err(Resume::Split(SplitError::OtherKind { found }));
    }
    if let SourceKind::Kafka(kafka) = kind {
        // Partitions of topics the source no longer reads are left behind; partitions
        // added since the checkpoint are read from their start.
        let mut splits: Vec<SourceSplit> = (restored.into_iter())
            .filter(
                |s| matches!(s, SourceSplit::Kafka { topic, .. } if kafka.topics.contains(topic)),
            )
            .collect();
        let new = crate::kafka::new_splits(kafka, &splits).map_err(Resume::Io)?;
        splits.extend(new);
        return Ok(splits);
    }
    let SourceKind::File { path, split_bytes } = kind else {
        return Ok(restored);
    };
    let mut splits = restored;
    let known: std::collections::BTreeSet<String> = splits
        .iter()
        .filter_map(|s| match s {
            SourceSplit::File { file, .. } => Some(file.clone()),
            SourceSplit::Generator { .. } | SourceSplit::Kafka { .. } => None,
        })
        .collect();
    for (name, size) in files(path).map_err(Resume::Io)? {
        if !known.contains(&name) {
            splits.extend(file_ranges(&name, size, *split_bytes));
        }
    }
    Ok(splits)
}

/// Why resuming failed: the checkpoint does not fit, or the source's files cannot be listed.
#[derive(Debug)]
pub enum Resume {
    /// The checkpoint's splits do not fit the source.
    Split(SplitError),
    /// Listing the source's files failed.
    Io(io::Error),
}

/// Deals `splits` to `parallelism` subtasks: in order (file, then byte range; generator
/// split number), round-robin, unfinished splits first so that the work is spread
/// evenly. Each subtask's splits stay in that order.
pub fn deal(
    mut splits: Vec<SourceSplit>,
    kind: &SourceKind,
    parallelism: usize,
) -> Vec<Vec<SourceSplit>> {
    splits.sort_by(|a, b| order(a).cmp(&order(b)));
    let (done, todo): (Vec<_>, Vec<_>) = splits.into_iter().partition(|s| finished(s, kind));
    let mut dealt = vec![Vec::new(); parallelism.max(1)];
    for (i, split) in todo.into_iter().chain(done).enumerate() {
        dealt[i % parallelism.max(1)].push(split);
    }
    for subtask in &mut dealt {
        subtask.sort_by(|a, b| order(a).cmp(&order(b)));
    }
    dealt
}

/// Whether nothing of `split` is left to read.
pub fn finished(split: &SourceSplit, kind: &SourceKind) -> bool {
    match (split, kind) {
        (SourceSplit::File { end, offset, .. }, _) => end.is_some_and(|end| *offset >= end),
        (SourceSplit::Generator { next, .. }, SourceKind::Generator { count, .. }) => next >= count,
        (SourceSplit::Generator { .. }, _) => true,
        (SourceSplit::Kafka { next, end, .. }, _) => end.is_some_and(|end| *next >= end),
    }
}

/// The file a file split reads: `path` itself, or the split's file in the directory `path`.
pub fn file_path(path: &Path, file: &str) -> PathBuf {
    if file.is_empty() {
        path.to_path_buf()
    } else {
        path.join(file)
    }
}

fn order(split: &SourceSplit) -> (&str, u64) {
    match split {
        SourceSplit::File { file, start, .. } => (file, *start),
        SourceSplit::Generator { split, .. } => ("", *split),
        SourceSplit::Kafka {
            topic, partition, ..
        } => (topic, *partition as u64),
    }
}

fn generator_splits(keys: u64) -> u64 {
    keys.min(GENERATOR_SPLITS)
}

/// A file's splits: byte ranges of `split_bytes`, the last one open-ended.
fn file_ranges(name: &str, size: u64, split_bytes: u64) -> impl Iterator<Item = SourceSplit> {
    let ranges = size.div_ceil(split_bytes).max(1);
    (0..ranges).map(move |i| {
        let start = i * split_bytes;
        SourceSplit::File {
            file: name.to_string(),
            start,
            end: (i + 1 < ranges).then_some(start + split_bytes),
            offset: start,
            line: (start == 0).then_some(0),
        }
    })
}

/// The files a file source reads, with their sizes: `path` itself (named ""), or the
/// regular, non-hidden files of the directory `path` in name order.
fn files(path: &Path) -> io::Result<Vec<(String, u64)>> {
    if !path.is_dir() {
        return Ok(vec![(String::new(), std::fs::metadata(path)?.len())]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = entry.metadata()?;
        if !name.starts_with('.') && meta.is_file() {
            files.push((name, meta.len()));
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator(count: u64, keys: u64) -> SourceKind {
        SourceKind::Generator {
            count,
            keys,
            key_field: "key".into(),
            key_prefix: "key-".into(),
            time: None,
        }
    }

    fn numbers(dealt: &[Vec<SourceSplit>]) -> Vec<Vec<u64>> {
        dealt
            .iter()
            .map(|s| s.iter().map(|s| order(s).1).collect())
            .collect()
    }

    #[test]
    fn a_generator_splits_its_keys_and_deals_them_round_robin() {
        let kind = generator(100, 5);
        let splits = initial(&kind).unwrap();
        assert_eq!(splits.len(), 5);
        assert_eq!(
            numbers(&deal(splits.clone(), &kind, 2)),
            [vec![0, 2, 4], vec![1, 3]]
        );
        assert_eq!(numbers(&deal(splits, &kind, 7)).concat(), [0, 1, 2, 3, 4]);
        assert_eq!(initial(&generator(10, 1_000_000)).unwrap().len(), 128);
    }

    #[test]
    fn dealing_spreads_unfinished_splits_first_and_keeps_every_split() {
        let kind = generator(100, 4);
        let mut splits = initial(&kind).unwrap();
        for split in &mut splits[..2] {
            if let SourceSplit::Generator { next, .. } = split {
                *next = 100;
            }
        }
        // Splits 2 and 3 are the work left: one for each subtask.
        assert_eq!(numbers(&deal(splits, &kind, 2)), [vec![0, 2], vec![1, 3]]);
    }

    #[test]
    fn a_generator_checkpoint_resumes_only_with_the_same_keys() {
        let splits = initial(&generator(100, 5)).unwrap();
        assert!(resume(&generator(200, 5), splits.clone()).is_ok());
        assert!(matches!(
            resume(&generator(100, 6), splits.clone()),
            Err(Resume::Split(SplitError::GeneratorChanged {
                then: 5,
                now: 6,
                ..
            }))
        ));
        let file = SourceKind::File {
            path: "in".into(),
            split_bytes: 10,
        };
        assert!(matches!(
            resume(&file, splits),
            Err(Resume::Split(SplitError::OtherKind { found: "generator" }))
        ));
    }

    #[test]
    fn files_are_cut_into_ranges_and_new_files_join_on_resume() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.jsonl"), vec![b'x'; 25]).unwrap();
        std::fs::write(dir.path().join("b.jsonl"), b"").unwrap();
        std::fs::write(dir.path().join(".hidden"), b"x").unwrap();
        let kind = SourceKind::File {
            path: dir.path().to_path_buf(),
            split_bytes: 10,
        };
        let splits = initial(&kind).unwrap();
        let ranges: Vec<(&str, u64, Option<u64>)> = splits
            .iter()
            .map(|s| match s {
                SourceSplit::File {
                    file, start, end, ..
                } => (file.as_str(), *start, *end),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            ranges,
            [
                ("a.jsonl", 0, Some(10)),
                ("a.jsonl", 10, Some(20)),
                ("a.jsonl", 20, None),
                ("b.jsonl", 0, None)
            ]
        );
        std::fs::write(dir.path().join("c.jsonl"), b"{}\n").unwrap();
        let resumed = resume(&kind, splits.clone()).unwrap();
        assert_eq!(resumed.len(), splits.len() + 1);
        assert_eq!(&resumed[..splits.len()], &splits[..]);
    }
}
