//! Operator state across rescaling: split list state keeps every element exactly once,
//! union list state reaches every subtask, from savepoints and from checkpoints after
//! `kill -9`, on both backends; `host state` lists it per subtask.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;

/// The sequence job with the operator-state guest in place of the sequence checker (it
/// passes records on as `{key, seq}` too).
fn operator_state_job(count: u64, state: State) -> JobFile {
    let mut file = checkpointed(count, 2);
    file.operators[0].component = test_artifacts::OPERATOR_STATE.into();
    file.state = Some(state);
    file
}

/// Per subtask, per list state, the elements `host state` shows for the checkpoint or
/// savepoint in `dir`.
fn operator_lists(dir: &Path) -> Vec<BTreeMap<String, Vec<String>>> {
    let out = host(&["state", dir.to_str().expect("UTF-8 path")], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut subtasks: BTreeMap<usize, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut current: Option<(usize, String)> = None;
    for line in out.stdout.lines() {
        if let Some(rest) = line.strip_prefix("  subtask ")
            && let Some((subtask, list)) = rest.split_once(": list `")
        {
            let name = list.split('`').next().expect("a list name").to_string();
            let subtask: usize = subtask.parse().expect("a subtask number");
            subtasks
                .entry(subtask)
                .or_default()
                .entry(name.clone())
                .or_default();
            current = Some((subtask, name));
        } else if let (Some(element), Some((subtask, name))) = (line.strip_prefix("    "), &current)
        {
            let lists = subtasks.get_mut(subtask).expect("seen");
            lists.get_mut(name).expect("seen").push(element.to_string());
        } else {
            current = None;
        }
    }
    subtasks.into_values().collect()
}

/// Checks the operator state of the checkpoint in `dir`, taken at `parallelism`, of a job
/// first started at `first` subtasks: the first start's tokens once each over all
/// subtasks; and every first-start subtask in every subtask's union list if the run was
/// `restored`, else each subtask's own.
fn check_operator_state(dir: &Path, parallelism: usize, first: u32, restored: bool, case: &str) {
    let lists = operator_lists(dir);
    assert_eq!(lists.len(), parallelism, "{case}: one entry per subtask");
    let mut tokens: Vec<String> = lists
        .iter()
        .flat_map(|l| l.get("tokens").cloned().unwrap_or_default())
        .collect();
    tokens.sort();
    let mut want: Vec<String> = (0..first)
        .flat_map(|s| (0..10).map(move |n| format!("\"{s}-{n}\"")))
        .collect();
    want.sort();
    assert_eq!(
        tokens, want,
        "{case}: split state, every token exactly once"
    );
    let all: Vec<String> = (0..first).map(|s| s.to_string()).collect();
    for (subtask, list) in lists.iter().enumerate() {
        let want = match restored {
            true => all.clone(),
            false => vec![subtask.to_string()],
        };
        assert_eq!(
            list.get("started"),
            Some(&want),
            "{case}: union state on subtask {subtask}"
        );
    }
}

#[test]
fn split_and_union_operator_state_rescale_through_savepoints_on_both_backends() {
    let count = 800_000;
    for (name, state) in [
        ("memory", State::default_backend()),
        ("rocksdb", State::rocksdb()),
    ] {
        let job = Job::new();
        job.save(&operator_state_job(count, state));
        // First start at 2; then 3, 2, 4 and 1 (to the end), each from the last savepoint.
        let mut savepoint = stop_with_savepoint(&job, &["-p", "2"]);
        check_operator_state(Path::new(&savepoint), 2, 2, false, &format!("{name} 2"));
        for p in ["3", "2", "4"] {
            savepoint = stop_with_savepoint(&job, &["--from-savepoint", &savepoint, "-p", p]);
            let case = format!("{name} → {p}");
            let p = p.parse().expect("a number");
            check_operator_state(Path::new(&savepoint), p, 2, true, &case);
        }
        resume_exactly(&job, count, &["--from-savepoint", &savepoint, "-p", "1"]);
    }
}

#[test]
fn operator_state_rescales_from_checkpoints_after_kill_9() {
    let count = 800_000;
    let job = Job::new();
    job.save(&operator_state_job(count, State::rocksdb()));
    // First start at 3; killed, then resumed at 2 and at 1 from the latest checkpoint.
    for p in [3, 2, 1] {
        let mut run = Running::start(&job.path("job.toml"), &["-p", &p.to_string()]);
        run.wait_for_checkpoints(2);
        run.kill();
        let case = format!("killed at {p}");
        check_operator_state(&latest_checkpoint(&job), p, 3, p != 3, &case);
    }
    resume_exactly(&job, count, &["-p", "4"]);
}
