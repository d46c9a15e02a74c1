//! Enforcing what a guest may use (`job::Sandbox`): resource limits (memory, tables, CPU
//! time per call, stack) and capability grants (directories, environment values).
//! Everything not granted is denied.
//!
//! CPU time is bounded with epoch interruption: one ticker thread per [`super::Runtime`]
//! advances every engine's epoch each [`TICK`], and every call into a guest sets a
//! deadline of the operator's `call_timeout` in ticks, so a call is stopped between
//! `call_timeout` and `call_timeout + TICK` after it began.

use std::time::Duration;

use wasmtime::ResourceLimiter;

use crate::job::Limits;

/// How often the epoch advances.
pub const TICK: Duration = Duration::from_millis(10);

impl Limits {
    /// The epoch deadline, in ticks, for one call: one more than the timeout's ticks, as
    /// the first tick may come right after the call began.
    pub(super) fn deadline_ticks(&self) -> u64 {
        self.call_timeout.as_nanos().div_ceil(TICK.as_nanos()) as u64 + 1
    }
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
