#!/usr/bin/env bash
# libdlm against hiredis (bench.c). Builds the program against the cargo
# build of libdlm.a (the driver, scripts/bench-bindings.sh, builds that) and
# Debian's libhiredis-dev, then runs it. The contract: ../README.md.
set -euo pipefail
root=${DLM_BENCH_ROOT:-$(cd "$(dirname "$0")/../../.." && pwd)}
case "${DLM_BENCH_PROFILE:-release}" in
  dev) dir=debug ;;
  *) dir=release ;;
esac
out="$root/target/$dir/bench-bindings-c"
native=$(grep -v '^#' "$root/ffi/libdlm/native-static-libs.txt")
# shellcheck disable=SC2046,SC2086
cc -std=c11 -O2 -Wall -Wextra -Werror -pthread "$root/bench/bindings/c/bench.c" \
  -I "$root/ffi/libdlm/include" $(pkg-config --cflags hiredis) \
  "$root/target/$dir/libdlm.a" $native $(pkg-config --libs hiredis) -o "$out" >&2
exec "$out"
