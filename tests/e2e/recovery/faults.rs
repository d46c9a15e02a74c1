//! Failures during a run: guest traps, `kill -9`, checkpoints that time out, a cancel
//! while a restart waits; and at-least-once mode.

use super::*;

#[test]
fn a_failure_free_run_outputs_every_number_once() {
    let job = Job::new();
    let out = job.run(&sequence_job(20_000, 2).toml(), "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(sorted(&job.committed("out")), expected(20_000));
}

#[test]
fn exactly_once_state_and_output_survive_injected_traps_at_every_parallelism() {
    let count = 600_000;
    for (parallelism, rocksdb) in [(1, false), (2, false), (4, false), (2, true)] {
        let job = Job::new();
        let config =
            format!("fail_attempts = 5\nseed = {parallelism}\nfirst = 3000\nwindow = 30000");
        let mut file = configured(restarting(count, parallelism), &config);
        if rocksdb {
            file = on_rocksdb(file);
        }
        let out = job.run(&file.toml(), "");
        assert_eq!(out.code, 0, "p={parallelism}: {}", out.stderr);
        assert!(
            out.stderr
                .contains("checkpointing every 10ms, exactly-once"),
            "{}",
            out.stderr
        );
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
    let mut file = restarting(count, 2);
    file.checkpoint = Some(Checkpoint {
        mode: Some(Mode::AtLeastOnce),
        ..Checkpoint::every(10)
    });
    let config = "fail_attempts = 3\nseed = 11\nfirst = 3000\nwindow = 20000\nat_least_once = true";
    let out = job.run(&configured(file, config).toml(), "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("checkpointing every 10ms, at-least-once"),
        "the run is in at-least-once mode: {}",
        out.stderr
    );
    assert_eq!(
        reported(&out.stderr, "restarts after failures"),
        3,
        "{}",
        out.stderr
    );
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

#[test]
fn kill_9_at_random_moments_then_resume_gives_exactly_the_output() {
    kill_9_rounds(checkpointed(400_000, 2));
}

#[test]
fn kill_9_on_rocksdb_then_resume_gives_exactly_the_output() {
    kill_9_rounds(on_rocksdb(checkpointed(400_000, 2)));
}

fn kill_9_rounds(file: JobFile) {
    let count = 400_000;
    let job = Job::new();
    job.save(&file);
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
fn checkpoints_that_time_out_are_aborted_and_the_job_goes_on() {
    let job = Job::new();
    // No checkpoint can write and sync its files within a millisecond.
    let mut file = sequence_job(100_000, 2);
    file.checkpoint = Some(Checkpoint {
        timeout_ms: Some(1),
        ..Checkpoint::every(5)
    });
    let out = job.run(&file.toml(), "");
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
fn a_cancel_during_a_long_restart_delay_stops_the_job_at_once() {
    let job = Job::new();
    let file = JobFile {
        restart: Some(Restart::fixed_delay(3, 3_600_000)),
        ..checkpointed(400_000, 2)
    };
    let config = "fail_attempts = 1\nseed = 1\nfirst = 20000\nwindow = 0";
    job.save(&configured(file, config));
    let mut run = Running::start(&job.path("job.toml"), &[]);
    run.wait_for("restarting job `sequence`");
    let cancelled = host(&["cancel", &run.address()], "");
    assert_eq!(cancelled.code, 0, "{}", cancelled.stderr);
    // The delay is an hour; the job must end long before.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(run.wait());
    });
    let (code, rest) = done_rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the job ended within a minute of being cancelled");
    assert_eq!(code, Some(130));
    assert!(
        rest.contains("cancelled; its checkpoints are kept"),
        "{rest}"
    );
}
