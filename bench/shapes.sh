#!/usr/bin/env bash
# The semaphore and read/write lock workloads, dlm-server against Redis's
# recipes (bench/src/proto.rs), in interleaved rounds on one machine: per
# round, per client count and workload, dlm and Redis back to back (which
# goes first alternates). Prints every run, then the medians per row and
# the median of the per-round dlm/Redis ratios.
#
#   bench/shapes.sh [ROUNDS] [SECONDS]     (default 5 rounds of 2 s runs)
#
# Needs release builds (cargo build --release -p dlm-server -p dlm-bench),
# redis-server and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
seconds=${2:-2}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
  --daemonize no --loglevel warning >/dev/null 2>&1 &
rpid=$!
out=$(mktemp)
dlmlog=$(mktemp)
target/release/dlm-server 127.0.0.1 0 >"$dlmlog" 2>&1 &
dpid=$!
trap 'kill $rpid $dpid 2>/dev/null; rm -f "$out" "$dlmlog"' EXIT
for _ in $(seq 100); do
  daddr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$dlmlog" | head -1)
  if [ -n "$daddr" ] && redis-cli -p "$rport" ping >/dev/null 2>&1; then break; fi
  sleep 0.1
done
[ -n "${daddr:-}" ] || { echo "dlm-server did not start" >&2; exit 1; }
for r in $(seq "$rounds"); do
  for c in 16 64; do
    for w in semaphore rwlock; do
      if [ $(( (r + c / 16) % 2 )) = 0 ]; then order="dlm redis"; else order="redis dlm"; fi
      for t in $order; do
        if [ "$t" = dlm ]; then a=$daddr; p=$dpid; else a=127.0.0.1:$rport; p=$rpid; fi
        line=$(timeout 120 target/release/dlm-bench run --target "$t" --addr "$a" --pid "$p" \
          --workload "$w" --clients "$c" --duration "$seconds" | tr '\n' ' ')
        echo "round=$r clients=$c workload=$w target=$t $line" | tee -a "$out"
      done
    done
  done
done
python3 - "$out" <<'PY'
import collections, re, statistics as st, sys
runs, rows = {}, collections.defaultdict(list)
for line in open(sys.argv[1]):
    m = re.match(r"round=(\d+) clients=(\d+) workload=(\w+) target=(\w+) (.*)", line)
    if not m:
        continue
    r, c, w, t, rest = m.groups()
    g = lambda p: float(re.search(p, rest).group(1))
    lo, hi = re.search(r"per client (\d+)-(\d+)", rest).groups()
    d = dict(acq=g(r"([\d.]+) acquisitions/s"), writes=g(r"\(([\d.]+) writes/s"),
             p50=g(r"p50 ([\d.]+)"), p99=g(r"p99 ([\d.]+)"), srv=g(r"server ([\d.]+)"),
             err=g(r"errors (\d+)"), most=g(r"at once (\d+)"), vio=g(r"violations (\d+)"),
             lo=int(lo), hi=int(hi))
    runs[(r, int(c), w, t)] = d
    rows[(int(c), w, t)].append(d)
print()
print("| workload | clients | target | acq/s | writes/s | p50 us | p99 us | server CPU us/op | errors | most holders at once | violations | acq/client min-max | dlm/Redis (range) |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
for (c, w, t), L in sorted(rows.items(), key=lambda k: (k[0][0], k[0][1] != "semaphore", k[0][2])):
    med = lambda k: st.median(d[k] for d in L)
    ratio = "-"
    if t == "dlm":
        x = [d["acq"] / runs[(r, c, w, "redis")]["acq"] for (r, cc, ww, tt), d in runs.items()
             if (cc, ww, tt) == (c, w, t) and (r, c, w, "redis") in runs]
        ratio = f"{st.median(x):.2f}x ({min(x):.2f}-{max(x):.2f})"
    writes = f"{med('writes'):.0f}" if w == "rwlock" else "-"
    print(f"| {w} | {c} | {t} | {med('acq'):.0f} | {writes} | {med('p50'):.0f} | {med('p99'):.0f} "
          f"| {med('srv'):.2f} | {sum(d['err'] for d in L):.0f} | {max(d['most'] for d in L):.0f} "
          f"| {sum(d['vio'] for d in L):.0f} | {med('lo'):.0f}-{med('hi'):.0f} | {ratio} |")
PY
