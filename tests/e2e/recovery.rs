//! Checkpoints and recovery with real processes and real files: injected guest traps
//! and `kill -9` of the host leave the committed output exactly a failure-free run's.
//!
//! Every test runs the sequence job (a generator numbering each key's records, a guest
//! that raises an alert when a number is missing or repeated), built by [`sequence_job`].

mod damage;
mod faults;
mod kafka;
mod operator_state;
mod savepoints;
mod sources;
mod timers;
mod ttl;
mod unaligned;
mod windows;

use crate::support::job_file::{Checkpoint, JobFile, Mode, Operator, Restart, Sink, Source, State};
use crate::support::process::Running;
use crate::support::{Job, host};

const KEYS: u64 = 1000;

/// The generator's rate cap. Tests that kill or fail a job after some checkpoints need
/// the job to still be running then, however fast the host has become.
const RATE: u64 = 400_000;

/// A generator of `count` records (2 subtasks, at most `RATE` records/s in all) →
/// sequence checker (`parallelism` subtasks) → file sink `out` (2 subtasks); no
/// checkpoints.
fn sequence_job(count: u64, parallelism: u16) -> JobFile {
    let mut job = JobFile::named("sequence");
    job.sources.push(Source {
        records_per_second: Some(RATE),
        parallelism: Some(2),
        ..Source::generator("gen", count, KEYS)
    });
    job.operators.push(Operator {
        parallelism: Some(parallelism),
        ..Operator::keyed(
            "check",
            std::path::Path::new(test_artifacts::SEQUENCE_CHECK),
            "gen",
            "/key",
        )
    });
    job.sinks.push(Sink {
        parallelism: Some(2),
        ..Sink::file("out", "check", "out")
    });
    job
}

/// The sequence job checkpointing every 30 ms: long enough to kill or cancel midway.
fn checkpointed(count: u64, parallelism: u16) -> JobFile {
    JobFile {
        checkpoint: Some(Checkpoint::every(30)),
        ..sequence_job(count, parallelism)
    }
}

/// `job` with its keyed state in RocksDB (incremental checkpoints, the default).
fn on_rocksdb(job: JobFile) -> JobFile {
    JobFile {
        state: Some(State::rocksdb()),
        ..job
    }
}

/// The sequence job checkpointing every 10 ms, exactly-once, and restarting at once up
/// to 10 times.
fn restarting(count: u64, parallelism: u16) -> JobFile {
    JobFile {
        checkpoint: Some(Checkpoint {
            mode: Some(Mode::ExactlyOnce),
            ..Checkpoint::every(10)
        }),
        restart: Some(Restart::fixed_delay(10, 0)),
        ..sequence_job(count, parallelism)
    }
}

/// `job` with the sequence checker configured by `config` (its `[operator.config]`):
/// `fail_attempts`, `seed`, `first`, `window`, `at_least_once`.
fn configured(mut job: JobFile, config: &str) -> JobFile {
    job.operators[0].config = toml::from_str(config).expect("operator config");
    job
}

/// What a failure-free run outputs, sorted: every key's numbers, once each.
fn expected(count: u64) -> Vec<String> {
    let mut lines: Vec<String> = (0..count)
        .map(|i| format!("{{\"key\":\"key-{}\",\"seq\":{}}}", i % KEYS, i / KEYS))
        .collect();
    lines.sort();
    lines
}

fn sorted(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// The number before `label` in the job's closing summary.
fn reported(stderr: &str, label: &str) -> u64 {
    stderr
        .lines()
        .filter(|l| l.contains("finished:"))
        .flat_map(|l| l.split(['(', ';']))
        .find_map(|part| part.trim().strip_suffix(label)?.trim().parse().ok())
        .unwrap_or(0)
}

/// The folder of the job's latest completed checkpoint, found as the host finds it.
fn latest_checkpoint(job: &Job) -> std::path::PathBuf {
    host::checkpoint::Store::new(&job.path("checkpoints"), "sequence")
        .latest_dir()
        .expect("readable checkpoint folder")
        .expect("a completed checkpoint")
}

/// Runs `job.toml`, kills it with SIGKILL after `completions` checkpoints, and returns
/// whether the run had resumed from a checkpoint.
fn run_and_kill(job: &Job, completions: usize) -> bool {
    let mut run = Running::start(&job.path("job.toml"), &[]);
    run.wait_for_checkpoints(completions);
    let resumed = run.resumed();
    run.kill();
    resumed
}

/// Kills the job with SIGKILL after each of `completions` checkpoints in turn (every
/// run resuming from the one before), then runs it to its end at parallelism 3; checks
/// that the last run resumed and finished, and returns its committed `out`.
fn killed_then_rescaled(job: &Job, completions: &[usize], what: &str) -> String {
    for &n in completions {
        run_and_kill(job, n);
    }
    let path = job.path("job.toml");
    let out = host(&["run", path.to_str().expect("UTF-8"), "-p", "3"], "");
    assert_eq!(out.code, 0, "{what}: {}", out.stderr);
    assert!(out.stderr.contains("resuming"), "{what}: {}", out.stderr);
    job.committed("out")
}

/// Runs the job until a checkpoint has completed, then stops it with `host stop
/// --savepoint`; returns the savepoint's folder.
fn stop_with_savepoint(job: &Job, args: &[&str]) -> String {
    stop_with_savepoint_after(job, args, 1)
}

/// Runs the job until `completions` checkpoints have completed, then stops it with `host
/// stop --savepoint`; returns the savepoint's folder.
fn stop_with_savepoint_after(job: &Job, args: &[&str], completions: usize) -> String {
    let mut run = Running::start(&job.path("job.toml"), args);
    run.wait_for_checkpoints(completions);
    let stopped = host(&["stop", "--savepoint", &run.address()], "");
    assert_eq!(stopped.code, 0, "{}", stopped.stderr);
    let (code, rest) = run.wait();
    assert_eq!(code, Some(0), "{rest}");
    assert!(rest.contains("stopped with savepoint"), "{rest}");
    stopped.stdout.trim().to_string()
}

/// Runs the job again (with `args`) and checks that it resumed from a checkpoint and
/// that its committed output is exactly a failure-free run's.
fn resume_exactly(job: &Job, count: u64, args: &[&str]) {
    resume_to(job, expected(count), args);
}

/// Runs the job again (with `args`) and checks that it resumed from a checkpoint and
/// that its committed output is exactly `want` (sorted), with no sequence alert.
fn resume_to(job: &Job, want: Vec<String>, args: &[&str]) {
    let path = job.path("job.toml");
    let mut all = vec!["run", path.to_str().expect("UTF-8 path")];
    all.extend_from_slice(args);
    let out = host(&all, "");
    assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    assert!(
        out.stderr
            .contains("resuming job `sequence` from checkpoint"),
        "{}",
        out.stderr
    );
    let output = job.committed("out");
    assert!(
        !output.contains("alert"),
        "{args:?}: state was lost or repeated"
    );
    assert_eq!(sorted(&output), want, "{args:?}");
}

/// Runs the job to completion with `host run -p <parallelism>`.
fn resume_with(job: &Job, parallelism: &str) -> crate::support::Outcome {
    let path = job.path("job.toml");
    host(
        &["run", path.to_str().expect("UTF-8 path"), "-p", parallelism],
        "",
    )
}
