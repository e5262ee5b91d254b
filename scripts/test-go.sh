#!/usr/bin/env bash
# The Go package over libdlm (ffi/go). The package links an installed
# libdlm through pkg-config, so this installs one first, as a user would
# (scripts/install-libdlm.sh, the debug profile here: faster to build), into
# target/debug/libdlm-prefix. Then gofmt, go vet (every link mode) and go
# test against a dlm-server the tests start:
#   -race                   the default build: the installed libdlm.a, static
#   -tags debug             a GC at every C call, to flush out KeepAlive bugs
#   -tags dlm_dynamic       the installed libdlm.so
#   -tags dlm_intree        the repository's own target/release/libdlm.a
# scripts/test.sh calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# Go is preinstalled in /usr/local/go on our machines; cgo needs a C compiler.
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
export CGO_ENABLED=1

cargo build -p dlm-server --bin dlm-server --locked
prefix="$root/target/debug/libdlm-prefix"
DLM_PROFILE=dev scripts/install-libdlm.sh "$prefix" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
# -tags dlm_intree links the release build.
cargo build -p libdlm --lib --release --locked
# Go's build cache keys a cgo package on its flags, not on what pkg-config
# says nor on the libraries it links: a define naming this libdlm (unused
# by the code) makes Go rebuild when it changes.
libdlm_id=$(cat "$prefix/lib/libdlm.a" "$prefix/lib/pkgconfig/dlm.pc" \
  target/release/libdlm.a ffi/libdlm/include/dlm.h | sha256sum | cut -c1-16)
export CGO_CPPFLAGS="${CGO_CPPFLAGS:+$CGO_CPPFLAGS }-DDLM_LIBDLM_BUILD=$libdlm_id"

cd ffi/go
unformatted=$(gofmt -l . ../../bench/bindings/go)
if [ -n "$unformatted" ]; then
  echo "gofmt: not formatted: $unformatted" >&2
  exit 1
fi
for tags in "" debug dlm_dynamic dlm_intree; do
  go vet -tags "$tags" ./...
done
(cd ../../bench/bindings/go && go vet ./...)
# -count=1: Go's test cache does not know when libdlm changes. The later
# runs are -short: they skip the native-libs check, which runs cargo and
# was done by the first.
go test -race -count=1 ./...
go test -tags debug -short -count=1 ./...
go test -tags dlm_dynamic -short -count=1 ./...
go test -tags dlm_intree -short -count=1 ./...
