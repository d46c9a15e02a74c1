//! Job files built as typed values and written as TOML, so that a test says which mode,
//! backend and parallelism it runs with instead of patching text.

use std::path::Path;

use serde::Serialize;

/// A job file.
#[derive(Debug, Clone, Serialize)]
pub struct JobFile {
    pub job: JobSection,
    #[serde(rename = "source")]
    pub sources: Vec<Source>,
    #[serde(rename = "operator")]
    pub operators: Vec<Operator>,
    #[serde(rename = "sink")]
    pub sinks: Vec<Sink>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobSection {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_parallelism: Option<u16>,
}

/// A `[[source]]`: set `kind` and the fields of that kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Source {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records_per_second: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_bad_record: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_time_step_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disorder_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watermark: Option<Watermark>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brokers: Option<String>,
    /// A topic's name, or a list of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<toml::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// `"earliest"`, `"latest"`, `"committed"` or `{ timestamp_ms = … }`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<toml::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition_discovery_ms: Option<u64>,
}

/// A source's `watermark = { … }` strategy.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Watermark {
    pub out_of_orderness_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
}

impl Watermark {
    /// Bounded out-of-orderness of `ms`, sent every `interval_ms` (the default if none).
    pub fn bounded(ms: u64, interval_ms: Option<u64>) -> Watermark {
        Watermark {
            out_of_orderness_ms: ms,
            interval_ms,
            ..Watermark::default()
        }
    }
}

impl Source {
    /// A generator of `count` records over `keys` keys.
    pub fn generator(name: &str, count: u64, keys: u64) -> Source {
        Source {
            name: name.into(),
            kind: "generator".into(),
            count: Some(count),
            keys: Some(keys),
            ..Source::default()
        }
    }

    /// A Kafka source reading `topic` at `brokers` to the end it had when the job
    /// first started (`stop = "latest"`).
    pub fn kafka_bounded(name: &str, brokers: &str, topic: &str) -> Source {
        Source {
            name: name.into(),
            kind: "kafka".into(),
            brokers: Some(brokers.into()),
            topic: Some(topic.into()),
            stop: Some("latest".into()),
            ..Source::default()
        }
    }

    /// A file source reading `path` (a file or a folder of files).
    pub fn file(name: &str, path: &str) -> Source {
        Source {
            name: name.into(),
            kind: "file".into(),
            path: Some(path.into()),
            ..Source::default()
        }
    }
}

/// An `[[operator]]`.
#[derive(Debug, Clone, Serialize)]
pub struct Operator {
    pub name: String,
    pub component: String,
    /// One input, or several: each record says which it came from.
    pub input: Vec<Input>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u16>,
    #[serde(skip_serializing_if = "toml::Table::is_empty")]
    pub config: toml::Table,
    /// Its side outputs, which others read as `<name>.<side output>`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub side_outputs: Vec<String>,
}

impl Operator {
    /// The operator `name` running `component` on `input`, keyed by the pointer `key_by`.
    pub fn keyed(name: &str, component: &Path, input: &str, key_by: &str) -> Operator {
        Operator {
            name: name.into(),
            component: component.to_str().expect("UTF-8 path").into(),
            input: vec![input.into()],
            key_by: Some(key_by.into()),
            parallelism: None,
            config: toml::Table::new(),
            side_outputs: Vec::new(),
        }
    }
}

/// One of an operator's inputs: a node's name, or a table marking it broadcast.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Input {
    Name(String),
    Table { name: String, broadcast: bool },
}

impl Input {
    /// The node `name`, broadcast to every subtask.
    pub fn broadcast(name: &str) -> Input {
        Input::Table {
            name: name.into(),
            broadcast: true,
        }
    }
}

impl From<&str> for Input {
    fn from(name: &str) -> Input {
        Input::Name(name.into())
    }
}

/// A `[[sink]]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sink {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub input: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brokers: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transactional_id_prefix: Option<String>,
}

/// A Kafka sink's delivery guarantee, as the job file spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    AtLeastOnce,
    ExactlyOnce,
}

impl Sink {
    /// A Kafka sink writing to `topic` at `brokers` with `delivery` (exactly-once under
    /// the transactional id prefix `weir-test`).
    pub fn kafka(name: &str, input: &str, brokers: &str, topic: &str, delivery: Delivery) -> Sink {
        Sink {
            name: name.into(),
            kind: "kafka".into(),
            input: input.into(),
            brokers: Some(brokers.into()),
            topic: Some(topic.into()),
            delivery: Some(delivery),
            transactional_id_prefix: (delivery == Delivery::ExactlyOnce)
                .then(|| "weir-test".into()),
            ..Sink::default()
        }
    }

    /// A file sink writing into the folder `path`.
    pub fn file(name: &str, input: &str, path: &str) -> Sink {
        Sink {
            name: name.into(),
            kind: "file".into(),
            input: input.into(),
            path: Some(path.into()),
            ..Sink::default()
        }
    }
}

/// Checkpointing modes, as the job file spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    ExactlyOnce,
    AtLeastOnce,
}

/// A `[checkpoint]` section.
#[derive(Debug, Clone, Serialize)]
pub struct Checkpoint {
    pub interval_ms: u64,
    pub dir: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retain: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_cancel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unaligned: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aligned_timeout_ms: Option<u64>,
}

impl Checkpoint {
    /// Every `interval_ms` into `checkpoints/`, in the default mode.
    pub fn every(interval_ms: u64) -> Checkpoint {
        Checkpoint {
            interval_ms,
            dir: "checkpoints".into(),
            mode: None,
            timeout_ms: None,
            retain: None,
            on_cancel: None,
            unaligned: None,
            aligned_timeout_ms: None,
        }
    }
}

/// A `[restart]` section.
#[derive(Debug, Clone, Serialize)]
pub struct Restart {
    pub strategy: String,
    pub attempts: u64,
    pub delay_ms: u64,
}

impl Restart {
    /// Up to `attempts` restarts after `delay_ms` each.
    pub fn fixed_delay(attempts: u64, delay_ms: u64) -> Restart {
        Restart {
            strategy: "fixed-delay".into(),
            attempts,
            delay_ms,
        }
    }
}

/// A `[state]` section: keyed state in `backend` (none: the default), locally in `local/`.
#[derive(Debug, Clone, Serialize)]
pub struct State {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    pub dir: String,
}

impl State {
    pub fn rocksdb() -> State {
        State {
            backend: Some("rocksdb".into()),
            dir: "local".into(),
        }
    }

    pub fn default_backend() -> State {
        State {
            backend: None,
            dir: "local".into(),
        }
    }
}

impl JobFile {
    /// A job named `name` with nothing in it yet.
    pub fn named(name: &str) -> JobFile {
        JobFile {
            job: JobSection {
                name: name.into(),
                max_parallelism: None,
            },
            sources: Vec::new(),
            operators: Vec::new(),
            sinks: Vec::new(),
            checkpoint: None,
            restart: None,
            state: None,
        }
    }

    /// The file's text.
    pub fn toml(&self) -> String {
        toml::to_string(self).expect("a job file serializes")
    }
}

#[test]
fn a_job_file_says_what_it_was_built_with() {
    let mut job = JobFile::named("j");
    job.sources.push(Source::generator("gen", 10, 2));
    job.sinks.push(Sink::file("out", "gen", "out"));
    job.checkpoint = Some(Checkpoint {
        mode: Some(Mode::AtLeastOnce),
        ..Checkpoint::every(20)
    });
    let text = job.toml();
    assert!(text.contains("mode = \"at-least-once\""), "{text}");
    assert!(text.contains("[[source]]"), "{text}");
    let parsed = host::job::parse(Path::new("job.toml"), &text).expect("a valid job file");
    let checkpointing = parsed.checkpoint.expect("checkpointing");
    assert_eq!(checkpointing.mode, host::job::Mode::AtLeastOnce);
}
