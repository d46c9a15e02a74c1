//! Compiled components on disk, so that a second start of the same component skips
//! Cranelift (hundreds of milliseconds for a small Rust operator, seconds for large ones).
//!
//! An entry is named by the SHA-256 of the component's bytes and the engine's
//! compatibility hash (wasmtime version and settings), so a changed component or another
//! host version never finds a stale entry. Each file ends with a CRC-32C of its contents
//! and a magic tag; an entry that fails the check, or that wasmtime refuses, is compiled
//! again and replaced, never trusted.
//!
//! The folder is `$WEIR_CACHE_DIR`, else `$XDG_CACHE_HOME/weir/compiled`, else
//! `~/.cache/weir/compiled`; `WEIR_CACHE_DIR=off` turns the cache off. Entries are
//! native code run by this host: the folder must be writable only by its user.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 8] = b"WEIRCWSM";

/// Where compiled components are kept, if anywhere.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: Option<PathBuf>,
}

impl Cache {
    /// The cache folder the environment names (see the module's documentation).
    pub fn from_env() -> Cache {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        let dir = match var("WEIR_CACHE_DIR") {
            Some(dir) if dir == "off" => None,
            Some(dir) => Some(PathBuf::from(dir)),
            None => var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|home| Path::new(&home).join(".cache")))
                .map(|base| base.join("weir").join("compiled")),
        };
        Cache { dir }
    }

    /// A cache in `dir`.
    pub fn in_dir(dir: &Path) -> Cache {
        Cache {
            dir: Some(dir.to_path_buf()),
        }
    }

    /// The component `bytes` compiled for `engine`: from the cache when a good entry is
    /// there, else compiled (and stored, when the folder is writable).
    pub fn component(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
        let Some(dir) = &self.dir else {
            return Component::new(engine, bytes);
        };
        let path = dir.join(entry_name(engine, bytes));
        if let Some(component) = read(engine, &path) {
            return Ok(component);
        }
        let compiled = engine.precompile_component(bytes)?;
        // A cache that cannot be written only costs time: compile every start.
        let _ = write(dir, &path, &compiled);
        // SAFETY: `compiled` was produced just above by this engine's own compiler.
        unsafe { Component::deserialize(engine, &compiled) }
    }
}

/// `<sha256 of the component>-<engine compatibility hash>.cwasm`.
fn entry_name(engine: &Engine, bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}-{:016x}.cwasm", engine_hash.finish())
}

/// A good entry, or `None` (missing, damaged, or refused by wasmtime).
fn read(engine: &Engine, path: &Path) -> Option<Component> {
    let file = std::fs::read(path).ok()?;
    let Some(compiled) = checked(&file) else {
        eprintln!(
            "weir: compiled component cache entry {} is damaged; compiling again",
            path.display()
        );
        return None;
    };
    // SAFETY: the entry was written by `write` from `precompile_component` of an engine
    // with the same compatibility hash (its name), and its checksum matches, so these
    // are the bytes wasmtime produced; wasmtime still checks their header and version.
    unsafe { Component::deserialize(engine, compiled) }.ok()
}

/// The compiled bytes of an entry whose trailer (CRC-32C, magic) checks out.
fn checked(file: &[u8]) -> Option<&[u8]> {
    let (rest, magic) = file.split_last_chunk::<8>()?;
    let (compiled, crc) = rest.split_last_chunk::<4>()?;
    (magic == MAGIC && u32::from_le_bytes(*crc) == crc32c::crc32c(compiled)).then_some(compiled)
}

/// Writes an entry atomically (temporary file, then rename).
fn write(dir: &Path, path: &Path, compiled: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut file = compiled.to_vec();
    file.extend_from_slice(&crc32c::crc32c(compiled).to_le_bytes());
    file.extend_from_slice(MAGIC);
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temp = path.with_extension(format!("tmp-{}-{unique}", std::process::id()));
    std::fs::write(&temp, &file)?;
    std::fs::rename(&temp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    #[test]
    fn a_second_load_uses_the_entry_and_a_damaged_entry_is_compiled_again() {
        let engine = Engine::default();
        let bytes = std::fs::read(test_artifacts::VISIT_COUNT).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::in_dir(dir.path());

        cache.component(&engine, &bytes).unwrap();
        let [entry] = entries(dir.path()).try_into().unwrap();
        let written = std::fs::read(&entry).unwrap();
        assert!(read(&engine, &entry).is_some(), "a good entry is used");

        // Damaged anywhere, truncated, or emptied: never trusted, and replaced.
        for damage in [
            |b: &mut Vec<u8>| {
                let middle = b.len() / 2;
                b[middle] ^= 1;
            },
            |b: &mut Vec<u8>| b.truncate(b.len() - 3),
            |b: &mut Vec<u8>| b.clear(),
        ] {
            let mut bytes_on_disk = written.clone();
            damage(&mut bytes_on_disk);
            std::fs::write(&entry, &bytes_on_disk).unwrap();
            assert!(read(&engine, &entry).is_none());
            cache.component(&engine, &bytes).unwrap();
            assert_eq!(std::fs::read(&entry).unwrap(), written, "rewritten");
        }

        // Another component gets its own entry.
        let other = std::fs::read(test_artifacts::DEDUP).unwrap();
        cache.component(&engine, &other).unwrap();
        assert_eq!(entries(dir.path()).len(), 2);
    }
}
