#!/usr/bin/env bash
# dlm-server side by side with Redis (and the trivial floor server) on this
# machine, in one run: installs redis-server if needed, builds in release
# mode, and prints one table. Extra arguments go to `dlm-bench suite`
# (e.g. --quick for a few-second smoke run).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server..." >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y redis-server >/dev/null; else sudo apt-get install -y redis-server >/dev/null; fi
  # Debian starts a system instance; the bench runs its own private one.
  (systemctl stop redis-server 2>/dev/null || service redis-server stop 2>/dev/null || true) >/dev/null
fi
cargo build --release --locked -p dlm-server -p dlm-bench
exec target/release/dlm-bench suite "$@"
