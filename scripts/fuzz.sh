#!/usr/bin/env bash
# Long randomized runs (`make fuzz`): the deterministic server simulation
# over many more seeds than `make test` (release build), the engine against
# its model with many more cases, and, where a nightly toolchain with
# cargo-fuzz is installed, each fuzz target of dlm-core for a while.
#
#   SEEDS=200000 FIRST=0 FUZZ_SECONDS=60 scripts/fuzz.sh
#
# A failing simulation seed prints the command that replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

seeds=${SEEDS:-200000}
# A different range each run unless asked: more of the space over time.
first=${FIRST:-$(( ($(date +%s) % 100000) * 100000 ))}
echo "==> server simulation: seeds $first..$((first + seeds)) (replay one with DLM_SIM_SEED=<seed>)"
DLM_SIM_SEEDS=$seeds DLM_SIM_FIRST=$first \
  cargo test --release --locked -p dlm-server --test sim -- --nocapture

echo "==> engine against its model: ${CASES:-20000} cases"
PROPTEST_CASES=${CASES:-20000} cargo test --release --locked -p dlm-core --test engine_model

if cargo +nightly fuzz --version >/dev/null 2>&1; then
  for target in $(cd core/fuzz && cargo +nightly fuzz list); do
    echo "==> cargo fuzz $target for ${FUZZ_SECONDS:-60} s"
    (cd core/fuzz && cargo +nightly fuzz run "$target" -- -max_total_time="${FUZZ_SECONDS:-60}")
  done
else
  echo "==> cargo-fuzz targets skipped: no nightly toolchain with cargo-fuzz (rustup toolchain install nightly; cargo install cargo-fuzz)"
fi
