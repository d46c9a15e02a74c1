//! The physical graph's channels: for every consumer subtask, one bounded channel per
//! upstream subtask of each of its inputs, and for every producer subtask, its edges.

use std::collections::HashMap;

use crossbeam_channel::{Receiver, bounded};

use super::edge::{Edge, Outputs, Routing};
use super::inputs::Inputs;
use super::{CHANNEL_BATCHES, Message};
use crate::job::Job;
use crate::job::Mode;
use crate::record::KeySelector;

/// A task: one subtask of a node.
type TaskKey = (String, usize);

/// The channels of a job's physical graph.
#[derive(Default)]
pub(super) struct Wiring {
    /// Per consumer subtask, its input channels, each with the index of the input (in
    /// the consumer's list) it carries.
    receivers: HashMap<TaskKey, Vec<(Receiver<Message>, u32)>>,
    /// Per producer subtask, its edges.
    edges: HashMap<TaskKey, Vec<Edge>>,
}

impl Wiring {
    pub(super) fn new(job: &Job) -> Wiring {
        let parallelism = |name: &str| -> usize {
            job.sources
                .iter()
                .map(|s| (&s.name, s.parallelism))
                .chain(job.operators.iter().map(|o| (&o.name, o.parallelism)))
                .find(|(n, _)| *n == name)
                .map_or(1, |(_, p)| usize::from(p))
        };
        let consumers = job
            .operators
            .iter()
            .map(|o| {
                let inputs = o.inputs.iter().map(|i| (&i.name, i.broadcast)).collect();
                (&o.name, o.parallelism, inputs, o.key_by.clone())
            })
            .chain(job.sinks.iter().map(|s| {
                let inputs: Vec<_> = s.inputs.iter().map(|name| (name, false)).collect();
                (&s.name, s.parallelism, inputs, None)
            }));
        let mut wiring = Wiring::default();
        for (name, consumer_parallelism, inputs, key_by) in consumers {
            let selector = key_by.map(|pointer| KeySelector::new(pointer, job.max_parallelism));
            for (index, (input, broadcast)) in inputs.into_iter().enumerate() {
                let producer_parallelism = parallelism(input);
                for producer in 0..producer_parallelism {
                    let mut senders = Vec::new();
                    for consumer in 0..usize::from(consumer_parallelism) {
                        let (tx, rx) = bounded(CHANNEL_BATCHES);
                        senders.push(tx);
                        wiring
                            .receivers
                            .entry((name.clone(), consumer))
                            .or_default()
                            .push((rx, index as u32));
                    }
                    let (selector, routing) = match &selector {
                        _ if broadcast => (None, Routing::Broadcast),
                        Some(selector) => (
                            Some(selector.clone()),
                            Routing::Keyed {
                                max_parallelism: job.max_parallelism,
                            },
                        ),
                        None if producer_parallelism == usize::from(consumer_parallelism) => {
                            (None, Routing::Forward(producer))
                        }
                        None => (None, Routing::RoundRobin),
                    };
                    wiring
                        .edges
                        .entry((input.clone(), producer))
                        .or_default()
                        .push(Edge::new(name, selector, routing, senders));
                }
            }
        }
        wiring
    }

    pub(super) fn outputs(&mut self, name: &str, subtask: usize) -> Outputs {
        Outputs::new(
            self.edges
                .remove(&(name.to_string(), subtask))
                .unwrap_or_default(),
        )
    }

    pub(super) fn inputs(&mut self, name: &str, subtask: usize, mode: Mode) -> Inputs {
        Inputs::new(
            self.receivers
                .remove(&(name.to_string(), subtask))
                .unwrap_or_default(),
            mode,
        )
    }
}
