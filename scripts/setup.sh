#!/usr/bin/env bash
# Installs what the test command needs on a fresh machine. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup component add rustfmt clippy >/dev/null
rustup target add thumbv7em-none-eabihf wasm32-unknown-unknown >/dev/null

# The JackrabbitDLM-compatibility tests run under pytest.
python3 -m pytest --version >/dev/null 2>&1 || python3 -m pip install --quiet pytest
# The Python package's tests (scripts/test-python.sh) make a virtualenv,
# which needs ensurepip (Debian's python3 has it in python3-venv).
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq python3-venv >/dev/null
fi

# libdlm's C and C++ tests (ffi/tests/c_programs.rs) need gcc/g++, binutils
# (nm, readelf) and pkg-config; valgrind is their leak checker where ASAN's
# does not work.
need=()
for tool in pkg-config:pkg-config gcc:gcc g++:g++ nm:binutils readelf:binutils valgrind:valgrind; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
# The bindings benchmark's C program (bench/bindings/c, smoke-run by the
# tests) measures libdlm against hiredis.
pkg-config --exists hiredis 2>/dev/null || need+=(libhiredis-dev)
# The dashboard's browser test (tests/tests/dashboard_browser.rs) runs
# Debian's chromium headless.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# dlm chart (plotters) builds against fontconfig and draws PNG text with a
# system font.
pkg-config --exists fontconfig 2>/dev/null || need+=(libfontconfig1-dev)
fc-list 2>/dev/null | grep -q . || need+=(fonts-dejavu-core)
# The systemd unit is checked with systemd-analyze verify; the Debian
# package is built with dpkg-deb, then installed and run under a systemd
# booted in namespaces (scripts/test-deb-systemd.sh: unshare, nsenter, ip).
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
[ -x /lib/systemd/systemd ] || need+=(systemd)
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v ps >/dev/null 2>&1 || need+=(procps)
# The Node package's TLS test signs an expired server certificate with
# the openssl command (wasm/js/test/tls.test.js).
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The bindings benchmark's Go program (bench/bindings/go) measures the Go
# package against go-redis: fetch its modules.
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
(cd bench/bindings/go && go mod download)

# The WebAssembly module and the Node.js package (wasm/).
scripts/setup-wasm.sh

# The chaos suite's linearizability checker is porcupine (Go), built from
# tests/chaos/porcupine-check; its fault shim is C (gcc, above). Go is
# preinstalled in /usr/local/go on our machines.
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
(cd tests/chaos/porcupine-check && go mod download)
