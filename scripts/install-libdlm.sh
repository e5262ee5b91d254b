#!/usr/bin/env bash
# Builds libdlm (the crate ffi/libdlm, release profile) and installs
#   PREFIX/lib/libdlm.so.X.Y.Z  with the links libdlm.so.SONAME and libdlm.so
#   PREFIX/lib/libdlm.a
#   PREFIX/include/dlm.h  PREFIX/include/dlm.hpp (C++17 RAII wrappers)
#   PREFIX/lib/pkgconfig/dlm.pc
# so that `pkg-config --cflags --libs dlm` (or `--static`) builds against it,
# then says what to set for pkg-config and for the loader.
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
if ! (cd "$root" && cargo rustc -p libdlm --lib --locked --profile "$profile" \
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
include="$root/ffi/libdlm/include"
version=$(sed -n 's/^#define DLM_VERSION_STRING "\(.*\)"$/\1/p' "$include/dlm.h")
url=$(sed -n 's/^repository = "\(.*\)"$/\1/p' "$root/Cargo.toml")
lib="$target_dir/$profile_dir"
# The SONAME ffi/libdlm/build.rs gives the library: libdlm.so.MAJOR, or
# libdlm.so.0.MINOR before 1.0.
major=${version%%.*}
minor=${version#*.}
minor=${minor%%.*}
if [ "$major" = 0 ]; then soname="libdlm.so.0.$minor"; else soname="libdlm.so.$major"; fi

install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 0755 "$lib/libdlm.so" "$prefix/lib/libdlm.so.$version"
ln -sfn "libdlm.so.$version" "$prefix/lib/$soname"
ln -sfn "$soname" "$prefix/lib/libdlm.so"
install -m 0644 "$lib/libdlm.a" "$prefix/lib/libdlm.a"
install -m 0644 "$include/dlm.h" "$include/dlm.hpp" "$prefix/include/"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" -e "s|@URL@|$url|" \
  -e "s|@NATIVE_STATIC_LIBS@|$native|" "$root/ffi/libdlm/dlm.pc.in" >"$prefix/lib/pkgconfig/dlm.pc"

echo "installed libdlm $version ($soname) into $prefix (native static libraries: $native)"

# What a user must set: pkg-config's search path unless it already has the
# prefix, and how the loader finds libdlm.so at run time.
pc_dir="$prefix/lib/pkgconfig"
searched=$( (pkg-config --variable pc_path pkg-config 2>/dev/null || true) | tr ':' '\n')
searched="$searched"$'\n'$(printf '%s' "${PKG_CONFIG_PATH:-}" | tr ':' '\n')
cat <<EOT

To build against it:
EOT
if ! grep -qxF "$pc_dir" <<<"$searched"; then
  cat <<EOT
  export PKG_CONFIG_PATH=$pc_dir\${PKG_CONFIG_PATH:+:\$PKG_CONFIG_PATH}
EOT
fi
cat <<EOT
  cc -std=c11 app.c \$(pkg-config --cflags --libs dlm) -o app        # C
  c++ -std=c++17 app.cpp \$(pkg-config --cflags --libs dlm) -o app  # C++ (#include <dlm.hpp>)
  go build    # Go (package dlm in ffi/go: libdlm.a, linked statically)
At run time, a program linked that way finds libdlm.so through the rpath
that dlm.pc's Libs adds (-Wl,-rpath,$prefix/lib). One linked without it
needs the loader told: add $prefix/lib to /etc/ld.so.conf.d/ and run
ldconfig (or set LD_LIBRARY_PATH=$prefix/lib).
EOT
