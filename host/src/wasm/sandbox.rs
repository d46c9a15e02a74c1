//! What a guest may use: resource limits (memory, tables, CPU time per call, stack) and
//! capability grants (directories, environment values). Everything not granted is denied.
//!
//! CPU time is bounded with epoch interruption: one ticker thread per [`super::Runtime`]
//! advances every engine's epoch each [`TICK`], and every call into a guest sets a
//! deadline of the operator's `call_timeout` in ticks, so a call is stopped between
//! `call_timeout` and `call_timeout + TICK` after it began.

use std::path::PathBuf;
use std::time::Duration;

use wasmtime::ResourceLimiter;

/// How often the epoch advances.
pub const TICK: Duration = Duration::from_millis(10);

/// Resource limits of one operator's instances (`[operator.limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of linear memory per memory (`memory_mb`).
    pub memory_bytes: u64,
    /// Elements per table (`table_elements`).
    pub table_elements: usize,
    /// Longest a single call into the guest may run (`call_timeout_ms`).
    pub call_timeout: Duration,
    /// Bytes of Wasm stack (`stack_kb`).
    pub stack_bytes: usize,
}

impl Limits {
    /// The most stack an operator may ask for: operator threads have 8 MiB, of which the
    /// host keeps some for itself and host calls.
    pub const MAX_STACK_BYTES: usize = 4 << 20;

    /// The epoch deadline, in ticks, for one call: one more than the timeout's ticks, as
    /// the first tick may come right after the call began.
    pub(super) fn deadline_ticks(&self) -> u64 {
        self.call_timeout.as_nanos().div_ceil(TICK.as_nanos()) as u64 + 1
    }
}

impl Default for Limits {
    /// Generous for any real operator (Python and JavaScript components start with
    /// 20–60 MB of memory and tables of tens of thousands of functions), small enough that
    /// a runaway guest cannot take a machine down.
    fn default() -> Limits {
        Limits {
            memory_bytes: 512 << 20,
            table_elements: 1_000_000,
            call_timeout: Duration::from_secs(10),
            stack_bytes: 1 << 20,
        }
    }
}

/// A directory the guest may use (`[[operator.grants]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// The host directory.
    pub host: PathBuf,
    /// Where the guest sees it (an absolute guest path such as `/data`).
    pub guest: String,
    /// Whether the guest may create, change and delete files in it.
    pub write: bool,
}

/// Capabilities granted to an operator: nothing by default, never the network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Directories, read-only unless `write`.
    pub dirs: Vec<DirGrant>,
    /// Environment values (`[operator.env]`), the only ones the guest sees.
    pub env: Vec<(String, String)>,
}

/// Everything that bounds one operator's instances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sandbox {
    /// Resource limits.
    pub limits: Limits,
    /// Capability grants.
    pub grants: Grants,
}

/// Enforces the memory and table limits of one store and remembers which was hit, so
/// the trap can name it.
pub(super) struct Limiter {
    limits: Limits,
    /// The limit a growth was refused by, for the trap's message.
    pub(super) hit: Option<String>,
}

impl Limiter {
    pub(super) fn new(limits: Limits) -> Limiter {
        Limiter { limits, hit: None }
    }

    pub(super) fn limits(&self) -> Limits {
        self.limits
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limits.memory_bytes {
            let message = format!(
                "memory limit: the guest asked for {} MiB of linear memory, more than its \
                 limits.memory_mb = {}",
                desired >> 20,
                self.limits.memory_bytes >> 20
            );
            self.hit = Some(message.clone());
            wasmtime::bail!(message);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limits.table_elements {
            let message = format!(
                "table limit: the guest asked for a table of {desired} elements, more than its \
                 limits.table_elements = {}",
                self.limits.table_elements
            );
            self.hit = Some(message.clone());
            wasmtime::bail!(message);
        }
        Ok(true)
    }
}
