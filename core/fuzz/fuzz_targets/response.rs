//! Fuzz target `response`: see [`dlm_core_fuzz::response`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dlm_core_fuzz::response::check(data));
