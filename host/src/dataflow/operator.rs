//! Operator tasks: feed each input batch to the Wasm instance and push what it emits.

use super::edge::Outputs;
use super::inputs::{Event, Inputs};
use super::{Failure, OperatorReport, Stop};
use crate::wasm::OperatorInstance;

/// Runs an opened operator instance until all of its inputs have ended.
pub fn run(
    name: &str,
    mut instance: OperatorInstance,
    mut inputs: Inputs,
    mut outputs: Outputs,
) -> Result<OperatorReport, Stop> {
    let mut report = OperatorReport {
        name: name.to_string(),
        ..OperatorReport::default()
    };
    while let Some(event) = inputs.next()? {
        match event {
            Event::Batch(batch) => {
                report.records_in += batch.len() as u64;
                let emitted = instance
                    .process(batch)
                    .map_err(|e| Stop::Failed(e.into()))?;
                report.records_out += emitted.len() as u64;
                for record in emitted {
                    outputs.push(record).map_err(|error| {
                        Stop::Failed(Failure::BadOutput {
                            operator: name.to_string(),
                            error,
                        })
                    })?;
                }
                outputs.flush().map_err(|_| Stop::Disconnected)?;
            }
            Event::Checkpoint(id) => outputs.barrier(id).map_err(|_| Stop::Disconnected)?,
        }
    }
    instance.close().map_err(|e| Stop::Failed(e.into()))?;
    outputs.end().map_err(|_| Stop::Disconnected)?;
    Ok(report)
}
