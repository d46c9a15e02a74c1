//! Paths of the Wasm components built from the examples and test guests by this crate's
//! build script: one `&str` constant per guest, named after its package
//! (`visit-count` → `VISIT_COUNT`).

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
