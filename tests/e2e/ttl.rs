//! Processing-time state TTL (issue 17): entries expire on the host's wall clock.

use std::path::Path;

use serde_json::Value;

use crate::support::Job;
use crate::support::job_file::{JobFile, Operator, Sink, Source};

/// Five records of one key, 250 ms apart on the wall clock, counted with a
/// processing-time TTL of `ttl_ms`: each record's `count`.
fn counts_with_processing_ttl(component: &str, ttl_ms: i64) -> Vec<u64> {
    let job = Job::new();
    let mut file = JobFile::named("ttl");
    file.sources.push(Source {
        records_per_second: Some(4),
        ..Source::generator("gen", 5, 1)
    });
    let mut count = Operator::keyed("count", Path::new(component), "gen", "/key");
    count
        .config
        .insert("ttl_ms".into(), toml::Value::Integer(ttl_ms));
    count
        .config
        .insert("domain".into(), toml::Value::String("processing".into()));
    file.operators.push(count);
    file.sinks.push(Sink::file("out", "count", "out"));
    let out = job.run(&file.toml(), "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<Value> = (job.committed("out").lines())
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let totals: Vec<u64> = lines
        .iter()
        .map(|l| l["total"].as_u64().expect("a total"))
        .collect();
    assert_eq!(totals, [1, 2, 3, 4, 5], "state without TTL keeps counting");
    lines
        .iter()
        .map(|l| l["count"].as_u64().expect("a count"))
        .collect()
}

#[test]
fn processing_time_ttl_forgets_what_the_wall_clock_left_behind() {
    for component in [
        test_artifacts::TTL_COUNT,
        test_artifacts::TTL_COUNT_PYTHON,
        test_artifacts::TTL_COUNT_JS,
        test_artifacts::TTL_COUNT_C,
    ] {
        // 100 ms: each record comes after the previous one's entry expired.
        assert_eq!(
            counts_with_processing_ttl(component, 100),
            [1, 1, 1, 1, 1],
            "{component}"
        );
        // A minute: none does.
        let counts = counts_with_processing_ttl(component, 60_000);
        assert_eq!(counts, [1, 2, 3, 4, 5], "{component}");
    }
}
