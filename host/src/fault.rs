//! Crashes on purpose, for the tests of what a crash at one exact moment does (the
//! moments a `kill -9` hits only by luck). `WEIR_FAULT=<point>:<n>[:<subtask>]` ends
//! the process, as abruptly as it can short of a signal, at:
//!
//! - `after-metadata:<n>`: checkpoint *n*'s metadata is durable, nothing committed yet;
//! - `in-transaction:<n>:<subtask>`: an exactly-once Kafka sink subtask has written its
//!   part *n* into a transaction, not yet committed.
//!
//! Not for users: nothing else reads the variable.

use std::sync::OnceLock;

/// A moment a test can crash the process at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// After a checkpoint's metadata is written, before anything is committed.
    AfterMetadata,
    /// Inside an exactly-once Kafka sink's transaction, before its commit.
    InTransaction,
}

struct Fault {
    point: Point,
    n: u64,
    subtask: Option<usize>,
}

fn fault() -> Option<&'static Fault> {
    static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
    FAULT
        .get_or_init(|| {
            let spec = std::env::var("WEIR_FAULT").ok()?;
            let mut parts = spec.split(':');
            let point = match parts.next()? {
                "after-metadata" => Point::AfterMetadata,
                "in-transaction" => Point::InTransaction,
                _ => return None,
            };
            let n = parts.next()?.parse().ok()?;
            let subtask = parts.next().and_then(|s| s.parse().ok());
            Some(Fault { point, n, subtask })
        })
        .as_ref()
}

/// Ends the process if `WEIR_FAULT` names this moment: `point` for `n` (a checkpoint or
/// a part number), in `subtask` where the point has one.
pub fn crash_if(point: Point, n: u64, subtask: Option<usize>) {
    if let Some(f) = fault()
        && f.point == point
        && f.n == n
        && (f.subtask.is_none() || f.subtask == subtask)
    {
        eprintln!("weir: WEIR_FAULT: crashing on purpose at {point:?} {n}");
        std::process::exit(134);
    }
}
