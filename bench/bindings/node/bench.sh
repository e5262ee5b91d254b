#!/usr/bin/env bash
# dlm-client (wasm/js) against ioredis (bench.js): installs the locked npm
# packages if missing, builds the dlm-client package's WebAssembly
# (scripts/build-wasm.sh; a release build whatever DLM_BENCH_PROFILE says:
# a debug module would measure the wrong thing, and the build takes
# seconds), and runs it. The contract: ../README.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${DLM_BENCH_ROOT:-$(cd "$here/../../.." && pwd)}
if [ ! -d "$here/node_modules/ioredis" ]; then
  (cd "$here" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error) >&2
fi
"$root/scripts/build-wasm.sh" >&2
exec node "$here/bench.js" \
  --dlm "$DLM_BENCH_DLM" --redis "$DLM_BENCH_REDIS" \
  --seconds "${DLM_BENCH_SECONDS:-3}" \
  --workers "$(tr ' ' ',' <<<"${DLM_BENCH_WORKERS:-16 64}")" \
  --workloads "$(tr ' ' ',' <<<"${DLM_BENCH_WORKLOADS:-lock kv}")" \
  --run "${DLM_BENCH_RUN:-node-$$}"
