"""The HTTP and SSE gateway: the city's data for people who do not speak NATS.

See :mod:`adapters.gateway.adapter` for how it runs and ``docs/gateway.md`` for what it serves.
"""

from adapters.gateway.adapter import Gateway
from adapters.gateway.config import GatewayConfig

__all__ = ["Gateway", "GatewayConfig"]
