"""Choose the real driver for a haresources entry (`nonstop.resources.base.make_agent`)."""

from __future__ import annotations

from nonstop.config.haresources import NATIVE_IP_AGENTS
from nonstop.config.model import ResourceSpec
from nonstop.resources.base import Agent, AgentContext, ResourceError
from nonstop.resources.ipaddr import IPAddrAgent
from nonstop.resources.mailto import MailToAgent
from nonstop.resources.scripts import (
    OcfAgent,
    ScriptAgent,
    locate_script,
    parse_ocf_name,
    parse_ocf_params,
)

NATIVE_IP = NATIVE_IP_AGENTS


def build_agent(spec: ResourceSpec, ctx: AgentContext) -> Agent:
    """IPaddr/IPaddr2 and MailTo natively, ``ocf:<provider>:<type>`` as an OCF agent, any
    other name as a script from ``resource.d`` or the init directory.

    Raises ResourceError for a bad argument list or a script that cannot be found, so a
    configuration check reports it before any takeover needs it.
    """
    if spec.name in NATIVE_IP:
        if len(spec.args) != 1:
            raise ResourceError(
                spec.raw, "configure", f"{spec.name} takes exactly one IP spec argument"
            )
        return IPAddrAgent(spec.args[0], ctx, kind=spec.name)
    if spec.name == "MailTo":
        return MailToAgent(spec.raw, spec.args, ctx)
    ocf = parse_ocf_name(spec.name)
    if ocf is not None:
        provider, rtype = ocf
        return OcfAgent(spec.raw, provider, rtype, parse_ocf_params(spec.raw, spec.args), ctx)
    if spec.name.startswith("ocf:"):
        raise ResourceError(
            spec.raw, "configure", "OCF resources are written ocf:<provider>:<type>"
        )
    path, kind = locate_script(spec.name, ctx)
    return ScriptAgent(spec.raw, path, spec.args, kind, ctx)
