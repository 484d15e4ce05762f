"""Load a Heartbeat configuration directory (the talk's ``/etc/ha.d``) into ClusterConfig.

``ha.cf`` and ``authkeys`` are required; a missing ``haresources`` means no resource groups,
as Heartbeat 3.0.6 tolerates. Errors of all three files are reported together.
"""

from __future__ import annotations

import os

from nonstop.config.authkeys import check_authkeys
from nonstop.config.errors import ConfigError, Location
from nonstop.config.hacf import check_hacf, declared_nodes
from nonstop.config.haresources import check_haresources
from nonstop.config.model import ClusterConfig, ConfigWarning, Parsed, ResourceGroup

HACF = "ha.cf"
AUTHKEYS = "authkeys"
HARESOURCES = "haresources"


def check_cluster_config(directory: str, node: str | None) -> Parsed[ClusterConfig]:
    """Read and cross-check the three files: the ClusterConfig (None if any error), every
    error and every warning. ``node`` (from ``--node``) must be one of ha.cf's nodes."""
    ha = check_hacf(os.path.join(directory, HACF))
    keys = check_authkeys(os.path.join(directory, AUTHKEYS))
    errors: list[ConfigError] = [*ha.errors, *keys.errors]
    warnings: list[ConfigWarning] = [*ha.warnings, *keys.warnings]

    # A broken ha.cf still names its nodes: haresources is checked against them in the same
    # pass, so a second round of errors does not wait for the first to be fixed.
    nodes = ha.value.nodes if ha.value is not None else declared_nodes(os.path.join(directory,
                                                                                    HACF))
    res_path = os.path.join(directory, HARESOURCES)
    groups: tuple[ResourceGroup, ...] | None = ()
    if os.path.lexists(res_path):
        res = check_haresources(res_path, nodes)
        errors.extend(res.errors)
        warnings.extend(res.warnings)
        groups = res.value

    local = node.lower() if node is not None else None
    if local is not None and nodes is not None and local not in nodes:
        where = (ha.value.locations.get("node", Location(ha.value.path)) if ha.value is not None
                 else Location(os.path.join(directory, HACF)))
        errors.append(
            ConfigError(
                where,
                f"Current node [{local}] not in configuration! "
                f"(nodes: {', '.join(nodes)}; --node, else nodeinfo, else uname -n must name "
                "one of them)",
            )
        )
    if errors or ha.value is None or keys.value is None or groups is None:
        return Parsed(None, tuple(errors), tuple(warnings))
    cfg = ClusterConfig(
        directory=directory,
        ha=ha.value,
        authkeys=keys.value,
        groups=groups,
        local_node=local,
        warnings=tuple(warnings),
    )
    return Parsed(cfg, (), tuple(warnings))


def load_config_dir(path: str, node: str | None) -> ClusterConfig:
    """Load ha.cf, authkeys and haresources from ``path``; raise ConfigErrors with every error
    of all three files. Warnings are in the result's ``warnings``."""
    return check_cluster_config(path, node).unwrap()


def check_config_dir(path: str, node: str | None) -> list[ConfigError | ConfigWarning]:
    """Every error and warning of a configuration directory, in file and line order.

    For ``nonstop check --config-dir DIR [--node N]``: print each item with ``str()``; the
    configuration is usable when no item is a ConfigError.
    """
    result = check_cluster_config(path, node)
    items: list[ConfigError | ConfigWarning] = [*result.errors, *result.warnings]
    order = {name: i for i, name in enumerate((HACF, AUTHKEYS, HARESOURCES))}
    items.sort(key=lambda it: (order.get(os.path.basename(it.loc.file), 9), it.loc.line))
    return items
