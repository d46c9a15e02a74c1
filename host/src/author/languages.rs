//! Operators in Python, JavaScript and C: installing each language's tools and building
//! an operator's source folder to a component.
//!
//! Used by `host build`, and shared with `xtask` (setup, examples) and the
//! test-artifacts build script, which include this file with `#[path]`; so it uses
//! nothing but std.
//!
//! Tools live in `$WEIR_TOOLS_DIR`, else `~/.cache/weir/tools`: a Python virtualenv with
//! componentize-py (`py/`), an npm folder with componentize-js (`js/`), and
//! wit-bindgen's command line (`cargo/bin/`); clang, lld and wasi-libc come from Debian.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A language an operator can be written in, besides Rust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Python,
    JavaScript,
    C,
}

pub const LANGUAGES: [Language; 3] = [Language::Python, Language::JavaScript, Language::C];

const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.23.0";
const WIT_BINDGEN_CLI: &str = "wit-bindgen-cli@0.61.1";
/// Debian's C toolchain for `wasm32-wasi` (clang 14 still calls WASI preview 1 so).
const DEBIAN_PACKAGES: [&str; 4] = [
    "clang-14",
    "lld-14",
    "wasi-libc",
    "libclang-rt-14-dev-wasm32",
];

impl Language {
    /// The folder an example keeps this language's source in, and the name of the
    /// entry file inside it.
    pub fn folder_and_entry(self) -> (&'static str, &'static str) {
        match self {
            Language::Python => ("python", "app.py"),
            Language::JavaScript => ("js", "app.js"),
            Language::C => ("c", "operator.c"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::JavaScript => "js",
            Language::C => "c",
        }
    }
}

/// `$WEIR_TOOLS_DIR`, else `~/.cache/weir/tools`.
pub fn tools_dir() -> PathBuf {
    match std::env::var_os("WEIR_TOOLS_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
            .join(".cache/weir/tools"),
    }
}

fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let status = command
        .status()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

/// Installs every language's tools that are missing; does nothing when all are there.
pub fn install(tools: &Path) -> Result<(), String> {
    LANGUAGES
        .into_iter()
        .try_for_each(|language| install_for(language, tools))
}

/// Installs `language`'s tools if they are missing.
pub fn install_for(language: Language, tools: &Path) -> Result<(), String> {
    match language {
        Language::Python => install_python(tools),
        Language::JavaScript => install_js(tools),
        Language::C => install_c(tools),
    }
}

fn install_c(tools: &Path) -> Result<(), String> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .into_iter()
        .filter(|p| {
            !Command::new("dpkg")
                .args(["-s", p])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if !missing.is_empty() {
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))
        .map_err(|e| format!("{e}: C operators need {}", missing.join(" ")))?;
    }
    let bindgen = tools.join("cargo/bin/wit-bindgen");
    let bindgen_version = WIT_BINDGEN_CLI.rsplit('@').next().unwrap_or_default();
    if !Command::new(&bindgen)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(bindgen_version))
    {
        run(
            Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["install", "--locked", WIT_BINDGEN_CLI, "--root"])
                .arg(tools.join("cargo")),
        )?;
    }
    Ok(())
}

fn install_python(tools: &Path) -> Result<(), String> {
    let py = tools.join("py");
    let version = COMPONENTIZE_PY.split("==").nth(1).unwrap_or_default();
    let installed = Command::new(py.join("bin/componentize-py"))
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(version));
    if !installed {
        run(Command::new("python3").arg("-m").arg("venv").arg(&py))?;
        run(Command::new(py.join("bin/pip")).args(["install", "-q", COMPONENTIZE_PY]))?;
    }
    Ok(())
}

fn install_js(tools: &Path) -> Result<(), String> {
    let js = tools.join("js");
    let package = js.join("node_modules/@bytecodealliance/componentize-js/package.json");
    let js_version = COMPONENTIZE_JS.rsplit('@').next().unwrap_or_default();
    if !std::fs::read_to_string(&package)
        .is_ok_and(|p| p.contains(&format!("\"version\": \"{js_version}\"")))
    {
        std::fs::create_dir_all(&js).map_err(|e| format!("cannot create {}: {e}", js.display()))?;
        if !js.join("package.json").is_file() {
            std::fs::write(js.join("package.json"), "{\"private\": true}\n")
                .map_err(|e| format!("cannot write {}: {e}", js.display()))?;
        }
        run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", COMPONENTIZE_JS])
            .current_dir(&js))?;
    }
    Ok(())
}

/// Builds the operator whose source is `source` (an example's `python/`, `js/` or `c/`
/// folder, or a project `host new` made) to `out`, a component (for C, a core module the
/// host componentizes itself). `root` holds `wit/` and `guest-sdk/` (the Weir checkout,
/// or a project's `weir/` copy); `scratch` a folder for intermediate files.
pub fn build(
    language: Language,
    root: &Path,
    source: &Path,
    out: &Path,
    scratch: &Path,
) -> Result<(), String> {
    let tools = tools_dir();
    let wit = root.join("wit");
    let sdk = root.join("guest-sdk");
    let hint = |tool: &Path| {
        if tool.exists() {
            Ok(())
        } else {
            Err(format!(
                "{} is missing: `host build` installs the tools for Python, JavaScript \
                 and C operators on first use (or run `cargo xtask setup`)",
                tool.display()
            ))
        }
    };
    match language {
        Language::Python => {
            let componentize = tools.join("py/bin/componentize-py");
            hint(&componentize)?;
            run(Command::new(componentize)
                .arg("-d")
                .arg(&wit)
                .args(["-w", "operator", "componentize", "-p"])
                .arg(sdk.join("python"))
                .arg("-p")
                .arg(source)
                .args(["app", "-o"])
                .arg(out))
        }
        Language::JavaScript => {
            hint(&tools.join("js/node_modules/@bytecodealliance/componentize-js"))?;
            run(Command::new("node")
                .arg(sdk.join("js/build.mjs"))
                .arg(source.join("app.js"))
                .arg("-o")
                .arg(out)
                .env("WEIR_TOOLS_DIR", &tools))
        }
        Language::C => {
            let bindgen = tools.join("cargo/bin/wit-bindgen");
            hint(&bindgen)?;
            let bindings = scratch.join("bindings");
            run(Command::new(bindgen)
                .arg("c")
                .arg(&wit)
                .args(["--world", "operator", "--out-dir"])
                .arg(&bindings))?;
            run(Command::new("clang-14")
                .args(["--target=wasm32-wasi", "-mexec-model=reactor", "-O2"])
                .args(["-Wall", "-Wextra", "-Werror"])
                .arg("-I")
                .arg(&bindings)
                .arg("-I")
                .arg(sdk.join("c"))
                .arg("-o")
                .arg(out)
                .arg(source.join("operator.c"))
                .arg(sdk.join("c/weir.c"))
                .arg(bindings.join("operator.c"))
                .arg(bindings.join("operator_component_type.o")))
        }
    }
}
