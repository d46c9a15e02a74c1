//! The physical graph's channels: for every consumer subtask, one bounded channel per
//! upstream subtask of each of its inputs, and for every producer subtask, its edges.

use std::collections::HashMap;
use std::sync::Arc;

use super::CHANNEL_BATCHES;
use super::channel::{Bell, channel};
use super::edge::{Edge, Outputs, Routing};
use super::inputs::{InputChannel, Inputs};
use crate::job::Job;
use crate::job::Mode;
use crate::record::KeySelector;

/// A task: one subtask of a node.
type TaskKey = (String, usize);

/// The channels of a job's physical graph.
#[derive(Default)]
pub(super) struct Wiring {
    /// Per consumer subtask, its input channels.
    receivers: HashMap<TaskKey, Vec<InputChannel>>,
    /// Per producer subtask, its edges.
    edges: HashMap<TaskKey, Vec<Edge>>,
    /// Per task, the bell its channels ring.
    bells: HashMap<TaskKey, Arc<Bell>>,
}

impl Wiring {
    pub(super) fn new(job: &Job) -> Wiring {
        // The node an input reads, which of its outputs, and the node's parallelism.
        let producer = |input: &str| -> (String, Option<usize>, usize) {
            let source = (job.sources.iter().find(|s| s.name == input))
                .map(|s| (s.name.clone(), None, s.parallelism));
            let operator = || {
                job.operators.iter().find_map(|o| {
                    let output = o.output_named(input)?;
                    Some((o.name.clone(), output, o.parallelism))
                })
            };
            let (name, output, parallelism) = (source.or_else(operator))
                .expect("a validated job's inputs name nodes and their side outputs");
            (name, output, usize::from(parallelism))
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
                let (input, output, producer_parallelism) = producer(input);
                for producer in 0..producer_parallelism {
                    let mut senders = Vec::new();
                    for consumer in 0..usize::from(consumer_parallelism) {
                        let bells = (wiring.bell(&input, producer), wiring.bell(name, consumer));
                        let (tx, rx) = channel(CHANNEL_BATCHES, bells.0, bells.1);
                        senders.push(tx);
                        wiring
                            .receivers
                            .entry((name.clone(), consumer))
                            .or_default()
                            .push(InputChannel {
                                receiver: rx,
                                input: index as u32,
                                producer: producer as u32,
                            });
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
                        .push(Edge::new(name, output, selector, routing, senders));
                }
            }
        }
        wiring
    }

    /// The bell of subtask `subtask` of `name`.
    fn bell(&mut self, name: &str, subtask: usize) -> Arc<Bell> {
        let bell = self.bells.entry((name.to_string(), subtask)).or_default();
        Arc::clone(bell)
    }

    pub(super) fn outputs(&mut self, name: &str, subtask: usize) -> Outputs {
        let edges = self.edges.remove(&(name.to_string(), subtask));
        Outputs::new(edges.unwrap_or_default(), self.bell(name, subtask))
    }

    pub(super) fn inputs(&mut self, name: &str, subtask: usize, mode: Mode) -> Inputs {
        let receivers = self.receivers.remove(&(name.to_string(), subtask));
        Inputs::new(
            receivers.unwrap_or_default(),
            mode,
            self.bell(name, subtask),
        )
    }
}
