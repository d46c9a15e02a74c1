//! Source tasks: read JSON lines from a file or stdin, or generate records, and push
//! them downstream in batches.
//!
//! Invariant: a source's position is the byte offset of the next line it will read (the
//! record index for the generator), so that a later version can rewind it to a
//! checkpoint's position and replay exactly what followed.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::edge::Outputs;
use super::{BATCH_SIZE, Failure, SourceReport, Stop};
use crate::job::{OnBadRecord, Source, SourceKind};
use crate::record::Record;

/// Runs subtask `subtask` of `source` to its end, or until it fails or its consumers
/// are gone.
pub fn run(source: &Source, subtask: usize, mut outputs: Outputs) -> Result<SourceReport, Stop> {
    let parallelism = usize::from(source.parallelism);
    let mut report = SourceReport {
        name: source.name.clone(),
        ..SourceReport::default()
    };
    match &source.kind {
        SourceKind::File { path } => {
            let io_error = |what: String| {
                let task = format!("source `{}`", source.name);
                move |error| Stop::Failed(Failure::Io { task, what, error })
            };
            for file in split_files(path)
                .map_err(io_error(format!("cannot list {}", path.display())))?
                .into_iter()
                .skip(subtask)
                .step_by(parallelism)
            {
                let reader = File::open(&file)
                    .map_err(io_error(format!("cannot open {}", file.display())))?;
                let label = file.display().to_string();
                read_lines(source, &label, Box::new(reader), &mut outputs, &mut report)?;
            }
        }
        SourceKind::Stdin => read_lines(
            source,
            "stdin",
            Box::new(io::stdin()),
            &mut outputs,
            &mut report,
        )?,
        SourceKind::Generator {
            count,
            keys,
            key_field,
            key_prefix,
        } => {
            let generator = Generator::new(key_field, key_prefix, *keys);
            for index in (subtask as u64..*count).step_by(parallelism) {
                outputs
                    .push(generator.record(index))
                    .expect("generated records are JSON documents with their key field");
                report.records += 1;
                if outputs.pending() >= BATCH_SIZE {
                    outputs.flush().map_err(|_| Stop::Disconnected)?;
                }
            }
        }
    }
    outputs.end().map_err(|_| Stop::Disconnected)?;
    Ok(report)
}

/// The files a file source reads: `path` itself, or the regular, non-hidden files of the
/// directory `path` in name order.
fn split_files(path: &Path) -> io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .collect::<io::Result<Vec<_>>>()?
        .into_iter()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Reads JSON lines; a batch is sent when full, or as soon as no more input is buffered,
/// so that records typed on a terminal are processed at once.
fn read_lines(
    source: &Source,
    label: &str,
    input: Box<dyn Read + Send>,
    outputs: &mut Outputs,
    report: &mut SourceReport,
) -> Result<(), Stop> {
    let mut reader = BufReader::with_capacity(1 << 16, input);
    let mut line_number: u64 = 0;
    let mut position: u64 = 0;
    loop {
        let mut line = Vec::new();
        let read = reader.read_until(b'\n', &mut line).map_err(|e| {
            Stop::Failed(Failure::Io {
                task: format!("source `{}`", source.name),
                what: format!("cannot read {label} at byte offset {position}"),
                error: e,
            })
        })?;
        if read == 0 {
            return Ok(());
        }
        line_number += 1;
        position += read as u64;
        while line.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match outputs.push(Record {
            payload: line,
            timestamp: None,
        }) {
            Ok(()) => report.records += 1,
            Err(error) => match source.on_bad_record {
                OnBadRecord::Fail => {
                    return Err(Stop::Failed(Failure::BadRecord {
                        source_name: source.name.clone(),
                        location: format!("{label}:{line_number}"),
                        error,
                    }));
                }
                OnBadRecord::Skip => {
                    report.skipped += 1;
                    report
                        .first_skipped
                        .get_or_insert(format!("{label}:{line_number}"));
                }
            },
        }
        if outputs.pending() >= BATCH_SIZE || (reader.buffer().is_empty() && outputs.pending() > 0)
        {
            outputs.flush().map_err(|_| Stop::Disconnected)?;
        }
    }
}

/// Generates `{"<field>":"<prefix><k>","seq":<s>}` for record `i`, where `k = i % keys`
/// and `s = i / keys`: every key's records are numbered 0, 1, 2, … in order.
struct Generator {
    head: String,
    prefix: String,
    keys: u64,
}

impl Generator {
    fn new(key_field: &str, key_prefix: &str, keys: u64) -> Generator {
        let quoted_prefix = serde_json::to_string(key_prefix).expect("strings serialize");
        Generator {
            head: format!(
                "{{{}:",
                serde_json::to_string(key_field).expect("strings serialize")
            ),
            prefix: quoted_prefix[..quoted_prefix.len() - 1].to_string(),
            keys,
        }
    }

    fn record(&self, index: u64) -> Record {
        let payload = format!(
            "{}{}{}\",\"seq\":{}}}",
            self.head,
            self.prefix,
            index % self.keys,
            index / self.keys
        );
        Record {
            payload: payload.into_bytes(),
            timestamp: Some(index as i64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generated_records_number_each_key_in_order() {
        let generator = Generator::new("url", "/page/\"", 3);
        let records: Vec<serde_json::Value> = (0..7)
            .map(|i| serde_json::from_slice(&generator.record(i).payload).unwrap())
            .collect();
        assert_eq!(records[0], json!({"url": "/page/\"0", "seq": 0}));
        assert_eq!(records[4], json!({"url": "/page/\"1", "seq": 1}));
        assert_eq!(records[6], json!({"url": "/page/\"0", "seq": 2}));
        assert_eq!(generator.record(5).timestamp, Some(5));
    }
}
