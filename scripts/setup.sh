#!/usr/bin/env bash
# Installs what the test command needs on a fresh machine. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup component add rustfmt clippy >/dev/null
rustup target add thumbv7em-none-eabihf wasm32-unknown-unknown >/dev/null
