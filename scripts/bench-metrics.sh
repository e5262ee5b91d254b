#!/usr/bin/env bash
# What --http costs the lock loop: dlm-server without it and with it (and
# /metrics scraped every second, as Prometheus would), side by side,
# interleaved for ROUNDS rounds (default 3), uncontended locks from 16
# connections for 3 s each (dlm-bench run). Prints each round and the
# medians. Bounded: about ROUNDS x 8 s.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
cargo build --release --locked -p dlm-server -p dlm-bench >/dev/null 2>&1
bin=target/release
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

run() { # $1: label, $2...: extra server args
  local label=$1; shift
  local p; p=$(port)
  "$bin/dlm-server" 127.0.0.1 "$p" "$@" >"$tmp/out" 2>/dev/null &
  local pid=$!; pids+=("$pid")
  until grep -q listening "$tmp/out" 2>/dev/null; do sleep 0.05; done
  local scraper=""
  if [ "$label" = http ]; then
    ( for _ in $(seq 1 10); do curl -s -o /dev/null "http://$HTTP/metrics"; sleep 1; done ) &
    scraper=$!
  fi
  "$bin/dlm-bench" run --target dlm --addr "127.0.0.1:$p" --pid "$pid" \
    --workload uncontended --clients 16 --duration 3 | tail -n 1 | sed "s/^/$label /"
  [ -n "$scraper" ] && kill "$scraper" 2>/dev/null || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

for r in $(seq 1 "$rounds"); do
  run plain
  HTTP=127.0.0.1:$(port)
  run http --http "$HTTP"
done
