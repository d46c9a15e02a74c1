//! Builds every example and test guest for `wasm32-wasip2` (with the `guest` profile, in
//! a target directory of its own so it never waits on the outer build's lock) and writes
//! one path constant per component.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

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
    fs::write(Path::new(&out).join("artifacts.rs"), constants).expect("write artifacts.rs");
}
