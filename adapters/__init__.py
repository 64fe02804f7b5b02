"""citybus adapters: the SDK that plugs devices, vendor APIs and services into the bus, and the
built-in adapters (one subpackage each).

Adapters talk to :mod:`bus`, never to nats-py directly; they are discovered through the
entry-point group ``citybus.adapters``.
"""

__all__: list[str] = []
