//! Savepoints, cancellation, resuming at another parallelism, max parallelism and
//! operators that changed, and `host state`.

use super::*;

#[test]
fn sigterm_stops_with_a_savepoint_and_the_next_run_resumes_exactly() {
    let count = 400_000;
    let job = Job::new();
    job.save(&checkpointed(count, 2));
    let mut run = Running::start(&job.path("job.toml"), &[]);
    run.wait_for_checkpoints(2);
    run.signal("-TERM");
    let (code, stderr) = run.wait();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("stopped with savepoint"), "{stderr}");
    resume_exactly(&job, count, &[]);
}

#[test]
fn host_cancel_keeps_or_deletes_checkpoints_as_on_cancel_says() {
    let count = 400_000;
    for on_cancel in ["retain", "delete"] {
        let job = Job::new();
        job.save(&JobFile {
            checkpoint: Some(Checkpoint {
                on_cancel: Some(on_cancel.into()),
                ..Checkpoint::every(30)
            }),
            ..sequence_job(count, 2)
        });
        let mut run = Running::start(&job.path("job.toml"), &[]);
        run.wait_for_checkpoints(1);
        let cancelled = host(&["cancel", &run.address()], "");
        assert_eq!(cancelled.code, 0, "{}", cancelled.stderr);
        let (code, rest) = run.wait();
        assert_eq!(code, Some(130), "{rest}");
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
    for (rocksdb, from, to) in [
        (false, 2, "4"),
        (false, 4, "2"),
        (false, 3, "1"),
        // Incremental RocksDB checkpoints: each subtask keeps its key groups of them.
        (true, 2, "4"),
        (true, 4, "2"),
    ] {
        let job = Job::new();
        let file = checkpointed(count, from);
        job.save(&if rocksdb { on_rocksdb(file) } else { file });
        run_and_kill(&job, 2);
        resume_exactly(&job, count, &["-p", to]);
    }
}

#[test]
fn a_checkpoint_of_another_max_parallelism_is_refused() {
    let job = Job::new();
    let mut file = checkpointed(400_000, 2);
    job.save(&file);
    run_and_kill(&job, 1);
    file.job.max_parallelism = Some(64);
    job.save(&file);
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
    host_state_shows(checkpointed(400_000, 2));
}

#[test]
fn host_state_shows_an_incremental_rocksdb_checkpoint() {
    host_state_shows(on_rocksdb(checkpointed(400_000, 2)));
}

fn host_state_shows(file: JobFile) {
    let job = Job::new();
    job.save(&file);
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
    // The generator's 128 key splits, dealt to its 2 subtasks.
    assert!(
        out.stdout
            .contains("source `gen`:\n  subtask 0: 64 splits\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("  subtask 1: 64 splits\n"),
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
    let file = checkpointed(count, 2);
    job.save(&file);
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
    let mut renamed = file.clone();
    renamed.operators[0].name = "checker".into();
    renamed.sinks[0].input = "checker".into();
    job.save(&renamed);
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

    job.save(&file);
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
    job.save(&checkpointed(count, 2));
    let path = job.path("job.toml");
    let path = path.to_str().expect("UTF-8 path");
    let mut run = Running::start(&job.path("job.toml"), &[]);
    run.wait_for_checkpoints(1);
    let address = run.address();

    let taken = host(&["savepoint", &address], "");
    assert_eq!(taken.code, 0, "{}", taken.stderr);
    let first = std::path::PathBuf::from(taken.stdout.trim());
    assert!(first.join("_metadata").is_file(), "{}", first.display());
    let stopped = host(&["stop", "--savepoint", &address], "");
    assert_eq!(stopped.code, 0, "{}", stopped.stderr);
    let last = stopped.stdout.trim().to_string();

    let (code, rest) = run.wait();
    assert_eq!(code, Some(0), "{rest}");
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
        job.save(&JobFile {
            state: Some(State::default_backend()),
            ..checkpointed(count, 2)
        });
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
