#![no_main]
//! Fuzz target: see `bridgekit::fuzzing::registration`.
libfuzzer_sys::fuzz_target!(|text: &str| bridgekit::fuzzing::registration(text));
