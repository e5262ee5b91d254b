//! The properties the fuzz targets check, one module per target, each a
//! `check(data)` that panics on a violation. They only need dlm-core and
//! std, so `core/tests/fuzz_regressions.rs` compiles the same files on
//! stable (by `#[path]`) to replay seeds and crashers in every test run.

pub mod codec;
pub mod engine;
pub mod request;
pub mod response;
