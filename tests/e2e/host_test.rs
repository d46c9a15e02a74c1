//! `host test` and its Rust API, `host::testing`: the real components of every language
//! against the examples' expected outputs, with snapshot and restore in the loop.

use std::path::Path;

use host::state::snapshot::SlotData;
use host::testing::{TestOperator, TestOptions};

use crate::support::{self, Job, example_dir, host};

fn host_test(component: &str, example: &str, key_by: &str, extra: &[&str]) -> support::Outcome {
    let dir = example_dir(example);
    let input = data_files(&dir)
        .into_iter()
        .find(|p| !p.ends_with("expected.jsonl"))
        .expect("the example has an input file");
    let expected = dir.join("data/expected.jsonl");
    let mut args = vec![
        "test",
        component,
        "--input",
        input.to_str().expect("UTF-8 path"),
        "--expect",
        expected.to_str().expect("UTF-8 path"),
        "--key-by",
        key_by,
    ];
    args.extend_from_slice(extra);
    host(&args, "")
}

fn data_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("data"))
        .expect("data folder")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

#[test]
fn every_language_passes_its_examples_with_a_restore_every_few_records() {
    let cases = [
        ("visit-count", "/url", test_artifacts::VISIT_COUNT),
        ("visit-count", "/url", test_artifacts::VISIT_COUNT_PYTHON),
        ("visit-count", "/url", test_artifacts::VISIT_COUNT_JS),
        ("visit-count", "/url", test_artifacts::VISIT_COUNT_C),
        ("state-machine", "/address", test_artifacts::STATE_MACHINE),
        (
            "state-machine",
            "/address",
            test_artifacts::STATE_MACHINE_PYTHON,
        ),
        (
            "state-machine",
            "/address",
            test_artifacts::STATE_MACHINE_JS,
        ),
        ("state-machine", "/address", test_artifacts::STATE_MACHINE_C),
    ];
    for (example, key_by, component) in cases {
        let out = host_test(component, example, key_by, &["--restore-every", "3"]);
        assert_eq!(out.code, 0, "{component}: {}", out.stderr);
        assert!(
            out.stdout.contains("passed") && out.stdout.contains("restores"),
            "{component}: {}",
            out.stdout
        );
        // Keyed state follows its key groups into 3 instances and back into one.
        let rescaled = ["--restore-every", "3", "--restore-parallelism", "3"];
        let out = host_test(component, example, key_by, &rescaled);
        assert_eq!(out.code, 0, "{component} rescaled: {}", out.stderr);
        assert!(
            out.stdout.contains("alternately into 1 and 3"),
            "{}",
            out.stdout
        );
    }
}

/// Operator state in Python and C: union list state restored into 3 instances and back
/// gives every instance the first start's subtasks (and only those: an instance that lost
/// it would deal itself new tokens and report its own subtask).
#[test]
fn operator_state_survives_restores_into_other_parallelisms_in_python_and_c() {
    let job = Job::new();
    let mut input = String::new();
    let mut expected = String::new();
    for i in 0..24 {
        let record = format!("{{\"key\":\"k{}\",\"seq\":{i}}}", i % 5);
        input += &format!("{record}\n");
        expected += &format!("{},\"started\":[0]}}\n", &record[..record.len() - 1]);
    }
    let input = job.write("in.jsonl", &input);
    let expected = job.write("expected.jsonl", &expected);
    for component in [
        test_artifacts::OPERATOR_STATE_PYTHON,
        test_artifacts::OPERATOR_STATE_C,
    ] {
        let out = host(
            &[
                "test",
                component,
                "--input",
                input.to_str().expect("UTF-8 path"),
                "--expect",
                expected.to_str().expect("UTF-8 path"),
                "--key-by",
                "/key",
                "--restore-every",
                "5",
                "--restore-parallelism",
                "3",
            ],
            "",
        );
        assert_eq!(out.code, 0, "{component}: {}", out.stderr);
        assert!(out.stdout.contains("4 restores"), "{}", out.stdout);
    }
}

#[test]
fn an_operator_with_hidden_state_passes_straight_but_fails_once_restored() {
    let component = test_artifacts::HIDDEN_STATE;
    let straight = host_test(component, "visit-count", "/url", &[]);
    assert_eq!(straight.code, 0, "{}", straight.stderr);
    let restored = host_test(component, "visit-count", "/url", &["--restore-every", "4"]);
    assert_eq!(restored.code, 1, "{}", restored.stderr);
    assert!(
        restored.stderr.contains("outside Weir's managed state"),
        "{}",
        restored.stderr
    );
    // visit-count's fifth output is the first a fresh count gets wrong: /api/a's third visit.
    assert!(
        restored
            .stderr
            .contains("first at output 5, after the restore at record 4"),
        "{}",
        restored.stderr
    );
    assert!(
        restored
            .stderr
            .contains("-     5  {\"url\":\"/api/a\",\"count\":3}")
            && restored
                .stderr
                .contains("+     5  {\"url\":\"/api/a\",\"count\":1}"),
        "the diff shows expected and actual: {}",
        restored.stderr
    );
}

#[test]
fn wrong_outputs_fail_with_a_diff() {
    let dir = example_dir("state-machine");
    let expected = std::fs::read_to_string(dir.join("data/expected.jsonl")).expect("expected");
    let job = Job::new();
    let wrong = job.write("wrong.jsonl", &expected.replacen("\"W\"", "\"Y\"", 1));
    let out = host(
        &[
            "test",
            test_artifacts::STATE_MACHINE_JS,
            "--input",
            dir.join("data/events.jsonl").to_str().expect("UTF-8 path"),
            "--expect",
            wrong.to_str().expect("UTF-8 path"),
            "--key-by",
            "/address",
        ],
        "",
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("the outputs differ from"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("-     2  {\"address\":\"10.0.0.4\",\"state\":\"Y\",\"event\":\"f\"}")
            && out
                .stderr
                .contains("+     2  {\"address\":\"10.0.0.4\",\"state\":\"W\",\"event\":\"f\"}"),
        "{}",
        out.stderr
    );
}

/// An operator that fails on a record fails the test with its message and the record.
#[test]
fn a_failing_record_fails_the_test_with_the_operators_message() {
    let out = host_test(
        test_artifacts::STATE_MACHINE_PYTHON,
        "visit-count",
        "/url",
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("missing field 'address'") && out.stderr.contains("\"/api/a\""),
        "{}",
        out.stderr
    );
}

fn visit(url: &str) -> String {
    format!("{{\"url\":\"{url}\"}}")
}

/// The Rust API: push records, inspect state, snapshot, and restore into a fresh
/// instance, which may even be the same operator written in another language: state is
/// JSON in every SDK.
#[test]
fn state_snapshotted_from_python_restores_into_javascript_and_c() {
    let options = TestOptions {
        key_by: Some("/url".into()),
        ..TestOptions::default()
    };
    let load = |component: &str| {
        TestOperator::load(Path::new(component), options.clone()).expect("component loads")
    };
    let mut python = load(test_artifacts::VISIT_COUNT_PYTHON);
    python.push(&visit("/a")).expect("push");
    python.push(&visit("/a")).expect("push");
    assert_eq!(
        python.state("visits", "/a").expect("state"),
        Some(SlotData::Value(b"2".to_vec()))
    );
    assert_eq!(python.state("visits", "/b").expect("state"), None);
    let snapshot = python.snapshot().expect("snapshot");

    for other in [
        test_artifacts::VISIT_COUNT_JS,
        test_artifacts::VISIT_COUNT_C,
    ] {
        let mut restored = load(other).restored(&snapshot).expect("restore");
        assert_eq!(
            restored.push(&visit("/a")).expect("push"),
            ["{\"url\":\"/a\",\"count\":3}"],
            "{other}"
        );
        assert_eq!(
            restored.push_keyed("/b", &visit("/b")).expect("push keyed"),
            ["{\"url\":\"/b\",\"count\":1}"]
        );
    }
    // The snapshot was a copy: the Python instance goes on by itself.
    assert_eq!(
        python.push(&visit("/a")).expect("push"),
        ["{\"url\":\"/a\",\"count\":3}"]
    );
}

/// `--config` reaches the operator's `open`, and must be a JSON object.
#[test]
fn the_config_reaches_open() {
    let job = Job::new();
    let input = job.write("in.jsonl", "{\"key\":\"a\",\"seq\":0}\n");
    let expect = job.write("out.jsonl", "");
    let run = |config: &str| {
        host(
            &[
                "test",
                test_artifacts::BENCH_GUEST,
                "--input",
                input.to_str().expect("UTF-8 path"),
                "--expect",
                expect.to_str().expect("UTF-8 path"),
                "--key-by",
                "/key",
                "--config",
                config,
            ],
            "",
        )
    };
    assert_eq!(run("{\"workload\":\"count\"}").code, 0);
    let unknown = run("{\"workload\":\"nope\"}");
    assert_eq!(unknown.code, 1, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("unknown workload `nope`"),
        "{}",
        unknown.stderr
    );
    let not_an_object = run("[1]");
    assert!(
        not_an_object.stderr.contains("must be a JSON object"),
        "{}",
        not_an_object.stderr
    );
}

#[test]
fn host_test_moves_event_time_with_watermark_lines_and_restores_pending_timers() {
    let job = Job::new();
    let input = job.write(
        "in.jsonl",
        // The first watermark passes B's deadline before B's next event: without it,
        // that event would delete B's first timer and B would alert once.
        r##"{"address":"A","type":"a","ts":1000}
{"address":"B","type":"c","ts":2000}
#watermark 33000
{"address":"B","type":"b","ts":34000}
#watermark 40000
{"address":"B","type":"e","ts":45000}
#processing-time 5000
"##,
    );
    let expected = job.write(
        "expected.jsonl",
        r#"{"alert":"idle","address":"A","state":"W","last_event":1000}
{"alert":"idle","address":"B","state":"X","last_event":2000}
{"alert":"idle","address":"B","state":"Z","last_event":45000}
"#,
    );
    let run = |extra: &[&str]| {
        let mut args = vec![
            "test",
            test_artifacts::IDLE_ALERT,
            "--input",
            input.to_str().expect("UTF-8 path"),
            "--expect",
            expected.to_str().expect("UTF-8 path"),
            "--key-by",
            "/address",
        ];
        args.extend_from_slice(extra);
        host(&args, "")
    };
    for restores in [
        &[][..],
        &["--restore-every", "1"],
        &["--restore-every", "1", "--restore-parallelism", "3"],
    ] {
        let mut extra = vec!["--event-time", "/ts"];
        extra.extend_from_slice(restores);
        let out = run(&extra);
        assert_eq!(out.code, 0, "{restores:?}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains("4 records, 3 outputs as expected"),
            "{}",
            out.stdout
        );
    }
    // Without event time the records have none, which the operator refuses.
    let out = run(&[]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stderr.contains("has no event time"), "{}", out.stderr);
}

#[test]
fn a_restored_processing_time_timer_that_is_overdue_fires_at_once() {
    let options = TestOptions {
        key_by: Some("/key".into()),
        config_json: r#"{"processing_timer_after_ms": 50}"#.into(),
        ..TestOptions::default()
    };
    let mut op = TestOperator::load(Path::new(test_artifacts::SEQUENCE_CHECK), options).unwrap();
    assert!(op.advance_processing_time(1_000).unwrap().is_empty());
    op.push(r#"{"key":"a","seq":0}"#).unwrap();
    assert!(
        op.advance_processing_time(1_049).unwrap().is_empty(),
        "not yet due"
    );
    let mut restored = op.restored(&op.snapshot().unwrap()).unwrap();
    // The job was down past the timer's time: the first clock reading fires it.
    assert_eq!(
        restored.advance_processing_time(5_000).unwrap(),
        [r#"{"key":"a","late_ms":3950,"processing_timer":1050}"#]
    );
    assert!(restored.close().unwrap().is_empty(), "it fired once");
}

#[test]
fn host_test_checks_what_goes_to_a_side_output() {
    let job = Job::new();
    let input = job.write(
        "in.jsonl",
        r##"{"url":"/a","ts":1000}
{"url":"/a","ts":59000}
#watermark 59999
{"url":"/a","ts":30000}
#watermark 70000
{"url":"/a","ts":30001}
"##,
    );
    let expected = job.write(
        "expected.jsonl",
        r#"{"url":"/a","start":0,"end":60000,"visits":2,"update":false}
{"url":"/a","start":0,"end":60000,"visits":3,"update":true}
"#,
    );
    let run = |late: &str, extra: &[&str]| {
        let late = job.write("late.jsonl", late);
        let side = format!("late={}", late.display());
        let mut args = vec![
            "test",
            test_artifacts::WINDOWED_VISIT_COUNT,
            "--input",
            input.to_str().expect("UTF-8 path"),
            "--expect",
            expected.to_str().expect("UTF-8 path"),
            "--key-by",
            "/url",
            "--event-time",
            "/ts",
            "--expect-side",
            &side,
        ];
        args.extend_from_slice(extra);
        host(&args, "")
    };
    let late = "{\"url\":\"/a\",\"ts\":30001}\n";
    for restores in [
        &[][..],
        &["--restore-every", "1", "--restore-parallelism", "2"],
    ] {
        let out = run(late, restores);
        assert_eq!(out.code, 0, "{restores:?}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains("1 to side output `late` as expected"),
            "{}",
            out.stdout
        );
    }
    let out = run("", &[]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr.contains("side output `late` differs"),
        "{}",
        out.stderr
    );
}
