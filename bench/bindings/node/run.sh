#!/usr/bin/env bash
# Runs bench.js on this machine by itself: a private redis-server and a
# release dlm-server on free loopback ports, both stopped afterwards.
# Installs redis-server (Debian) and the bench's locked npm packages if
# missing, builds dlm-server (release) and the dlm-client package.
#
#   bench/bindings/node/run.sh [--seconds S] [other bench.js arguments]
#
# scripts/bench-bindings.sh runs bench.js the same way for its table.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
cd "$repo"

if ! command -v redis-server >/dev/null 2>&1; then
  echo "run.sh: installing redis-server..." >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y redis-server >/dev/null; else sudo apt-get install -y redis-server >/dev/null; fi
  # Debian starts a system instance; this runs its own private one.
  (systemctl stop redis-server 2>/dev/null || service redis-server stop 2>/dev/null || true) >/dev/null
fi
if [ ! -d "$here/node_modules/ioredis" ]; then
  (cd "$here" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error)
fi
cargo build --release --locked -p dlm-server
scripts/build-wasm.sh

target=${CARGO_TARGET_DIR:-target}
scratch=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$scratch"
}
trap cleanup EXIT

# A free port for Redis (it cannot pick one itself and say which).
redis_port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
  --dir "$scratch" --logfile "$scratch/redis.log" &
pids+=($!)
"$target/release/dlm-server" 127.0.0.1 0 >"$scratch/dlm.out" 2>"$scratch/dlm.log" &
pids+=($!)

# Wait until both answer (bounded): Redis's PING, dlm-server's first line.
for _ in $(seq 200); do
  if [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] && grep -q 'listening on' "$scratch/dlm.out"; then
    break
  fi
  sleep 0.05
done
dlm_addr=$(sed -n 's/.*listening on \(.*\)$/\1/p' "$scratch/dlm.out")
if [ -z "$dlm_addr" ] || [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" != PONG ]; then
  echo "run.sh: the servers did not start" >&2
  cat "$scratch/dlm.log" "$scratch/redis.log" >&2
  exit 1
fi

node "$here/bench.js" --dlm "$dlm_addr" --redis "127.0.0.1:$redis_port" "$@"
