//! Timers under faults (issue 16): thousands of event-time timers pending while guests
//! trap and the host is killed with SIGKILL, on both backends, then a resume at another
//! parallelism: every timer fires exactly once, never early, as in a failure-free run.

use std::collections::BTreeSet;

use super::*;
use crate::support::job_file::Watermark;

/// How long after its record each timer fires: about 5000 timers pending at a time.
const AFTER_MS: i64 = 5000;

/// The sequence job with event times (record *i* at *i* ms), a watermark, and a timer
/// per record `AFTER_MS` after it; injected traps (two attempts of each run fail),
/// restarts, checkpoints every 10 ms, keyed state in `state`.
fn timed(count: u64, state: State) -> JobFile {
    let mut file = configured(
        restarting(count, 2),
        &format!(
            "fail_attempts = 2\nseed = 3\nfirst = 2000\nwindow = 20000\ntimer_after_ms = {AFTER_MS}"
        ),
    );
    let source = &mut file.sources[0];
    source.time_field = Some("ts".into());
    source.watermark = Some(Watermark::bounded(0, Some(10)));
    file.state = Some(state);
    file
}

/// What a failure-free run fires: one timer per record, at its time plus `AFTER_MS`.
fn expected_timers(count: u64) -> Vec<(String, i64)> {
    let mut timers: Vec<(String, i64)> = (0..count)
        .map(|i| (format!("key-{}", i % KEYS), i as i64 + AFTER_MS))
        .collect();
    timers.sort();
    timers
}

/// Splits committed output into records (as `expected` has them) and fired timers,
/// checking that none fired before the watermark reached it.
fn records_and_timers(output: &str) -> (Vec<String>, Vec<(String, i64)>) {
    let (mut records, mut timers) = (Vec::new(), Vec::new());
    for line in output.lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("JSON");
        match value["timer"].as_i64() {
            Some(timer) => {
                let watermark = value["watermark"].as_i64().expect("a watermark");
                assert!(watermark >= timer, "fired early: {line}");
                timers.push((value["key"].as_str().expect("a key").to_string(), timer));
            }
            None => records.push(line.to_string()),
        }
    }
    records.sort();
    timers.sort();
    (records, timers)
}

#[test]
fn pending_timers_survive_traps_kill_9_and_a_rescale_on_both_backends() {
    let count = 200_000;
    for state in [State::default_backend(), State::rocksdb()] {
        let job = Job::new();
        job.save(&timed(count, state.clone()));
        for _ in 0..2 {
            run_and_kill(&job, 2);
            let pending: usize = host(
                &["state", latest_checkpoint(&job).to_str().expect("UTF-8")],
                "",
            )
            .stdout
            .lines()
            .filter_map(|l| l.trim().strip_prefix("event-time timers: "))
            .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
            .sum();
            assert!(
                pending > 1000,
                "{state:?}: {pending} timers pending in the checkpoint"
            );
        }
        let path = job.path("job.toml");
        let out = host(&["run", path.to_str().expect("UTF-8"), "-p", "3"], "");
        assert_eq!(out.code, 0, "{state:?}: {}", out.stderr);
        assert!(out.stderr.contains("injected failure"), "{}", out.stderr);
        let output = job.committed("out");
        assert!(
            !output.contains("alert"),
            "{state:?}: state was lost or repeated"
        );
        let (records, timers) = records_and_timers(&output);
        assert_eq!(records, expected(count), "{state:?}: records");
        let distinct: BTreeSet<&(String, i64)> = timers.iter().collect();
        assert_eq!(
            distinct.len(),
            timers.len(),
            "{state:?}: a timer fired twice"
        );
        assert_eq!(timers, expected_timers(count), "{state:?}: timers");
    }
}
