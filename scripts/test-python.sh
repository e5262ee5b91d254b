#!/usr/bin/env bash
# The Python package (python/): builds its wheel with maturin, installs it
# into a virtualenv and runs its pytest suite against real dlm-servers
# (with interop checks against the dlm command and the JackrabbitDLM-style
# client of tests/python). scripts/test.sh calls it; it sets up what it
# needs itself, so it also runs alone on a fresh machine.
#
#   scripts/test-python.sh --build-only   the virtualenv with the wheel
#                                          installed, no tests (for the
#                                          chaos suite's Python clients)
set -euo pipefail
build_only=0
if [ "${1:-}" = --build-only ]; then build_only=1; fi
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
start=$SECONDS
target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
venv="$target/py-venv"
# The one place these versions live.
maturin_version=1.16.0
pytest_version=9.2.0

step "python: virtualenv $venv with maturin $maturin_version and pytest $pytest_version"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "maturin==$maturin_version" "pytest==$pytest_version"

step "python: dlm-server and the dlm command (the tests start and call them)"
cargo build -p dlm-server -p dlm-cli --bins --locked
export DLM_SERVER_BIN="$target/debug/dlm-server"
export DLM_CLI_BIN="$target/debug/dlm"

step "python: build the wheel (maturin, abi3) and install it"
wheels="$target/wheels-python"
rm -rf "$wheels"
# Built against the venv's interpreter; abi3 makes the wheel good for every
# CPython from 3.9 on.
"$venv/bin/maturin" build --locked --manifest-path python/Cargo.toml \
  --interpreter "$venv/bin/python" --out "$wheels" --quiet
wheel=$(ls "$wheels"/dlm-*.whl)
echo "built $(basename "$wheel")"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheel"

if [ $build_only = 1 ]; then
  step "python: built in $((SECONDS - start)) s ($venv)"
  exit 0
fi

step "python: pytest"
# From an empty folder, so `import dlm` can only find the installed wheel.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
(cd "$scratch" && "$venv/bin/python" -m pytest -q -c "$OLDPWD/python/pyproject.toml" \
  --rootdir "$OLDPWD/python" "$OLDPWD/python/tests")

step "python: done in $((SECONDS - start)) s"
