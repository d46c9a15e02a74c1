//! Choosing the restore point: the job's latest completed checkpoint whose every file is
//! intact, or the one before it where that keeps exactly-once, or a savepoint the user
//! named; each checked against the job before anything is restored.
//!
//! Invariant: a checkpoint is never restored if output committed after it exists (it
//! would be emitted again), and never if any file it lists fails its recorded size or
//! CRC.

use std::path::{Path, PathBuf};

use super::{Failure, sink};
use crate::checkpoint::{Metadata, Store, files, storage};
use crate::job::{Job, SinkKind};

/// A completed checkpoint or savepoint to restore, and its folder.
#[derive(Debug, Clone)]
pub struct Restore {
    /// The folder holding `_metadata` and the state files.
    pub dir: PathBuf,
    /// Its metadata.
    pub metadata: Metadata,
}

/// The job's latest completed checkpoint whose files are all intact (sizes and CRCs as
/// recorded), checked against the job.
///
/// When the latest is damaged, the one before it is restored instead only if that keeps
/// exactly-once: the damaged checkpoint's metadata is readable and none of the output
/// it commits has been committed yet (no completed checkpoint lies between the two, so
/// nothing else was committed since the older one). Otherwise the run fails, naming the
/// damaged file and what the user can resume from.
pub(super) fn latest(job: &Job, store: Option<&Store>) -> Result<Option<Restore>, Failure> {
    let Some(store) = store else {
        return Ok(None);
    };
    let completed = store.completed_newest_first()?;
    let Some(&newest) = completed.first() else {
        return Ok(None);
    };
    let dir = store.checkpoint_dir(newest);
    let read = files::read_metadata(&dir);
    let damage = match &read {
        Ok(metadata) => storage::verify(&dir, metadata).err(),
        Err(_) => None,
    };
    let (damage, metadata) = match (read, damage) {
        (Ok(_), None) => return own_checkpoint(job, store, newest),
        (Ok(metadata), Some(damage)) => (damage, Some(metadata)),
        (Err(damage), _) => (damage, None),
    };
    let older = completed.get(1).map(|&id| (id, store.checkpoint_dir(id)));
    let intact = older.as_ref().filter(|(_, dir)| {
        files::read_metadata(dir).is_ok_and(|m| storage::verify(dir, &m).is_ok())
    });
    let refuse = |advice: String| {
        Err(Failure::Damaged(format!(
            "checkpoint {newest} ({}) is damaged and is not restored: {damage}. {advice}",
            dir.display()
        )))
    };
    match (intact, metadata) {
        (Some((id, older)), Some(metadata)) => match committed_output(job, &metadata) {
            None => {
                let aside = store.set_aside(newest)?;
                eprintln!(
                    "weir: checkpoint {newest} is damaged ({damage}); restoring checkpoint {id} \
                     instead, which keeps exactly-once as checkpoint {newest} committed no \
                     output. The damaged checkpoint is kept in {}",
                    aside.display()
                );
                own_checkpoint(job, store, *id)
            }
            Some(part) => refuse(format!(
                "Checkpoint {id} is intact, but output checkpoint {newest} committed ({part}) \
                 would be emitted again from it. To resume from it anyway, accepting that \
                 duplicate output: host run --from-savepoint {}",
                older.display()
            )),
        },
        (Some((id, older)), None) => refuse(format!(
            "Without its metadata the host cannot tell what it committed, so checkpoint {id} \
             is not restored in its place. To resume from it, accepting possible duplicate \
             output: host run --from-savepoint {}",
            older.display()
        )),
        (None, _) => refuse(format!(
            "No older intact checkpoint exists (keep more with [checkpoint] retain). Resume \
             from a savepoint with host run --from-savepoint <folder> (the job's are in {}), \
             or delete {} to start the job from the beginning",
            store.root().join("savepoints").display(),
            store.root().display()
        )),
    }
}

/// The job's own checkpoint `id`, unless output committed after it exists: then a
/// later completed checkpoint lost its metadata (deleted or damaged), and restoring this
/// one would emit that output again.
fn own_checkpoint(job: &Job, store: &Store, id: u64) -> Result<Option<Restore>, Failure> {
    let dir = store.checkpoint_dir(id);
    let restore = open_restore(job, &dir, true)?;
    for (name, states) in &restore.metadata.sinks {
        let Some(SinkKind::File { path }) =
            job.sinks.iter().find(|s| &s.name == name).map(|s| &s.kind)
        else {
            continue;
        };
        let after = sink::committed_after(path, states).map_err(|error| Failure::Io {
            task: format!("sink `{name}`"),
            what: format!("cannot list {}", path.display()),
            error,
        })?;
        if let Some(part) = after {
            return Err(Failure::Damaged(format!(
                "checkpoint {id} ({}) is the latest complete checkpoint, but sink `{name}` \
                 has output committed after it ({part} in {}): a later checkpoint's \
                 metadata was deleted or damaged. Restoring checkpoint {id} would emit that \
                 output again; to resume from it anyway, accepting the duplicates: \
                 host run --from-savepoint {}",
                dir.display(),
                path.display(),
                dir.display()
            )));
        }
    }
    Ok(Some(restore))
}

/// A part file that `metadata` commits and that is already committed, if any.
fn committed_output(job: &Job, metadata: &Metadata) -> Option<String> {
    metadata.sinks.iter().find_map(|(name, states)| {
        let sink = job.sinks.iter().find(|s| &s.name == name)?;
        let SinkKind::File { path } = &sink.kind else {
            return None;
        };
        states.iter().flat_map(|s| &s.pending).find_map(|pending| {
            let committed = path.join(crate::dataflow::sink::committed_name(pending));
            committed.exists().then(|| committed.display().to_string())
        })
    })
}

/// Opens the checkpoint or savepoint in `dir` for `job`: its maximum parallelism must
/// match, and (unless allowed) it must hold no state of operators the job lacks.
pub(super) fn open_restore(
    job: &Job,
    dir: &Path,
    allow_non_restored_state: bool,
) -> Result<Restore, Failure> {
    let metadata = crate::checkpoint::files::read_metadata(dir)?;
    let refuse = |reason: String| {
        Err(Failure::Restore {
            path: dir.to_path_buf(),
            reason,
        })
    };
    if metadata.max_parallelism != job.max_parallelism {
        return refuse(format!(
            "taken with max_parallelism {}, but the job has {}: the maximum parallelism is fixed for the life of a job",
            metadata.max_parallelism, job.max_parallelism
        ));
    }
    let gone: Vec<String> = metadata
        .operators
        .keys()
        .filter(|name| !job.operators.iter().any(|o| &o.name == *name))
        .map(|name| format!("`{name}`"))
        .collect();
    if !gone.is_empty() && !allow_non_restored_state {
        return refuse(format!(
            "it holds state of operators the job no longer has: {}. Pass --allow-non-restored-state to start without it",
            gone.join(", ")
        ));
    }
    Ok(Restore {
        dir: dir.to_path_buf(),
        metadata,
    })
}
