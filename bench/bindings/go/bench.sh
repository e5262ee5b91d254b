#!/usr/bin/env bash
# The dlm Go package (ffi/go) against go-redis (main.go). Installs libdlm
# (the profile the driver asks for) into target/<profile>/libdlm-prefix with
# scripts/install-libdlm.sh and builds the program against that install
# through pkg-config, as a user's program is built (README, "Go"); then
# runs it. The contract: ../README.md.
set -euo pipefail
root=${DLM_BENCH_ROOT:-$(cd "$(dirname "$0")/../../.." && pwd)}
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
case "${DLM_BENCH_PROFILE:-release}" in
  dev) dir=debug profile=dev ;;
  *) dir=release profile=release ;;
esac
prefix="$root/target/$dir/libdlm-prefix"
DLM_PROFILE=$profile "$root/scripts/install-libdlm.sh" "$prefix" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export CGO_ENABLED=1
# Go's build cache does not see a reinstalled libdlm (pkg-config's output
# and the library are not part of its key): a define naming this build is.
libdlm_id=$(cat "$prefix/lib/libdlm.a" "$prefix/lib/pkgconfig/dlm.pc" | sha256sum | cut -c1-16)
export CGO_CPPFLAGS="${CGO_CPPFLAGS:+$CGO_CPPFLAGS }-DDLM_LIBDLM_BUILD=$libdlm_id"
out="$root/target/$dir/bench-bindings-go"
(cd "$root/bench/bindings/go" && go build -o "$out" .) >&2
exec "$out"
