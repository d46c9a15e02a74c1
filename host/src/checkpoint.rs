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
pub use files::CheckpointError;
pub use storage::Store;
