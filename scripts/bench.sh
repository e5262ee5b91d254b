#!/usr/bin/env bash
# dlm-server side by side with Redis (and the trivial floor server) on this
# machine, in one run (locks, values, contended locks, semaphores and
# read/write locks against Redis's recipes): installs redis-server if needed, builds in release
# mode (debug for --quick), and prints one table. Extra arguments go to `dlm-bench suite`
# (e.g. --quick for a few-second smoke run).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server..." >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y redis-server >/dev/null; else sudo apt-get install -y redis-server >/dev/null; fi
  # Debian starts a system instance; the bench runs its own private one.
  (systemctl stop redis-server 2>/dev/null || service redis-server stop 2>/dev/null || true) >/dev/null
fi
# A smoke run (--quick) only checks that every row runs: the debug builds that
# `make test` has already made do, and spare it two fat-LTO release builds.
profile=release
for arg in "$@"; do [ "$arg" = --quick ] && profile=debug; done
if [ "$profile" = release ]; then
  cargo build --release --locked -p dlm-server -p dlm-bench
else
  cargo build --locked -p dlm-server -p dlm-bench
fi
exec "target/$profile/dlm-bench" suite "$@"
