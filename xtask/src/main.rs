//! Project tasks, run as `cargo xtask <task>`: everything a fresh machine needs is
//! installed here, idempotently, so README's commands and CI work from a fresh clone.

use std::env;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  setup              install what the build needs (the wasm32-wasip2 Rust target)
  example NAME       build the example NAME's component and the host, then run its job
                     (examples: visit-count, consumer-lag, state-machine, dedup)
  test               run every test: unit, harness, and end-to-end with real components
  ci                 setup, then cargo fmt --check, clippy -D warnings, and the tests
  bench checkpoints [RECORDS]
                     keyed count over 1M keys at parallelism 1 and 2, with checkpoints
                     off, every 1 s and every 100 ms: records/s and ratios, the longest
                     synchronous part of a checkpoint, and the checkpoint size
  bench backends [RECORDS]
                     keyed count on the memory and RocksDB backends, 100K and 1M keys

Builds go to $CARGO_TARGET_DIR, by default ~/.cache/weir/target, so that clones share
them: the first build compiles wasmtime and takes several minutes on two cores.";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["setup"] => setup(),
        ["example", name] => setup().and_then(|()| example(name)),
        ["test"] => setup().and_then(|()| test()),
        ["ci"] => setup().and_then(|()| ci()),
        ["bench", "checkpoints"] => setup().and_then(|()| bench_checkpoints(3_000_000)),
        ["bench", "checkpoints", records] => match records.parse() {
            Ok(n) => setup().and_then(|()| bench_checkpoints(n)),
            Err(_) => Err(format!("RECORDS must be a number, not `{records}`")),
        },
        ["bench", "backends"] => setup().and_then(|()| bench_backends(1_000_000)),
        ["bench", "backends", records] => match records.parse() {
            Ok(n) => setup().and_then(|()| bench_backends(n)),
            Err(_) => Err(format!("RECORDS must be a number, not `{records}`")),
        },
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, String>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The shared target directory: `$CARGO_TARGET_DIR`, else `~/.cache/weir/target`.
fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| root().join("target"));
            home.join(".cache/weir/target")
        }
    }
}

fn run(program: &str, args: &[&str]) -> Result {
    eprintln!("xtask: {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(root())
        .env("CARGO_TARGET_DIR", target_dir())
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}

fn cargo(args: &[&str]) -> Result {
    run(&env::var("CARGO").unwrap_or_else(|_| "cargo".into()), args)
}

/// Installs what the build needs and a fresh machine lacks: the Rust target guests are
/// built for, and Debian's libclang-dev (RocksDB's bindings are generated with it).
fn setup() -> Result {
    let clang = Command::new("dpkg").args(["-s", "libclang-dev"]).output();
    if !clang.is_ok_and(|o| o.status.success()) {
        run("apt-get", &["update", "-qq"])?;
        run("apt-get", &["install", "-y", "-qq", "libclang-dev"]).map_err(|e| {
            format!("{e}: RocksDB needs libclang-dev; install it (as root: apt-get install libclang-dev)")
        })?;
    }
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("cannot run rustup (needed to add the wasm32-wasip2 target): {e}"))?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|t| t == "wasm32-wasip2")
    {
        run("rustup", &["target", "add", "wasm32-wasip2"])?;
    }
    Ok(())
}

fn example(name: &str) -> Result {
    let dir = root().join("examples").join(name);
    if !dir.join("job.toml").is_file() {
        return Err(format!(
            "no example `{name}` (looked for {})",
            dir.join("job.toml").display()
        ));
    }
    let file = format!("{}.wasm", name.replace('-', "_"));
    let built = build_component(name)?;
    std::fs::copy(&built, dir.join(&file))
        .map_err(|e| format!("cannot copy {}: {e}", built.display()))?;
    cargo(&["build", "-p", "host"])?;
    let host = target_dir().join("debug/host");
    let job = dir.join("job.toml");
    // A file sink adds part files run after run; the example shows one run's output.
    let _ = std::fs::remove_dir_all(dir.join("out"));
    run(
        host.to_str().ok_or("non-UTF-8 target path")?,
        &["run", job.to_str().ok_or("non-UTF-8 path")?],
    )?;
    eprintln!(
        "xtask: the file sink's output is in {}",
        dir.join("out").display()
    );
    Ok(())
}

/// Builds the operator crate `package` to a component; returns the file.
fn build_component(package: &str) -> Result<PathBuf> {
    cargo(&[
        "build",
        "--target",
        "wasm32-wasip2",
        "--profile",
        "guest",
        "-p",
        package,
    ])?;
    Ok(target_dir()
        .join("wasm32-wasip2/guest")
        .join(format!("{}.wasm", package.replace('-', "_"))))
}

/// Runs every test, echoing cargo's output, and closes with the totals of all test
/// binaries on one line (cargo's own last line is only its last binary's).
fn test() -> Result {
    let args = ["test", "--workspace"];
    eprintln!("xtask: cargo {}", args.join(" "));
    let mut child = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .current_dir(root())
        .env("CARGO_TARGET_DIR", target_dir())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let (mut passed, mut failed) = (0u64, 0u64);
    let stdout = child.stdout.take().ok_or("cargo's stdout is not piped")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("cannot read cargo's output: {e}"))?;
        println!("{line}");
        if let Some(counts) = line.strip_prefix("test result: ") {
            passed += count(counts, "passed");
            failed += count(counts, "failed");
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("cannot wait for cargo: {e}"))?;
    println!("{passed} passed, {failed} failed");
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}

/// The number before `label` in a line like `ok. 19 passed; 0 failed; …`.
fn count(line: &str, label: &str) -> u64 {
    line.split(';')
        .find_map(|part| {
            let mut words = part.split_whitespace().rev();
            (words.next() == Some(label)).then(|| words.next()?.parse().ok())?
        })
        .unwrap_or(0)
}

fn ci() -> Result {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    test()
}

/// One keyed count benchmark job.
struct BenchJob {
    records: u64,
    keys: u64,
    parallelism: u16,
    checkpoint_ms: Option<u64>,
    backend: &'static str,
}

/// Builds the visit-count component and the host; returns a runner of keyed count jobs
/// that gives records/s and the job's checkpoint summary.
fn bench_runner() -> Result<impl Fn(&BenchJob) -> Result<(f64, String)>> {
    let component = build_component("visit-count")?;
    cargo(&["build", "-p", "host"])?;
    let host = target_dir().join("debug/host");
    let work = env::temp_dir().join(format!("weir-bench-{}", std::process::id()));
    Ok(move |b: &BenchJob| {
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work)
            .map_err(|e| format!("cannot create {}: {e}", work.display()))?;
        let checkpoint = b.checkpoint_ms.map_or(String::new(), |ms| {
            format!("[checkpoint]\ninterval_ms = {ms}\ndir = \"checkpoints\"\n")
        });
        let (records, keys, p, backend) = (b.records, b.keys, b.parallelism, b.backend);
        let job = format!(
            "[job]\nname = \"bench\"\n\n[[source]]\nname = \"gen\"\ntype = \"generator\"\ncount = {records}\n\
             keys = {keys}\nkey_field = \"url\"\nparallelism = {p}\n\n[[operator]]\nname = \"count\"\n\
             component = {component:?}\ninput = \"gen\"\nkey_by = \"/url\"\nparallelism = {p}\n\n\
             [[sink]]\nname = \"out\"\ntype = \"file\"\ninput = \"count\"\npath = \"out\"\nparallelism = {p}\n\n\
             [state]\nbackend = \"{backend}\"\ndir = \"local\"\n\n{checkpoint}"
        );
        let path = work.join("job.toml");
        std::fs::write(&path, job).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let started = std::time::Instant::now();
        let output = Command::new(&host)
            .args(["run", path.to_str().ok_or("non-UTF-8 path")?])
            .output()
            .map_err(|e| format!("cannot run the host: {e}"))?;
        let seconds = started.elapsed().as_secs_f64();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let _ = std::fs::remove_dir_all(&work);
        if !output.status.success() {
            return Err(format!("the benchmark job failed:\n{stderr}"));
        }
        // "N checkpoints completed (…)" from the job's summary line.
        let checkpoints = stderr
            .find("checkpoints completed")
            .map(|at| {
                let start = stderr[..at].rfind("; ").map_or(0, |i| i + 2);
                let end = stderr[at..].find(')').map_or(stderr.len(), |i| at + i + 1);
                stderr[start..end].to_string()
            })
            .unwrap_or_else(|| "no checkpoints".into());
        Ok((records as f64 / seconds, checkpoints))
    })
}

/// Keyed count over 1M distinct keys with checkpoints off, every 1 s and every 100 ms.
fn bench_checkpoints(records: u64) -> Result {
    let run = bench_runner()?;
    println!(
        "keyed count (visit-count), {records} records, 1000000 keys, memory backend, file sink"
    );
    for parallelism in [1, 2] {
        let mut baseline = None;
        for checkpoint_ms in [None, Some(1000), Some(100)] {
            let job = BenchJob {
                records,
                keys: 1_000_000,
                parallelism,
                checkpoint_ms,
                backend: "memory",
            };
            let (rate, checkpoints) = run(&job)?;
            let ratio = rate / *baseline.get_or_insert(rate);
            let label = checkpoint_ms.map_or("off".to_string(), |ms| format!("every {ms} ms"));
            println!(
                "p={parallelism} checkpoints {label:>12}: {rate:>10.0} records/s  ratio to off {ratio:.3}  {checkpoints}"
            );
        }
    }
    Ok(())
}

/// Keyed count on the memory and the RocksDB backend, 100K and 1M keys, p = 1.
fn bench_backends(records: u64) -> Result {
    let run = bench_runner()?;
    println!("keyed count (visit-count), {records} records, p=1, file sink, no checkpoints");
    for keys in [100_000, 1_000_000] {
        let mut memory = None;
        for backend in ["memory", "rocksdb"] {
            let job = BenchJob {
                records,
                keys,
                parallelism: 1,
                checkpoint_ms: None,
                backend,
            };
            let (rate, _) = run(&job)?;
            let ratio = rate / *memory.get_or_insert(rate);
            println!(
                "{keys:>8} keys {backend:>8}: {rate:>10.0} records/s  ratio to memory {ratio:.3}"
            );
        }
    }
    Ok(())
}
