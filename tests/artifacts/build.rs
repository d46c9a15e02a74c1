//! Builds every example and test guest for `wasm32-wasip2` (with the `guest` profile, in
//! a target directory of its own so it never waits on the outer build's lock) and writes
//! one path constant per component.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

#[path = "../../host/src/author/languages.rs"]
#[allow(dead_code)]
mod languages;

/// Folders whose packages are guests if they build a `cdylib`.
const GUEST_FOLDERS: &[&str] = &["examples", "tests/guests", "bench"];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest
        .join("../..")
        .canonicalize()
        .expect("workspace root");
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let target = out
        .ancestors()
        .nth(4)
        .expect("OUT_DIR inside the target directory");
    let guest_target = target.join("guests");

    for watched in [
        "wit",
        "guest-sdk",
        "examples",
        "tests/guests",
        "bench",
        "tests/polyglot",
        "host/src/author/languages.rs",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let packages: Vec<String> = GUEST_FOLDERS
        .iter()
        .flat_map(|folder| {
            fs::read_dir(root.join(folder))
                .expect("guest folder")
                .flatten()
        })
        .filter_map(|entry| {
            let manifest = fs::read_to_string(entry.path().join("Cargo.toml")).ok()?;
            manifest.contains("cdylib").then_some(())?;
            // The package's name: the first `name = "…"` line (of `[package]`).
            let name = manifest
                .lines()
                .find_map(|line| line.strip_prefix("name = \""))?;
            Some(name.trim_end_matches('"').to_string())
        })
        .collect();

    let mut cargo = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(&root)
        .args([
            "build",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "guest",
            "--lib",
        ])
        .env("CARGO_TARGET_DIR", &guest_target)
        // What the outer build sets for itself must not leak into the guests' build.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS");
    for package in &packages {
        cargo.args(["-p", package]);
    }
    let status = cargo.status().expect("cannot run cargo");
    if !status.success() {
        panic!(
            "building the guests for wasm32-wasip2 failed (see above). If the target is \
             missing, run `cargo xtask setup` (or `rustup target add wasm32-wasip2`)."
        );
    }

    let mut constants = String::new();
    for package in &packages {
        let file = guest_target
            .join("wasm32-wasip2/guest")
            .join(format!("{}.wasm", package.replace('-', "_")));
        assert!(file.is_file(), "{} was not built", file.display());
        constants += &format!(
            "/// The `{package}` component.\npub const {}: &str = {:?};\n",
            package.to_uppercase().replace('-', "_"),
            file.display().to_string()
        );
    }
    constants += &polyglot_examples(&root, &guest_target.join("polyglot"));
    fs::write(Path::new(&out).join("artifacts.rs"), constants).expect("write artifacts.rs");
}

/// Builds every example and test guest written in another language
/// (`examples/<name>/{python,js,c}/`, `tests/guests/<name>/…`, and `tests/polyglot/<name>/…`
/// for guests with no Rust version) and returns their path
/// constants (`VISIT_COUNT_PYTHON`, …). A component newer than
/// every file it is built from is kept: the Python and JavaScript builds take 15–25 s.
fn polyglot_examples(root: &Path, dir: &Path) -> String {
    let mut constants = String::new();
    println!("cargo:rerun-if-env-changed=WEIR_TOOLS_DIR");
    let mut examples: Vec<PathBuf> = ["examples", "tests/guests", "tests/polyglot"]
        .iter()
        .flat_map(|folder| fs::read_dir(root.join(folder)).expect("guest folder"))
        .flatten()
        .map(|e| e.path())
        .collect();
    examples.sort();
    for example in examples {
        let name = example
            .file_name()
            .and_then(|n| n.to_str())
            .expect("UTF-8 example name")
            .to_string();
        for language in languages::LANGUAGES {
            let (folder, _) = language.folder_and_entry();
            let source = example.join(folder);
            if !source.is_dir() {
                continue;
            }
            let scratch = dir.join(format!("{name}-{folder}"));
            fs::create_dir_all(&scratch).expect("create the polyglot build folder");
            let out = scratch.join(format!("{}.wasm", name.replace('-', "_")));
            let sdk = root.join("guest-sdk").join(folder);
            let inputs = [source.as_path(), sdk.as_path(), &root.join("wit")];
            let stale = modified(&out).is_none_or(|built| inputs.iter().any(|i| newest(i) > built));
            if stale {
                // Built beside and renamed, so an interrupted build never looks fresh.
                let partial = out.with_extension("wasm.partial");
                languages::build(language, root, &source, &partial, &scratch)
                    .and_then(|()| fs::rename(&partial, &out).map_err(|e| e.to_string()))
                    .unwrap_or_else(|e| {
                        panic!("building example `{name}` in {folder} failed: {e}")
                    });
            }
            constants += &format!(
                "/// `{name}` written in {folder}.\npub const {}_{}: &str = {:?};\n",
                name.to_uppercase().replace('-', "_"),
                language.name().to_uppercase(),
                out.display().to_string()
            );
        }
    }
    constants
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of `path` and everything under it.
fn newest(path: &Path) -> SystemTime {
    let own = modified(path).unwrap_or(SystemTime::UNIX_EPOCH);
    match fs::read_dir(path) {
        Ok(entries) => entries
            .flatten()
            .map(|e| newest(&e.path()))
            .fold(own, SystemTime::max),
        Err(_) => own,
    }
}
