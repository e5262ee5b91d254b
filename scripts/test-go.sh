#!/usr/bin/env bash
# The Go package over libdlm (ffi/go): builds libdlm (and dlm-server, which
# the tests start), then gofmt, go vet and go test -race, once more with
# -tags debug (a GC at every C call, to flush out KeepAlive bugs) and once
# linking the shared library (-tags dlm_dynamic). scripts/test.sh calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

# Go is preinstalled in /usr/local/go on our machines; cgo needs a C compiler.
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
export CGO_ENABLED=1

# The package links target/debug/libdlm.a (crate ffi/libdlm) (or .so with dlm_dynamic).
cargo build -p libdlm --lib --locked
cargo build -p dlm-server --bin dlm-server --locked

cd ffi/go
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  echo "gofmt: not formatted: $unformatted" >&2
  exit 1
fi
for tags in "" debug dlm_dynamic; do
  go vet -tags "$tags" ./...
done
# -count=1: Go's test cache does not know when libdlm changes. The second
# and third runs are -short: they skip the native-libs check, which runs
# cargo and was done by the first.
go test -race -count=1 ./...
go test -tags debug -short -count=1 ./...
go test -tags dlm_dynamic -short -count=1 ./...
