#!/usr/bin/env bash
# The dlm Python package (python/) against redis-py (bench.py). Uses the
# Python tests' virtualenv, target/py-venv (made as scripts/test-python.sh
# makes it if missing; sharing it keeps maturin's interpreter, and so
# cargo's PyO3 build, the same as the tests'), installs the pinned redis-py
# into it if missing, builds the dlm wheel with maturin (a release build
# unless DLM_BENCH_PROFILE=dev), installs it and runs bench.py. The
# contract: ../README.md.
set -euo pipefail
root=${DLM_BENCH_ROOT:-$(cd "$(dirname "$0")/../../.." && pwd)}
here="$root/bench/bindings/python"
cd "$root"
target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$root/$target" ;; esac
venv="$target/py-venv"
# redis-py, pinned; its pure-Python parser (hiredis is not installed), as
# `pip install redis` gives.
redis_py_version=8.1.0
# maturin's version lives in scripts/test-python.sh.
maturin_version=$(sed -n 's/^maturin_version=//p' scripts/test-python.sh)
[ -n "$maturin_version" ] || { echo "bench.sh: no maturin_version in scripts/test-python.sh" >&2; exit 1; }

case "${DLM_BENCH_PROFILE:-release}" in
  dev) dir=debug build=() ;;
  *) dir=release build=(--release) ;;
esac

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if ! "$venv/bin/python" - "$redis_py_version" "$maturin_version" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(version("redis") != sys.argv[1] or version("maturin") != sys.argv[2])
PY
then
  echo "bench.sh: installing redis==$redis_py_version and maturin==$maturin_version into $venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "redis==$redis_py_version" "maturin==$maturin_version" >&2
fi

wheels="$target/$dir/bench-py-wheels"
rm -rf "$wheels"
"$venv/bin/maturin" build --locked "${build[@]}" --manifest-path python/Cargo.toml \
  --interpreter "$venv/bin/python" --out "$wheels" --quiet >&2
wheel=$(ls "$wheels"/dlm-*.whl)
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  --force-reinstall --no-deps "$wheel" >&2
# From the bench's folder, so `import dlm` finds the installed wheel, not python/dlm.
cd "$here"
exec "$venv/bin/python" "$here/bench.py"
