//! 10,000 trapping calls in a row leave the host's memory flat: every trap's instance
//! (store, linear memory, tables) is freed. A test binary of its own, so that no other
//! test's allocations move this process's resident memory.

use std::path::Path;

use host::testing::{TestOperator, TestOptions, TestSnapshot};

fn resident_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("read /proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[test]
fn ten_thousand_traps_in_a_row_leave_host_memory_flat() {
    let mut op = TestOperator::load(Path::new(test_artifacts::MISBEHAVE), TestOptions::default())
        .expect("loads");
    let trap = |op: &mut TestOperator| {
        let error = op
            .push("{\"do\":\"panic\",\"message\":\"again\"}")
            .expect_err("the guest traps");
        assert!(error.to_string().contains("again"), "{error}");
        *op = op
            .restored(&TestSnapshot::default())
            .expect("a fresh instance");
    };
    for _ in 0..1_000 {
        trap(&mut op);
    }
    let before = resident_kb();
    for _ in 0..10_000 {
        trap(&mut op);
    }
    let grown_kb = resident_kb().saturating_sub(before);
    // One leaked instance would hold at least its linear memory (over 1 MiB).
    assert!(
        grown_kb < 16 * 1024,
        "resident memory grew by {grown_kb} kB over 10,000 traps"
    );
}
