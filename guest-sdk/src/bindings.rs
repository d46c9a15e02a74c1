//! Generated bindings for the `weir:operator` world. Only the SDK uses them; operator
//! authors see the typed API of the crate root.
#![allow(missing_docs)] // generated code; the WIT carries the docs

wit_bindgen::generate!({
    path: "../wit",
    world: "operator",
    pub_export_macro: true,
    export_macro_name: "__export_weir_operator",
    default_bindings_module: "guest_sdk::__private::bindings",
    // The batch state calls' records are compared in the SDK's tests.
    additional_derives: [PartialEq],
});
