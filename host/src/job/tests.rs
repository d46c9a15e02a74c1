use super::*;

const GOOD: &str = r#"
[job]
name = "visit-count"

[[source]]
name = "logs"
type = "file"
path = "access.jsonl"

[[operator]]
name = "count"
component = "visit_count.wasm"
input = "logs"
key_by = "/url"
[operator.config]
greeting = "hi"

[[sink]]
name = "out"
type = "file"
input = "count"
path = "out"
"#;

fn parse_str(text: &str) -> Result<Job, JobError> {
    parse(Path::new("jobs/job.toml"), text)
}

fn invalid(text: &str) -> (usize, String, String) {
    match parse_str(text) {
        Err(JobError::Invalid {
            line, key, message, ..
        }) => (line, key, message),
        other => panic!("expected an invalid job, got {other:?}"),
    }
}

#[test]
fn a_good_job_resolves_paths_against_the_job_file() {
    let job = parse_str(GOOD).unwrap();
    assert_eq!(job.name, "visit-count");
    assert_eq!(job.max_parallelism, 128);
    assert_eq!(
        job.sources[0].kind,
        SourceKind::File {
            path: "jobs/access.jsonl".into(),
            split_bytes: DEFAULT_SPLIT_BYTES,
        }
    );
    assert_eq!(
        job.operators[0].component,
        Path::new("jobs/visit_count.wasm")
    );
    assert_eq!(
        job.operators[0].key_by.as_ref().map(JsonPointer::as_str),
        Some("/url")
    );
    assert_eq!(job.operators[0].config_json, r#"{"greeting":"hi"}"#);
    assert_eq!(
        job.sinks[0].kind,
        SinkKind::File {
            path: "jobs/out".into()
        }
    );
}

#[test]
fn an_unknown_key_names_the_file_line_and_key() {
    let text = GOOD.replace("key_by = \"/url\"", "key_by = \"/url\"\nkeyby = \"/x\"");
    let err = parse_str(&text).unwrap_err().to_string();
    assert!(err.starts_with("jobs/job.toml:"), "{err}");
    assert!(err.contains("line 15"), "{err}");
    assert!(err.contains("unknown field `keyby`"), "{err}");
}

#[test]
fn a_dangling_input_names_the_line() {
    let (line, key, message) = invalid(&GOOD.replace("input = \"logs\"", "input = \"log\""));
    assert_eq!((line, key.as_str()), (13, "operator.input"));
    assert!(
        message.contains("no source or operator is named `log`"),
        "{message}"
    );
    let (line, key, _) = invalid(&GOOD.replace("input = \"count\"", "input = \"counts\""));
    assert_eq!((line, key.as_str()), (21, "sink.input"));
}

#[test]
fn a_bad_json_pointer_names_the_line() {
    let (line, key, message) = invalid(&GOOD.replace("\"/url\"", "\"url\""));
    assert_eq!((line, key.as_str()), (14, "operator.key_by"));
    assert!(message.contains("must start with `/`"), "{message}");
}

#[test]
fn cycles_and_duplicate_names_are_refused() {
    let cycle = GOOD.replace("input = \"logs\"", "input = \"count\"");
    assert!(invalid(&cycle).2.contains("cycles"));
    let twice = GOOD.replace("name = \"out\"", "name = \"logs\"");
    assert!(invalid(&twice).2.contains("names two nodes"));
}

#[test]
fn operators_are_ordered_after_their_inputs() {
    let text = GOOD.replace(
        "[[sink]]",
        "[[operator]]\nname = \"first\"\ncomponent = \"a.wasm\"\ninput = \"logs\"\n\n[[sink]]",
    );
    let text = text.replace("input = \"logs\"\nkey_by", "input = \"first\"\nkey_by");
    let job = parse_str(&text).unwrap();
    let order: Vec<_> = job.operators.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(order, ["first", "count"]);
    assert_eq!(names(&job.operators[1].inputs), ["first"]);
}

#[test]
fn fields_of_another_source_type_are_refused() {
    let text = GOOD.replace(
        "type = \"file\"\npath = \"access.jsonl\"",
        "type = \"stdin\"\npath = \"x\"",
    );
    let (_, key, message) = invalid(&text);
    assert_eq!(key, "source.path");
    assert!(
        message.contains("`stdin` source has no `path`"),
        "{message}"
    );
}

#[test]
fn checkpoint_and_restart_sections() {
    let job = parse_str(GOOD).unwrap();
    assert!(job.checkpoint.is_none());
    assert_eq!(job.restart, Strategy::None);
    let text = format!(
        "{GOOD}\n[checkpoint]\ninterval_ms = 250\nmode = \"at-least-once\"\nretain = 3\ndir = \"chk\"\n"
    );
    let job = parse_str(&text).unwrap();
    let c = job.checkpoint.unwrap();
    assert_eq!(c.config.interval, std::time::Duration::from_millis(250));
    assert_eq!(
        (c.mode, c.config.retain, c.dir),
        (Mode::AtLeastOnce, 3, "jobs/chk".into())
    );
    assert!(
        matches!(job.restart, Strategy::FixedDelay { attempts: 3, .. }),
        "default with checkpoints"
    );
    let text = format!("{text}\n[restart]\nstrategy = \"failure-rate\"\nmax_failures = 5\n");
    assert!(matches!(
        parse_str(&text).unwrap().restart,
        Strategy::FailureRate {
            max_failures: 5,
            ..
        }
    ));
    let (_, key, _) = invalid(&format!("{GOOD}\n[checkpoint]\nmode = \"twice\"\n"));
    assert_eq!(key, "checkpoint.mode");
    let stdin = GOOD.replace(
        "type = \"file\"\npath = \"access.jsonl\"",
        "type = \"stdin\"",
    );
    let (_, key, message) = invalid(&format!("{stdin}\n[checkpoint]\n"));
    assert_eq!(key, "source.type");
    assert!(message.contains("cannot be replayed"), "{message}");
}

#[test]
fn unknown_backends_are_refused() {
    let job = parse_str(&format!(
        "{GOOD}\n[state]\nbackend = \"rocksdb\"\ndir = \"local\"\n"
    ))
    .unwrap();
    assert_eq!(
        job.state,
        StateSettings {
            backend: Backend::RocksDb,
            dir: "jobs/local".into(),
            incremental: true,
        }
    );
    let full = parse_str(&format!(
        "{GOOD}\n[state]\nbackend = \"rocksdb\"\nincremental = false\n"
    ))
    .unwrap();
    assert!(!full.state.incremental);
    let (_, key, _) = invalid(&format!("{GOOD}\n[state]\nbackend = \"heap\"\n"));
    assert_eq!(key, "state.backend");
    assert!(parse_str(&format!("{GOOD}\n[state]\nbackend = \"memory\"\n")).is_ok());
}

#[test]
fn generator_defaults() {
    let text = GOOD.replace(
        "type = \"file\"\npath = \"access.jsonl\"",
        "type = \"generator\"\ncount = 10",
    );
    let job = parse_str(&text).unwrap();
    assert_eq!(
        job.sources[0].kind,
        SourceKind::Generator {
            count: 10,
            keys: 1,
            key_field: "key".into(),
            key_prefix: "key-".into(),
            time: None,
        }
    );
}

#[test]
fn a_rate_is_a_positive_count_of_generator_and_file_sources_only() {
    let generator = GOOD.replace(
        "type = \"file\"\npath = \"access.jsonl\"",
        "type = \"generator\"\ncount = 10\nrecords_per_second = 500",
    );
    let job = parse_str(&generator).unwrap();
    assert_eq!(job.sources[0].records_per_second, Some(500));
    let (_, key, message) = invalid(&generator.replace("= 500", "= 0"));
    assert_eq!(key, "source.records_per_second");
    assert!(message.contains("between 1 and"), "{message}");
    let file = parse_str(&GOOD.replace(
        "path = \"access.jsonl\"",
        "path = \"access.jsonl\"\nrecords_per_second = 5",
    ))
    .unwrap();
    assert_eq!(file.sources[0].records_per_second, Some(5));
    let (_, key, message) = invalid(&GOOD.replace(
        "type = \"file\"\npath = \"access.jsonl\"",
        "type = \"stdin\"\nrecords_per_second = 5",
    ));
    assert_eq!(key, "source.records_per_second");
    assert!(message.contains("a `stdin` source has no"), "{message}");
}

#[test]
fn inputs_can_be_a_union_and_parallelism_is_bounded_by_max_parallelism() {
    let text = GOOD
        .replace(
            "input = \"logs\"",
            "input = [\"logs\", \"more\"]\nparallelism = 4",
        )
        .replace(
            "[[operator]]",
            "[[source]]\nname = \"more\"\ntype = \"stdin\"\n\n[[operator]]",
        );
    let job = parse_str(&text).unwrap();
    assert_eq!(names(&job.operators[0].inputs), ["logs", "more"]);
    assert_eq!(job.operators[0].parallelism, 4);
    let (_, key, message) = invalid(&text.replace("parallelism = 4", "parallelism = 129"));
    assert_eq!(key, "operator.parallelism");
    assert!(message.contains("max_parallelism (128)"), "{message}");
    let mut job = parse_str(GOOD).unwrap();
    job.set_parallelism(8).unwrap();
    assert_eq!(job.operators[0].parallelism, 8);
    assert!(job.set_parallelism(200).is_err());
}

#[test]
fn limits_default_and_are_read_in_their_units() {
    let job = parse_str(GOOD).expect("valid");
    assert_eq!(job.operators[0].sandbox, crate::job::Sandbox::default());
    let text = GOOD.replace(
        "[operator.config]",
        "[operator.limits]\nmemory_mb = 64\ntable_elements = 5000\ncall_timeout_ms = 250\n\
         stack_kb = 128\n[operator.env]\nREGION = \"eu\"\n[operator.config]",
    );
    let sandbox = &parse_str(&text).expect("valid").operators[0].sandbox;
    assert_eq!(
        sandbox.limits,
        crate::job::Limits {
            memory_bytes: 64 << 20,
            table_elements: 5000,
            call_timeout: std::time::Duration::from_millis(250),
            stack_bytes: 128 << 10,
        }
    );
    assert_eq!(
        sandbox.grants.env,
        [("REGION".to_string(), "eu".to_string())]
    );
}

#[test]
fn limits_must_be_positive_and_grants_need_absolute_guest_paths() {
    let zero = GOOD.replace(
        "[operator.config]",
        "[operator.limits]\nmemory_mb = 0\n[operator.config]",
    );
    let (_, key, message) = invalid(&zero);
    assert_eq!(key, "operator.limits.memory_mb");
    assert!(message.contains("between 1 and 4096"), "{message}");
    let dir = tempfile::tempdir().expect("temp dir");
    let relative = GOOD.replace(
        "[operator.config]",
        &format!(
            "[[operator.grants]]\ndir = {:?}\npath = \"data\"\n[operator.config]",
            dir.path().display().to_string()
        ),
    );
    let (_, key, message) = invalid(&relative);
    assert_eq!(key, "operator.grants.path");
    assert!(message.contains("absolute"), "{message}");
}

fn names(inputs: &[Input]) -> Vec<&str> {
    inputs.iter().map(|input| input.name.as_str()).collect()
}

#[test]
fn an_input_can_be_broadcast() {
    let text = GOOD
        .replace(
            "input = \"logs\"",
            "input = [\"logs\", { name = \"rules\", broadcast = true }]",
        )
        .replace(
            "[[operator]]",
            "[[source]]\nname = \"rules\"\ntype = \"stdin\"\n\n[[operator]]",
        );
    let job = parse_str(&text).unwrap();
    let inputs = &job.operators[0].inputs;
    assert_eq!(names(inputs), ["logs", "rules"]);
    assert_eq!(
        inputs.iter().map(|i| i.broadcast).collect::<Vec<_>>(),
        [false, true]
    );

    let (_, key, message) = invalid(&text.replace("broadcast = true", "broadcast = 1"));
    assert_eq!(key, "operator.input");
    assert!(message.contains("true or false"), "{message}");
    let (_, _, message) = invalid(&text.replace("broadcast = true", "broadcats = true"));
    assert!(message.contains("unknown key `broadcats`"), "{message}");
    let (_, _, message) = invalid(&text.replace("name = \"rules\", ", ""));
    assert!(message.contains("needs `name`"), "{message}");
    let (_, _, message) = invalid(&text.replace("{ name = \"rules\"", "{ name = \"logs\""));
    assert!(message.contains("`logs` is listed twice"), "{message}");
    let (_, key, message) = invalid(&text.replace(
        "input = \"count\"",
        "input = [{ name = \"count\", broadcast = true }]",
    ));
    assert_eq!(key, "sink.input");
    assert!(message.contains("a list of names"), "{message}");
}

#[test]
fn unaligned_checkpoints_are_exactly_once_with_an_optional_aligned_timeout() {
    let section = |text: &str| format!("{GOOD}\n[checkpoint]\n{text}");
    let unaligned = |text: &str| {
        parse_str(&section(text))
            .unwrap()
            .checkpoint
            .unwrap()
            .config
            .unaligned
    };
    assert_eq!(unaligned(""), None);
    assert_eq!(unaligned("unaligned = false\n"), None);
    assert_eq!(unaligned("unaligned = true\n"), Some(Duration::ZERO));
    assert_eq!(
        unaligned("unaligned = true\naligned_timeout_ms = 200\n"),
        Some(Duration::from_millis(200))
    );
    let (_, key, message) = invalid(&section("unaligned = true\nmode = \"at-least-once\"\n"));
    assert_eq!(key, "checkpoint.unaligned");
    assert!(message.contains("exactly-once only"), "{message}");
    let (_, key, message) = invalid(&section("aligned_timeout_ms = 5\n"));
    assert_eq!(key, "checkpoint.aligned_timeout_ms");
    assert!(message.contains("add `unaligned = true`"), "{message}");
    let (_, key, _) = invalid(&section("unaligned = true\naligned_timeout_ms = -1\n"));
    assert_eq!(key, "checkpoint.aligned_timeout_ms");
}

#[test]
fn event_time_is_a_json_pointer_on_file_and_stdin_sources() {
    let with = one_source_job;
    let job = parse_str(&with("type = \"stdin\"\nevent_time = \"/at/ts\"")).unwrap();
    assert_eq!(
        job.sources[0].event_time.as_ref().map(|p| p.as_str()),
        Some("/at/ts")
    );
    let (_, key, _) = invalid(&with("type = \"stdin\"\nevent_time = \"ts\""));
    assert_eq!(key, "source.event_time");
    let (_, key, message) = invalid(&with(
        "type = \"generator\"\ncount = 1\nevent_time = \"/ts\"",
    ));
    assert_eq!(key, "source.event_time");
    assert!(message.contains("has no `event_time`"), "{message}");
}

#[test]
fn a_watermark_strategy_needs_event_time() {
    let with = |source: &str| one_source_job(&format!("type = \"stdin\"\n{source}"));
    let job = parse_str(&with(
        "event_time = \"/ts\"\nwatermark = { out_of_orderness_ms = 500 }",
    ))
    .unwrap();
    let strategy = job.sources[0].watermark.as_ref().expect("a strategy");
    assert_eq!(strategy.out_of_orderness, Duration::from_millis(500));
    assert_eq!(strategy.interval, Duration::from_millis(200), "the default");
    let (_, key, message) = invalid(&with("watermark = { out_of_orderness_ms = 500 }"));
    assert_eq!(key, "source.watermark");
    assert!(message.contains("set `event_time`"), "{message}");
    let (_, key, _) = invalid(&with(
        "event_time = \"/ts\"\nwatermark = { idle_timeout_ms = 0 }",
    ));
    assert_eq!(key, "source.watermark.idle_timeout_ms");
    let every_record = parse_str(&with(
        "event_time = \"/ts\"\nwatermark = { interval_ms = 0 }",
    ))
    .unwrap();
    let strategy = every_record.sources[0].watermark.as_ref();
    assert!(
        strategy.is_some_and(|s| s.per_record),
        "0: after every record"
    );
    let unknown = parse_str(&with("event_time = \"/ts\"\nwatermark = { lateness = 3 }"));
    let message = format!("{:?}", unknown.unwrap_err());
    assert!(message.contains("unknown field `lateness`"), "{message}");
}

#[test]
fn a_generator_can_write_event_times_and_only_a_generator() {
    let with = one_source_job;
    let job = parse_str(&with(
        "type = \"generator\"\ncount = 5\ntime_field = \"ts\"\ndisorder_ms = 20",
    ))
    .unwrap();
    let SourceKind::Generator { time, .. } = &job.sources[0].kind else {
        panic!("a generator");
    };
    assert_eq!(
        time,
        &Some(GeneratedTime {
            field: "ts".into(),
            step_us: 1000,
            disorder_ms: 20,
        })
    );
    let (_, key, _) = invalid(&with("type = \"generator\"\ncount = 5\ndisorder_ms = 20"));
    assert_eq!(key, "source.disorder_ms", "only with a time field");
    let (_, key, _) = invalid(&with("type = \"stdin\"\ntime_field = \"ts\""));
    assert_eq!(key, "source.time_field");
}

/// A job with the source `in` (its `[[source]]` lines after the name) into stdout.
fn one_source_job(source: &str) -> String {
    format!(
        "[job]\nname = \"j\"\n[[source]]\nname = \"in\"\n{source}\n[[sink]]\nname = \"out\"\ntype = \"stdout\"\ninput = \"in\"\n"
    )
}

/// A job of one stdin source `in`, operator `op` (with `extra` lines) and a sink `out`
/// reading `sink_input`.
fn side_output_job(extra: &str, sink_input: &str) -> String {
    format!(
        "[job]\nname = \"j\"\n[[source]]\nname = \"in\"\ntype = \"stdin\"\n\
         [[operator]]\nname = \"op\"\ncomponent = \"a.wasm\"\ninput = \"in\"\n{extra}\n\
         [[sink]]\nname = \"out\"\ntype = \"stdout\"\ninput = \"{sink_input}\"\n"
    )
}

#[test]
fn nodes_read_an_operators_side_outputs_as_operator_dot_name() {
    let job = parse_str(&side_output_job("side_outputs = [\"late\"]", "op.late")).unwrap();
    let op = &job.operators[0];
    assert_eq!(op.side_outputs, ["late"]);
    assert_eq!(op.output_named("op"), Some(None));
    assert_eq!(op.output_named("op.late"), Some(Some(0)));
    assert_eq!(op.output_named("op.lat"), None);
    let (_, key, message) = invalid(&side_output_job("side_outputs = [\"late\"]", "op.lat"));
    assert_eq!(key, "sink.input");
    assert!(message.contains("has no side output `lat`"), "{message}");
    assert!(
        message.contains("`late`"),
        "it says which there are: {message}"
    );
    let (_, _, message) = invalid(&side_output_job("", "op.late"));
    assert!(message.contains("it has none"), "{message}");
    let clash = side_output_job("side_outputs = [\"late\"]", "op")
        + "[[sink]]\nname = \"op.late\"\ntype = \"stdout\"\ninput = \"op\"\n";
    let (_, key, message) = invalid(&clash);
    assert_eq!(key, "operator.side_outputs");
    assert!(message.contains("also a node's name"), "{message}");
    for bad in ["[\"a.b\"]", "[\"\"]", "[\"x\", \"x\"]"] {
        let (_, key, _) = invalid(&side_output_job(&format!("side_outputs = {bad}"), "op"));
        assert_eq!(key, "operator.side_outputs", "{bad}");
    }
}

const KAFKA: &str = r#"
[job]
name = "lag"

[[source]]
name = "events"
type = "kafka"
brokers = "k1:9092, k2:9092"
topic = ["a", "b"]
start = { timestamp_ms = 1700000000000 }
stop = "latest"
[source.properties]
"fetch.min.bytes" = 1024
"client.id" = "weir"

[[sink]]
name = "out"
type = "kafka"
input = "events"
brokers = "k1:9092"
topic = "lags"
key = "/user"
delivery = "exactly-once"
transactional_id_prefix = "team-a"

[checkpoint]
interval_ms = 1000
"#;

#[test]
fn a_kafka_source_and_sink_take_their_cluster_topics_and_guarantees() {
    let job = parse_str(KAFKA).unwrap();
    let SourceKind::Kafka(source) = &job.sources[0].kind else {
        panic!("a kafka source: {:?}", job.sources[0].kind);
    };
    assert_eq!(source.client.brokers, "k1:9092, k2:9092");
    assert_eq!(source.client.properties["fetch.min.bytes"], "1024");
    assert_eq!(source.topics, ["a", "b"]);
    assert_eq!(source.start, KafkaStart::Timestamp(1_700_000_000_000));
    assert!(source.bounded);
    assert_eq!(source.group_id, "weir-lag-events", "the default group");
    let SinkKind::Kafka(sink) = &job.sinks[0].kind else {
        panic!("a kafka sink: {:?}", job.sinks[0].kind);
    };
    assert_eq!(sink.topic, "lags");
    assert_eq!(sink.key.as_ref().map(JsonPointer::as_str), Some("/user"));
    assert_eq!(
        sink.delivery,
        KafkaDelivery::ExactlyOnce {
            transactional_ids: "team-a-lag-out".into()
        }
    );
}

#[test]
fn kafka_settings_that_cannot_work_are_refused_naming_the_key() {
    let cases = [
        (
            "brokers = \"k1:9092, k2:9092\"\n",
            "",
            "source.brokers",
            "needs `brokers`",
        ),
        (
            "topic = [\"a\", \"b\"]\n",
            "topic = []\n",
            "source.topic",
            "needs `topic`",
        ),
        (
            "stop = \"latest\"\n",
            "stop = \"never\"\n",
            "source.stop",
            "expected \"latest\"",
        ),
        (
            "start = { timestamp_ms = 1700000000000 }\n",
            "start = \"newest\"\n",
            "source.start",
            "expected \"earliest\"",
        ),
        (
            "transactional_id_prefix = \"team-a\"\n",
            "",
            "sink.transactional_id_prefix",
            "needs `transactional_id_prefix`",
        ),
        (
            "delivery = \"exactly-once\"\n",
            "delivery = \"maybe\"\n",
            "sink.delivery",
            "expected \"at-least-once\"",
        ),
        (
            "[checkpoint]\ninterval_ms = 1000\n",
            "",
            "sink.delivery",
            "add a [checkpoint] section",
        ),
        (
            "stop = \"latest\"\n",
            "stop = \"latest\"\npartition_discovery_ms = 100\n",
            "source.partition_discovery_ms",
            "a bounded source",
        ),
        (
            "\"client.id\" = \"weir\"\n",
            "\"bootstrap.servers\" = \"x:1\"\n",
            "source.properties.bootstrap.servers",
            "with `brokers`",
        ),
    ];
    for (from, to, key, message) in cases {
        assert!(KAFKA.contains(from), "{from}");
        let (_, found, said) = invalid(&KAFKA.replacen(from, to, 1));
        assert_eq!(found, key, "{from} → {to}: {said}");
        assert!(said.contains(message), "{from} → {to}: {said}");
    }
    // Kafka keys on other kinds of source.
    let (_, key, said) =
        invalid(&GOOD.replace("path = \"access.jsonl\"", "path = \"a\"\nbrokers = \"k:1\""));
    assert_eq!(key, "source.brokers");
    assert!(said.contains("a `file` source has no `brokers`"), "{said}");
}
