//! Kafka under faults (issue 19), against a real broker: a source's partitions, read
//! by 2 subtasks killed with SIGKILL five times and resumed by 3, count every message
//! exactly once; an exactly-once sink survives crashes at the moments others get wrong
//! (after a checkpoint's metadata, before its commit; inside a transaction), and a
//! rescale that removes a subtask with a transaction left open; an at-least-once sink
//! loses nothing.

use std::collections::BTreeMap;

use super::*;
use crate::support::job_file::Delivery;
use crate::support::kafka::Broker;

/// `count` access-log messages over `urls` URLs, keyed by URL.
fn visits(count: usize, urls: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|i| {
            let url = format!("/page/{}", (i * 7919) % urls);
            let value = format!("{{\"url\":\"{url}\",\"seq\":{i}}}");
            (url, value)
        })
        .collect()
}

/// What the visit count emits for `visits`, exactly once each: every URL's counts 1 to n.
fn counts(visits: &[(String, String)]) -> Vec<String> {
    let mut per_url: BTreeMap<&str, u64> = BTreeMap::new();
    for (url, _) in visits {
        *per_url.entry(url).or_default() += 1;
    }
    let mut lines: Vec<String> = (per_url.into_iter())
        .flat_map(|(url, n)| (1..=n).map(move |c| format!("{{\"url\":\"{url}\",\"count\":{c}}}")))
        .collect();
    lines.sort();
    lines
}

/// Asserts that `got` holds each of `expected`'s lines exactly once (nothing lost,
/// nothing twice), saying how many were missing or extra and which came first.
fn assert_exactly(mut got: Vec<String>, expected: &[String]) {
    got.sort();
    if got == expected {
        return;
    }
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for line in expected {
        *counts.entry(line).or_default() += 1;
    }
    for line in &got {
        *counts.entry(line).or_default() -= 1;
    }
    let missing: Vec<&str> = (counts.iter())
        .filter(|(_, n)| **n > 0)
        .map(|(l, _)| *l)
        .collect();
    let extra: Vec<&str> = (counts.iter())
        .filter(|(_, n)| **n < 0)
        .map(|(l, _)| *l)
        .collect();
    panic!(
        "{} outputs, {} expected: {} missing (first {:?}), {} extra or repeated (first {:?})",
        got.len(),
        expected.len(),
        missing.len(),
        &missing[..missing.len().min(3)],
        extra.len(),
        &extra[..extra.len().min(3)],
    );
}

fn fill(broker: &Broker, topic: &str, visits: &[(String, String)]) {
    broker.create_topic(topic, 4);
    broker.produce(topic, visits.iter().map(|(k, v)| (k.as_str(), v.clone())));
}

/// The visit count from topic `visits` (bounded, 2 source subtasks paced to `rate`) to
/// `sink`, checkpointing every 20 ms.
fn counting(broker: &Broker, rate: u64, sink: Sink) -> JobFile {
    let mut file = JobFile::named("kafka-count");
    file.sources.push(Source {
        parallelism: Some(2),
        records_per_second: Some(rate),
        ..Source::kafka_bounded("visits", &broker.address, "visits")
    });
    file.operators.push(Operator {
        parallelism: Some(2),
        ..Operator::keyed(
            "count",
            std::path::Path::new(test_artifacts::VISIT_COUNT),
            "visits",
            "/url",
        )
    });
    file.sinks.push(sink);
    file.checkpoint = Some(Checkpoint::every(20));
    file
}

#[test]
fn every_message_of_four_partitions_is_counted_once_across_five_kill_9s_and_a_rescale_to_3() {
    let broker = Broker::start();
    let input = visits(1_000_000, 1_000);
    fill(&broker, "visits", &input);
    let job = Job::new();
    let sink = Sink {
        parallelism: Some(2),
        ..Sink::file("out", "count", "out")
    };
    // 1M messages at 200K/s: 5 s of input, of which each run before a kill reads less
    // than a second.
    job.save(&counting(&broker, 200_000, sink));
    let out = killed_then_rescaled(&job, &[3, 5, 2, 4, 3], "kafka source");
    assert_exactly(out.lines().map(str::to_string).collect(), &counts(&input));
}

/// Runs the job with `WEIR_FAULT=fault` until the process ends itself there; returns
/// what it printed.
fn crash_at(job: &Job, fault: &str) -> String {
    let run = Running::start_with(&job.path("job.toml"), &[], &[("WEIR_FAULT", fault)]);
    let (code, rest) = run.wait();
    assert_eq!(code, Some(134), "the run was to crash at {fault}: {rest}");
    assert!(rest.contains("crashing on purpose"), "{rest}");
    rest
}

/// Runs the job to its end, resuming from its latest checkpoint.
fn run_to_its_end(job: &Job) {
    let path = job.path("job.toml");
    let out = host(&["run", path.to_str().expect("UTF-8")], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("resuming"), "{}", out.stderr);
}

/// The job's newest completed checkpoint's number.
fn latest_id(job: &Job) -> u64 {
    let dir = host::checkpoint::Store::new(&job.path("checkpoints"), "kafka-count")
        .latest_dir()
        .expect("readable checkpoint folder")
        .expect("a completed checkpoint");
    let name = dir
        .file_name()
        .expect("chk-<n>")
        .to_string_lossy()
        .into_owned();
    name.trim_start_matches("chk-").parse().expect("chk-<n>")
}

#[test]
fn an_exactly_once_sink_commits_each_output_once_across_crashes_before_and_inside_its_commits() {
    let broker = Broker::start();
    let input = visits(300_000, 500);
    fill(&broker, "visits", &input);
    broker.create_topic("counts", 4);
    let job = Job::new();
    let sink = Sink {
        parallelism: Some(2),
        key: Some("/url".into()),
        ..Sink::kafka(
            "out",
            "count",
            &broker.address,
            "counts",
            Delivery::ExactlyOnce,
        )
    };
    // 300K messages at 60K/s: 5 s of input.
    job.save(&counting(&broker, 60_000, sink));
    // Checkpoint 5's metadata is written; no subtask has committed its output.
    crash_at(&job, "after-metadata:5");
    assert_eq!(latest_id(&job), 5);
    // Subtask 1 dies inside the transaction of a part a few checkpoints on.
    crash_at(&job, "in-transaction:8:1");
    // And SIGKILL at whatever moment three checkpoints after a restore land on.
    for _ in 0..3 {
        run_and_kill(&job, 3);
    }
    run_to_its_end(&job);
    assert_exactly(broker.read_committed("counts"), &counts(&input));
}

#[test]
fn rescaling_an_exactly_once_sink_2_to_1_commits_or_aborts_the_removed_subtasks_transactions() {
    let broker = Broker::start();
    let input = visits(100_000, 200);
    fill(&broker, "visits", &input);
    broker.create_topic("counts", 2);
    let job = Job::new();
    let sink = |parallelism| Sink {
        parallelism: Some(parallelism),
        ..Sink::kafka(
            "out",
            "count",
            &broker.address,
            "counts",
            Delivery::ExactlyOnce,
        )
    };
    job.save(&counting(&broker, 40_000, sink(2)));
    // Subtask 1 is left with an open transaction holding part 4's messages: a
    // `read_committed` reader cannot read past it until someone takes its id over.
    crash_at(&job, "in-transaction:4:1");
    job.save(&counting(&broker, 40_000, sink(1)));
    run_to_its_end(&job);
    assert_exactly(broker.read_committed("counts"), &counts(&input));
}

#[test]
fn an_at_least_once_sink_loses_nothing_across_kill_9s() {
    let broker = Broker::start();
    let input = visits(100_000, 200);
    fill(&broker, "visits", &input);
    broker.create_topic("counts", 2);
    let job = Job::new();
    let sink = Sink {
        parallelism: Some(2),
        ..Sink::kafka(
            "out",
            "count",
            &broker.address,
            "counts",
            Delivery::AtLeastOnce,
        )
    };
    job.save(&counting(&broker, 40_000, sink));
    run_and_kill(&job, 3);
    run_and_kill(&job, 3);
    run_to_its_end(&job);
    let committed: std::collections::BTreeSet<String> =
        broker.read_committed("counts").into_iter().collect();
    let missing: Vec<String> = (counts(&input).into_iter())
        .filter(|c| !committed.contains(c))
        .collect();
    assert!(
        missing.is_empty(),
        "lost: {:?}",
        &missing[..missing.len().min(5)]
    );
}
