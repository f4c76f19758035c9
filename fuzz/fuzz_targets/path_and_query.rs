#![no_main]
//! Fuzz target: see `bridgekit::fuzzing::path_and_query`.
libfuzzer_sys::fuzz_target!(|text: &str| bridgekit::fuzzing::path_and_query(text));
