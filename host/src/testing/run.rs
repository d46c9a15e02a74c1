//! `host test`: an operator against an input file and the output it must produce, run
//! once straight through and, with `--restore-every N`, once more restored into a fresh
//! instance every N records.

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
}

/// Records per `process` call (a batch never spans a restore).
const BATCH: usize = 64;

/// The outputs of one run, and where it was restored.
struct Run {
    outputs: Vec<String>,
    /// (outputs emitted before the restore, records processed before it).
    restores: Vec<(usize, usize)>,
}

/// Feeds `records` to a fresh instance; every `restore_every` records, continues in a
/// fresh instance restored from a snapshot.
fn drive(
    args: &TestArgs,
    records: &[String],
    restore_every: Option<usize>,
) -> Result<Run, TestError> {
    let mut op = TestOperator::load(&args.component, args.options.clone())?;
    let mut run = Run {
        outputs: Vec::new(),
        restores: Vec::new(),
    };
    let mut start = 0;
    while start < records.len() {
        let boundary = restore_every.map_or(records.len(), |n| (start / n + 1) * n);
        let end = (start + BATCH).min(boundary).min(records.len());
        let batch: Vec<&str> = records[start..end].iter().map(String::as_str).collect();
        run.outputs.extend(op.push_batch(&batch)?);
        start = end;
        if end == boundary && end < records.len() {
            op = op.restored(&op.snapshot()?)?;
            run.restores.push((run.outputs.len(), end));
        }
    }
    op.close()?;
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
        let _ = write!(
            summary,
            ", also when restored into a fresh instance every {n} records ({} restores)",
            restored.restores.len()
        );
    }
    Ok(summary)
}
