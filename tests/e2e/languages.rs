//! The examples written in Python, JavaScript and C, built from source by the test build,
//! produce byte for byte the output of the Rust versions: the same expected files serve
//! all four languages.

use crate::examples::assert_example;
use crate::support::{Job, pipeline};

#[test]
fn visit_count_in_python() {
    assert_example("visit-count", test_artifacts::VISIT_COUNT_PYTHON);
}

#[test]
fn visit_count_in_javascript() {
    assert_example("visit-count", test_artifacts::VISIT_COUNT_JS);
}

#[test]
fn visit_count_in_c() {
    assert_example("visit-count", test_artifacts::VISIT_COUNT_C);
}

#[test]
fn state_machine_in_python() {
    assert_example("state-machine", test_artifacts::STATE_MACHINE_PYTHON);
}

#[test]
fn state_machine_in_javascript() {
    assert_example("state-machine", test_artifacts::STATE_MACHINE_JS);
}

#[test]
fn state_machine_in_c() {
    assert_example("state-machine", test_artifacts::STATE_MACHINE_C);
}

#[test]
fn idle_alert_in_python() {
    assert_example("idle-alert", test_artifacts::IDLE_ALERT_PYTHON);
}

#[test]
fn idle_alert_in_javascript() {
    assert_example("idle-alert", test_artifacts::IDLE_ALERT_JS);
}

#[test]
fn idle_alert_in_c() {
    assert_example("idle-alert", test_artifacts::IDLE_ALERT_C);
}

/// A record an operator cannot handle fails the job with the operator's own message and
/// the record, in every language.
#[test]
fn a_bad_record_is_reported_with_the_guests_message_in_every_language() {
    for component in [
        test_artifacts::VISIT_COUNT_PYTHON,
        test_artifacts::VISIT_COUNT_JS,
        test_artifacts::VISIT_COUNT_C,
    ] {
        let job = Job::new();
        job.write(
            "in.jsonl",
            "{\"user\":\"x\",\"url\":\"/a\"}\n{\"user\":\"y\",\"path\":\"/b\"}\n",
        );
        let out = job.run(
            &pipeline(
                "type = \"file\"\npath = \"in.jsonl\"",
                component,
                "key_by = \"/user\"",
            ),
            "",
        );
        assert_eq!(out.code, 1, "{component}: {}", out.stderr);
        assert!(out.stderr.contains("url"), "{component}: {}", out.stderr);
        assert!(
            out.stderr.contains("{\"user\":\"y\",\"path\":\"/b\"}"),
            "{component}: the record is shown: {}",
            out.stderr
        );
    }
}
