//! Project tasks, run as `cargo xtask <task>`: everything a fresh machine needs is
//! installed here, idempotently, so README's commands and CI work from a fresh clone.

use std::env;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

#[path = "../../host/src/author/languages.rs"]
mod languages;

use languages::Language;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  setup              install what the build needs: the wasm32-wasip2 Rust target, libclang
                     (for RocksDB), and the tools for Python, JavaScript and C operators
                     (in ~/.cache/weir/tools), and the Kafka broker the tests start
  install            install an optimised `host` (release, with RocksDB) into ~/.cargo/bin
  example NAME [LANGUAGE]
                     build the example NAME's component and the host, then run its job
                     (examples: visit-count, consumer-lag, state-machine, dedup,
                     fraud-rules, idle-alert, windowed-visit-count, sessions; LANGUAGE:
                     rust (default), or python, js, c where the example has that folder);
                     installs only what that needs, and builds the host without RocksDB
                     unless the job uses it
  example NAME kafka the example's Kafka version (visit-count, consumer-lag): loads its
                     data into a topic, runs the job topic to topic (exactly-once), prints
                     the output topic; a broker on 127.0.0.1:9092 (started if none is)
  test               run every test: unit, harness, and end-to-end with real components
  ci                 setup, then cargo fmt --check, clippy -D warnings, and the tests
  bench [ARGS...]    the benchmark suite (W1-W8, Wasm vs native): builds bench-guest and
                     the release host, then runs `host bench --component <bench-guest>
                     ARGS...` (e.g. `cargo xtask bench W1 --records 1000000`, `--smoke`);
                     every bench command runs the release host (WEIR_BENCH_DEV=1: the dev
                     build)
  bench --peer flink [--rounds N]
                     each like-for-like workload next to its Apache Flink peer
                     (../shared/peers/flink/run.sh, or $WEIR_FLINK_PEER), N rounds
                     (default 3) run in turn; prints the table of medians and ratios
  fuzz [TARGET [SECONDS]]
                     runs the cargo-fuzz targets (checkpoint_metadata, state_snapshot,
                     savepoint, job_file, key_extraction; default all, 600 s each) with
                     nightly; new inputs go to ~/.cache/weir/fuzz-corpus, crashes to
                     fuzz/artifacts
  bench languages [RECORDS]
                     visit-count in Rust, Python, JavaScript and C: component size,
                     compile time with and without the compile cache, records/s over
                     RECORDS generated records (default 1000000, 10000 URLs)
  bench state [KEYS...]
                     per number of keys (default 1000000 10000000): records/s of memory
                     and RocksDB; checkpoint duration and bytes written, RocksDB full vs
                     incremental; restore time per GB of checkpoint on both backends

Builds go to $CARGO_TARGET_DIR, by default ~/.cache/weir/target, so that clones share
them: the first build compiles wasmtime and takes several minutes on two cores.";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["setup"] => setup(),
        ["install"] => install(),
        ["example", name] => example(name, None),
        ["example", name, "rust"] => example(name, None),
        ["example", name, "kafka"] => example_kafka(name),
        ["example", name, language] => match languages::LANGUAGES
            .into_iter()
            .find(|l| l.name() == *language)
        {
            Some(language) => languages::install_for(language, &languages::tools_dir())
                .and_then(|()| example(name, Some(language))),
            None => Err(format!(
                "no language `{language}`: use rust, python, js or c"
            )),
        },
        ["test"] => setup().and_then(|()| test()),
        ["ci"] => setup().and_then(|()| ci()),
        ["fuzz"] => fuzz(&FUZZ_TARGETS, 600),
        ["fuzz", target] => fuzz(&[target], 600),
        ["fuzz", target, seconds] => seconds
            .parse()
            .map_err(|_| format!("SECONDS must be a number, not `{seconds}`"))
            .and_then(|s| fuzz(&[target], s)),
        ["bench", "languages"] => setup().and_then(|()| bench_languages(1_000_000)),
        ["bench", "languages", records] => records
            .parse()
            .map_err(|_| format!("RECORDS must be a number, not `{records}`"))
            .and_then(|n| setup().and_then(|()| bench_languages(n))),
        ["bench", "state"] => setup().and_then(|()| bench_state(&[1_000_000, 10_000_000])),
        ["bench", "state", keys @ ..] => keys
            .iter()
            .map(|k| {
                k.parse()
                    .map_err(|_| format!("KEYS must be numbers, not `{k}`"))
            })
            .collect::<Result<Vec<u64>>>()
            .and_then(|keys| setup().and_then(|()| bench_state(&keys))),
        ["bench", "--peer", "flink"] => setup().and_then(|()| bench_peer(3)),
        ["bench", "--peer", "flink", "--rounds", rounds] => rounds
            .parse()
            .map_err(|_| format!("ROUNDS must be a number, not `{rounds}`"))
            .and_then(|n| setup().and_then(|()| bench_peer(n))),
        ["bench", args @ ..] => setup().and_then(|()| bench_suite(args)),
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
    // `cargo run` sets it at run time too: a binary last built from another checkout
    // sharing the target directory still works on this one.
    let manifest = env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest
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
/// built for, Debian's libclang-dev (RocksDB's bindings are generated with it), and every
/// language's tools.
fn setup() -> Result {
    setup_rocksdb()?;
    setup_wasm_target()?;
    languages::install(&languages::tools_dir())?;
    setup_kafka_broker(&languages::tools_dir())
}

/// The Kafka-protocol broker the Kafka tests and examples start, from PyPI.
const KAFKA_BROKER: &str = "noida-db==0.2.3";

/// Installs the tests' Kafka broker into `<tools>/kafka` (a virtualenv), and links its
/// binary as `<tools>/kafka/broker`: started directly, the PID a test stops is the
/// broker's, not a Python wrapper's.
fn setup_kafka_broker(tools: &Path) -> Result {
    let dir = tools.join("kafka");
    let link = dir.join("broker");
    let version = KAFKA_BROKER.split("==").nth(1).unwrap_or_default();
    let installed = fs::read_to_string(dir.join("installed")).is_ok_and(|v| v == version);
    if installed && link.exists() {
        return Ok(());
    }
    run(
        "python3",
        &["-m", "venv", dir.to_str().ok_or("non-UTF-8 path")?],
    )?;
    let pip = dir.join("bin/pip");
    run(
        pip.to_str().ok_or("non-UTF-8 path")?,
        &["install", "-q", KAFKA_BROKER],
    )?;
    let binary = fs::read_dir(dir.join("lib"))
        .map_err(|e| format!("cannot list {}: {e}", dir.join("lib").display()))?
        .flatten()
        .map(|python| python.path().join("site-packages/noida_db/noida-db"))
        .find(|b| b.is_file())
        .ok_or_else(|| {
            format!(
                "{KAFKA_BROKER} installed no broker binary under {}",
                dir.display()
            )
        })?;
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&binary, &link)
        .map_err(|e| format!("cannot link {}: {e}", link.display()))?;
    fs::write(dir.join("installed"), version)
        .map_err(|e| format!("cannot write {}: {e}", dir.display()))?;
    Ok(())
}

/// Debian's libclang-dev, which RocksDB's build needs.
fn setup_rocksdb() -> Result {
    let clang = Command::new("dpkg").args(["-s", "libclang-dev"]).output();
    if !clang.is_ok_and(|o| o.status.success()) {
        run("apt-get", &["update", "-qq"])?;
        run("apt-get", &["install", "-y", "-qq", "libclang-dev"]).map_err(|e| {
            format!("{e}: RocksDB needs libclang-dev; install it (as root: apt-get install libclang-dev)")
        })?;
    }
    Ok(())
}

/// The Rust target operators are built for.
fn setup_wasm_target() -> Result {
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

/// `cargo install` of the host (release profile, with RocksDB) into cargo's bin folder,
/// which rustup puts on the PATH.
fn install() -> Result {
    setup_rocksdb()?;
    setup_wasm_target()?;
    cargo(&[
        "install",
        "--locked",
        "--path",
        root().join("host").to_str().ok_or("non-UTF-8 path")?,
    ])?;
    eprintln!(
        "xtask: installed `host` into ~/.cargo/bin (cargo's bin folder); `host --version` says which WIT it speaks"
    );
    Ok(())
}

fn example(name: &str, language: Option<Language>) -> Result {
    let dir = root().join("examples").join(name);
    if !dir.join("job.toml").is_file() {
        return Err(format!(
            "no example `{name}` (looked for {})",
            dir.join("job.toml").display()
        ));
    }
    setup_wasm_target()?;
    // RocksDB's C++ build is most of a first build: only when the job uses it.
    let text = std::fs::read_to_string(dir.join("job.toml"))
        .map_err(|e| format!("cannot read {}: {e}", dir.join("job.toml").display()))?;
    let rocksdb = text.contains("\"rocksdb\"");
    if rocksdb {
        setup_rocksdb()?;
    }
    example_component(name, &dir, language)?;
    match rocksdb {
        true => cargo(&["build", "-p", "host"])?,
        false => cargo(&["build", "-p", "host", "--no-default-features"])?,
    }
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

/// Runs example `name`'s Kafka version (its `kafka/` folder): loads the sample data into
/// a topic, runs the job from topic to topic, prints the output topic. The jobs name a
/// broker on 127.0.0.1:9092: the tools folder's, started for the run, unless one is
/// listening there already.
fn example_kafka(name: &str) -> Result {
    let example = root().join("examples").join(name);
    let dir = example.join("kafka");
    if !dir.join("job.toml").is_file() {
        return Err(format!(
            "example `{name}` has no Kafka version ({} is missing)",
            dir.join("job.toml").display()
        ));
    }
    setup_wasm_target()?;
    setup_kafka_broker(&languages::tools_dir())?;
    example_component(name, &example, None)?;
    cargo(&["build", "-p", "host", "--no-default-features"])?;
    let _broker = match std::net::TcpStream::connect("127.0.0.1:9092") {
        Ok(_) => {
            eprintln!("xtask: using the Kafka broker already listening on 127.0.0.1:9092");
            None
        }
        Err(_) => Some(Broker::start(9092)?),
    };
    let _ = std::fs::remove_dir_all(dir.join("checkpoints"));
    let host = target_dir().join("debug/host");
    for job in ["load.toml", "job.toml", "show.toml"] {
        let path = dir.join(job);
        run(
            host.to_str().ok_or("non-UTF-8 target path")?,
            &["run", path.to_str().ok_or("non-UTF-8 path")?],
        )?;
    }
    Ok(())
}

/// The tools folder's Kafka broker on a port, stopped when dropped.
struct Broker(std::process::Child);

impl Broker {
    fn start(port: u16) -> Result<Broker> {
        let data = target_dir().join("kafka-example");
        let _ = fs::remove_dir_all(&data);
        fs::create_dir_all(&data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
        let binary = languages::tools_dir().join("kafka/broker");
        eprintln!(
            "xtask: starting a Kafka broker on 127.0.0.1:{port} ({})",
            binary.display()
        );
        let child = Command::new(&binary)
            .args(["start", "--data-dir"])
            .arg(&data)
            .args(["--host", "127.0.0.1", "--only", "kafka", "--kafka-port"])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let broker = Broker(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                return Err(format!("the Kafka broker did not start on port {port}"));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(broker)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Builds example `name`'s component (Rust, or `language`'s folder) into the example's
/// folder as `<name>.wasm`, which its jobs name.
fn example_component(name: &str, dir: &Path, language: Option<Language>) -> Result {
    // The job names `<name>.wasm`: whichever language built it last.
    let file = dir.join(format!("{}.wasm", name.replace('-', "_")));
    match language {
        None => {
            let built = build_component(name)?;
            std::fs::copy(&built, &file)
                .map_err(|e| format!("cannot copy {}: {e}", built.display()))?;
        }
        Some(language) => {
            let source = dir.join(language.folder_and_entry().0);
            if !source.is_dir() {
                return Err(format!(
                    "example `{name}` has no {} version ({} is missing)",
                    language.name(),
                    source.display()
                ));
            }
            let scratch = target_dir().join("polyglot").join(name);
            std::fs::create_dir_all(&scratch)
                .map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
            eprintln!(
                "xtask: building {} from {}",
                file.display(),
                source.display()
            );
            languages::build(language, &root(), &source, &file, &scratch)?;
        }
    }
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
    incremental: bool,
}

impl BenchJob {
    /// Keyed count over a generator, every stage at the same parallelism.
    fn toml(&self, component: &Path) -> String {
        let checkpoint = self.checkpoint_ms.map_or(String::new(), |ms| {
            format!("[checkpoint]\ninterval_ms = {ms}\ndir = \"checkpoints\"\n")
        });
        let (records, keys, p, backend) = (self.records, self.keys, self.parallelism, self.backend);
        format!(
            "[job]\nname = \"bench\"\n\n[[source]]\nname = \"gen\"\ntype = \"generator\"\ncount = {records}\n\
             keys = {keys}\nkey_field = \"url\"\nparallelism = {p}\n\n[[operator]]\nname = \"count\"\n\
             component = {component:?}\ninput = \"gen\"\nkey_by = \"/url\"\nparallelism = {p}\n\n\
             [[sink]]\nname = \"out\"\ntype = \"file\"\ninput = \"count\"\npath = \"out\"\nparallelism = {p}\n\n\
             [state]\nbackend = \"{backend}\"\ndir = \"local\"\nincremental = {}\n\n{checkpoint}",
            self.incremental
        )
    }
}

/// Builds the visit-count component and the host; returns a runner of keyed count jobs
/// that gives records/s and the job's stderr (run with `--verbose`).
fn bench_runner() -> Result<impl Fn(&BenchJob) -> Result<(f64, String)>> {
    let (component, host) = bench_binaries()?;
    let work = env::temp_dir().join(format!("weir-bench-{}", std::process::id()));
    Ok(move |b: &BenchJob| {
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work)
            .map_err(|e| format!("cannot create {}: {e}", work.display()))?;
        let path = work.join("job.toml");
        std::fs::write(&path, b.toml(&component))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let started = std::time::Instant::now();
        let output = Command::new(&host)
            .args(["run", "--verbose", path.to_str().ok_or("non-UTF-8 path")?])
            .output()
            .map_err(|e| format!("cannot run the host: {e}"))?;
        let seconds = started.elapsed().as_secs_f64();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let _ = std::fs::remove_dir_all(&work);
        if !output.status.success() {
            return Err(format!("the benchmark job failed:\n{stderr}"));
        }
        Ok((b.records as f64 / seconds, stderr))
    })
}

fn bench_dev() -> bool {
    env::var_os("WEIR_BENCH_DEV").is_some_and(|v| v == "1")
}

/// Which build of the host the benchmarks run, for their tables.
fn bench_build() -> &'static str {
    match bench_dev() {
        true => "dev build",
        false => "release build",
    }
}

/// The host the benchmarks run: the release build a user installs, or with
/// `WEIR_BENCH_DEV=1` the dev build the tests use (faster to build, our code at
/// `opt-level = 1`).
fn bench_host() -> Result<PathBuf> {
    if bench_dev() {
        cargo(&["build", "-p", "host"])?;
        return Ok(target_dir().join("debug/host"));
    }
    cargo(&["build", "--release", "-p", "host"])?;
    Ok(target_dir().join("release/host"))
}

/// The visit-count component and the host, built.
fn bench_binaries() -> Result<(PathBuf, PathBuf)> {
    let component = build_component("visit-count")?;
    Ok((component, bench_host()?))
}

/// Per completed checkpoint (`--verbose` lines): milliseconds, bytes of state, bytes written.
fn checkpoint_lines(stderr: &str) -> Vec<(f64, u64, u64)> {
    stderr
        .lines()
        .filter_map(|line| {
            let rest = line.split(" completed in ").nth(1)?;
            let (duration, rest) = rest.split_once(" (")?;
            let mut numbers = rest.split(' ').filter_map(|w| w.parse::<u64>().ok());
            Some((millis(duration)?, numbers.next()?, numbers.next()?))
        })
        .collect()
}

/// A Rust `Duration` debug string (`1.5s`, `12.3ms`, `40µs`) in milliseconds.
fn millis(text: &str) -> Option<f64> {
    for (unit, scale) in [("ms", 1.0), ("µs", 1e-3), ("ns", 1e-6), ("s", 1e3)] {
        if let Some(n) = text.strip_suffix(unit) {
            return n.parse::<f64>().ok().map(|n| n * scale);
        }
    }
    None
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// `host bench`, with the bench-guest component built.
fn bench_suite(args: &[&str]) -> Result {
    let component = build_component("bench-guest")?;
    let host = bench_host()?;
    let component = component.to_str().ok_or("non-UTF-8 path")?;
    let mut all = vec!["bench", "--component", component];
    all.extend_from_slice(args);
    run(host.to_str().ok_or("non-UTF-8 target path")?, &all)
}

/// One row of the peer table: a Weir bench-guest job and the Flink peer's arguments.
struct PeerRow {
    label: &'static str,
    /// The bench guest's `workload`.
    workload: &'static str,
    keys: u64,
    parallelism: u16,
    backend: &'static str,
    /// Event time per record, in µs (W7), if any.
    time_step_us: Option<u64>,
    flink: &'static [&'static str],
}

const RECORDS: u64 = 10_000_000;

const PEER_ROWS: &[PeerRow] = &[
    PeerRow {
        label: "W1 keyed count, JSON records, p=1 (Flink mode=json)",
        workload: "count",
        keys: 100_000,
        parallelism: 1,
        backend: "memory",
        time_step_us: None,
        flink: &["mode=json", "keys=100000"],
    },
    PeerRow {
        label: "W1 keyed count, p=1 (Flink mode=count: binary Tuple2<Long,Long>)",
        workload: "count",
        keys: 100_000,
        parallelism: 1,
        backend: "memory",
        time_step_us: None,
        flink: &["mode=count", "keys=100000"],
    },
    PeerRow {
        label: "W1 keyed count, JSON records, p=2 (Flink mode=json p=2)",
        workload: "count",
        keys: 100_000,
        parallelism: 2,
        backend: "memory",
        time_step_us: None,
        flink: &["mode=json", "keys=100000", "p=2"],
    },
    PeerRow {
        label: "W2 dedup, 10K users, MapState (Flink mode=dedup items=1000)",
        workload: "dedup",
        keys: 10_000,
        parallelism: 1,
        backend: "memory",
        time_step_us: None,
        flink: &["mode=dedup", "keys=10000", "items=1000"],
    },
    PeerRow {
        label: "W5 keyed count, 10M keys, RocksDB (Flink backend=rocksdb)",
        workload: "count",
        keys: 10_000_000,
        parallelism: 1,
        backend: "rocksdb",
        time_step_us: None,
        flink: &["backend=rocksdb", "keys=10000000"],
    },
    PeerRow {
        label: "W7 tumbling 1-minute count, 100K keys (Flink mode=window)",
        workload: "window",
        keys: 100_000,
        parallelism: 1,
        backend: "memory",
        time_step_us: Some(100),
        flink: &["mode=window", "keys=100000"],
    },
];

impl PeerRow {
    /// The Weir side as a job file over `component` (the bench guest).
    fn toml(&self, component: &Path) -> String {
        let time = self.time_step_us.map_or(String::new(), |step| {
            format!(
                "time_field = \"ts\"\nevent_time_step_us = {step}\nwatermark = {{ out_of_orderness_ms = 0 }}\n"
            )
        });
        let (keys, p, backend, workload) =
            (self.keys, self.parallelism, self.backend, self.workload);
        format!(
            "[job]\nname = \"peer\"\n\n[[source]]\nname = \"gen\"\ntype = \"generator\"\ncount = {RECORDS}\n\
             keys = {keys}\nparallelism = {p}\n{time}\n[[operator]]\nname = \"op\"\ncomponent = {component:?}\n\
             input = \"gen\"\nkey_by = \"/key\"\nparallelism = {p}\n[operator.config]\nworkload = \"{workload}\"\n\n\
             [[sink]]\nname = \"out\"\ntype = \"file\"\ninput = \"op\"\npath = \"out\"\nparallelism = {p}\n\n\
             [state]\nbackend = \"{backend}\"\ndir = \"local\"\n"
        )
    }
}

/// The Flink peer's script: `$WEIR_FLINK_PEER`, else `../shared/peers/flink/run.sh`
/// beside the checkout.
fn flink_peer() -> Result<PathBuf> {
    let script = env::var_os("WEIR_FLINK_PEER")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/peers/flink/run.sh"));
    match script.is_file() {
        true => Ok(script),
        false => Err(format!(
            "no Flink peer at {}: set WEIR_FLINK_PEER to its run.sh",
            script.display()
        )),
    }
}

/// Every row of [`PEER_ROWS`], Weir then Flink, `rounds` times in turn; then the table:
/// each side's median records/s (with every run's), and Weir / Flink.
fn bench_peer(rounds: usize) -> Result {
    let peer = flink_peer()?;
    let component = build_component("bench-guest")?;
    let host = bench_host()?;
    let work = env::temp_dir().join(format!("weir-peer-{}", std::process::id()));
    let weir = |row: &PeerRow| -> Result<f64> {
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work)
            .map_err(|e| format!("cannot create {}: {e}", work.display()))?;
        let job = work.join("job.toml");
        std::fs::write(&job, row.toml(&component))
            .map_err(|e| format!("cannot write {}: {e}", job.display()))?;
        let output = Command::new(&host)
            .arg("bench")
            .arg("--component")
            .arg(&component)
            .arg("--run-job")
            .arg(&job)
            .output()
            .map_err(|e| format!("cannot run the host: {e}"))?;
        let _ = std::fs::remove_dir_all(&work);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let seconds = stdout
            .lines()
            .find_map(|l| l.strip_prefix("measured "))
            .and_then(|l| l.split(' ').next()?.parse::<f64>().ok());
        match (output.status.success(), seconds) {
            (true, Some(seconds)) => Ok(RECORDS as f64 / seconds),
            _ => Err(format!(
                "{}: the Weir job failed: {}",
                row.label,
                String::from_utf8_lossy(&output.stderr).trim()
            )),
        }
    };
    let flink = |row: &PeerRow| -> Result<f64> {
        let output = Command::new(&peer)
            .args(row.flink)
            .arg(format!("records={RECORDS}"))
            .output()
            .map_err(|e| format!("cannot run {}: {e}", peer.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let rate = stdout.lines().find_map(|l| {
            l.split("-> ")
                .nth(1)?
                .strip_suffix(" rec/s")?
                .trim()
                .parse()
                .ok()
        });
        match (output.status.success(), rate) {
            (true, Some(rate)) => Ok(rate),
            _ => Err(format!(
                "{}: the Flink peer failed: {}{}",
                row.label,
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            )),
        }
    };
    let mut runs: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); PEER_ROWS.len()];
    for round in 1..=rounds {
        for (row, (weirs, flinks)) in PEER_ROWS.iter().zip(&mut runs) {
            weirs.push(weir(row)?);
            flinks.push(flink(row)?);
            eprintln!(
                "xtask: round {round}/{rounds}, {}: Weir {:.0}, Flink {:.0} records/s",
                row.label,
                weirs.last().copied().unwrap_or_default(),
                flinks.last().copied().unwrap_or_default()
            );
        }
    }
    let median = |runs: &[f64]| {
        let mut sorted = runs.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    };
    let each = |runs: &[f64]| {
        runs.iter()
            .map(|r| format!("{:.2}M", r / 1e6))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "{RECORDS} records per run, {rounds} rounds in turn, Weir's {} (Wasm operator, the bench guest), Flink 1.20.3\n",
        bench_build()
    );
    println!("| workload | Weir Wasm, records/s | Flink, records/s | Weir / Flink |");
    println!("|---|---|---|---|");
    for (row, (weirs, flinks)) in PEER_ROWS.iter().zip(&runs) {
        let ratios: Vec<f64> = weirs.iter().zip(flinks).map(|(w, f)| w / f).collect();
        println!(
            "| {} | {:.2}M ({}) | {:.2}M ({}) | **{:.2}×** ({}) |",
            row.label,
            median(weirs) / 1e6,
            each(weirs),
            median(flinks) / 1e6,
            each(flinks),
            median(&ratios),
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// Issue 4's figures, per number of keys: memory vs RocksDB records/s; RocksDB
/// checkpoints (every 1 s) full vs incremental; restore time per GB on both backends.
fn bench_state(key_counts: &[u64]) -> Result {
    let run = bench_runner()?;
    let binaries = bench_binaries()?;
    for &keys in key_counts {
        println!("== {keys} keys: keyed count (visit-count), p=1, file sink");
        let mut rates = Vec::new();
        for backend in ["memory", "rocksdb"] {
            let job = BenchJob {
                records: keys,
                keys,
                parallelism: 1,
                checkpoint_ms: None,
                backend,
                incremental: true,
            };
            let (rate, _) = run(&job)?;
            rates.push(rate);
            println!(
                "{backend:>8}, no checkpoints, {keys} records: {rate:>10.0} records/s  ratio to memory {:.3}",
                rate / rates[0]
            );
        }
        for (backend, incremental) in [("memory", false), ("rocksdb", false), ("rocksdb", true)] {
            let job = BenchJob {
                records: 2 * keys,
                keys,
                parallelism: 1,
                checkpoint_ms: Some(1000),
                backend,
                incremental,
            };
            let (rate, stderr) = run(&job)?;
            let lines = checkpoint_lines(&stderr);
            let label = if incremental { "incremental" } else { "full" };
            let state = lines.iter().map(|l| l.1).max().unwrap_or(0);
            println!(
                "{backend:>8} {label:>11}, every 1 s, {} records: {rate:>10.0} records/s; {} checkpoints: \
                 median {:.0} ms, median {:.1} MB written, largest {:.1} MB of state",
                2 * keys,
                lines.len(),
                median(lines.iter().map(|l| l.0).collect()),
                median(lines.iter().map(|l| l.2 as f64 / 1e6).collect()),
                state as f64 / 1e6,
            );
        }
        for (backend, rate) in ["memory", "rocksdb"].into_iter().zip(&rates) {
            let (bytes, millis) = restore_time(&binaries, backend, keys, *rate)?;
            println!(
                "{backend:>8} restore: {:.1} MB in {millis:.0} ms = {:.1} s per GB",
                bytes as f64 / 1e6,
                millis / 1e3 / (bytes as f64 / 1e9)
            );
        }
    }
    Ok(())
}

/// Runs an endless keyed count until every key has state and a checkpoint completed
/// after that, kills it, and restarts it: the restored bytes and milliseconds.
fn restore_time(
    (component, host): &(PathBuf, PathBuf),
    backend: &'static str,
    keys: u64,
    rate: f64,
) -> Result<(u64, f64)> {
    let work = env::temp_dir().join(format!("weir-bench-restore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let job = BenchJob {
        records: u64::MAX / 2,
        keys,
        parallelism: 1,
        checkpoint_ms: Some(1000),
        backend,
        incremental: true,
    };
    let path = work.join("job.toml");
    std::fs::write(&path, job.toml(component))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let path = path.to_str().ok_or("non-UTF-8 path")?.to_string();
    // Every key has state once `keys` records went through; give it a margin.
    let filled = std::time::Duration::from_secs_f64(keys as f64 / rate * 1.3 + 1.0);
    let started = std::time::Instant::now();
    run_until(host, &path, |line| {
        started.elapsed() > filled && line.contains(" completed in ")
    })?;
    let line = run_until(host, &path, |line| line.starts_with("weir: restored "))?;
    let _ = std::fs::remove_dir_all(&work);
    // "weir: restored N bytes of state in D"
    let mut words = line.split(' ');
    let bytes = words.nth(2).and_then(|n| n.parse().ok());
    let time = words.next_back().and_then(millis);
    bytes
        .zip(time)
        .ok_or_else(|| format!("unexpected line: {line}"))
}

/// Runs `host run --verbose JOB` until a line of its stderr satisfies `stop`, then kills
/// it (SIGKILL); returns that line.
fn run_until(host: &Path, job: &str, mut stop: impl FnMut(&str) -> bool) -> Result<String> {
    let mut child = Command::new(host)
        .args(["run", "--verbose", job])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run the host: {e}"))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut found = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.map_err(|e| format!("cannot read the host's output: {e}"))?;
        if stop(&line) {
            found = Some(line);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    found.ok_or_else(|| "the job ended before the expected line".into())
}

/// Issue 6's figures: visit-count in every language. Each component is compiled once into
/// an empty cache (the uncached start), then started from it five times (the median is
/// the cached start), then run over `records` generated records three times (median).
fn bench_languages(records: u64) -> Result {
    let host = bench_host()?;
    let work = env::temp_dir().join(format!("weir-bench-languages-{}", std::process::id()));
    let mut components = vec![("rust", build_component("visit-count")?)];
    for language in languages::LANGUAGES {
        let scratch = target_dir().join("polyglot/bench").join(language.name());
        std::fs::create_dir_all(&scratch)
            .map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
        let out = scratch.join("visit_count.wasm");
        let source = root()
            .join("examples/visit-count")
            .join(language.folder_and_entry().0);
        languages::build(language, &root(), &source, &out, &scratch)?;
        components.push((language.name(), out));
    }
    let job = |component: &Path, count: u64, keys: u64| {
        format!(
            "[job]\nname = \"bench\"\n\n[[source]]\nname = \"gen\"\ntype = \"generator\"\n\
             count = {count}\nkeys = {keys}\nkey_field = \"url\"\nkey_prefix = \"/page-\"\n\n\
             [[operator]]\nname = \"count\"\ncomponent = {component:?}\ninput = \"gen\"\n\
             key_by = \"/url\"\n\n[[sink]]\nname = \"out\"\ntype = \"file\"\ninput = \"count\"\n\
             path = \"out\"\n"
        )
    };
    // Seconds for `host run` of `toml`, with compiled components cached in `cache`.
    let time_run = |toml: &str, cache: &Path| -> Result<f64> {
        let _ = std::fs::remove_dir_all(work.join("out"));
        std::fs::create_dir_all(&work)
            .map_err(|e| format!("cannot create {}: {e}", work.display()))?;
        let path = work.join("job.toml");
        std::fs::write(&path, toml).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let started = std::time::Instant::now();
        let output = Command::new(&host)
            .arg("run")
            .arg(&path)
            .env("WEIR_CACHE_DIR", cache)
            .output()
            .map_err(|e| format!("cannot run the host: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "the benchmark job failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(started.elapsed().as_secs_f64())
    };
    println!(
        "visit-count, p=1, memory backend, file sink; {} of the host",
        bench_build()
    );
    for (language, component) in &components {
        let size = std::fs::metadata(component)
            .map_err(|e| format!("cannot read {}: {e}", component.display()))?
            .len();
        let cache = work.join(format!("cache-{language}"));
        let _ = std::fs::remove_dir_all(&cache);
        let one = job(component, 1, 1);
        let uncached = time_run(&one, &cache)?;
        let cached = median(
            (0..5)
                .map(|_| time_run(&one, &cache))
                .collect::<Result<Vec<_>>>()?,
        );
        let many = job(component, records, 10_000);
        let rate = median(
            (0..3)
                .map(|_| time_run(&many, &cache).map(|s| records as f64 / s))
                .collect::<Result<Vec<_>>>()?,
        );
        println!(
            "{language:>6}: component {:>6.2} MB; one-record job {:>7.0} ms uncached, {:>5.0} ms cached; \
             {records} records: {rate:>9.0} records/s",
            size as f64 / 1e6,
            uncached * 1e3,
            cached * 1e3,
        );
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

const FUZZ_TARGETS: [&str; 5] = [
    "checkpoint_metadata",
    "state_snapshot",
    "savepoint",
    "job_file",
    "key_extraction",
];

/// Runs fuzz targets for `seconds` each. The build links the RocksDB library the normal
/// build already compiled (20 minutes saved), so run `cargo xtask test` once first.
fn fuzz(targets: &[&str], seconds: u64) -> Result {
    if let Some(unknown) = targets.iter().find(|t| !FUZZ_TARGETS.contains(t)) {
        return Err(format!(
            "no fuzz target `{unknown}`: use one of {FUZZ_TARGETS:?}"
        ));
    }
    let has_fuzz = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_fuzz {
        run("cargo", &["install", "--locked", "cargo-fuzz"])?;
    }
    let rocksdb = std::fs::read_dir(target_dir().join("debug/build"))
        .map_err(|e| format!("no debug build to take RocksDB from (run `cargo xtask test`): {e}"))?
        .flatten()
        .map(|e| e.path().join("out"))
        .find(|out| out.join("librocksdb.a").is_file())
        .ok_or("no built librocksdb.a: run `cargo xtask test` first")?;
    for target in targets {
        let corpus = target_dir()
            .parent()
            .unwrap_or(&target_dir())
            .join("fuzz-corpus")
            .join(target);
        std::fs::create_dir_all(&corpus)
            .map_err(|e| format!("cannot create {}: {e}", corpus.display()))?;
        let seeds = root().join("fuzz/corpus").join(target);
        let status = Command::new("cargo")
            .args(["+nightly", "fuzz", "run", "-O", target])
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .current_dir(root().join("fuzz"))
            .env(
                "CARGO_TARGET_DIR",
                target_dir().with_file_name("fuzz-target"),
            )
            .env("ROCKSDB_LIB_DIR", &rocksdb)
            .env("ROCKSDB_STATIC", "1")
            .status()
            .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
        if !status.success() {
            return Err(format!(
                "fuzz target `{target}` failed ({status}): the crashing input is in fuzz/artifacts/{target}/"
            ));
        }
    }
    Ok(())
}
