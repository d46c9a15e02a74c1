//! Every example runs through `host run` on its committed sample input and produces its
//! committed expected output.

use std::fs;

use crate::support::job_file::{JobFile, Operator, Sink, Source};
use crate::support::{self, Job, example_dir};

/// Runs an example's own job file, with its component replaced by the freshly built one
/// and its file sinks redirected into a temporary directory; returns the job's folder.
pub fn run_example(name: &str, component: &str) -> (Job, support::Outcome) {
    let dir = example_dir(name);
    let text = fs::read_to_string(dir.join("job.toml")).expect("example job.toml");
    let mut job: toml::Table = toml::from_str(&text).expect("example job parses");
    let tables = |key: &str, job: &mut toml::Table| -> Vec<toml::Table> {
        job.get(key)
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|t| t.as_table().cloned()).collect())
            .unwrap_or_default()
    };
    let work = Job::new();
    let mut sources = tables("source", &mut job);
    for s in &mut sources {
        if let Some(path) = s.get("path").and_then(|p| p.as_str()) {
            let absolute = dir.join(path).display().to_string();
            s.insert("path".into(), absolute.into());
        }
    }
    let mut operators = tables("operator", &mut job);
    for o in &mut operators {
        o.insert("component".into(), component.into());
    }
    job.insert(
        "source".into(),
        sources
            .into_iter()
            .map(toml::Value::Table)
            .collect::<Vec<_>>()
            .into(),
    );
    job.insert(
        "operator".into(),
        operators
            .into_iter()
            .map(toml::Value::Table)
            .collect::<Vec<_>>()
            .into(),
    );
    let outcome = work.run(&toml::to_string(&job).expect("job serializes"), "");
    (work, outcome)
}

fn expected(name: &str) -> String {
    fs::read_to_string(example_dir(name).join("data/expected.jsonl")).expect("expected.jsonl")
}

pub fn assert_example(name: &str, component: &str) {
    let (job, outcome) = run_example(name, component);
    assert_eq!(outcome.code, 0, "{name} failed:\n{}", outcome.stderr);
    assert_eq!(
        job.committed("out"),
        expected(name),
        "{name}: committed file output"
    );
    assert_eq!(outcome.stdout, expected(name), "{name}: stdout sink");
    assert!(outcome.stderr.contains("finished"), "{}", outcome.stderr);
}

#[test]
fn visit_count() {
    assert_example("visit-count", test_artifacts::VISIT_COUNT);
}

#[test]
fn consumer_lag() {
    assert_example("consumer-lag", test_artifacts::CONSUMER_LAG);
}

#[test]
fn state_machine() {
    assert_example("state-machine", test_artifacts::STATE_MACHINE);
}

#[test]
fn idle_alert() {
    assert_example("idle-alert", test_artifacts::IDLE_ALERT);
}

#[test]
fn dedup() {
    assert_example("dedup", test_artifacts::DEDUP);
}

#[test]
fn only_committed_part_files_are_left_in_the_sink_directory() {
    let (job, outcome) = run_example("visit-count", test_artifacts::VISIT_COUNT);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let names: Vec<String> = fs::read_dir(job.path("out"))
        .expect("sink directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["part-0-0.jsonl"]);
}

#[test]
fn stdin_records_are_processed_with_state_per_key() {
    let job = Job::new();
    let mut file = JobFile::named("stdin");
    file.sources.push(Source {
        name: "in".into(),
        kind: "stdin".into(),
        ..Source::default()
    });
    let component = std::path::Path::new(test_artifacts::VISIT_COUNT);
    file.operators
        .push(Operator::keyed("op", component, "in", "/url"));
    file.sinks.push(Sink {
        path: None,
        kind: "stdout".into(),
        ..Sink::file("out", "op", "out")
    });
    let toml = file.toml();
    let input = "{\"url\":\"/a\"}\n{\"url\":\"/b\"}\n\n{\"url\":\"/a\"}\n";
    let outcome = job.run(&toml, input);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(
        outcome.stdout,
        "{\"url\":\"/a\",\"count\":1}\n{\"url\":\"/b\",\"count\":1}\n{\"url\":\"/a\",\"count\":2}\n"
    );
}

#[test]
fn generated_records_reach_every_key_in_order() {
    let job = Job::new();
    let source = "type = \"generator\"\ncount = 10000\nkeys = 100\nkey_field = \"url\"\nkey_prefix = \"/page/\"";
    let outcome = job.run(
        &support::pipeline(source, test_artifacts::VISIT_COUNT, r#"key_by = "/url""#),
        "",
    );
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let lines: Vec<serde_json::Value> = job
        .committed("out")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 10_000);
    // Record i has key i % 100 and is that key's (i / 100 + 1)-th visit.
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["url"], format!("/page/{}", i % 100));
        assert_eq!(line["count"], (i / 100 + 1) as u64);
    }
}
