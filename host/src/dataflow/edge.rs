//! A task's outgoing edges: each record is checked to be JSON, keyed for every keyed
//! consumer, routed to one subtask of each consumer, buffered and sent in batches over
//! bounded channels. Barriers and ends go to every subtask of every consumer.
//!
//! Invariants: a record is appended to all of a task's edges or to none of them; a
//! record with key group *g* goes to the consumer subtask whose key-group range holds
//! *g*; a record on a broadcast edge goes to every consumer subtask; on each channel, records and barriers keep the order they were pushed in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::IgnoredAny;

use super::Message;
use super::channel::{Bell, Sender};
use super::watermark::Status;
use crate::checkpoint::Barrier;
use crate::record::event_time::EventTimeError;
use crate::record::{KeyError, KeySelector, KeyedRecord, MissingKey, Origin, Record};
use crate::small_bytes::SmallBytes;
use crate::state::{KeyGroup, KeyGroupRange};

/// Why a record cannot go downstream.
#[derive(Debug, thiserror::Error)]
pub enum BadRecord {
    /// The payload is not one JSON document.
    #[error("not a JSON document: {0}")]
    NotJson(#[from] serde_json::Error),
    /// The payload spans several lines (a pretty-printed document, say).
    #[error("a record must be one line, and this one has a line break")]
    LineBreak,
    /// A Kafka message without a value (a tombstone).
    #[error("a Kafka message without a value (a tombstone)")]
    NoValue,
    /// A Kafka source's `key_field` cannot go into this message.
    #[error("its key cannot go into its value: {0}")]
    KeyField(&'static str),
    /// The source's `event_time` found no time in it.
    #[error(transparent)]
    EventTime(#[from] EventTimeError),
    /// A keyed consumer found no key in it.
    #[error("{error} (needed by operator `{consumer}`)")]
    NoKey {
        /// The consumer that needs the key.
        consumer: String,
        /// The pointer that found nothing.
        error: MissingKey,
    },
}

/// The consumers of a task have all gone: the job is stopping because of a failure
/// elsewhere, which that task reports.
#[derive(Debug)]
pub struct Disconnected;

/// How an edge picks the consumer subtask of a record.
#[derive(Debug, Clone, Copy)]
pub enum Routing {
    /// By key group (the edge has a key selector).
    Keyed {
        /// The job's maximum parallelism.
        max_parallelism: u16,
    },
    /// Always to this subtask (same parallelism on both sides: subtask i → i).
    Forward(usize),
    /// To each subtask in turn.
    RoundRobin,
    /// To every subtask (a broadcast input: no key).
    Broadcast,
}

/// One edge to a consumer: a channel and a pending batch per consumer subtask.
pub struct Edge {
    consumer: String,
    /// The producer's output it carries: `None` for its records, `Some(i)` for its
    /// side output `i` (an operator's `side_outputs`).
    output: Option<usize>,
    selector: Option<KeySelector>,
    routing: Routing,
    next: usize,
    pending: Vec<Vec<KeyedRecord>>,
    channels: Vec<Sender>,
}

impl Edge {
    /// An edge into `consumer`, whose subtasks read `channels`, carrying `output`;
    /// records are keyed when `selector` is given (and then routed by key group).
    pub fn new(
        consumer: &str,
        output: Option<usize>,
        selector: Option<KeySelector>,
        routing: Routing,
        channels: Vec<Sender>,
    ) -> Edge {
        Edge {
            consumer: consumer.to_string(),
            output,
            selector,
            routing,
            next: 0,
            pending: vec![Vec::new(); channels.len()],
            channels,
        }
    }

    fn target(&mut self, key_group: KeyGroup) -> usize {
        let parallelism = self.channels.len();
        match self.routing {
            Routing::Keyed { max_parallelism } => usize::from(KeyGroupRange::subtask_of(
                key_group,
                max_parallelism,
                parallelism as u16,
            )),
            Routing::Forward(index) => index % parallelism,
            Routing::RoundRobin => {
                self.next = (self.next + 1) % parallelism;
                self.next
            }
            Routing::Broadcast => unreachable!("a broadcast edge has no single target"),
        }
    }
}

/// How often a task waiting for room downstream asks whether it should give way.
const GIVE_WAY_POLL: Duration = Duration::from_millis(5);

/// All outgoing edges of one task.
pub struct Outputs {
    edges: Vec<Edge>,
    /// Whether an edge of the task's own output is keyed.
    keyed: bool,
    largest: usize,
    /// The keys of the record being pushed, one per edge (kept to reuse its memory).
    keys: Vec<(SmallBytes, KeyGroup)>,
    /// The task's bell: rung when a consumer makes room.
    bell: Arc<Bell>,
}

impl Outputs {
    /// The outputs of a task with these edges; the task waits for room on `bell`.
    pub fn new(edges: Vec<Edge>, bell: Arc<Bell>) -> Outputs {
        let keyed = edges
            .iter()
            .any(|e| e.output.is_none() && e.selector.is_some());
        Outputs {
            edges,
            keyed,
            largest: 0,
            keys: Vec::new(),
            bell,
        }
    }

    /// Checks and keys `record` (read at `origin`, if a source read it), then buffers it
    /// on every edge of the task's own output.
    pub fn push(&mut self, record: Record, origin: Option<&Origin>) -> Result<(), BadRecord> {
        self.push_to(None, record, origin)
    }

    /// As [`Outputs::push`], onto the edges of side output `output` (none, and the
    /// record goes nowhere, when no node reads it).
    pub fn push_side(&mut self, output: usize, record: Record) -> Result<(), BadRecord> {
        self.push_to(Some(output), record, None)
    }

    fn push_to(
        &mut self,
        output: Option<usize>,
        record: Record,
        origin: Option<&Origin>,
    ) -> Result<(), BadRecord> {
        if record.payload.contains(&b'\n') {
            return Err(BadRecord::LineBreak);
        }
        // Every edge's key first, so that a bad record goes to no edge.
        self.keys.clear();
        // The task's own output decides once; a side output (rare) when it is used.
        let keyed = match output {
            None => self.keyed,
            Some(_) => (self.edges.iter()).any(|e| e.output == output && e.selector.is_some()),
        };
        if keyed {
            // Taking a key also checks that the whole payload is JSON.
            for edge in self.edges.iter().filter(|e| e.output == output) {
                self.keys.push(match &edge.selector {
                    Some(selector) => selector.key(&record.payload).map_err(|e| match e {
                        KeyError::NotJson(e) => BadRecord::NotJson(e),
                        KeyError::Missing(error) => BadRecord::NoKey {
                            consumer: edge.consumer.clone(),
                            error,
                        },
                    })?,
                    None => (SmallBytes::default(), KeyGroup(0)),
                });
            }
        } else {
            serde_json::from_slice::<IgnoredAny>(&record.payload)?;
            let edges = self.edges.iter().filter(|e| e.output == output).count();
            self.keys
                .resize_with(edges, || (SmallBytes::default(), KeyGroup(0)));
        }
        let last = self.keys.len().saturating_sub(1);
        let mut record = Some(record);
        let keys = self.keys.drain(..);
        let edges = self.edges.iter_mut().filter(|e| e.output == output);
        for (i, (edge, (key, key_group))) in edges.zip(keys).enumerate() {
            let Record { payload, timestamp } = if i == last {
                record.take().expect("taken only by the last edge")
            } else {
                record.clone().expect("taken only by the last edge")
            };
            let record = KeyedRecord {
                key,
                key_group,
                payload,
                timestamp,
                origin: origin.copied(),
            };
            if let Routing::Broadcast = edge.routing {
                for pending in &mut edge.pending {
                    pending.push(record.clone());
                    self.largest = self.largest.max(pending.len());
                }
                continue;
            }
            let target = edge.target(key_group);
            let pending = &mut edge.pending[target];
            pending.push(record);
            self.largest = self.largest.max(pending.len());
        }
        Ok(())
    }

    /// The most records buffered for any one consumer subtask.
    pub fn pending(&self) -> usize {
        self.largest
    }

    /// Sends every non-empty buffered batch, waiting for room where a channel is full.
    pub fn flush(&mut self) -> Result<(), Disconnected> {
        self.flush_unless(|| false).map(|_| ())
    }

    /// Sends every non-empty buffered batch, waiting for room where a channel is full,
    /// unless `give_way` says the task has something more urgent to do (a barrier to
    /// take): then returns `Ok(false)` with the rest still buffered.
    pub fn flush_unless(&mut self, give_way: impl Fn() -> bool) -> Result<bool, Disconnected> {
        for edge in &mut self.edges {
            for (pending, channel) in edge.pending.iter_mut().zip(&edge.channels) {
                if pending.is_empty() {
                    continue;
                }
                let mut message = Message::Batch(std::mem::take(pending));
                loop {
                    let seen = self.bell.rings();
                    match channel.try_send(message).map_err(|_| Disconnected)? {
                        None => break,
                        Some(refused) => message = refused,
                    }
                    if give_way() {
                        let Message::Batch(records) = message else {
                            unreachable!("only batches are refused")
                        };
                        *pending = records;
                        return Ok(false);
                    }
                    // Woken by room, or to ask `give_way` again (it may depend on time).
                    self.bell.wait(seen, Some(GIVE_WAY_POLL));
                }
            }
        }
        self.largest = 0;
        Ok(true)
    }

    /// Forwards an aligned snapshot's `barrier` to every consumer subtask: behind what
    /// it sent, unless the barrier is due to go unaligned (now, or while waiting for room
    /// downstream): then ahead of it, as [`Outputs::overtake`].
    pub fn forward(&mut self, barrier: Barrier) -> Result<(), Disconnected> {
        let due = || barrier.is_unaligned_at(Instant::now());
        if !due() && self.flush_unless(due)? {
            return self.broadcast(Message::Barrier(barrier));
        }
        self.overtake(barrier).map(|_| ())
    }

    /// Sends `barrier` to every consumer subtask ahead of what it has queued (an
    /// unaligned barrier): buffered batches are queued first even where a channel is
    /// full (they were emitted before the snapshot), so the barrier jumps them too.
    /// Returns the batches it overtook.
    pub fn overtake(&mut self, barrier: Barrier) -> Result<usize, Disconnected> {
        let mut overtaken = 0;
        for edge in &mut self.edges {
            for (pending, channel) in edge.pending.iter_mut().zip(&edge.channels) {
                if !pending.is_empty() {
                    let batch = Message::Batch(std::mem::take(pending));
                    channel.force_send(batch).map_err(|_| Disconnected)?;
                }
                overtaken += channel.send_overtaking(barrier).map_err(|_| Disconnected)?;
            }
        }
        self.largest = 0;
        Ok(overtaken)
    }

    /// Flushes, then sends `status` (a watermark, or idleness) to every consumer
    /// subtask, behind the records it covers.
    pub fn watermark(&mut self, status: Status) -> Result<(), Disconnected> {
        self.broadcast(Message::Watermark(status))
    }

    /// Flushes, then tells every consumer subtask that this input has ended.
    pub fn end(mut self) -> Result<(), Disconnected> {
        self.broadcast(Message::End)
    }

    fn broadcast(&mut self, message: Message) -> Result<(), Disconnected> {
        self.flush()?;
        for channel in self.edges.iter().flat_map(|e| &e.channels) {
            channel
                .force_send(message.clone())
                .map_err(|_| Disconnected)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::CheckpointId;
    use crate::dataflow::channel::{Received, Receiver, channel};
    use crate::job::JsonPointer;

    fn bell() -> Arc<Bell> {
        Arc::new(Bell::default())
    }

    fn edge(consumer: &str, pointer: Option<&str>, subtasks: usize) -> (Edge, Vec<Receiver>) {
        let (txs, rxs): (Vec<_>, Vec<_>) =
            (0..subtasks).map(|_| channel(8, bell(), bell())).unzip();
        let selector = pointer.map(|p| KeySelector::new(JsonPointer::parse(p).unwrap(), 128));
        let routing = match selector {
            Some(_) => Routing::Keyed {
                max_parallelism: 128,
            },
            None => Routing::RoundRobin,
        };
        (Edge::new(consumer, None, selector, routing, txs), rxs)
    }

    fn record(payload: &str) -> Record {
        Record {
            payload: payload.into(),
            timestamp: Some(7),
        }
    }

    fn recv(rx: &Receiver) -> Message {
        match rx.try_recv() {
            Ok(Some(Received::Message(message))) => message,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    fn batch(rx: &Receiver) -> Vec<KeyedRecord> {
        match recv(rx) {
            Message::Batch(b) => b,
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    #[test]
    fn a_side_output_goes_only_to_its_edges_keyed_their_way() {
        let (main, rx_main) = edge("out", None, 1);
        let (mut late, rx_late) = edge("late", Some("/url"), 1);
        late.output = Some(0);
        let mut outputs = Outputs::new(vec![main, late], bell());
        outputs.push(record(r#"{"n":1}"#), None).unwrap();
        outputs.push_side(0, record(r#"{"url":"/x"}"#)).unwrap();
        // A side record without the side edge's key is refused; one for a side output
        // nothing reads goes nowhere.
        assert!(outputs.push_side(0, record(r#"{"n":2}"#)).is_err());
        outputs.push_side(1, record(r#"{"n":3}"#)).unwrap();
        outputs.end().unwrap();
        let main = batch(&rx_main[0]);
        assert_eq!(main.len(), 1);
        assert_eq!(main[0].payload, br#"{"n":1}"#);
        let late = batch(&rx_late[0]);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].key.to_vec(), b"/x".to_vec());
    }

    #[test]
    fn every_edge_gets_every_record_keyed_its_own_way() {
        let (a, rx_a) = edge("count", Some("/url"), 1);
        let (b, rx_b) = edge("out", None, 1);
        let mut outputs = Outputs::new(vec![a, b], bell());
        outputs.push(record(r#"{"url":"/x"}"#), None).unwrap();
        outputs.push(record(r#"{"url":"/y"}"#), None).unwrap();
        assert_eq!(outputs.pending(), 2);
        outputs.end().unwrap();
        let keyed = batch(&rx_a[0]);
        assert_eq!(
            keyed.iter().map(|r| r.key.to_vec()).collect::<Vec<_>>(),
            [b"/x".to_vec(), b"/y".to_vec()]
        );
        assert_eq!(keyed[0].timestamp, Some(7));
        let plain = batch(&rx_b[0]);
        assert!(plain.iter().all(|r| r.key.is_empty()));
        assert_eq!(plain[1].payload, br#"{"url":"/y"}"#);
        assert!(matches!(recv(&rx_a[0]), Message::End));
    }

    #[test]
    fn keyed_records_go_to_the_subtask_owning_their_key_group() {
        let (a, rxs) = edge("count", Some("/k"), 3);
        let mut outputs = Outputs::new(vec![a], bell());
        for i in 0..300 {
            outputs
                .push(record(&format!(r#"{{"k":"key-{i}"}}"#)), None)
                .unwrap();
        }
        outputs.forward(Barrier::aligned(CheckpointId(1))).unwrap();
        for (index, rx) in rxs.iter().enumerate() {
            let records = batch(rx);
            assert!(!records.is_empty());
            let range = KeyGroupRange::for_subtask(128, 3, index as u16);
            assert!(records.iter().all(|r| range.contains(r.key_group)));
            assert!(
                matches!(recv(rx), Message::Barrier(b) if b.id == CheckpointId(1)),
                "barrier after the records"
            );
        }
    }

    #[test]
    fn an_unaligned_barrier_jumps_queued_and_buffered_records_even_when_full() {
        let (a, rxs) = edge("out", None, 1);
        let mut outputs = Outputs::new(vec![a], bell());
        for round in 0..9 {
            outputs.push(record(&format!("{round}")), None).unwrap();
            if round < 8 {
                outputs.flush().unwrap();
            }
        }
        // Eight batches fill the channel; the ninth is still buffered.
        let barrier = Barrier::aligned(CheckpointId(2));
        assert!(!outputs.flush_unless(|| true).unwrap(), "gave way");
        assert_eq!(outputs.overtake(barrier).unwrap(), 9);
        match rxs[0].try_recv() {
            Ok(Some(Received::Overtaking {
                barrier: b,
                in_flight,
            })) => {
                assert_eq!(b, barrier);
                let payloads: Vec<_> = in_flight.iter().map(|r| r.payload.clone()).collect();
                let expected: Vec<Vec<u8>> = (0..9).map(|i| format!("{i}").into_bytes()).collect();
                assert_eq!(payloads, expected);
            }
            other => panic!("expected the barrier first, got {other:?}"),
        }
        assert_eq!(batch(&rxs[0]).len(), 1, "the jumped records still follow");
    }

    #[test]
    fn unkeyed_records_are_spread_over_subtasks() {
        let (a, rxs) = edge("out", None, 2);
        let mut outputs = Outputs::new(vec![a], bell());
        for _ in 0..4 {
            outputs.push(record("{}"), None).unwrap();
        }
        outputs.flush().unwrap();
        assert_eq!(batch(&rxs[0]).len(), 2);
        assert_eq!(batch(&rxs[1]).len(), 2);
    }

    #[test]
    fn a_bad_record_reaches_no_edge() {
        let (a, rx_a) = edge("out", None, 1);
        let (b, _rx_b) = edge("count", Some("/url"), 1);
        let mut outputs = Outputs::new(vec![a, b], bell());
        let err = outputs.push(record(r#"{"path":"/x"}"#), None).unwrap_err();
        assert!(err.to_string().contains("operator `count`"), "{err}");
        assert!(matches!(
            outputs.push(record("{nope"), None),
            Err(BadRecord::NotJson(_))
        ));
        assert_eq!(outputs.pending(), 0);
        outputs.end().unwrap();
        assert!(matches!(recv(&rx_a[0]), Message::End));
    }

    #[test]
    fn unkeyed_edges_still_refuse_what_is_not_json() {
        let (a, _rx) = edge("out", None, 1);
        let mut outputs = Outputs::new(vec![a], bell());
        assert!(outputs.push(record("plain text"), None).is_err());
        assert!(outputs.push(record("[1, 2]"), None).is_ok());
        assert!(matches!(
            outputs.push(record("{\n}"), None),
            Err(BadRecord::LineBreak)
        ));
    }

    #[test]
    fn a_gone_consumer_is_reported_as_disconnected() {
        let (a, rx) = edge("out", None, 1);
        drop(rx);
        let mut outputs = Outputs::new(vec![a], bell());
        outputs.push(record("{}"), None).unwrap();
        assert!(outputs.flush().is_err());
    }
}
