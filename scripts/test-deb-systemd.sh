#!/usr/bin/env bash
# The Debian package installed with dpkg and run by a real systemd, as on a
# server: `dpkg -i` enables and starts dlm-server.service (Type=notify, user
# dlm, the unit's whole sandbox), the server serves, `systemctl reload`
# keeps it (and its data), a crash is restarted, `systemctl stop` is clean,
# and `dpkg --purge` leaves nothing behind.
#
# Nothing here touches the machine: systemd boots as PID 1 of new PID, mount
# and network namespaces, chrooted into an overlay of / whose writes go to a
# tmpfs (dpkg's, systemd-tmpfiles' cleaning of /tmp, the dlm user), with only
# the units the package needs (device management and kernel settings are
# masked). Everything vanishes when the namespaces' PID 1 is killed.
#
# Needs root (namespaces, mounts), systemd, util-linux (unshare, nsenter) and
# iproute2; scripts/setup.sh installs them. Usage: scripts/test-deb-systemd.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "test-deb-systemd: SKIPPED: needs root (namespaces and mounts)" >&2
  exit 0
fi
for tool in unshare nsenter chroot ip dpkg-deb /lib/systemd/systemd; do
  command -v "$tool" >/dev/null || { echo "test-deb-systemd: missing $tool (scripts/setup.sh installs it)" >&2; exit 1; }
done

if ! unshare --pid --fork --mount --net --propagation private \
  sh -c 'mount -t tmpfs probe /mnt && ip link set lo up' >/dev/null 2>&1; then
  echo "test-deb-systemd: SKIPPED: this machine refuses new namespaces or mounts to root" >&2
  exit 0
fi

work=$(pwd)/target/deb-systemd
rm -rf "$work"
mkdir -p "$work/deb" "$work/mnt"
deb=$(DLM_PROFILE=dev scripts/make-deb.sh "$work/deb" | tail -n 1)

# PID 1's parent, inside the namespaces: the overlay root, then systemd.
cat >"$work/init.sh" <<'EOF'
#!/bin/sh
set -eu
R=$1
DEB=$2
ip link set lo up
mount -t tmpfs -o size=2g,mode=0755 dlm-deb-test "$R"
mkdir -p "$R/upper" "$R/work" "$R/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$R/upper,workdir=$R/work" "$R/root"
root=$R/root
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/run"
mount -t tmpfs tmpfs "$root/tmp"
# The package, where the chroot sees it (its /tmp is a fresh tmpfs).
cp "$DEB" "$root/root/dlm-test.deb"
mkdir -p "$root/run/systemd/system"
printf '[Unit]\nDescription=dlm package test: only what the test starts\n' \
  >"$root/run/systemd/system/dlm-test.target"
# Units that would act on the machine's kernel or devices, not the overlay.
for u in systemd-udevd.service systemd-udev-trigger.service \
  systemd-udevd-control.socket systemd-udevd-kernel.socket \
  systemd-udev-settle.service systemd-sysctl.service systemd-binfmt.service \
  proc-sys-fs-binfmt_misc.automount systemd-modules-load.service \
  systemd-remount-fs.service; do
  ln -sf /dev/null "$root/etc/systemd/system/$u"
done
exec chroot "$root" /lib/systemd/systemd --system --unit=dlm-test.target \
  --log-target=console --show-status=no
EOF
chmod +x "$work/init.sh"

unshare --pid --fork --mount --net --propagation private \
  "$work/init.sh" "$work/mnt" "$deb" >"$work/systemd.log" 2>&1 &
outer=$!
init=""
cleanup() {
  [ -n "$init" ] && kill -9 "$init" 2>/dev/null || true
  kill -9 "$outer" 2>/dev/null || true
  wait "$outer" 2>/dev/null || true
}
trap cleanup EXIT

fail() {
  echo "test-deb-systemd: FAILED: $*" >&2
  [ -n "$init" ] && inside journalctl --no-pager -u dlm-server -n 40 >&2 || true
  echo "--- systemd's console:" >&2
  tail -n 30 "$work/systemd.log" >&2 || true
  exit 1
}
inside() { nsenter -t "$init" -a -r -w "$@"; }
# Polls `cmd` (a shell command run inside) until it succeeds, up to $1 s.
until_in() {
  local secs=$1
  shift
  local end=$((SECONDS + secs))
  until inside sh -c "$*" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.1
  done
}

# systemd is the child of unshare's fork (PID 1 inside).
for _ in $(seq 1 300); do
  init=$(pgrep -P "$outer" | head -n 1 || true)
  [ -n "$init" ] && [ "$(cat "/proc/$init/comm" 2>/dev/null)" = systemd ] && break
  init=""
  sleep 0.1
done
[ -n "$init" ] || fail "systemd did not start"
until_in 60 'state=$(systemctl is-system-running); [ "$state" = running ] || [ "$state" = degraded ]' ||
  fail "systemd did not finish booting"

step() { printf '  %s\n' "$*"; }
step "dpkg -i $(basename "$deb") (starts the service where systemd runs)"
inside dpkg -i /root/dlm-test.deb >"$work/dpkg.log" 2>&1 || fail "dpkg -i: $(cat "$work/dpkg.log")"
[ "$(inside systemctl is-enabled dlm-server)" = enabled ] || fail "not enabled"
# Type=notify: active only once the server said READY=1.
[ "$(inside systemctl is-active dlm-server)" = active ] || fail "not active after dpkg -i"
[ "$(inside systemctl show -P StatusText dlm-server)" = serving ] || fail "status text is not 'serving'"
pid=$(inside systemctl show -P MainPID dlm-server)
[ "$(inside ps -o user= -p "$pid" | tr -d ' ')" = dlm ] || fail "not running as user dlm"

step "it serves: put/get, a lock around a command, /readyz"
inside dlm --server 127.0.0.1:37373 put greeting hello >/dev/null || fail "put"
[ "$(inside dlm --server 127.0.0.1:37373 get greeting)" = hello ] || fail "get"
token=$(inside dlm --server 127.0.0.1:37373 lock job -- sh -c 'echo "$DLM_LOCK_TOKEN"') || fail "lock"
[ -n "$token" ] || fail "no fencing token given to the command"
inside python3 -c 'import urllib.request,sys; sys.exit(urllib.request.urlopen("http://127.0.0.1:9373/readyz").status != 200)' ||
  fail "/readyz"

step "systemctl reload (SIGHUP) keeps the process and its values"
inside systemctl reload dlm-server || fail "reload"
[ "$(inside systemctl show -P MainPID dlm-server)" = "$pid" ] || fail "reload replaced the process"
[ "$(inside dlm --server 127.0.0.1:37373 get greeting)" = hello ] || fail "value lost by reload"

step "a crash (SIGKILL) is restarted (Restart=on-failure)"
inside kill -9 "$pid"
until_in 30 "[ \"\$(systemctl show -P MainPID dlm-server)\" != $pid ] && [ \"\$(systemctl show -P MainPID dlm-server)\" != 0 ] && [ \"\$(systemctl is-active dlm-server)\" = active ]" ||
  fail "not restarted after SIGKILL"
until_in 30 'dlm --server 127.0.0.1:37373 put after-restart yes' || fail "restarted server does not serve"

step "systemctl stop is clean"
inside systemctl stop dlm-server || fail "stop"
[ "$(inside systemctl show -P Result dlm-server)" = success ] || fail "stop result: $(inside systemctl show -P Result dlm-server)"
[ "$(inside systemctl is-active dlm-server || true)" = inactive ] || fail "still active after stop"

step "dpkg --purge leaves nothing"
inside dpkg --purge dlm >"$work/dpkg.log" 2>&1 || fail "dpkg --purge: $(cat "$work/dpkg.log")"
for path in /usr/bin/dlm-server /usr/bin/dlm /etc/dlm /var/lib/dlm /var/log/dlm \
  /lib/systemd/system/dlm-server.service /etc/systemd/system/multi-user.target.wants/dlm-server.service; do
  ! inside test -e "$path" || fail "$path left after purge"
done
echo "test-deb-systemd: the package installs, serves under systemd, reloads, restarts, stops and purges"
