//! One running operator instance: a store with its state backend, and the calls of the
//! `guest` export, converted from and to the host's own record types.

use std::sync::Arc;

use wasmtime::Store;

use super::bindings::{self, Operator};
use super::imports::GuestCtx;
use super::{LoadedComponent, OperatorError, Runtime};
use crate::record::{KeyedRecord, Record};
use crate::state::StateBackend;

/// A batch of records for one `process` call.
pub type Batch = Vec<KeyedRecord>;

/// The records one `process` call emitted.
pub type Output = Vec<Record>;

/// An instantiated operator component with its state.
pub struct OperatorInstance {
    store: Store<GuestCtx>,
    bindings: Operator,
}

impl OperatorInstance {
    /// Instantiates `component` for the operator `name`, with its keyed state in
    /// `backend`. `keyed` says whether the operator has `key_by`.
    pub fn new(
        runtime: &Runtime,
        component: &LoadedComponent,
        name: &str,
        keyed: bool,
        backend: Box<dyn StateBackend>,
    ) -> Result<OperatorInstance, OperatorError> {
        let mut store = Store::new(&runtime.engine, GuestCtx::new(name, keyed, backend));
        let bindings = component
            .pre
            .instantiate(&mut store)
            .map_err(|e| trap(&mut store, e))?;
        Ok(OperatorInstance { store, bindings })
    }

    /// Calls the guest's `open` with the operator's config as a JSON object.
    pub fn open(&mut self, config_json: &str) -> Result<(), OperatorError> {
        self.store.data_mut().last_error = None;
        let guest = self.bindings.weir_operator_guest();
        match guest.call_open(&mut self.store, config_json) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(OperatorError::Failed {
                operator: self.store.data().operator.clone(),
                message: format!("open: {message}"),
                on_record: None,
            }),
            Err(e) => Err(trap(&mut self.store, e)),
        }
    }

    /// Processes one batch and returns what the guest emitted, in order.
    pub fn process(&mut self, batch: Batch) -> Result<Output, OperatorError> {
        let (key_groups, records): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|r| {
                let record = bindings::Record {
                    key: r.key,
                    payload: r.payload,
                    timestamp: r.timestamp,
                };
                (r.key_group, record)
            })
            .unzip();
        let records = Arc::new(records);
        let ctx = self.store.data_mut();
        ctx.last_error = None;
        ctx.current.records = Arc::clone(&records);
        ctx.current.key_groups = key_groups;

        let result = self
            .bindings
            .weir_operator_guest()
            .call_process(&mut self.store, &records);

        let ctx = self.store.data_mut();
        ctx.current.records = Arc::new(Vec::new());
        ctx.current.key_groups.clear();
        match result {
            Ok(Ok(outputs)) => Ok(outputs
                .into_iter()
                .map(|o| Record {
                    payload: o.payload,
                    timestamp: o.timestamp,
                })
                .collect()),
            Ok(Err(error)) => Err(OperatorError::Failed {
                operator: self.store.data().operator.clone(),
                message: error.message,
                on_record: error
                    .record
                    .and_then(|i| records.get(i as usize))
                    .map(|r| excerpt(&r.payload)),
            }),
            Err(e) => Err(trap(&mut self.store, e)),
        }
    }

    /// Calls the guest's `close`.
    pub fn close(&mut self) -> Result<(), OperatorError> {
        self.store.data_mut().last_error = None;
        let guest = self.bindings.weir_operator_guest();
        match guest.call_close(&mut self.store) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(OperatorError::Failed {
                operator: self.store.data().operator.clone(),
                message: format!("close: {message}"),
                on_record: None,
            }),
            Err(e) => Err(trap(&mut self.store, e)),
        }
    }

    /// The instance's state backend.
    pub fn backend(&self) -> &dyn StateBackend {
        self.store.data().backend.as_ref()
    }
}

/// A trap as a user reads it: the guest's own last error message (a Rust panic message
/// arrives through the log import), then what trapped.
fn trap(store: &mut Store<GuestCtx>, error: wasmtime::Error) -> OperatorError {
    let ctx = store.data_mut();
    let cause = match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    OperatorError::Trap {
        operator: ctx.operator.clone(),
        message: match ctx.last_error.take() {
            Some(guest) => format!("{guest} ({cause})"),
            None => cause,
        },
    }
}

/// The start of a record, for error messages.
fn excerpt(payload: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&payload[..payload.len().min(MAX)]);
    if payload.len() > MAX {
        format!("{text}…")
    } else {
        text.into_owned()
    }
}
