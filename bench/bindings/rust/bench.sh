#!/usr/bin/env bash
# The dlm crate against redis-rs (src/main.rs, the crate dlm-bench-bindings).
# Builds it with cargo (a no-op when the driver, scripts/bench-bindings.sh,
# already did) and runs it. The contract: ../README.md.
set -euo pipefail
root=${DLM_BENCH_ROOT:-$(cd "$(dirname "$0")/../../.." && pwd)}
cd "$root"
case "${DLM_BENCH_PROFILE:-release}" in
  dev) cargo build -q --locked -p dlm-bench-bindings >&2; dir=debug ;;
  *) cargo build -q --locked --release -p dlm-bench-bindings >&2; dir=release ;;
esac
exec "target/$dir/bench-bindings-rust"
