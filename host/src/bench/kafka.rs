//! W8: the keyed count (W1's operator) from a 4-partition Kafka topic to a topic, with
//! checkpoints every second, exactly-once against at-least-once in pairs run in turn:
//! records/s end to end, and what exactly-once costs.

use super::{Bench, Run, Workload};
use crate::job::KafkaClient;
use crate::kafka::broker::{LocalBroker, create_topic};

const PARTITIONS: i32 = 4;
const PAIRS: usize = 3;

/// A W8 run's topics and delivery.
pub(super) struct Topics {
    brokers: String,
    input: String,
    output: String,
    exactly_once: bool,
    /// Unique to the run: transactional ids and their markers start afresh.
    prefix: String,
}

impl Topics {
    /// The job file's `[[source]]` and `[[sink]]` bodies.
    pub(super) fn sections(&self, parallelism: u16) -> (String, String) {
        let source = format!(
            "type = \"kafka\"\nbrokers = {:?}\ntopic = {:?}\nstop = \"latest\"\nparallelism = {parallelism}\n",
            self.brokers, self.input
        );
        let delivery = match self.exactly_once {
            true => format!(
                "delivery = \"exactly-once\"\ntransactional_id_prefix = {:?}\n",
                self.prefix
            ),
            false => "delivery = \"at-least-once\"\n".to_string(),
        };
        let sink = format!(
            "type = \"kafka\"\nbrokers = {:?}\ntopic = {:?}\nkey = \"/key\"\nparallelism = {parallelism}\n{delivery}",
            self.brokers, self.output
        );
        (source, sink)
    }
}

impl Bench<'_> {
    pub(super) fn kafka(&self, workload: &Workload) -> Result<(), String> {
        let (keys, records) = self.size(workload);
        let data = self.work.path().join("broker");
        std::fs::create_dir_all(&data)
            .map_err(|e| format!("cannot create {}: {e}", data.display()))?;
        let (brokers, _local) = match &self.options.brokers {
            Some(brokers) => (brokers.clone(), None),
            None => {
                let broker = LocalBroker::start(&data)?;
                (broker.address.clone(), Some(broker))
            }
        };
        let client = KafkaClient {
            brokers: brokers.clone(),
            properties: Default::default(),
        };
        let id = std::process::id();
        let input = format!("weir-w8-{id}-in");
        create_topic(&client, &input, PARTITIONS)?;
        fill(&client, &input, records, keys)?;
        let mut pairs = Vec::new();
        for pair in 0..PAIRS {
            let mut measured = Vec::new();
            for exactly_once in [true, false] {
                let output = format!("weir-w8-{id}-out-{pair}-{exactly_once}");
                create_topic(&client, &output, PARTITIONS)?;
                let run = Run {
                    workload,
                    keys,
                    records,
                    backend: "memory",
                    parallelism: 1,
                    checkpoint_ms: Some(1000),
                    unaligned: false,
                    native: false,
                    kafka: Some(Topics {
                        brokers: brokers.clone(),
                        input: input.clone(),
                        output,
                        exactly_once,
                        prefix: format!("weir-w8-{id}-{pair}"),
                    }),
                };
                measured.push(self.measure(&run)?);
            }
            let (exactly, at_least) = (&measured[0], &measured[1]);
            if exactly.emitted != records || at_least.emitted != records {
                return Err(format!(
                    "W8: the count emitted {} (exactly-once) and {} (at-least-once) records of {records}",
                    exactly.emitted, at_least.emitted
                ));
            }
            let cost = 1.0 - exactly.records_per_second / at_least.records_per_second;
            pairs.push((
                cost,
                exactly.records_per_second,
                at_least.records_per_second,
            ));
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let each: Vec<String> = (pairs.iter())
            .map(|(cost, ..)| format!("{:.0}%", cost * 100.0))
            .collect();
        let (cost, exactly, at_least) = pairs[pairs.len() / 2];
        let broker = match &self.options.brokers {
            Some(b) => format!("brokers {b}"),
            None => "the local test broker".to_string(),
        };
        println!(
            "W8 {}, {keys} keys, {records} records, wasm, p=1, {broker}, median of {PAIRS} pairs \
             ({}): exactly-once {exactly:.0} records/s, at-least-once {at_least:.0} records/s: \
             exactly-once costs {:.1}%",
            workload.title,
            each.join(", "),
            cost * 100.0
        );
        Ok(())
    }
}

/// Writes W1's records (`{"key":"key-<k>","seq":<s>}`, record `i` of key `i % keys`) to
/// `topic`.
fn fill(client: &KafkaClient, topic: &str, records: u64, keys: u64) -> Result<(), String> {
    let producer = crate::kafka::Producer::new(client, topic, None)?;
    for i in 0..records {
        let record = format!("{{\"key\":\"key-{}\",\"seq\":{}}}", i % keys, i / keys);
        producer.send(record.as_bytes())?;
    }
    producer.flush()
}
