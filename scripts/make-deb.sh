#!/usr/bin/env bash
# Builds the Debian package of dlm: dlm-server and its systemd unit, the dlm
# command, libdlm (shared and static) with dlm.h, dlm.hpp and dlm.pc.
#
#   /usr/bin/dlm-server, /usr/bin/dlm
#   /lib/systemd/system/dlm-server.service     Type=notify, user dlm, sandboxed
#   /etc/dlm/dlm-server.toml                   (a conffile)
#   /usr/lib/dlm/lib/libdlm.so*, libdlm.a, /usr/lib/dlm/include/dlm.h, dlm.hpp
#   /usr/lib/dlm/lib/pkgconfig/dlm.pc, linked from /usr/lib/<triplet>/pkgconfig
#     (a directory of its own: Debian's libdlm-dev, the cluster lock
#     manager's, has a libdlm.so of its own in /usr/lib)
#   /usr/share/doc/dlm/README.md
# The maintainer scripts add the system user dlm, make /etc/dlm/identities
# (dlm's, 0700), and enable and start the service where systemd runs.
#
# Usage: scripts/make-deb.sh [OUTDIR]        (default target/deb)
#   DLM_PROFILE=dev   package the debug build (the tests do: faster)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)
profile=${DLM_PROFILE:-release}
case "$profile" in
  dev) profile_dir=debug ;;
  *) profile_dir=$profile ;;
esac

cd "$root"
cargo build --locked --profile "$profile" -p dlm-server -p dlm-cli
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -dumpmachine)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/dlm"
install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/etc/dlm" \
  "$pkg/usr/share/doc/dlm" "$pkg/usr/lib/$triplet/pkgconfig"
install -m 0755 "$target_dir/$profile_dir/dlm-server" "$target_dir/$profile_dir/dlm" "$pkg/usr/bin/"
install -m 0644 packaging/dlm-server.service "$pkg/lib/systemd/system/"
install -m 0644 packaging/dlm-server.toml "$pkg/etc/dlm/"
install -m 0644 README.md "$pkg/usr/share/doc/dlm/"

# libdlm, installed into the staging tree, then told its real prefix.
DLM_PROFILE=$profile scripts/install-libdlm.sh "$pkg/usr/lib/dlm" >/dev/null
sed -i "s|^prefix=.*|prefix=/usr/lib/dlm|" "$pkg/usr/lib/dlm/lib/pkgconfig/dlm.pc"
ln -s /usr/lib/dlm/lib/pkgconfig/dlm.pc "$pkg/usr/lib/$triplet/pkgconfig/dlm.pc"

cat >"$pkg/DEBIAN/control" <<EOT
Package: dlm
Version: $version
Architecture: $arch
Maintainer: dlm maintainers <maintainers@users.noreply.github.com>
Depends: libc6, libgcc-s1, libfontconfig1, adduser
Section: net
Priority: optional
Homepage: $(sed -n 's/^repository = "\(.*\)"$/\1/p' Cargo.toml)
Description: distributed lock manager (server, dlm command, C library)
 dlm-server grants named locks with fencing tokens and keeps small
 values, speaking JackrabbitDLM's protocol; clusters replicate through
 Raft. The dlm command runs programs under a lock, administers the lock
 table, fights lock wars and charts the statistics log. libdlm is its C
 and C++ client library (pkg-config dlm).
EOT
echo /etc/dlm/dlm-server.toml >"$pkg/DEBIAN/conffiles"

cat >"$pkg/DEBIAN/postinst" <<'EOT'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if ! getent passwd dlm >/dev/null; then
    adduser --system --group --no-create-home --home /var/lib/dlm dlm >/dev/null
  fi
  install -d -o dlm -g dlm -m 0700 /etc/dlm/identities
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable dlm-server.service >/dev/null 2>&1 || true
    systemctl restart dlm-server.service || true
  fi
fi
EOT
cat >"$pkg/DEBIAN/prerm" <<'EOT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
  systemctl stop dlm-server.service || true
  systemctl disable dlm-server.service >/dev/null 2>&1 || true
fi
EOT
cat >"$pkg/DEBIAN/postrm" <<'EOT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
if [ "$1" = purge ]; then
  rm -rf /etc/dlm/identities /var/lib/dlm /var/log/dlm
fi
EOT
chmod 0755 "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/prerm" "$pkg/DEBIAN/postrm"

deb="$out/dlm_${version}_${arch}.deb"
# xz for a release; a debug build (hundreds of MB of symbols) only gzip -1.
if [ "$profile" = release ]; then compress=(-Zxz); else compress=(-Zgzip -z1); fi
dpkg-deb --root-owner-group "${compress[@]}" --build "$pkg" "$deb" >/dev/null
echo "$deb"
