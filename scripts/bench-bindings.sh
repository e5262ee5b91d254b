#!/usr/bin/env bash
# Each language's dlm binding against that language's best-known Redis
# client, in one run on this machine: starts a private redis-server and a
# dlm-server, runs every bench/bindings/<lang>/bench.sh (the contract is
# bench/bindings/README.md), and prints one Markdown table with dlm/Redis
# ratios. `make bench-bindings` runs it.
#
# Usage: scripts/bench-bindings.sh [--quick] [--seconds S] [--workers "16 64"]
#                                   [--rounds N] [LANG...]
#   --quick      a smoke run: 16 workers, 0.2 s per measurement, debug builds
#   --rounds N   run every program N times; each row is the round with the
#                median dlm/Redis ratio (default 1)
#   LANG...      only these directories of bench/bindings (default: all)
# Installs redis-server and libhiredis-dev (Debian) if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=3
workers="16 64"
rounds=1
profile=release
langs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) seconds=0.2 workers=16 profile=dev ;;
    --seconds) seconds=$2; shift ;;
    --workers) workers=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) langs+=("$1") ;;
  esac
  shift
done
if [ ${#langs[@]} -eq 0 ]; then
  for dir in bench/bindings/*/; do
    [ -x "$dir/bench.sh" ] && langs+=("$(basename "$dir")")
  done
fi

apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "installing $*..." >&2
  $sudo apt-get install -y -qq "$@" >/dev/null 2>&1 ||
    { $sudo apt-get update -qq && $sudo apt-get install -y -qq "$@" >/dev/null; }
}
if ! command -v redis-server >/dev/null 2>&1; then
  apt_install redis-server
  # Debian starts a system instance; this runs its own private one.
  (systemctl stop redis-server 2>/dev/null || service redis-server stop 2>/dev/null || true) >/dev/null
fi
if [[ " ${langs[*]} " == *" c "* ]] && ! pkg-config --exists hiredis 2>/dev/null; then
  apt_install libhiredis-dev
fi

cargo_profile=()
[ "$profile" = release ] && cargo_profile=(--release)
cargo build "${cargo_profile[@]}" --locked -q -p dlm-server -p libdlm -p dlm-bench-bindings

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# A private Redis (no persistence) on a free loopback port.
redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
  --daemonize no --logfile "$work/redis.log" &
pids+=($!)
for _ in $(seq 100); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.05
done
redis-cli -p "$redis_port" ping >/dev/null || { cat "$work/redis.log" >&2; exit 1; }
redis_version=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')

# dlm-server with its defaults, on a free port; it prints its address.
bin_dir=target/$([ "$profile" = release ] && echo release || echo debug)
"$bin_dir/dlm-server" 127.0.0.1 0 >"$work/dlm.out" 2>"$work/dlm.log" &
pids+=($!)
for _ in $(seq 200); do
  grep -q 'listening on' "$work/dlm.out" 2>/dev/null && break
  sleep 0.05
done
dlm_addr=$(sed -n 's/^dlm-server listening on //p' "$work/dlm.out")
[ -n "$dlm_addr" ] || { cat "$work/dlm.log" >&2; exit 1; }

export DLM_BENCH_DLM=$dlm_addr DLM_BENCH_REDIS=127.0.0.1:$redis_port
export DLM_BENCH_WORKERS=$workers DLM_BENCH_SECONDS=$seconds DLM_BENCH_WORKLOADS="lock kv"
export DLM_BENCH_PROFILE=$profile DLM_BENCH_ROOT=$root

for round in $(seq "$rounds"); do
  for lang in "${langs[@]}"; do
    script="bench/bindings/$lang/bench.sh"
    [ -x "$script" ] || { echo "no $script" >&2; exit 1; }
    echo "running $lang (round $round of $rounds)..." >&2
    DLM_BENCH_RUN="$lang-$$-$round" "$script" | sed "s/^{/{\"round\":$round,/" >>"$work/results.jsonl"
  done
done

python3 - "$work/results.jsonl" "$redis_version" "$seconds" "$rounds" "$profile" <<'EOF'
import json, sys

path, redis_version, seconds, rounds, profile = sys.argv[1:]
rows = [json.loads(line) for line in open(path) if line.strip()]
need = {"binding", "client", "workload", "workers", "ops_per_s", "p50_us", "p99_us"}
for r in rows:
    missing = need - r.keys()
    if missing:
        sys.exit(f"a result lacks {sorted(missing)}: {r}")
# dlm's clients are the ones named after it; the rest are Redis clients.
def is_dlm(r):
    return "dlm" in r["client"]
order = []
pairs = {}  # (binding, workload, workers) -> {round: {"dlm": row, "redis": row}}
for r in rows:
    key = (r["binding"], r["workload"], r["workers"])
    if key not in pairs:
        order.append(key)
        pairs[key] = {}
    pairs[key].setdefault(r.get("round", 1), {})["dlm" if is_dlm(r) else "redis"] = r
def ratio_of(p):
    d, r = p.get("dlm"), p.get("redis")
    return d["ops_per_s"] / r["ops_per_s"] if d and r and r["ops_per_s"] else 0.0
by_key = {}
for key, by_round in pairs.items():
    ranked = sorted(by_round.values(), key=ratio_of)
    by_key[key] = ranked[len(ranked) // 2]  # the round with the median ratio
rounds_note = f", median of {rounds} rounds" if int(rounds) > 1 else ""
if profile != "release":
    rounds_note += "; DEBUG builds (a smoke run: the figures mean nothing)"
print(f"Redis {redis_version}, {seconds} s per measurement{rounds_note}; one op = one cycle "
      "(lock+unlock or put+get); latencies per cycle.\n")
print("| binding | workload | workers | dlm client | ops/s | p50 us | p99 us "
      "| Redis client | ops/s | p50 us | p99 us | dlm/Redis |")
print("|---|---|---:|---|---:|---:|---:|---|---:|---:|---:|---:|")
for key in order:
    d, r = by_key[key].get("dlm"), by_key[key].get("redis")
    def cells(x):
        if x is None:
            return ["-", "-", "-", "-"]
        return [x["client"], f'{x["ops_per_s"]:.0f}', str(x["p50_us"]), str(x["p99_us"])]
    ratio = f'{d["ops_per_s"] / r["ops_per_s"]:.2f}x' if d and r and r["ops_per_s"] else "-"
    print("| " + " | ".join([key[0], key[1], str(key[2])] + cells(d) + cells(r) + [ratio]) + " |")
EOF
