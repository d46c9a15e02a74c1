//! Sink tasks: write records as JSON lines to stdout or to part files in a directory.
//!
//! Delivery: the stdout sink is at-least-once (what it printed stays printed). The file
//! sink writes a hidden `.part-<subtask>-<n>.jsonl.inprogress` file and renames it to
//! `part-<subtask>-<n>.jsonl` only once the job has finished and the file is synced, so
//! a reader of the directory never sees the output of a failed run.

use super::inputs::{Event, Inputs};
use super::{Failure, SinkReport, Stop};
use crate::job::{Sink, SinkKind};
use crate::record::KeyedRecord;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Runs subtask `subtask` of `sink` until all of its inputs have ended.
pub fn run(sink: &Sink, subtask: usize, mut inputs: Inputs) -> Result<SinkReport, Stop> {
    let io_failure = |what: String| {
        let task = format!("sink `{}`", sink.name);
        move |error: io::Error| Stop::Failed(Failure::Io { task, what, error })
    };
    let mut report = SinkReport {
        name: sink.name.clone(),
        ..SinkReport::default()
    };
    match &sink.kind {
        SinkKind::Stdout => {
            let stdout = io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            drain(&mut inputs, &mut report, |batch| {
                write_batch(&mut out, batch)?;
                out.flush()
            })
            .map_err(|e| e.map_io(io_failure("cannot write to stdout".into())))?;
        }
        SinkKind::File { path } => {
            let part = format!("part-{subtask}-0.jsonl");
            let pending = path.join(format!(".{part}.inprogress"));
            fs::create_dir_all(path)
                .map_err(io_failure(format!("cannot create {}", path.display())))?;
            let file = File::create(&pending)
                .map_err(io_failure(format!("cannot create {}", pending.display())))?;
            let mut out = BufWriter::new(file);
            drain(&mut inputs, &mut report, |batch| {
                write_batch(&mut out, batch)
            })
            .map_err(|e| e.map_io(io_failure(format!("cannot write {}", pending.display()))))?;
            commit(out, &pending, &path.join(&part)).map_err(io_failure(format!(
                "cannot commit {} in {}",
                part,
                path.display()
            )))?;
        }
    }
    Ok(report)
}

enum DrainError {
    Disconnected,
    Io(io::Error),
}

impl DrainError {
    fn map_io(self, f: impl FnOnce(io::Error) -> Stop) -> Stop {
        match self {
            DrainError::Disconnected => Stop::Disconnected,
            DrainError::Io(e) => f(e),
        }
    }
}

fn drain(
    inputs: &mut Inputs,
    report: &mut SinkReport,
    mut write: impl FnMut(&[KeyedRecord]) -> io::Result<()>,
) -> Result<(), DrainError> {
    while let Some(event) = inputs.next().map_err(|_| DrainError::Disconnected)? {
        match event {
            Event::Batch(batch) => {
                write(&batch).map_err(DrainError::Io)?;
                report.records += batch.len() as u64;
            }
            Event::Checkpoint(_) => {}
        }
    }
    Ok(())
}

fn write_batch(out: &mut impl Write, batch: &[KeyedRecord]) -> io::Result<()> {
    for record in batch {
        out.write_all(&record.payload)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Makes the pending file durable, then visible under its final name.
fn commit(out: BufWriter<File>, pending: &Path, committed: &Path) -> io::Result<()> {
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    fs::rename(pending, committed)?;
    if let Some(dir) = committed.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
