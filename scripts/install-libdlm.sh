#!/usr/bin/env bash
# Builds libdlm (the C ABI of the `dlm` crate, release profile) and installs
#   PREFIX/lib/libdlm.so  PREFIX/lib/libdlm.a  PREFIX/include/dlm.h
#   PREFIX/lib/pkgconfig/dlm.pc
# so that `pkg-config --cflags --libs dlm` (or `--static`) builds against it.
#
# Usage: scripts/install-libdlm.sh PREFIX
#   DLM_PROFILE=dev   build the debug profile instead (the tests do: faster)
#   CARGO_TARGET_DIR  (or cargo's build.target-dir) is honoured
#
# Debian's libdlm-dev (the cluster lock manager) also installs a libdlm.so;
# do not install this one next to it in /usr.
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 PREFIX" >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
prefix=$(cd "$1" && pwd)
profile=${DLM_PROFILE:-release}
case "$profile" in
  dev) profile_dir=debug ;;
  *) profile_dir=$profile ;;
esac

# One build gives the libraries and rustc's list of the native libraries the
# static one needs (printed as a note; cargo replays it when nothing changed).
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! (cd "$root" && cargo rustc -p dlm --lib --locked --profile "$profile" \
  -- --print native-static-libs) 2>"$log"; then
  cat "$log" >&2
  exit 1
fi
native=$(sed -n 's/^note: native-static-libs: //p' "$log" | tail -n 1)
if [ -z "$native" ]; then
  cat "$log" >&2
  echo "$0: rustc did not report the native static libraries" >&2
  exit 1
fi

target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps --locked |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
version=$(sed -n 's/^#define DLM_VERSION_STRING "\(.*\)"$/\1/p' "$root/ffi/include/dlm.h")
url=$(sed -n 's/^repository = "\(.*\)"$/\1/p' "$root/Cargo.toml")
lib="$target_dir/$profile_dir"

install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 0755 "$lib/libdlm.so" "$prefix/lib/libdlm.so"
install -m 0644 "$lib/libdlm.a" "$prefix/lib/libdlm.a"
install -m 0644 "$root/ffi/include/dlm.h" "$prefix/include/dlm.h"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" -e "s|@URL@|$url|" \
  -e "s|@NATIVE_STATIC_LIBS@|$native|" "$root/ffi/dlm.pc.in" >"$prefix/lib/pkgconfig/dlm.pc"

echo "installed libdlm $version into $prefix (native static libraries: $native)"
