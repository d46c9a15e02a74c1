//! The operator author's loop, as a new user runs it, in a folder outside the Weir
//! checkout, for every language: `host new` → `host build` → `host test` passes →
//! `host run` of the generated job gives the expected output → the operator edited to
//! count twice → `host test` fails with a diff.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::{committed, host_in};

/// Where Rust projects build: one folder kept between runs (beside the test guests'),
/// so that the SDK's dependencies are compiled once.
fn rust_target() -> PathBuf {
    Path::new(test_artifacts::VISIT_COUNT)
        .ancestors()
        .nth(4)
        .expect("the guests' target folder")
        .join("author-loop")
}

#[test]
fn new_build_test_run_and_a_failing_edit_in_every_language_outside_the_checkout() {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the checkout")
        .canonicalize()
        .expect("canonical checkout");
    let target = rust_target();
    for (lang, source) in [
        ("rust", "src/lib.rs"),
        ("python", "app.py"),
        ("js", "app.js"),
        ("c", "operator.c"),
    ] {
        let home = tempfile::tempdir().expect("a folder outside the checkout");
        assert!(!home.path().canonicalize().unwrap().starts_with(&checkout));
        let name = format!("clicks-{lang}");
        let new = host_in(home.path(), &["new", &name, "--lang", lang], &[]);
        assert_eq!(new.code, 0, "{lang}: {}", new.stderr);
        let dir = home.path().join(&name);
        let envs = [("CARGO_TARGET_DIR", target.as_path())];

        let built = host_in(&dir, &["build"], &envs);
        assert_eq!(built.code, 0, "{lang}: {}", built.stderr);
        let component = format!("clicks_{lang}.wasm");
        assert!(
            built.stdout.contains(&component),
            "{lang}: {}",
            built.stdout
        );
        assert!(built.stdout.contains("bytes)"), "{lang}: {}", built.stdout);

        let test = [
            "test",
            &component,
            "--input",
            "data/input.jsonl",
            "--expect",
            "data/expected.jsonl",
            "--key-by",
            "/user",
            "--restore-every",
            "2",
        ];
        let passed = host_in(&dir, &test, &[]);
        assert_eq!(passed.code, 0, "{lang}: {}", passed.stderr);
        assert!(
            passed.stdout.contains("passed"),
            "{lang}: {}",
            passed.stdout
        );

        let ran = host_in(&dir, &["run", "job.toml"], &[]);
        assert_eq!(ran.code, 0, "{lang}: {}", ran.stderr);
        let expected = fs::read_to_string(dir.join("data/expected.jsonl")).expect("expected");
        assert_eq!(
            committed(&dir.join("out")),
            expected,
            "{lang}: the job's output"
        );

        // Count twice: the test must now fail and show how.
        let path = dir.join(source);
        let code = fs::read_to_string(&path).expect("the operator's source");
        assert_eq!(
            code.matches("+ 1").count(),
            1,
            "{lang}: one increment to edit"
        );
        fs::write(&path, code.replace("+ 1", "+ 2")).expect("edit the operator");
        let rebuilt = host_in(&dir, &["build"], &envs);
        assert_eq!(rebuilt.code, 0, "{lang}: {}", rebuilt.stderr);
        let failed = host_in(&dir, &test, &[]);
        assert_eq!(failed.code, 1, "{lang}: {}", failed.stdout);
        assert!(
            failed.stderr.contains("(- expected, + actual)")
                && failed
                    .stderr
                    .contains(r#"+     3  {"user":"ada","count":4}"#),
            "{lang}: {}",
            failed.stderr
        );
    }
}

#[test]
fn build_outside_a_project_and_new_over_a_folder_say_what_to_do() {
    let home = tempfile::tempdir().expect("temp dir");
    let built = host_in(home.path(), &["build"], &[]);
    assert_eq!(built.code, 1, "{}", built.stderr);
    assert!(
        built.stderr.contains("no operator here"),
        "{}",
        built.stderr
    );
    assert!(
        built.stderr.contains("host new NAME --lang LANG"),
        "{}",
        built.stderr
    );
    fs::create_dir(home.path().join("taken")).expect("a folder");
    let new = host_in(home.path(), &["new", "taken", "--lang", "c"], &[]);
    assert_eq!(new.code, 2, "{}", new.stderr);
    assert!(new.stderr.contains("already exists"), "{}", new.stderr);
    let new = host_in(home.path(), &["new", "ok", "--lang", "cobol"], &[]);
    assert_eq!(new.code, 2, "{}", new.stderr);
    assert!(
        new.stderr.contains("expected rust, python, js or c"),
        "{}",
        new.stderr
    );
}
