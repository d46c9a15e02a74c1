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

/// Installs the Rust target guests are built for. `rustup target add` is idempotent.
fn setup() -> Result {
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
    cargo(&[
        "build",
        "--target",
        "wasm32-wasip2",
        "--profile",
        "guest",
        "-p",
        name,
    ])?;
    let built = target_dir().join("wasm32-wasip2/guest").join(&file);
    std::fs::copy(&built, dir.join(&file))
        .map_err(|e| format!("cannot copy {}: {e}", built.display()))?;
    cargo(&["build", "-p", "host"])?;
    let host = target_dir().join("debug/host");
    let job = dir.join("job.toml");
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
