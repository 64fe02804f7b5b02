"""The one error hierarchy of citybus.

::

    CityBusError
     ├── ConfigError (ValueError)          a wrong value in citybus.toml or CITYBUS_* variables
     ├── ContractViolation (ValueError)    a message that does not fit its contract
     │    ├── MissingHeaderError           a CloudEvents header is missing or malformed
     │    └── UndecodableError             bytes from outside that a decoder could not read
     ├── NotConnectedError                 the bus has no NATS connection (yet, or any more)
     │    └── ServerUnavailableError       no NATS server answered at the given URL
     ├── PermissionDeniedError             the broker refused a publish: the user has no right to it
     ├── PublishTimeoutError (TimeoutError) a durable publish was not acknowledged in time
     │    └── JetStreamUnavailableError    … because the stream cannot store now (no leader, no quorum)
     ├── RequestTimeoutError (TimeoutError) nobody answered a request in time
     ├── NoRespondersError                 nobody listens on the request subject
     ├── RequestRefusedError               a responder answered a request with an error
     └── EmbeddedServerError               the embedded nats-server could not start or stop

Errors from nats-py and msgspec are wrapped where they enter citybus (``raise … from``), with a
message that says what to do.
"""

from __future__ import annotations

__all__ = [
    "CityBusError",
    "ConfigError",
    "ContractViolation",
    "EmbeddedServerError",
    "JetStreamUnavailableError",
    "MissingHeaderError",
    "NoRespondersError",
    "NotConnectedError",
    "PermissionDeniedError",
    "PublishTimeoutError",
    "RequestRefusedError",
    "RequestTimeoutError",
    "ServerUnavailableError",
    "UndecodableError",
]


class CityBusError(Exception):
    """Root of every error citybus raises on purpose."""


class ConfigError(CityBusError, ValueError):
    """A configuration value is wrong; the message names the key and what is allowed."""


class ContractViolation(CityBusError, ValueError):
    """A message does not fit its contract. ``reason`` is a short token for metrics and dead letters."""

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class MissingHeaderError(ContractViolation):
    """A required CloudEvents header is missing or malformed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="missing-header")


class UndecodableError(ContractViolation):
    """Bytes from outside that one of msgspec's decoders could not read (see :func:`bus.codec.decode_bytes`).

    ``kind`` says how: ``"syntax"`` (not JSON or msgpack, or a string that is not UTF-8), ``"shape"``
    (well formed, but not the type asked for; the message is msgspec's, with the path) or ``"depth"``
    (nested deeper than the interpreter can follow). The msgspec or Python error is ``__cause__``.
    """

    def __init__(self, message: str, *, kind: str, reason: str = "invalid-body") -> None:
        super().__init__(message, reason=reason)
        self.kind = kind


class NotConnectedError(CityBusError):
    """The bus is not connected to NATS."""


class ServerUnavailableError(NotConnectedError):
    """No NATS server answered at the configured URL."""


class PermissionDeniedError(CityBusError):
    """The broker refused a publish or subscription: the connection's user has no right to it."""


class PublishTimeoutError(CityBusError, TimeoutError):
    """JetStream did not acknowledge a durable publish before the deadline."""


class JetStreamUnavailableError(PublishTimeoutError):
    """A durable publish was not stored because its stream cannot store anything now: it has no
    leader, its leader has no quorum (too few of its replicas up), or JetStream does not answer.

    ``stream`` names it. The message says why and what to do; while it lasts, durable publishes to
    the stream fail within about a second instead of waiting out their timeout (:mod:`bus.availability`).
    """

    def __init__(self, message: str, *, stream: str) -> None:
        super().__init__(message)
        self.stream = stream


class RequestTimeoutError(CityBusError, TimeoutError):
    """A request got no reply before its timeout."""


class NoRespondersError(CityBusError):
    """A request went to a subject that nobody serves."""


class EmbeddedServerError(CityBusError):
    """The embedded nats-server could not be found, started or stopped."""


class RequestRefusedError(CityBusError):
    """A responder answered a request with an error (``Nats-Service-Error``): the request was wrong,
    or the responder failed. ``code`` is its ``Nats-Service-Error-Code`` (``400``: the request)."""

    def __init__(self, message: str, *, code: str, description: str) -> None:
        super().__init__(message)
        self.code = code
        self.description = description
