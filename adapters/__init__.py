"""citybus adapters: the SDK that plugs devices, vendor APIs and services into the bus, and the
built-in adapters (one subpackage each).

An adapter is a class with a name, a config Struct, the contracts it consumes and produces, and
``async run(ctx)``; it talks to :mod:`bus` only through its :class:`Context`, and is discovered
through the entry-point group ``citybus.adapters``. :mod:`adapters.testing` runs one in tests.
"""

from adapters.base import Adapter, AdapterDeclarationError, Detection, NoConfig, check_declaration
from adapters.clock import BusClock, Clock, WallClock
from adapters.context import ActingForOthersError, Context, UndeclaredContractError
from adapters.discovery import Discovery, DiscoveryProblem, discover
from adapters.instances import Instance, default_replay, instances_from_config, parse_instance
from adapters.supervisor import Backoff, Supervisor

__all__ = [
    "ActingForOthersError",
    "Adapter",
    "AdapterDeclarationError",
    "Backoff",
    "BusClock",
    "Clock",
    "Context",
    "Detection",
    "Discovery",
    "DiscoveryProblem",
    "Instance",
    "NoConfig",
    "Supervisor",
    "UndeclaredContractError",
    "WallClock",
    "check_declaration",
    "default_replay",
    "discover",
    "instances_from_config",
    "parse_instance",
]
