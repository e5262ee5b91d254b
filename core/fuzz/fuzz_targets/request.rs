//! Fuzz target `request`: see [`dlm_core_fuzz::request`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dlm_core_fuzz::request::check(data));
