//! Generated bindings for the `weir:operator` world. Only `crate::wasm` uses them: no
//! generated type crosses into the dataflow or state code.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "operator",
    imports: { default: trappable },
});

pub use exports::weir::operator::guest::{Batch, FiredTimers, Outputs, TaskInfo};
pub use weir::operator::log::Level;
pub use weir::operator::types::InputInfo;
pub use weir::operator::types::StateKind;
pub use weir::operator::types::TimeDomain;
