//! Source tasks: read JSON lines from files or stdin, or generate records, and push them
//! downstream in batches; inject checkpoint barriers when the coordinator asks.
//!
//! Invariant: a source's position is where the next record comes from (file index, byte
//! offset and line; or the generator's next index). A barrier is sent after every record
//! before that position and before any after it, so restoring a checkpoint and seeking
//! to its position replays exactly the records that followed the barrier.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::edge::Outputs;
use super::{BATCH_SIZE, Failure, SourceReport, Stop};
use crate::checkpoint::SourcePosition;
use crate::checkpoint::coordinator::{Ack, AckState, Report, TaskId};
use crate::job::{OnBadRecord, Source, SourceKind};
use crate::record::{Origin, Record};

/// A source subtask's link to the checkpoint coordinator.
pub struct Checkpoints {
    /// Triggers: "inject barrier n now".
    pub triggers: Receiver<u64>,
    /// Acknowledgements and the end of the source.
    pub reports: Sender<Report>,
}

/// Where a source subtask starts, and who it answers to.
pub struct Context {
    /// This subtask.
    pub task: TaskId,
    /// The position to resume from (none: the start).
    pub start: Option<SourcePosition>,
    /// Present when the job checkpoints.
    pub checkpoints: Option<Checkpoints>,
    /// Set when the job is cancelled.
    pub cancel: Arc<AtomicBool>,
}

impl Context {
    /// Between two records: stops if the job was cancelled, and injects a barrier if
    /// one was asked for, with `position` as this source's part.
    fn poll_trigger(
        &self,
        outputs: &mut Outputs,
        position: impl FnOnce() -> SourcePosition,
    ) -> Result<(), Stop> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Stop::Failed(Failure::Cancelled));
        }
        let Some(checkpoints) = &self.checkpoints else {
            return Ok(());
        };
        if let Ok(id) = checkpoints.triggers.try_recv() {
            outputs
                .barrier(super::CheckpointId(id))
                .map_err(|_| Stop::Disconnected)?;
            let _ = checkpoints.reports.send(Report::Ack(Ack {
                checkpoint: id,
                task: self.task.clone(),
                state: AckState::Source(position()),
            }));
        }
        Ok(())
    }
}

/// Runs a subtask of `source` to its end, or until it fails or its consumers are gone.
pub fn run(source: &Source, context: Context, mut outputs: Outputs) -> Result<SourceReport, Stop> {
    let subtask = context.task.1;
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
            let files: Vec<PathBuf> = split_files(path)
                .map_err(io_error(format!("cannot list {}", path.display())))?
                .into_iter()
                .skip(subtask)
                .step_by(parallelism)
                .collect();
            let (first, offset, line) = match context.start {
                Some(SourcePosition::File { file, offset, line }) => (file, offset, line),
                _ => (0, 0, 0),
            };
            for (index, file) in files.iter().enumerate().skip(first) {
                let mut reader = File::open(file)
                    .map_err(io_error(format!("cannot open {}", file.display())))?;
                let start = if index == first {
                    (offset, line)
                } else {
                    (0, 0)
                };
                reader
                    .seek(SeekFrom::Start(start.0))
                    .map_err(io_error(format!("cannot seek in {}", file.display())))?;
                let mut lines = Lines {
                    label: file.display().to_string(),
                    file: index,
                    offset: start.0,
                    line: start.1,
                };
                lines.read(
                    source,
                    &context,
                    Box::new(reader),
                    &mut outputs,
                    &mut report,
                )?;
            }
        }
        SourceKind::Stdin => {
            let mut lines = Lines {
                label: "stdin".into(),
                file: 0,
                offset: 0,
                line: 0,
            };
            lines.read(
                source,
                &context,
                Box::new(io::stdin()),
                &mut outputs,
                &mut report,
            )?;
        }
        SourceKind::Generator {
            count,
            keys,
            key_field,
            key_prefix,
            records_per_second,
        } => {
            let generator = Generator::new(key_field, key_prefix, *keys);
            let at = Origin::label(format!("source `{}`, generated record", source.name));
            let first = match context.start {
                Some(SourcePosition::Generator { next }) => next,
                _ => subtask as u64,
            };
            let pace = records_per_second.map(|r| Pace::new(r as f64 / parallelism as f64));
            for (sent, index) in (first..*count).step_by(parallelism).enumerate() {
                context.poll_trigger(&mut outputs, || SourcePosition::Generator { next: index })?;
                if let Some(pace) = &pace {
                    // Sleep in short naps so that barriers and cancellation are not held up.
                    while let Some(early) = pace.early(sent as u64, pace.start.elapsed()) {
                        outputs.flush().map_err(|_| Stop::Disconnected)?;
                        std::thread::sleep(early.min(Duration::from_millis(5)));
                        context.poll_trigger(&mut outputs, || SourcePosition::Generator {
                            next: index,
                        })?;
                    }
                }
                let origin = Origin { at, number: index };
                outputs
                    .push(generator.record(index), Some(&origin))
                    .expect("generated records are JSON documents with their key field");
                report.records += 1;
                if outputs.pending() >= BATCH_SIZE {
                    outputs.flush().map_err(|_| Stop::Disconnected)?;
                }
            }
        }
    }
    if let Some(checkpoints) = &context.checkpoints {
        let _ = checkpoints
            .reports
            .send(Report::SourceFinished(context.task.clone()));
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

/// Reading one file (or stdin) line by line, with its position.
struct Lines {
    label: String,
    file: usize,
    offset: u64,
    line: u64,
}

impl Lines {
    fn position(&self) -> SourcePosition {
        SourcePosition::File {
            file: self.file,
            offset: self.offset,
            line: self.line,
        }
    }

    /// Reads JSON lines; a batch is sent when full, or as soon as no more input is
    /// buffered, so that records typed on a terminal are processed at once.
    fn read(
        &mut self,
        source: &Source,
        context: &Context,
        input: Box<dyn Read + Send>,
        outputs: &mut Outputs,
        report: &mut SourceReport,
    ) -> Result<(), Stop> {
        let mut reader = BufReader::with_capacity(1 << 16, input);
        let at = Origin::label(format!("source `{}`, {} line", source.name, self.label));
        loop {
            context.poll_trigger(outputs, || self.position())?;
            let mut line = Vec::new();
            let read = reader.read_until(b'\n', &mut line).map_err(|e| {
                Stop::Failed(Failure::Io {
                    task: format!("source `{}`", source.name),
                    what: format!("cannot read {} at byte offset {}", self.label, self.offset),
                    error: e,
                })
            })?;
            if read == 0 {
                return outputs.flush().map_err(|_| Stop::Disconnected);
            }
            self.line += 1;
            self.offset += read as u64;
            while line.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
                line.pop();
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let origin = Origin {
                at,
                number: self.line,
            };
            match outputs.push(
                Record {
                    payload: line,
                    timestamp: None,
                },
                Some(&origin),
            ) {
                Ok(()) => report.records += 1,
                Err(error) => match source.on_bad_record {
                    OnBadRecord::Fail => {
                        return Err(Stop::Failed(Failure::BadRecord {
                            source_name: source.name.clone(),
                            location: format!("{}:{}", self.label, self.line),
                            error,
                        }));
                    }
                    OnBadRecord::Skip => {
                        report.skipped += 1;
                        report
                            .first_skipped
                            .get_or_insert(format!("{}:{}", self.label, self.line));
                    }
                },
            }
            if outputs.pending() >= BATCH_SIZE
                || (reader.buffer().is_empty() && outputs.pending() > 0)
            {
                outputs.flush().map_err(|_| Stop::Disconnected)?;
            }
        }
    }
}

/// A rate limit: record `n` of this run (counting from 0) is due `n / rate` seconds after
/// the start. A resumed run paces from its own start.
struct Pace {
    start: Instant,
    per_second: f64,
}

impl Pace {
    fn new(per_second: f64) -> Pace {
        Pace {
            start: Instant::now(),
            per_second,
        }
    }

    /// How long before record `sent` is due, `elapsed` after the start; none once due.
    fn early(&self, sent: u64, elapsed: Duration) -> Option<Duration> {
        let due = Duration::from_secs_f64(sent as f64 / self.per_second);
        due.checked_sub(elapsed).filter(|d| !d.is_zero())
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
        // Written piece by piece: `format!` cost the source thread a tenth of its time.
        let mut digits = itoa::Buffer::new();
        let mut payload = Vec::with_capacity(self.head.len() + self.prefix.len() + 48);
        payload.extend_from_slice(self.head.as_bytes());
        payload.extend_from_slice(self.prefix.as_bytes());
        payload.extend_from_slice(digits.format(index % self.keys).as_bytes());
        payload.extend_from_slice(b"\",\"seq\":");
        payload.extend_from_slice(digits.format(index / self.keys).as_bytes());
        payload.push(b'}');
        Record {
            payload,
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

    #[test]
    fn a_paced_record_waits_until_it_is_due() {
        let pace = Pace::new(1000.0);
        let ms = Duration::from_millis;
        assert_eq!(pace.early(0, ms(0)), None);
        assert_eq!(pace.early(10, ms(4)), Some(ms(6)));
        assert_eq!(pace.early(10, ms(10)), None);
        assert_eq!(pace.early(10, ms(50)), None, "a late source catches up");
        assert_eq!(Pace::new(0.5).early(1, ms(500)), Some(ms(1500)));
    }
}
