//! The fuzz targets' bodies (`fuzz/` runs them under libFuzzer), also run over the
//! committed corpus by a regular test, so that a crash once found stays fixed. Each takes
//! any bytes and must return without panicking; what it decodes must also round-trip.
//!
//! Checksums would stop almost every mutated input at the first check, so each decoder is
//! fed the raw bytes *and* the bytes with a valid header and checksum put around them.

use std::path::{Path, PathBuf};

use crate::checkpoint::metadata::{self, Metadata};
use crate::job::JsonPointer;
use crate::record::KeySelector;
use crate::state::snapshot::{self, Snapshot};

/// `_metadata` files: the checkpoint metadata decoder.
pub fn checkpoint_metadata(data: &[u8]) {
    let _ = Metadata::decode(data);
    if let Ok(decoded) = Metadata::decode(&with_metadata_header(data)) {
        let again = Metadata::decode(&decoded.encode()).expect("re-encoded metadata decodes");
        assert_eq!(again.encode(), decoded.encode(), "metadata round-trips");
    }
}

/// State files: the canonical snapshot decoder.
pub fn state_snapshot(data: &[u8]) {
    let _ = Snapshot::decode(data);
    if let Ok(decoded) = Snapshot::decode(&with_snapshot_frame(data)) {
        assert_eq!(
            Snapshot::decode(&decoded.encode()).as_ref(),
            Ok(&decoded),
            "snapshot round-trips"
        );
    }
}

/// A savepoint folder as `host state` and `--from-savepoint` read it: the first byte
/// splits the input into a `_metadata` body and a state file `op-0.state`.
pub fn savepoint(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(rest.len());
    let (meta, state) = rest.split_at(at * rest.len() / 255);
    let dir = scratch();
    let written = std::fs::write(dir.join("_metadata"), with_metadata_header(meta))
        .and_then(|()| std::fs::write(dir.join("op-0.state"), with_snapshot_frame(state)));
    if written.is_ok() {
        let _ = crate::inspect::Checkpoint::open(&dir).map(|c| c.summary());
    }
}

/// Job files: the job-file parser and validator.
pub fn job_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::job::parse(Path::new("/nonexistent/job.toml"), text);
    }
}

/// Record keys: wherever the fast key scanner answers, the serde path finds the same key
/// (the first byte picks the pointer).
pub fn key_extraction(data: &[u8]) {
    let Some((&choice, document)) = data.split_first() else {
        return;
    };
    let pointers = ["", "/key", "/a/id", "/0", "/a/b/c"];
    let pointer = pointers[usize::from(choice) % pointers.len()];
    let selector = KeySelector::new(JsonPointer::parse(pointer).expect("valid pointer"), 128);
    if let Some(fast) = crate::record::scan::string_key(document, &selector.tokens) {
        let slow = selector.key_by_serde(document);
        assert_eq!(slow.ok().as_deref(), Some(fast), "the key at {pointer}");
    }
}

fn with_metadata_header(body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{} {} {:08x}\n",
        metadata::HEADER,
        metadata::FORMAT_VERSION,
        crc32c::crc32c(body)
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn with_snapshot_frame(body: &[u8]) -> Vec<u8> {
    let mut out = snapshot::MAGIC.to_vec();
    out.extend_from_slice(&snapshot::FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// This process's folder for the savepoint target's files.
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every committed corpus input of every target (`fuzz/corpus/<target>/`).
    #[test]
    fn the_fuzz_corpus_runs_clean() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 5] = [
            ("checkpoint_metadata", checkpoint_metadata),
            ("state_snapshot", state_snapshot),
            ("savepoint", savepoint),
            ("job_file", job_file),
            ("key_extraction", key_extraction),
        ];
        for (name, target) in targets {
            let dir = corpus.join(name);
            let inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .flatten()
                .map(|e| e.path())
                .collect();
            assert!(!inputs.is_empty(), "{} is empty", dir.display());
            for input in inputs {
                let data = std::fs::read(&input).expect("read corpus input");
                target(&data);
            }
        }
        let _ = std::fs::remove_dir_all(scratch());
    }
}
