//! The Kafka connectors as a user meets them (issue 19), against a real broker: a
//! source's progress in its consumer group, and clear errors for an unreachable broker,
//! a missing topic and malformed messages.

use std::time::{Duration, Instant};

use crate::support::Job;
use crate::support::job_file::{Checkpoint, JobFile, Operator, Sink, Source};
use crate::support::kafka::Broker;
use crate::support::process::Running;

/// The visit count from `source` into the file sink `out`.
fn counting(source: Source) -> JobFile {
    let mut file = JobFile::named("kafka");
    let input = source.name.clone();
    file.sources.push(source);
    file.operators.push(Operator::keyed(
        "count",
        std::path::Path::new(test_artifacts::VISIT_COUNT),
        &input,
        "/url",
    ));
    file.sinks.push(Sink::file("out", "count", "out"));
    file
}

fn visits(n: usize) -> impl Iterator<Item = (&'static str, String)> {
    (0..n).map(|i| ("k", format!("{{\"url\":\"/page/{}\"}}", i % 10)))
}

#[test]
fn a_kafka_source_commits_its_checkpoints_offsets_to_its_group_for_lag_tools() {
    let broker = Broker::start();
    broker.create_topic("visits", 2);
    broker.produce("visits", visits(1_000));
    let job = Job::new();
    let mut file = counting(Source {
        group_id: Some("lag-watch".into()),
        ..Source::kafka_bounded("visits", &broker.address, "visits")
    });
    file.sources[0].stop = None; // reads until cancelled
    file.checkpoint = Some(Checkpoint::every(50));
    let path = job.save(&file);
    let mut run = Running::start(&path, &[]);
    run.wait_for_checkpoints(1);
    // Committed asynchronously after each checkpoint: the group follows the job.
    let reaches = |offsets: i64| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while broker.committed_offsets("lag-watch", "visits", 2) < offsets {
            assert!(
                Instant::now() < deadline,
                "the group's offsets never reached {offsets}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(broker.committed_offsets("lag-watch", "visits", 2), offsets);
    };
    reaches(1_000);
    broker.produce("visits", visits(500));
    reaches(1_500);
    run.kill();
}

#[test]
fn an_unreachable_broker_fails_the_job_naming_it() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let brokers = format!("127.0.0.1:{port}");
    let job = Job::new();
    let out = job.run(
        &counting(Source::kafka_bounded("visits", &brokers, "visits")).toml(),
        "",
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("brokers `{brokers}`"))
            && out.stderr.contains("check that the brokers are up"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_missing_topic_fails_the_job_naming_it() {
    let broker = Broker::start();
    let job = Job::new();
    // Without checkpoints there is no restart strategy: one attempt.
    let file = counting(Source::kafka_bounded(
        "visits",
        &broker.address,
        "no-such-topic",
    ));
    let out = job.run(&file.toml(), "");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("topic `no-such-topic` does not exist"),
        "{}",
        out.stderr
    );
}

#[test]
fn malformed_messages_are_skipped_and_counted_or_fail_the_job_saying_where_they_are() {
    let broker = Broker::start();
    broker.create_topic("visits", 1);
    let messages = [
        ("a", "{\"url\":\"/a\"}".to_string()),
        ("b", "not json".to_string()),
        ("a", "{\"url\":\"/a\"}".to_string()),
    ];
    broker.produce("visits", messages.iter().map(|(k, v)| (*k, v.clone())));
    let job = Job::new();
    let source = |on_bad_record: &str| Source {
        on_bad_record: Some(on_bad_record.into()),
        ..Source::kafka_bounded("visits", &broker.address, "visits")
    };
    let skipped = job.run(&counting(source("skip")).toml(), "");
    assert_eq!(skipped.code, 0, "{}", skipped.stderr);
    assert!(
        skipped.stderr.contains("skipped 1 bad records")
            && skipped
                .stderr
                .contains("topic `visits` partition 0 offset 1"),
        "{}",
        skipped.stderr
    );
    assert_eq!(
        job.committed("out"),
        "{\"url\":\"/a\",\"count\":1}\n{\"url\":\"/a\",\"count\":2}\n"
    );
    let failed = job.run(&counting(source("fail")).toml(), "");
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(
        failed
            .stderr
            .contains("bad record at topic `visits` partition 0 offset 1: not a JSON document"),
        "{}",
        failed.stderr
    );
}

/// Example `name`'s Kafka job file `file`, pointed at `broker`: its brokers, its
/// component (`component`), sample data and checkpoints in `job` (edited as TOML
/// values, not text).
fn example_job(
    name: &str,
    file: &str,
    broker: &Broker,
    component: &str,
    job: &Job,
) -> std::path::PathBuf {
    let dir = crate::support::example_dir(name);
    let text = std::fs::read_to_string(dir.join("kafka").join(file)).expect("the example's job");
    let mut table: toml::Table = text.parse().expect("TOML");
    for section in ["source", "operator", "sink"] {
        let Some(toml::Value::Array(nodes)) = table.get_mut(section) else {
            continue;
        };
        for node in nodes.iter_mut().filter_map(toml::Value::as_table_mut) {
            if node.contains_key("brokers") {
                node.insert("brokers".into(), broker.address.clone().into());
            }
            if node.contains_key("component") {
                node.insert("component".into(), component.into());
            }
            if let Some(toml::Value::String(path)) = node.get("path") {
                let data = dir.join("kafka").join(path);
                node.insert("path".into(), data.to_string_lossy().into_owned().into());
            }
        }
    }
    if let Some(toml::Value::Table(checkpoint)) = table.get_mut("checkpoint") {
        let checkpoints = job.path("checkpoints");
        checkpoint.insert(
            "dir".into(),
            checkpoints.to_string_lossy().into_owned().into(),
        );
    }
    job.write(file, &toml::to_string(&table).expect("TOML"))
}

#[test]
fn the_kafka_examples_give_their_file_versions_outputs_from_topic_to_topic() {
    for (name, component, output) in [
        ("visit-count", test_artifacts::VISIT_COUNT, "visit-counts"),
        ("consumer-lag", test_artifacts::CONSUMER_LAG, "lags"),
    ] {
        let broker = Broker::start();
        let job = Job::new();
        for file in ["load.toml", "job.toml"] {
            let path = example_job(name, file, &broker, component, &job);
            let out = crate::support::host(&["run", path.to_str().expect("UTF-8")], "");
            assert_eq!(out.code, 0, "{name} {file}: {}", out.stderr);
        }
        let expected =
            std::fs::read_to_string(crate::support::example_dir(name).join("data/expected.jsonl"))
                .expect("the example's expected output");
        let expected: Vec<String> = expected.lines().map(str::to_string).collect();
        assert_eq!(broker.read_committed(output), expected, "{name}");
        let show = example_job(name, "show.toml", &broker, component, &job);
        let out = crate::support::host(&["run", show.to_str().expect("UTF-8")], "");
        assert_eq!(out.code, 0, "{name} show: {}", out.stderr);
        assert_eq!(
            out.stdout.lines().collect::<Vec<_>>(),
            expected,
            "{name} show"
        );
    }
}

#[test]
fn a_kafka_sources_event_time_is_its_messages_timestamps() {
    use crate::support::job_file::Watermark;
    let dir = crate::support::example_dir("windowed-visit-count");
    let log = std::fs::read_to_string(dir.join("data/access.jsonl")).expect("the sample log");
    // The same visits with their times only in the messages' timestamps.
    let broker = Broker::start();
    broker.create_topic("visits", 1);
    broker.produce_at(
        "visits",
        log.lines().map(|line| {
            let mut visit: serde_json::Value = serde_json::from_str(line).expect("JSON");
            let ts = visit["ts"].as_i64().expect("a time");
            visit.as_object_mut().expect("an object").remove("ts");
            ("k", visit.to_string(), Some(ts))
        }),
    );
    let job = Job::new();
    let mut file = JobFile::named("kafka-windows");
    file.sources.push(Source {
        watermark: Some(Watermark::bounded(5_000, Some(0))),
        ..Source::kafka_bounded("logs", &broker.address, "visits")
    });
    file.operators.push(Operator {
        side_outputs: vec!["late".into()],
        ..Operator::keyed(
            "per-minute",
            std::path::Path::new(test_artifacts::WINDOWED_VISIT_COUNT),
            "logs",
            "/url",
        )
    });
    file.sinks.push(Sink::file("out", "per-minute", "out"));
    let out = job.run(&file.toml(), "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let expected = std::fs::read_to_string(dir.join("data/expected.jsonl")).expect("expected");
    assert_eq!(job.committed("out"), expected);
}

#[test]
fn operators_key_by_the_message_key_through_the_sources_key_field() {
    let broker = Broker::start();
    broker.create_topic("visits", 1);
    // The URL is only in the messages' keys.
    let messages = [
        ("/a", "{}"),
        ("/b", "{\"ref\":\"x\"}"),
        ("/a", " {\"ref\":\"y\"}"),
    ];
    broker.produce("visits", messages.iter().map(|(k, v)| (*k, v.to_string())));
    let job = Job::new();
    let file = counting(Source {
        key_field: Some("url".into()),
        ..Source::kafka_bounded("visits", &broker.address, "visits")
    });
    let out = job.run(&file.toml(), "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        job.committed("out"),
        "{\"url\":\"/a\",\"count\":1}\n{\"url\":\"/b\",\"count\":1}\n{\"url\":\"/a\",\"count\":2}\n"
    );
}

#[test]
fn partitions_added_to_a_topic_while_the_job_runs_are_read_from_their_start() {
    let broker = Broker::start();
    broker.create_topic("visits", 2);
    let url = |i: usize| format!("{{\"url\":\"/page/{}\"}}", i % 10);
    broker.produce("visits", (0..100).map(|i| ("k", url(i))));
    let job = Job::new();
    let mut file = counting(Source {
        partition_discovery_ms: Some(100),
        parallelism: Some(2),
        ..Source::kafka_bounded("visits", &broker.address, "visits")
    });
    file.sources[0].stop = None;
    file.checkpoint = Some(Checkpoint::every(50));
    let path = job.save(&file);
    let run = Running::start(&path, &[]);
    let committed_reaches = |lines: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while job.committed("out").lines().count() < lines {
            assert!(
                Instant::now() < deadline,
                "the output never reached {lines} lines"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    committed_reaches(100);
    broker.grow_topic("visits", 4);
    broker.produce_to("visits", 2, (100..150).map(url));
    broker.produce_to("visits", 3, (150..200).map(url));
    committed_reaches(200);
    let mut out: Vec<String> = job.committed("out").lines().map(str::to_string).collect();
    out.sort();
    let mut expected: Vec<String> = (0..10)
        .flat_map(|u| (1..=20).map(move |c| format!("{{\"url\":\"/page/{u}\",\"count\":{c}}}")))
        .collect();
    expected.sort();
    assert_eq!(out, expected);
    run.kill();
}

#[test]
fn a_source_starts_at_the_earliest_latest_committed_or_timed_message_of_every_topic() {
    let broker = Broker::start();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let hour_ago = now.expect("after 1970").as_millis() as i64 - 3_600_000;
    for topic in ["a", "b"] {
        broker.create_topic(topic, 1);
        // Message i at i seconds past an hour ago (times far in the past would fall to
        // the broker's retention).
        broker.produce_at(
            topic,
            (0..10).map(|i| {
                let value = format!("{{\"url\":\"/{topic}/{i}\"}}");
                ("k", value, Some(hour_ago + i * 1000))
            }),
        );
    }
    broker.commit_offset("readers", "a", 0, 7);
    broker.commit_offset("readers", "b", 0, 4);
    let read = |start: toml::Value| {
        let job = Job::new();
        let file = counting(Source {
            topic: Some(toml::Value::Array(vec!["a".into(), "b".into()])),
            group_id: Some("readers".into()),
            start: Some(start),
            ..Source::kafka_bounded("visits", &broker.address, "a")
        });
        let out = job.run(&file.toml(), "");
        assert_eq!(out.code, 0, "{}", out.stderr);
        let mut urls: Vec<String> = (job.committed("out").lines())
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON")["url"].to_string())
            .collect();
        urls.sort();
        urls.join(" ").replace('"', "")
    };
    let all: Vec<String> = ["a", "b"]
        .iter()
        .flat_map(|t| (0..10).map(move |i| format!("/{t}/{i}")))
        .collect();
    assert_eq!(read("earliest".into()), all.join(" "));
    assert_eq!(read("latest".into()), "");
    assert_eq!(
        read("committed".into()),
        "/a/7 /a/8 /a/9 /b/4 /b/5 /b/6 /b/7 /b/8 /b/9"
    );
    let mut at = toml::Table::new();
    at.insert("timestamp_ms".into(), (hour_ago + 8_000).into());
    assert_eq!(read(at.into()), "/a/8 /a/9 /b/8 /b/9");
}
