//! A task's outgoing edges: each record is checked to be JSON, keyed for every keyed
//! consumer, buffered per edge and sent in batches over bounded channels.
//!
//! Invariant: a record is appended to all of a task's edges or to none of them.

use std::sync::mpsc::SyncSender;

use serde::de::IgnoredAny;
use serde_json::Value;

use super::Message;
use crate::record::{KeySelector, KeyedRecord, MissingKey, Record};
use crate::state::KeyGroup;

/// Why a record cannot go downstream.
#[derive(Debug, thiserror::Error)]
pub enum BadRecord {
    /// The payload is not one JSON document.
    #[error("not a JSON document: {0}")]
    NotJson(#[from] serde_json::Error),
    /// The payload spans several lines (a pretty-printed document, say).
    #[error("a record must be one line, and this one has a line break")]
    LineBreak,
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

/// One edge to a consumer.
pub struct Edge {
    consumer: String,
    selector: Option<KeySelector>,
    pending: Vec<KeyedRecord>,
    tx: SyncSender<Message>,
}

impl Edge {
    /// An edge into `consumer`; records are keyed when `selector` is given.
    pub fn new(consumer: &str, selector: Option<KeySelector>, tx: SyncSender<Message>) -> Edge {
        Edge {
            consumer: consumer.to_string(),
            selector,
            pending: Vec::new(),
            tx,
        }
    }
}

/// All outgoing edges of one task.
pub struct Outputs {
    edges: Vec<Edge>,
    keyed: bool,
}

impl Outputs {
    /// The outputs of a task with these edges.
    pub fn new(edges: Vec<Edge>) -> Outputs {
        let keyed = edges.iter().any(|e| e.selector.is_some());
        Outputs { edges, keyed }
    }

    /// Checks and keys `record`, then buffers it on every edge.
    pub fn push(&mut self, record: Record) -> Result<(), BadRecord> {
        if record.payload.contains(&b'\n') {
            return Err(BadRecord::LineBreak);
        }
        let keys = if self.keyed {
            let document: Value = serde_json::from_slice(&record.payload)?;
            self.edges
                .iter()
                .map(|edge| match &edge.selector {
                    Some(selector) => selector.key(&document).map_err(|error| BadRecord::NoKey {
                        consumer: edge.consumer.clone(),
                        error,
                    }),
                    None => Ok((Vec::new(), KeyGroup(0))),
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            serde_json::from_slice::<IgnoredAny>(&record.payload)?;
            vec![(Vec::new(), KeyGroup(0)); self.edges.len()]
        };
        let last = self.edges.len().saturating_sub(1);
        let mut record = Some(record);
        for (i, (edge, (key, key_group))) in self.edges.iter_mut().zip(keys).enumerate() {
            let Record { payload, timestamp } = if i == last {
                record.take().expect("taken only by the last edge")
            } else {
                record.clone().expect("taken only by the last edge")
            };
            edge.pending.push(KeyedRecord {
                key,
                key_group,
                payload,
                timestamp,
            });
        }
        Ok(())
    }

    /// Number of records buffered per edge.
    pub fn pending(&self) -> usize {
        self.edges.first().map_or(0, |e| e.pending.len())
    }

    /// Sends every non-empty buffered batch.
    pub fn flush(&mut self) -> Result<(), Disconnected> {
        for edge in &mut self.edges {
            if !edge.pending.is_empty() {
                let batch = std::mem::take(&mut edge.pending);
                edge.tx
                    .send(Message::Batch(batch))
                    .map_err(|_| Disconnected)?;
            }
        }
        Ok(())
    }

    /// Flushes, then tells every consumer that this input has ended.
    pub fn end(mut self) -> Result<(), Disconnected> {
        self.flush()?;
        for edge in &self.edges {
            edge.tx.send(Message::End).map_err(|_| Disconnected)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JsonPointer;
    use std::sync::mpsc::{Receiver, sync_channel};

    fn edge(consumer: &str, pointer: Option<&str>) -> (Edge, Receiver<Message>) {
        let (tx, rx) = sync_channel(8);
        let selector = pointer.map(|p| KeySelector::new(JsonPointer::parse(p).unwrap(), 128));
        (Edge::new(consumer, selector, tx), rx)
    }

    fn record(payload: &str) -> Record {
        Record {
            payload: payload.into(),
            timestamp: Some(7),
        }
    }

    fn batch(rx: &Receiver<Message>) -> Vec<KeyedRecord> {
        match rx.recv().unwrap() {
            Message::Batch(b) => b,
            Message::End => panic!("expected a batch"),
        }
    }

    #[test]
    fn every_edge_gets_every_record_keyed_its_own_way() {
        let (a, rx_a) = edge("count", Some("/url"));
        let (b, rx_b) = edge("out", None);
        let mut outputs = Outputs::new(vec![a, b]);
        outputs.push(record(r#"{"url":"/x"}"#)).unwrap();
        outputs.push(record(r#"{"url":"/y"}"#)).unwrap();
        assert_eq!(outputs.pending(), 2);
        outputs.end().unwrap();
        let keyed = batch(&rx_a);
        assert_eq!(
            keyed.iter().map(|r| r.key.clone()).collect::<Vec<_>>(),
            [b"/x".to_vec(), b"/y".to_vec()]
        );
        assert_eq!(keyed[0].timestamp, Some(7));
        let plain = batch(&rx_b);
        assert!(plain.iter().all(|r| r.key.is_empty()));
        assert_eq!(plain[1].payload, br#"{"url":"/y"}"#);
        assert!(matches!(rx_a.recv().unwrap(), Message::End));
    }

    #[test]
    fn a_bad_record_reaches_no_edge() {
        let (a, rx_a) = edge("out", None);
        let (b, _rx_b) = edge("count", Some("/url"));
        let mut outputs = Outputs::new(vec![a, b]);
        let err = outputs.push(record(r#"{"path":"/x"}"#)).unwrap_err();
        assert!(err.to_string().contains("operator `count`"), "{err}");
        assert!(matches!(
            outputs.push(record("{nope")),
            Err(BadRecord::NotJson(_))
        ));
        assert_eq!(outputs.pending(), 0);
        outputs.end().unwrap();
        assert!(matches!(rx_a.recv().unwrap(), Message::End));
    }

    #[test]
    fn unkeyed_edges_still_refuse_what_is_not_json() {
        let (a, _rx) = edge("out", None);
        let mut outputs = Outputs::new(vec![a]);
        assert!(outputs.push(record("plain text")).is_err());
        assert!(outputs.push(record("[1, 2]")).is_ok());
        assert!(matches!(
            outputs.push(record("{\n}")),
            Err(BadRecord::LineBreak)
        ));
    }

    #[test]
    fn a_gone_consumer_is_reported_as_disconnected() {
        let (a, rx) = edge("out", None);
        drop(rx);
        let mut outputs = Outputs::new(vec![a]);
        outputs.push(record("{}")).unwrap();
        assert!(outputs.flush().is_err());
    }
}
