//! State TTL (issue 17): event-time TTL expires exactly as the watermark passes, so
//! every replay, after kills and a rescale, commits what a model of the rule works out;
//! a savepoint holds no entry expired when it was taken.

use std::collections::HashMap;

use super::*;
use crate::support::job_file::Watermark;

const TTL_MS: i64 = 1_000;
const RUST: &str = test_artifacts::TTL_COUNT;
const OUT_OF_ORDERNESS_MS: i64 = 500;

/// `count` events over 50 keys picked at random, one every 10 ms of event time, up to
/// 300 ms out of order (within the watermark's bound: no event is late).
fn events(count: u64) -> Vec<(String, i64)> {
    let mut seed = 11_u64;
    let mut next = |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % n
    };
    (0..count)
        .map(|i| {
            let key = format!("k{}", next(50));
            (key, 1_700_000_000_000 + i as i64 * 10 - next(300) as i64)
        })
        .collect()
}

/// What the TTL count outputs for `events` read in order, worked out from the rule
/// alone: when event `i` is processed the watermark is the largest time before it minus
/// the out-of-orderness minus 1 (a watermark follows every record), and an entry
/// written at time `t` is gone once the watermark reaches `t + TTL_MS`.
fn model(events: &[(String, i64)]) -> Vec<String> {
    let mut last: HashMap<&str, (i64, u64)> = HashMap::new();
    let mut recent: HashMap<&str, Vec<i64>> = HashMap::new();
    let mut total: HashMap<&str, u64> = HashMap::new();
    let mut max: Option<i64> = None;
    let mut lines = Vec::new();
    for (key, time) in events {
        let watermark = max.map(|m| m - OUT_OF_ORDERNESS_MS - 1);
        let live = |stamp: i64| watermark.is_none_or(|w| stamp + TTL_MS > w);
        let count = match last.get(key.as_str()) {
            Some(&(stamp, count)) if live(stamp) => count + 1,
            _ => 1,
        };
        last.insert(key, (*time, count));
        let list = recent.entry(key).or_default();
        list.retain(|&stamp| live(stamp));
        list.push(*time);
        let total = total.entry(key).or_default();
        *total += 1;
        lines.push(format!(
            "{{\"key\":\"{key}\",\"count\":{count},\"recent\":{},\"total\":{total}}}",
            list.len()
        ));
        max = Some(max.map_or(*time, |m| m.max(*time)));
    }
    canonical(&lines.join("\n"))
}

/// JSON lines, each with its members in one order, sorted.
fn canonical(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = (text.lines())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .expect("JSON")
                .to_string()
        })
        .collect();
    lines.sort();
    lines
}

/// The TTL count (`component`) over `events.jsonl` (one split, a watermark after every
/// record), paced to `rate` events/s, checkpointing every 20 ms with its state in `state`.
fn ttl_job(component: &str, rate: u64, state: State) -> JobFile {
    let mut file = JobFile::named("ttl");
    file.sources.push(Source {
        event_time: Some("/ts".into()),
        watermark: Some(Watermark::bounded(OUT_OF_ORDERNESS_MS as u64, Some(0))),
        records_per_second: Some(rate),
        split_bytes: Some(1 << 30),
        ..Source::file("events", "events.jsonl")
    });
    let mut count = Operator {
        parallelism: Some(2),
        ..Operator::keyed("count", std::path::Path::new(component), "events", "/key")
    };
    count
        .config
        .insert("ttl_ms".into(), toml::Value::Integer(TTL_MS));
    file.operators.push(count);
    file.sinks.push(Sink::file("out", "count", "out"));
    file.checkpoint = Some(Checkpoint::every(20));
    file.state = Some(state);
    file
}

fn write_events(job: &Job, events: &[(String, i64)]) {
    let lines: String = (events.iter())
        .map(|(key, ts)| format!("{{\"key\":\"{key}\",\"ts\":{ts}}}\n"))
        .collect();
    std::fs::write(job.path("events.jsonl"), lines).expect("the events");
}

#[test]
fn event_time_ttl_expires_as_the_watermark_passes_the_same_in_every_replay() {
    let events = events(12_000);
    let expected = model(&events);
    let restarts = expected
        .iter()
        .filter(|l| l.contains("\"count\":1,"))
        .count();
    assert!(
        restarts > 50 + 100,
        "some keys go quiet for longer than the TTL"
    );
    for state in [State::default_backend(), State::rocksdb()] {
        // A failure-free run.
        let job = Job::new();
        write_events(&job, &events);
        let out = job.run(&ttl_job(RUST, 1_000_000, state.clone()).toml(), "");
        assert_eq!(out.code, 0, "{state:?}: {}", out.stderr);
        assert_eq!(canonical(&job.committed("out")), expected, "{state:?}");

        // Killed twice mid-run, then resumed at another parallelism: replays expire
        // what the first run expired.
        let job = Job::new();
        write_events(&job, &events);
        job.save(&ttl_job(RUST, 6_000, state.clone()));
        let out = killed_then_rescaled(&job, &[3, 3], &format!("{state:?}"));
        let replayed = canonical(&out);
        assert_eq!(replayed, expected, "{state:?}: replayed");
    }
}

#[test]
fn python_javascript_and_c_state_expires_as_rust_state_does() {
    let events = events(6_000);
    let expected = model(&events);
    for component in [
        test_artifacts::TTL_COUNT_PYTHON,
        test_artifacts::TTL_COUNT_JS,
        test_artifacts::TTL_COUNT_C,
    ] {
        let job = Job::new();
        write_events(&job, &events);
        let out = job.run(
            &ttl_job(component, 1_000_000, State::default_backend()).toml(),
            "",
        );
        assert_eq!(out.code, 0, "{component}: {}", out.stderr);
        assert_eq!(canonical(&job.committed("out")), expected, "{component}");
    }
}

#[test]
fn a_savepoint_holds_no_entry_expired_when_it_was_taken() {
    // Keys k40 to k49 go quiet after the first 10 s of event time: long expired when the
    // savepoint is taken, well after that.
    let events: Vec<(String, i64)> = (events(24_000).into_iter().enumerate())
        .map(|(i, (key, ts))| match key[1..].parse::<u32>() {
            Ok(n) if i >= 1_000 && n >= 40 => (format!("k{}", n - 10), ts),
            _ => (key, ts),
        })
        .collect();
    for state in [State::default_backend(), State::rocksdb()] {
        let job = Job::new();
        write_events(&job, &events);
        job.save(&ttl_job(RUST, 2_000, state.clone()));
        // Stopped well into the input (50 checkpoints 20 ms apart: at least 2,000 of the
        // 12 s of events, however fast they are) and before its end (however slow):
        // every key seen, some quiet for long.
        let savepoint = stop_with_savepoint_after(&job, &[], 50);
        let checkpoint = host::inspect::Checkpoint::open(std::path::Path::new(&savepoint))
            .expect("a readable savepoint");
        let snapshots = &checkpoint.operators["count"];
        let watermarks = &checkpoint.operator_states["count"];
        let (mut live, mut totals) = (0, 0);
        for (subtask, snapshot) in snapshots.iter().enumerate() {
            let watermark = watermarks
                .iter()
                .find(|(s, _)| *s == subtask)
                .and_then(|(_, state)| state.watermark)
                .expect("a watermark");
            for entry in snapshot.groups.iter().flat_map(|g| &g.entries) {
                let info = &snapshot.states[entry.state as usize];
                let host::state::snapshot::SlotData::Value(stored) = &entry.data else {
                    continue;
                };
                match info.ttl {
                    None => totals += 1,
                    Some(_) => {
                        let (stamp, _) = host::state::ttl::split(stored).expect("a stamp");
                        assert!(stamp + TTL_MS > watermark, "{state:?}: expired {entry:?}");
                        live += 1;
                    }
                }
            }
        }
        assert_eq!(totals, 50, "{state:?}: every key has a total");
        assert!(
            (1..=40).contains(&live),
            "{state:?}: quiet keys' counts expired, busy ones' did not: {live}"
        );
        let shown = host(&["state", &savepoint], "");
        assert_eq!(shown.code, 0, "{}", shown.stderr);
        assert!(
            shown.stdout.contains(&format!("state `count` (value, ttl {TTL_MS} ms of event-time, renewed on create-and-write): {live} keys")),
            "{state:?}: {}",
            shown.stdout
        );
    }
}
