#!/usr/bin/env bash
# Before/after for watches (issue 18): the same uncontended lock+unlock
# workload (dlm-bench run) against two dlm-server builds, interleaved,
# 5 rounds each, 1 and 16 clients: a build before watches
# ($DLM_SERVER_DIR/dlm-server-base) and one with them
# ($DLM_SERVER_DIR/dlm-server-branch), both release builds. Nobody
# watches: this measures what the feed costs when it is off.
#
#   DLM_SERVER_DIR=/tmp/watch-bench DLM_BENCH=target/release/dlm-bench \
#     bench/watch/before-after.sh
set -u
start() { # binary -> sets PID ADDR
  : > "${TMPDIR:-/tmp}/dlm-before-after.out"
  "$1" 127.0.0.1 0 > ${TMPDIR:-/tmp}/dlm-before-after.out 2>/dev/null &
  PID=$!
  for _ in $(seq 100); do
    ADDR=$(head -1 ${TMPDIR:-/tmp}/dlm-before-after.out | awk '{print $NF}')
    [ -n "$ADDR" ] && break
    sleep 0.05
  done
}
for clients in 1 16; do
  for round in 1 2 3 4 5; do
    for which in base branch; do
      start ${DLM_SERVER_DIR:-/tmp/watch-bench}/dlm-server-$which
      out=$(${DLM_BENCH:-target/release/dlm-bench} run --target dlm --addr "$ADDR" --pid "$PID" --workload uncontended --clients $clients --duration 2 2>&1 | tail -1)
      echo "clients=$clients round=$round $which: $out"
      kill $PID; wait $PID 2>/dev/null
    done
  done
done
