//! Timers (issue 16): event-time timers fire once the watermark passes them, exactly
//! once and in timestamp order per key, and the end of the input fires the rest;
//! processing-time timers fire on the wall clock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::support::Job;
use crate::support::job_file::{JobFile, Operator, Sink, Source, Watermark};

/// The sequence checker on `input`, outputting each record's time and setting an
/// event-time timer `after_ms` after it.
fn timer_check(input: &str, after_ms: i64) -> Operator {
    let component = Path::new(test_artifacts::SEQUENCE_CHECK);
    let mut check = Operator::keyed("check", component, input, "/key");
    check.config.insert("with_time".into(), true.into());
    check
        .config
        .insert("timer_after_ms".into(), toml::Value::Integer(after_ms));
    check
}

/// A paced generator of `count` records over 10 keys, 10 per millisecond of event time,
/// moved back by up to `disorder_ms`, with a watermark that allows for exactly that.
fn disordered(count: u64, disorder_ms: u64) -> Source {
    Source {
        time_field: Some("ts".into()),
        event_time_step_us: Some(100),
        disorder_ms: Some(disorder_ms),
        records_per_second: Some(20_000),
        watermark: Some(Watermark::bounded(disorder_ms, Some(10))),
        parallelism: Some(2),
        ..Source::generator("gen", count, 10)
    }
}

/// What a timer job's output says: each record's `(key, time)`, and each fired timer's
/// `(key, timer, watermark)` in output order.
struct Fired {
    records: Vec<(String, i64)>,
    timers: Vec<(String, i64, i64)>,
}

fn read(output: &str) -> Fired {
    let mut fired = Fired {
        records: Vec::new(),
        timers: Vec::new(),
    };
    for line in output.lines() {
        let value: Value = serde_json::from_str(line).expect("JSON");
        let key = value["key"].as_str().unwrap_or_default().to_string();
        match (value["time"].as_i64(), value["timer"].as_i64()) {
            (Some(time), _) => fired.records.push((key, time)),
            (_, Some(timer)) => {
                let watermark = value["watermark"].as_i64().expect("a watermark");
                fired.timers.push((key, timer, watermark));
            }
            _ => panic!("unexpected output {line}"),
        }
    }
    fired
}

#[test]
fn every_timer_fires_once_in_order_after_the_watermark_passes_it() {
    let job = Job::new();
    let mut file = JobFile::named("timers");
    file.sources.push(disordered(20_000, 30));
    file.operators.push(timer_check("gen", 50));
    file.sinks.push(Sink::file("out", "check", "out"));
    let out = job.run(&file.toml(), "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let Fired { records, timers } = read(&job.committed("out"));
    assert_eq!(records.len(), 20_000);

    // The timers the records asked for, worked out here: one per key and time.
    let expected: BTreeSet<(String, i64)> =
        records.iter().map(|(k, t)| (k.clone(), t + 50)).collect();
    let mut seen = BTreeSet::new();
    for (key, timer, _) in &timers {
        assert!(
            seen.insert((key.clone(), *timer)),
            "fired twice: {key} {timer}"
        );
    }
    assert_eq!(seen, expected, "every timer fired, and no other");

    let mut last: BTreeMap<&str, i64> = BTreeMap::new();
    for (key, timer, watermark) in &timers {
        assert!(
            watermark >= timer,
            "{key}'s timer {timer} fired early, at {watermark}"
        );
        let before = last.insert(key, *timer);
        assert!(before < Some(*timer), "{key}: {timer} after {before:?}");
    }
    let on_the_way = timers.iter().filter(|(.., w)| *w < i64::MAX).count();
    assert!(
        on_the_way > timers.len() / 2,
        "most timers fire as the watermark passes them, not at the end: {on_the_way} of {}",
        timers.len()
    );
    assert!(
        timers.iter().any(|(.., w)| *w == i64::MAX),
        "the end of the input fires the rest"
    );
}

#[test]
fn processing_time_timers_fire_on_the_wall_clock() {
    let job = Job::new();
    let mut file = JobFile::named("clock");
    file.sources.push(Source {
        records_per_second: Some(200),
        ..Source::generator("gen", 100, 4)
    });
    let component = Path::new(test_artifacts::SEQUENCE_CHECK);
    let mut check = Operator::keyed("check", component, "gen", "/key");
    check
        .config
        .insert("processing_timer_after_ms".into(), toml::Value::Integer(20));
    file.operators.push(check);
    file.sinks.push(Sink::file("out", "check", "out"));
    let out = job.run(&file.toml(), "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let output = job.committed("out");
    let late: Vec<i64> = (output.lines())
        .map(|line| serde_json::from_str::<Value>(line).expect("JSON"))
        .filter_map(|value| value["late_ms"].as_i64())
        .collect();
    // The run takes half a second; the last records' timers are pending at its end,
    // when processing-time timers do not fire.
    assert!(late.len() > 50, "{} fired:\n{output}", late.len());
    assert!(late.iter().all(|&ms| ms >= 0), "none early: {late:?}");
    let mut sorted = late.clone();
    sorted.sort();
    assert!(
        sorted[sorted.len() / 2] < 200,
        "they fire close to their time: {sorted:?}"
    );
}

/// A fast input (event time up to 1 s, in half a second) and a slow one (event time up
/// to 3 ms, over 2 s) into one timer checker; `idle_timeout_ms` on the slow one.
fn two_speeds(idle_timeout_ms: Option<u64>) -> JobFile {
    let mut file = JobFile::named("speeds");
    file.sources.push(disordered(10_000, 0));
    file.sources.push(Source {
        time_field: Some("ts".into()),
        records_per_second: Some(2),
        key_prefix: Some("slow-".into()),
        watermark: Some(Watermark {
            idle_timeout_ms,
            ..Watermark::bounded(0, Some(10))
        }),
        ..Source::generator("slow", 4, 1)
    });
    let mut check = timer_check("gen", 50);
    check.input.push("slow".into());
    file.operators.push(check);
    file.sinks.push(Sink::file("out", "check", "out"));
    file
}

/// How many of the fast input's timers fired before the end of the input.
fn fired_on_the_way(file: &JobFile) -> usize {
    let job = Job::new();
    let out = job.run(&file.toml(), "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let Fired { timers, .. } = read(&job.committed("out"));
    assert_eq!(
        timers
            .iter()
            .filter(|(k, ..)| !k.starts_with("slow-"))
            .count(),
        10_000
    );
    (timers.iter())
        .filter(|(key, _, watermark)| !key.starts_with("slow-") && *watermark < i64::MAX)
        .count()
}

#[test]
fn the_slower_input_holds_the_watermark_until_it_goes_idle() {
    assert_eq!(
        fired_on_the_way(&two_speeds(None)),
        0,
        "the slow input's watermark (3 ms at most) holds every timer of the fast one"
    );
    let on_the_way = fired_on_the_way(&two_speeds(Some(100)));
    assert!(
        on_the_way > 5_000,
        "idle between its records, the slow input stops holding the watermark: \
         {on_the_way} of 10000 fired on the way"
    );
}
