//! Write [Weir](https://example.invalid/weir) stream operators in Rust.
//!
//! An operator is a type that implements [`Operator`]: it receives records one at a time
//! (decoded from JSON), reads and writes *keyed state* — state scoped to the key of the
//! record being processed — registers timers for that key, and emits output records. The host snapshots that state at
//! checkpoints and restores it after failures: the operator never sees a checkpoint.
//!
//! ```
//! use guest_sdk::{Context, Operator, Result, ValueState};
//! use serde::{Deserialize, Serialize};
//!
//! const VISITS: ValueState<u64> = ValueState::new("visits");
//!
//! #[derive(Deserialize)]
//! struct Visit { url: String }
//!
//! #[derive(Serialize)]
//! struct Count { url: String, count: u64 }
//!
//! #[derive(Default)]
//! struct VisitCount;
//!
//! impl Operator for VisitCount {
//!     type Input = Visit;
//!     type Output = Count;
//!
//!     fn process(&mut self, visit: Visit, ctx: &mut Context<Count>) -> Result<()> {
//!         let count = VISITS.get()?.unwrap_or(0) + 1;
//!         VISITS.set(&count)?;
//!         ctx.emit(Count { url: visit.url, count })
//!     }
//! }
//!
//! guest_sdk::export_operator!(VisitCount);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` (crate type `cdylib`) and
//! test it natively with [`testing::Harness`].

#![deny(missing_docs)]

mod cache;
mod error;
mod operator_state;
mod runtime;
mod state;
pub mod testing;
#[cfg(target_arch = "wasm32")]
mod wasm;
pub mod window;

pub use error::{Error, Result};
pub use operator_state::{BroadcastState, OperatorListState, UnionListState};
pub use runtime::{Config, Context, KeyedState, Level, TaskInfo, TimeDomain, Timer, Ttl, log};
pub use state::{AggregatingState, ListState, MapState, ReducingState, ValueState};

/// A stream operator.
///
/// The host creates it with [`Default`], calls [`open`](Operator::open) once, then
/// [`process`](Operator::process) for every record in order, and
/// [`close`](Operator::close) when the input ends. Keep everything that must survive a
/// failure in keyed state ([`ValueState`], …): fields of `self` are lost on recovery.
pub trait Operator: Default + 'static {
    /// The input record type, decoded from the record's JSON.
    type Input: serde::de::DeserializeOwned;
    /// The output record type, encoded as JSON.
    type Output: serde::Serialize;

    /// Processes one record. State handles read and write the state of this record's key.
    fn process(&mut self, input: Self::Input, ctx: &mut Context<Self::Output>) -> Result<()>;

    /// Called for a timer of this key that came due (registered with
    /// [`Context::register_event_time_timer`] or
    /// [`Context::register_processing_time_timer`]), in timestamp order, between
    /// records. State handles read and write the timer's key's state, `ctx.key()` is
    /// that key, and outputs are emitted as from `process` (with the timer's timestamp
    /// for an event-time timer). Every event-time timer fires before `close`.
    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<Self::Output>) -> Result<()> {
        let _ = (timer, ctx);
        Ok(())
    }

    /// Called once before the first record with the operator's `[operator.config]` table.
    fn open(&mut self, config: &Config) -> Result<()> {
        let _ = config;
        Ok(())
    }

    /// Called once after the last record of a job that finishes.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Exports an [`Operator`] as the component's `weir:operator` implementation.
///
/// Use it once, at the root of a `cdylib` crate. On native targets (tests) it expands
/// to nothing, so the same crate runs in [`testing::Harness`].
#[macro_export]
macro_rules! export_operator {
    ($operator:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                static INSTANCE: ::std::cell::RefCell<::std::option::Option<$operator>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }
            struct Export;
            impl $crate::__private::Guest for Export {
                fn open(
                    config: ::std::string::String,
                    task: $crate::__private::WitTaskInfo,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::open(&INSTANCE, &config, task)
                }
                fn process(
                    batch: $crate::__private::WitBatch,
                ) -> ::std::result::Result<
                    $crate::__private::WitOutputs,
                    $crate::__private::WitProcessError,
                > {
                    $crate::__private::process(&INSTANCE, batch)
                }
                fn on_timer(
                    timers: $crate::__private::WitFiredTimers,
                ) -> ::std::result::Result<
                    $crate::__private::WitOutputs,
                    $crate::__private::WitProcessError,
                > {
                    $crate::__private::on_timer(&INSTANCE, timers)
                }
                fn close() -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::close(&INSTANCE)
                }
            }
            $crate::__private::bindings::__export_weir_operator!(Export);
        };
    };
}

#[doc(hidden)]
pub mod __private {
    //! What `export_operator!` expands to; not part of the API.
    pub mod bindings {
        pub use crate::bindings::*;
    }
    pub use crate::bindings::exports::weir::operator::guest::{
        Batch as WitBatch, FiredTimers as WitFiredTimers, Guest, Outputs as WitOutputs,
        ProcessError as WitProcessError, TaskInfo as WitTaskInfo,
    };
    #[cfg(target_arch = "wasm32")]
    pub use crate::wasm::{close, on_timer, open, process};
}

mod bindings;
