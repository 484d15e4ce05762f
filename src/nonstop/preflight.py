"""A configuration against this machine: what ``nonstop check`` adds to the file rules.

The files can be right and the machine still unable to run them: a heartbeat interface that
does not exist (``bcast eth9``), an IPaddr whose interface or subnet is not here, a resource
script that is missing or not executable, a ``nonstop_sync`` csync2.cfg that does not load.
Each is reported as the configuration line it comes from, so one pass names everything a
takeover would trip on later. The same rules that decide at takeover time decide here
(``locate_script``, OCF agent paths, findif's covering route).
"""

from __future__ import annotations

import socket
from pathlib import Path

from nonstop.config.errors import ConfigError, Location
from nonstop.config.model import ClusterConfig, ConfigWarning, Mcast, ResourceSpec, Ucast
from nonstop.talk import talk_file

Problem = ConfigError | ConfigWarning


def interface_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except (OSError, ValueError):  # ValueError: a name no interface can have (a NUL byte)
        return False
    return True


def _medium_directive(medium: object) -> str:
    return "mcast" if isinstance(medium, Mcast) else "ucast" if isinstance(medium, Ucast) \
        else "bcast"


def check_media(cfg: ClusterConfig) -> list[Problem]:
    """Every heartbeat interface exists (the daemon cannot send without it)."""
    out: list[Problem] = []
    for medium in cfg.ha.media:
        where = _medium_directive(medium)
        loc = medium.loc or Location(cfg.ha.path)
        if ":" in medium.iface:  # the kernel finds eth0 for eth0:1, but cannot bind to it
            base = medium.iface.split(":", 1)[0]
            out.append(ConfigError(loc, f"{where} {medium.iface}: '{medium.iface}' is an "
                                        f"address label, not an interface; name the "
                                        f"interface ({base})"))
        elif not interface_exists(medium.iface):
            out.append(ConfigError(loc, f"{where} {medium.iface}: no interface "
                                        f"'{medium.iface}' on this machine"))
        if isinstance(medium, Ucast):
            try:
                socket.gethostbyname(medium.peer)
            except (OSError, UnicodeError) as e:
                reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                said = (f"ucast {medium.iface} {medium.peer}: cannot resolve "
                        f"'{medium.peer}': {reason}")
                # A resolver not ready yet (at boot) is the machine's problem, not the file's:
                # run then fails as a machine problem (exit 1), which systemd retries.
                transient = isinstance(e, socket.gaierror) and e.errno == socket.EAI_AGAIN
                out.append(ConfigWarning(loc, said) if transient else ConfigError(loc, said))
    return out


def _ip_problem(spec: ResourceSpec) -> str | None:
    """What stops this IPaddr/IPaddr2 resource from starting here, or None. Never raises:
    whatever the argument, a bad one is a problem of its line."""
    from nonstop.config.haresources import parse_ip_spec
    from nonstop.resources import netlink
    from nonstop.resources.ipaddr import split_label

    if len(spec.args) != 1:
        return f"{spec.raw}: {spec.name} takes one argument, the IP spec"
    try:
        ip = parse_ip_spec(spec.args[0])
    except ValueError as e:
        return f"{spec.raw}: {e}"
    iface = split_label(ip.iface)[0] if ip.iface is not None else None
    if iface is not None and not interface_exists(iface):
        return f"{spec.raw}: no interface '{iface}' on this machine"
    if iface is None or ip.cidr is None:
        try:
            netlink.covering_route(ip.ip, iface)
        except netlink.NetlinkFailure as e:
            return f"{spec.raw}: {e}"
    return None


def check_resources(cfg: ClusterConfig, *, addresses: bool = True) -> list[Problem]:
    """Every resource of haresources can be started here: its script is found and
    executable, its IP address has an interface and a subnet (unless not ``addresses``:
    `run` refuses a missing script, while an address's interface may come up later)."""
    from nonstop.resources.base import AgentContext, ResourceError
    from nonstop.resources.factory import NATIVE_IP, build_agent

    ctx = AgentContext(node=cfg.local_node or "", config_dir=Path(cfg.directory))
    out: list[Problem] = []
    for group in cfg.groups:
        for spec in group.resources:
            if spec.name in NATIVE_IP:
                problem = _ip_problem(spec) if addresses else None
                if problem is not None:
                    out.append(ConfigError(group.loc, problem))
                continue
            try:
                build_agent(spec, ctx)
            except ResourceError as e:
                out.append(ConfigError(group.loc, _script_hint(str(e), spec, ctx)))
    return out


def _script_hint(message: str, spec: ResourceSpec, ctx: object) -> str:
    """Say what is wrong with a script that exists but cannot run."""
    from nonstop.resources.base import AgentContext
    from nonstop.resources.scripts import is_file

    assert isinstance(ctx, AgentContext)
    for directory in (ctx.resource_dir, ctx.init_dir):
        candidate = directory / spec.name
        if is_file(candidate):
            return f"{message}: {candidate} is not executable (chmod +x {candidate})"
    return (f"{message} (looked in {ctx.resource_dir} and {ctx.init_dir})"
            if not spec.name.startswith("ocf:") else message)


def check_sync(cfg: ClusterConfig) -> list[Problem]:
    """The csync2.cfg named by ``nonstop_sync`` loads."""
    path = cfg.ha.sync_config
    if not path:
        return []
    from nonstop.config.csync2 import load_csync2

    loc = cfg.ha.locations.get("nonstop_sync", Location(cfg.ha.path))
    try:
        load_csync2(path)
    except Exception as e:  # every load error, whatever its type, is the line's problem
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        more = len(str(e).splitlines()) - 1
        extra = f" (and {more} more: run 'nonstop sync -C {path} -T' to see them)" if more else ""
        return [ConfigError(loc, f"nonstop_sync {path}: does not load: {first}{extra}")]
    return []


def _talk_secrets() -> set[bytes]:
    secrets = set()
    for line in talk_file("ha.d/authkeys").read_bytes().splitlines():
        words = line.split()
        if len(words) == 3 and words[0].isdigit():
            secrets.add(words[2])
    return secrets


def check_example_key(cfg: ClusterConfig) -> list[Problem]:
    """The talk's published example key signs nothing secret: warn (the files run)."""
    talk = _talk_secrets()
    return [ConfigWarning(cfg.authkeys.loc, f"key {i} is the example key published with the "
                          "talk: anyone who read it can forge heartbeats; put a new secret "
                          "(e.g. from 'openssl rand -hex 20') in authkeys on every node")
            for i, key in sorted(cfg.authkeys.keys.items()) if key.secret in talk]


def check_fencing(cfg: ClusterConfig) -> list[Problem]:
    """The fencing device this node uses is one cluster-glue's ``stonith`` knows (Heartbeat
    refuses an unknown type when it reads ha.cf: ``Invalid Stonith type``). Unknown, every
    fence would fail and the node would never take over."""
    import shutil
    import subprocess

    from nonstop.resources.stonith import STONITH_COMMAND

    device = cfg.ha.stonith_device(cfg.local_node or "")
    if device is None:
        return []
    loc = device.loc or Location(cfg.ha.path)
    command = shutil.which(STONITH_COMMAND)
    if command is None:
        return [ConfigError(loc, f"STONITH device {device.plugin}: cluster-glue's "
                                 f"'{STONITH_COMMAND}' command is not installed, so no fence "
                                 f"can run (apt install cluster-glue)")]
    try:
        listed = subprocess.run([command, "-L"], capture_output=True, text=True, timeout=30,
                                check=False).stdout.split()
    except (OSError, subprocess.SubprocessError) as e:
        return [ConfigError(loc, f"cannot list the STONITH types ({command} -L): {e}")]
    if device.plugin not in listed:
        return [ConfigError(loc, f"Invalid Stonith type [{device.plugin}]: not one of the "
                                 f"{len(listed)} types '{STONITH_COMMAND} -L' lists")]
    return []


def check_respawn(cfg: ClusterConfig) -> list[Problem]:
    """Each ``respawn`` client's program is executable and its user exists, as Heartbeat
    checks when it reads ha.cf (``Client child command [x] is not executable``, ``Invalid uid
    [x] specified for client``); ipfail is built in and not looked for."""
    import pwd
    import shutil

    out: list[Problem] = []
    for spec in cfg.ha.respawn:
        loc = spec.loc or Location(cfg.ha.path)
        try:
            pwd.getpwnam(spec.user)
        except (KeyError, ValueError):
            out.append(ConfigError(loc, f"respawn {spec.user} {spec.command}: Invalid uid "
                                        f"[{spec.user}] specified for client: no such user"))
        if shutil.which(spec.path) is None:  # a path as given, a bare name through PATH
            out.append(ConfigError(loc, f"respawn {spec.user} {spec.command}: Client child "
                                        f"command [{spec.path}] is not executable"))
    return out


def start_refuses(cfg: ClusterConfig) -> list[ConfigError]:
    """What of this machine `run` refuses before it starts: a heartbeat interface that is not
    here, a fencing device of a type cluster-glue does not know, a respawn client that cannot
    run (the resource scripts are refused as the groups are built)."""
    found = [*check_media(cfg), *check_fencing(cfg), *check_respawn(cfg)]
    return [p for p in found if isinstance(p, ConfigError)]


def run_refuses(cfg: ClusterConfig) -> list[ConfigError]:
    """What of this machine `run` refuses to start with (a reload refuses it too, or the node
    would not come back at its next start): a heartbeat interface or a resource script that
    is not here, a fencing device cluster-glue does not know, a respawn client that cannot
    run."""
    found = check_resources(cfg, addresses=False)
    return [*start_refuses(cfg), *(p for p in found if isinstance(p, ConfigError))]


def check_machine(cfg: ClusterConfig) -> list[Problem]:
    """Every machine fact ``nonstop check`` looks at (not with ``--offline``)."""
    return [*check_media(cfg), *check_fencing(cfg), *check_respawn(cfg), *check_resources(cfg),
            *check_sync(cfg)]
