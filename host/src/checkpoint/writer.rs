//! An operator subtask's snapshot writer: the asynchronous part of a checkpoint. The task
//! hands it a point-in-time copy of its state at a barrier and goes on processing; the
//! writer turns the copy into checkpoint files on a thread of its own and acknowledges
//! (or declines) through the task's [`Handle`]. When the task finishes, the writer hands
//! the coordinator its final state.
//!
//! An unaligned snapshot's write also waits for the snapshot's channel state (the task
//! hands it over once every input has delivered the barrier), writes it as
//! `<operator>-<subtask>.channels`, and only then acknowledges.
//!
//! Invariants: a writer's threads are joined before it is dropped, so no write of a
//! failed attempt lands in a checkpoint folder a later attempt reuses; writes of one
//! task take turns on its `Uploads`, so each sees what the previous one copied; the final
//! state is handed over only after every write's acknowledgement was sent.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};

use super::channel_state::ChannelState;
use super::coordinator::{AckState, Alignment, Finished, Handle, TaskId};
use super::metadata::CanonicalFile;
use super::shared::Uploads;
use super::{CheckpointId, StateFile, Store};
use crate::state::KeyedCopy;
use crate::state::operator::OperatorState;

/// A point-in-time copy of a subtask's state, taken at a barrier (cheap: the keyed
/// state's copy is copy-on-write or a RocksDB checkpoint).
pub struct StateCopy {
    /// The keyed state.
    pub keyed: KeyedCopy,
    /// The operator state.
    pub operator_state: OperatorState,
}

/// Takes a copy of a finished task's state for each later checkpoint.
pub type FinalCopy = Box<dyn FnMut() -> StateCopy + Send>;

/// One operator subtask's snapshot writer.
pub struct SnapshotWriter {
    store: Store,
    handle: Handle,
    /// The subtask's file names' stem: `<operator>-<subtask>`.
    name: String,
    /// The files of this task's backend already in a checkpoint (incremental only).
    uploads: Option<Arc<Mutex<Uploads>>>,
    threads: Vec<JoinHandle<()>>,
    /// Unaligned snapshots whose writes wait for their channel state.
    awaiting: Vec<(CheckpointId, Sender<ChannelState>)>,
}

/// How a snapshot met its barrier, as the task saw it.
#[derive(Debug, Clone, Copy)]
pub struct Met {
    /// Whether it is unaligned (its channel state follows).
    pub unaligned: bool,
    /// From the first barrier on any input to the snapshot.
    pub alignment: Duration,
}

impl SnapshotWriter {
    /// The writer of `task`, into `store`; `incremental`: copy only new files of a
    /// backend that has its own (RocksDB).
    pub fn new(store: Store, handle: Handle, task: &TaskId, incremental: bool) -> SnapshotWriter {
        SnapshotWriter {
            store,
            handle,
            name: format!("{}-{}", task.node, task.subtask),
            uploads: incremental
                .then(|| Arc::new(Mutex::new(Uploads::new(&task.node, task.subtask)))),
            threads: Vec::new(),
            awaiting: Vec::new(),
        }
    }

    /// Writes `copy` into checkpoint `id` on a thread of its own (and, for an unaligned
    /// snapshot, the channel state [`SnapshotWriter::channel_state`] hands over), then
    /// acknowledges it (with `sync`, how long the task stopped to take the copy) or
    /// declines it.
    pub fn write_async(&mut self, id: CheckpointId, copy: StateCopy, sync: Duration, met: Met) {
        self.threads.retain(|t| !t.is_finished());
        // Older snapshots still waiting were overtaken by this one: they never complete.
        self.awaiting.retain(|(waiting, _)| *waiting > id);
        let in_flight: Option<Receiver<ChannelState>> = met.unaligned.then(|| {
            let (tx, rx) = bounded(1);
            self.awaiting.push((id, tx));
            rx
        });
        let (store, handle, name) = (self.store.clone(), self.handle.clone(), self.name.clone());
        let uploads = self.uploads.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("chk-{name}"))
            .spawn(move || {
                let written = write(&store, id, &name, copy, uploads.as_ref(), sync);
                let channel_state = match in_flight.map(|rx| rx.recv()) {
                    None => Ok(None),
                    Some(Ok(state)) => write_channel_state(&store, id, &name, &state),
                    Some(Err(_)) => Err("its unaligned snapshot was overtaken by a newer \
                                          checkpoint's before its channel state was complete"
                        .to_string()),
                };
                let alignment = |channel_state| Alignment {
                    unaligned: met.unaligned,
                    duration: met.alignment,
                    channel_state,
                };
                match written.and_then(|state| Ok((state, channel_state?))) {
                    Ok((state, file)) => handle.ack_aligned(id, state, alignment(file)),
                    Err(reason) => handle.decline(id, reason),
                }
            });
        match spawned {
            Ok(thread) => self.threads.push(thread),
            Err(e) => {
                let reason = format!("cannot start a thread to write the state: {e}");
                self.handle.decline(id, reason);
            }
        }
    }

    /// Unaligned snapshot `id`'s channel state is complete: its write goes on.
    pub fn channel_state(&mut self, id: CheckpointId, state: ChannelState) {
        if let Some(at) = self.awaiting.iter().position(|(waiting, _)| *waiting == id) {
            let (_, tx) = self.awaiting.remove(at);
            let _ = tx.send(state);
        }
    }

    /// The task has finished: waits for every write, then hands the coordinator its final
    /// state, which `copy` takes anew for each later checkpoint.
    pub fn finish(mut self, copy: FinalCopy) {
        self.awaiting.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let last = FinalState {
            store: self.store.clone(),
            name: self.name.clone(),
            uploads: self.uploads.clone(),
            copy,
        };
        self.handle.clone().finished(Box::new(last));
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        // A write still waiting for channel state declines instead.
        self.awaiting.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A finished operator subtask's state, written into every checkpoint after its end.
struct FinalState {
    store: Store,
    name: String,
    uploads: Option<Arc<Mutex<Uploads>>>,
    copy: FinalCopy,
}

impl Finished for FinalState {
    fn state(&mut self, id: CheckpointId) -> Result<AckState, String> {
        let copy = (self.copy)();
        let uploads = self.uploads.as_ref();
        write(&self.store, id, &self.name, copy, uploads, Duration::ZERO)
    }
}

/// Writes a subtask's state copy into checkpoint `id`: the keyed state as only the new
/// files of a backend that has its own (with `uploads`), else one canonical file; the
/// operator state, if any, as a file of its own. `sync` is how long the task stopped to
/// take the copy.
fn write(
    store: &Store,
    id: CheckpointId,
    name: &str,
    copy: StateCopy,
    uploads: Option<&Arc<Mutex<Uploads>>>,
    sync: Duration,
) -> Result<AckState, String> {
    let operator_state: Option<CanonicalFile> = match copy.operator_state.is_empty() {
        true => None,
        false => {
            let bytes = copy.operator_state.encode();
            let file = store.write_file(id.0, &format!("{name}.opstate"), &bytes);
            Some(file.map_err(|e| e.to_string())?)
        }
    };
    let keyed = copy.keyed;
    let file: StateFile = match (keyed.backend.native_files(), uploads) {
        (Some(native), Some(uploads)) => {
            // Writes of one task take turns: each sees what the previous one copied.
            let mut uploads = uploads.lock().unwrap_or_else(|e| e.into_inner());
            store
                .write_incremental(id.0, name, &keyed, native, &mut uploads)
                .map_err(|e| e.to_string())?
        }
        _ => {
            let bytes = keyed.encode().map_err(|e| e.to_string())?;
            store
                .write_state(id.0, &format!("{name}.state"), &bytes)
                .map_err(|e| e.to_string())?
        }
    };
    Ok(AckState::Operator {
        file,
        operator_state,
        sync,
    })
}

/// Writes a task's channel state into checkpoint `id` as `<name>.channels`: none if no
/// record was in flight.
pub fn write_channel_state(
    store: &Store,
    id: CheckpointId,
    name: &str,
    state: &ChannelState,
) -> Result<Option<CanonicalFile>, String> {
    if state.channels.is_empty() {
        return Ok(None);
    }
    let file = store.write_file(id.0, &format!("{name}.channels"), &state.encode());
    file.map(Some).map_err(|e| e.to_string())
}
