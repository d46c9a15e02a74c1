//! `host bench --smoke`: the benchmark suite runs every workload, Wasm and native, and
//! prints the line format README documents.

use crate::support::host;

#[test]
fn the_benchmark_suite_runs_every_workload_in_smoke_mode() {
    let out = host(
        &[
            "bench",
            "--smoke",
            "--component",
            test_artifacts::BENCH_GUEST,
        ],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    for id in ["W1", "W2", "W3", "W4", "W5"] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")) && l.contains("wasm="))
            .unwrap_or_else(|| panic!("no line for {id}: {}", out.stdout));
        let figures: Vec<f64> = line
            .rsplit(": ")
            .next()
            .unwrap_or_default()
            .split(' ')
            .filter_map(|kv| kv.split_once('=')?.1.parse().ok())
            .collect();
        assert_eq!(figures.len(), 3, "wasm=, native=, ratio=: {line}");
        assert!(figures.iter().all(|f| *f > 0.0), "{line}");
    }
    assert!(out.stdout.contains("W5 W1 with 10M keys") && out.stdout.contains("rocksdb"));
    assert!(out.stdout.contains("W1 scaling"), "{}", out.stdout);
    assert!(out.stdout.contains("W1 checkpoints"), "{}", out.stdout);
    assert!(
        out.stdout.contains("W6 W1 and an event-time timer"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("W6 timer cost"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("W7 a count per key and tumbling minute"),
        "{}",
        out.stdout
    );
    let back_pressure = out
        .stdout
        .lines()
        .find(|l| l.starts_with("BP checkpoints"))
        .unwrap_or_else(|| panic!("no BP checkpoint line: {}", out.stdout));
    assert!(
        back_pressure.contains("aligned") && back_pressure.contains("; unaligned "),
        "{back_pressure}"
    );

    let out = host(
        &["bench", "W9", "--component", test_artifacts::BENCH_GUEST],
        "",
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("unknown workload `W9`"),
        "{}",
        out.stderr
    );
}
