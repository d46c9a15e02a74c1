//! A folder owned for a while and deleted when dropped: a subtask's RocksDB working
//! state (rebuilt from checkpoints), the scratch space of a restore, a benchmark's runs.

use std::io;
use std::path::{Path, PathBuf};

/// An empty folder, deleted (with everything in it) when dropped.
#[derive(Debug)]
pub struct Folder(PathBuf);

impl Folder {
    /// Creates `path` empty, deleting whatever was there first.
    pub fn create(path: PathBuf) -> io::Result<Folder> {
        match std::fs::remove_dir_all(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::create_dir_all(&path)?;
        Ok(Folder(path))
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
