#!/usr/bin/env bash
# Installs everything nonstop, its tests, its demo and its benchmarks need on a fresh Debian 12
# machine. Run as root. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  iproute2 nftables tcpdump iputils-arping iputils-ping procps psmisc util-linux e2fsprogs
  openssl                          # per-node TLS certificates for replication
  librsync2                        # rsync deltas of changed files (the library csync2 uses)
  kamailio sipsak sip-tester       # the managed SIP service and SIP clients
  heartbeat csync2 keepalived rsync lsyncd  # the reference programs we measure against
  cluster-glue                     # its stonith command fences a peer (stonith, stonith_host)
  perl netcat-openbsd              # csync2's own test suite (tests/csync2_upstream) uses them
  systemd                          # journald for the journal test (never started on the host)
  python3-prometheus-client        # oracle of the metrics exposition tests (Debian python3; else pip)
  chromium                         # the status page's test renders it headless (docs/*.png)
  etcd-server etcd-client          # nonstop_etcd's lab: a three-member etcd in namespaces
  logrotate                        # rotates the Asterisk logs in a replication test, as on a PBX
)
. scripts/apt-missing.sh
mapfile -t missing < <(apt_missing "${APT_PACKAGES[@]}")
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  # Package scripts must not start heartbeat, kamailio or keepalived on this host: the tests run
  # them only inside their own namespaces.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created_policy=1
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  [ "$created_policy" = 1 ] && rm -f "$policy"
fi

# A real MTA for MailTo's namespace test: nullmailer's package, unpacked by the test into one
# node's file system only (installed, it would give the whole machine a sendmail).
TEST_DEBS=/var/cache/nonstop-tests
mkdir -p "$TEST_DEBS"
if ! compgen -G "$TEST_DEBS/nullmailer_*.deb" > /dev/null; then
  echo "setup: downloading nullmailer's package to $TEST_DEBS (not installed)"
  (cd "$TEST_DEBS" && { apt-get download -q nullmailer 2>/dev/null \
     || { apt-get update -q && apt-get download -q nullmailer; }; })
fi

PY=${PYTHON:-python3}
echo "setup: installing nonstop and its test tools with $($PY --version)"
$PY -m pip install -q --disable-pip-version-check -e '.[dev]'
# Byte-compile the checkout as a package install does (dh_python3, pip for a wheel): an editable
# install is imported from source, and with PYTHONDONTWRITEBYTECODE set (some CI machines) every
# `nonstop` command would compile every module again at each start.
$PY -m compileall -q src >/dev/null
