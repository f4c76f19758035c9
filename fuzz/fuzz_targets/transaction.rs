#![no_main]
//! Fuzz target: see `bridgekit::fuzzing::transaction`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| bridgekit::fuzzing::transaction(data));
