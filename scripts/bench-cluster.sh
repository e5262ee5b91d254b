#!/usr/bin/env bash
# 3-node dlm clusters (with --data-dir, and in memory) and a single
# dlm-server side by side with a private 3-member etcd cluster on this
# machine, in one run (issue 13): installs etcd-server and etcd-client from
# Debian if missing, fetches etcd's Go client through the module proxy
# (pinned by bench/etcd/go.sum), builds release binaries, and runs
# `dlm-bench cluster`. Extra arguments go to it (e.g. --quick for a smoke
# run of about 15 s; the full run takes a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
  echo "installing etcd-server and etcd-client..." >&2
  sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq etcd-server etcd-client >/dev/null
  # Debian may start a system etcd; the bench runs its own private cluster.
  (systemctl stop etcd 2>/dev/null || service etcd stop 2>/dev/null || true) >/dev/null
fi

# Go is preinstalled in /usr/local/go on our machines (Debian's golang-go
# is older than etcd's client needs).
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
if ! command -v go >/dev/null; then
  echo "bench-cluster: needs Go (see bench/etcd/go.mod for the version)" >&2
  exit 1
fi

cargo build --release --locked -p dlm-server -p dlm-bench
# -mod=readonly: fail rather than change go.mod/go.sum.
(cd bench/etcd && go build -mod=readonly -buildvcs=false -trimpath -o ../../target/release/etcd-bench .)
exec target/release/dlm-bench cluster "$@"
