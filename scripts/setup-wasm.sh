#!/usr/bin/env bash
# Installs what the WebAssembly module and the Node.js package need:
# the wasm32 target, the wasm-bindgen CLI at exactly the version the
# dlm-wasm crate pins, and wasm/js's locked devDependencies. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

# The CLI must match the crate: the one place the version lives is the
# `wasm-bindgen = "=x.y.z"` line of wasm/Cargo.toml.
version=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' wasm/Cargo.toml)
if [ -z "$version" ]; then
  echo "setup-wasm: no pinned wasm-bindgen version in wasm/Cargo.toml" >&2
  exit 1
fi

rustup target add wasm32-unknown-unknown >/dev/null

if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $version" ]; then
  # Not --locked: the CLI's own lock file does not resolve on every
  # registry mirror.
  cargo install wasm-bindgen-cli --version "$version" --force
fi

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "setup-wasm: $tool is missing (Node.js 20 or later is needed)" >&2
    exit 1
  fi
done

(cd wasm/js && npm ci --prefer-offline --no-audit --no-fund --loglevel=error)
