//! Windows under faults (issue 17): the windowed visit count killed with SIGKILL
//! mid-window, twice, then resumed at another parallelism, commits exactly the counts,
//! updates and late visits of a failure-free run, which a brute force works out.

use super::*;
use crate::support::job_file::Watermark;
use crate::windows::{brute_force, canonical, parsed};

/// `count` visits over 300 URLs (about 2 per URL and minute: many a window has its
/// last visit before a kill, and comes out after the restore), one every ~100 ms of event time, most up to 4 s out of
/// order, a few 9–14 s behind (within the lateness, or not) and a few far behind.
fn visits(count: u64) -> String {
    let mut seed = 7_u64;
    let mut next = |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % n
    };
    let mut lines = String::new();
    for i in 0..count {
        let at = 1_555_545_600_000 + i as i64 * 100;
        let behind = match next(100) {
            0..4 => 9_000 + next(5_000),
            4..6 => 30_000 + next(30_000),
            _ => next(4_000),
        };
        let url = format!("/page/{}", next(300));
        lines += &format!("{{\"url\":\"{url}\",\"ts\":{}}}\n", at - behind as i64);
    }
    lines
}

/// The windowed visit count on `logs.jsonl`, paced to `rate` visits/s, checkpointing
/// every 20 ms with its state in `state`, late visits to the sink `late`.
fn windowed(rate: u64, state: State) -> JobFile {
    let mut file = JobFile::named("windows");
    file.sources.push(Source {
        event_time: Some("/ts".into()),
        watermark: Some(Watermark::bounded(5_000, Some(0))),
        records_per_second: Some(rate),
        // One split, read in order: the order the brute force takes the visits in.
        split_bytes: Some(1 << 30),
        ..Source::file("logs", "logs.jsonl")
    });
    file.operators.push(Operator {
        parallelism: Some(2),
        side_outputs: vec!["late".into()],
        ..Operator::keyed(
            "per-minute",
            std::path::Path::new(test_artifacts::WINDOWED_VISIT_COUNT),
            "logs",
            "/url",
        )
    });
    file.sinks.push(Sink::file("out", "per-minute", "out"));
    file.sinks
        .push(Sink::file("late", "per-minute.late", "late"));
    file.checkpoint = Some(Checkpoint::every(20));
    file.state = Some(state);
    file
}

#[test]
fn windows_killed_mid_window_and_rescaled_2_to_3_commit_exactly_a_failure_free_run() {
    let count = 20_000;
    let input = visits(count);
    let (counts, late) = brute_force(&parsed(&input));
    assert!(counts.iter().any(|c| c["update"] == true) && !late.is_empty());
    for state in [State::default_backend(), State::rocksdb()] {
        let job = Job::new();
        std::fs::write(job.path("logs.jsonl"), &input).expect("the log");
        job.save(&windowed(8_000, state.clone()));
        let out = killed_then_rescaled(&job, &[3, 3], &format!("{state:?}"));
        assert_eq!(
            canonical(&parsed(&out)),
            canonical(&counts),
            "{state:?}: the counts"
        );
        assert_eq!(
            canonical(&parsed(&job.committed("late"))),
            canonical(&late),
            "{state:?}: the late visits"
        );
    }
}

/// The sessions example's clicks.
fn clicks() -> String {
    let dir = crate::support::example_dir("sessions");
    std::fs::read_to_string(dir.join("data/clicks.jsonl")).expect("the sample clicks")
}

/// The sessions example (`component`) on `clicks.jsonl`, paced to 80 clicks/s (its 217
/// clicks take about 2.7 s: a kill or a stop after a few checkpoints lands mid-session
/// for some users however slow the checkpoints are), checkpointing every 20 ms with
/// its state in `state`.
fn sessions_job(component: &str, state: State) -> JobFile {
    let mut file = JobFile::named("sessions");
    file.sources.push(Source {
        event_time: Some("/ts".into()),
        watermark: Some(Watermark::bounded(60_000, Some(0))),
        records_per_second: Some(80),
        ..Source::file("clicks", "clicks.jsonl")
    });
    file.operators.push(Operator {
        parallelism: Some(2),
        side_outputs: vec!["late".into()],
        ..Operator::keyed(
            "sessions",
            std::path::Path::new(component),
            "clicks",
            "/user",
        )
    });
    file.sinks.push(Sink::file("out", "sessions", "out"));
    file.checkpoint = Some(Checkpoint::every(20));
    file.state = Some(state);
    file
}

#[test]
fn sessions_merged_across_restores_and_a_rescale_are_exactly_a_failure_free_runs() {
    let input = clicks();
    let sessions = crate::windows::sessions_of(&parsed(&input));
    for state in [State::default_backend(), State::rocksdb()] {
        let job = Job::new();
        std::fs::write(job.path("clicks.jsonl"), &input).expect("the clicks");
        job.save(&sessions_job(test_artifacts::SESSIONS, state.clone()));
        let out = killed_then_rescaled(&job, &[2, 2], &format!("{state:?}"));
        assert_eq!(
            canonical(&parsed(&out)),
            canonical(&sessions),
            "{state:?}: the sessions"
        );
    }
}

#[test]
fn open_sessions_saved_by_the_rust_operator_are_resumed_by_the_python_and_javascript_ones() {
    let input = clicks();
    let sessions = crate::windows::sessions_of(&parsed(&input));
    for component in [test_artifacts::SESSIONS_PYTHON, test_artifacts::SESSIONS_JS] {
        let job = Job::new();
        std::fs::write(job.path("clicks.jsonl"), &input).expect("the clicks");
        job.save(&sessions_job(
            test_artifacts::SESSIONS,
            State::default_backend(),
        ));
        let savepoint = stop_with_savepoint_after(&job, &[], 4);
        let shown = host(&["state", &savepoint], "");
        assert!(
            shown.stdout.contains("state `sessions` (value)"),
            "{}",
            shown.stdout
        );
        // Only the savepoint is left to resume from.
        for entry in (std::fs::read_dir(job.path("checkpoints/sessions")).expect("checkpoints"))
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("chk-"))
        {
            std::fs::remove_dir_all(entry.path()).expect("drop a checkpoint");
        }
        job.save(&sessions_job(component, State::default_backend()));
        let path = job.path("job.toml");
        let path = path.to_str().expect("UTF-8");
        let out = host(&["run", path, "--from-savepoint", &savepoint], "");
        assert_eq!(out.code, 0, "{component}: {}", out.stderr);
        assert_eq!(
            canonical(&parsed(&job.committed("out"))),
            canonical(&sessions),
            "{component}: the sessions"
        );
    }
}
