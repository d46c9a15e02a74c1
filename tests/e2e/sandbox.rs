//! The sandbox: a guest that loops, grows memory or recurses without end is stopped at its
//! limit with a message naming the operator, the limit and its value; a guest gets no
//! file, environment value or socket it was not granted.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use host::job::{DirGrant, Limits, Sandbox};
use host::testing::{TestOperator, TestOptions};

use crate::support::{Job, pipeline};

const FILE_SOURCE: &str = "type = \"file\"\npath = \"in.jsonl\"";

fn misbehave(job: &Job, input: &str, operator_extra: &str) -> crate::support::Outcome {
    job.write("in.jsonl", input);
    job.run(
        &pipeline(FILE_SOURCE, test_artifacts::MISBEHAVE, operator_extra),
        "",
    )
}

fn with_limits(limits: Limits) -> TestOptions {
    TestOptions {
        sandbox: Sandbox {
            limits,
            ..Sandbox::default()
        },
        ..TestOptions::default()
    }
}

#[test]
fn an_endless_loop_is_stopped_within_twice_its_deadline_and_the_host_goes_on() {
    let deadline = Duration::from_millis(300);
    let limits = Limits {
        call_timeout: deadline,
        ..Limits::default()
    };
    let mut op = TestOperator::load(Path::new(test_artifacts::MISBEHAVE), with_limits(limits))
        .expect("loads");
    let started = Instant::now();
    let error = op
        .push("{\"do\":\"loop\"}")
        .expect_err("the loop is stopped");
    let took = started.elapsed();
    assert!(
        took >= deadline && took < 2 * deadline,
        "stopped after {took:?}, deadline {deadline:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("operator `test` trapped")
            && message.contains("CPU limit")
            && message.contains("limits.call_timeout_ms = 300"),
        "{message}"
    );
    // The host answers: a fresh instance of the same component works.
    let mut fresh = op
        .restored(&op.snapshot().expect("snapshot"))
        .expect("fresh");
    assert_eq!(fresh.push("{\"n\":1}").expect("works"), ["{\"n\":1}"]);
}

#[test]
fn a_job_whose_guest_loops_fails_naming_the_operator_and_the_limit() {
    let job = Job::new();
    let out = misbehave(
        &job,
        "{\"do\":\"loop\"}\n",
        "[operator.limits]\ncall_timeout_ms = 200",
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("operator `op` trapped")
            && out.stderr.contains("limits.call_timeout_ms = 200"),
        "{}",
        out.stderr
    );
}

/// Peak resident memory of a `host` process, polled from /proc while it runs.
fn run_watching_memory(job: &Job) -> (i32, String, u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_host"))
        .arg("run")
        .arg(job.path("job.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start host");
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0;
    while child.try_wait().expect("poll host").is_none() {
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
        {
            peak_kb = peak_kb.max(kb);
        }
        std::thread::yield_now();
    }
    let output = child.wait_with_output().expect("host output");
    let code = output.status.code().expect("exited");
    (
        code,
        String::from_utf8_lossy(&output.stderr).into_owned(),
        peak_kb >> 10,
    )
}

#[test]
fn a_guest_that_grows_without_end_is_stopped_at_its_cap_with_host_memory_bounded() {
    let job = Job::new();
    job.write("in.jsonl", "{\"do\":\"grow\"}\n");
    job.write(
        "job.toml",
        &pipeline(
            FILE_SOURCE,
            test_artifacts::MISBEHAVE,
            "[operator.limits]\nmemory_mb = 64",
        ),
    );
    let (code, stderr, peak_mib) = run_watching_memory(&job);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("operator `op` trapped")
            && stderr.contains("memory limit")
            && stderr.contains("limits.memory_mb = 64"),
        "{stderr}"
    );
    // The host itself needs ~40 MiB; without the cap the guest would take 512 MiB.
    assert!(peak_mib < 200, "the host peaked at {peak_mib} MiB");
}

#[test]
fn unbounded_recursion_hits_the_stack_limit() {
    let job = Job::new();
    let out = misbehave(
        &job,
        "{\"do\":\"recurse\"}\n",
        "[operator.limits]\nstack_kb = 256",
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("stack limit") && out.stderr.contains("limits.stack_kb = 256"),
        "{}",
        out.stderr
    );
}

#[test]
fn limits_out_of_range_are_job_file_errors() {
    let job = Job::new();
    let out = misbehave(&job, "{}\n", "[operator.limits]\nstack_kb = 100000");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("operator.limits.stack_kb") && out.stderr.contains("4096"),
        "{}",
        out.stderr
    );
}

/// What the probe record found, as one JSON object.
fn probe(job: &Job, operator_extra: &str, path: &str, connect: &str) -> serde_json::Value {
    let record = serde_json::json!({"do": "probe", "path": path, "connect": connect});
    // One run's output at a time.
    let _ = std::fs::remove_dir_all(job.path("out"));
    let out = misbehave(job, &format!("{record}\n"), operator_extra);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(job.committed("out").trim()).expect("one JSON output")
}

#[test]
fn a_guest_gets_no_file_environment_or_socket_unless_granted() {
    let job = Job::new();
    let secret = job.write("secret.txt", "host secret");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let address = listener.local_addr().expect("address").to_string();
    let seen = probe(&job, "", secret.to_str().expect("UTF-8"), &address);
    assert!(
        seen["read"].as_str().unwrap_or("").starts_with("denied"),
        "{seen}"
    );
    assert!(
        seen["write"].as_str().unwrap_or("").starts_with("denied"),
        "{seen}"
    );
    assert!(
        seen["connect"].as_str().unwrap_or("").starts_with("denied"),
        "{seen}"
    );
    assert_eq!(
        seen["env"],
        serde_json::json!({}),
        "the host's environment leaks"
    );
    assert!(!job.path("secret.txt.new").exists());
}

#[test]
fn granted_directories_and_environment_values_are_all_a_guest_sees() {
    let job = Job::new();
    std::fs::create_dir(job.path("shared")).expect("mkdir");
    job.write("shared/data.txt", "granted data");
    job.write("other.txt", "not granted");
    let read_only = "[[operator.grants]]\ndir = \"shared\"\npath = \"/data\"\n\
                     [operator.env]\nREGION = \"eu\"\n";
    let seen = probe(&job, read_only, "/data/data.txt", "127.0.0.1:9");
    assert_eq!(seen["read"], "ok: granted data", "{seen}");
    assert!(
        seen["write"].as_str().unwrap_or("").starts_with("denied"),
        "{seen}"
    );
    assert_eq!(seen["env"], serde_json::json!({"REGION": "eu"}), "{seen}");
    assert!(
        !job.path("shared/data.txt.new").exists(),
        "read-only grant was written"
    );

    let outside = probe(&job, read_only, "/data/../other.txt", "127.0.0.1:9");
    assert!(
        outside["read"].as_str().unwrap_or("").starts_with("denied"),
        "{outside}"
    );

    let writable = "[[operator.grants]]\ndir = \"shared\"\npath = \"/data\"\nwrite = true\n";
    let seen = probe(&job, writable, "/data/data.txt", "127.0.0.1:9");
    assert_eq!(seen["write"], "ok: ", "{seen}");
    assert_eq!(
        std::fs::read_to_string(job.path("shared/data.txt.new")).expect("written"),
        "written by a guest"
    );
}

#[test]
fn a_grant_of_a_missing_directory_is_a_job_file_error() {
    let job = Job::new();
    let out = misbehave(&job, "{}\n", "[[operator.grants]]\ndir = \"nope\"\n");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("is not a directory"), "{}", out.stderr);
}

/// A `DirGrant` is plain data: the library API takes the same grants.
#[test]
fn the_library_api_takes_grants_too() {
    let job = Job::new();
    std::fs::create_dir(job.path("d")).expect("mkdir");
    job.write("d/f.txt", "via the API");
    let options = TestOptions {
        sandbox: Sandbox {
            grants: host::job::Grants {
                dirs: vec![DirGrant {
                    host: job.path("d"),
                    guest: "/d".into(),
                    write: false,
                }],
                env: Vec::new(),
            },
            ..Sandbox::default()
        },
        ..TestOptions::default()
    };
    let mut op = TestOperator::load(Path::new(test_artifacts::MISBEHAVE), options).expect("loads");
    let out = op
        .push("{\"do\":\"probe\",\"path\":\"/d/f.txt\",\"connect\":\"127.0.0.1:9\"}")
        .expect("probe");
    assert!(out[0].contains("\"read\":\"ok: via the API\""), "{out:?}");
}
