"""Ping nodes (``ping``, ``ping_group``, ``deadping``): ICMP echo reachability of the uplink.

``targets`` holds what is pinged and the pure up/dead state machine with Heartbeat's timing and
log lines; ``icmp`` the echo packets (pure); ``prober`` the asyncio shell that sends and receives.
"""

from nonstop.ping.targets import (
    PingChanged,
    PingEvent,
    PingLate,
    PingStatus,
    PingTarget,
    PingTracker,
    PingView,
)

__all__ = ["PingChanged", "PingEvent", "PingLate", "PingStatus", "PingTarget", "PingTracker",
           "PingView"]
