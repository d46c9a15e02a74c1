//! Checkpoints and recovery with real processes and real files: injected guest traps
//! and `kill -9` of the host leave the committed output exactly a failure-free run's.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStderr, Command, Stdio};

use crate::support::{Job, host};

const KEYS: u64 = 1000;

/// The generator's rate cap. Tests that kill or fail a job after some checkpoints need
/// the job to still be running then, however fast the host has become.
const RATE: u64 = 400_000;

/// A generator (2 subtasks: each key comes from one of them, at most `RATE` records/s
/// in all) → sequence checker → file sink (2 subtasks), checkpointing every
/// `interval_ms`.
fn sequence_job(count: u64, parallelism: u16, checkpoint: &str, config: &str) -> String {
    format!(
        r#"
[job]
name = "sequence"

[[source]]
name = "gen"
type = "generator"
count = {count}
keys = {KEYS}
records_per_second = {RATE}
parallelism = 2

[[operator]]
name = "check"
component = {component:?}
input = "gen"
key_by = "/key"
parallelism = {parallelism}
[operator.config]
{config}

[[sink]]
name = "out"
type = "file"
input = "check"
path = "out"
parallelism = 2

{checkpoint}
"#,
        component = test_artifacts::SEQUENCE_CHECK,
    )
}

const EXACTLY_ONCE: &str = "[checkpoint]\ninterval_ms = 10\ndir = \"checkpoints\"\n\n[restart]\nstrategy = \"fixed-delay\"\nattempts = 10\ndelay_ms = 0";

/// Keyed state in RocksDB, in a local folder of the job's temporary directory.
const ROCKSDB: &str = "[state]\nbackend = \"rocksdb\"\ndir = \"local\"";

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

#[test]
fn a_failure_free_run_outputs_every_number_once() {
    let job = Job::new();
    let out = job.run(&sequence_job(20_000, 2, "", ""), "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(sorted(&job.committed("out")), expected(20_000));
}

#[test]
fn exactly_once_state_and_output_survive_injected_traps_at_every_parallelism() {
    let count = 600_000;
    let on_rocksdb = format!("{EXACTLY_ONCE}\n\n{ROCKSDB}");
    for (parallelism, checkpoint) in [
        (1, EXACTLY_ONCE),
        (2, EXACTLY_ONCE),
        (4, EXACTLY_ONCE),
        (2, on_rocksdb.as_str()),
    ] {
        let job = Job::new();
        let config =
            format!("fail_attempts = 5\nseed = {parallelism}\nfirst = 3000\nwindow = 30000");
        let out = job.run(&sequence_job(count, parallelism, checkpoint, &config), "");
        assert_eq!(out.code, 0, "p={parallelism}: {}", out.stderr);
        assert_eq!(
            reported(&out.stderr, "restarts after failures"),
            5,
            "p={parallelism}: {}",
            out.stderr
        );
        // How many checkpoints fit in a run depends on the machine's speed and load; what
        // the test needs is that restarts resumed from checkpoints, not from the start.
        let from_checkpoints = out
            .stderr
            .lines()
            .filter(|l| l.contains("restarting job") && l.contains("from checkpoint"))
            .count();
        assert!(
            from_checkpoints >= 1,
            "p={parallelism}: no restart resumed from a checkpoint: {}",
            out.stderr
        );
        assert!(out.stderr.contains("injected failure"), "{}", out.stderr);
        let output = job.committed("out");
        assert!(
            !output.contains("alert"),
            "p={parallelism}: sequence alerts"
        );
        assert_eq!(
            sorted(&output),
            expected(count),
            "p={parallelism}: output differs from a failure-free run"
        );
        assert!(
            !job.path("checkpoints/sequence").join("chk-1").exists(),
            "a finished job deletes its checkpoints"
        );
    }
}

#[test]
fn at_least_once_loses_nothing() {
    let count = 100_000;
    let job = Job::new();
    let checkpoint = EXACTLY_ONCE.replace(
        "interval_ms = 20",
        "interval_ms = 20\nmode = \"at-least-once\"",
    );
    let config = "fail_attempts = 3\nseed = 11\nfirst = 3000\nwindow = 20000\nat_least_once = true";
    let out = job.run(&sequence_job(count, 2, &checkpoint, config), "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let output = job.committed("out");
    assert!(!output.contains("alert"), "a number was lost");
    let duplicates = output.lines().filter(|l| l.contains("duplicate")).count();
    let mut delivered: Vec<String> = output
        .lines()
        .filter(|l| !l.contains("duplicate"))
        .map(str::to_string)
        .collect();
    delivered.sort();
    delivered.dedup();
    assert_eq!(
        delivered,
        expected(count),
        "every number arrives ({duplicates} duplicates)"
    );
}

/// Checkpoints every 30 ms into `checkpoints/`: long jobs to kill or cancel midway.
const EVERY_30_MS: &str = "[checkpoint]\ninterval_ms = 30\ndir = \"checkpoints\"";

/// The folder of the job's latest completed checkpoint, found as the host finds it.
fn latest_checkpoint(job: &Job) -> std::path::PathBuf {
    host::checkpoint::Store::new(&job.path("checkpoints"), "sequence")
        .latest_dir()
        .expect("readable checkpoint folder")
        .expect("a completed checkpoint")
}

/// Starts `host run --verbose`, sends it `signal` once it has reported `completions`
/// completed checkpoints, and returns whether it had resumed from one, its exit code
/// (none when killed) and the rest of its stderr.
fn run_and_signal(job: &Job, completions: usize, signal: &str) -> (bool, Option<i32>, String) {
    let path = job.path("job.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["run", "--verbose", path.to_str().expect("UTF-8 path")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start host");
    let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    let mut seen = 0;
    let mut resumed = false;
    for line in stderr.by_ref().lines() {
        let line = line.expect("stderr line");
        resumed |= line.contains("resuming job");
        assert!(
            !line.contains("finished:"),
            "the job finished before it was killed"
        );
        if line.contains("completed in") {
            seen += 1;
            if seen == completions {
                let status = Command::new("kill")
                    .args([signal, &child.id().to_string()])
                    .status()
                    .expect("run kill");
                assert!(status.success(), "kill {signal}");
                break;
            }
        }
    }
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).expect("rest of stderr");
    let status = child.wait().expect("reap host");
    (resumed, status.code(), rest)
}

/// Kills `host run` with SIGKILL after `completions` checkpoints.
fn run_and_kill(job: &Job, completions: usize) -> bool {
    let (resumed, code, _) = run_and_signal(job, completions, "-KILL");
    assert_eq!(code, None, "killed by SIGKILL");
    resumed
}

#[test]
fn kill_9_at_random_moments_then_resume_gives_exactly_the_output() {
    kill_9_rounds(EVERY_30_MS);
}

#[test]
fn kill_9_on_rocksdb_then_resume_gives_exactly_the_output() {
    kill_9_rounds(&format!("{EVERY_30_MS}\n\n{ROCKSDB}"));
}

fn kill_9_rounds(checkpoint: &str) {
    let count = 400_000;
    let job = Job::new();
    job.write("job.toml", &sequence_job(count, 2, checkpoint, ""));
    // Moments chosen by a fixed seed: after 1 to 3 more completed checkpoints.
    let mut seed = 0x5eed_u64;
    for round in 0..5 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let resumed = run_and_kill(&job, 1 + (seed >> 33) as usize % 3);
        assert_eq!(
            resumed,
            round > 0,
            "round {round}: a restarted run resumes by itself"
        );
    }
    resume_exactly(&job, count, &[]);
}

#[test]
fn a_damaged_checkpoint_is_never_restored() {
    let job = Job::new();
    job.write("job.toml", &sequence_job(400_000, 2, EVERY_30_MS, ""));
    run_and_kill(&job, 2);
    let state = latest_checkpoint(&job).join("check-1.state");
    damage_then_refuse_to_resume(&job, &state);
}

#[test]
fn a_damaged_shared_file_of_an_incremental_checkpoint_is_never_restored() {
    let job = Job::new();
    let checkpoint = format!("{EVERY_30_MS}\n\n{ROCKSDB}");
    job.write("job.toml", &sequence_job(400_000, 2, &checkpoint, ""));
    run_and_kill(&job, 2);
    let metadata = std::fs::read_to_string(latest_checkpoint(&job).join("_metadata"))
        .expect("the latest checkpoint's metadata");
    let shared = std::fs::read_dir(job.path("checkpoints/sequence/shared"))
        .expect("incremental checkpoints keep SST files in shared/")
        .map(|entry| entry.expect("a shared file").path())
        .find(|path| {
            let name = path.file_name().expect("a file name").to_string_lossy();
            metadata.contains(&format!("\"{name}\""))
        })
        .expect("the latest checkpoint refers to a shared file");
    damage_then_refuse_to_resume(&job, &shared);
}

/// Which way [`move_latest_output`] moves the latest checkpoint's sink parts.
#[derive(Clone, Copy)]
enum Commit {
    Do,
    Undo,
}

/// Puts the latest checkpoint's sink parts where a crash just after (`Do`) or just before
/// (`Undo`) its commit leaves them, whichever moment the kill really hit.
fn move_latest_output(job: &Job, commit: Commit) {
    let metadata: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(latest_checkpoint(job).join("_metadata"))
            .expect("metadata")
            .split_once('\n')
            .expect("header line")
            .1,
    )
    .expect("metadata JSON");
    for pending in metadata["sinks"]["out"]
        .as_array()
        .expect("sink states")
        .iter()
        .flat_map(|s| s["pending"].as_array().expect("pending").clone())
    {
        let pending = job.path("out").join(pending.as_str().expect("name"));
        // `.part-<i>-<n>.pending` is committed as `part-<i>-<n>.jsonl`.
        let name = pending.file_name().expect("a name").to_string_lossy();
        let committed = job.path("out").join(format!(
            "{}.jsonl",
            name.trim_start_matches('.').trim_end_matches(".pending")
        ));
        let (from, to) = match commit {
            Commit::Do => (pending, committed),
            Commit::Undo => (committed, pending),
        };
        if from.exists() {
            std::fs::rename(from, to).expect("move a part");
        }
    }
}

/// Flips a bit in `file` of the latest checkpoint: the next run must refuse it, name the
/// file, and commit nothing wrong.
fn damage_then_refuse_to_resume(job: &Job, file: &std::path::Path) {
    // Its output committed, as it is unless the kill fell between completing and committing.
    move_latest_output(job, Commit::Do);
    let mut bytes = std::fs::read(file).expect("the file to damage");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(file, bytes).expect("damage the file");

    let path = job.path("job.toml");
    let out = host(&["run", path.to_str().expect("UTF-8 path")], "");
    assert_eq!(out.code, 1, "{}", out.stderr);
    let name = file.file_name().expect("a file name").to_string_lossy();
    assert!(
        out.stderr.contains(&*name),
        "names the file: {}",
        out.stderr
    );
    assert!(out.stderr.contains("damaged"), "{}", out.stderr);
    assert_eq!(
        job.committed("out")
            .lines()
            .filter(|l| l.contains("alert"))
            .count(),
        0
    );
}

#[test]
fn checkpoints_that_time_out_are_aborted_and_the_job_goes_on() {
    let job = Job::new();
    // No checkpoint can write and sync its files within a millisecond.
    let checkpoint = "[checkpoint]\ninterval_ms = 5\ntimeout_ms = 1\ndir = \"checkpoints\"";
    let out = job.run(&sequence_job(100_000, 2, checkpoint, ""), "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("expired after 1ms and was aborted"),
        "{}",
        out.stderr
    );
    assert_eq!(
        reported(&out.stderr, "checkpoints completed"),
        0,
        "{}",
        out.stderr
    );
    assert_eq!(sorted(&job.committed("out")), expected(100_000));
}

#[test]
fn sigterm_stops_with_a_savepoint_and_the_next_run_resumes_exactly() {
    let count = 400_000;
    let job = Job::new();
    job.write("job.toml", &sequence_job(count, 2, EVERY_30_MS, ""));
    let (_, code, stderr) = run_and_signal(&job, 2, "-TERM");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("stopped with savepoint"), "{stderr}");
    resume_exactly(&job, count, &[]);
}

#[test]
fn host_cancel_keeps_or_deletes_checkpoints_as_on_cancel_says() {
    let count = 400_000;
    for on_cancel in ["retain", "delete"] {
        let job = Job::new();
        let checkpoint = format!("{EVERY_30_MS}\non_cancel = \"{on_cancel}\"");
        job.write("job.toml", &sequence_job(count, 2, &checkpoint, ""));
        let (mut child, mut stderr, address) = start_until_checkpoint(&job, &[]);
        let cancelled = host(&["cancel", &address], "");
        assert_eq!(cancelled.code, 0, "{}", cancelled.stderr);
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).expect("rest of stderr");
        assert_eq!(child.wait().expect("reap host").code(), Some(130), "{rest}");
        let left = std::fs::read_dir(job.path("checkpoints/sequence")).map_or(0, |d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("chk-"))
                .count()
        });
        if on_cancel == "delete" {
            assert!(rest.contains("its checkpoints were deleted"), "{rest}");
            assert_eq!(left, 0, "no checkpoint left");
            continue;
        }
        assert!(
            rest.contains("cancelled; its checkpoints are kept in"),
            "{rest}"
        );
        assert!(left > 0);
        resume_exactly(&job, count, &[]);
    }
}

#[test]
fn a_checkpoint_resumes_at_another_parallelism() {
    let count = 400_000;
    let rocksdb = format!("{EVERY_30_MS}\n\n{ROCKSDB}");
    for (checkpoint, from, to) in [
        (EVERY_30_MS, 2, "4"),
        (EVERY_30_MS, 4, "2"),
        (EVERY_30_MS, 3, "1"),
        // Incremental RocksDB checkpoints: each subtask keeps its key groups of them.
        (&rocksdb, 2, "4"),
        (&rocksdb, 4, "2"),
    ] {
        let job = Job::new();
        job.write("job.toml", &sequence_job(count, from, checkpoint, ""));
        run_and_kill(&job, 2);
        resume_exactly(&job, count, &["-p", to]);
    }
}

#[test]
fn a_checkpoint_of_another_max_parallelism_is_refused() {
    let job = Job::new();
    let text = sequence_job(400_000, 2, EVERY_30_MS, "");
    job.write("job.toml", &text);
    run_and_kill(&job, 1);
    job.write(
        "job.toml",
        &text.replace(
            "name = \"sequence\"",
            "name = \"sequence\"\nmax_parallelism = 64",
        ),
    );
    let out = resume_with(&job, "2");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("taken with max_parallelism 128, but the job has 64"),
        "{}",
        out.stderr
    );
}

#[test]
fn host_state_shows_a_checkpoint_without_the_operators_code() {
    host_state_shows(EVERY_30_MS);
}

#[test]
fn host_state_shows_an_incremental_rocksdb_checkpoint() {
    host_state_shows(&format!("{EVERY_30_MS}\n\n{ROCKSDB}"));
}

fn host_state_shows(checkpoint: &str) {
    let job = Job::new();
    job.write("job.toml", &sequence_job(400_000, 2, checkpoint, ""));
    run_and_kill(&job, 2);
    let root = job.path("checkpoints/sequence");
    let root = root.to_str().expect("UTF-8 path");

    let out = host(&["state", root], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("of job `sequence` (max_parallelism 128)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("operator `check`: 2 state files"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("state `last` (value): 1000 keys"),
        "{}",
        out.stdout
    );

    let out = host(
        &["state", root, "--operator", "check", "--key", "key-7"],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let last: u64 = out
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("last (value): "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no value for key-7: {}", out.stdout));
    assert!(last < 400, "{last}");

    let out = host(&["state", root, "--operator", "nope", "--key", "k"], "");
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("no operator `nope` in this checkpoint; it has: `check`"),
        "{}",
        out.stderr
    );
    let out = host(&["state", job.path("").to_str().expect("UTF-8 path")], "");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("no checkpoint here"), "{}", out.stderr);
}

#[test]
fn a_job_starts_from_a_savepoint_folder_and_refuses_state_it_cannot_place() {
    let count = 400_000;
    let job = Job::new();
    let text = sequence_job(count, 2, EVERY_30_MS, "");
    job.write("job.toml", &text);
    run_and_kill(&job, 2);
    // Keep the latest checkpoint as a savepoint elsewhere, and drop the job's own.
    let root = job.path("checkpoints/sequence");
    let latest = latest_checkpoint(&job);
    let savepoint = job.path("savepoint");
    std::fs::rename(&latest, &savepoint).expect("move the checkpoint");
    std::fs::remove_dir_all(&root).expect("drop the job's checkpoints");
    let path = job.path("job.toml");
    let (path, savepoint) = (
        path.to_str().expect("UTF-8"),
        savepoint.to_str().expect("UTF-8"),
    );

    // An operator renamed since: its state has nowhere to go.
    job.write(
        "job.toml",
        &text
            .replace("name = \"check\"", "name = \"checker\"")
            .replace("input = \"check\"", "input = \"checker\""),
    );
    let out = host(&["run", path, "--from-savepoint", savepoint], "");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("state of operators the job no longer has: `check`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("--allow-non-restored-state"),
        "{}",
        out.stderr
    );

    job.write("job.toml", &text);
    let out = host(&["run", path, "--from-savepoint", savepoint], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("resuming job `sequence` from checkpoint"),
        "{}",
        out.stderr
    );
    let output = job.committed("out");
    assert!(!output.contains("alert"));
    assert_eq!(sorted(&output), expected(count));
}

#[test]
fn savepoints_are_taken_from_a_running_job_and_a_stop_with_one_resumes_exactly() {
    let count = 600_000;
    let job = Job::new();
    job.write("job.toml", &sequence_job(count, 2, EVERY_30_MS, ""));
    let path = job.path("job.toml");
    let path = path.to_str().expect("UTF-8 path");
    let (mut child, mut stderr, address) = start_until_checkpoint(&job, &[]);

    let taken = host(&["savepoint", &address], "");
    assert_eq!(taken.code, 0, "{}", taken.stderr);
    let first = std::path::PathBuf::from(taken.stdout.trim());
    assert!(first.join("_metadata").is_file(), "{}", first.display());
    let stopped = host(&["stop", "--savepoint", &address], "");
    assert_eq!(stopped.code, 0, "{}", stopped.stderr);
    let last = stopped.stdout.trim().to_string();

    let mut rest = String::new();
    stderr.read_to_string(&mut rest).expect("rest of stderr");
    assert_eq!(child.wait().expect("reap host").code(), Some(0), "{rest}");
    assert!(rest.contains("stopped with savepoint"), "{rest}");
    assert!(first.is_dir(), "savepoints are never deleted");

    // Drop the job's own checkpoints: only the savepoint is left to resume from.
    for entry in std::fs::read_dir(job.path("checkpoints/sequence"))
        .expect("checkpoint folder")
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with("chk-") {
            std::fs::remove_dir_all(entry.path()).expect("drop a checkpoint");
        }
    }
    let out = host(&["run", path, "--from-savepoint", &last], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let output = job.committed("out");
    assert!(!output.contains("alert"));
    assert_eq!(sorted(&output), expected(count));
}

/// Starts `host run --verbose JOB ARGS` and reads its stderr until a checkpoint has
/// completed; returns the process, the rest of its stderr, and its control endpoint.
fn start_until_checkpoint(job: &Job, args: &[&str]) -> (Child, BufReader<ChildStderr>, String) {
    start_until(job, args, "completed in")
}

/// Starts `host run --verbose JOB ARGS` and reads its stderr up to the first line that
/// contains `marker`; returns the process, the rest of its stderr, and its endpoint.
fn start_until(job: &Job, args: &[&str], marker: &str) -> (Child, BufReader<ChildStderr>, String) {
    let path = job.path("job.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["run", "--verbose", path.to_str().expect("UTF-8 path")])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start host");
    let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    let mut address = None;
    for line in stderr.by_ref().lines() {
        let line = line.expect("stderr line");
        if let Some(rest) = line.strip_prefix("weir: control endpoint ") {
            address = rest.split(':').take(2).collect::<Vec<_>>().join(":").into();
        }
        assert!(
            !line.contains("finished:"),
            "the job finished before `{marker}`"
        );
        if line.contains(marker) {
            break;
        }
    }
    (
        child,
        stderr,
        address.expect("host run prints its control endpoint"),
    )
}

/// Runs the job until a checkpoint has completed, then stops it with `host stop
/// --savepoint`; returns the savepoint's folder.
fn stop_with_savepoint(job: &Job, args: &[&str]) -> String {
    let (mut child, mut stderr, address) = start_until_checkpoint(job, args);
    let stopped = host(&["stop", "--savepoint", &address], "");
    assert_eq!(stopped.code, 0, "{}", stopped.stderr);
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).expect("rest of stderr");
    assert_eq!(child.wait().expect("reap host").code(), Some(0), "{rest}");
    assert!(rest.contains("stopped with savepoint"), "{rest}");
    stopped.stdout.trim().to_string()
}

#[test]
fn the_resume_matrix_backends_and_parallelism_stop_with_a_savepoint_and_resume() {
    let count = 400_000;
    let cases = [
        ("memory", "2", "memory", "2"),
        ("memory", "2", "memory", "4"),
        ("memory", "4", "memory", "2"),
        ("rocksdb", "2", "rocksdb", "2"),
        ("rocksdb", "2", "rocksdb", "4"),
        ("rocksdb", "4", "rocksdb", "2"),
        ("memory", "2", "rocksdb", "2"),
        ("rocksdb", "2", "memory", "3"),
    ];
    for (from_backend, from_p, to_backend, to_p) in cases {
        let job = Job::new();
        let state = "[state]\ndir = \"local\"";
        job.write(
            "job.toml",
            &sequence_job(count, 2, &format!("{EVERY_30_MS}\n\n{state}"), ""),
        );
        let savepoint = stop_with_savepoint(&job, &["-p", from_p, "--state-backend", from_backend]);
        resume_exactly(
            &job,
            count,
            &[
                "--from-savepoint",
                &savepoint,
                "-p",
                to_p,
                "--state-backend",
                to_backend,
            ],
        );
    }
}

/// Runs the job again (with `args`) and checks that it resumed from a checkpoint and
/// that its committed output is exactly a failure-free run's.
fn resume_exactly(job: &Job, count: u64, args: &[&str]) {
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
    assert_eq!(sorted(&output), expected(count), "{args:?}");
}

/// Runs the job to completion with `host run -p <parallelism>`.
fn resume_with(job: &Job, parallelism: &str) -> crate::support::Outcome {
    let path = job.path("job.toml");
    host(
        &["run", path.to_str().expect("UTF-8 path"), "-p", parallelism],
        "",
    )
}

#[test]
fn a_cancel_during_a_long_restart_delay_stops_the_job_at_once() {
    let job = Job::new();
    let checkpoint = format!(
        "{EVERY_30_MS}\n\n[restart]\nstrategy = \"fixed-delay\"\nattempts = 3\ndelay_ms = 3600000"
    );
    let config = "fail_attempts = 1\nseed = 1\nfirst = 20000\nwindow = 0";
    job.write("job.toml", &sequence_job(400_000, 2, &checkpoint, config));
    let (mut child, mut stderr, address) = start_until(&job, &[], "restarting job `sequence`");
    let cancelled = host(&["cancel", &address], "");
    assert_eq!(cancelled.code, 0, "{}", cancelled.stderr);
    // The delay is an hour; the job must end long before.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait().expect("reap host").code());
    });
    let code = done_rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the job ended within a minute of being cancelled");
    assert_eq!(code, Some(130));
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).expect("rest of stderr");
    assert!(
        rest.contains("cancelled; its checkpoints are kept"),
        "{rest}"
    );
}

/// Ways a file of a checkpoint is damaged on disk.
#[derive(Debug, Clone, Copy)]
enum Damage {
    Truncate,
    FlipBit,
    Delete,
}

fn damage(file: &std::path::Path, how: Damage) {
    match how {
        Damage::Delete => std::fs::remove_file(file).expect("delete"),
        Damage::Truncate | Damage::FlipBit => {
            let mut bytes = std::fs::read(file).expect("the file to damage");
            if let Damage::Truncate = how {
                bytes.truncate(bytes.len() / 2);
            } else {
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x10;
            }
            std::fs::write(file, bytes).expect("damage the file");
        }
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Every file the latest checkpoint consists of: its metadata, its state files (or a
/// RocksDB checkpoint's private files) and the shared files it lists.
fn checkpoint_files(job: &Job) -> Vec<std::path::PathBuf> {
    let latest = latest_checkpoint(job);
    let metadata = std::fs::read_to_string(latest.join("_metadata")).expect("metadata");
    let mut files = Vec::new();
    let mut walk = vec![latest];
    while let Some(dir) = walk.pop() {
        for entry in std::fs::read_dir(&dir).expect("list").flatten() {
            if entry.file_type().expect("type").is_dir() {
                walk.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    if let Ok(shared) = std::fs::read_dir(job.path("checkpoints/sequence/shared")) {
        files.extend(shared.flatten().map(|e| e.path()).filter(|p| {
            let name = p.file_name().expect("name").to_string_lossy();
            metadata.contains(&format!("\"{name}\""))
        }));
    }
    files.sort();
    files
}

/// Every kind of damage to every file of the latest checkpoint, each on its own copy of a
/// job killed mid-run (two checkpoints retained): the next run either refuses, naming
/// the damaged file or the output that forbids falling back, and commits nothing; or it
/// falls back to the older checkpoint, which is only allowed while it keeps the output
/// exact, and finishes with exactly a failure-free run's output.
fn damage_matrix(state: &str) {
    let count = 200_000;
    let origin = Job::new();
    let checkpoint = format!("{EVERY_30_MS}\nretain = 2\n\n{state}");
    origin.write("job.toml", &sequence_job(count, 2, &checkpoint, ""));
    run_and_kill(&origin, 3);
    let relative: Vec<std::path::PathBuf> = checkpoint_files(&origin)
        .into_iter()
        .map(|p| {
            p.strip_prefix(origin.path(""))
                .expect("inside")
                .to_path_buf()
        })
        .collect();
    assert!(relative.len() >= 3, "{relative:?}");
    for file in &relative {
        let empty = std::fs::metadata(origin.path("").join(file))
            .expect("stat")
            .len()
            == 0;
        for how in [Damage::Truncate, Damage::FlipBit, Damage::Delete] {
            if empty && !matches!(how, Damage::Delete) {
                continue; // An empty file (RocksDB's write-ahead log) has no bytes to damage.
            }
            let job = Job::new();
            copy_dir(&origin.path(""), &job.path(""));
            let before = job.committed("out");
            damage(&job.path("").join(file), how);
            let path = job.path("job.toml");
            let out = host(&["run", path.to_str().expect("UTF-8 path")], "");
            let case = format!("{how:?} {}", file.display());
            if out.code == 0 {
                assert!(
                    out.stderr.contains("instead, which keeps exactly-once")
                        || matches!(how, Damage::Delete) && file.ends_with("_metadata"),
                    "{case}: a damaged checkpoint was restored:\n{}",
                    out.stderr
                );
                let output = job.committed("out");
                assert!(!output.contains("alert"), "{case}: state lost or repeated");
                assert_eq!(sorted(&output), expected(count), "{case}");
                continue;
            }
            assert_eq!(out.code, 1, "{case}: {}", out.stderr);
            let name = file.file_name().expect("name").to_string_lossy();
            assert!(
                out.stderr.contains(&*name) || out.stderr.contains("committed after it"),
                "{case}: names the damaged file: {}",
                out.stderr
            );
            assert!(
                out.stderr.contains("--from-savepoint"),
                "{case}: says what to resume from: {}",
                out.stderr
            );
            assert_eq!(job.committed("out"), before, "{case}: committed something");
        }
    }
}

#[test]
fn every_damage_to_every_file_of_a_checkpoint_is_detected() {
    damage_matrix("");
}

#[test]
fn every_damage_to_every_file_of_an_incremental_rocksdb_checkpoint_is_detected() {
    damage_matrix(ROCKSDB);
}

/// Temporary files a crash can leave (metadata being written, a part file in progress)
/// are never restored or committed: the run resumes and the output is exact.
#[test]
fn stray_temporary_files_are_never_restored() {
    let count = 200_000;
    let job = Job::new();
    job.write("job.toml", &sequence_job(count, 2, EVERY_30_MS, ""));
    run_and_kill(&job, 2);
    let latest = latest_checkpoint(&job);
    std::fs::write(
        latest.join("_metadata.inprogress"),
        "weir-checkpoint 2 00000000\n{",
    )
    .expect("stray metadata");
    std::fs::write(latest.join("check-0.state.inprogress"), "garbage").expect("stray state");
    let newer = latest.parent().expect("store").join("chk-999999");
    std::fs::create_dir_all(&newer).expect("mkdir");
    std::fs::copy(latest.join("_metadata"), newer.join("_metadata.inprogress"))
        .expect("a checkpoint that never completed");
    job.write("out/.part-0-999.pending", "{\"key\":\"key-0\",\"seq\":0}\n");
    resume_exactly(&job, count, &[]);
}

/// A crash between a checkpoint's metadata and its commit leaves its output pending; if
/// that checkpoint is then found damaged, the one before it is restored (nothing was
/// committed since it), the damaged one is set aside, and the output is exact.
#[test]
fn a_damaged_checkpoint_that_committed_nothing_falls_back_to_the_one_before() {
    let count = 200_000;
    let job = Job::new();
    let checkpoint = format!("{EVERY_30_MS}\nretain = 2");
    job.write("job.toml", &sequence_job(count, 2, &checkpoint, ""));
    run_and_kill(&job, 3);
    let latest = latest_checkpoint(&job);
    // The disk as a crash between completing and committing leaves it.
    move_latest_output(&job, Commit::Undo);
    damage(&latest.join("check-0.state"), Damage::FlipBit);
    let path = job.path("job.toml");
    let out = host(&["run", path.to_str().expect("UTF-8 path")], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("instead, which keeps exactly-once"),
        "{}",
        out.stderr
    );
    let output = job.committed("out");
    assert!(!output.contains("alert"), "state was lost or repeated");
    assert_eq!(sorted(&output), expected(count));
    let name = latest.file_name().expect("chk-<n>");
    assert!(
        job.path("checkpoints/sequence/damaged").join(name).is_dir(),
        "the damaged checkpoint is kept aside"
    );
}

/// Every damage to every file of a savepoint is refused by `--from-savepoint`, naming
/// the file, and nothing is committed.
#[test]
fn every_damage_to_every_file_of_a_savepoint_is_detected() {
    let origin = Job::new();
    origin.write("job.toml", &sequence_job(200_000, 2, EVERY_30_MS, ""));
    let savepoint = std::path::PathBuf::from(stop_with_savepoint(&origin, &[]));
    let relative = savepoint
        .strip_prefix(origin.path(""))
        .expect("the savepoint is in the job's folder")
        .to_path_buf();
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&savepoint)
        .expect("savepoint folder")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for file in &files {
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for how in [Damage::Truncate, Damage::FlipBit, Damage::Delete] {
            let job = Job::new();
            copy_dir(&origin.path(""), &job.path(""));
            // Only the savepoint: no checkpoint of the job's own to resume from.
            let _ = std::fs::remove_dir_all(job.path("checkpoints/sequence/chk-1"));
            let before = job.committed("out");
            damage(&job.path("").join(&relative).join(&name), how);
            let path = job.path("job.toml");
            let from = job.path("").join(&relative);
            let out = host(
                &[
                    "run",
                    path.to_str().expect("UTF-8"),
                    "--from-savepoint",
                    from.to_str().expect("UTF-8"),
                ],
                "",
            );
            let case = format!("{how:?} {name}");
            assert_ne!(out.code, 0, "{case}: a damaged savepoint was restored");
            assert!(
                out.stderr.contains(&name) || out.stderr.contains("_metadata"),
                "{case}: names the file: {}",
                out.stderr
            );
            assert_eq!(job.committed("out"), before, "{case}: committed something");
        }
    }
}
