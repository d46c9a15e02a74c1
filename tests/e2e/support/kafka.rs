//! A real Kafka-protocol broker per test (`host::kafka::broker`: noida-db from the tools
//! folder, on a free loopback port with its own data folder, stopped by PID when
//! dropped), and a plain Kafka client to fill and read its topics.

use std::time::{Duration, Instant};

use host::kafka::broker::{LocalBroker, create_topic};
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use tempfile::TempDir;

/// A running broker.
pub struct Broker {
    /// Stopped when dropped (before its data folder goes).
    _local: LocalBroker,
    /// `127.0.0.1:<port>`.
    pub address: String,
    _data: TempDir,
}

impl Broker {
    /// Starts a broker and waits until it takes connections.
    pub fn start() -> Broker {
        let data = tempfile::tempdir().expect("a data folder");
        let local = LocalBroker::start(data.path()).expect("a broker");
        Broker {
            address: local.address.clone(),
            _local: local,
            _data: data,
        }
    }

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.address);
        config
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let client = host::job::KafkaClient {
            brokers: self.address.clone(),
            properties: Default::default(),
        };
        create_topic(&client, topic, partitions).expect("create the topic");
    }

    /// Commits `offset` as consumer group `group`'s position in `topic` [`partition`].
    pub fn commit_offset(&self, group: &str, topic: &str, partition: i32, offset: i64) {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", group)
            .create()
            .expect("a consumer");
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition, Offset::Offset(offset))
            .expect("a partition");
        consumer
            .commit(&list, rdkafka::consumer::CommitMode::Sync)
            .expect("commit the offset");
    }

    /// Gives `topic` `partitions` partitions in all.
    pub fn grow_topic(&self, topic: &str, partitions: usize) {
        let admin: AdminClient<DefaultClientContext> =
            self.config().create().expect("an admin client");
        let grow = NewPartitions::new(topic, partitions);
        let results =
            futures_executor::block_on(admin.create_partitions(&[grow], &AdminOptions::new()))
                .expect("add partitions");
        for result in results {
            result.expect("the partitions are added");
        }
    }

    /// Sends `values` to partition `partition` of `topic` and waits until all are written.
    pub fn produce_to(
        &self,
        topic: &str,
        partition: i32,
        values: impl IntoIterator<Item = String>,
    ) {
        let producer: ThreadedProducer<DefaultProducerContext> =
            self.config().create().expect("a producer");
        for value in values {
            let record = BaseRecord::<(), _>::to(topic)
                .partition(partition)
                .payload(&value);
            producer.send(record).map_err(|(e, _)| e).expect("queued");
        }
        producer
            .flush(Duration::from_secs(30))
            .expect("every message written");
    }

    /// Sends `messages` (key, value) to `topic` and waits until all are written.
    pub fn produce<'a>(&self, topic: &str, messages: impl IntoIterator<Item = (&'a str, String)>) {
        self.produce_at(topic, messages.into_iter().map(|(k, v)| (k, v, None)));
    }

    /// Sends `messages` (key, value, timestamp in epoch milliseconds, or the producer's
    /// clock) to `topic` and waits until all are written.
    pub fn produce_at<'a>(
        &self,
        topic: &str,
        messages: impl IntoIterator<Item = (&'a str, String, Option<i64>)>,
    ) {
        let producer: ThreadedProducer<DefaultProducerContext> = self
            .config()
            .set("linger.ms", "5")
            .create()
            .expect("a producer");
        for (key, value, timestamp) in messages {
            let mut record = BaseRecord::to(topic).key(key).payload(&value);
            if let Some(timestamp) = timestamp {
                record = record.timestamp(timestamp);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(_), back)) => {
                        record = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((e, _)) => panic!("cannot send to {topic}: {e}"),
                }
            }
        }
        producer
            .flush(Duration::from_secs(30))
            .expect("every message written");
    }

    /// Every committed message of `topic`, partition by partition, as a `read_committed`
    /// consumer sees it once it has caught up with every partition.
    pub fn read_committed(&self, topic: &str) -> Vec<String> {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", "weir-test-reader")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .create()
            .expect("a consumer");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("the topic's metadata");
        let partitions: Vec<i32> = metadata.topics()[0]
            .partitions()
            .iter()
            .map(|p| p.id())
            .collect();
        let mut list = TopicPartitionList::new();
        for p in &partitions {
            list.add_partition_offset(topic, *p, Offset::Beginning)
                .expect("a partition");
        }
        consumer.assign(&list).expect("assign");
        let mut caught_up = std::collections::BTreeSet::new();
        let mut values = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while caught_up.len() < partitions.len() {
            assert!(Instant::now() < deadline, "{topic} was not read to its end");
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => values.push(
                    String::from_utf8(message.payload().unwrap_or_default().to_vec())
                        .expect("UTF-8"),
                ),
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    caught_up.insert(p);
                }
                Some(Err(e)) => panic!("cannot read {topic}: {e}"),
                None => {}
            }
        }
        values
    }
}

impl Broker {
    /// The offsets consumer group `group` has committed for `topic`'s partitions, summed
    /// (a partition with none counts 0).
    pub fn committed_offsets(&self, group: &str, topic: &str, partitions: i32) -> i64 {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", group)
            .create()
            .expect("a consumer");
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition(topic, p);
        }
        let committed = consumer
            .committed_offsets(list, Duration::from_secs(10))
            .expect("the group's offsets");
        (committed.elements().iter())
            .filter_map(|e| e.offset().to_raw())
            .filter(|o| *o >= 0)
            .sum()
    }
}
