//! Damaged checkpoints and savepoints: every damage to every file is detected, never
//! restored, and falls back to an older checkpoint only where that keeps exactly-once.

use super::*;

#[test]
fn a_damaged_checkpoint_is_never_restored() {
    let job = Job::new();
    job.save(&checkpointed(400_000, 2));
    run_and_kill(&job, 2);
    let state = latest_checkpoint(&job).join("check-1.state");
    damage_then_refuse_to_resume(&job, &state);
}

#[test]
fn a_damaged_shared_file_of_an_incremental_checkpoint_is_never_restored() {
    let job = Job::new();
    job.save(&on_rocksdb(checkpointed(400_000, 2)));
    run_and_kill(&job, 2);
    let metadata = std::fs::read_to_string(latest_checkpoint(&job).join("_metadata"))
        .expect("the latest checkpoint's metadata");
    let shared = std::fs::read_dir(job.path("checkpoints/sequence/shared"))
        .expect("incremental checkpoints keep SST files in shared/")
        .map(|entry| entry.expect("a shared file").path())
        .find(|path| {
            let name = path.file_name().expect("a file name").to_string_lossy();
            metadata.contains(&format!("\"{name}\""))
        })
        .expect("the latest checkpoint refers to a shared file");
    damage_then_refuse_to_resume(&job, &shared);
}

/// Which way [`move_latest_output`] moves the latest checkpoint's sink parts.
#[derive(Clone, Copy)]
enum Commit {
    Do,
    Undo,
}

/// Puts the latest checkpoint's sink parts where a crash just after (`Do`) or just before
/// (`Undo`) its commit leaves them, whichever moment the kill really hit.
fn move_latest_output(job: &Job, commit: Commit) {
    let metadata: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(latest_checkpoint(job).join("_metadata"))
            .expect("metadata")
            .split_once('\n')
            .expect("header line")
            .1,
    )
    .expect("metadata JSON");
    for pending in metadata["sinks"]["out"]
        .as_array()
        .expect("sink states")
        .iter()
        .flat_map(|s| s["pending"].as_array().expect("pending").clone())
    {
        let pending = job.path("out").join(pending.as_str().expect("name"));
        // `.part-<i>-<n>.pending` is committed as `part-<i>-<n>.jsonl`.
        let name = pending.file_name().expect("a name").to_string_lossy();
        let committed = job.path("out").join(format!(
            "{}.jsonl",
            name.trim_start_matches('.').trim_end_matches(".pending")
        ));
        let (from, to) = match commit {
            Commit::Do => (pending, committed),
            Commit::Undo => (committed, pending),
        };
        if from.exists() {
            std::fs::rename(from, to).expect("move a part");
        }
    }
}

/// Flips a bit in `file` of the latest checkpoint: the next run must refuse it, name the
/// file, and commit nothing wrong.
fn damage_then_refuse_to_resume(job: &Job, file: &std::path::Path) {
    // Its output committed, as it is unless the kill fell between completing and committing.
    move_latest_output(job, Commit::Do);
    let mut bytes = std::fs::read(file).expect("the file to damage");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(file, bytes).expect("damage the file");

    let path = job.path("job.toml");
    let out = host(&["run", path.to_str().expect("UTF-8 path")], "");
    assert_eq!(out.code, 1, "{}", out.stderr);
    let name = file.file_name().expect("a file name").to_string_lossy();
    assert!(
        out.stderr.contains(&*name),
        "names the file: {}",
        out.stderr
    );
    assert!(out.stderr.contains("damaged"), "{}", out.stderr);
    assert_eq!(
        job.committed("out")
            .lines()
            .filter(|l| l.contains("alert"))
            .count(),
        0
    );
}

/// Ways a file of a checkpoint is damaged on disk.
#[derive(Debug, Clone, Copy)]
enum Damage {
    Truncate,
    FlipBit,
    Delete,
}

fn damage(file: &std::path::Path, how: Damage) {
    match how {
        Damage::Delete => std::fs::remove_file(file).expect("delete"),
        Damage::Truncate | Damage::FlipBit => {
            let mut bytes = std::fs::read(file).expect("the file to damage");
            if let Damage::Truncate = how {
                bytes.truncate(bytes.len() / 2);
            } else {
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x10;
            }
            std::fs::write(file, bytes).expect("damage the file");
        }
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Every file the latest checkpoint consists of: its metadata, its state files (or a
/// RocksDB checkpoint's private files) and the shared files it lists.
fn checkpoint_files(job: &Job) -> Vec<std::path::PathBuf> {
    let latest = latest_checkpoint(job);
    let metadata = std::fs::read_to_string(latest.join("_metadata")).expect("metadata");
    let mut files = Vec::new();
    let mut walk = vec![latest];
    while let Some(dir) = walk.pop() {
        for entry in std::fs::read_dir(&dir).expect("list").flatten() {
            if entry.file_type().expect("type").is_dir() {
                walk.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    if let Ok(shared) = std::fs::read_dir(job.path("checkpoints/sequence/shared")) {
        files.extend(shared.flatten().map(|e| e.path()).filter(|p| {
            let name = p.file_name().expect("name").to_string_lossy();
            metadata.contains(&format!("\"{name}\""))
        }));
    }
    files.sort();
    files
}

/// Every kind of damage to every file of the latest checkpoint, each on its own copy of a
/// job killed mid-run (two checkpoints retained): the next run either refuses, naming
/// the damaged file or the output that forbids falling back, and commits nothing; or it
/// falls back to the older checkpoint, which is only allowed while it keeps the output
/// exact, and finishes with exactly a failure-free run's output.
fn damage_matrix(state: State) {
    let count = 200_000;
    let origin = Job::new();
    origin.save(&JobFile {
        checkpoint: Some(Checkpoint {
            retain: Some(2),
            ..Checkpoint::every(30)
        }),
        state: Some(state),
        ..sequence_job(count, 2)
    });
    run_and_kill(&origin, 3);
    let files = checkpoint_files(&origin);
    assert!(files.len() >= 3, "{files:?}");
    damage_each(&origin, &files, count);
}

/// Each kind of damage to each of `files` (in `origin`'s folder), each on its own copy
/// of `origin`: see [`damage_matrix`].
pub(super) fn damage_each(origin: &Job, files: &[std::path::PathBuf], count: u64) {
    let relative = files.iter().map(|p| {
        p.strip_prefix(origin.path(""))
            .expect("inside the job's folder")
    });
    for file in relative {
        let empty = std::fs::metadata(origin.path("").join(file))
            .expect("stat")
            .len()
            == 0;
        for how in [Damage::Truncate, Damage::FlipBit, Damage::Delete] {
            if empty && !matches!(how, Damage::Delete) {
                continue; // An empty file (RocksDB's write-ahead log) has no bytes to damage.
            }
            let job = Job::new();
            copy_dir(&origin.path(""), &job.path(""));
            let before = job.committed("out");
            damage(&job.path("").join(file), how);
            let path = job.path("job.toml");
            let out = host(&["run", path.to_str().expect("UTF-8 path")], "");
            let case = format!("{how:?} {}", file.display());
            if out.code == 0 {
                assert!(
                    out.stderr.contains("instead, which keeps exactly-once")
                        || matches!(how, Damage::Delete) && file.ends_with("_metadata"),
                    "{case}: a damaged checkpoint was restored:\n{}",
                    out.stderr
                );
                let output = job.committed("out");
                assert!(!output.contains("alert"), "{case}: state lost or repeated");
                assert_eq!(sorted(&output), expected(count), "{case}");
                continue;
            }
            assert_eq!(out.code, 1, "{case}: {}", out.stderr);
            let name = file.file_name().expect("name").to_string_lossy();
            assert!(
                out.stderr.contains(&*name) || out.stderr.contains("committed after it"),
                "{case}: names the damaged file: {}",
                out.stderr
            );
            assert!(
                out.stderr.contains("--from-savepoint"),
                "{case}: says what to resume from: {}",
                out.stderr
            );
            assert_eq!(job.committed("out"), before, "{case}: committed something");
        }
    }
}

#[test]
fn every_damage_to_every_file_of_a_checkpoint_is_detected() {
    damage_matrix(State::default_backend());
}

#[test]
fn every_damage_to_every_file_of_an_incremental_rocksdb_checkpoint_is_detected() {
    damage_matrix(State::rocksdb());
}

/// Temporary files a crash can leave (metadata being written, a part file in progress)
/// are never restored or committed: the run resumes and the output is exact.
#[test]
fn stray_temporary_files_are_never_restored() {
    let count = 200_000;
    let job = Job::new();
    job.save(&checkpointed(count, 2));
    run_and_kill(&job, 2);
    let latest = latest_checkpoint(&job);
    std::fs::write(
        latest.join("_metadata.inprogress"),
        "weir-checkpoint 2 00000000\n{",
    )
    .expect("stray metadata");
    std::fs::write(latest.join("check-0.state.inprogress"), "garbage").expect("stray state");
    let newer = latest.parent().expect("store").join("chk-999999");
    std::fs::create_dir_all(&newer).expect("mkdir");
    std::fs::copy(latest.join("_metadata"), newer.join("_metadata.inprogress"))
        .expect("a checkpoint that never completed");
    job.write("out/.part-0-999.pending", "{\"key\":\"key-0\",\"seq\":0}\n");
    resume_exactly(&job, count, &[]);
}

/// A crash between a checkpoint's metadata and its commit leaves its output pending; if
/// that checkpoint is then found damaged, the one before it is restored (nothing was
/// committed since it), the damaged one is set aside, and the output is exact.
#[test]
fn a_damaged_checkpoint_that_committed_nothing_falls_back_to_the_one_before() {
    let count = 200_000;
    let job = Job::new();
    job.save(&JobFile {
        checkpoint: Some(Checkpoint {
            retain: Some(2),
            ..Checkpoint::every(30)
        }),
        ..sequence_job(count, 2)
    });
    run_and_kill(&job, 3);
    let latest = latest_checkpoint(&job);
    // The disk as a crash between completing and committing leaves it.
    move_latest_output(&job, Commit::Undo);
    damage(&latest.join("check-0.state"), Damage::FlipBit);
    let path = job.path("job.toml");
    let out = host(&["run", path.to_str().expect("UTF-8 path")], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("instead, which keeps exactly-once"),
        "{}",
        out.stderr
    );
    let output = job.committed("out");
    assert!(!output.contains("alert"), "state was lost or repeated");
    assert_eq!(sorted(&output), expected(count));
    let name = latest.file_name().expect("chk-<n>");
    assert!(
        job.path("checkpoints/sequence/damaged").join(name).is_dir(),
        "the damaged checkpoint is kept aside"
    );
}

/// Every damage to every file of a savepoint is refused by `--from-savepoint`, naming
/// the file, and nothing is committed.
#[test]
fn every_damage_to_every_file_of_a_savepoint_is_detected() {
    let origin = Job::new();
    // Stopped after its first checkpoint and never resumed: enough records (5 s at the
    // generator's cap) that a loaded machine cannot finish the job before the stop.
    origin.save(&checkpointed(2_000_000, 2));
    let savepoint = std::path::PathBuf::from(stop_with_savepoint(&origin, &[]));
    let relative = savepoint
        .strip_prefix(origin.path(""))
        .expect("the savepoint is in the job's folder")
        .to_path_buf();
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&savepoint)
        .expect("savepoint folder")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for file in &files {
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for how in [Damage::Truncate, Damage::FlipBit, Damage::Delete] {
            let job = Job::new();
            copy_dir(&origin.path(""), &job.path(""));
            // Only the savepoint: no checkpoint of the job's own to resume from.
            let _ = std::fs::remove_dir_all(job.path("checkpoints/sequence/chk-1"));
            let before = job.committed("out");
            damage(&job.path("").join(&relative).join(&name), how);
            let path = job.path("job.toml");
            let from = job.path("").join(&relative);
            let out = host(
                &[
                    "run",
                    path.to_str().expect("UTF-8"),
                    "--from-savepoint",
                    from.to_str().expect("UTF-8"),
                ],
                "",
            );
            let case = format!("{how:?} {name}");
            assert_ne!(out.code, 0, "{case}: a damaged savepoint was restored");
            assert!(
                out.stderr.contains(&name) || out.stderr.contains("_metadata"),
                "{case}: names the file: {}",
                out.stderr
            );
            assert_eq!(job.committed("out"), before, "{case}: committed something");
        }
    }
}
