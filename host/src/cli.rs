//! The `host` command line: parses arguments, runs the command, maps the outcome to an
//! exit code (0 finished or stopped with a savepoint, 1 the job failed, 2 usage or
//! configuration error, 130 the job was cancelled).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Parser, Subcommand};

use crate::control;
use crate::dataflow::{self, Failure, Report, Start};
use crate::inspect::{Checkpoint, InspectError};
use crate::job::{self, Mode};
use crate::wasm::{OperatorError, Runtime};

/// Weir: stateful stream processing with WebAssembly operators.
#[derive(Parser)]
#[command(name = "host", version = crate::wasm::VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `host run`'s arguments.
#[derive(clap::Args)]
struct RunArgs {
    /// The job file (TOML).
    job: PathBuf,
    /// Runs every operator with this many parallel subtasks.
    #[arg(short = 'p', long)]
    parallelism: Option<u16>,
    /// Keeps checkpoints under this directory (overrides `[checkpoint] dir`).
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Keeps keyed state in this backend (overrides `[state] backend`): memory, rocksdb.
    #[arg(long, value_name = "BACKEND")]
    state_backend: Option<crate::job::Backend>,
    /// Prints a line for every completed checkpoint.
    #[arg(short, long)]
    verbose: bool,
    /// Starts from this savepoint or completed checkpoint folder.
    #[arg(long, value_name = "PATH")]
    from_savepoint: Option<PathBuf>,
    /// With --from-savepoint: start even if it holds state of operators the job no
    /// longer has (that state is dropped).
    #[arg(long, requires = "from_savepoint")]
    allow_non_restored_state: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Makes a new operator project in the folder NAME: an operator that counts events
    /// per user, its job file, sample input, expected output and a test, and a copy of
    /// the SDK and WIT it builds against.
    New {
        /// The project's name (and folder): lowercase letters, digits, `-` and `_`.
        name: String,
        /// The operator's language: rust, python, js or c.
        #[arg(long, value_name = "LANG")]
        lang: String,
        /// Makes the folder inside this one instead of the current folder.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Builds the operator project in DIR (default: this folder) to a component beside
    /// its job file, installing its language's tools on first use.
    Build {
        /// The project folder.
        dir: Option<PathBuf>,
    },
    /// Runs a job file until its sources end.
    Run(RunArgs),
    /// Takes a savepoint of a running job.
    Savepoint {
        /// The control endpoint that `host run` printed (127.0.0.1:PORT).
        address: String,
    },
    /// Stops a running job gracefully, with a savepoint.
    Stop {
        /// The control endpoint that `host run` printed (127.0.0.1:PORT).
        address: String,
        /// Take a savepoint, then stop (`host cancel` stops without one).
        #[arg(long, required = true)]
        savepoint: bool,
    },
    /// Cancels a running job (its checkpoints are kept or deleted as `on_cancel` says).
    Cancel {
        /// The control endpoint that `host run` printed (127.0.0.1:PORT).
        address: String,
    },
    /// Shows what a checkpoint holds, without the operators' code.
    State {
        /// A checkpoint folder (`chk-<n>`), or a job's checkpoint folder (its latest).
        path: PathBuf,
        /// Show one key's state in this operator (with --key).
        #[arg(long, requires = "key")]
        operator: Option<String>,
        /// The key, as `key_by` extracts it (a string's text, or other values' JSON).
        #[arg(long, requires = "operator")]
        key: Option<String>,
    },
    /// Tests an operator (any language) against the outputs it must produce, optionally
    /// restoring it from a snapshot into a fresh instance every N records.
    Test {
        /// The operator's component (or a C operator's core module).
        component: PathBuf,
        /// Input records, one JSON document per line.
        #[arg(long, value_name = "IN.jsonl")]
        input: PathBuf,
        /// The outputs it must produce, one JSON document per line (compared as JSON).
        #[arg(long, value_name = "OUT.jsonl")]
        expect: PathBuf,
        /// The `key_by` JSON pointer, as in the job file (e.g. /url).
        #[arg(long, value_name = "POINTER")]
        key_by: Option<String>,
        /// The operator's config, as a JSON object (the job file's `[operator.config]`).
        #[arg(long, value_name = "JSON", default_value = "{}")]
        config: String,
        /// Snapshot the state every N records and go on in a fresh instance restored
        /// from it: fails an operator that keeps state outside the managed state API.
        #[arg(long, value_name = "N")]
        restore_every: Option<usize>,
        /// With --restore-every: restore alternately into this many instances and back
        /// into one (records routed by key group), as when a job is rescaled.
        #[arg(long, value_name = "P", default_value_t = 1)]
        restore_parallelism: u16,
        /// The `event_time` JSON pointer, as in the job file (e.g. /ts). Lines
        /// `#watermark MS` and `#processing-time MS` in the input move time.
        #[arg(long, value_name = "POINTER")]
        event_time: Option<String>,
        /// The side output NAME (the job file's `side_outputs`) and the records it must
        /// get, one JSON document per line; repeat for each side output.
        #[arg(long, value_name = "NAME=OUT.jsonl", value_parser = side_output)]
        expect_side: Vec<(String, PathBuf)>,
    },
    /// Runs the benchmark suite (W1–W8, BP): each workload as a Wasm operator and as its
    /// native twin, with records/s and the ratio of their times.
    Bench {
        /// Workloads to run (W1 … W8, BP); all when none is given.
        workloads: Vec<String>,
        /// Records per run instead of each workload's default.
        #[arg(long)]
        records: Option<u64>,
        /// A tiny run of every workload: checks the suite works, measures nothing.
        #[arg(long)]
        smoke: bool,
        /// The bench-guest component (`cargo xtask bench` builds it and passes it).
        #[arg(long, value_name = "PATH")]
        component: PathBuf,
        /// W8's Kafka cluster (bootstrap servers); none: the broker `cargo xtask setup`
        /// installs, started for the run.
        #[arg(long, value_name = "HOST:PORT,…")]
        brokers: Option<String>,
        /// (Internal) run this one job and print its measurement.
        #[arg(long, hide = true, value_name = "JOB")]
        run_job: Option<PathBuf>,
        /// (Internal) with --run-job: run the native twins instead of the component.
        #[arg(long, hide = true, requires = "run_job")]
        native: bool,
    },
}

/// `host new`: writes the project and says what to do next.
fn new(name: &str, lang: &str, parent: Option<&Path>) -> ExitCode {
    let Some(language) = crate::author::Lang::from_name(lang) else {
        return fail(
            CONFIG,
            format!("--lang {lang}: expected rust, python, js or c"),
        );
    };
    let dir = parent.unwrap_or(Path::new(".")).join(name);
    match crate::author::new_project(&dir, name, language) {
        Ok(files) => {
            println!(
                "host new: wrote {} ({} files; edit {})\nnext: cd {} && host build && host test \
                 {}.wasm --input data/input.jsonl --expect data/expected.jsonl --key-by /user",
                dir.display(),
                files.len(),
                language.source(),
                dir.display(),
                crate::author::component(name),
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(CONFIG, format!("host new: {e}")),
    }
}

/// `host build`: builds the project and prints the component's path and size.
fn build(dir: &Path) -> ExitCode {
    match crate::author::build(dir) {
        Ok(built) => {
            println!(
                "host build: {} ({} bytes)",
                built.path.display(),
                built.bytes
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(FAILED, format!("host build: {e}")),
    }
}

/// Exit code of a job that failed while running.
const FAILED: u8 = 1;
/// `--expect-side NAME=FILE`.
fn side_output(arg: &str) -> Result<(String, PathBuf), String> {
    match arg.split_once('=') {
        Some((name, file)) if !name.is_empty() && !file.is_empty() => {
            Ok((name.to_string(), PathBuf::from(file)))
        }
        _ => Err(format!(
            "`{arg}`: expected NAME=FILE (a side output and its expected records)"
        )),
    }
}

/// Exit code of a usage or configuration error (clap uses it for bad arguments too).
const CONFIG: u8 = 2;
/// Exit code of a cancelled job (128 + SIGINT, as shells report an interrupted command).
const CANCELLED: u8 = 130;

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::New { name, lang, dir } => new(&name, &lang, dir.as_deref()),
        Command::Build { dir } => build(dir.as_deref().unwrap_or(Path::new("."))),
        Command::Run(args) => run(&args),
        Command::Savepoint { address } => savepoint(&address, false),
        Command::Stop { address, .. } => savepoint(&address, true),
        Command::Cancel { address } => match control::cancel(&address) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(FAILED, e),
        },
        Command::State {
            path,
            operator,
            key,
        } => state(&path, operator.as_deref().zip(key.as_deref())),
        Command::Test {
            component,
            input,
            expect,
            key_by,
            config,
            restore_every,
            restore_parallelism,
            event_time,
            expect_side,
        } => {
            let args = crate::testing::TestArgs {
                component,
                input,
                expect,
                options: crate::testing::TestOptions {
                    key_by,
                    config_json: config,
                    event_time,
                    side_outputs: expect_side.iter().map(|(name, _)| name.clone()).collect(),
                    ..Default::default()
                },
                expect_side,
                restore_every,
                restore_parallelism,
            };
            match crate::testing::run(&args) {
                Ok(summary) => {
                    println!("host test: {}: passed: {summary}", args.component.display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(FAILED, format!("{}: failed: {e}", args.component.display())),
            }
        }
        Command::Bench {
            run_job: Some(job),
            native,
            ..
        } => match crate::bench::run_child(&job, native) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(FAILED, e),
        },
        Command::Bench {
            workloads,
            records,
            smoke,
            component,
            brokers,
            ..
        } => match crate::bench::run(&crate::bench::Options {
            workloads,
            records,
            smoke,
            component,
            brokers,
        }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(FAILED, e),
        },
    }
}

fn run(args: &RunArgs) -> ExitCode {
    let path = args.job.as_path();
    let mut start = Start {
        from_savepoint: args.from_savepoint.clone(),
        allow_non_restored_state: args.allow_non_restored_state,
        ..Start::default()
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            return fail(
                CONFIG,
                format!("cannot read job file {}: {e}", path.display()),
            );
        }
    };
    let mut job = match job::parse(path, &text) {
        Ok(job) => job,
        Err(e) => return fail(CONFIG, e.to_string()),
    };
    if let Some(p) = args.parallelism
        && let Err(e) = job.set_parallelism(p)
    {
        return fail(CONFIG, e);
    }
    if let Some(dir) = &args.checkpoint_dir
        && let Err(e) = job.set_checkpoint_dir(dir)
    {
        return fail(CONFIG, e);
    }
    if let Some(checkpoint) = &mut job.checkpoint {
        checkpoint.config.verbose = args.verbose;
    }
    if let Some(backend) = args.state_backend {
        job.state.backend = backend;
    }
    let runtime = match Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(FAILED, format!("cannot start the Wasm runtime: {e:#}")),
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let mut commands = None;
    if let Some(checkpointing) = &job.checkpoint {
        eprintln!(
            "weir: checkpointing every {:?}, {}, into {}",
            checkpointing.config.interval,
            match (checkpointing.mode, checkpointing.config.unaligned) {
                (Mode::ExactlyOnce, None) => "exactly-once (barriers aligned)".to_string(),
                (Mode::ExactlyOnce, Some(t)) if t.is_zero() => {
                    "exactly-once (barriers unaligned: they overtake records in flight)".into()
                }
                (Mode::ExactlyOnce, Some(t)) => {
                    format!("exactly-once (barriers aligned, unaligned after waiting {t:?})")
                }
                (Mode::AtLeastOnce, _) => {
                    "at-least-once (a restore may apply records twice)".to_string()
                }
            },
            checkpointing.dir.join(&job.name).display()
        );
        let (sender, receiver) = crossbeam_channel::unbounded();
        match control::serve(sender.clone(), Arc::clone(&cancel)) {
            Ok(address) => eprintln!(
                "weir: control endpoint {address}: `host savepoint {address}` takes a savepoint, \
                 `host stop --savepoint {address}` stops with one, `host cancel {address}` cancels"
            ),
            Err(e) => {
                return fail(
                    FAILED,
                    format!("cannot open the control endpoint on loopback: {e}"),
                );
            }
        }
        start.control = Some(receiver);
        commands = Some(sender);
    }
    if let Err(e) = control::handle_signals(commands, Arc::clone(&cancel)) {
        return fail(FAILED, format!("cannot install the signal handlers: {e}"));
    }
    match dataflow::run(&job, &runtime, &start, &cancel) {
        Ok(report) if report.already_finished => {
            eprintln!(
                "weir: job `{}` had already finished in a previous run; its output is committed and its checkpoints deleted, so the next run starts afresh",
                job.name
            );
            ExitCode::SUCCESS
        }
        Ok(Report {
            stopped_with: Some(folder),
            ..
        }) => {
            eprintln!(
                "weir: job `{}` stopped with savepoint {}; resume it with `host run {} --from-savepoint {}`",
                job.name,
                folder.display(),
                path.display(),
                folder.display()
            );
            ExitCode::SUCCESS
        }
        Ok(report) => {
            eprintln!("weir: job `{}` finished: {}", job.name, summary(&report));
            ExitCode::SUCCESS
        }
        Err(failure) => {
            let code = match failure {
                Failure::Cancelled => CANCELLED,
                Failure::Restore { .. } => CONFIG,
                Failure::Operator(OperatorError::Load { .. } | OperatorError::Contract { .. }) => {
                    CONFIG
                }
                _ => FAILED,
            };
            fail(code, format!("job `{}` failed: {failure}", job.name))
        }
    }
}

fn savepoint(address: &str, stop: bool) -> ExitCode {
    match control::request(address, stop) {
        Ok(folder) => {
            println!("{}", folder.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(FAILED, e),
    }
}

fn state(path: &Path, key: Option<(&str, &str)>) -> ExitCode {
    let checkpoint = match Checkpoint::open(path) {
        Ok(checkpoint) => checkpoint,
        Err(e @ InspectError::NotACheckpoint(_)) => return fail(CONFIG, e.to_string()),
        Err(e) => return fail(FAILED, e.to_string()),
    };
    let shown = match key {
        None => Ok(checkpoint.summary()),
        Some((operator, key)) => checkpoint.key(operator, key),
    };
    match shown {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(CONFIG, e.to_string()),
    }
}

fn fail(code: u8, message: String) -> ExitCode {
    eprintln!("weir: error: {message}");
    ExitCode::from(code)
}

fn summary(report: &Report) -> String {
    let mut parts = Vec::new();
    for s in &report.sources {
        let mut part = format!("source `{}` read {} records", s.name, s.records);
        if let Some(first) = &s.first_skipped {
            part += &format!(
                " and skipped {} bad records (the first at {first})",
                s.skipped
            );
        }
        parts.push(part);
    }
    for o in &report.operators {
        let mut part = format!(
            "operator `{}` processed {} and emitted {}",
            o.name, o.records_in, o.records_out
        );
        if o.records_to_side_outputs > 0 {
            part += &format!(" (and {} to side outputs)", o.records_to_side_outputs);
        }
        if o.poison > 0 {
            let plural = if o.poison == 1 { "" } else { "s" };
            part += &format!(" ({} poison record{plural} kept from it)", o.poison);
        }
        parts.push(part);
    }
    for s in &report.sinks {
        parts.push(format!("sink `{}` wrote {}", s.name, s.records));
    }
    let c = &report.checkpoints;
    if c.completed + c.aborted > 0 {
        parts.push(format!(
            "{} checkpoints completed ({} aborted; longest synchronous part {:?}; last one {} bytes of state, {} written)",
            c.completed, c.aborted, c.max_sync, c.last_bytes, c.last_copied
        ));
    }
    if report.restarts > 0 {
        parts.push(format!("{} restarts after failures", report.restarts));
    }
    parts.join("; ")
}
