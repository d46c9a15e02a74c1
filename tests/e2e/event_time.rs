//! Event time at the source (issue 16, first part): a file source's `event_time` pointer
//! gives every record its time, as an integer of epoch milliseconds or an RFC 3339
//! string, and the operator sees it; a record without a valid time is a bad record.

use std::path::Path;

use crate::support::Job;
use crate::support::job_file::{JobFile, Operator, Sink, Source};

/// A file source reading `events.jsonl` with `event_time = "/ts"` into the sequence
/// checker, which outputs each record's time; `on_bad_record` if given.
fn timed_job(job: &Job, events: &str, on_bad_record: Option<&str>) -> JobFile {
    let path = job.write("events.jsonl", events);
    let mut file = JobFile::named("timed");
    file.sources.push(Source {
        event_time: Some("/ts".into()),
        on_bad_record: on_bad_record.map(str::to_string),
        ..Source::file("events", path.to_str().expect("UTF-8 path"))
    });
    file.operators.push(timed_check("events"));
    file.sinks.push(Sink::file("out", "check", "out"));
    file
}

/// The sequence checker on `input`, outputting each record's event time as `time`.
fn timed_check(input: &str) -> Operator {
    let component = Path::new(test_artifacts::SEQUENCE_CHECK);
    let mut check = Operator::keyed("check", component, input, "/key");
    check
        .config
        .insert("with_time".into(), toml::Value::Boolean(true));
    check
}

#[test]
fn records_carry_the_event_time_their_source_reads_from_them() {
    let job = Job::new();
    let events = [
        r#"{"key":"a","seq":0,"ts":1700000000123}"#,
        r#"{"key":"a","seq":1,"ts":"2026-12-03T10:15:30.250Z"}"#,
        r#"{"key":"b","seq":0,"ts":"2026-12-03T12:15:30.25+02:00"}"#,
        r#"{"key":"b","seq":1,"ts":"1969-12-31T23:59:59.5Z"}"#,
    ];
    let out = job.run(&timed_job(&job, &events.join("\n"), None).toml(), "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut lines: Vec<String> = job.committed("out").lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            r#"{"key":"a","seq":0,"time":1700000000123}"#,
            r#"{"key":"a","seq":1,"time":1796292930250}"#,
            r#"{"key":"b","seq":0,"time":1796292930250}"#,
            r#"{"key":"b","seq":1,"time":-500}"#,
        ]
    );
}

#[test]
fn a_record_without_a_valid_event_time_is_a_bad_record() {
    let events = [
        r#"{"key":"a","seq":0,"ts":1000}"#,
        r#"{"key":"a","seq":1}"#,
        r#"{"key":"a","seq":2,"ts":"yesterday"}"#,
        r#"{"key":"a","seq":3,"ts":4000}"#,
    ]
    .join("\n");
    let job = Job::new();
    let out = job.run(&timed_job(&job, &events, None).toml(), "");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("events.jsonl:2") && out.stderr.contains("no event time at `/ts`"),
        "says which record and why: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("on_bad_record = \"skip\""),
        "{}",
        out.stderr
    );

    let job = Job::new();
    let out = job.run(&timed_job(&job, &events, Some("skip")).toml(), "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("skipped 2 bad records"),
        "{}",
        out.stderr
    );
    let mut lines: Vec<String> = job.committed("out").lines().map(str::to_string).collect();
    lines.sort();
    // The checker sees seq 3 after 0: the skipped records are gone (the checker says
    // so), the rest keep their times.
    assert_eq!(
        lines,
        [
            r#"{"alert":"sequence","expected":1,"got":3,"key":"a"}"#,
            r#"{"key":"a","seq":0,"time":1000}"#,
            r#"{"key":"a","seq":3,"time":4000}"#,
        ]
    );
}

#[test]
fn a_generator_writes_event_times_with_the_disorder_asked_for() {
    let job = Job::new();
    let mut file = JobFile::named("generated");
    file.sources.push(Source {
        time_field: Some("ts".into()),
        event_time_step_us: Some(100),
        disorder_ms: Some(30),
        parallelism: Some(2),
        ..Source::generator("gen", 20_000, 10)
    });
    file.operators.push(timed_check("gen"));
    file.sinks.push(Sink::file("out", "check", "out"));
    let out = job.run(&file.toml(), "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let output = job.committed("out");
    assert!(!output.contains("alert"), "every key's records in order");
    let mut moved = 0;
    for line in output.lines() {
        let record: serde_json::Value = serde_json::from_str(line).expect("JSON");
        // Record i = seq * 10 + k is due at i / 10 ms = seq ms, moved back by at most 30.
        let (seq, time) = (
            record["seq"].as_i64().unwrap(),
            record["time"].as_i64().unwrap(),
        );
        assert!((seq - 30..=seq).contains(&time), "{line}");
        moved += i64::from(time != seq);
    }
    assert_eq!(output.lines().count(), 20_000);
    assert!(moved > 15_000, "the disorder is there: {moved} moved");
}
