//! Fuzz target `codec`: see [`dlm_core_fuzz::codec`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dlm_core_fuzz::codec::check(data));
