//! A `host run` process under a test's control: started, read line by line until it
//! reports something, signalled or killed, and reaped with the rest of what it said.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};

/// A running `host run --verbose JOB ARGS`.
pub struct Running {
    child: Child,
    stderr: BufReader<ChildStderr>,
    /// Every stderr line read so far.
    pub log: Vec<String>,
}

impl Running {
    /// Starts `host run --verbose job args`; its stdout is dropped.
    pub fn start(job: &Path, args: &[&str]) -> Running {
        Running::start_with(job, args, &[])
    }

    /// Starts `host run --verbose job args` with more environment variables.
    pub fn start_with(job: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_host"))
            .args(["run", "--verbose", job.to_str().expect("UTF-8 path")])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start host");
        let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        Running {
            child,
            stderr,
            log: Vec::new(),
        }
    }

    /// Reads stderr up to the `n`-th line (counting from 1) that contains `marker`, and
    /// returns it. Panics if the job finishes or exits first.
    pub fn wait_for_nth(&mut self, marker: &str, n: usize) -> String {
        let mut seen = 0;
        loop {
            let mut line = String::new();
            let read = self.stderr.read_line(&mut line).expect("stderr line");
            assert!(
                read > 0,
                "the host exited before `{marker}`:\n{}",
                self.log.join("\n")
            );
            let line = line.trim_end().to_string();
            self.log.push(line.clone());
            assert!(
                !line.contains("finished:"),
                "the job finished before `{marker}`:\n{}",
                self.log.join("\n")
            );
            if line.contains(marker) {
                seen += 1;
                if seen == n {
                    return line;
                }
            }
        }
    }

    /// Reads stderr up to the first line that contains `marker`.
    pub fn wait_for(&mut self, marker: &str) -> String {
        self.wait_for_nth(marker, 1)
    }

    /// Reads stderr until `n` checkpoints have completed.
    pub fn wait_for_checkpoints(&mut self, n: usize) {
        self.wait_for_nth("completed in", n);
    }

    /// The control endpoint's address, from the line the host printed at its start.
    pub fn address(&self) -> String {
        self.log
            .iter()
            .find_map(|l| l.strip_prefix("weir: control endpoint "))
            .map(|rest| rest.split(':').take(2).collect::<Vec<_>>().join(":"))
            .expect("host run prints its control endpoint")
    }

    /// Whether the run said it resumed from a checkpoint.
    pub fn resumed(&self) -> bool {
        self.log.iter().any(|l| l.contains("resuming job"))
    }

    /// Sends `signal` (as `kill` spells it: `-TERM`, `-KILL`, …).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal}");
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(self) {
        self.signal("-KILL");
        let (code, _) = self.wait();
        assert_eq!(code, None, "killed by SIGKILL");
    }

    /// Waits for the process to exit; returns its exit code (none when killed by a
    /// signal) and the rest of its stderr.
    pub fn wait(mut self) -> (Option<i32>, String) {
        let mut rest = String::new();
        self.stderr
            .read_to_string(&mut rest)
            .expect("rest of stderr");
        let status = self.child.wait().expect("reap host");
        (status.code(), rest)
    }
}
