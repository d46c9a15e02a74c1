//! Every state kind and access method behaves the same in the native harness and in
//! the host: the same operator, the same input, the same outputs.

use all_states::AllStates;
use guest_sdk::testing::Harness;
use serde_json::{Value, json};

use crate::support::{Job, pipeline};

/// Records for 7 keys with values that hit every branch of the operator (clears,
/// trims, removals, put-all, negative map keys).
fn input() -> Vec<Value> {
    (0..400i64)
        .map(|i| json!({"key": format!("k{}", i % 7), "v": (i * 37 % 61) - 20}))
        .collect()
}

#[test]
fn the_host_and_the_harness_agree_on_every_state_kind() {
    let records = input();

    let mut harness = Harness::<AllStates>::new().unwrap();
    let mut expected: Vec<Value> = Vec::new();
    for chunk in records.chunks(50) {
        let batch: Vec<(&str, Value)> = chunk
            .iter()
            .map(|r| (r["key"].as_str().unwrap(), r.clone()))
            .collect();
        expected.extend(harness.push_batch(&batch).unwrap());
    }

    let job = Job::new();
    let lines: String = records.iter().map(|r| format!("{r}\n")).collect();
    job.write("in.jsonl", &lines);
    let toml = pipeline(
        "type = \"file\"\npath = \"in.jsonl\"",
        test_artifacts::ALL_STATES,
        "key_by = \"/key\"",
    );
    let outcome = job.run(&toml, "");
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    // The harness gives records made-up times; the file source gives none.
    let untimed = |mut output: Value| {
        output.as_object_mut().unwrap().remove("time");
        output
    };
    let expected: Vec<Value> = expected.into_iter().map(untimed).collect();
    let actual: Vec<Value> = job
        .committed("out")
        .lines()
        .map(|l| untimed(serde_json::from_str(l).unwrap()))
        .collect();
    assert_eq!(actual.len(), records.len());
    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert_eq!(a, e, "record {i}: host and harness differ");
    }
    // The input does exercise the interesting cases.
    assert!(
        expected.iter().any(|o| o["seen"].is_null()),
        "some key was cleared"
    );
    assert!(
        expected.iter().any(|o| o["keys"][0] == -100),
        "put_all with a negative map key"
    );
    assert!(
        expected
            .iter()
            .any(|o| o["last"].as_array().unwrap().len() == 5),
        "trim then add_all"
    );
}

/// Numbers as f64, so that JavaScript's `4` and Rust's `4.0` compare equal.
fn numbers_as_floats(value: Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_as_floats).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, numbers_as_floats(v)))
                .collect(),
        ),
        other => other,
    }
}

/// The outputs of `component` over `records` from a file (records without a time).
fn outputs_of(component: &str, records: &[Value]) -> Vec<Value> {
    let job = Job::new();
    let lines: String = records.iter().map(|r| format!("{r}\n")).collect();
    job.write("in.jsonl", &lines);
    run(&job, component, "type = \"file\"\npath = \"in.jsonl\"")
}

/// The outputs of `component` over 400 generated records of 7 keys, record `i` at time
/// `i`.
fn generated_outputs_of(component: &str) -> Vec<Value> {
    let source = "type = \"generator\"\ncount = 400\nkeys = 7";
    run(&Job::new(), component, source)
}

fn run(job: &Job, component: &str, source: &str) -> Vec<Value> {
    let toml = pipeline(source, component, "key_by = \"/key\"");
    let outcome = job.run(&toml, "");
    assert_eq!(outcome.code, 0, "{component}: {}", outcome.stderr);
    job.committed("out")
        .lines()
        .map(|l| numbers_as_floats(serde_json::from_str(l).expect("JSON output")))
        .collect()
}

/// The Python and JavaScript SDKs' value, list, map, reducing and aggregating state
/// behave as the Rust SDK's: the same operator in each language, the same outputs.
#[test]
fn every_state_kind_behaves_the_same_in_python_and_javascript() {
    let records = input();
    let rust = outputs_of(test_artifacts::ALL_STATES, &records);
    let rust_generated = generated_outputs_of(test_artifacts::ALL_STATES);
    assert_eq!(rust.len(), records.len());
    assert_times(&rust, &rust_generated);
    for component in [
        test_artifacts::ALL_STATES_PYTHON,
        test_artifacts::ALL_STATES_JS,
    ] {
        let other = outputs_of(component, &records);
        assert_eq!(other.len(), rust.len(), "{component}");
        for (i, (a, e)) in other.iter().zip(&rust).enumerate() {
            assert_eq!(a, e, "{component}: record {i} differs from the Rust SDK's");
        }
        assert_same(&generated_outputs_of(component), &rust_generated, component);
    }
}

/// Outputs of a file (no times) and of the generator (record `i` at time `i`) carry the
/// times their operator saw.
fn assert_times(from_file: &[Value], generated: &[Value]) {
    assert!(
        from_file.iter().all(|o| o["time"].is_null()),
        "a file's records have no time"
    );
    let times: Vec<Value> = generated.iter().map(|o| o["time"].clone()).collect();
    assert_eq!(
        times,
        (0..400).map(|t| json!(f64::from(t))).collect::<Vec<_>>()
    );
}

fn assert_same(actual: &[Value], expected: &[Value], component: &str) {
    assert_eq!(actual.len(), expected.len(), "{component}");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_eq!(a, e, "{component}: generated record {i}");
    }
}

/// The C SDK's list and map state: the same operator in C and in Python (whose SDK the
/// test above holds to Rust's), the same outputs.
#[test]
fn list_and_map_state_behave_the_same_in_c() {
    let records = input();
    let python = outputs_of(test_artifacts::LIST_MAP_PYTHON, &records);
    let c = outputs_of(test_artifacts::LIST_MAP_C, &records);
    assert_eq!(python.len(), records.len());
    for (i, (a, e)) in c.iter().zip(&python).enumerate() {
        assert_eq!(a, e, "record {i}: C differs from Python");
    }
    let python_generated = generated_outputs_of(test_artifacts::LIST_MAP_PYTHON);
    assert_times(&python, &python_generated);
    assert_same(
        &generated_outputs_of(test_artifacts::LIST_MAP_C),
        &python_generated,
        "C",
    );
    assert!(python.iter().any(|o| o["residue"].is_null()), "a removal");
    assert!(python.iter().any(|o| o["has_3"] == true), "a put");
}
