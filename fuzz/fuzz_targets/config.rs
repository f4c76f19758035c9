#![no_main]
//! Fuzz target: see `bridgekit::fuzzing::config`.
libfuzzer_sys::fuzz_target!(|text: &str| bridgekit::fuzzing::config(text));
