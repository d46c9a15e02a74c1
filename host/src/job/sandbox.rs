//! What an operator's instances may use, as the job file says it: resource limits
//! (`[operator.limits]`) and capability grants (`[[operator.grants]]`, `[operator.env]`).
//! Plain data; `wasm::sandbox` enforces it.

use std::path::PathBuf;
use std::time::Duration;

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
