"""A STONITH device for lab boxes: a real external plugin of cluster-glue's framework.

cluster-glue's ``stonith -t external/<name>`` runs ``/usr/lib/stonith/plugins/external/<name>``
with the action as its argument and the device's parameters in its environment. This plugin,
``nonstop-lab``, powers a box off the way a power switch would: it SIGKILLs the box's init, and
the kernel kills every process of the box's PID namespace with it.

Where each box's init is comes from the lab's power directory (:func:`power_record`): one file
per node holding the init's host pid and its start time (field 22 of ``/proc/<pid>/stat``); the
plugin kills the pid only while its start time still matches, so a stale record can never hit a
process that reused the pid. ``reset`` and ``off`` both leave the box off (a lab cannot boot it
again by itself; the test restarts it); ``on`` is refused. A box that is already off counts as
fenced, as a machine whose power is already off does.

Parameters: ``hostlist`` (the nodes it controls, blanks or commas between them) and ``powerdir``.
The plugin directory is bound over cluster-glue's (:func:`stonith_binds`) only in the mount
namespace of the lab programs that fence.
"""

from __future__ import annotations

from pathlib import Path

PLUGIN_NAME = "nonstop-lab"
PLUGIN_TYPE = f"external/{PLUGIN_NAME}"
EXTERNAL_PLUGIN_DIR = "/usr/lib/stonith/plugins/external"

_PLUGIN = r"""#!/bin/sh
# nonstop lab STONITH plugin (cluster-glue external plugin framework): powers a lab box off by
# killing its init. Installed by nonstop.lab.fence; parameters: hostlist, powerdir.
hostlist=$(echo "$hostlist" | tr ',' ' ')

controls() {
  want=$(echo "$1" | tr 'A-Z' 'a-z')
  for h in $hostlist; do
    [ "$(echo "$h" | tr 'A-Z' 'a-z')" = "$want" ] && return 0
  done
  return 1
}

starttime() {
  # Field 22 of /proc/PID/stat, counted after the command name, which may hold blanks.
  sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20
}

power_off() {
  node=$1
  if ! controls "$node"; then
    echo "nonstop-lab: $node is not in hostlist ($hostlist)" >&2
    return 1
  fi
  record="$powerdir/$node"
  if [ ! -r "$record" ]; then
    echo "nonstop-lab: $node has never run a box (no $record): it is off"
    return 0
  fi
  read -r pid start < "$record"
  if [ -z "$pid" ] || [ "$(starttime "$pid")" != "$start" ]; then
    echo "nonstop-lab: the box of $node is not running: it is off"
    return 0
  fi
  kill -KILL "$pid" 2>/dev/null
  i=0
  while [ "$i" -lt 200 ]; do
    state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
    if [ "$(starttime "$pid")" != "$start" ] || [ "$state" = "Z" ]; then
      echo "nonstop-lab: powered $node off (box init $pid killed)"
      return 0
    fi
    sleep 0.05
    i=$((i + 1))
  done
  echo "nonstop-lab: the box of $node (init $pid) is still running" >&2
  return 1
}

case "$1" in
gethosts) for h in $hostlist; do echo "$h"; done; exit 0 ;;
on) echo "nonstop-lab: cannot power a box on; the lab starts boxes" >&2; exit 1 ;;
off|reset) power_off "$2"; exit $? ;;
status)
  if [ -n "$hostlist" ] && [ -d "$powerdir" ]; then exit 0; fi
  echo "nonstop-lab: hostlist and an existing powerdir are required" >&2; exit 1 ;;
getconfignames) echo hostlist; echo powerdir; exit 0 ;;
getinfo-devid) echo "nonstop lab box power"; exit 0 ;;
getinfo-devname) echo "nonstop lab box power switch"; exit 0 ;;
getinfo-devdescr) echo "Powers a nonstop lab box off by killing its PID namespace."; exit 0 ;;
getinfo-devurl) echo "https://example.invalid/nonstop/lab"; exit 0 ;;
getinfo-xml)
  cat <<'XML'
<parameters>
<parameter name="hostlist" unique="1" required="1">
<content type="string" />
<shortdesc lang="en">Nodes this device controls</shortdesc>
<longdesc lang="en">Lab node names, separated by blanks or commas.</longdesc>
</parameter>
<parameter name="powerdir" unique="0" required="1">
<content type="string" />
<shortdesc lang="en">The lab's power directory</shortdesc>
<longdesc lang="en">One file per node: the host pid and start time of its box init.</longdesc>
</parameter>
</parameters>
XML
  exit 0 ;;
*) exit 1 ;;
esac
"""


def install_plugin(plugin_dir: Path) -> Path:
    """Write the plugin into ``plugin_dir`` (mode 755: cluster-glue ignores a plugin that is
    writable by group or others); returns its path."""
    plugin_dir.mkdir(parents=True, exist_ok=True)
    path = plugin_dir / PLUGIN_NAME
    path.write_text(_PLUGIN)
    path.chmod(0o755)
    return path


def process_start_time(pid: int) -> str:
    """Field 22 of ``/proc/<pid>/stat`` (start time in clock ticks); OSError if it is gone."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(") ", 1)[1].split()[19]


def power_record(power_dir: Path, node: str, init_pid: int) -> None:
    """Record where ``node``'s box init is, for the plugin (written when the box starts)."""
    power_dir.mkdir(parents=True, exist_ok=True)
    tmp = power_dir / f".{node}.tmp"
    tmp.write_text(f"{init_pid} {process_start_time(init_pid)}\n")
    tmp.replace(power_dir / node)


def stonith_binds(plugin_dir: Path) -> dict[str, Path]:
    """The bind (target -> source) that shows ``plugin_dir`` as cluster-glue's external plugin
    directory, for ``Lab.spawn``/``Lab.run``."""
    return {EXTERNAL_PLUGIN_DIR: plugin_dir}
