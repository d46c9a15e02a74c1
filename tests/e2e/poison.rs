//! Poison records: a record that fails its operator again after a restore fails the job
//! with its source and position, or is skipped, or goes to the dead letters exactly once;
//! every other record's output stays exact.

use crate::support::{Job, pipeline};

const RECORDS: usize = 300;
/// The line of `in.jsonl` that misbehaves.
const POISON_LINE: usize = 123;

/// `RECORDS` records over 7 keys; line `POISON_LINE` does `action` instead.
fn input(action: &str) -> (String, Vec<String>) {
    input_poisoned_at(action, &[POISON_LINE])
}

/// `RECORDS` records over 7 keys; the lines `poisoned` do `action` instead.
fn input_poisoned_at(action: &str, poisoned: &[usize]) -> (String, Vec<String>) {
    let mut lines = Vec::new();
    let mut good = Vec::new();
    for n in 1..=RECORDS {
        if poisoned.contains(&n) {
            lines.push(format!(
                "{{\"k\":\"k{}\",\"n\":{n},\"do\":\"{action}\",\"message\":\"poisoned\"}}",
                n % 7
            ));
        } else {
            let line = format!("{{\"k\":\"k{}\",\"n\":{n}}}", n % 7);
            good.push(line.clone());
            lines.push(line);
        }
    }
    good.sort();
    (lines.join("\n") + "\n", good)
}

fn run(job: &Job, action: &str, on_poison: &str) -> (crate::support::Outcome, Vec<String>) {
    run_input(job, input(action), on_poison)
}

fn run_input(
    job: &Job,
    (text, good): (String, Vec<String>),
    on_poison: &str,
) -> (crate::support::Outcome, Vec<String>) {
    job.write("in.jsonl", &text);
    let operator = format!(
        "key_by = \"/k\"\n{on_poison}\n[operator.config]\ncount = true\n\n\
         [restart]\nstrategy = \"fixed-delay\"\nattempts = 5\ndelay_ms = 0\n\n\
         [checkpoint]\ninterval_ms = 20\ndir = \"checkpoints\""
    );
    let toml = pipeline(
        "type = \"file\"\npath = \"in.jsonl\"",
        test_artifacts::MISBEHAVE,
        &operator,
    );
    (job.run(&toml, ""), good)
}

fn committed_sorted(job: &Job) -> Vec<String> {
    let mut lines: Vec<String> = job.committed("out").lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn by_default_a_poison_record_fails_the_job_naming_its_source_and_line() {
    for action in ["panic", "fail"] {
        let job = Job::new();
        let (out, _) = run(&job, action, "");
        assert_eq!(out.code, 1, "{action}: {}", out.stderr);
        assert!(
            out.stderr.contains("poison record")
                && out.stderr.contains(&format!("in.jsonl line {POISON_LINE}"))
                && out.stderr.contains(&format!("\"n\":{POISON_LINE}"))
                && out.stderr.contains("on_poison"),
            "{action}: {}",
            out.stderr
        );
    }
}

#[test]
fn a_skipped_poison_record_leaves_every_other_output_exact() {
    for action in ["panic", "fail"] {
        let job = Job::new();
        let (out, good) = run(&job, action, "on_poison = \"skip\"");
        assert_eq!(out.code, 0, "{action}: {}", out.stderr);
        assert_eq!(committed_sorted(&job), good, "{action}");
        assert!(
            out.stderr.contains("1 poison record kept from it"),
            "{action}: {}",
            out.stderr
        );
    }
}

#[test]
fn a_poison_record_goes_to_the_dead_letters_exactly_once() {
    for action in ["panic", "fail"] {
        let job = Job::new();
        let (out, good) = run(
            &job,
            action,
            "on_poison = \"dead-letter\"\ndead_letter = \"dead-letters\"",
        );
        assert_eq!(out.code, 0, "{action}: {}", out.stderr);
        assert_eq!(committed_sorted(&job), good, "{action}");
        let letters =
            std::fs::read_to_string(job.path("dead-letters/op.jsonl")).expect("the dead letters");
        let entries: Vec<serde_json::Value> = letters
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON entry"))
            .collect();
        assert_eq!(entries.len(), 1, "{action}: {letters}");
        let entry = &entries[0];
        assert_eq!(entry["operator"], "op");
        assert_eq!(entry["record"]["n"], POISON_LINE as u64);
        assert!(
            entry["origin"]
                .as_str()
                .is_some_and(|o| o.ends_with(&format!("in.jsonl line {POISON_LINE}"))),
            "{entry}"
        );
        assert!(
            entry["error"]
                .as_str()
                .is_some_and(|e| e.contains("poisoned")),
            "{entry}"
        );
        assert!(entry["time_ms"].as_u64().is_some_and(|t| t > 0), "{entry}");
    }
}

#[test]
fn on_poison_settings_are_checked() {
    let job = Job::new();
    let (out, _) = run(&job, "none", "on_poison = \"dead-letter\"");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("needs `dead_letter`"), "{}", out.stderr);
    let (out, _) = run(&job, "none", "on_poison = \"ignore\"");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("unknown `ignore`"), "{}", out.stderr);
}

/// The second poison record's restarts replay the first from the start: its dead letter
/// is still written once.
#[test]
fn restarts_after_a_dead_letter_do_not_write_it_again() {
    let job = Job::new();
    let (out, good) = run_input(
        &job,
        input_poisoned_at("panic", &[40, 250]),
        "on_poison = \"dead-letter\"\ndead_letter = \"dead-letters\"",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(committed_sorted(&job), good);
    let letters =
        std::fs::read_to_string(job.path("dead-letters/op.jsonl")).expect("the dead letters");
    let lines: Vec<u64> = letters
        .lines()
        .map(|l| {
            let entry: serde_json::Value = serde_json::from_str(l).expect("JSON");
            entry["record"]["n"].as_u64().expect("n")
        })
        .collect();
    assert_eq!(lines, [40, 250], "{letters}");
}
