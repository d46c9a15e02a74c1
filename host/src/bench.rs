//! `host bench`: the benchmark suite (W1–W8, BP). Each workload runs as the Wasm operator of
//! `bench/guest` and as its native twin (`native`), in the same host, dataflow, records
//! and backend; a line per workload gives both rates and the ratio of their times.
//!
//! Every run is a child process (`host bench --run-job`), so that each peak resident
//! memory figure is that run's alone.
//!
//! A benchmark, not a test: it prints figures and checks only that both variants emitted
//! the same number of records (the twins must compute the same thing).

mod kafka;
mod native;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::dataflow::{self, Start};
use crate::folder::Folder;
use crate::job;
use crate::wasm::Runtime;

/// What `host bench` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Workload ids (`W1`…`W6`, `BP`); empty for all.
    pub workloads: Vec<String>,
    /// Records per run instead of each workload's default.
    pub records: Option<u64>,
    /// A tiny run of everything: checks that the suite works, measures nothing.
    pub smoke: bool,
    /// The `bench-guest` component.
    pub component: PathBuf,
    /// W8's Kafka cluster; none: the tools folder's broker, started for the run.
    pub brokers: Option<String>,
}

/// One workload of the suite.
struct Workload {
    id: &'static str,
    /// Another name it answers to on the command line.
    alias: Option<&'static str>,
    title: &'static str,
    /// `[operator.config] workload`.
    config: &'static str,
    keys: u64,
    records: u64,
    backends: &'static [&'static str],
    /// Whether its records carry event time (`time_field`) and a watermark: record *i*
    /// at *i* times this many µs.
    time_step_us: Option<u64>,
}

const SUITE: &[Workload] = &[
    Workload {
        alias: None,
        id: "W1",
        title: "keyed count (ValueState<u64>)",
        config: "count",
        keys: 100_000,
        records: 10_000_000,
        backends: &["memory"],
        time_step_us: None,
    },
    Workload {
        alias: None,
        id: "W2",
        title: "dedup, the item ids each user has seen (MapState)",
        config: "dedup",
        keys: 10_000,
        records: 10_000_000,
        backends: &["memory"],
        time_step_us: None,
    },
    Workload {
        alias: None,
        id: "W3",
        title: "state machine per address (ValueState)",
        config: "state-machine",
        keys: 100_000,
        records: 10_000_000,
        backends: &["memory"],
        time_step_us: None,
    },
    Workload {
        alias: None,
        id: "W4",
        title: "last 10 events per key (ListState)",
        config: "last-ten",
        keys: 100_000,
        records: 10_000_000,
        backends: &["memory"],
        time_step_us: None,
    },
    Workload {
        alias: None,
        id: "W5",
        title: "W1 with 10M keys",
        config: "count",
        keys: 10_000_000,
        records: 10_000_000,
        backends: &["memory", "rocksdb"],
        time_step_us: None,
    },
    Workload {
        alias: Some("timers"),
        id: "W6",
        title: "W1 and an event-time timer per record, 1 s after it (registered, fired)",
        config: "timer",
        keys: 100_000,
        records: 10_000_000,
        backends: &["memory"],
        time_step_us: Some(1000),
    },
    Workload {
        alias: Some("windows"),
        id: "W7",
        title: "a count per key and tumbling minute of event time (guest_sdk::window)",
        config: "window",
        keys: 100_000,
        records: 10_000_000,
        backends: &["memory"],
        // 1 s of event time per 10K records, as the Flink peer's `mode=window`.
        time_step_us: Some(100),
    },
    Workload {
        alias: Some("checkpoint-backpressure"),
        id: "BP",
        title: "W1 behind ~300 µs of work per record (an operator slower than its source)",
        config: "slow",
        keys: 100_000,
        records: 120_000,
        backends: &[],
        time_step_us: None,
    },
    Workload {
        alias: Some("kafka"),
        id: "W8",
        title: "running count (W1, emitting each count) from a 4-partition Kafka topic to a topic, checkpoints every 1 s",
        config: "running-count",
        keys: 100_000,
        records: 2_000_000,
        backends: &[],
        time_step_us: None,
    },
];

impl Workload {
    /// Whether `name` on the command line means this workload.
    fn is_called(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case(self.id) || self.alias == Some(name)
    }
}

/// One run's settings.
struct Run<'a> {
    workload: &'a Workload,
    keys: u64,
    records: u64,
    backend: &'a str,
    parallelism: u16,
    checkpoint_ms: Option<u64>,
    /// With checkpoints: unaligned (`aligned_timeout_ms = 0`).
    unaligned: bool,
    native: bool,
    /// From a Kafka topic to a topic (W8) instead of a generator to files.
    kafka: Option<kafka::Topics>,
}

/// What one run measured.
struct Measured {
    records_per_second: f64,
    seconds: f64,
    emitted: u64,
    peak_rss_mb: Option<f64>,
    /// Checkpoints completed, their median duration in ms, and their channel-state bytes.
    checkpoints: (u64, f64, u64),
}

/// Runs the suite and prints its figures.
pub fn run(options: &Options) -> Result<(), String> {
    let selected: Vec<&Workload> = SUITE
        .iter()
        .filter(|w| {
            options.workloads.is_empty() || options.workloads.iter().any(|id| w.is_called(id))
        })
        .collect();
    if let Some(unknown) = options
        .workloads
        .iter()
        .find(|id| !SUITE.iter().any(|w| w.is_called(id)))
    {
        return Err(format!(
            "unknown workload `{unknown}`: the suite has W1 to W8 (W6: timers, W7: windows, W8: \
             Kafka) and BP (checkpoint-backpressure)"
        ));
    }
    if !options.component.is_file() {
        return Err(format!(
            "{}: no such component (build bench/guest for wasm32-wasip2; `cargo xtask bench` does)",
            options.component.display()
        ));
    }
    let bench = Bench::new(options)?;
    let mode = if cfg!(debug_assertions) {
        "debug build: figures are not representative"
    } else {
        "release build"
    };
    println!(
        "host bench: generator → operator → file sink, {} core(s), {mode}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for workload in selected {
        for backend in workload.backends {
            bench.compare(workload, backend)?;
        }
        if workload.id == "W1" {
            bench.scaling(workload)?;
            bench.checkpoint_cost(workload)?;
        }
        if workload.id == "W6" {
            bench.timer_cost(workload)?;
        }
        if workload.id == "BP" {
            bench.checkpoints_under_back_pressure(workload)?;
        }
        if workload.id == "W8" {
            bench.kafka(workload)?;
        }
    }
    Ok(())
}

/// Runs the job in `job` in this process, natively if `native`, and prints what a
/// parent `host bench` reads: `measured <seconds> <records emitted> <peak RSS MB>`.
pub fn run_child(job: &Path, native: bool) -> Result<(), String> {
    let text =
        std::fs::read_to_string(job).map_err(|e| format!("cannot read {}: {e}", job.display()))?;
    let job = job::parse(job, &text).map_err(|e| e.to_string())?;
    let runtime = Runtime::new().map_err(|e| format!("cannot start the Wasm runtime: {e:#}"))?;
    let started = Instant::now();
    let report = dataflow::run(
        &job,
        &runtime,
        &Start {
            native: native.then_some(native::factory as dataflow::NativeFactory),
            ..Start::default()
        },
        &Arc::new(AtomicBool::new(false)),
    )
    .map_err(|failure| format!("the job failed: {failure}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let emitted: u64 = report.operators.iter().map(|o| o.records_out).sum();
    let peak = peak_rss_mb().unwrap_or(f64::NAN);
    let checkpoints = &report.checkpoints;
    let mut durations = checkpoints.durations.clone();
    durations.sort();
    let median = durations
        .get(durations.len() / 2)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    println!(
        "measured {seconds} {emitted} {peak} {} {median} {}",
        checkpoints.completed, checkpoints.channel_state_bytes
    );
    Ok(())
}

/// This process's peak resident memory in MB (Linux), if known.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

struct Bench<'o> {
    options: &'o Options,
    /// Scratch space for the runs.
    work: Folder,
}

impl Bench<'_> {
    fn new(options: &Options) -> Result<Bench<'_>, String> {
        Ok(Bench {
            options,
            work: {
                let path = std::env::temp_dir().join(format!("weir-bench-{}", std::process::id()));
                Folder::create(path.clone())
                    .map_err(|e| format!("cannot create {}: {e}", path.display()))?
            },
        })
    }

    /// Keys and records of `workload` for this invocation.
    fn size(&self, workload: &Workload) -> (u64, u64) {
        if self.options.smoke {
            (workload.keys.min(1000), 20_000)
        } else {
            (
                workload.keys,
                self.options.records.unwrap_or(workload.records),
            )
        }
    }

    /// The workload's line: Wasm and native on `backend`, p = 1.
    fn compare(&self, workload: &Workload, backend: &str) -> Result<(), String> {
        let (keys, records) = self.size(workload);
        let run = |native| Run {
            workload,
            keys,
            records,
            backend,
            parallelism: 1,
            checkpoint_ms: None,
            unaligned: false,
            native,
            kafka: None,
        };
        let wasm = self.measure(&run(false))?;
        let native = self.measure(&run(true))?;
        if wasm.emitted != native.emitted {
            return Err(format!(
                "{}: the Wasm operator emitted {} records and its native twin {}: they do not compute the same thing",
                workload.id, wasm.emitted, native.emitted
            ));
        }
        let rss = |m: &Measured| {
            m.peak_rss_mb
                .map_or("?".into(), |mb| format!("{mb:.0} MiB"))
        };
        println!(
            "{} {}, {keys} keys, {records} records, {backend}, p=1, peak RSS {} / {}: wasm={:.0} native={:.0} ratio={:.2}",
            workload.id,
            workload.title,
            rss(&wasm),
            rss(&native),
            wasm.records_per_second,
            native.records_per_second,
            wasm.seconds / native.seconds
        );
        Ok(())
    }

    /// What a timer per record adds to W1's cost per record, Wasm, on the same timed
    /// input (so that only the timers differ).
    fn timer_cost(&self, timers: &Workload) -> Result<(), String> {
        const PAIRS: usize = 3;
        let (keys, records) = self.size(timers);
        let count = Workload {
            config: "count",
            ..*SUITE
                .iter()
                .find(|w| w.id == "W1")
                .expect("W1 is in the suite")
        };
        let count = Workload {
            time_step_us: timers.time_step_us,
            ..count
        };
        let run = |workload| Run {
            workload,
            keys,
            records,
            backend: "memory",
            parallelism: 1,
            checkpoint_ms: None,
            unaligned: false,
            native: false,
            kafka: None,
        };
        // A difference of a few tens of percent drowns in this machine's run-to-run
        // noise: pairs run in turn, and the line gives the median pair.
        let mut pairs = Vec::new();
        for _ in 0..PAIRS {
            let without = self.measure(&run(&count))?;
            let with = self.measure(&run(timers))?;
            pairs.push((with.seconds / without.seconds, without, with));
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let each: Vec<String> = (pairs.iter())
            .map(|(ratio, ..)| format!("{:+.0}%", (ratio - 1.0) * 100.0))
            .collect();
        let (ratio, without, with) = &pairs[pairs.len() / 2];
        println!(
            "W6 timer cost, wasm, {keys} keys, {records} timed records, median of {PAIRS} pairs ({}): W1 {:.0}/s, W1 with a timer per record {:.0}/s: +{:.1}% per record",
            each.join(", "),
            without.records_per_second,
            with.records_per_second,
            (ratio - 1.0) * 100.0
        );
        Ok(())
    }

    /// Parallelism 2 against 1, Wasm.
    fn scaling(&self, workload: &Workload) -> Result<(), String> {
        let (keys, records) = self.size(workload);
        let run = |parallelism| Run {
            workload,
            keys,
            records,
            backend: "memory",
            parallelism,
            checkpoint_ms: None,
            unaligned: false,
            native: false,
            kafka: None,
        };
        let one = self.measure(&run(1))?;
        let two = self.measure(&run(2))?;
        println!(
            "{} scaling, wasm: p=1 {:.0} records/s, p=2 {:.0} records/s: p=2 / p=1 = {:.2}",
            workload.id,
            one.records_per_second,
            two.records_per_second,
            two.records_per_second / one.records_per_second
        );
        Ok(())
    }

    /// Checkpoints every second against none, aligned and unaligned, 1M keys, Wasm.
    fn checkpoint_cost(&self, workload: &Workload) -> Result<(), String> {
        let (_, records) = self.size(workload);
        let keys = if self.options.smoke { 1000 } else { 1_000_000 };
        let run = |checkpoint_ms, unaligned| Run {
            workload,
            keys,
            records,
            backend: "memory",
            parallelism: 1,
            checkpoint_ms,
            unaligned,
            native: false,
            kafka: None,
        };
        let off = self.measure(&run(None, false))?;
        let aligned = self.measure(&run(Some(1000), false))?;
        let unaligned = self.measure(&run(Some(1000), true))?;
        let cost = |m: &Measured| (1.0 - m.records_per_second / off.records_per_second) * 100.0;
        println!(
            "{} checkpoints, wasm, {keys} keys: off {:.0} records/s, every 1 s {:.0} records/s: cost {:.1}%; unaligned {:.0} records/s: cost {:.1}%",
            workload.id,
            off.records_per_second,
            aligned.records_per_second,
            cost(&aligned),
            unaligned.records_per_second,
            cost(&unaligned)
        );
        Ok(())
    }

    /// Checkpoints every second through full channels (after Flink's
    /// CheckpointingTimeBenchmark): aligned against unaligned, Wasm, p = 2 (so that a
    /// barrier crosses a keyed shuffle as well as queues).
    fn checkpoints_under_back_pressure(&self, workload: &Workload) -> Result<(), String> {
        let (keys, records) = self.size(workload);
        let run = |unaligned| Run {
            workload,
            keys,
            records,
            backend: "memory",
            parallelism: 2,
            checkpoint_ms: Some(1000),
            unaligned,
            native: false,
            kafka: None,
        };
        let aligned = self.measure(&run(false))?;
        let unaligned = self.measure(&run(true))?;
        let line = |m: &Measured| {
            let (completed, median, bytes) = m.checkpoints;
            format!(
                "{completed} completed, median {median:.0} ms, {} KiB of channel state in all, {:.0} records/s",
                bytes / 1024,
                m.records_per_second
            )
        };
        println!(
            "{} checkpoints every 1 s under back-pressure, wasm, p=2: aligned {}; unaligned {}",
            workload.id,
            line(&aligned),
            line(&unaligned)
        );
        Ok(())
    }

    /// Runs one job in a child process and measures it.
    fn measure(&self, run: &Run<'_>) -> Result<Measured, String> {
        let dir = self.work.path().join(format!(
            "{}-{}-{}",
            run.workload.id,
            run.backend,
            if run.native { "native" } else { "wasm" }
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let job = dir.join("job.toml");
        std::fs::write(&job, self.job(run))
            .map_err(|e| format!("cannot write {}: {e}", job.display()))?;
        let host = std::env::current_exe().map_err(|e| format!("cannot find the host: {e}"))?;
        let mut command = std::process::Command::new(host);
        command.args(["bench", "--component"]);
        command
            .arg(&self.options.component)
            .arg("--run-job")
            .arg(&job);
        if run.native {
            command.arg("--native");
        }
        let output = command
            .output()
            .map_err(|e| format!("cannot run the host: {e}"))?;
        let _ = std::fs::remove_dir_all(&dir);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let figures: Vec<f64> = stdout
            .lines()
            .find_map(|l| l.strip_prefix("measured "))
            .map(|l| l.split(' ').filter_map(|n| n.parse().ok()).collect())
            .unwrap_or_default();
        match (output.status.success(), figures.as_slice()) {
            (true, &[seconds, emitted, peak, completed, median, in_flight]) => Ok(Measured {
                records_per_second: run.records as f64 / seconds,
                seconds,
                emitted: emitted as u64,
                peak_rss_mb: peak.is_finite().then_some(peak),
                checkpoints: (completed as u64, median, in_flight as u64),
            }),
            _ => Err(format!(
                "{} ({}, {}): {}",
                run.workload.id,
                run.backend,
                if run.native { "native" } else { "wasm" },
                String::from_utf8_lossy(&output.stderr).trim()
            )),
        }
    }

    fn job(&self, run: &Run<'_>) -> String {
        let checkpoint = run.checkpoint_ms.map_or(String::new(), |ms| {
            let unaligned = if run.unaligned {
                "unaligned = true\n"
            } else {
                ""
            };
            format!("[checkpoint]\ninterval_ms = {ms}\ndir = \"checkpoints\"\n{unaligned}")
        });
        let time = run.workload.time_step_us.map_or(String::new(), |step| {
            format!(
                "time_field = \"ts\"\nevent_time_step_us = {step}\nwatermark = {{ out_of_orderness_ms = 0 }}\n"
            )
        });
        let (source, sink) = match &run.kafka {
            Some(topics) => topics.sections(run.parallelism),
            None => (
                format!(
                    "type = \"generator\"\ncount = {}\nkeys = {}\nparallelism = {}\n{time}",
                    run.records, run.keys, run.parallelism
                ),
                format!(
                    "type = \"file\"\npath = \"out\"\nparallelism = {}\n",
                    run.parallelism
                ),
            ),
        };
        format!(
            r#"[job]
name = "bench"

[[source]]
name = "gen"
{source}
[[operator]]
name = "op"
component = {component:?}
input = "gen"
key_by = "/key"
parallelism = {p}
[operator.config]
workload = "{workload}"

[[sink]]
name = "out"
input = "op"
{sink}
[state]
backend = "{backend}"
dir = "local"

{checkpoint}"#,
            p = run.parallelism,
            component = self.options.component,
            workload = run.workload.config,
            backend = run.backend,
        )
    }
}
