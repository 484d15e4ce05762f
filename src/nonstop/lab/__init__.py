"""nonstop.lab: network-namespace test hosts shared by the integration tests, demo and bench.

See :class:`nonstop.lab.lab.Lab` for the layout and LAB.md for the rules it follows.
"""

from nonstop.lab.errors import LabError
from nonstop.lab.faults import Direction
from nonstop.lab.lab import CLIENT, CLIENT_IP, PREFIXLEN, VIP, Lab
from nonstop.lab.leftovers import cleanup_leftovers
from nonstop.lab.process import BoxProcess, LabProcess
from nonstop.lab.wait import wait_for, wait_for_async

__all__ = [
    "CLIENT",
    "CLIENT_IP",
    "PREFIXLEN",
    "VIP",
    "BoxProcess",
    "Direction",
    "Lab",
    "LabError",
    "LabProcess",
    "cleanup_leftovers",
    "wait_for",
    "wait_for_async",
]
