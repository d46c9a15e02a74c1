//! Checkpoints on disk, the coordinator that takes them, and the restart strategies that
//! decide whether a failed job goes back to one.
//!
//! Layout: `<dir>/<job>/chk-<n>/` holds one state file per operator subtask and, once
//! the checkpoint is complete, `_metadata`, written last and atomically (temp file,
//! fsync, rename, directory fsync). A `chk-<n>` without `_metadata` was never completed
//! and is never restored. Every file carries a format version and a checksum.
//! Incremental RocksDB checkpoints keep their SST files in `<dir>/<job>/shared/`,
//! reference-counted across checkpoints (see `shared`).

pub mod channel_state;
pub mod coordinator;
pub mod files;
pub mod metadata;
pub mod restart;
pub mod shared;
pub mod storage;
pub mod writer;

pub use metadata::{Metadata, SinkState, SourceSplit, StateFile};

/// A checkpoint's number; checkpoints are numbered 1, 2, 3, … in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckpointId(pub u64);

/// A checkpoint barrier, as the coordinator triggers it at the sources and every task
/// forwards it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Barrier {
    /// Its checkpoint.
    pub id: CheckpointId,
    /// When a task that is still aligning it gives up and snapshots unaligned (trigger
    /// time + `aligned_timeout_ms`); none: it stays aligned (a savepoint, or unaligned
    /// checkpoints are off).
    pub unaligned_at: Option<std::time::Instant>,
}

impl Barrier {
    /// A barrier that is always aligned.
    pub fn aligned(id: CheckpointId) -> Barrier {
        Barrier {
            id,
            unaligned_at: None,
        }
    }

    /// Whether a task that meets it at `now` snapshots unaligned.
    pub fn is_unaligned_at(&self, now: std::time::Instant) -> bool {
        self.unaligned_at.is_some_and(|at| now >= at)
    }
}
pub use files::CheckpointError;
pub use storage::Store;
