//! Running the host binary on job files in temporary directories.

pub mod job_file;
pub mod kafka;
pub mod process;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

/// What a `host` process did.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `host` with `args`, feeding `stdin`.
pub fn host(args: &[&str], stdin: &str) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start host");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    outcome(child.wait_with_output().expect("wait for host"))
}

/// Runs `host` with `args` in the folder `dir`, with the environment values `envs`.
pub fn host_in(dir: &Path, args: &[&str], envs: &[(&str, &Path)]) -> Outcome {
    let mut command = Command::new(env!("CARGO_BIN_EXE_host"));
    command.args(args).current_dir(dir).stdin(Stdio::null());
    for (name, value) in envs {
        command.env(name, value);
    }
    outcome(command.output().expect("run host"))
}

/// What a finished `host` process did; fails the test if the host panicked.
fn outcome(output: std::process::Output) -> Outcome {
    let outcome = Outcome {
        code: output.status.code().expect("host exited, not killed"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        !outcome.stderr.lines().any(|l| l.starts_with("thread '")),
        "the host panicked:\n{}",
        outcome.stderr
    );
    outcome
}

/// A temporary directory holding a job file and its data.
pub struct Job {
    pub dir: TempDir,
}

impl Job {
    pub fn new() -> Job {
        Job {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, content).expect("write file");
        path
    }

    /// Writes `file` as `job.toml`; returns its path.
    pub fn save(&self, file: &job_file::JobFile) -> PathBuf {
        self.write("job.toml", &file.toml())
    }

    /// Writes `job.toml` and runs it.
    pub fn run(&self, toml: &str, stdin: &str) -> Outcome {
        let job = self.write("job.toml", toml);
        host(&["run", job.to_str().expect("utf-8 path")], stdin)
    }

    /// The committed output of the file sink writing into `dir`, in part-file order.
    pub fn committed(&self, dir: &str) -> String {
        committed(&self.path(dir))
    }
}

/// The committed part files of a file sink's directory, concatenated in name order.
pub fn committed(dir: &Path) -> String {
    let Ok(entries) = fs::read_dir(dir) else {
        return String::new();
    };
    let mut parts: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
        })
        .collect();
    parts.sort();
    parts
        .iter()
        .map(|p| fs::read_to_string(p).expect("read part file"))
        .collect()
}

/// A one-operator job: `source` (TOML lines) → operator `op` → file sink `out`.
pub fn pipeline(source: &str, component: &str, operator_extra: &str) -> String {
    format!(
        r#"
[job]
name = "test"

[[source]]
name = "in"
{source}

[[operator]]
name = "op"
component = {component:?}
input = "in"
{operator_extra}

[[sink]]
name = "out"
type = "file"
input = "op"
path = "out"
"#
    )
}

/// The folder of the example `name`.
pub fn example_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}
