#![no_main]
//! Fuzz target: see `bridgekit::fuzzing::authorization`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| bridgekit::fuzzing::authorization(data));
