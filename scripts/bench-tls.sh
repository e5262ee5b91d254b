#!/usr/bin/env bash
# dlm over TLS against dlm in plaintext (and Redis, plaintext), through the
# Rust binding's benchmark (bench/bindings/rust): one release dlm-server
# serving TLS on one port and plaintext on another (--plaintext-port), so
# both rows hit the same process; a private redis-server for the third
# column. Rows alternate plaintext, TLS, Redis within each round.
#
# Usage: scripts/bench-tls.sh [--rounds N] [--seconds S] [--workers "16 64"]
# Prints one JSON line per measurement (bench/bindings/README.md's format,
# with "client":"dlm-tls" for the TLS rows), then the medians per row.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3 seconds=3 workers="16 64"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --workers) workers=$2; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

cargo build --release --locked -q -p dlm-server -p dlm-bench-bindings
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

target/release/dlm-server tls new "$work/pki" >/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
target/release/dlm-server 127.0.0.1 0 --plaintext-port 0 \
  --tls-cert "$work/pki/server.pem" --tls-key "$work/pki/server.key" \
  >"$work/dlm.out" 2>"$work/dlm.err" &
pids+=($!)
for _ in $(seq 100); do
  grep -q "listening on" "$work/dlm.out" 2>/dev/null && redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
tls_addr=$(awk '/listening on/ {print $NF}' "$work/dlm.out")
plain_addr=$(sed -n 's/.*plaintext listener on \([0-9.:]*\).*/\1/p' "$work/dlm.err" | head -1)
tls_port=${tls_addr##*:}

for r in $(seq "$rounds"); do
  DLM_BENCH_DLM="$plain_addr" DLM_BENCH_DLM_TLS="localhost:$tls_port" \
    DLM_BENCH_DLM_TLS_CA="$work/pki/ca.pem" DLM_BENCH_REDIS="127.0.0.1:$redis_port" \
    DLM_BENCH_SECONDS="$seconds" DLM_BENCH_WORKERS="$workers" DLM_BENCH_RUN="tls$r" \
    target/release/bench-bindings-rust
done | tee "$work/results.jsonl"

python3 - "$work/results.jsonl" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    rows.setdefault((d["workload"], d["workers"], d["client"]), []).append(d)
print("\n| workload | workers | client | ops/s (median) | p50 us | p99 us |")
print("|---|---|---|---|---|---|")
for (w, n, c), ds in sorted(rows.items()):
    med = lambda k: statistics.median(x[k] for x in ds)
    print(f"| {w} | {n} | {c} | {med('ops_per_s'):.0f} | {med('p50_us'):.0f} | {med('p99_us'):.0f} |")
PY
