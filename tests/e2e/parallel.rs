//! Parallel subtasks: keyed state stays exact when records are routed by key group to
//! several Wasm instances, sources split their input, and streams can be unioned.

use std::path::Path;

use crate::support::job_file::{JobFile, Operator, Sink, Source};
use crate::support::{Job, pipeline};

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

fn run_visits(parallelism: &str, source_parallelism: u16) -> String {
    let job = Job::new();
    let mut file = JobFile::named("visits");
    file.sources.push(Source {
        key_field: Some("url".into()),
        parallelism: Some(source_parallelism),
        ..Source::generator("in", 20_000, 500)
    });
    let component = Path::new(test_artifacts::VISIT_COUNT);
    file.operators
        .push(Operator::keyed("op", component, "in", "/url"));
    file.sinks.push(Sink {
        parallelism: Some(2),
        ..Sink::file("out", "op", "out")
    });
    let path = job.save(&file);
    let out = crate::support::host(
        &["run", path.to_str().expect("UTF-8 path"), "-p", parallelism],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("operator `op` processed 20000"),
        "{}",
        out.stderr
    );
    job.committed("out")
}

#[test]
fn keyed_results_do_not_depend_on_parallelism() {
    let one = sorted_lines(&run_visits("1", 1));
    assert_eq!(one.len(), 20_000);
    assert!(one.contains(&r#"{"url":"key-499","count":40}"#.to_string()));
    for (p, source_p) in [("2", 1), ("4", 3), ("7", 2)] {
        assert_eq!(
            sorted_lines(&run_visits(p, source_p)),
            one,
            "-p {p}, {source_p} source subtasks"
        );
    }
}

#[test]
fn a_directory_source_is_split_by_file_and_streams_can_be_unioned() {
    let job = Job::new();
    std::fs::create_dir(job.path("logs")).unwrap();
    for (file, urls) in [
        ("a.jsonl", ["/x", "/y"]),
        ("b.jsonl", ["/x", "/x"]),
        ("c.jsonl", ["/z", "/x"]),
    ] {
        let lines: String = urls
            .iter()
            .map(|u| format!("{{\"url\":\"{u}\"}}\n"))
            .collect();
        job.write(&format!("logs/{file}"), &lines);
    }
    job.write("more.jsonl", "{\"url\":\"/y\"}\n");
    let mut file = JobFile::named("union");
    file.sources.push(Source {
        parallelism: Some(2),
        ..Source::file("logs", "logs")
    });
    file.sources.push(Source::file("more", "more.jsonl"));
    let component = Path::new(test_artifacts::VISIT_COUNT);
    let mut count = Operator::keyed("count", component, "logs", "/url");
    count.input.push("more".into());
    count.parallelism = Some(2);
    file.operators.push(count);
    file.sinks.push(Sink::file("out", "count", "out"));
    let out = job.run(&file.toml(), "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines = sorted_lines(&job.committed("out"));
    let last = |url: &str| {
        lines
            .iter()
            .filter(|l| l.contains(&format!("\"{url}\"")))
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["count"]
                    .as_u64()
                    .unwrap()
            })
            .max()
    };
    assert_eq!(lines.len(), 7);
    assert_eq!(
        (last("/x"), last("/y"), last("/z")),
        (Some(4), Some(2), Some(1))
    );
}

/// A generator's `records_per_second` holds over all its subtasks: 3000 records at 2000
/// per second take at least 1.5 s (without the cap, a fraction of that), and none is
/// lost.
#[test]
fn a_generator_rate_caps_all_its_subtasks_together() {
    let job = Job::new();
    let source = "type = \"generator\"\ncount = 3000\nkeys = 10\nkey_field = \"url\"\n\
                  records_per_second = 2000\nparallelism = 2";
    let text = pipeline(source, test_artifacts::VISIT_COUNT, "key_by = \"/url\"");
    let started = std::time::Instant::now();
    let out = job.run(&text, "");
    let took = started.elapsed();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(job.committed("out").lines().count(), 3000);
    // Record n of each subtask is due n / 1000 s after it starts: the last at 1.5 s.
    assert!(
        took >= std::time::Duration::from_millis(1450),
        "3000 records at 2000/s took {took:?}"
    );
}
