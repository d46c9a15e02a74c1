//! The operator author's loop, anywhere on the machine: `host new` writes a project (an
//! operator that counts events per user, its job, sample input and expected output, a
//! test, and a copy of the SDK and the WIT this host speaks under `weir/`), and
//! `host build` builds a project to a component, installing its language's tools on
//! first use.
//!
//! A project needs nothing from the Weir repository: `weir/` mirrors the repository's
//! `wit/` and `guest-sdk/`, so the same build steps serve the examples and the projects.

pub mod languages;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use languages::Language;

/// The language of an operator project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// A `cdylib` crate on the Rust SDK.
    Rust,
    /// Python, JavaScript or C.
    Other(Language),
}

impl Lang {
    /// The language called `name` (`rust`, `python`, `js`, `c`).
    pub fn from_name(name: &str) -> Option<Lang> {
        match name {
            "rust" => Some(Lang::Rust),
            _ => languages::LANGUAGES
                .into_iter()
                .find(|l| l.name() == name)
                .map(Lang::Other),
        }
    }

    /// The file a project in this language is built from.
    pub fn source(self) -> &'static str {
        match self {
            Lang::Rust => "src/lib.rs",
            Lang::Other(language) => language.folder_and_entry().1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Other(language) => language.name(),
        }
    }

    /// The language of the project in `dir`, from the files it has.
    pub fn of(dir: &Path) -> Result<Lang, String> {
        if dir.join("Cargo.toml").is_file() {
            return Ok(Lang::Rust);
        }
        languages::LANGUAGES
            .into_iter()
            .find(|l| dir.join(l.folder_and_entry().1).is_file())
            .map(Lang::Other)
            .ok_or_else(|| {
                format!(
                    "{}: no operator here: expected Cargo.toml (Rust), app.py (Python), app.js \
                     (JavaScript) or operator.c (C); `host new NAME --lang LANG` makes one",
                    dir.display()
                )
            })
    }
}

/// The SDK and WIT files a project gets under `weir/`, as the repository has them.
const SDK: &[(&str, &str)] = &[
    ("wit/operator.wit", include_str!("../../wit/operator.wit")),
    (
        "guest-sdk/src/lib.rs",
        include_str!("../../guest-sdk/src/lib.rs"),
    ),
    (
        "guest-sdk/src/bindings.rs",
        include_str!("../../guest-sdk/src/bindings.rs"),
    ),
    (
        "guest-sdk/src/cache.rs",
        include_str!("../../guest-sdk/src/cache.rs"),
    ),
    (
        "guest-sdk/src/error.rs",
        include_str!("../../guest-sdk/src/error.rs"),
    ),
    (
        "guest-sdk/src/operator_state.rs",
        include_str!("../../guest-sdk/src/operator_state.rs"),
    ),
    (
        "guest-sdk/src/runtime.rs",
        include_str!("../../guest-sdk/src/runtime.rs"),
    ),
    (
        "guest-sdk/src/state.rs",
        include_str!("../../guest-sdk/src/state.rs"),
    ),
    (
        "guest-sdk/src/testing.rs",
        include_str!("../../guest-sdk/src/testing.rs"),
    ),
    (
        "guest-sdk/src/wasm.rs",
        include_str!("../../guest-sdk/src/wasm.rs"),
    ),
    (
        "guest-sdk/src/window.rs",
        include_str!("../../guest-sdk/src/window.rs"),
    ),
    (
        "guest-sdk/python/weir/__init__.py",
        include_str!("../../guest-sdk/python/weir/__init__.py"),
    ),
    (
        "guest-sdk/js/weir.js",
        include_str!("../../guest-sdk/js/weir.js"),
    ),
    (
        "guest-sdk/js/build.mjs",
        include_str!("../../guest-sdk/js/build.mjs"),
    ),
    (
        "guest-sdk/c/weir.h",
        include_str!("../../guest-sdk/c/weir.h"),
    ),
    (
        "guest-sdk/c/weir.c",
        include_str!("../../guest-sdk/c/weir.c"),
    ),
];

const SDK_MANIFEST: &str = include_str!("author/templates/guest-sdk.Cargo.toml");

/// A project's files besides `weir/`, by language; `{{…}}` marks what `new` fills in.
fn templates(lang: Lang) -> Vec<(&'static str, &'static str)> {
    let mut files = vec![
        ("job.toml", include_str!("author/templates/job.toml")),
        (
            "data/input.jsonl",
            include_str!("author/templates/input.jsonl"),
        ),
        (
            "data/expected.jsonl",
            include_str!("author/templates/expected.jsonl"),
        ),
        ("README.md", include_str!("author/templates/README.md")),
        (".gitignore", include_str!("author/templates/gitignore")),
    ];
    files.extend(match lang {
        Lang::Rust => vec![
            (
                "Cargo.toml",
                include_str!("author/templates/rust/Cargo.toml"),
            ),
            ("src/lib.rs", include_str!("author/templates/rust/lib.rs")),
        ],
        Lang::Other(Language::Python) => {
            vec![("app.py", include_str!("author/templates/python/app.py"))]
        }
        Lang::Other(Language::JavaScript) => {
            vec![("app.js", include_str!("author/templates/js/app.js"))]
        }
        Lang::Other(Language::C) => {
            vec![("operator.c", include_str!("author/templates/c/operator.c"))]
        }
    });
    files
}

/// The component's file name stem for a project called `name`.
pub fn component(name: &str) -> String {
    name.replace('-', "_")
}

/// Checks `name` can name a project, a crate and a job: a lowercase letter, then
/// lowercase letters, digits, `-` and `_`.
fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let good = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if good {
        Ok(())
    } else {
        Err(format!(
            "`{name}` cannot name an operator: use a lowercase letter, then lowercase letters, \
             digits, `-` or `_` (e.g. `click-count`)"
        ))
    }
}

/// Writes a new project `name` in `lang` into the new folder `dir`; returns the files
/// written, relative to it.
pub fn new_project(dir: &Path, name: &str, lang: Lang) -> Result<Vec<String>, String> {
    check_name(name)?;
    if dir.exists() {
        return Err(format!(
            "{} already exists: `host new` writes a new folder and never overwrites",
            dir.display()
        ));
    }
    let fill = |text: &str| {
        let rust_test = match lang {
            Lang::Rust => "; its harness test: `cargo test`",
            Lang::Other(_) => "",
        };
        text.replace("{{name}}", name)
            .replace("{{component}}", &component(name))
            .replace("{{language}}", lang.name())
            .replace("{{source}}", lang.source())
            .replace("{{rust_test}}", rust_test)
            .replace("{{version}}", env!("CARGO_PKG_VERSION"))
    };
    let mut files: Vec<(String, String)> = templates(lang)
        .into_iter()
        .map(|(path, text)| (path.to_string(), fill(text)))
        .collect();
    for (path, text) in SDK {
        let for_lang = match lang {
            Lang::Rust => path.starts_with("guest-sdk/src/"),
            Lang::Other(language) => {
                path.starts_with(&format!("guest-sdk/{}/", language.folder_and_entry().0))
            }
        };
        if for_lang || path.starts_with("wit/") {
            files.push((format!("weir/{path}"), text.to_string()));
        }
    }
    if lang == Lang::Rust {
        files.push(("weir/guest-sdk/Cargo.toml".into(), fill(SDK_MANIFEST)));
    }
    for (path, text) in &files {
        let path = dir.join(path);
        let parent = path.parent().unwrap_or(dir);
        fs::create_dir_all(parent)
            .and_then(|()| fs::write(&path, text))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(files.into_iter().map(|(path, _)| path).collect())
}

/// A built component.
#[derive(Debug)]
pub struct Built {
    /// Where it is: `<project>/<name>.wasm`, as the project's job file names it.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Builds the project in `dir` to `<dir>/<name>.wasm` (`name` from its job file's
/// component, else the folder's name), installing the language's tools first if they
/// are missing.
pub fn build(dir: &Path) -> Result<Built, String> {
    let lang = Lang::of(dir)?;
    let out = dir.join(component_file(dir)?);
    let scratch = std::env::temp_dir().join(format!("weir-build-{}", std::process::id()));
    let scratch = crate::folder::Folder::create(scratch)
        .map_err(|e| format!("cannot make a scratch folder: {e}"))?;
    match lang {
        Lang::Rust => build_rust(dir, &out)?,
        Lang::Other(language) => {
            let sdk = dir.join("weir");
            if !sdk.join("wit").is_dir() {
                return Err(format!(
                    "{}: no weir/ folder (the SDK and WIT `host new` writes): copy one from a new \
                     project, or make the project with `host new`",
                    dir.display()
                ));
            }
            languages::install_for(language, &languages::tools_dir())?;
            languages::build(language, &sdk, dir, &out, scratch.path())?;
        }
    }
    let bytes = fs::metadata(&out)
        .map_err(|e| format!("the build left no {}: {e}", out.display()))?
        .len();
    Ok(Built { path: out, bytes })
}

/// The component file the project's job names (`component = "…"` of its first
/// operator), else `<folder name>.wasm`.
fn component_file(dir: &Path) -> Result<String, String> {
    let named = fs::read_to_string(dir.join("job.toml"))
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|job| {
            let operator = job.get("operator")?.as_array()?.first()?.as_table()?;
            Some(operator.get("component")?.as_str()?.to_string())
        });
    match named {
        Some(file) if !file.contains('/') => Ok(file),
        Some(file) => Err(format!(
            "{}/job.toml: component `{file}` is in another folder: `host build` writes the \
             component beside the job file",
            dir.display()
        )),
        None => {
            let name = dir
                .canonicalize()
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "operator".into());
            Ok(format!("{}.wasm", component(&name)))
        }
    }
}

/// `cargo build --target wasm32-wasip2 --release` in `dir` (adding the target first if
/// rustup lacks it), then copies the cdylib's component to `out`.
fn build_rust(dir: &Path, out: &Path) -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("cannot run rustup (to add the wasm32-wasip2 target): {e}"))?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|t| t == "wasm32-wasip2")
    {
        let added = Command::new("rustup")
            .args(["target", "add", "wasm32-wasip2"])
            .status()
            .map_err(|e| format!("cannot run rustup: {e}"))?;
        if !added.success() {
            return Err("`rustup target add wasm32-wasip2` failed".into());
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "--lib",
            "--target",
            "wasm32-wasip2",
            "--release",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(dir)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo build failed in {} (see above)",
            dir.display()
        ));
    }
    // The artifact's path from cargo's own messages, wherever its target folder is.
    let built = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(PathBuf::from))
                .collect::<Vec<_>>()
        })
        .rfind(|f| f.extension().is_some_and(|e| e == "wasm"))
        .ok_or_else(|| {
            format!(
                "cargo built no .wasm in {}: is the crate's type `cdylib` (`[lib] crate-type = \
                 [\"cdylib\", \"rlib\"]`)?",
                dir.display()
            )
        })?;
    fs::copy(&built, out)
        .map(|_| ())
        .map_err(|e| format!("cannot copy {} to {}: {e}", built.display(), out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_never_overwrite() {
        assert!(check_name("click-count").is_ok());
        for bad in ["", "Click", "1st", "a b", "a/b", "ü"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let error = new_project(dir.path(), "x", Lang::Rust).unwrap_err();
        assert!(error.contains("already exists"), "{error}");
    }

    #[test]
    fn a_project_gets_its_language_sdk_and_the_wit() {
        for (lang, source, sdk) in [
            (Lang::Rust, "src/lib.rs", "weir/guest-sdk/src/runtime.rs"),
            (
                Lang::Other(Language::Python),
                "app.py",
                "weir/guest-sdk/python/weir/__init__.py",
            ),
            (
                Lang::Other(Language::JavaScript),
                "app.js",
                "weir/guest-sdk/js/build.mjs",
            ),
            (
                Lang::Other(Language::C),
                "operator.c",
                "weir/guest-sdk/c/weir.c",
            ),
        ] {
            let parent = tempfile::tempdir().unwrap();
            let dir = parent.path().join("click-count");
            let files = new_project(&dir, "click-count", lang).unwrap();
            for file in [
                source,
                sdk,
                "weir/wit/operator.wit",
                "job.toml",
                "README.md",
            ] {
                assert!(
                    files.iter().any(|f| f == file),
                    "{lang:?}: {file} in {files:?}"
                );
            }
            assert!(
                !files
                    .iter()
                    .any(|f| f.contains("/c/") && lang != Lang::Other(Language::C))
            );
            assert_eq!(Lang::of(&dir).unwrap(), lang);
            let job = fs::read_to_string(dir.join("job.toml")).unwrap();
            assert!(job.contains("component = \"click_count.wasm\""), "{job}");
            assert_eq!(component_file(&dir).unwrap(), "click_count.wasm");
            let readme = fs::read_to_string(dir.join("README.md")).unwrap();
            assert_eq!(readme.lines().count(), 5, "{readme}");
            assert!(!readme.contains("{{") && !job.contains("{{"));
            crate::job::parse(&dir.join("job.toml"), &job).unwrap();
        }
    }

    #[test]
    fn the_version_names_the_wit_package_a_project_gets() {
        let wit = SDK
            .iter()
            .find(|(path, _)| *path == "wit/operator.wit")
            .unwrap()
            .1;
        let package = crate::wasm::WIT_PACKAGE;
        assert!(wit.contains(&format!("package {package};")), "{package}");
        assert!(crate::wasm::VERSION.ends_with(&format!("(WIT {package})")));
    }

    /// Every SDK source file of the repository is in the copy `host new` writes.
    #[test]
    fn the_sdk_copy_has_every_sdk_file() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for folder in [
            "wit",
            "guest-sdk/src",
            "guest-sdk/python/weir",
            "guest-sdk/js",
            "guest-sdk/c",
        ] {
            for entry in fs::read_dir(root.join(folder)).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                if name == "__pycache__" {
                    continue;
                }
                let path = format!("{folder}/{name}");
                assert!(SDK.iter().any(|(p, _)| *p == path), "{path} is not in SDK");
            }
        }
    }

    /// The SDK copy's manifest pins what the workspace builds the SDK with.
    #[test]
    fn the_sdk_copy_depends_on_what_the_workspace_uses() {
        let workspace: toml::Table = include_str!("../../Cargo.toml").parse().unwrap();
        let copy: toml::Table = SDK_MANIFEST.parse().unwrap();
        let deps = &workspace["workspace"]["dependencies"];
        for name in ["serde", "serde_json", "wit-bindgen"] {
            assert_eq!(copy["dependencies"][name], deps[name], "{name}");
        }
        assert_eq!(
            copy["package"]["rust-version"],
            workspace["workspace"]["package"]["rust-version"]
        );
    }
}
