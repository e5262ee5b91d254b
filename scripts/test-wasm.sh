#!/usr/bin/env bash
# Builds the WebAssembly module and the Node.js package on top of it, then
# tests them: the TypeScript declarations, `node --test` against real
# dlm-servers (including values exchanged with the Rust client), and a smoke
# test of the tarball `npm pack` makes from a tree without the generated
# glue (its prepack builds it), installed into an empty folder.
# scripts/test.sh runs it last; alone, run scripts/setup-wasm.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
start=$SECONDS
target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac

step "wasm: build dlm-wasm for wasm32, generate wasm/js/pkg with wasm-bindgen"
scripts/build-wasm.sh

step "wasm: dlm-server, the JackrabbitDLM stand-in and the Rust interop helper for the tests"
cargo build -p dlm-server --bins --locked
cargo build -p dlm-tests --bin jackrabbit-standin --locked
cargo build -p dlm-wasm --example interop --locked
export DLM_SERVER="$target/debug/dlm-server"
export DLM_JACKRABBIT="$target/debug/jackrabbit-standin"
export DLM_INTEROP="$target/debug/examples/interop"

step "wasm: type-check index.d.ts (an example program) and index.js (against the generated glue)"
(cd wasm/js && node_modules/.bin/tsc -p test/tsconfig.json && node_modules/.bin/tsc -p test/tsconfig.glue.json)

step "wasm: node --test"
(cd wasm/js && node --test test/*.test.js)

step "wasm: npm pack from a tree without wasm/js/pkg (prepack builds it), installed into an empty folder"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# As in a fresh clone: nothing generated. A pack that shipped without its
# WebAssembly would fail below (the file list, then the smoke test).
rm -rf wasm/js/pkg
(cd wasm/js && npm pack --silent --pack-destination "$scratch" >/dev/null)
tarball=$(ls "$scratch"/*.tgz)
contents=$(tar -tzf "$tarball")
for file in package.json README.md index.js index.d.ts errors.js pkg/dlm_wasm.js pkg/dlm_wasm_bg.wasm; do
  grep -qx "package/$file" <<<"$contents" || { echo "test-wasm: $file is missing from the package" >&2; exit 1; }
done
crate_version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
package_version=$(node -p "require('./wasm/js/package.json').version")
if [ "$crate_version" != "$package_version" ]; then
  echo "test-wasm: wasm/js/package.json is version $package_version, the workspace $crate_version" >&2
  exit 1
fi
mkdir "$scratch/app"
cp wasm/js/test/smoke.mjs "$scratch/app/"
(
  cd "$scratch/app"
  echo '{ "private": true }' >package.json
  npm install --offline --no-audit --no-fund --loglevel=error "$tarball"
  node smoke.mjs
)
# A pack that cannot build fails loudly and makes no tarball.
mkdir "$scratch/refused"
if (cd wasm/js && WASM_BINDGEN=/nonexistent/wasm-bindgen npm pack --silent --pack-destination "$scratch/refused" >/dev/null 2>&1); then
  echo "test-wasm: npm pack succeeded without the pinned wasm-bindgen" >&2
  exit 1
fi
if [ -n "$(ls -A "$scratch/refused")" ]; then
  echo "test-wasm: a failed npm pack left a tarball" >&2
  exit 1
fi
echo "npm pack without the pinned wasm-bindgen fails, as it should"

step "wasm: done in $((SECONDS - start)) s"
