//! Unaligned checkpoints under back-pressure (seed 003, "Unaligned Checkpointing" and
//! "Unaligned Recovery"; modelled on Flink's UnalignedCheckpointITCase and
//! UnalignedCheckpointRescaleITCase): a sequence checker slowed down so that every
//! channel into it stays full, checkpoints every 100 ms whose barriers overtake the
//! queued records, traps and `kill -9` at chosen moments, resumes at another
//! parallelism. The checker raises an alert for a number lost, repeated or out of order
//! per key; the committed output must be exactly a failure-free run's.

use super::damage::damage_each;
use super::*;

/// Rounds of hashing per record in the sequence checker: far slower than the generator,
/// so every channel into it is full.
const SLOW: u64 = 3000;

/// The sequence job (checker at `parallelism`) with a checker `work` rounds slow,
/// checkpointing unaligned every 100 ms (after `aligned_timeout_ms`, if given), and
/// restarting at once.
fn back_pressured(
    count: u64,
    parallelism: u16,
    work: u64,
    aligned_timeout_ms: Option<u64>,
) -> JobFile {
    let mut file = sequence_job(count, parallelism);
    file.operators[0]
        .config
        .insert("work".into(), toml::Value::Integer(work as i64));
    file.checkpoint = Some(Checkpoint {
        unaligned: Some(true),
        aligned_timeout_ms,
        ..Checkpoint::every(100)
    });
    file.restart = Some(Restart::fixed_delay(10, 0));
    file
}

/// Sets the checker's fault injection: traps in `process` in attempts below
/// `fail_attempts`, and in `open` in attempt `fail_open_attempt` if given.
fn failing(mut file: JobFile, fail_attempts: i64, fail_open_attempt: Option<i64>) -> JobFile {
    let config = &mut file.operators[0].config;
    let settings = [
        ("fail_attempts", Some(fail_attempts)),
        ("seed", Some(7)),
        ("first", Some(2000)),
        ("window", Some(20_000)),
        ("fail_open_attempt", fail_open_attempt),
    ];
    for (key, value) in settings {
        if let Some(value) = value {
            config.insert(key.into(), toml::Value::Integer(value));
        }
    }
    file
}

/// Checkpoint completions in a `--verbose` log that were unaligned, and aligned.
fn completions(log: &str) -> (usize, usize) {
    let completed = || log.lines().filter(|l| l.contains("completed in"));
    let unaligned = completed().filter(|l| l.contains(", unaligned, ")).count();
    (unaligned, completed().count() - unaligned)
}

/// Runs `job.toml` with `args` to its end with `--verbose`; returns its stderr.
fn run_verbose(job: &Job, args: &[&str]) -> String {
    let path = job.path("job.toml");
    let mut all = vec!["run", "--verbose", path.to_str().expect("UTF-8 path")];
    all.extend_from_slice(args);
    let out = host(&all, "");
    assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    out.stderr
}

/// The latest completed checkpoint's channel-state files, as its metadata lists them.
fn channel_state_files(job: &Job) -> Vec<std::path::PathBuf> {
    let latest = latest_checkpoint(job);
    let metadata = host::checkpoint::files::read_metadata(&latest).expect("metadata");
    metadata
        .channel_states
        .values()
        .flatten()
        .map(|f| latest.join(&f.file.file))
        .collect()
}

/// Every committed line is the checker's output for a generated record, each once: no
/// alert (the checker saw every key's numbers in order, once each), nothing corrupted.
fn assert_exact(job: &Job, count: u64, case: &str) {
    let output = job.committed("out");
    let alerts: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("alert"))
        .take(3)
        .collect();
    assert!(
        alerts.is_empty(),
        "{case}: lost, repeated or out of order: {alerts:?}"
    );
    assert!(
        sorted(&output) == expected(count),
        "{case}: output differs from a failure-free run"
    );
}

#[test]
fn unaligned_checkpoints_under_back_pressure_survive_traps_in_process_and_open_and_kill_9() {
    let count = 300_000;
    let job = Job::new();
    job.save(&failing(back_pressured(count, 2, SLOW, None), 2, Some(2)));
    let mut first = Running::start(&job.path("job.toml"), &[]);
    first.wait_for_nth(", unaligned, ", 3);
    let killed_log = first.log.join("\n");
    first.kill();
    assert!(
        !channel_state_files(&job).is_empty(),
        "the checkpoint under back-pressure holds records in flight"
    );
    // The resumed run traps twice in `process` and once in `open` after a restore.
    let log = run_verbose(&job, &[]);
    assert!(
        log.contains("resuming job `sequence` from checkpoint"),
        "{log}"
    );
    assert_eq!(reported(&log, "restarts after failures"), 3, "{log}");
    assert!(log.contains("injected failure in open"), "{log}");
    let (unaligned, _) = completions(&format!("{killed_log}\n{log}"));
    assert!(
        unaligned >= 8,
        "{unaligned} unaligned checkpoints completed:\n{log}"
    );
    assert_exact(&job, count, "pipeline p=2");
}

#[test]
fn a_union_of_two_sources_at_parallelism_3_recovers_exactly_from_unaligned_checkpoints() {
    let count = 150_000;
    let job = Job::new();
    let mut file = failing(back_pressured(count, 3, SLOW, None), 2, None);
    // A second generator with keys of its own, into the same checker.
    file.sources.push(Source {
        name: "gen2".into(),
        key_prefix: Some("other-".into()),
        ..file.sources[0].clone()
    });
    file.operators[0].input.push("gen2".into());
    job.save(&file);
    let mut first = Running::start(&job.path("job.toml"), &[]);
    first.wait_for_nth(", unaligned, ", 4);
    first.kill();
    let log = run_verbose(&job, &[]);
    assert_eq!(reported(&log, "restarts after failures"), 2, "{log}");
    let output = job.committed("out");
    assert!(!output.contains("alert"), "lost, repeated or out of order");
    let mut want = expected(count);
    want.extend(
        expected(count)
            .iter()
            .map(|l| l.replace("\"key-", "\"other-")),
    );
    want.sort();
    assert!(
        sorted(&output) == want,
        "output differs from a failure-free run"
    );
}

#[test]
fn rescaling_from_an_unaligned_checkpoint_routes_records_in_flight_to_their_new_owners() {
    let count = 200_000;
    for (from, to) in [("1", "2"), ("2", "3"), ("3", "2"), ("4", "1")] {
        let job = Job::new();
        job.save(&back_pressured(count, 2, SLOW, None));
        let mut first = Running::start(&job.path("job.toml"), &["-p", from]);
        first.wait_for_nth(", unaligned, ", 2);
        first.kill();
        assert!(
            !channel_state_files(&job).is_empty(),
            "{from}→{to}: the checkpoint holds records in flight"
        );
        let log = run_verbose(&job, &["-p", to]);
        assert!(log.contains("from checkpoint"), "{log}");
        assert_exact(&job, count, &format!("{from}→{to}"));
    }
}

#[test]
fn an_unaligned_checkpoint_of_the_memory_backend_resumes_on_rocksdb() {
    let count = 200_000;
    let job = Job::new();
    job.save(&back_pressured(count, 2, SLOW, None));
    let mut first = Running::start(&job.path("job.toml"), &[]);
    first.wait_for_nth(", unaligned, ", 2);
    first.kill();
    assert!(!channel_state_files(&job).is_empty(), "records in flight");
    let log = run_verbose(&job, &["--state-backend", "rocksdb", "-p", "3"]);
    assert!(log.contains("from checkpoint"), "{log}");
    assert_exact(&job, count, "memory → rocksdb, 2 → 3");
}

#[test]
fn with_an_aligned_timeout_checkpoints_stay_aligned_until_back_pressure_holds_a_barrier_up() {
    // No back-pressure: a fast checker; every barrier is through within 2 s (200 ms
    // is not always enough on a loaded 2-core machine running the whole suite).
    let job = Job::new();
    job.save(&back_pressured(200_000, 2, 0, Some(2000)));
    let log = run_verbose(&job, &[]);
    let (unaligned, aligned) = completions(&log);
    assert!(aligned >= 2, "{log}");
    assert_eq!(unaligned, 0, "no barrier waited 2 s: {log}");
    assert!(!log.contains("bytes of channel state"), "{log}");

    // Back-pressure: barriers wait behind full channels, switch after 200 ms, complete.
    let count = 300_000;
    let job = Job::new();
    job.save(&back_pressured(count, 2, SLOW, Some(200)));
    let log = run_verbose(&job, &[]);
    let (unaligned, _) = completions(&log);
    assert!(unaligned >= 2, "{log}");
    assert_exact(&job, count, "aligned_timeout_ms = 200");
}

#[test]
fn a_damaged_channel_state_file_is_refused_like_any_state_file() {
    let count = 200_000;
    let origin = Job::new();
    let mut file = back_pressured(count, 2, SLOW, None);
    file.checkpoint.as_mut().expect("checkpointing").retain = Some(2);
    origin.save(&file);
    let mut first = Running::start(&origin.path("job.toml"), &[]);
    first.wait_for_nth(", unaligned, ", 3);
    first.kill();
    let channels = channel_state_files(&origin);
    assert!(!channels.is_empty(), "the checkpoint has channel state");
    damage_each(&origin, &channels, count);
}

#[test]
fn host_state_shows_channel_state_per_task() {
    let job = Job::new();
    job.save(&back_pressured(200_000, 2, SLOW, None));
    let mut first = Running::start(&job.path("job.toml"), &[]);
    first.wait_for_nth(", unaligned, ", 2);
    first.kill();
    let latest = latest_checkpoint(&job);
    let out = host(&["state", latest.to_str().expect("UTF-8 path")], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("channel state (records in flight)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains("records on") && l.contains("bytes")),
        "{}",
        out.stdout
    );
}

#[test]
fn a_savepoint_of_an_unaligned_job_is_aligned_and_resumes_at_another_parallelism() {
    let count = 200_000;
    let job = Job::new();
    job.save(&back_pressured(count, 2, SLOW, None));
    let savepoint = stop_with_savepoint(&job, &[]);
    let metadata = host::checkpoint::files::read_metadata(std::path::Path::new(&savepoint))
        .expect("the savepoint's metadata");
    assert!(
        metadata.channel_states.is_empty(),
        "a savepoint holds no records in flight: {:?}",
        metadata.channel_states
    );
    resume_exactly(&job, count, &["--from-savepoint", &savepoint, "-p", "3"]);
}
