//! `host test`: an operator against an input file and the output it must produce, run
//! once straight through and, with `--restore-every N`, once more restored into a fresh
//! instance every N records; with `--restore-parallelism P` the restores alternate
//! between one instance and P (records routed by key group, as the host routes them).
//!
//! Time: with `--event-time POINTER` records carry their event time. The input file
//! moves time with lines of their own, which are not JSON and so never a record:
//! `#watermark MS` (the watermark reaches MS: due event-time timers fire) and
//! `#processing-time MS` (the operator's clock, 0 at the start, reads MS: due
//! processing-time timers fire). The end of the input fires the remaining event-time
//! timers, as a job's does. Only records count towards `--restore-every`, so restores
//! also come between a timer's setting and its firing.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::diff::{Comparison, compare};
use super::{TestError, TestOperator, TestOptions};

/// `host test`'s arguments.
#[derive(Debug, Clone)]
pub struct TestArgs {
    /// The operator's component (or C core module).
    pub component: PathBuf,
    /// Input records, one JSON document per line.
    pub input: PathBuf,
    /// The outputs it must produce, one JSON document per line.
    pub expect: PathBuf,
    /// Side outputs and the records each must get (their names are also in
    /// `options.side_outputs`).
    pub expect_side: Vec<(String, PathBuf)>,
    /// How to run it.
    pub options: TestOptions,
    /// Snapshot every N records and go on in a fresh, restored instance.
    pub restore_every: Option<usize>,
    /// Restore into this many instances every other time (from one, and back to one).
    pub restore_parallelism: u16,
}

/// Records per `process` call (a batch never spans a restore).
const BATCH: usize = 64;

/// The outputs of one run, and where it was restored.
struct Run {
    outputs: Vec<String>,
    /// What went to side outputs: side output, record.
    side: Vec<(String, String)>,
    /// (outputs emitted before the restore, records processed before it).
    restores: Vec<(usize, usize)>,
}

/// A line of the input file.
#[derive(Debug, Clone, PartialEq)]
enum Line {
    /// A record.
    Record(String),
    /// `#watermark MS`.
    Watermark(i64),
    /// `#processing-time MS`.
    ProcessingTime(i64),
}

/// The input file's line `number` (1-based).
fn parse_line(text: &str, number: usize) -> Result<Line, String> {
    let Some(control) = text.trim().strip_prefix('#') else {
        return Ok(Line::Record(text.to_string()));
    };
    let (what, ms) = control.split_once(' ').unwrap_or((control, ""));
    let ms = ms.trim().parse::<i64>();
    match (what, ms) {
        ("watermark", Ok(ms)) => Ok(Line::Watermark(ms)),
        ("processing-time", Ok(ms)) => Ok(Line::ProcessingTime(ms)),
        _ => Err(format!(
            "input line {number}: `{text}` is neither a record nor `#watermark MS` or \
             `#processing-time MS` (MS: milliseconds since the Unix epoch)"
        )),
    }
}

/// Feeds `lines` to a fresh instance; every `restore_every` records, continues in
/// fresh instances restored from snapshots (alternately one and `restore_parallelism`).
fn drive(args: &TestArgs, lines: &[Line], restore_every: Option<usize>) -> Result<Run, TestError> {
    let mut ops = vec![TestOperator::load(&args.component, args.options.clone())?];
    let mut run = Run {
        outputs: Vec::new(),
        side: Vec::new(),
        restores: Vec::new(),
    };
    let records = lines
        .iter()
        .filter(|l| matches!(l, Line::Record(_)))
        .count();
    let (mut at, mut done) = (0, 0);
    while at < lines.len() {
        // Time moves every instance (a watermark reaches every subtask).
        match &lines[at] {
            Line::Watermark(ms) => {
                for op in &mut ops {
                    run.outputs.extend(op.advance_watermark(*ms)?);
                    run.side.extend(op.take_side_outputs());
                }
                at += 1;
                continue;
            }
            Line::ProcessingTime(ms) => {
                for op in &mut ops {
                    run.outputs.extend(op.advance_processing_time(*ms)?);
                    run.side.extend(op.take_side_outputs());
                }
                at += 1;
                continue;
            }
            Line::Record(_) => {}
        }
        let boundary = restore_every.map_or(records, |n| (done / n + 1) * n);
        let take = BATCH.min(boundary - done);
        let batch: Vec<&str> = (lines[at..].iter())
            .map_while(|line| match line {
                Line::Record(record) => Some(record.as_str()),
                _ => None,
            })
            .take(take)
            .collect();
        if let [op] = ops.as_mut_slice() {
            run.outputs.extend(op.push_batch(&batch)?);
            run.side.extend(op.take_side_outputs());
        } else {
            // One record at a time, so the outputs keep the input's order.
            let parallelism = ops.len() as u16;
            for (offset, record) in batch.iter().enumerate() {
                let subtask = ops[0].subtask_of(record, done + offset + 1, parallelism)?;
                run.outputs.extend(ops[subtask].push(record)?);
                run.side.extend(ops[subtask].take_side_outputs());
            }
        }
        at += batch.len();
        done += batch.len();
        if done == boundary && done < records {
            let snapshots = ops
                .iter()
                .map(TestOperator::snapshot)
                .collect::<Result<Vec<_>, _>>()?;
            let next = match ops.len() {
                1 => args.restore_parallelism.max(1),
                _ => 1,
            };
            ops = ops[0].rescaled(&snapshots, next)?;
            run.restores.push((run.outputs.len(), done));
        }
    }
    for mut op in ops {
        run.outputs.extend(op.close()?);
        run.side.extend(op.take_side_outputs());
    }
    Ok(run)
}

fn lines(path: &Path, what: &str) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the {what} file {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect())
}

/// Runs the test; `Ok` holds the summary for a pass, `Err` what failed, for the user.
pub fn run(args: &TestArgs) -> Result<String, String> {
    let input = (lines(&args.input, "input")?.iter().enumerate())
        .map(|(i, text)| parse_line(text, i + 1))
        .collect::<Result<Vec<Line>, String>>()?;
    let records = input
        .iter()
        .filter(|l| matches!(l, Line::Record(_)))
        .count();
    let expected = lines(&args.expect, "expected output")?;
    if args.restore_every == Some(0) {
        return Err("--restore-every must be at least 1".into());
    }
    let most = args.options.max_parallelism;
    if !(1..=most).contains(&args.restore_parallelism) {
        return Err(format!(
            "--restore-parallelism must be between 1 and the max parallelism ({most})"
        ));
    }
    let sides = (args.expect_side.iter())
        .map(|(name, file)| {
            Ok((
                name.as_str(),
                file.as_path(),
                lines(file, "expected side output")?,
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let straight = drive(args, &input, None).map_err(|e| e.to_string())?;
    if let Comparison::Different { diff, .. } = compare(&expected, &straight.outputs) {
        return Err(format!(
            "the outputs differ from {}: {diff}",
            args.expect.display()
        ));
    }
    compare_sides(&sides, &straight)?;
    let mut summary = format!("{records} records, {} outputs as expected", expected.len());
    for (name, _, expected) in &sides {
        let _ = write!(
            summary,
            ", {} to side output `{name}` as expected",
            expected.len()
        );
    }
    if let Some(n) = args.restore_every {
        let restored = drive(args, &input, Some(n)).map_err(|e| {
            format!(
                "{e}\nThe operator ran without restores but failed when restored from a \
                 snapshot every {n} records: it behaves differently after a restore"
            )
        })?;
        compare_sides(&sides, &restored).map_err(|e| {
            format!(
                "{e}\n(with a restore every {n} records: it behaves differently after a restore)"
            )
        })?;
        if let Comparison::Different { first, diff } = compare(&expected, &restored.outputs) {
            let after = restored
                .restores
                .iter()
                .rev()
                .find(|(outputs, _)| *outputs <= first)
                .map(|(_, records)| *records);
            let mut message =
                String::from("the outputs change when the operator is restored from a snapshot");
            if let Some(records) = after {
                let _ = write!(
                    message,
                    " (first at output {}, after the restore at record {records})",
                    first + 1
                );
            }
            let _ = write!(
                message,
                ": the operator keeps state outside Weir's managed state (a global, a field \
                 of the operator object) or behaves differently after a restore. Keep \
                 everything that must survive a failure in value, list or map state.\n{diff}"
            );
            return Err(message);
        }
        let _ = match args.restore_parallelism {
            0 | 1 => write!(
                summary,
                ", also when restored into a fresh instance every {n} records ({} restores)",
                restored.restores.len()
            ),
            p => write!(
                summary,
                ", also when restored every {n} records, alternately into 1 and {p} \
                 instances ({} restores)",
                restored.restores.len()
            ),
        };
    }
    Ok(summary)
}

/// Checks what `run` sent to each side output against its expected records.
fn compare_sides(sides: &[(&str, &Path, Vec<String>)], run: &Run) -> Result<(), String> {
    for (name, file, expected) in sides {
        let got: Vec<String> = (run.side.iter())
            .filter(|(side, _)| side == name)
            .map(|(_, record)| record.clone())
            .collect();
        if let Comparison::Different { diff, .. } = compare(expected, &got) {
            return Err(format!(
                "side output `{name}` differs from {}: {diff}",
                file.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_lines_are_told_from_records_and_bad_ones_are_refused() {
        assert_eq!(parse_line("#watermark 1500", 1), Ok(Line::Watermark(1500)));
        assert_eq!(
            parse_line(" #processing-time -3", 1),
            Ok(Line::ProcessingTime(-3))
        );
        assert_eq!(
            parse_line("{\"a\":1}", 1),
            Ok(Line::Record("{\"a\":1}".into()))
        );
        let bad = parse_line("#watermark soon", 4).unwrap_err();
        assert!(
            bad.contains("input line 4") && bad.contains("#watermark MS"),
            "{bad}"
        );
    }
}
