//! `host test`: an operator against an input file and the output it must produce, run
//! once straight through and, with `--restore-every N`, once more restored into a fresh
//! instance every N records; with `--restore-parallelism P` the restores alternate
//! between one instance and P (records routed by key group, as the host routes them).

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
    /// (outputs emitted before the restore, records processed before it).
    restores: Vec<(usize, usize)>,
}

/// Feeds `records` to a fresh instance; every `restore_every` records, continues in
/// fresh instances restored from snapshots (alternately one and `restore_parallelism`).
fn drive(
    args: &TestArgs,
    records: &[String],
    restore_every: Option<usize>,
) -> Result<Run, TestError> {
    let mut ops = vec![TestOperator::load(&args.component, args.options.clone())?];
    let mut run = Run {
        outputs: Vec::new(),
        restores: Vec::new(),
    };
    let mut start = 0;
    while start < records.len() {
        let boundary = restore_every.map_or(records.len(), |n| (start / n + 1) * n);
        let end = (start + BATCH).min(boundary).min(records.len());
        if let [op] = ops.as_mut_slice() {
            let batch: Vec<&str> = records[start..end].iter().map(String::as_str).collect();
            run.outputs.extend(op.push_batch(&batch)?);
        } else {
            // One record at a time, so the outputs keep the input's order.
            let parallelism = ops.len() as u16;
            for (index, record) in records.iter().enumerate().take(end).skip(start) {
                let subtask = ops[0].subtask_of(record, index + 1, parallelism)?;
                run.outputs.extend(ops[subtask].push(record)?);
            }
        }
        start = end;
        if end == boundary && end < records.len() {
            let snapshots = ops
                .iter()
                .map(TestOperator::snapshot)
                .collect::<Result<Vec<_>, _>>()?;
            let next = match ops.len() {
                1 => args.restore_parallelism.max(1),
                _ => 1,
            };
            ops = ops[0].rescaled(&snapshots, next)?;
            run.restores.push((run.outputs.len(), end));
        }
    }
    for op in ops {
        op.close()?;
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
    let records = lines(&args.input, "input")?;
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
    let straight = drive(args, &records, None).map_err(|e| e.to_string())?;
    if let Comparison::Different { diff, .. } = compare(&expected, &straight.outputs) {
        return Err(format!(
            "the outputs differ from {}: {diff}",
            args.expect.display()
        ));
    }
    let mut summary = format!(
        "{} records, {} outputs as expected",
        records.len(),
        expected.len()
    );
    if let Some(n) = args.restore_every {
        let restored = drive(args, &records, Some(n)).map_err(|e| {
            format!(
                "{e}\nThe operator ran without restores but failed when restored from a \
                 snapshot every {n} records: it behaves differently after a restore"
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
