//! Bad input gets a clear error, the right exit code, and no host panic (the support
//! module fails any test whose host printed a panic).

use std::path::Path;

use crate::support::{self, Job, host, pipeline};

const FILE_SOURCE: &str = "type = \"file\"\npath = \"in.jsonl\"";

fn keyed_visits(job: &Job, input: &str, source_extra: &str) -> support::Outcome {
    job.write("in.jsonl", input);
    let source = format!("{FILE_SOURCE}\n{source_extra}");
    job.run(
        &pipeline(&source, test_artifacts::VISIT_COUNT, r#"key_by = "/url""#),
        "",
    )
}

#[test]
fn a_missing_component_file_is_a_configuration_error() {
    let job = Job::new();
    job.write("in.jsonl", "{}\n");
    let out = job.run(&pipeline(FILE_SOURCE, "nope.wasm", ""), "");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("nope.wasm: component file not found"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_file_that_is_not_wasm_is_refused() {
    let job = Job::new();
    job.write("in.jsonl", "{}\n");
    job.write("op.wasm", "this is text");
    let out = job.run(&pipeline(FILE_SOURCE, "op.wasm", ""), "");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("not a WebAssembly file"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_core_module_without_a_world_is_refused_with_a_hint() {
    let job = Job::new();
    job.write("in.jsonl", "{}\n");
    // The smallest valid core module: magic and version 1, no sections.
    std::fs::write(job.path("op.wasm"), b"\0asm\x01\0\0\0").expect("write module");
    let out = job.run(&pipeline(FILE_SOURCE, "op.wasm", ""), "");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("core Wasm module, not a component, and it carries no WIT world"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("wasm32-wasip2"), "{}", out.stderr);
}

#[test]
fn a_component_of_another_world_says_what_is_missing() {
    let job = Job::new();
    job.write("in.jsonl", "{}\n");
    let out = job.run(
        &pipeline(FILE_SOURCE, test_artifacts::NOT_AN_OPERATOR, ""),
        "",
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("does not implement the world `weir:operator/operator@0.3.0`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("weir:operator/guest"),
        "names the missing export: {}",
        out.stderr
    );
}

#[test]
fn job_file_errors_name_the_file_line_and_key() {
    let job = Job::new();
    let text = pipeline(FILE_SOURCE, "op.wasm", "colour = \"blue\"");
    let out = job.run(&text, "");
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("job.toml"), "{}", out.stderr);
    assert!(out.stderr.contains("line 14"), "{}", out.stderr);
    assert!(
        out.stderr.contains("unknown field `colour`"),
        "{}",
        out.stderr
    );

    // Line numbers are what this checks: the job file is written out as text.
    let unknown_input = r#"[job]
name = "test"

[[source]]
name = "in"
type = "file"
path = "in.jsonl"

[[operator]]
name = "op"
component = "op.wasm"
input = "inn"

[[sink]]
name = "out"
type = "file"
input = "op"
path = "out"
"#;
    let out = job.run(unknown_input, "");
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("job.toml:12: `operator.input`: no source or operator is named `inn`"),
        "{}",
        out.stderr
    );

    let out = job.run(&pipeline(FILE_SOURCE, "op.wasm", "key_by = \"url\""), "");
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("job.toml:14: `operator.key_by`"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("as in `/url`"), "{}", out.stderr);
}

#[test]
fn usage_errors_and_missing_job_files_exit_with_2() {
    assert_eq!(host(&[], "").code, 2);
    assert_eq!(host(&["run"], "").code, 2);
    let out = host(&["run", "/nonexistent/job.toml"], "");
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("cannot read job file /nonexistent/job.toml"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_malformed_line_fails_the_job_naming_file_and_line_and_commits_nothing() {
    let job = Job::new();
    let out = keyed_visits(
        &job,
        "{\"url\":\"/a\"}\n{\"url\":\"/b\"}\n{\"url\": oops\n{\"url\":\"/a\"}\n",
        "",
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("in.jsonl:3: not a JSON document"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("on_bad_record = \"skip\""),
        "says what to do: {}",
        out.stderr
    );
    assert_eq!(job.committed("out"), "", "a failed job commits no output");
}

#[test]
fn skipped_bad_records_are_counted_and_the_rest_is_exact() {
    let job = Job::new();
    let input = "{\"url\":\"/a\"}\nnot json\n{\"path\":\"/x\"}\n{\"url\":\"/a\"}\n";
    let out = keyed_visits(&job, input, "on_bad_record = \"skip\"");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        job.committed("out"),
        "{\"url\":\"/a\",\"count\":1}\n{\"url\":\"/a\",\"count\":2}\n"
    );
    assert!(
        out.stderr.contains("skipped 2 bad records (the first at"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("in.jsonl:2)"), "{}", out.stderr);
}

#[test]
fn a_record_without_its_key_names_the_pointer() {
    let job = Job::new();
    let out = keyed_visits(&job, "{\"path\":\"/a\"}\n", "");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("in.jsonl:1: the record has no value at `key_by` pointer `/url`"),
        "{}",
        out.stderr
    );
}

fn misbehave(job: &Job, input: &str, operator_extra: &str) -> support::Outcome {
    job.write("in.jsonl", input);
    job.run(
        &pipeline(FILE_SOURCE, test_artifacts::MISBEHAVE, operator_extra),
        "",
    )
}

#[test]
fn a_guest_panic_fails_the_job_with_the_operator_and_the_guests_message() {
    let job = Job::new();
    let out = misbehave(
        &job,
        "{}\n{\"do\":\"panic\",\"message\":\"boom on purpose\"}\n",
        "",
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("operator `op` trapped"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("boom on purpose"), "{}", out.stderr);
    // The SDK's panic hook sends the message through the log import, tagged by the host.
    assert!(
        out.stderr.contains("[op] ERROR panicked at"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_timer_without_a_key_or_at_an_absurd_time_traps_with_what_is_wrong() {
    let job = Job::new();
    let out = misbehave(&job, "{\"do\":\"timer\",\"at\":1000}\n", "");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("operator `op` trapped")
            && out
                .stderr
                .contains("a timer needs a key: give the operator `key_by`"),
        "{}",
        out.stderr
    );
    let job = Job::new();
    let out = misbehave(
        &job,
        "{\"k\":\"a\",\"do\":\"timer\",\"at\":1000000000000000000}\n",
        "key_by = \"/k\"",
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("timer timestamp 1000000000000000000 is outside the years 0000 to 9999"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_timer_that_sets_itself_again_while_due_traps_instead_of_firing_without_end() {
    let job = Job::new();
    let out = misbehave(
        &job,
        "{\"k\":\"a\",\"do\":\"rearm\",\"at\":1000}\n",
        "key_by = \"/k\"",
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "on-timer set the key's event-time timer at 1000, not after the timer firing at 1000"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn a_guest_error_names_the_record_that_failed() {
    let job = Job::new();
    let out = misbehave(
        &job,
        "{}\n{\"do\":\"fail\",\"message\":\"cannot do it\"}\n",
        "",
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            r#"operator `op` failed on record {"do":"fail","message":"cannot do it"}: cannot do it"#
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn batch_state_changes_that_do_not_match_their_data_trap_with_what_is_wrong() {
    for (action, wrong) in [
        (
            "bad-changes",
            "value-set-many: the lengths add up to 5 bytes, the data has 2",
        ),
        (
            "bad-removals",
            "value-set-many: `removals` must list indices below 1 in increasing order, it has 1 after nothing",
        ),
        (
            "bad-removal-length",
            "value-set-many: change 0 removes its value but has length 2",
        ),
        (
            "bad-list-changes",
            "list-set-many: the counts add up to 2 elements, there are 1 lengths",
        ),
    ] {
        let job = Job::new();
        let out = misbehave(
            &job,
            &format!("{{\"k\":\"a\"}}\n{{\"k\":\"a\",\"do\":\"{action}\"}}\n"),
            "key_by = \"/k\"\n[operator.config]\ncount = true",
        );
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(
            out.stderr
                .contains(&format!("operator `op` trapped: {wrong}")),
            "{}",
            out.stderr
        );
        assert_eq!(job.committed("out"), "", "a failed job commits nothing");
    }
}

#[test]
fn keyed_state_without_key_by_traps_with_a_hint() {
    let job = Job::new();
    let out = misbehave(&job, "{}\n", "[operator.config]\ncount = true");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("keyed state needs a key: give the operator `key_by`"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_guest_past_the_sdk_cannot_break_the_broadcast_rules() {
    use crate::support::job_file::{Input, JobFile, Operator, Sink, Source};
    for (input, action, wrong) in [
        (
            "events",
            "raw-broadcast-put",
            "broadcast state `flags` can only change while processing a record of a broadcast input",
        ),
        (
            "control",
            "raw-keyed",
            "keyed state is out of reach while processing a record of broadcast input `control`",
        ),
        (
            "events",
            "raw-select-keys",
            "select-keys is for batches of a broadcast input",
        ),
    ] {
        let job = Job::new();
        let record = format!("{{\"k\":\"a\",\"do\":\"{action}\"}}\n");
        let (events, control) = match input {
            "events" => (record.as_str(), ""),
            _ => ("", record.as_str()),
        };
        let mut file = JobFile::named("rules");
        for (name, lines) in [("events", events), ("control", control)] {
            let path = job.write(&format!("{name}.jsonl"), lines);
            file.sources
                .push(Source::file(name, path.to_str().expect("UTF-8")));
        }
        file.operators.push(Operator {
            input: vec!["events".into(), Input::broadcast("control")],
            ..Operator::keyed("op", Path::new(test_artifacts::MISBEHAVE), "events", "/k")
        });
        file.sinks.push(Sink::file(
            "out",
            "op",
            job.path("out").to_str().expect("UTF-8"),
        ));
        let out = host(&["run", job.save(&file).to_str().expect("UTF-8")], "");
        assert_eq!(out.code, 1, "{action}: {}", out.stderr);
        assert!(
            out.stderr
                .contains(&format!("operator `op` trapped: {wrong}")),
            "{action}: {}",
            out.stderr
        );
    }
}
