#!/usr/bin/env bash
# Builds nonstop's Debian package (dh-python/pybuild, dpkg-buildpackage) and its wheel and sdist
# from this tree, checks them (lintian, systemd-analyze verify, LICENSE and docs inside, an upgrade
# of a running node under systemd in a container), installs the package on this machine, runs the
# installed nonstop and removes the package again.
# Debian 12, as root; installs the build tools it lacks. Output in $NONSTOP_PACKAGE_OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_TOOLS=(debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools
             python3-build python3-click help2man lintian bash-completion
             systemd systemd-container)
. scripts/apt-missing.sh
mapfile -t missing < <(apt_missing "${BUILD_TOOLS[@]}")
if [ "${#missing[@]}" -gt 0 ]; then
  echo "package: installing the build tools: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
OUT=${NONSTOP_PACKAGE_OUT:-/var/tmp/nonstop-package}
# The build runs on Debian's own Python and tools, whatever Python this shell prefers.
SYSTEM_ENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="${HOME:-/root}" LANG=C.UTF-8)

rm -rf "$OUT"
mkdir -p "$OUT/src"
# A copy of the tree: dpkg-buildpackage writes into debian/ and next to the source directory.
tar --exclude=.git --exclude=__pycache__ --exclude='*.egg-info' --exclude=.mypy_cache \
    --exclude=.ruff_cache --exclude=.pytest_cache --exclude=./build -cf - . | tar -C "$OUT/src" -xf -

echo "== dpkg-buildpackage"
(cd "$OUT/src" && "${SYSTEM_ENV[@]}" dpkg-buildpackage -us -uc -b > "$OUT/build.log" 2>&1) \
  || { tail -40 "$OUT/build.log"; exit 1; }
deb=$(ls "$OUT"/nonstop_*_all.deb)

echo "== lintian"
"${SYSTEM_ENV[@]}" lintian --fail-on error,warning \
  "$OUT"/nonstop_*.changes

echo "== wheel and sdist carry LICENSE and the docs"
(cd "$OUT/src" && "${SYSTEM_ENV[@]}" python3 -m build --no-isolation --sdist --wheel \
   --outdir "$OUT/dist" > "$OUT/dist.log" 2>&1) || { tail -40 "$OUT/dist.log"; exit 1; }
"${SYSTEM_ENV[@]}" python3 - "$OUT/dist" <<'PY'
import sys, tarfile, zipfile
from pathlib import Path
dist = Path(sys.argv[1])
[wheel] = dist.glob("*.whl"); [sdist] = dist.glob("*.tar.gz")
names = zipfile.ZipFile(wheel).namelist()
for want in ("dist-info/LICENSE", "data/share/doc/nonstop/CONFIG.md",
             "data/share/doc/nonstop/SYNC.md", "data/share/doc/nonstop/README.md"):
    assert any(n.endswith(want) for n in names), f"{wheel.name} lacks {want}"
members = tarfile.open(sdist).getnames()
for want in ("/LICENSE", "/docs/CONFIG.md", "/docs/SYNC.md", "/docs/STATUS.md"):
    assert any(n.endswith(want) for n in members), f"{sdist.name} lacks {want}"
metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA")))
requires = [line for line in metadata.decode().splitlines() if line.startswith("Requires-Dist:")]
assert "Requires-Dist: aiosmtpd (>=1.4) ; extra == 'demo'" in requires, requires
assert not [r for r in requires if "aiosmtpd" in r and "extra" not in r], \
    "aiosmtpd (the demo's mail server) must be an extra, not a dependency"
print(f"ok: {wheel.name}, {sdist.name}")
PY

echo "== apt upgrade of a running node, under systemd in a container"
bash scripts/package-upgrade.sh "$deb"

echo "== install $deb"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$deb" \
  > "$OUT/install.log" 2>&1 || { tail -20 "$OUT/install.log"; exit 1; }
cfg=$(mktemp -d)
cleanup() {
  rm -rf "$cfg"
  # Installed, the package's nonstop would stand before a development checkout on the system
  # Python's path: it stays only when asked to (NONSTOP_KEEP_PACKAGE=1).
  if [ "${NONSTOP_KEEP_PACKAGE:-0}" != 1 ]; then dpkg --purge nonstop > /dev/null; fi
}
trap cleanup EXIT

echo "== systemd-analyze verify"
systemd-analyze verify --man=no /lib/systemd/system/nonstop.service

echo "== the installed nonstop"
"${SYSTEM_ENV[@]}" /usr/bin/nonstop --version
"${SYSTEM_ENV[@]}" /usr/bin/python3 -c \
  "import sys; from nonstop.talk import copy_talk; copy_talk(sys.argv[1])" "$cfg"
"${SYSTEM_ENV[@]}" /usr/bin/nonstop check --offline --node vpbx1-1 --config-dir "$cfg/ha.d"
for page in nonstop nonstop-check nonstop-run nonstop-status nonstop-reload nonstop-standby \
            nonstop-takeover nonstop-sync; do
  # A page made from a --help that failed would hold the error instead of the options.
  zgrep -q "Show this message and exit" "/usr/share/man/man1/$page.1.gz" \
    || { echo "man page $page is missing or has no options"; exit 1; }
done
words=$("${SYSTEM_ENV[@]}" bash -c 'source /usr/share/bash-completion/completions/nonstop
  COMP_WORDS=(nonstop re); COMP_CWORD=1; _nonstop_completion nonstop; echo "${COMPREPLY[*]}"')
[[ " $words " == *" reload "* ]] || { echo "bash completion offers: $words"; exit 1; }
test -f /etc/logrotate.d/nonstop && test -d /etc/ha.d && test -d /var/lib/nonstop
echo "package: built, checked and installed: $deb"
