#![no_main]
//! Fuzz target: see `bridgekit::fuzzing::event`.
libfuzzer_sys::fuzz_target!(|text: &str| bridgekit::fuzzing::event(text));
