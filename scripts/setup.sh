#!/usr/bin/env bash
# Installs what the test command needs on a fresh machine. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup component add rustfmt clippy >/dev/null
rustup target add thumbv7em-none-eabihf wasm32-unknown-unknown >/dev/null

# The JackrabbitDLM-compatibility tests run under pytest.
python3 -m pytest --version >/dev/null 2>&1 || python3 -m pip install --quiet pytest

# The WebAssembly module and the Node.js package (wasm/).
scripts/setup-wasm.sh
