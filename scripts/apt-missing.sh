# Sourced by setup.sh and package.sh: `apt_missing PKG...` prints the packages that are not
# installed, one a line.
apt_missing() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || printf '%s\n' "$p"
  done
}
