#!/usr/bin/env bash
# An `apt upgrade` of a running node, checked under a real systemd: the built package is installed
# and started in a container (systemd-nspawn booting this machine's own Debian 12 through a
# throw-away overlay, with a private network), then upgraded to the same package with a higher
# version. The node must be running the new release afterwards; a node an admin had stopped must
# stay stopped; a first install must start nothing. Called by scripts/package.sh; as root.
#   bash scripts/package-upgrade.sh path/to/nonstop_X_all.deb
set -euo pipefail
deb=$(realpath "$1")
work=$(mktemp -d /var/tmp/nonstop-upgrade.XXXXXX)
sysroot="$work/sysroot"
nspawn_pid=
mounted=()

cleanup() {
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    kill -TERM "$nspawn_pid" 2>/dev/null || true      # nspawn shuts the container down
    for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$nspawn_pid" 2>/dev/null || true
  fi
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# The upgrade: the same files, a higher version.
version=$(dpkg-deb -f "$deb" Version)
mkdir "$work/repack"
dpkg-deb -R "$deb" "$work/repack"
sed -i "s/^Version: .*/Version: ${version}+upgrade1/" "$work/repack/DEBIAN/control"
dpkg-deb -b -Zxz "$work/repack" "$work/upgrade.deb" > /dev/null

# This machine's own system, writable through a tmpfs overlay, as the container's root.
mkdir -p "$work/rw" "$sysroot"
mount -t tmpfs tmpfs "$work/rw"; mounted+=("$work/rw")
mkdir "$work/rw/upper" "$work/rw/work"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/rw/upper,workdir=$work/rw/work" "$sysroot"
mounted+=("$sysroot")
systemd-id128 new > "$sysroot/etc/machine-id"      # not the host's: nspawn refuses a twin
# A container image's policy-rc.d (exit 101: start nothing) is not what a server has.
rm -f "$sysroot/usr/sbin/policy-rc.d"
dpkg --root="$sysroot" --purge nonstop > /dev/null 2>&1 || true
D=/var/cache/nonstop-upgrade   # in the container
mkdir -p "$sysroot$D"
cp "$deb" "$sysroot$D/release.deb"; cp "$work/upgrade.deb" "$sysroot$D/upgrade.deb"
# nspawn keeps its own scratch under /run/systemd/nspawn and removes it only from a tmpfs.
mkdir -p /run/systemd/nspawn
if ! mountpoint -q /run/systemd/nspawn && [ "$(stat -f -c %T /run)" != tmpfs ]; then
  mount -t tmpfs tmpfs /run/systemd/nspawn; mounted=("/run/systemd/nspawn" "${mounted[@]}")
fi

systemd-nspawn -q -D "$sysroot" --machine="nonstop-upgrade-$$" --register=no --keep-unit \
  --link-journal=no --private-network -b -- systemd.unit=basic.target \
  > "$work/console.log" 2>&1 < /dev/null &
nspawn_pid=$!
init_pid=
for _ in $(seq 300); do
  init_pid=$(pgrep -P "$nspawn_pid" -x systemd || true)
  if [ -n "$init_pid" ]; then
    state=$(nsenter -t "$init_pid" -a systemctl is-system-running 2>/dev/null || true)
    case "$state" in running|degraded) break ;; esac
  fi
  kill -0 "$nspawn_pid" 2>/dev/null || { cat "$work/console.log"; echo "upgrade: the container did not boot"; exit 1; }
  sleep 0.2
done
[ -n "$init_pid" ] || { cat "$work/console.log"; echo "upgrade: the container did not boot"; exit 1; }

# A server's environment, not this shell's (whose PATH may lead to another Python).
nsenter -t "$init_pid" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 D="$D" \
  /bin/bash -s <<'IN'
set -euo pipefail
fail() { echo "upgrade: $*"; journalctl -u nonstop --no-pager | tail -20; exit 1; }
wait_for() {  # wait_for SECONDS COMMAND...: polls COMMAND until it succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do [ "$SECONDS" -lt "$deadline" ] || return 1; sleep 0.2; done
}
has_vip() { ip -br addr show eth0 | grep -q ' 198\.18\.0\.10/24'; }
ip link add eth0 type veth peer name eth0peer
ip addr add 198.18.0.1/24 dev eth0
ip link set eth0 up; ip link set eth0peer up

dpkg -i $D/release.deb > $D/install.log 2>&1 || { cat $D/install.log; fail "install failed"; }
[ "$(systemctl is-active nonstop)" = inactive ] || fail "a first install started the service"
talk=$(mktemp -d)
python3 -c "import sys; from nonstop.talk import copy_talk; copy_talk(sys.argv[1])" "$talk"
cp -r "$talk/ha.d/." /etc/ha.d/
chmod 600 /etc/ha.d/authkeys
echo vpbx1-1 > /etc/ha.d/nodeinfo
# The talk's files, a node alone: a short initdead and just the address as its group.
sed -i -e 's/^use_logd yes/use_logd no\nlogfile \/var\/log\/ha-log/' -e 's/^initdead 120/initdead 4/' \
  /etc/ha.d/ha.cf
echo 'vpbx1-1 198.18.0.10/24/eth0' > /etc/ha.d/haresources
nonstop check > $D/check.log 2>&1 || { cat $D/check.log; fail "nonstop check refused the files"; }

systemctl enable --now nonstop 2> /dev/null
wait_for 30 has_vip || fail "the node did not take its address"
before=$(systemctl show -P MainPID nonstop)

dpkg -i $D/upgrade.deb > $D/upgrade.log 2>&1 || { cat $D/upgrade.log; fail "upgrade failed"; }
[ "$(systemctl is-active nonstop)" = active ] || { cat $D/upgrade.log; fail "the running node is down after the upgrade"; }
after=$(systemctl show -P MainPID nonstop)
[ "$after" != "$before" ] || fail "the daemon was not restarted on the new release (pid $before)"
wait_for 30 has_vip || fail "the upgraded node did not take its address back"
echo "upgrade: a running node was stopped, upgraded and started again (pid $before -> $after)"

systemctl stop nonstop
dpkg -i $D/release.deb > $D/downgrade.log 2>&1 || { cat $D/downgrade.log; fail "reinstall failed"; }
[ "$(systemctl is-active nonstop)" = inactive ] || fail "an upgrade started a node an admin had stopped"
echo "upgrade: a stopped node stays stopped"
IN
