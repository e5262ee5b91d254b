//! Fuzz target `engine`: see [`dlm_core_fuzz::engine`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dlm_core_fuzz::engine::check(data));
