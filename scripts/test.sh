#!/usr/bin/env bash
# Runs every check and every test of every language. `make test` calls this;
# so does CI (.ci/run). It sets up what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

# One full build: incremental caches would only cost disk (GiBs) here.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step() { printf '\n==> %s\n' "$*"; }

step setup
scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "feature matrix of dlm-core (clippy: each build has code of its own)"
cargo clippy -p dlm-core --locked --no-default-features -- -D warnings
cargo clippy -p dlm-core --locked --no-default-features --features alloc -- -D warnings
cargo clippy -p dlm-core --locked --no-default-features --features seal -- -D warnings
cargo check -p dlm-core --locked --all-features
# Without an allocator the engine refuses semaphores and read/write locks.
cargo test -p dlm-core --locked --no-default-features --test engine_no_alloc

step "no_std build for a target without std"
cargo build -p dlm-core --locked --no-default-features --target thumbv7em-none-eabihf
cargo build -p dlm-core --locked --no-default-features --features seal --target thumbv7em-none-eabihf

step "build binaries (the end-to-end tests start them)"
cargo build --workspace --bins --locked

step "cargo test"
cargo test --workspace --locked
cargo test -p dlm-core --locked --all-features --lib

step "Debian package: dpkg -i, run by systemd (booted in namespaces), reload, crash, stop, purge"
scripts/test-deb-systemd.sh

step "Python: a JackrabbitDLM-style client against dlm-server"
python3 -m pytest -q tests/python

step "Python package (python/): wheel built by maturin, pytest against dlm-server"
scripts/test-python.sh

step "cargo doc -D warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "Go: package dlm over libdlm (ffi/go)"; scripts/test-go.sh

step "chaos: a short fault-injection run against 3-member clusters (~2 min; make chaos is the long one)"
scripts/chaos.sh --quick

step "WebAssembly module and Node.js package (wasm/)"; scripts/test-wasm.sh

step "benchmark smoke run (dlm-server, Redis and the floor, a few seconds)"
scripts/bench.sh --quick

step "bindings benchmark smoke run (C, Go, Node, Python, Rust against their Redis clients; debug builds)"
scripts/bench-bindings.sh --quick

step "all tests passed"
