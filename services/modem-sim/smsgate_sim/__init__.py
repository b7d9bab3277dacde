"""Virtual modems on ptys or TCP ports, a virtual radio network and faults on command.

The agent talks to these modems through the same serial code path as to hardware.
"""

from .control import PortInfo, build_app
from .faults import Faults, FaultUpdate
from .modem import SimCard, VirtualModem
from .network import CARRIER_BALANCE_REPLY, USSD_BALANCE_REPLY, Network
from .profiles import PROFILES, Profile
from .simulator import Injected, Simulator, run_sim
from .stats import ModemStats, NetworkStats, SentPart

__all__ = [
    "CARRIER_BALANCE_REPLY",
    "PROFILES",
    "USSD_BALANCE_REPLY",
    "FaultUpdate",
    "Faults",
    "Injected",
    "ModemStats",
    "Network",
    "NetworkStats",
    "PortInfo",
    "Profile",
    "SentPart",
    "SimCard",
    "Simulator",
    "VirtualModem",
    "build_app",
    "run_sim",
]
