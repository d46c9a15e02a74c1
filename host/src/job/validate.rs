//! Validation: a job file's text into a [`Job`], or a [`JobError`] that names the file,
//! the line and the key at fault. Pure: the caller reads the file.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::file::*;
use super::*;
use crate::state::key_group::MAX_PARALLELISM_LIMIT;

/// A job file that cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The file is not valid TOML or does not match the job file's shape.
    #[error("{path}: {message}")]
    Syntax {
        /// The job file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is well-formed but wrong.
    #[error("{path}:{line}: `{key}`: {message}")]
    Invalid {
        /// The job file.
        path: PathBuf,
        /// 1-based line of the value.
        line: usize,
        /// The key at fault, e.g. `operator.input`.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// Parses and validates a job file's `text`. `path` names the file in errors; relative
/// paths inside the job are resolved against its directory.
pub fn parse(path: &Path, text: &str) -> Result<Job, JobError> {
    let file: JobFile = toml::from_str(text).map_err(|e| JobError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let base = path.parent().unwrap_or(Path::new(""));
    Validator { path, text, base }.job(file)
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
    base: &'a Path,
}

impl Validator<'_> {
    fn error(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> JobError {
        JobError::Invalid {
            path: self.path.to_path_buf(),
            line: self.text[..span.start.min(self.text.len())]
                .matches('\n')
                .count()
                + 1,
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn resolve(&self, path: &str) -> PathBuf {
        self.base.join(path)
    }

    fn job(&self, file: JobFile) -> Result<Job, JobError> {
        let state = self.state(file.state.as_ref(), &file.job.name)?;
        let max_parallelism = match &file.job.max_parallelism {
            None => 128,
            Some(value) => self.count(
                value,
                "job.max_parallelism",
                u64::from(MAX_PARALLELISM_LIMIT),
            )? as u16,
        };

        let mut names: HashMap<&str, Range<usize>> = HashMap::new();
        let all_names = file
            .source
            .iter()
            .map(|s| &s.name)
            .chain(file.operator.iter().map(|o| &o.name))
            .chain(file.sink.iter().map(|s| &s.name));
        for name in all_names {
            if name.get_ref().is_empty() {
                return Err(self.error(name.span(), "name", "a name must not be empty"));
            }
            if names.insert(name.get_ref(), name.span()).is_some() {
                return Err(self.error(
                    name.span(),
                    "name",
                    format!(
                        "`{}` names two nodes: every source, operator and sink needs its own name",
                        name.get_ref()
                    ),
                ));
            }
        }
        if file.source.is_empty() {
            return Err(self.error(0..0, "source", "the job has no [[source]]"));
        }

        let sources = file
            .source
            .iter()
            .map(|s| self.source(s, &file.job.name, max_parallelism))
            .collect::<Result<Vec<_>, _>>()?;
        let operators = self.operators(&file.operator, &sources, max_parallelism)?;
        // `<operator>.<side output>` must name nothing else.
        for o in &file.operator {
            let Some(sides) = &o.side_outputs else {
                continue;
            };
            for side in sides.get_ref() {
                let read_as = format!("{}.{side}", o.name.get_ref());
                if names.contains_key(read_as.as_str()) {
                    return Err(self.error(
                        sides.span(),
                        "operator.side_outputs",
                        format!(
                            "side output `{side}` is read as `{read_as}`, which is also a \
                             node's name: rename one of them"
                        ),
                    ));
                }
            }
        }
        let sinks = file
            .sink
            .iter()
            .map(|s| self.sink(s, &file.job.name, &sources, &operators, max_parallelism))
            .collect::<Result<Vec<_>, _>>()?;
        let checkpoint = file
            .checkpoint
            .as_ref()
            .map(|c| self.checkpointing(c))
            .transpose()?;
        if checkpoint.is_some()
            && let Some(stdin) = file.source.iter().find(|s| s.kind.get_ref() == "stdin")
        {
            return Err(self.error(
                stdin.kind.span(),
                "source.type",
                "a `stdin` source cannot be replayed after a failure, so a job that checkpoints cannot read one: use a file source",
            ));
        }
        if checkpoint.is_none()
            && let Some(sink) = file.sink.iter().find(|s| {
                s.kind.get_ref() == "kafka"
                    && s.delivery
                        .as_ref()
                        .is_some_and(|d| d.get_ref() == "exactly-once")
            })
        {
            let span = sink
                .delivery
                .as_ref()
                .map_or(sink.kind.span(), Spanned::span);
            return Err(self.error(
                span,
                "sink.delivery",
                "an exactly-once Kafka sink commits its output when a checkpoint completes: \
                 add a [checkpoint] section, or use delivery = \"at-least-once\"",
            ));
        }
        let restart = match &file.restart {
            Some(r) => self.restart(r)?,
            // With checkpoints, a failed task restarts the job from the latest one.
            None if checkpoint.is_some() => Strategy::FixedDelay {
                attempts: 3,
                delay: std::time::Duration::from_secs(1),
            },
            None => Strategy::None,
        };
        Ok(Job {
            name: file.job.name,
            max_parallelism,
            sources,
            operators,
            sinks,
            checkpoint,
            restart,
            state,
        })
    }

    fn state(&self, section: Option<&StateSection>, job: &str) -> Result<StateSettings, JobError> {
        let backend = match section.and_then(|s| s.backend.as_ref()) {
            None => Backend::Memory,
            Some(b) => match b.get_ref().as_str() {
                "memory" => Backend::Memory,
                "rocksdb" => Backend::RocksDb,
                other => {
                    return Err(self.error(
                        b.span(),
                        "state.backend",
                        format!("unknown backend `{other}`: expected `memory` or `rocksdb`"),
                    ));
                }
            },
        };
        let dir = match section.and_then(|s| s.dir.as_deref()) {
            Some(dir) => self.resolve(dir),
            None => std::env::temp_dir()
                .join("weir")
                .join(format!("{job}-{}", std::process::id())),
        };
        Ok(StateSettings {
            backend,
            dir,
            incremental: section.and_then(|s| s.incremental).unwrap_or(true),
        })
    }

    fn millis(
        &self,
        value: Option<&Spanned<i64>>,
        key: &str,
        default: u64,
    ) -> Result<std::time::Duration, JobError> {
        let ms = match value {
            None => default,
            Some(v) => match u64::try_from(*v.get_ref()) {
                Ok(ms) => ms,
                Err(_) => return Err(self.error(v.span(), key, "must not be negative")),
            },
        };
        Ok(std::time::Duration::from_millis(ms))
    }

    fn watermark(&self, w: &WatermarkSection) -> Result<WatermarkStrategy, JobError> {
        let key = |name: &str| format!("source.watermark.{name}");
        // 0: after every record (see `WatermarkStrategy::per_record`).
        let interval = self.millis(w.interval_ms.as_ref(), &key("interval_ms"), 200)?;
        let idle_timeout = match &w.idle_timeout_ms {
            None => None,
            Some(t) => {
                let timeout = self.millis(Some(t), &key("idle_timeout_ms"), 0)?;
                if timeout.is_zero() {
                    return Err(self.error(
                        t.span(),
                        &key("idle_timeout_ms"),
                        "must be at least 1 (leave it out for splits never to count as idle)",
                    ));
                }
                Some(timeout)
            }
        };
        Ok(WatermarkStrategy {
            out_of_orderness: self.millis(
                w.out_of_orderness_ms.as_ref(),
                &key("out_of_orderness_ms"),
                0,
            )?,
            idle_timeout,
            interval,
            per_record: interval.is_zero(),
        })
    }

    fn checkpointing(&self, c: &CheckpointSection) -> Result<Checkpointing, JobError> {
        let interval = self.millis(c.interval_ms.as_ref(), "checkpoint.interval_ms", 1000)?;
        if interval.is_zero() {
            let span = c.interval_ms.as_ref().map_or(0..0, Spanned::span);
            return Err(self.error(span, "checkpoint.interval_ms", "must be at least 1"));
        }
        let mode = match c.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
            None | Some(("exactly-once", _)) => Mode::ExactlyOnce,
            Some(("at-least-once", _)) => Mode::AtLeastOnce,
            Some((other, span)) => {
                return Err(self.error(
                    span,
                    "checkpoint.mode",
                    format!("unknown mode `{other}`: expected `exactly-once` or `at-least-once`"),
                ));
            }
        };
        let unaligned = match &c.unaligned {
            Some(u) if *u.get_ref() => {
                if mode == Mode::AtLeastOnce {
                    return Err(self.error(
                        u.span(),
                        "checkpoint.unaligned",
                        "unaligned checkpoints are exactly-once only: remove `unaligned = true` \
                         or `mode = \"at-least-once\"` (at-least-once never waits for \
                         alignment, so it has nothing to gain)",
                    ));
                }
                let timeout = "checkpoint.aligned_timeout_ms";
                Some(self.millis(c.aligned_timeout_ms.as_ref(), timeout, 0)?)
            }
            _ => {
                if let Some(t) = &c.aligned_timeout_ms {
                    return Err(self.error(
                        t.span(),
                        "checkpoint.aligned_timeout_ms",
                        "applies to unaligned checkpoints only: add `unaligned = true`",
                    ));
                }
                None
            }
        };
        let count = |v: Option<&Spanned<i64>>, key: &str, default: u64| match v {
            None => Ok(default),
            Some(v) => self.count(v, key, 1000),
        };
        Ok(Checkpointing {
            config: CheckpointConfig {
                interval,
                timeout: self.millis(c.timeout_ms.as_ref(), "checkpoint.timeout_ms", 600_000)?,
                min_pause: self.millis(c.min_pause_ms.as_ref(), "checkpoint.min_pause_ms", 0)?,
                max_concurrent: count(c.max_concurrent.as_ref(), "checkpoint.max_concurrent", 1)?
                    as usize,
                retain: count(c.retain.as_ref(), "checkpoint.retain", 1)? as usize,
                verbose: false,
                unaligned,
            },
            mode,
            dir: self.resolve(
                c.dir
                    .as_ref()
                    .map_or("checkpoints", |d| d.get_ref().as_str()),
            ),
            on_cancel: c.on_cancel.unwrap_or(OnCancel::Retain),
        })
    }

    fn restart(&self, r: &RestartSection) -> Result<Strategy, JobError> {
        let ms = |v: Option<&Spanned<i64>>, key: &str, default: u64| {
            self.millis(v, &format!("restart.{key}"), default)
        };
        let count = |v: Option<&Spanned<i64>>, key: &str, default: u64| match v {
            None => Ok(default),
            Some(v) => self.count(v, &format!("restart.{key}"), u64::from(u32::MAX)),
        };
        Ok(match r.strategy.get_ref().as_str() {
            "none" => Strategy::None,
            "fixed-delay" => Strategy::FixedDelay {
                attempts: count(r.attempts.as_ref(), "attempts", 3)? as u32,
                delay: ms(r.delay_ms.as_ref(), "delay_ms", 1000)?,
            },
            "exponential-delay" => Strategy::ExponentialDelay {
                initial_delay: ms(r.initial_delay_ms.as_ref(), "initial_delay_ms", 1000)?,
                max_delay: ms(r.max_delay_ms.as_ref(), "max_delay_ms", 300_000)?,
                multiplier: r.multiplier.unwrap_or(2.0),
                reset_after: ms(r.reset_after_ms.as_ref(), "reset_after_ms", 3_600_000)?,
            },
            "failure-rate" => Strategy::FailureRate {
                max_failures: count(r.max_failures.as_ref(), "max_failures", 1)? as u32,
                interval: ms(r.interval_ms.as_ref(), "interval_ms", 60_000)?,
                delay: ms(r.delay_ms.as_ref(), "delay_ms", 1000)?,
            },
            other => {
                return Err(self.error(
                    r.strategy.span(),
                    "restart.strategy",
                    format!(
                        "unknown strategy `{other}`: expected `none`, `fixed-delay`, `exponential-delay` or `failure-rate`"
                    ),
                ));
            }
        })
    }

    fn count(&self, value: &Spanned<i64>, key: &str, max: u64) -> Result<u64, JobError> {
        match u64::try_from(*value.get_ref()) {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(self.error(value.span(), key, format!("must be between 1 and {max}"))),
        }
    }

    fn source(
        &self,
        s: &SourceSection,
        job: &str,
        max_parallelism: u16,
    ) -> Result<Source, JobError> {
        let kind = match s.kind.get_ref().as_str() {
            "kafka" => SourceKind::Kafka(self.kafka_source(s, job)?),
            "file" => {
                let path = s.path.as_ref().ok_or_else(|| {
                    self.error(s.kind.span(), "source.path", "a file source needs `path`")
                })?;
                SourceKind::File {
                    path: self.resolve(path.get_ref()),
                    split_bytes: s
                        .split_bytes
                        .as_ref()
                        .map(|b| self.count(b, "source.split_bytes", u64::MAX >> 1))
                        .transpose()?
                        .unwrap_or(DEFAULT_SPLIT_BYTES),
                }
            }
            "stdin" => SourceKind::Stdin,
            "generator" => SourceKind::Generator {
                count: match &s.count {
                    Some(c) => self.count(c, "source.count", u64::MAX >> 1)?,
                    None => {
                        return Err(self.error(
                            s.kind.span(),
                            "source.count",
                            "a generator needs `count`",
                        ));
                    }
                },
                keys: match &s.keys {
                    Some(k) => self.count(k, "source.keys", u64::MAX >> 1)?,
                    None => 1,
                },
                key_field: s
                    .key_field
                    .as_ref()
                    .map_or("key".into(), |f| f.get_ref().clone()),
                key_prefix: s
                    .key_prefix
                    .as_ref()
                    .map_or("key-".into(), |p| p.get_ref().clone()),
                time: match &s.time_field {
                    None => None,
                    Some(field) => Some(GeneratedTime {
                        field: field.get_ref().clone(),
                        step_us: match &s.event_time_step_us {
                            Some(v) => {
                                self.count(v, "source.event_time_step_us", u64::MAX >> 24)?
                            }
                            None => 1000,
                        },
                        disorder_ms: self
                            .millis(s.disorder_ms.as_ref(), "source.disorder_ms", 0)?
                            .as_millis() as u64,
                    }),
                },
            },
            other => {
                return Err(self.error(
                    s.kind.span(),
                    "source.type",
                    format!(
                        "unknown source type `{other}`: expected `file`, `stdin`, `generator` or `kafka`"
                    ),
                ));
            }
        };
        let misplaced = [
            (
                "path",
                s.path.as_ref().map(Spanned::span),
                matches!(kind, SourceKind::File { .. }),
            ),
            (
                "split_bytes",
                s.split_bytes.as_ref().map(Spanned::span),
                matches!(kind, SourceKind::File { .. }),
            ),
            (
                "count",
                s.count.as_ref().map(Spanned::span),
                matches!(kind, SourceKind::Generator { .. }),
            ),
            (
                "keys",
                s.keys.as_ref().map(Spanned::span),
                matches!(kind, SourceKind::Generator { .. }),
            ),
            (
                "key_field",
                s.key_field.as_ref().map(Spanned::span),
                matches!(kind, SourceKind::Generator { .. } | SourceKind::Kafka(_)),
            ),
            (
                "key_prefix",
                s.key_prefix.as_ref().map(Spanned::span),
                matches!(kind, SourceKind::Generator { .. }),
            ),
            (
                "records_per_second",
                s.records_per_second.as_ref().map(Spanned::span),
                kind != SourceKind::Stdin,
            ),
            (
                "event_time",
                s.event_time.as_ref().map(Spanned::span),
                !matches!(kind, SourceKind::Generator { .. }),
            ),
            (
                "time_field",
                s.time_field.as_ref().map(Spanned::span),
                matches!(kind, SourceKind::Generator { .. }),
            ),
            (
                "event_time_step_us",
                s.event_time_step_us.as_ref().map(Spanned::span),
                matches!(kind, SourceKind::Generator { time: Some(_), .. }),
            ),
            (
                "disorder_ms",
                s.disorder_ms.as_ref().map(Spanned::span),
                matches!(kind, SourceKind::Generator { time: Some(_), .. }),
            ),
        ];
        let kafka = matches!(kind, SourceKind::Kafka(_));
        let kafka_keys = [
            ("brokers", s.brokers.as_ref().map(Spanned::span)),
            ("topic", s.topic.as_ref().map(Spanned::span)),
            ("group_id", s.group_id.as_ref().map(Spanned::span)),
            ("start", s.start.as_ref().map(Spanned::span)),
            ("stop", s.stop.as_ref().map(Spanned::span)),
            (
                "partition_discovery_ms",
                s.partition_discovery_ms.as_ref().map(Spanned::span),
            ),
            ("properties", s.properties.as_ref().map(Spanned::span)),
        ];
        let misplaced = misplaced
            .into_iter()
            .chain(kafka_keys.map(|(key, span)| (key, span, kafka)));
        for (key, span, allowed) in misplaced {
            if let (Some(span), false) = (span, allowed) {
                return Err(self.error(
                    span,
                    &format!("source.{key}"),
                    format!("a `{}` source has no `{key}`", s.kind.get_ref()),
                ));
            }
        }
        let parallelism = self.parallelism(
            s.parallelism.as_ref(),
            "source.parallelism",
            max_parallelism,
        )?;
        if kind == SourceKind::Stdin && parallelism > 1 {
            let span = s.parallelism.as_ref().map_or(s.kind.span(), Spanned::span);
            return Err(self.error(
                span,
                "source.parallelism",
                "a `stdin` source has parallelism 1",
            ));
        }
        Ok(Source {
            name: s.name.get_ref().clone(),
            parallelism,
            kind,
            records_per_second: s
                .records_per_second
                .as_ref()
                .map(|r| self.count(r, "source.records_per_second", u64::MAX >> 1))
                .transpose()?,
            on_bad_record: s
                .on_bad_record
                .as_ref()
                .map_or_else(OnBadRecord::default, |o| *o.get_ref()),
            event_time: s
                .event_time
                .as_ref()
                .map(|p| {
                    JsonPointer::parse(p.get_ref())
                        .map_err(|e| self.error(p.span(), "source.event_time", e))
                })
                .transpose()?,
            watermark: match &s.watermark {
                None => None,
                // A Kafka message has a timestamp of its own.
                Some(w) if s.event_time.is_none() && s.time_field.is_none() && !kafka => {
                    return Err(self.error(
                        w.span(),
                        "source.watermark",
                        "a watermark follows the records' event times: set `event_time` to \
                         the JSON pointer of each record's time (or, on a generator, \
                         `time_field`)",
                    ));
                }
                Some(w) => Some(self.watermark(w.get_ref())?),
            },
        })
    }

    /// `brokers` and `properties`, which a Kafka source or sink of `kind` needs.
    fn kafka_client(
        &self,
        brokers: Option<&Spanned<String>>,
        properties: Option<&Spanned<toml::Table>>,
        kind: &Spanned<String>,
        node: &str,
    ) -> Result<KafkaClient, JobError> {
        let brokers = match brokers {
            Some(b) if !b.get_ref().trim().is_empty() => b.get_ref().trim().to_string(),
            Some(b) => {
                return Err(self.error(b.span(), &format!("{node}.brokers"), "no broker named"));
            }
            None => {
                return Err(self.error(
                    kind.span(),
                    &format!("{node}.brokers"),
                    format!(
                        "a kafka {node} needs `brokers`, the cluster's bootstrap servers \
                         (\"host:port,host:port\")"
                    ),
                ));
            }
        };
        let mut out = std::collections::BTreeMap::new();
        if let Some(table) = properties {
            for (name, value) in table.get_ref() {
                let value = match value {
                    toml::Value::String(v) => v.clone(),
                    toml::Value::Integer(v) => v.to_string(),
                    toml::Value::Boolean(v) => v.to_string(),
                    toml::Value::Float(v) => v.to_string(),
                    _ => {
                        return Err(self.error(
                            table.span(),
                            &format!("{node}.properties.{name}"),
                            "a client property is a string, number or boolean",
                        ));
                    }
                };
                if name == "bootstrap.servers" {
                    return Err(self.error(
                        table.span(),
                        &format!("{node}.properties.{name}"),
                        "set the brokers with `brokers`",
                    ));
                }
                out.insert(name.clone(), value);
            }
        }
        Ok(KafkaClient {
            brokers,
            properties: out,
        })
    }

    fn kafka_source(&self, s: &SourceSection, job: &str) -> Result<KafkaSource, JobError> {
        let client =
            self.kafka_client(s.brokers.as_ref(), s.properties.as_ref(), &s.kind, "source")?;
        let no_topic = || {
            self.error(
                s.topic.as_ref().map_or(s.kind.span(), Spanned::span),
                "source.topic",
                "a kafka source needs `topic`: a topic's name, or a list of them",
            )
        };
        let topics: Vec<String> = match s.topic.as_ref().map(Spanned::get_ref) {
            Some(toml::Value::String(t)) => vec![t.clone()],
            Some(toml::Value::Array(list)) => list
                .iter()
                .map(|t| t.as_str().map(str::to_string).ok_or_else(no_topic))
                .collect::<Result<_, _>>()?,
            _ => return Err(no_topic()),
        };
        if topics.is_empty() || topics.iter().any(String::is_empty) {
            return Err(no_topic());
        }
        let start = match &s.start {
            None => KafkaStart::Earliest,
            Some(start) => match start.get_ref() {
                toml::Value::String(v) if v == "earliest" => KafkaStart::Earliest,
                toml::Value::String(v) if v == "latest" => KafkaStart::Latest,
                toml::Value::String(v) if v == "committed" => KafkaStart::Committed,
                toml::Value::Table(t) if t.len() == 1 && t.contains_key("timestamp_ms") => {
                    match t["timestamp_ms"].as_integer() {
                        Some(ms) if ms >= 0 => KafkaStart::Timestamp(ms),
                        _ => {
                            return Err(self.error(
                                start.span(),
                                "source.start.timestamp_ms",
                                "milliseconds since the Unix epoch, 0 or more",
                            ));
                        }
                    }
                }
                _ => {
                    return Err(self.error(
                        start.span(),
                        "source.start",
                        "expected \"earliest\", \"latest\", \"committed\" or \
                         { timestamp_ms = <epoch milliseconds> }",
                    ));
                }
            },
        };
        let bounded = match &s.stop {
            None => false,
            Some(stop) if stop.get_ref() == "latest" => true,
            Some(stop) => {
                return Err(self.error(
                    stop.span(),
                    "source.stop",
                    "expected \"latest\" (stop at the end the partitions had when the job \
                     first started), or no `stop` to read until cancelled",
                ));
            }
        };
        Ok(KafkaSource {
            client,
            topics,
            group_id: s.group_id.as_ref().map_or_else(
                || format!("weir-{job}-{}", s.name.get_ref()),
                |g| g.get_ref().clone(),
            ),
            start,
            bounded,
            key_field: s.key_field.as_ref().map(|f| f.get_ref().clone()),
            discovery: match &s.partition_discovery_ms {
                Some(ms) if bounded => {
                    return Err(self.error(
                        ms.span(),
                        "source.partition_discovery_ms",
                        "a bounded source (`stop = \"latest\"`) reads the partitions it \
                         started with: drop one of the two",
                    ));
                }
                _ if bounded => None,
                None => Some(DEFAULT_PARTITION_DISCOVERY),
                Some(ms) if *ms.get_ref() == 0 => None,
                Some(ms) => Some(self.millis(Some(ms), "source.partition_discovery_ms", 0)?),
            },
        })
    }

    fn kafka_sink(&self, s: &SinkSection, job: &str) -> Result<KafkaSink, JobError> {
        let client =
            self.kafka_client(s.brokers.as_ref(), s.properties.as_ref(), &s.kind, "sink")?;
        let topic = match &s.topic {
            Some(t) if !t.get_ref().is_empty() => t.get_ref().clone(),
            _ => {
                return Err(self.error(
                    s.topic.as_ref().map_or(s.kind.span(), Spanned::span),
                    "sink.topic",
                    "a kafka sink needs `topic`",
                ));
            }
        };
        let key = s
            .key
            .as_ref()
            .map(|k| {
                JsonPointer::parse(k.get_ref()).map_err(|e| self.error(k.span(), "sink.key", e))
            })
            .transpose()?;
        let prefix = s.transactional_id_prefix.as_ref();
        let delivery = match s.delivery.as_ref().map(|d| (d, d.get_ref().as_str())) {
            None | Some((_, "at-least-once")) => KafkaDelivery::AtLeastOnce,
            Some((d, "exactly-once")) => match prefix {
                Some(p) if !p.get_ref().is_empty() => KafkaDelivery::ExactlyOnce {
                    transactional_ids: format!("{}-{job}-{}", p.get_ref(), s.name.get_ref()),
                },
                _ => {
                    return Err(self.error(
                        d.span(),
                        "sink.transactional_id_prefix",
                        "exactly-once delivery needs `transactional_id_prefix`: the start of \
                         this sink's transactional ids, unique among the cluster's producers",
                    ));
                }
            },
            Some((d, _)) => {
                return Err(self.error(
                    d.span(),
                    "sink.delivery",
                    "expected \"at-least-once\" or \"exactly-once\"",
                ));
            }
        };
        if let (KafkaDelivery::AtLeastOnce, Some(p)) = (&delivery, prefix) {
            return Err(self.error(
                p.span(),
                "sink.transactional_id_prefix",
                "only an exactly-once sink has transactions",
            ));
        }
        Ok(KafkaSink {
            client,
            topic,
            key,
            delivery,
        })
    }

    /// A `parallelism` value: 1 up to the job's maximum parallelism.
    fn parallelism(
        &self,
        value: Option<&Spanned<i64>>,
        key: &str,
        max: u16,
    ) -> Result<u16, JobError> {
        match value {
            None => Ok(1),
            Some(p) => match u16::try_from(*p.get_ref()) {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(self.error(
                    p.span(),
                    key,
                    format!("must be between 1 and the job's max_parallelism ({max})"),
                )),
            },
        }
    }

    /// `input`: one name, or a list of names and `{ name, broadcast }` tables (tables
    /// only where `broadcast` is allowed: an operator's inputs).
    fn inputs(
        &self,
        value: &Spanned<toml::Value>,
        key: &str,
        broadcast: bool,
    ) -> Result<Vec<Input>, JobError> {
        let invalid = |message: String| self.error(value.span(), key, message);
        let expected = if broadcast {
            "a node's name, or a list of names and `{ name = \"…\", broadcast = true }` tables"
        } else {
            "a node's name, or a list of names"
        };
        let entry = |item: &toml::Value| -> Result<Input, JobError> {
            match item {
                toml::Value::String(name) => Ok(Input {
                    name: name.clone(),
                    broadcast: false,
                }),
                toml::Value::Table(table) if broadcast => {
                    if let Some(other) = table
                        .keys()
                        .find(|k| !matches!(k.as_str(), "name" | "broadcast"))
                    {
                        return Err(invalid(format!(
                            "unknown key `{other}` in an input: expected `name` and `broadcast`"
                        )));
                    }
                    let name = match table.get("name") {
                        Some(toml::Value::String(name)) => name.clone(),
                        _ => {
                            return Err(invalid(
                                "an input table needs `name`, a node's name".into(),
                            ));
                        }
                    };
                    let broadcast = match table.get("broadcast") {
                        None => false,
                        Some(toml::Value::Boolean(b)) => *b,
                        Some(_) => {
                            return Err(invalid(format!(
                                "input `{name}`: `broadcast` is true or false"
                            )));
                        }
                    };
                    Ok(Input { name, broadcast })
                }
                _ => Err(invalid(format!("expected {expected}"))),
            }
        };
        let inputs = match value.get_ref() {
            toml::Value::Array(items) => items.iter().map(entry).collect::<Result<Vec<_>, _>>()?,
            one => vec![entry(one)?],
        };
        if inputs.is_empty() {
            return Err(invalid("needs at least one input".into()));
        }
        for (i, input) in inputs.iter().enumerate() {
            if inputs[..i].iter().any(|other| other.name == input.name) {
                return Err(invalid(format!(
                    "`{}` is listed twice: list each input once",
                    input.name
                )));
            }
        }
        Ok(inputs)
    }

    /// Checks that every input is a source or an already placed operator; returns the
    /// first one that is not.
    fn unknown_input<'n>(
        inputs: &'n [Input],
        sources: &[Source],
        placed: &[Operator],
    ) -> Option<&'n String> {
        inputs.iter().map(|input| &input.name).find(|input| {
            !sources.iter().any(|s| &s.name == *input)
                && !placed.iter().any(|p| p.output_named(input).is_some())
        })
    }

    /// Why `input` names nothing a node can read.
    fn no_such_input(input: &str, operators: &[Operator]) -> String {
        let side_of = operators.iter().find_map(|o| {
            let side = input.strip_prefix(o.name.as_str())?.strip_prefix('.')?;
            Some((o, side))
        });
        match side_of {
            Some((o, side)) if o.side_outputs.is_empty() => format!(
                "operator `{}` has no side output `{side}`: it has none (`side_outputs` \
                 declares them)",
                o.name
            ),
            Some((o, side)) => format!(
                "operator `{}` has no side output `{side}`: its side_outputs are {}",
                o.name,
                (o.side_outputs.iter())
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => format!("no source or operator is named `{input}`"),
        }
    }

    /// Validates operators and orders them so that each comes after its inputs.
    fn operators(
        &self,
        sections: &[OperatorSection],
        sources: &[Source],
        max_parallelism: u16,
    ) -> Result<Vec<Operator>, JobError> {
        let mut placed: Vec<Operator> = Vec::new();
        let mut pending = Vec::new();
        for o in sections {
            pending.push((o, self.inputs(&o.input, "operator.input", true)?));
        }
        while !pending.is_empty() {
            let before = pending.len();
            let mut waiting = Vec::new();
            for (o, inputs) in pending {
                if Self::unknown_input(&inputs, sources, &placed).is_none() {
                    placed.push(self.operator(o, inputs, max_parallelism)?);
                } else {
                    waiting.push((o, inputs));
                }
            }
            if waiting.len() == before {
                let (o, inputs) = &waiting[0];
                let input =
                    Self::unknown_input(inputs, sources, &placed).expect("waiting on an input");
                let message = if sections.iter().any(|other| other.name.get_ref() == input) {
                    format!(
                        "operators `{}` and `{input}` read from each other: a job's graph cannot have cycles",
                        o.name.get_ref()
                    )
                } else {
                    Self::no_such_input(input, &placed)
                };
                return Err(self.error(o.input.span(), "operator.input", message));
            }
            pending = waiting;
        }
        Ok(placed)
    }

    fn operator(
        &self,
        o: &OperatorSection,
        inputs: Vec<Input>,
        max_parallelism: u16,
    ) -> Result<Operator, JobError> {
        let key_by = o
            .key_by
            .as_ref()
            .map(|p| {
                JsonPointer::parse(p.get_ref())
                    .map_err(|e| self.error(p.span(), "operator.key_by", e))
            })
            .transpose()?;
        let config_json = serde_json::to_string(&o.config)
            .map_err(|e| self.error(o.name.span(), "operator.config", e.to_string()))?;
        Ok(Operator {
            name: o.name.get_ref().clone(),
            component: self.resolve(o.component.get_ref()),
            inputs,
            key_by,
            parallelism: self.parallelism(
                o.parallelism.as_ref(),
                "operator.parallelism",
                max_parallelism,
            )?,
            config_json,
            sandbox: crate::job::Sandbox {
                limits: self.limits(o.limits.as_ref())?,
                grants: self.grants(o)?,
            },
            on_poison: self.on_poison(o)?,
            side_outputs: self.side_outputs(o)?,
        })
    }

    /// `side_outputs`: names without a `.` (which separates them from the operator's
    /// name where a node reads one), each once.
    fn side_outputs(&self, o: &OperatorSection) -> Result<Vec<String>, JobError> {
        let Some(names) = &o.side_outputs else {
            return Ok(Vec::new());
        };
        let invalid = |message: String| self.error(names.span(), "operator.side_outputs", message);
        for (i, name) in names.get_ref().iter().enumerate() {
            if name.is_empty() || name.contains('.') {
                return Err(invalid(format!(
                    "side output `{name}`: a name, not empty and without a `.` (nodes read \
                     it as `{}.{name}`)",
                    o.name.get_ref()
                )));
            }
            if names.get_ref()[..i].contains(name) {
                return Err(invalid(format!("side output `{name}` is listed twice")));
            }
        }
        Ok(names.get_ref().clone())
    }

    fn on_poison(&self, o: &OperatorSection) -> Result<OnPoison, JobError> {
        let policy = o
            .on_poison
            .as_ref()
            .map(|p| (p.get_ref().as_str(), p.span()));
        if let Some(dir) = &o.dead_letter
            && !matches!(policy, Some(("dead-letter", _)))
        {
            return Err(self.error(
                dir.span(),
                "operator.dead_letter",
                "only used with on_poison = \"dead-letter\"",
            ));
        }
        match policy {
            None | Some(("fail", _)) => Ok(OnPoison::Fail),
            Some(("skip", _)) => Ok(OnPoison::Skip),
            Some(("dead-letter", span)) => match &o.dead_letter {
                Some(dir) => Ok(OnPoison::DeadLetter(self.resolve(dir.get_ref()))),
                None => Err(self.error(
                    span,
                    "operator.on_poison",
                    "`dead-letter` needs `dead_letter`, the folder dead letters are written to",
                )),
            },
            Some((other, span)) => Err(self.error(
                span,
                "operator.on_poison",
                format!("unknown `{other}`: expected `fail`, `skip` or `dead-letter`"),
            )),
        }
    }

    fn limits(&self, section: Option<&LimitsSection>) -> Result<crate::job::Limits, JobError> {
        let defaults = crate::job::Limits::default();
        let Some(l) = section else {
            return Ok(defaults);
        };
        let number = |v: &Option<Spanned<i64>>, key: &str, max: u64, default: u64| match v {
            None => Ok(default),
            Some(v) => self.count(v, key, max),
        };
        Ok(crate::job::Limits {
            memory_bytes: number(
                &l.memory_mb,
                "operator.limits.memory_mb",
                4096,
                defaults.memory_bytes >> 20,
            )? << 20,
            table_elements: number(
                &l.table_elements,
                "operator.limits.table_elements",
                100_000_000,
                defaults.table_elements as u64,
            )? as usize,
            call_timeout: std::time::Duration::from_millis(number(
                &l.call_timeout_ms,
                "operator.limits.call_timeout_ms",
                24 * 3_600_000,
                defaults.call_timeout.as_millis() as u64,
            )?),
            stack_bytes: number(
                &l.stack_kb,
                "operator.limits.stack_kb",
                (crate::job::Limits::MAX_STACK_BYTES >> 10) as u64,
                (defaults.stack_bytes >> 10) as u64,
            )? as usize
                * 1024,
        })
    }

    fn grants(&self, o: &OperatorSection) -> Result<crate::job::Grants, JobError> {
        let mut dirs: Vec<crate::job::DirGrant> = Vec::new();
        for grant in &o.grants {
            let host = self.resolve(grant.dir.get_ref());
            if !host.is_dir() {
                return Err(self.error(
                    grant.dir.span(),
                    "operator.grants.dir",
                    format!("{} is not a directory", host.display()),
                ));
            }
            let guest = match &grant.path {
                Some(path) if path.get_ref().starts_with('/') => path.get_ref().clone(),
                Some(path) => {
                    return Err(self.error(
                        path.span(),
                        "operator.grants.path",
                        "the guest path must be absolute, such as \"/data\"",
                    ));
                }
                None => format!(
                    "/{}",
                    host.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ),
            };
            if dirs.iter().any(|d| d.guest == guest) {
                return Err(self.error(
                    grant.dir.span(),
                    "operator.grants.path",
                    format!("two grants are both seen by the guest as {guest}"),
                ));
            }
            dirs.push(crate::job::DirGrant {
                host,
                guest,
                write: grant.write,
            });
        }
        Ok(crate::job::Grants {
            dirs,
            env: o.env.clone().into_iter().collect(),
        })
    }

    fn sink(
        &self,
        s: &SinkSection,
        job: &str,
        sources: &[Source],
        operators: &[Operator],
        max_parallelism: u16,
    ) -> Result<Sink, JobError> {
        let inputs = self.inputs(&s.input, "sink.input", false)?;
        if let Some(input) = Self::unknown_input(&inputs, sources, operators) {
            return Err(self.error(
                s.input.span(),
                "sink.input",
                Self::no_such_input(input, operators),
            ));
        }
        let inputs = inputs.into_iter().map(|input| input.name).collect();
        let kind = match s.kind.get_ref().as_str() {
            "stdout" => SinkKind::Stdout,
            "file" => SinkKind::File {
                path: self.resolve(
                    s.path
                        .as_ref()
                        .ok_or_else(|| {
                            self.error(
                                s.kind.span(),
                                "sink.path",
                                "a file sink needs `path`, a directory",
                            )
                        })?
                        .get_ref(),
                ),
            },
            "kafka" => SinkKind::Kafka(self.kafka_sink(s, job)?),
            other => {
                return Err(self.error(
                    s.kind.span(),
                    "sink.type",
                    format!("unknown sink type `{other}`: expected `file`, `stdout` or `kafka`"),
                ));
            }
        };
        if let (SinkKind::Stdout | SinkKind::Kafka(_), Some(path)) = (&kind, &s.path) {
            return Err(self.error(
                path.span(),
                "sink.path",
                format!("a `{}` sink has no `path`", s.kind.get_ref()),
            ));
        }
        let kafka_keys = [
            ("brokers", s.brokers.as_ref().map(Spanned::span)),
            ("topic", s.topic.as_ref().map(Spanned::span)),
            ("key", s.key.as_ref().map(Spanned::span)),
            ("delivery", s.delivery.as_ref().map(Spanned::span)),
            (
                "transactional_id_prefix",
                s.transactional_id_prefix.as_ref().map(Spanned::span),
            ),
            ("properties", s.properties.as_ref().map(Spanned::span)),
        ];
        for (key, span) in kafka_keys {
            if let (Some(span), false) = (span, matches!(kind, SinkKind::Kafka(_))) {
                return Err(self.error(
                    span,
                    &format!("sink.{key}"),
                    format!("a `{}` sink has no `{key}`", s.kind.get_ref()),
                ));
            }
        }
        Ok(Sink {
            name: s.name.get_ref().clone(),
            inputs,
            parallelism: self.parallelism(
                s.parallelism.as_ref(),
                "sink.parallelism",
                max_parallelism,
            )?,
            kind,
        })
    }
}
