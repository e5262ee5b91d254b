#!/usr/bin/env bash
# The fault-injection suite (issue 15): dlm-chaos runs dlm clusters under a
# nemesis (kills, pauses, partitions, delays, data-dir tails cut, wall-clock
# jumps, monotonic-clock jumps and stalls, membership changes through the
# dlm command) while clients of its own, of the dlm Rust crate and of the
# Python package work, and checks mutual exclusion at a fenced resource
# and the linearizability of the key/value history (porcupine).
#
#   scripts/chaos.sh           `make chaos`: long runs, release build
#                              (CHAOS_DURATION seconds each, default 300):
#                              3 members durable, 5 members durable,
#                              3 members in memory, 1 durable member
#                              under kill -9, the plain in-memory server
#   scripts/chaos.sh --quick   the short run of `make test` (~1.5 min,
#                              debug build: 3 members durable, 40 s;
#                              3 members in memory, 15 s; each run at
#                              least as long as every fault kind takes
#                              once)
#
# CHAOS_SEED fixes the seed of every run (otherwise each draws its own and
# prints it); CHAOS_PROFILE=debug|release picks the build. A failing run
# prints its seed, the command that replays it, and keeps its history,
# member logs and timeline in $TMPDIR/dlm-chaos-SEED. Exit status 1 if any
# run failed.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"

quick=0
if [ "${1:-}" = --quick ]; then quick=1; fi
profile=${CHAOS_PROFILE:-$([ $quick = 1 ] && echo debug || echo release)}
flag=$([ "$profile" = release ] && echo --release || true)
cargo build $flag --locked -p dlm-server --bin dlm-server
cargo build $flag --locked -p dlm-cli --bin dlm
cargo build $flag --locked -p dlm-tests --bin dlm-chaos
bin=target/$profile/dlm-chaos
# The checker program is Go: formatted and vetted like the Go package.
(cd tests/chaos/porcupine-check && test -z "$(gofmt -l .)" && go vet ./...)

seed_args=()
if [ -n "${CHAOS_SEED:-}" ]; then seed_args=(--seed "$CHAOS_SEED"); fi
# The Python clients: the package's wheel in the virtualenv that
# scripts/test-python.sh makes (built here if it is not there yet).
target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
py="$target/py-venv/bin/python"
if ! { [ -x "$py" ] && "$py" -c 'import dlm' 2>/dev/null; }; then
  scripts/test-python.sh --build-only
fi
seed_args+=(--python "$py")

if [ $quick = 1 ]; then
  runs=(
    "--nodes 3 --duration 40"
    "--nodes 3 --duration 15 --memory"
  )
else
  d=${CHAOS_DURATION:-300}
  runs=(
    "--nodes 3 --duration $d"
    "--nodes 5 --duration $d"
    "--nodes 3 --duration $d --memory"
    "--nodes 1 --duration $d --faults kill-leader,pause-leader,clock,monotonic"
    # The plain server (no Raft): its engine runs on the host clock, bounded
    # per reading like the cluster's (README, "The chaos suite").
    "--single --memory --duration $d --faults pause-leader,clock,monotonic"
  )
fi

failed=0
for r in "${runs[@]}"; do
  printf '\n--- dlm-chaos %s\n' "$r"
  # shellcheck disable=SC2086
  if ! "$bin" $r "${seed_args[@]}"; then failed=$((failed + 1)); fi
done
if [ $failed -gt 0 ]; then
  echo "chaos: $failed run(s) FAILED (seeds, replay commands and kept histories above)" >&2
  exit 1
fi
echo "chaos: every run passed"
