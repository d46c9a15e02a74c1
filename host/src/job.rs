//! The job: the model the dataflow runs, as plain data (no runtime types but the
//! operators' sandboxes). `file` is the job file's TOML shape, `validate` turns its text
//! into a [`Job`] or a [`JobError`] that names the file, the line and the key at fault.

mod file;
mod pointer;
mod sandbox;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use pointer::JsonPointer;
pub use sandbox::{DirGrant, Grants, Limits, Sandbox};
pub use validate::{JobError, parse};

/// A file source's largest split unless `split_bytes` says otherwise: 64 MiB, so that
/// only large files are read by several subtasks.
pub const DEFAULT_SPLIT_BYTES: u64 = 64 << 20;

/// A validated job.
#[derive(Debug, Clone)]
pub struct Job {
    /// The job's name (`[job] name`).
    pub name: String,
    /// Number of key groups, fixed for the life of the job.
    pub max_parallelism: u16,
    /// Sources, in file order.
    pub sources: Vec<Source>,
    /// Operators, in an order where every operator comes after its input.
    pub operators: Vec<Operator>,
    /// Sinks, in file order.
    pub sinks: Vec<Sink>,
    /// `[checkpoint]`, when the job checkpoints.
    pub checkpoint: Option<Checkpointing>,
    /// `[restart]`: what a task failure does.
    pub restart: Strategy,
    /// `[state]`: where keyed state lives while the job runs.
    pub state: StateSettings,
}

/// Where keyed state lives while a job runs.
#[derive(Debug, Clone, PartialEq)]
pub struct StateSettings {
    /// Which backend.
    pub backend: Backend,
    /// Local working folder of disk-based backends (one database per operator subtask).
    pub dir: PathBuf,
    /// RocksDB checkpoints copy only the files that are new (`incremental`, default true).
    pub incremental: bool,
}

/// A state backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Hash maps in memory, per key group.
    Memory,
    /// A local RocksDB per operator subtask: state larger than memory.
    RocksDb,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "memory" => Ok(Backend::Memory),
            "rocksdb" => Ok(Backend::RocksDb),
            other => Err(format!(
                "unknown backend `{other}`: expected `memory` or `rocksdb`"
            )),
        }
    }
}

/// How a job checkpoints.
#[derive(Debug, Clone)]
pub struct Checkpointing {
    /// Timing and retention.
    pub config: CheckpointConfig,
    /// Exactly-once (aligned) or at-least-once.
    pub mode: Mode,
    /// The checkpoint directory (the job's checkpoints go in `<dir>/<job name>/`).
    pub dir: PathBuf,
    /// Whether a cancelled job keeps its checkpoints.
    pub on_cancel: OnCancel,
}

/// `[checkpoint]` timing and retention.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// Time between triggers.
    pub interval: Duration,
    /// A checkpoint not complete after this is aborted.
    pub timeout: Duration,
    /// Least time between a completion and the next trigger.
    pub min_pause: Duration,
    /// Most checkpoints in flight at once.
    pub max_concurrent: usize,
    /// Completed checkpoints kept.
    pub retain: usize,
    /// Print a line for every completed checkpoint (`host run --verbose`).
    pub verbose: bool,
    /// Unaligned checkpoints (`unaligned = true`): barriers overtake in-flight records,
    /// which become channel state. `Some(t)`: a checkpoint starts aligned and a task
    /// switches to unaligned once its barrier has waited `t` (zero: unaligned from the
    /// start). Savepoints are always aligned.
    pub unaligned: Option<Duration>,
}

/// Whether alignment holds inputs back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Align: block inputs that delivered the barrier (exactly-once state).
    ExactlyOnce,
    /// Do not block (records after a barrier may enter the snapshot: at-least-once).
    AtLeastOnce,
}

/// A restart strategy (`[restart] strategy`).
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// Fail the job on the first failure.
    None,
    /// Restart up to `attempts` times, waiting `delay` each time.
    FixedDelay {
        /// Restarts allowed.
        attempts: u32,
        /// Wait before each.
        delay: Duration,
    },
    /// Restart without limit, doubling (by `multiplier`) the wait up to `max_delay`; the
    /// wait starts again from `initial_delay` after `reset_after` without failures.
    ExponentialDelay {
        /// First wait.
        initial_delay: Duration,
        /// Longest wait.
        max_delay: Duration,
        /// Growth per failure.
        multiplier: f64,
        /// A quiet period that resets the wait.
        reset_after: Duration,
    },
    /// Restart unless more than `max_failures` failures happened within `interval`.
    FailureRate {
        /// Failures allowed per interval.
        max_failures: u32,
        /// The sliding interval.
        interval: Duration,
        /// Wait before each restart.
        delay: Duration,
    },
}

/// What happens to checkpoints when a job is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnCancel {
    /// Keep them, to resume later.
    Retain,
    /// Delete them.
    Delete,
}

/// A source of records.
#[derive(Debug, Clone)]
pub struct Source {
    /// Unique node name.
    pub name: String,
    /// Number of parallel instances: the source's splits are dealt among them.
    pub parallelism: u16,
    /// What it reads.
    pub kind: SourceKind,
    /// What to do with a line that is not JSON.
    pub on_bad_record: OnBadRecord,
    /// At most this many records per second over all subtasks (not on stdin); none:
    /// as fast as the job takes them.
    pub records_per_second: Option<u64>,
    /// Where each record's event time is (file and stdin sources): a record without one
    /// is a bad record.
    pub event_time: Option<JsonPointer>,
    /// How the source's watermark follows its records' event times.
    pub watermark: Option<WatermarkStrategy>,
}

/// A source's watermarks: bounded out-of-orderness per split, sent periodically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkStrategy {
    /// How far behind the latest event time a record may still come.
    pub out_of_orderness: Duration,
    /// A split without records for this long does not hold the watermark back.
    pub idle_timeout: Option<Duration>,
    /// How often the watermark is sent (when the source sends a batch).
    pub interval: Duration,
    /// Instead, after every record that moves it (`interval_ms = 0`): the same records
    /// then precede each watermark in every run and replay, so late data is decided the
    /// same way every time, at the cost of a batch per such record.
    pub per_record: bool,
}

/// What a source reads.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    /// A JSON-lines file, or a directory of them (read in name order). Its splits are
    /// its files, and byte ranges of `split_bytes` of larger ones.
    File {
        /// Absolute or relative to the working directory.
        path: PathBuf,
        /// The largest split: a larger file is read as several ranges, in parallel.
        split_bytes: u64,
    },
    /// JSON lines from standard input.
    Stdin,
    /// Synthetic records `{"<key_field>": "<key_prefix><k>", "seq": s}`: record `i`
    /// has key `k = i % keys` and is that key's `s = i / keys`-th record.
    Generator {
        /// Number of records.
        count: u64,
        /// Number of distinct keys.
        keys: u64,
        /// The key's field name.
        key_field: String,
        /// Text before the key's number.
        key_prefix: String,
        /// An event-time field in every record, if wanted.
        time: Option<GeneratedTime>,
    },
    /// The messages of Kafka topics, one JSON document each. Its splits are the topics'
    /// partitions, each with the offset of its next message.
    Kafka(KafkaSource),
}

/// A Kafka cluster, and client properties passed through to librdkafka as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaClient {
    /// `host:port,host:port`: the bootstrap brokers.
    pub brokers: String,
    /// More client properties (`[source.properties]`, `[sink.properties]`).
    pub properties: std::collections::BTreeMap<String, String>,
}

/// A Kafka source's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSource {
    /// The cluster.
    pub client: KafkaClient,
    /// The topics read.
    pub topics: Vec<String>,
    /// The consumer group that completed checkpoints' offsets are committed to, for lag
    /// tools (and `start = "committed"`); recovery never reads it.
    pub group_id: String,
    /// Where partitions without a checkpointed offset start.
    pub start: KafkaStart,
    /// Stop at the end each partition had when the job first started (`stop =
    /// "latest"`), so that the source ends; otherwise it reads until cancelled.
    pub bounded: bool,
    /// Puts each message's key into its JSON object under this name (as a string, or
    /// null for a message without one), so that operators can key by it.
    pub key_field: Option<String>,
    /// How often a running (unbounded) source looks for partitions added to its topics;
    /// none: only when the job starts or restores.
    pub discovery: Option<Duration>,
}

/// How often an unbounded Kafka source looks for new partitions unless
/// `partition_discovery_ms` says otherwise.
pub const DEFAULT_PARTITION_DISCOVERY: Duration = Duration::from_secs(60);

/// Where a partition is first read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaStart {
    /// Its oldest message.
    Earliest,
    /// After its newest message.
    Latest,
    /// The group's committed offset (else the oldest message).
    Committed,
    /// The first message at or after this time (epoch milliseconds).
    Timestamp(i64),
}

/// The event times a generator writes into its records: record `i` has time
/// `i * step_us / 1000` milliseconds, moved back by up to `disorder_ms` (a fixed
/// pseudo-random amount per record, the same at any parallelism).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedTime {
    /// The field's name.
    pub field: String,
    /// Event time between one record and the next, in microseconds.
    pub step_us: u64,
    /// The most a record's time is moved back.
    pub disorder_ms: u64,
}

/// What an operator does with a poison record: one that failed it again after a restore.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OnPoison {
    /// Fail the job, naming the record, its source and position.
    #[default]
    Fail,
    /// Drop the record, count it, and go on.
    Skip,
    /// Append the record, the operator, the error and the time to a JSON-lines file in
    /// this folder (once per record), and go on.
    DeadLetter(PathBuf),
}

/// What a source does with a line that is not a JSON document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnBadRecord {
    /// Fail the job, naming the file and line.
    #[default]
    Fail,
    /// Skip the line and count it; the count is reported at the end.
    Skip,
}

/// An operator: a Wasm component.
#[derive(Debug, Clone)]
pub struct Operator {
    /// Unique node name; state is keyed by it.
    pub name: String,
    /// The component file.
    pub component: PathBuf,
    /// The nodes whose records it reads, in the order the job file lists them: each
    /// record tells the guest which one it came from.
    pub inputs: Vec<Input>,
    /// Where its records' keys are; `None` for a stateless operator.
    pub key_by: Option<JsonPointer>,
    /// Number of parallel instances.
    pub parallelism: u16,
    /// `[operator.config]` as a JSON object, passed to the operator's `open`.
    pub config_json: String,
    /// `[operator.limits]`, `[[operator.grants]]` and `[operator.env]`.
    pub sandbox: Sandbox,
    /// `on_poison` (with `dead_letter`): what to do with a record that fails again.
    pub on_poison: OnPoison,
    /// `side_outputs`: the names of its side outputs, which other nodes read as
    /// `<operator>.<side output>` (late records of its windows, for one).
    pub side_outputs: Vec<String>,
}

impl Operator {
    /// Which of this operator's outputs the input name `input` reads: `Some(None)` its
    /// own records (`input` is its name), `Some(Some(i))` side output `i`
    /// (`<name>.<side output>`), `None` none of them.
    pub fn output_named(&self, input: &str) -> Option<Option<usize>> {
        if input == self.name {
            return Some(None);
        }
        let side = input.strip_prefix(self.name.as_str())?.strip_prefix('.')?;
        let index = self.side_outputs.iter().position(|name| name == side)?;
        Some(Some(index))
    }
}

/// One input of an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The source or operator it reads.
    pub name: String,
    /// Every subtask receives every record (unkeyed), instead of its share.
    pub broadcast: bool,
}

/// A sink.
#[derive(Debug, Clone)]
pub struct Sink {
    /// Unique node name.
    pub name: String,
    /// The nodes whose records it writes.
    pub inputs: Vec<String>,
    /// Number of parallel instances; each writes its own part files.
    pub parallelism: u16,
    /// Where it writes.
    pub kind: SinkKind,
}

/// Where a sink writes.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    /// One JSON document per line on standard output.
    Stdout,
    /// JSON lines in part files inside a directory.
    File {
        /// The directory.
        path: PathBuf,
    },
    /// Messages of a Kafka topic.
    Kafka(KafkaSink),
}

/// A Kafka sink's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSink {
    /// The cluster.
    pub client: KafkaClient,
    /// The topic written.
    pub topic: String,
    /// Each message's key: the output's value at this pointer (a string as its text,
    /// anything else as JSON); none: no key.
    pub key: Option<JsonPointer>,
    /// What a failure may do to the topic's messages.
    pub delivery: KafkaDelivery,
}

/// A Kafka sink's delivery guarantee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KafkaDelivery {
    /// Messages are sent as they come and flushed at every checkpoint: none is lost, a
    /// replay after a failure sends some again.
    AtLeastOnce,
    /// A checkpoint's messages are written to a transaction when it completes, under
    /// transactional ids `<prefix>-<job>-<sink>-<subtask>`: `read_committed` readers see
    /// each exactly once.
    ExactlyOnce {
        /// Subtask `i`'s transactional id is this and `-<i>`: `<transactional_id_prefix>
        /// -<job>-<sink>`, so a restart, at any parallelism, takes over its ids.
        transactional_ids: String,
    },
}

impl Job {
    /// Puts checkpoints under `dir` (the command line's `--checkpoint-dir`).
    pub fn set_checkpoint_dir(&mut self, dir: &Path) -> Result<(), String> {
        match &mut self.checkpoint {
            Some(checkpoint) => {
                checkpoint.dir = dir.to_path_buf();
                Ok(())
            }
            None => Err("--checkpoint-dir: the job has no [checkpoint] section".into()),
        }
    }

    /// Runs every operator with `parallelism` subtasks (the command line's `-p`).
    pub fn set_parallelism(&mut self, parallelism: u16) -> Result<(), String> {
        if parallelism == 0 || parallelism > self.max_parallelism {
            return Err(format!(
                "-p {parallelism}: parallelism must be between 1 and the job's max_parallelism ({})",
                self.max_parallelism
            ));
        }
        for operator in &mut self.operators {
            operator.parallelism = parallelism;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
