//! End-to-end tests: the real `host` binary runs real components, built from the
//! examples and test guests by `test-artifacts`, on real files.

mod author;
mod bad_input;
mod bench;
mod broadcast;
mod event_time;
mod examples;
mod host_test;
mod kafka;
mod languages;
mod parallel;
mod poison;
mod recovery;
mod sandbox;
mod state_kinds;
mod support;
mod timers;
mod ttl;
mod windows;
