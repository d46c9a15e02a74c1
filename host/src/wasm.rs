//! The Wasm layer: loading operator components, sandboxing them, and serving their
//! imports (`state`, `log`) from a state backend.
//!
//! Invariant: a guest reaches nothing but its own keyed state (for the keys of the batch
//! it is processing), its operator state, the host's log, and what its operator's
//! [`Grants`](crate::job::Grants) give it. It gets a WASI context with no other directory or environment
//! value, no sockets and frozen clocks, and runs under its [`Limits`]. A guest failure is an [`OperatorError`], never
//! a host panic.

mod bindings;
pub mod cache;
mod core_module;
mod flat;
mod imports;
mod instance;
mod sandbox;
mod side_outputs;
pub mod timers;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

pub(crate) use instance::excerpt;
pub use instance::{Batch, OperatorInstance, Output, TaskInfo};

use crate::job::Limits;

/// The WIT package this host speaks: what every operator component must implement.
pub const WIT_PACKAGE: &str = "weir:operator@0.3.0";

/// `host --version`: the host's version and the WIT package it speaks.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (WIT weir:operator@0.3.0)");

/// Shared compiler and linker configuration for every operator of a process: one engine
/// per Wasm stack size in use (the stack limit is an engine setting), and the ticker
/// that bounds every call's CPU time.
#[derive(Clone)]
pub struct Runtime {
    engines: Arc<Mutex<HashMap<usize, Engine>>>,
    cache: cache::Cache,
}

/// An engine and its linker.
#[derive(Clone)]
struct Engine {
    engine: wasmtime::Engine,
    linker: Arc<wasmtime::component::Linker<imports::GuestCtx>>,
}

/// A component that was read, compiled and checked against the `weir:operator` world.
#[derive(Clone)]
pub struct LoadedComponent {
    path: PathBuf,
    engine: wasmtime::Engine,
    pre: bindings::OperatorPre<imports::GuestCtx>,
}

/// What can go wrong with an operator's component or its code.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The file is missing, unreadable or not a valid component.
    #[error("{}: {reason}", path.display())]
    Load {
        /// The component file.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// The component does not implement the `weir:operator` world this host speaks.
    #[error(
        "{}: the component does not implement the world `weir:operator/operator@0.3.0`: {detail}. \
         Rebuild it against the WIT this host speaks (`host --version` names it; `host new` \
         writes it into a project's weir/wit, the Weir repository has it in wit/)",
        path.display()
    )]
    Contract {
        /// The component file.
        path: PathBuf,
        /// What is missing or mismatched.
        detail: String,
    },
    /// The guest trapped (a panic, `unreachable`, a misuse of the state API, …).
    #[error("operator `{operator}` trapped: {message}")]
    Trap {
        /// The operator's name.
        operator: String,
        /// The guest's last error message, then the trap.
        message: String,
    },
    /// The guest returned an error.
    #[error("operator `{operator}` failed{}: {message}", on_record.as_ref().map(|r| format!(" on record {r}")).unwrap_or_default())]
    Failed {
        /// The operator's name.
        operator: String,
        /// The guest's message.
        message: String,
        /// The record that failed, as text, when the guest named it.
        on_record: Option<String>,
        /// Index in the batch of the record that failed, when the guest named it.
        index: Option<usize>,
    },
}

impl Runtime {
    /// A runtime for operator components, with its epoch ticker (a thread that ends
    /// when the last clone of the runtime is dropped).
    pub fn new() -> Result<Runtime, wasmtime::Error> {
        let runtime = Runtime {
            engines: Arc::new(Mutex::new(HashMap::new())),
            cache: cache::Cache::from_env(),
        };
        // One engine up front, so that a broken wasmtime setup fails here.
        runtime.engine(Limits::default().stack_bytes)?;
        let engines = Arc::downgrade(&runtime.engines);
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || tick(&engines))
            .map_err(|e| wasmtime::Error::msg(format!("cannot start the epoch ticker: {e}")))?;
        Ok(runtime)
    }

    /// The engine for guests with `stack_bytes` of Wasm stack, made on first use.
    fn engine(&self, stack_bytes: usize) -> Result<Engine, wasmtime::Error> {
        let mut engines = self.engines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(engine) = engines.get(&stack_bytes) {
            return Ok(engine.clone());
        }
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true).max_wasm_stack(stack_bytes);
        // For profiling the guests: `perf` names their compiled functions from
        // /tmp/perf-<pid>.map.
        if std::env::var_os("WEIR_PERF_MAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = wasmtime::Engine::new(&config)?;
        let mut linker = wasmtime::component::Linker::new(&engine);
        imports::add_to_linker(&mut linker)?;
        let engine = Engine {
            engine,
            linker: Arc::new(linker),
        };
        engines.insert(stack_bytes, engine.clone());
        Ok(engine)
    }

    /// Reads, compiles and checks the component at `path`, for instances with `limits`.
    pub fn load(&self, path: &Path, limits: &Limits) -> Result<LoadedComponent, OperatorError> {
        let load_error = |reason: String| OperatorError::Load {
            path: path.to_path_buf(),
            reason,
        };
        let engine = self
            .engine(limits.stack_bytes)
            .map_err(|e| load_error(format!("cannot configure the Wasm engine: {e:#}")))?;
        let bytes = std::fs::read(path).map_err(|e| {
            load_error(match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "component file not found: build the operator first (see README, \"Build\")"
                        .into()
                }
                _ => format!("cannot read the component file: {e}"),
            })
        })?;
        let bytes = match bytes.get(..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => {
                core_module::componentize(&bytes).map_err(load_error)?
            }
            Some([0, b'a', b's', b'm', ..]) => bytes,
            _ => {
                return Err(load_error(
                    "not a WebAssembly file (no `\\0asm` header)".into(),
                ));
            }
        };
        let component = self
            .cache
            .component(&engine.engine, &bytes)
            .map_err(|e| load_error(format!("invalid component: {e:#}")))?;
        let contract = |e: wasmtime::Error| OperatorError::Contract {
            path: path.to_path_buf(),
            detail: format!("{e:#}"),
        };
        let instance_pre = engine
            .linker
            .instantiate_pre(&component)
            .map_err(contract)?;
        let pre = bindings::OperatorPre::new(instance_pre).map_err(contract)?;
        Ok(LoadedComponent {
            path: path.to_path_buf(),
            engine: engine.engine,
            pre,
        })
    }
}

/// Advances every engine's epoch each [`sandbox::TICK`] while the runtime lives.
fn tick(engines: &Weak<Mutex<HashMap<usize, Engine>>>) {
    while let Some(engines) = engines.upgrade() {
        for engine in engines.lock().unwrap_or_else(|e| e.into_inner()).values() {
            engine.engine.increment_epoch();
        }
        drop(engines);
        std::thread::sleep(sandbox::TICK);
    }
}

impl LoadedComponent {
    /// The file the component was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
