//! Test guest: a well-formed component that exports a greeting instead of the
//! `weir:operator/guest` interface, so the host must refuse it with a clear message.

wit_bindgen::generate!({
    inline: "
        package test:other;
        world greeter {
            export greet: func() -> string;
        }
    ",
});

struct Greeter;

impl Guest for Greeter {
    fn greet() -> String {
        "hello".into()
    }
}

export!(Greeter);
