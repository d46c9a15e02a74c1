//! Sources whose parallelism changes between runs: their progress is split state, so a
//! checkpoint or savepoint taken at one source parallelism resumes at another with every
//! record read exactly once.

use super::*;

/// How a run is ended before the next one resumes it.
#[derive(Debug, Clone, Copy)]
enum End {
    /// `host stop --savepoint`; the next run starts `--from-savepoint`.
    Savepoint,
    /// SIGKILL after two completed checkpoints; the next run resumes by itself.
    Kill,
}

/// Runs `file` at each of `parallelisms` of its source in turn, ending every run but the
/// last as `end` says; the last runs to the end. Returns the committed output.
fn rescaled_runs(job: &Job, mut file: JobFile, parallelisms: &[u16], end: End) -> String {
    let mut savepoint: Option<String> = None;
    let (last, rest) = parallelisms.split_last().expect("a run");
    for &parallelism in rest {
        file.sources[0].parallelism = Some(parallelism);
        job.save(&file);
        let args: Vec<&str> = match &savepoint {
            Some(path) => vec!["--from-savepoint", path],
            None => vec![],
        };
        match end {
            End::Savepoint => savepoint = Some(stop_with_savepoint(job, &args)),
            End::Kill => {
                let mut run = Running::start(&job.path("job.toml"), &args);
                run.wait_for_checkpoints(2);
                run.kill();
            }
        }
    }
    file.sources[0].parallelism = Some(*last);
    job.save(&file);
    let path = job.path("job.toml");
    let mut args = vec!["run", path.to_str().expect("UTF-8 path")];
    if let Some(path) = &savepoint {
        args.extend(["--from-savepoint", path]);
    }
    let out = host(&args, "");
    assert_eq!(out.code, 0, "{end:?} {parallelisms:?}: {}", out.stderr);
    assert!(
        out.stderr
            .contains("resuming job `sequence` from checkpoint"),
        "{}",
        out.stderr
    );
    job.committed("out")
}

/// The first alerts of `output`, for a failure message.
fn alerts(output: &str) -> String {
    let alerts: Vec<&str> = output.lines().filter(|l| l.contains("alert")).collect();
    format!(
        "{} alerts, first: {:?}",
        alerts.len(),
        &alerts[..alerts.len().min(5)]
    )
}

/// The output's records (alerts left out), sorted.
fn records(output: &str) -> Vec<String> {
    sorted(
        &output
            .lines()
            .filter(|l| !l.contains("alert"))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
}

#[test]
fn a_generator_source_rescales_1_3_2_exactly() {
    let count = 600_000;
    for end in [End::Savepoint, End::Kill] {
        let job = Job::new();
        let output = rescaled_runs(&job, checkpointed(count, 2), &[1, 3, 2], end);
        // The generator splits by key: each key's records still arrive in order.
        assert!(
            !output.contains("alert"),
            "{end:?}: records lost, repeated or reordered: {}",
            alerts(&output)
        );
        assert_eq!(sorted(&output), expected(count), "{end:?}");
    }
}

/// `files` files of the generator's records (file `f` holds keys `f, f + files, …`, so
/// each key's records are in one file, in order), at most `RATE` records/s in all.
fn file_source_job(job: &Job, count: u64, files: u64) -> JobFile {
    let mut texts = vec![String::new(); files as usize];
    for i in 0..count {
        let key = i % KEYS;
        texts[(key % files) as usize]
            .push_str(&format!("{{\"key\":\"key-{key}\",\"seq\":{}}}\n", i / KEYS));
    }
    std::fs::create_dir_all(job.path("in")).expect("mkdir in");
    for (f, text) in texts.iter().enumerate() {
        job.write(&format!("in/part-{f:02}.jsonl"), text);
    }
    let mut file = checkpointed(count, 2);
    file.sources[0] = Source {
        records_per_second: Some(RATE),
        ..Source::file("gen", "in")
    };
    file
}

#[test]
fn a_file_source_of_many_files_rescales_1_3_2_exactly() {
    let count = 400_000;
    for end in [End::Savepoint, End::Kill] {
        let job = Job::new();
        let file = file_source_job(&job, count, 7);
        let output = rescaled_runs(&job, file, &[1, 3, 2], end);
        assert!(
            !output.contains("alert"),
            "{end:?}: records lost, repeated or reordered: {}",
            alerts(&output)
        );
        assert_eq!(sorted(&output), expected(count), "{end:?}");
    }
}

#[test]
fn one_big_file_is_read_in_parallel_by_byte_ranges_and_rescales_exactly() {
    let count = 400_000;
    for end in [End::Savepoint, End::Kill] {
        let job = Job::new();
        let mut file = file_source_job(&job, count, 1);
        // About 10 MB in ranges of 256 KiB: lines cross every range boundary.
        file.sources[0].split_bytes = Some(256 << 10);
        let output = rescaled_runs(&job, file, &[1, 3, 2], end);
        // Ranges of one file are read in parallel: a key's records may arrive out of
        // order (alerts), but every record arrives exactly once.
        assert_eq!(records(&output), expected(count), "{end:?}");
    }
}

#[test]
fn a_checkpoint_of_a_generator_with_other_keys_is_refused() {
    let job = Job::new();
    let mut file = checkpointed(400_000, 2);
    job.save(&file);
    run_and_kill(&job, 1);
    file.sources[0].keys = Some(KEYS + 1);
    job.save(&file);
    let out = resume_with(&job, "2");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("source `gen`: its generator splits were made for keys = 1000"),
        "{}",
        out.stderr
    );
}

#[test]
fn checkpoints_go_on_after_a_bounded_source_finishes_and_a_kill_9_then_is_exact() {
    let count = 600_000;
    let (small, small_keys) = (2_000, 10);
    let job = Job::new();
    let mut file = checkpointed(count, 2);
    file.sources.push(Source {
        key_prefix: Some("small-".into()),
        parallelism: Some(2),
        ..Source::generator("small", small, small_keys)
    });
    file.operators[0].input.push("small".into());
    job.save(&file);
    let mut run = Running::start(&job.path("job.toml"), &[]);
    // Both of its subtasks, in either order.
    run.wait_for_nth("task `small` subtask", 2);
    // Without finished tasks taking part, no checkpoint would complete from here on, and
    // the job would run to its end first.
    run.wait_for_checkpoints(2);
    run.kill();
    let mut want = expected(count);
    want.extend((0..small).map(|i| {
        format!(
            "{{\"key\":\"small-{}\",\"seq\":{}}}",
            i % small_keys,
            i / small_keys
        )
    }));
    want.sort();
    resume_to(&job, want, &[]);
}
