//! The Weir host: runs streaming dataflows whose operators are WebAssembly components.
//!
//! Layers, from the edge inwards: [`cli`] (commands, exit codes) → [`dataflow`] (tasks,
//! channels, recovery) → [`checkpoint`] (coordinator, storage, restart strategies) and
//! [`wasm`] (components, sandbox, imports) → [`state`] (backends, snapshots). [`job`] and
//! [`record`] are pure models shared by all of them.

pub mod author;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod control;
pub mod dataflow;
#[doc(hidden)]
pub mod fault;
pub mod folder;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod inspect;
pub mod job;
pub mod kafka;
pub mod record;
pub mod small_bytes;
pub mod state;
pub mod testing;
pub mod wasm;
pub mod wire;
