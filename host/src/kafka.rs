//! What the Kafka source and sink ask of a cluster, over librdkafka (`rdkafka`): the
//! partitions of topics and where to start reading them, a reader of a subtask's
//! partitions, an at-least-once producer, and the exactly-once sink's committer.
//!
//! Exactly-once (see ARCHITECTURE.md): a sink subtask's output between two barriers is a
//! part file of the checkpoint; when the checkpoint completes, the part is written to the
//! topic in one transaction, which also commits, as an offset of the consumer group named
//! by the transactional id, the number of the next part. That marker is in the cluster
//! exactly when the part's messages are, so a commit repeated after a crash (a restore
//! commits every part its checkpoint lists) writes only the parts the marker does not
//! cover. Nothing here depends on one broker's behaviour: plain Kafka transactions.

pub mod broker;

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::checkpoint::SourceSplit;
use crate::checkpoint::metadata::Metadata;
use crate::job::{JsonPointer, KafkaClient, KafkaSource, KafkaStart};

/// How long a request to the cluster may take before the task fails (and the restart
/// strategy takes over).
const TIMEOUT: Duration = Duration::from_secs(10);

/// How long delivering what was sent may take (a flush at a barrier, a part's commit):
/// longer, since it grows with the output between two checkpoints.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// The client's configuration: `defaults` (which the job's properties may change), the
/// job's properties, then `fixed` (what correctness rests on).
fn config(client: &KafkaClient, defaults: &[(&str, &str)], fixed: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &client.brokers);
    for (name, value) in defaults {
        config.set(*name, *value);
    }
    for (name, value) in &client.properties {
        config.set(name, value);
    }
    for (name, value) in fixed {
        config.set(*name, *value);
    }
    config
}

/// An error from the cluster, with the brokers it came from and what to check.
fn failed(client: &KafkaClient, what: &str, error: &KafkaError) -> String {
    let hint = match error {
        KafkaError::MetadataFetch(_) | KafkaError::Transaction(_) => {
            ": check that the brokers are up and reachable from this machine"
        }
        _ => "",
    };
    format!("{what} (brokers `{}`): {error}{hint}", client.brokers)
}

fn consumer(client: &KafkaClient, group: &str) -> Result<BaseConsumer, String> {
    let defaults = [
        ("isolation.level", "read_committed"),
        ("auto.offset.reset", "earliest"),
    ];
    let fixed = [
        ("group.id", group),
        ("enable.auto.commit", "false"),
        ("enable.partition.eof", "true"),
    ];
    config(client, &defaults, &fixed)
        .create()
        .map_err(|e| failed(client, "cannot make a Kafka consumer", &e))
}

/// The partitions of `topics`, in topic then partition order; a topic that does not
/// exist is an error naming it.
fn partitions(
    client: &KafkaClient,
    consumer: &BaseConsumer,
    topics: &[String],
) -> Result<Vec<(String, i32)>, String> {
    let mut out = Vec::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(|e| failed(client, &format!("cannot read topic `{topic}`"), &e))?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        match found {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
                ids.sort_unstable();
                out.extend(ids.into_iter().map(|id| (topic.clone(), id)));
            }
            _ => {
                return Err(format!(
                    "topic `{topic}` does not exist on brokers `{}`: create it, or fix the \
                     source's `topic`",
                    client.brokers
                ));
            }
        }
    }
    Ok(out)
}

/// The splits of a Kafka source that no checkpoint has: every partition of its topics
/// from its `start`, each ending at the partition's end now if the source is bounded.
pub fn initial_splits(source: &KafkaSource) -> io::Result<Vec<SourceSplit>> {
    let consumer = consumer(&source.client, &source.group_id).map_err(io::Error::other)?;
    let parts = partitions(&source.client, &consumer, &source.topics).map_err(io::Error::other)?;
    splits_from(source, &consumer, parts, source.start).map_err(io::Error::other)
}

/// The partitions of a Kafka source's topics that `known` does not have (added since the
/// checkpoint was taken), from their earliest message; none for a bounded source, whose
/// partitions were fixed when it first started.
pub fn new_splits(source: &KafkaSource, known: &[SourceSplit]) -> io::Result<Vec<SourceSplit>> {
    if source.bounded {
        return Ok(Vec::new());
    }
    let consumer = consumer(&source.client, &source.group_id).map_err(io::Error::other)?;
    let parts = partitions(&source.client, &consumer, &source.topics).map_err(io::Error::other)?;
    let new: Vec<(String, i32)> = parts
        .into_iter()
        .filter(|(topic, partition)| {
            !known.iter().any(|s| {
                matches!(s, SourceSplit::Kafka { topic: t, partition: p, .. }
                    if t == topic && p == partition)
            })
        })
        .collect();
    splits_from(source, &consumer, new, KafkaStart::Earliest).map_err(io::Error::other)
}

fn splits_from(
    source: &KafkaSource,
    consumer: &BaseConsumer,
    parts: Vec<(String, i32)>,
    start: KafkaStart,
) -> Result<Vec<SourceSplit>, String> {
    let client = &source.client;
    let committed = match start {
        KafkaStart::Committed => {
            let list: TopicPartitionList = parts
                .iter()
                .map(|(t, p)| ((t.clone(), *p), Offset::Invalid))
                .collect();
            consumer
                .committed_offsets(list, TIMEOUT)
                .map_err(|e| failed(client, "cannot read the group's committed offsets", &e))?
                .to_topic_map()
        }
        _ => HashMap::new(),
    };
    let at_time = match start {
        KafkaStart::Timestamp(ms) => {
            let list: TopicPartitionList = parts
                .iter()
                .map(|(t, p)| ((t.clone(), *p), Offset::Offset(ms)))
                .collect();
            consumer
                .offsets_for_times(list, TIMEOUT)
                .map_err(|e| failed(client, "cannot look up offsets by time", &e))?
                .to_topic_map()
        }
        _ => HashMap::new(),
    };
    let mut splits = Vec::new();
    for (topic, partition) in parts {
        let (low, high) = consumer
            .fetch_watermarks(&topic, partition, TIMEOUT)
            .map_err(|e| {
                failed(
                    client,
                    &format!("cannot read `{topic}` [{partition}]'s offsets"),
                    &e,
                )
            })?;
        let key = (topic.clone(), partition);
        let next = match start {
            KafkaStart::Earliest => low,
            KafkaStart::Latest => high,
            KafkaStart::Committed => match committed.get(&key) {
                Some(Offset::Offset(o)) => (*o).clamp(low, high),
                _ => low,
            },
            KafkaStart::Timestamp(_) => match at_time.get(&key) {
                Some(Offset::Offset(o)) => (*o).clamp(low, high),
                _ => high,
            },
        };
        splits.push(SourceSplit::Kafka {
            topic,
            partition,
            next,
            end: source.bounded.then_some(high),
        });
    }
    Ok(splits)
}

/// What [`Reader::poll`] found.
pub enum Polled {
    /// A message of split `split` (an index into the reader's partitions).
    Message {
        /// The split.
        split: usize,
        /// Its offset.
        offset: i64,
        /// Its value; none for a tombstone.
        value: Option<Vec<u8>>,
        /// Its key, if it has one.
        key: Option<Vec<u8>>,
        /// Its timestamp, if it has one.
        timestamp: Option<i64>,
    },
    /// The reader has caught up with the end of some partitions: [`Reader::positions`]
    /// says how far each one got (past transaction markers too).
    Caught,
}

/// A subtask's reader of its partitions (assigned, not subscribed: no group rebalances).
pub struct Reader {
    consumer: BaseConsumer,
    client: KafkaClient,
    topics: Vec<String>,
    /// (topic index, partition) → split index.
    index: HashMap<(usize, i32), usize>,
}

impl Reader {
    /// Reads `parts` (topic, partition, next offset) under the consumer group `group`.
    pub fn new(
        client: &KafkaClient,
        group: &str,
        parts: &[(&str, i32, i64)],
    ) -> Result<Reader, String> {
        let consumer = consumer(client, group)?;
        let mut topics: Vec<String> = Vec::new();
        let mut index = HashMap::new();
        let mut list = TopicPartitionList::new();
        for (split, (topic, partition, next)) in parts.iter().enumerate() {
            let t = match topics.iter().position(|t| t == topic) {
                Some(t) => t,
                None => {
                    topics.push(topic.to_string());
                    topics.len() - 1
                }
            };
            index.insert((t, *partition), split);
            list.add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(|e| failed(client, "cannot assign partitions", &e))?;
        }
        consumer
            .assign(&list)
            .map_err(|e| failed(client, "cannot assign partitions", &e))?;
        Ok(Reader {
            consumer,
            client: client.clone(),
            topics,
            index,
        })
    }

    /// The next message or event, waiting at most `timeout`; none if nothing came.
    pub fn poll(&self, timeout: Duration) -> Option<Result<Polled, String>> {
        match self.consumer.poll(timeout)? {
            Ok(message) => {
                let t = self.topics.iter().position(|t| t == message.topic());
                let split = t.and_then(|t| self.index.get(&(t, message.partition())));
                let Some(&split) = split else {
                    return Some(Err(format!(
                        "a message of `{}` [{}], which this subtask was not given",
                        message.topic(),
                        message.partition()
                    )));
                };
                Some(Ok(Polled::Message {
                    split,
                    offset: message.offset(),
                    value: message.payload().map(<[u8]>::to_vec),
                    key: message.key().map(<[u8]>::to_vec),
                    timestamp: message.timestamp().to_millis(),
                }))
            }
            Err(KafkaError::PartitionEOF(_)) => Some(Ok(Polled::Caught)),
            Err(e) => Some(Err(failed(&self.client, "cannot read messages", &e))),
        }
    }

    /// Each split's position (the offset after the last message it delivered, past any
    /// transaction markers), where known.
    pub fn positions(&self) -> Result<Vec<(usize, i64)>, String> {
        let list = self
            .consumer
            .position()
            .map_err(|e| failed(&self.client, "cannot read the partitions' positions", &e))?;
        Ok(list
            .elements()
            .iter()
            .filter_map(|e| {
                let t = self.topics.iter().position(|t| t == e.topic())?;
                let split = *self.index.get(&(t, e.partition()))?;
                Some((split, e.offset().to_raw()?))
            })
            .collect())
    }

    /// The partitions `topics` have now, in topic then partition order.
    pub fn partitions(&self, topics: &[String]) -> Result<Vec<(String, i32)>, String> {
        partitions(&self.client, &self.consumer, topics)
    }

    /// Starts reading `topic` [`partition`] from its earliest message as split number
    /// `self`'s next; returns that offset.
    pub fn add(&mut self, topic: &str, partition: i32) -> Result<i64, String> {
        let (low, _) = self
            .consumer
            .fetch_watermarks(topic, partition, TIMEOUT)
            .map_err(|e| {
                failed(
                    &self.client,
                    &format!("cannot read `{topic}` [{partition}]'s offsets"),
                    &e,
                )
            })?;
        let t = match self.topics.iter().position(|t| t == topic) {
            Some(t) => t,
            None => {
                self.topics.push(topic.to_string());
                self.topics.len() - 1
            }
        };
        let split = self.index.len();
        self.index.insert((t, partition), split);
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition, Offset::Offset(low))
            .map_err(|e| failed(&self.client, "cannot assign a partition", &e))?;
        self.consumer
            .incremental_assign(&list)
            .map_err(|e| failed(&self.client, "cannot assign a partition", &e))?;
        Ok(low)
    }

    /// Stops fetching split `split` (a bounded source's split that reached its end).
    pub fn pause(&self, split: usize) {
        let found = self.index.iter().find(|(_, s)| **s == split);
        if let Some(((t, partition), _)) = found {
            let mut list = TopicPartitionList::new();
            list.add_partition(&self.topics[*t], *partition);
            let _ = self.consumer.pause(&list);
        }
    }
}

/// What commits a Kafka source's offsets to its consumer group as each checkpoint
/// completes (asynchronously), so that lag tools see the job's progress; recovery never
/// reads them back.
pub fn offset_committer(
    source: &str,
    kafka: &KafkaSource,
) -> Result<impl FnMut(&Metadata) -> Result<(), String> + Send + use<>, String> {
    let consumer = consumer(&kafka.client, &kafka.group_id)?;
    let (client, source) = (kafka.client.clone(), source.to_string());
    Ok(move |metadata: &Metadata| {
        let Some(subtasks) = metadata.sources.get(&source) else {
            return Ok(());
        };
        let list: TopicPartitionList = (subtasks.iter().flatten())
            .filter_map(|split| match split {
                SourceSplit::Kafka {
                    topic,
                    partition,
                    next,
                    ..
                } => Some(((topic.clone(), *partition), Offset::Offset(*next))),
                _ => None,
            })
            .collect();
        if list.count() == 0 {
            return Ok(());
        }
        consumer.commit(&list, CommitMode::Async).map_err(|e| {
            failed(
                &client,
                &format!("source `{source}` cannot commit its offsets"),
                &e,
            )
        })
    })
}

/// The key of output `payload` at `pointer`: a string as its text, any other value as
/// its JSON; none if the output has nothing there.
pub fn key_of(pointer: &JsonPointer, payload: &[u8]) -> Option<Vec<u8>> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    match value.pointer(pointer.as_str())? {
        serde_json::Value::String(s) => Some(s.clone().into_bytes()),
        other => Some(other.to_string().into_bytes()),
    }
}

/// Records the first failed delivery, so a flush can say the messages did not all land.
#[derive(Default, Clone)]
struct Deliveries {
    failed: Arc<Mutex<Option<String>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
            failed.get_or_insert_with(|| error.to_string());
        }
    }
}

fn producer(client: &KafkaClient, extra: &[(&str, &str)]) -> Result<Sender, String> {
    // Keys land on the partitions the Java client would choose.
    let defaults = [("partitioner", "murmur2_random")];
    let context = Deliveries::default();
    let producer = config(client, &defaults, extra)
        .create_with_context(context.clone())
        .map_err(|e| failed(client, "cannot make a Kafka producer", &e))?;
    Ok(Sender {
        producer,
        context,
        client: client.clone(),
    })
}

struct Sender {
    producer: ThreadedProducer<Deliveries>,
    context: Deliveries,
    client: KafkaClient,
}

impl Sender {
    /// Queues a message, waiting for room in the producer's queue.
    fn send(&self, topic: &str, key: Option<&[u8]>, value: &[u8]) -> Result<(), String> {
        let mut record = BaseRecord::to(topic).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    back,
                )) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(failed(&self.client, "cannot send a message", &e)),
            }
        }
    }

    fn delivery_failure(&self) -> Option<String> {
        let failed = self
            .context
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        failed.clone()
    }
}

/// An at-least-once sink subtask's producer: messages go as they come; a flush waits
/// until every one sent so far is acknowledged.
pub struct Producer {
    sender: Sender,
    topic: String,
    key: Option<JsonPointer>,
}

impl Producer {
    /// A producer to `topic`, keyed at `key`.
    pub fn new(
        client: &KafkaClient,
        topic: &str,
        key: Option<JsonPointer>,
    ) -> Result<Producer, String> {
        Ok(Producer {
            sender: producer(client, &[("enable.idempotence", "true")])?,
            topic: topic.to_string(),
            key,
        })
    }

    /// Sends one output.
    pub fn send(&self, payload: &[u8]) -> Result<(), String> {
        let key = self.key.as_ref().and_then(|k| key_of(k, payload));
        self.sender.send(&self.topic, key.as_deref(), payload)
    }

    /// Waits until everything sent is in the topic.
    pub fn flush(&self) -> Result<(), String> {
        self.sender
            .producer
            .flush(DELIVERY_TIMEOUT)
            .map_err(|e| failed(&self.sender.client, "cannot deliver messages", &e))?;
        match self.sender.delivery_failure() {
            Some(error) => Err(format!(
                "a message to `{}` was not delivered (brokers `{}`): {error}",
                self.topic, self.sender.client.brokers
            )),
            None => Ok(()),
        }
    }
}

/// An exactly-once sink subtask's transactional producer: commits part files, each in
/// one transaction with the marker that says it is committed.
pub struct Committer {
    sender: Sender,
    transactional_id: String,
    topic: String,
    key: Option<JsonPointer>,
    /// The marker: every part below it is in the topic.
    next: u64,
    /// A client of the marker's consumer group (never joined).
    marker: BaseConsumer,
}

impl Committer {
    /// Takes over `transactional_id`: aborts a transaction a previous producer with it
    /// left open, fences that producer off, and reads how many parts are committed.
    pub fn new(
        client: &KafkaClient,
        transactional_id: &str,
        topic: &str,
        key: Option<JsonPointer>,
    ) -> Result<Committer, String> {
        let sender = producer(client, &[("transactional.id", transactional_id)])?;
        sender.producer.init_transactions(TIMEOUT).map_err(|e| {
            failed(
                client,
                &format!("cannot start transactions as `{transactional_id}`"),
                &e,
            )
        })?;
        let marker = consumer(client, transactional_id)?;
        let mut list = TopicPartitionList::new();
        list.add_partition(topic, 0);
        let committed = marker
            .committed_offsets(list, TIMEOUT)
            .map_err(|e| failed(client, "cannot read the committed parts' marker", &e))?;
        let next = committed
            .elements()
            .first()
            .and_then(|e| e.offset().to_raw())
            .map_or(0, |o| o.max(0) as u64);
        Ok(Committer {
            sender,
            transactional_id: transactional_id.to_string(),
            topic: topic.to_string(),
            key,
            next,
            marker,
        })
    }

    /// The first part not yet in the topic.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Writes part `part` (the JSON lines in `file`) to the topic in one transaction
    /// with the marker `part + 1`; a part the marker covers is already there and is
    /// skipped. Parts are committed in order.
    pub fn commit(&mut self, part: u64, file: &Path) -> Result<(), String> {
        if part < self.next {
            return Ok(());
        }
        let lines = std::fs::read(file)
            .map_err(|e| format!("cannot read the pending output {}: {e}", file.display()))?;
        let producer = &self.sender.producer;
        let client = &self.sender.client;
        let id = &self.transactional_id;
        producer
            .begin_transaction()
            .map_err(|e| failed(client, &format!("`{id}` cannot begin a transaction"), &e))?;
        for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let key = self.key.as_ref().and_then(|k| key_of(k, line));
            self.sender.send(&self.topic, key.as_deref(), line)?;
        }
        let mut marker = TopicPartitionList::new();
        marker
            .add_partition_offset(&self.topic, 0, Offset::Offset(part as i64 + 1))
            .map_err(|e| failed(client, "cannot set the marker", &e))?;
        let group = (self.marker.group_metadata())
            .ok_or_else(|| format!("no consumer group metadata for `{id}`"))?;
        producer
            .send_offsets_to_transaction(&marker, &group, TIMEOUT)
            .map_err(|e| failed(client, &format!("`{id}` cannot add its marker"), &e))?;
        if let Some(subtask) =
            (self.transactional_id.rsplit('-').next()).and_then(|s| s.parse().ok())
        {
            producer
                .flush(DELIVERY_TIMEOUT)
                .map_err(|e| failed(client, "cannot flush", &e))?;
            crate::fault::crash_if(crate::fault::Point::InTransaction, part, Some(subtask));
        }
        producer
            .commit_transaction(DELIVERY_TIMEOUT)
            .map_err(|e| failed(client, &format!("`{id}` cannot commit part {part}"), &e))?;
        self.next = part + 1;
        Ok(())
    }
}
