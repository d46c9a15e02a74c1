//! Parallel subtasks: keyed state stays exact when records are routed by key group to
//! several Wasm instances, sources split their input, and streams can be unioned.

use crate::support::{Job, pipeline};

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

fn run_visits(parallelism: &str, source_parallelism: u16) -> String {
    let job = Job::new();
    let source = format!(
        "type = \"generator\"\ncount = 20000\nkeys = 500\nkey_field = \"url\"\nparallelism = {source_parallelism}"
    );
    let text = pipeline(&source, test_artifacts::VISIT_COUNT, "key_by = \"/url\"")
        .replace("path = \"out\"", "path = \"out\"\nparallelism = 2");
    let path = job.write("job.toml", &text);
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
    let text = format!(
        r#"
[job]
name = "union"

[[source]]
name = "logs"
type = "file"
path = "logs"
parallelism = 2

[[source]]
name = "more"
type = "file"
path = "more.jsonl"

[[operator]]
name = "count"
component = {:?}
input = ["logs", "more"]
key_by = "/url"
parallelism = 2

[[sink]]
name = "out"
type = "file"
input = "count"
path = "out"
"#,
        test_artifacts::VISIT_COUNT
    );
    let out = job.run(&text, "");
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
