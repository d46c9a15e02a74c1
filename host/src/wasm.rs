//! The Wasm layer: loading operator components, sandboxing them, and serving their
//! imports (`state`, `log`) from a state backend.
//!
//! Invariant: a guest reaches nothing but its own keyed state (for the keys of the batch
//! it is processing) and the host's log. It gets a WASI context with no directories, no
//! environment, no sockets and frozen clocks. A guest failure is an [`OperatorError`],
//! never a host panic.

mod bindings;
pub mod cache;
mod core_module;
mod imports;
mod instance;

use std::path::{Path, PathBuf};

pub use instance::{Batch, OperatorInstance, Output, TaskInfo, into_snapshot};

/// Shared compiler and linker configuration for every operator of a process.
#[derive(Clone)]
pub struct Runtime {
    engine: wasmtime::Engine,
    linker: std::sync::Arc<wasmtime::component::Linker<imports::GuestCtx>>,
    cache: cache::Cache,
}

/// A component that was read, compiled and checked against the `weir:operator` world.
#[derive(Clone)]
pub struct LoadedComponent {
    path: PathBuf,
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
        "{}: the component does not implement the world `weir:operator/operator@0.1.0`: {detail}. \
         Rebuild it against the `wit/` folder of this version of Weir",
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
    },
}

impl Runtime {
    /// An engine and a linker for operator components.
    pub fn new() -> Result<Runtime, wasmtime::Error> {
        let engine = wasmtime::Engine::new(&wasmtime::Config::new())?;
        let mut linker = wasmtime::component::Linker::new(&engine);
        imports::add_to_linker(&mut linker)?;
        Ok(Runtime {
            engine,
            linker: std::sync::Arc::new(linker),
            cache: cache::Cache::from_env(),
        })
    }

    /// Reads, compiles and checks the component at `path`.
    pub fn load(&self, path: &Path) -> Result<LoadedComponent, OperatorError> {
        let load_error = |reason: String| OperatorError::Load {
            path: path.to_path_buf(),
            reason,
        };
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
            .component(&self.engine, &bytes)
            .map_err(|e| load_error(format!("invalid component: {e:#}")))?;
        let contract = |e: wasmtime::Error| OperatorError::Contract {
            path: path.to_path_buf(),
            detail: format!("{e:#}"),
        };
        let instance_pre = self.linker.instantiate_pre(&component).map_err(contract)?;
        let pre = bindings::OperatorPre::new(instance_pre).map_err(contract)?;
        Ok(LoadedComponent {
            path: path.to_path_buf(),
            pre,
        })
    }
}

impl LoadedComponent {
    /// The file the component was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
