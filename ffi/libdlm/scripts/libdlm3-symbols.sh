#!/usr/bin/env bash
# Regenerates tests/libdlm3.symbols: the dynamic symbols exported by Debian's
# libdlm3 (the Linux cluster lock manager's library, also "libdlm"). Our
# libdlm must export none of them, or a program could bind the wrong one.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download libdlm3 >/dev/null 2>&1)
deb=$(ls "$tmp"/libdlm3_*.deb)
dpkg-deb -x "$deb" "$tmp/x"
{
  echo "# Exported by $(basename "$deb") (nm -D --defined-only); regenerate with scripts/libdlm3-symbols.sh"
  find "$tmp/x" -name '*.so.*' -type f -exec nm -D --defined-only {} \; | awk '{print $3}' | sort -u
} > tests/libdlm3.symbols
echo "wrote tests/libdlm3.symbols"
