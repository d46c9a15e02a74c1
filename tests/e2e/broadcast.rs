//! Two-input operators with a broadcast input: the fraud-rules example in all four
//! languages, on inputs whose interleaving no one controls; broadcast state that is the same
//! on every subtask after `kill -9` and a resume at another parallelism; alerts equal to a
//! failure-free run's.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::support::job_file::{Checkpoint, Input, JobFile, Operator, Sink, Source, State};
use crate::support::process::Running;
use crate::support::{Job, example_dir, host};

/// Transactions and rules for `cards` cards over four categories, each with `versions`
/// rule versions; a transaction's version grows along the stream. Deterministic.
fn inputs(job: &Job, transactions: u64, cards: u64, versions: u64) {
    const CATEGORIES: [&str; 4] = ["food", "fuel", "travel", "games"];
    let mut next = 0x2545_f491_4f6c_dd1d_u64;
    let mut random = move |n: u64| {
        next ^= next << 13;
        next ^= next >> 7;
        next ^= next << 17;
        next % n
    };
    let mut txs = String::new();
    for i in 0..transactions {
        let category = CATEGORIES[random(4) as usize];
        let _ = writeln!(
            txs,
            r#"{{"card":"card-{}","category":"{category}","amount":{},"rule":{}}}"#,
            random(cards),
            100 * (1 + random(50)),
            1 + i * versions / transactions,
        );
    }
    job.write("transactions.jsonl", &txs);
    let mut rules = String::new();
    for version in 1..=versions {
        for category in CATEGORIES {
            let limit = 100 * (20 + random(200));
            let _ = writeln!(
                rules,
                r#"{{"category":"{category}","version":{version},"limit":{limit}}}"#
            );
        }
    }
    job.write("rules.jsonl", &rules);
}

/// The fraud-rules job over `inputs`' files: rules trickle in while transactions flow,
/// checkpointed into `checkpoints/`, alerts into `out/`.
fn fraud_job(job: &Job, component: &str, rules_per_second: u64) -> JobFile {
    let path = |name: &str| job.path(name).display().to_string();
    let mut file = JobFile::named("fraud-rules");
    file.sources
        .push(Source::file("transactions", &path("transactions.jsonl")));
    file.sources.push(Source {
        records_per_second: Some(rules_per_second),
        ..Source::file("rules", &path("rules.jsonl"))
    });
    file.operators.push(Operator {
        input: vec!["transactions".into(), Input::broadcast("rules")],
        parallelism: Some(2),
        ..Operator::keyed("fraud", Path::new(component), "transactions", "/card")
    });
    file.sinks.push(Sink::file("alerts", "fraud", &path("out")));
    file.checkpoint = Some(Checkpoint::every(50));
    file.state = Some(State::rocksdb());
    file
}

fn sorted(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// Per subtask, the broadcast state `host state` shows for the checkpoint in `dir`:
/// the entry lines under each `broadcast` heading.
fn broadcast_states(dir: &Path) -> BTreeMap<usize, Vec<String>> {
    let out = host(&["state", dir.to_str().expect("UTF-8 path")], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut subtasks: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in out.stdout.lines() {
        if let Some(rest) = line.strip_prefix("  subtask ")
            && let Some((subtask, _)) = rest.split_once(": broadcast `rules`")
        {
            let subtask = subtask.parse().expect("a subtask number");
            subtasks.entry(subtask).or_default();
            current = Some(subtask);
        } else if let (Some(entry), Some(subtask)) = (line.strip_prefix("    "), current) {
            subtasks
                .get_mut(&subtask)
                .expect("seen")
                .push(entry.to_string());
        } else {
            current = None;
        }
    }
    subtasks
}

fn latest_checkpoint(job: &Job) -> std::path::PathBuf {
    host::checkpoint::Store::new(&job.path("checkpoints"), "fraud-rules")
        .latest_dir()
        .expect("readable checkpoint folder")
        .expect("a completed checkpoint")
}

#[test]
fn the_example_raises_its_expected_alerts_in_every_language() {
    let dir = example_dir("fraud-rules");
    let want = sorted(&std::fs::read_to_string(dir.join("data/expected.jsonl")).expect("expected"));
    assert!(!want.is_empty());
    for (language, component) in [
        ("rust", test_artifacts::FRAUD_RULES),
        ("python", test_artifacts::FRAUD_RULES_PYTHON),
        ("js", test_artifacts::FRAUD_RULES_JS),
        ("c", test_artifacts::FRAUD_RULES_C),
    ] {
        for rules_per_second in [None, Some(2)] {
            // Rules at once or trickling in: the alerts are the same.
            let job = Job::new();
            let mut file = fraud_job(&job, component, 1);
            file.sources[0].path = Some(dir.join("data/transactions.jsonl").display().to_string());
            file.sources[1].path = Some(dir.join("data/rules.jsonl").display().to_string());
            file.sources[1].records_per_second = rules_per_second;
            file.checkpoint = None;
            file.state = None;
            let out = host(&["run", job.save(&file).to_str().expect("UTF-8")], "");
            assert_eq!(out.code, 0, "{language}: {}", out.stderr);
            assert_eq!(
                sorted(&job.committed("out")),
                want,
                "{language}, rules at {rules_per_second:?}/s"
            );
        }
    }
}

#[test]
fn broadcast_state_survives_kill_9_and_a_new_parallelism_with_the_same_alerts() {
    let (transactions, cards, versions) = (60_000, 3_000, 10);
    let reference = Job::new();
    inputs(&reference, transactions, cards, versions);
    let file = fraud_job(&reference, test_artifacts::FRAUD_RULES, 1_000_000);
    let out = host(&["run", reference.save(&file).to_str().expect("UTF-8")], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let want = sorted(&reference.committed("out"));
    assert!(want.len() > 1000, "the run raises alerts: {}", want.len());

    let job = Job::new();
    inputs(&job, transactions, cards, versions);
    // Slow enough that rules are still coming after both kills, even when a loaded
    // machine takes 200 ms per checkpoint.
    job.save(&fraud_job(&job, test_artifacts::FRAUD_RULES, 4));
    // Killed at 2 while rules trickle in; resumed at 3, killed again; finished at 1.
    for (p, checkpoints) in [(2, 4), (3, 8)] {
        let mut run = Running::start(&job.path("job.toml"), &["-p", &p.to_string()]);
        run.wait_for_checkpoints(checkpoints);
        assert_eq!(run.resumed(), p == 3, "the second run resumes");
        run.kill();
        let states = broadcast_states(&latest_checkpoint(&job));
        assert_eq!(
            states.len(),
            p,
            "killed at {p}: one broadcast state per subtask"
        );
        let first = &states[&0];
        assert!(!first.is_empty(), "killed at {p}: some rules arrived");
        assert!(
            first.len() < 40,
            "killed at {p}: not every rule arrived yet"
        );
        for (subtask, state) in &states {
            assert_eq!(
                state, first,
                "killed at {p}: subtask {subtask} holds the same rules"
            );
        }
    }
    let path = job.path("job.toml");
    let out = host(&["run", path.to_str().expect("UTF-8"), "-p", "1"], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("resuming job `fraud-rules` from checkpoint"),
        "{}",
        out.stderr
    );
    assert_eq!(
        sorted(&job.committed("out")),
        want,
        "the alerts of a failure-free run"
    );
}
