//! Windows (issue 17) through `host run`: the windowed visit count gives, on its
//! out-of-order sample log, exactly the counts, updates and late visits a brute force
//! here works out from the same lines.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::examples::run_example;
use crate::support::example_dir;

/// The example's settings, as its job file and operator have them.
const SIZE: i64 = 60_000;
const LATENESS: i64 = 10_000;
const OUT_OF_ORDERNESS: i64 = 5_000;

/// What the windowed visit count emits for `visits` read in order, worked out visit by
/// visit: the watermark before each is the highest time before it less the
/// out-of-orderness and 1 ms; windows fire once it reaches their last millisecond.
/// Returns the counts and the late visits.
pub fn brute_force(visits: &[Value]) -> (Vec<Value>, Vec<Value>) {
    // Per (url, window start): visits, and whether it came out; the windows still to
    // come out, by their last millisecond.
    type Windows = BTreeMap<(String, i64), (u64, bool)>;
    let mut windows = Windows::new();
    let mut waiting: BTreeSet<(i64, String, i64)> = BTreeSet::new();
    let (mut counts, mut late) = (Vec::new(), Vec::new());
    let come_out = |windows: &mut Windows,
                    waiting: &mut BTreeSet<(i64, String, i64)>,
                    counts: &mut Vec<Value>,
                    watermark: i64| {
        while let Some((last, url, start)) = waiting.first().cloned() {
            if last > watermark {
                break;
            }
            waiting.pop_first();
            let (visits, out) = windows.get_mut(&(url.clone(), start)).expect("a window");
            *out = true;
            counts.push(json!({"url": url, "start": start, "end": start + SIZE,
                "visits": *visits, "update": false}));
        }
    };
    let mut highest: Option<i64> = None;
    for visit in visits {
        let ts = visit["ts"].as_i64().expect("ts");
        let url = visit["url"].as_str().expect("url").to_string();
        let watermark = highest.map(|h| h - OUT_OF_ORDERNESS - 1);
        if let Some(w) = watermark {
            come_out(&mut windows, &mut waiting, &mut counts, w);
        }
        let start = ts.div_euclid(SIZE) * SIZE;
        let last = start + SIZE - 1;
        if watermark.is_some_and(|w| last + LATENESS <= w) {
            late.push(visit.clone());
        } else {
            let (n, out) = windows.entry((url.clone(), start)).or_insert((0, false));
            *n += 1;
            if *out {
                counts.push(json!({"url": url, "start": start, "end": start + SIZE,
                    "visits": *n, "update": true}));
            } else if watermark.is_some_and(|w| last <= w) {
                // Its end passed before its first visit: it comes out at once.
                *out = true;
                counts.push(json!({"url": url, "start": start, "end": start + SIZE,
                    "visits": *n, "update": false}));
            } else {
                waiting.insert((last, url, start));
            }
        }
        highest = Some(highest.map_or(ts, |h| h.max(ts)));
    }
    come_out(&mut windows, &mut waiting, &mut counts, i64::MAX);
    (counts, late)
}

/// JSON lines as sorted canonical text (object keys in order).
pub fn canonical<'a>(lines: impl IntoIterator<Item = &'a Value>) -> Vec<String> {
    let mut lines: Vec<String> = lines.into_iter().map(Value::to_string).collect();
    lines.sort();
    lines
}

pub fn parsed(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn the_windowed_visit_count_gives_the_counts_updates_and_late_visits_of_a_brute_force() {
    let name = "windowed-visit-count";
    let input = std::fs::read_to_string(example_dir(name).join("data/access.jsonl"))
        .expect("the sample log");
    let (counts, late) = brute_force(&parsed(&input));
    assert!(
        counts.iter().any(|c| c["update"] == true) && !late.is_empty(),
        "the sample has visits within the lateness and beyond it"
    );
    let (job, outcome) = run_example(name, test_artifacts::WINDOWED_VISIT_COUNT);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let out = job.committed("out");
    assert_eq!(canonical(&parsed(&out)), canonical(&counts), "the counts");
    assert_eq!(
        canonical(&parsed(&job.committed("late"))),
        canonical(&late),
        "the late visits, in a file of their own"
    );
    assert!(
        outcome
            .stderr
            .contains(&format!("(and {} to side outputs)", late.len())),
        "{}",
        outcome.stderr
    );
    let expected = std::fs::read_to_string(example_dir(name).join("data/expected.jsonl"))
        .expect("expected.jsonl");
    assert_eq!(out, expected, "the committed sample output");
    assert_eq!(outcome.stdout, expected, "the stdout sink");
}

#[test]
fn the_windowed_visit_count_in_python_javascript_and_c_gives_the_rust_outputs_exactly() {
    let name = "windowed-visit-count";
    let input = std::fs::read_to_string(example_dir(name).join("data/access.jsonl"))
        .expect("the sample log");
    let (_, late) = brute_force(&parsed(&input));
    let expected = std::fs::read_to_string(example_dir(name).join("data/expected.jsonl"))
        .expect("expected.jsonl");
    for component in [
        test_artifacts::WINDOWED_VISIT_COUNT_PYTHON,
        test_artifacts::WINDOWED_VISIT_COUNT_JS,
        test_artifacts::WINDOWED_VISIT_COUNT_C,
    ] {
        let (job, outcome) = run_example(name, component);
        assert_eq!(outcome.code, 0, "{component}: {}", outcome.stderr);
        assert_eq!(job.committed("out"), expected, "{component}: the counts");
        assert_eq!(
            canonical(&parsed(&job.committed("late"))),
            canonical(&late),
            "{component}: the late visits"
        );
    }
}

/// What the sessions example emits for `clicks`, worked out without windows: each
/// user's clicks in time order, cut where two are more than the gap apart (no click in
/// the sample comes after its session ended).
pub fn sessions_of(clicks: &[Value]) -> Vec<Value> {
    const GAP_MS: i64 = 30 * 60_000;
    let mut times: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for click in clicks {
        let user = click["user"].as_str().expect("a user");
        times
            .entry(user)
            .or_default()
            .push(click["ts"].as_i64().expect("a time"));
    }
    let mut sessions = Vec::new();
    for (user, mut times) in times {
        times.sort_unstable();
        let mut first = 0;
        for i in 1..=times.len() {
            if i == times.len() || times[i] - times[i - 1] > GAP_MS {
                let (start, last) = (times[first], times[i - 1]);
                sessions.push(json!({
                    "user": user, "start": start, "end": last + GAP_MS,
                    "length_ms": last - start, "pages": i - first,
                }));
                first = i;
            }
        }
    }
    sessions
}

#[test]
fn the_sessions_example_cuts_each_users_clicks_at_the_gap_in_every_language() {
    let name = "sessions";
    let input = std::fs::read_to_string(example_dir(name).join("data/clicks.jsonl"))
        .expect("the sample clicks");
    let sessions = sessions_of(&parsed(&input));
    let expected = std::fs::read_to_string(example_dir(name).join("data/expected.jsonl"))
        .expect("expected.jsonl");
    assert_eq!(canonical(&parsed(&expected)), canonical(&sessions));
    for component in [
        test_artifacts::SESSIONS,
        test_artifacts::SESSIONS_PYTHON,
        test_artifacts::SESSIONS_JS,
    ] {
        let (job, outcome) = run_example(name, component);
        assert_eq!(outcome.code, 0, "{component}: {}", outcome.stderr);
        assert_eq!(job.committed("out"), expected, "{component}: the sessions");
        assert_eq!(job.committed("late"), "", "{component}: no click is late");
    }
}
