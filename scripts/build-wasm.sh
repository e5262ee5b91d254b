#!/usr/bin/env bash
# Builds the WebAssembly module and generates the Node.js package's glue in
# wasm/js/pkg: `cargo build -p dlm-wasm` for wasm32 (release), then the
# wasm-bindgen CLI at exactly the version wasm/Cargo.toml pins. The one
# recipe for wasm/js/pkg: scripts/test-wasm.sh, the package's `prepack`
# (so `npm pack` ships what the sources build) and the Node benchmark use it.
# Fails, saying why, if the pinned wasm-bindgen CLI is missing
# (scripts/setup-wasm.sh installs it). WASM_BINDGEN overrides the CLI's path.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' wasm/Cargo.toml)
bindgen=${WASM_BINDGEN:-wasm-bindgen}
found=$("$bindgen" --version 2>/dev/null || true)
if [ -z "$version" ] || [ "$found" != "wasm-bindgen $version" ]; then
  echo "build-wasm: wasm/js/pkg needs the wasm-bindgen CLI $version (found: ${found:-none});" \
    "run scripts/setup-wasm.sh" >&2
  exit 1
fi

target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
cargo build -p dlm-wasm --target wasm32-unknown-unknown --release --locked
# Generated, never committed (wasm/.gitignore): always made afresh.
rm -rf wasm/js/pkg
"$bindgen" --target nodejs --typescript --weak-refs \
  --out-dir wasm/js/pkg "$target/wasm32-unknown-unknown/release/dlm_wasm.wasm"
for file in dlm_wasm.js dlm_wasm.d.ts dlm_wasm_bg.wasm; do
  if [ ! -s "wasm/js/pkg/$file" ]; then
    echo "build-wasm: wasm-bindgen made no wasm/js/pkg/$file" >&2
    exit 1
  fi
done
