//! The job file's shape as TOML, before validation: what serde reads, with the spans
//! that let validation name the line at fault.

use serde::Deserialize;
use toml::Spanned;

use super::{OnBadRecord, OnCancel};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JobFile {
    pub(super) job: JobSection,
    #[serde(default)]
    pub(super) source: Vec<SourceSection>,
    #[serde(default)]
    pub(super) operator: Vec<OperatorSection>,
    #[serde(default)]
    pub(super) sink: Vec<SinkSection>,
    pub(super) state: Option<StateSection>,
    pub(super) checkpoint: Option<CheckpointSection>,
    pub(super) restart: Option<RestartSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckpointSection {
    pub(super) interval_ms: Option<Spanned<i64>>,
    pub(super) mode: Option<Spanned<String>>,
    pub(super) unaligned: Option<Spanned<bool>>,
    pub(super) aligned_timeout_ms: Option<Spanned<i64>>,
    pub(super) timeout_ms: Option<Spanned<i64>>,
    pub(super) min_pause_ms: Option<Spanned<i64>>,
    pub(super) max_concurrent: Option<Spanned<i64>>,
    pub(super) retain: Option<Spanned<i64>>,
    pub(super) on_cancel: Option<OnCancel>,
    pub(super) dir: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RestartSection {
    pub(super) strategy: Spanned<String>,
    pub(super) attempts: Option<Spanned<i64>>,
    pub(super) delay_ms: Option<Spanned<i64>>,
    pub(super) initial_delay_ms: Option<Spanned<i64>>,
    pub(super) max_delay_ms: Option<Spanned<i64>>,
    pub(super) multiplier: Option<f64>,
    pub(super) reset_after_ms: Option<Spanned<i64>>,
    pub(super) max_failures: Option<Spanned<i64>>,
    pub(super) interval_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JobSection {
    pub(super) name: String,
    pub(super) max_parallelism: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceSection {
    pub(super) name: Spanned<String>,
    #[serde(rename = "type")]
    pub(super) kind: Spanned<String>,
    pub(super) parallelism: Option<Spanned<i64>>,
    pub(super) path: Option<Spanned<String>>,
    pub(super) on_bad_record: Option<Spanned<OnBadRecord>>,
    pub(super) count: Option<Spanned<i64>>,
    pub(super) keys: Option<Spanned<i64>>,
    pub(super) key_field: Option<Spanned<String>>,
    pub(super) key_prefix: Option<Spanned<String>>,
    pub(super) records_per_second: Option<Spanned<i64>>,
    pub(super) split_bytes: Option<Spanned<i64>>,
    pub(super) event_time: Option<Spanned<String>>,
    pub(super) time_field: Option<Spanned<String>>,
    pub(super) event_time_step_us: Option<Spanned<i64>>,
    pub(super) disorder_ms: Option<Spanned<i64>>,
    pub(super) watermark: Option<Spanned<WatermarkSection>>,
    // Kafka sources only.
    pub(super) brokers: Option<Spanned<String>>,
    /// A topic's name, or a list of them.
    pub(super) topic: Option<Spanned<toml::Value>>,
    pub(super) group_id: Option<Spanned<String>>,
    /// `"earliest"`, `"latest"`, `"committed"` or `{ timestamp_ms = … }`.
    pub(super) start: Option<Spanned<toml::Value>>,
    pub(super) stop: Option<Spanned<String>>,
    pub(super) partition_discovery_ms: Option<Spanned<i64>>,
    pub(super) properties: Option<Spanned<toml::Table>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WatermarkSection {
    pub(super) out_of_orderness_ms: Option<Spanned<i64>>,
    pub(super) idle_timeout_ms: Option<Spanned<i64>>,
    pub(super) interval_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OperatorSection {
    pub(super) name: Spanned<String>,
    pub(super) component: Spanned<String>,
    pub(super) input: Spanned<toml::Value>,
    pub(super) key_by: Option<Spanned<String>>,
    pub(super) parallelism: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) config: toml::Table,
    pub(super) limits: Option<LimitsSection>,
    #[serde(default)]
    pub(super) grants: Vec<GrantSection>,
    pub(super) on_poison: Option<Spanned<String>>,
    pub(super) dead_letter: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) env: std::collections::BTreeMap<String, String>,
    pub(super) side_outputs: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitsSection {
    pub(super) memory_mb: Option<Spanned<i64>>,
    pub(super) table_elements: Option<Spanned<i64>>,
    pub(super) call_timeout_ms: Option<Spanned<i64>>,
    pub(super) stack_kb: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GrantSection {
    pub(super) dir: Spanned<String>,
    pub(super) path: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) write: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SinkSection {
    pub(super) name: Spanned<String>,
    #[serde(rename = "type")]
    pub(super) kind: Spanned<String>,
    pub(super) input: Spanned<toml::Value>,
    pub(super) path: Option<Spanned<String>>,
    pub(super) parallelism: Option<Spanned<i64>>,
    // Kafka sinks only.
    pub(super) brokers: Option<Spanned<String>>,
    pub(super) topic: Option<Spanned<String>>,
    pub(super) key: Option<Spanned<String>>,
    pub(super) delivery: Option<Spanned<String>>,
    pub(super) transactional_id_prefix: Option<Spanned<String>>,
    pub(super) properties: Option<Spanned<toml::Table>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StateSection {
    pub(super) backend: Option<Spanned<String>>,
    pub(super) dir: Option<String>,
    pub(super) incremental: Option<bool>,
}
