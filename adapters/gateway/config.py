"""The gateway's settings: its ``[adapters.<instance>]`` section (``adapter = "gateway"``)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

__all__ = ["GatewayConfig"]


class GatewayConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where the gateway listens and how much it keeps for its callers.

    ::

        [adapters.gateway]
        adapter = "gateway"
        port = 8080           # unset: 8080, or a free port if 8080 is taken
        history = 3600.0      # seconds of recent values kept per entity
    """

    host: str = "127.0.0.1"
    """The address it listens on (loopback by default: put a reverse proxy with TLS in front)."""
    port: Annotated[int, Meta(ge=0, le=65535)] | None = None
    """Its HTTP port; 0: a free one. Unset: 8080, or a free port when 8080 is taken (said in the log
    and in what ``citybus up`` prints), so that a second ``citybus up`` or a busy machine still
    gets its page; a port set here that is taken is an error."""
    history: Annotated[float, Meta(ge=0)] = 3600.0
    """Seconds of recent values kept per entity for ``…/history`` and the page's charts."""
    history_max: Annotated[int, Meta(ge=1, le=100_000)] = 240
    """At most this many recent values per entity, whatever ``history`` says."""
    queue: Annotated[int, Meta(ge=1, le=1_000_000)] = 256
    """Messages waiting for one SSE client; a client further behind is dropped as too slow."""
    heartbeat: Annotated[float, Meta(gt=0)] = 15.0
    """Seconds between heartbeats on an idle SSE stream."""
    max_clients: Annotated[int, Meta(ge=1)] = 5000
    """SSE clients at once; more are told to retry later (503)."""
    catch_up: Annotated[int, Meta(ge=0)] = 10_000
    """At most this many stored messages replayed to an SSE client resuming with Last-Event-ID."""
    journey_timeout: Annotated[float, Meta(gt=0, le=60)] = 5.0
    """Seconds to wait for the journey planner's answer (``/api/v1/journey``); then a 503."""
    public_url: str = ""
    """How the gateway is reached from outside (``https://data.drammen.no``): the base of every link
    it hands out (the catalogue's IRIs and access URLs, the NGSI-LD ``@context``). Empty: the address
    the caller used (its ``Host`` header), so links work however it is reached; set it behind a
    reverse proxy that terminates TLS, so links say ``https`` and stay the same whoever asks."""
