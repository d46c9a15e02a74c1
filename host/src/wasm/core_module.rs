//! Core Wasm modules made into components: what C operators are, as clang and
//! `wit-bindgen c` leave them (a `wasm32-wasip1` reactor module carrying the
//! `weir:operator` world in a `component-type` custom section).
//!
//! The module's WASI preview1 imports are bridged to WASI preview 2 by the reactor adapter
//! of this host's own wasmtime version, so the result is linked like any component.

use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};

/// The component for the core module `bytes`, or why there is none, for the user.
pub(super) fn componentize(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if !has_component_type(bytes) {
        return Err(
            "this is a core Wasm module, not a component, and it carries no WIT world: \
             build Rust operators with `--target wasm32-wasip2`; link C operators with the \
             `operator_component_type.o` that `wit-bindgen c` writes (see docs/c.md)"
                .into(),
        );
    }
    let not_an_operator = |e: wasmtime::anyhow::Error| {
        format!(
            "this is a core Wasm module without a usable `weir:operator` world ({e:#}): build \
             Rust operators with `--target wasm32-wasip2`; link C operators with the \
             `operator_component_type.o` that `wit-bindgen c` writes (see docs/c.md)"
        )
    };
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(bytes)
        .map_err(not_an_operator)?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .map_err(not_an_operator)?
        .encode()
        .map_err(not_an_operator)
}

/// Whether the module has the custom section `wit-bindgen` writes its world into.
fn has_component_type(bytes: &[u8]) -> bool {
    wasmparser::Parser::new(0)
        .parse_all(bytes)
        .any(|payload| match payload {
            Ok(wasmparser::Payload::CustomSection(section)) => {
                section.name().starts_with("component-type")
            }
            _ => false,
        })
}
