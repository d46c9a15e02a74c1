//! The host side of the `side-outputs` import: what a call sends to the operator's
//! side outputs waits in the store until the task takes it with the call's outputs.

use wasmtime::{Result, bail};

use super::bindings::weir::operator::{side_outputs, types};
use super::imports::GuestCtx;
use super::instance::unflatten;

impl side_outputs::Host for GuestCtx {
    fn emit(&mut self, name: String, records: types::Outputs) -> Result<()> {
        let Some(output) = self.side_outputs.iter().position(|n| *n == name) else {
            let declared = match self.side_outputs.is_empty() {
                true => "it declares none".to_string(),
                false => format!("it declares `{}`", self.side_outputs.join("`, `")),
            };
            bail!(
                "side output `{name}` is not one of operator `{}`'s: {declared} (add it to \
                 `side_outputs` in the job file)",
                self.operator
            );
        };
        let records = unflatten(records)
            .map_err(|problem| wasmtime::format_err!("side output `{name}`: {problem}"))?;
        self.side.extend(records.into_iter().map(|r| (output, r)));
        Ok(())
    }
}
