"""The ``gateway`` adapter: serves the city's data over HTTP and SSE, and the live web page.

``citybus up`` runs it by default next to the sandbox (instance ``gateway``, in the ``SANDBOX``
account, on ``http://127.0.0.1:8080``); in production, municipal IT names it in ``citybus.toml``::

    [adapters.gateway]
    adapter = "gateway"
    host = "0.0.0.0"      # behind a reverse proxy with TLS
    port = 8080

Decisions, and why:

* **An adapter, not part of the ops server.** The ops port answers operators and Prometheus and
  must stay small and unauthenticated; the gateway answers the public and holders of tokens, reads
  the bus as their NATS users, and is started, supervised and restarted like any adapter
  (DESIGN.md: services and the gateway live in ``adapters/``).
* **It reads nothing as itself.** It declares no contracts, so its own NATS user may read nothing;
  every read goes through the feed of the caller's user (``ctx.connect_as``, :mod:`feeds`).
* **Ready once it listens and the public feed has its last values**, so the first request of a
  fresh ``citybus up`` already finds the city's entities.
"""

from __future__ import annotations

import contextlib
import resource
from typing import Any, ClassVar

from aiohttp import web

from adapters.base import Adapter
from adapters.context import Context
from adapters.gateway.app import GatewayState, build_app
from adapters.gateway.config import GatewayConfig
from adapters.gateway.feeds import Feeds
from adapters.gateway.metrics import gateway_metrics
from adapters.gateway.who import TokenResolver
from bus.access import TokenStore
from bus.errors import ConfigError
from contracts import default_registry

__all__ = ["Gateway"]


class Gateway(Adapter[GatewayConfig]):
    """The city's data for people who do not speak NATS: a catalogue, last values, history and
    live updates over HTTP and Server-Sent Events, a read-only NGSI-LD view, and a live map."""

    name = "gateway"
    Config = GatewayConfig
    default_instance = "gateway"
    default_section: ClassVar[dict[str, Any]] = {"account": "sandbox", "clock": "wall"}
    acts_for = True

    def __init__(self, config: GatewayConfig) -> None:
        super().__init__(config)
        self.url = ""
        """Where it serves (``http://127.0.0.1:8080``), once it listens."""
        self.state: GatewayState | None = None
        """Its handlers' shared state, while it runs (tests and benchmarks look inside)."""

    async def run(self, ctx: Context) -> None:
        """Serve until stopped: listen, start the public feed, say ready."""
        config = self.config
        registry = default_registry()
        metrics = gateway_metrics(ctx.registry)
        feeds = Feeds(ctx.connect_as, registry, config, metrics=metrics, logger=ctx.log)
        state = GatewayState(
            config=config,
            registry=registry,
            feeds=feeds,
            metrics=metrics,
            log=ctx.log,
            account=ctx.account,
            tokens=self.tokens(ctx),
            max_clients=_client_limit(config.max_clients, ctx),
        )
        # handler_cancellation: a client that leaves cancels its handler at once, so an SSE
        # stream's listener is freed then, not at its next write.
        runner = web.AppRunner(
            build_app(state), access_log=None, handle_signals=False, handler_cancellation=True
        )
        await runner.setup()
        try:
            port = await _listen(runner, config, ctx)
            self.url = state.base_url = f"http://{config.host}:{port}"
            self.state = state
            await feeds.of("public")
            ctx.log.info("gateway serving", url=state.base_url, account=ctx.account)
            ctx.announce("web", f"{state.base_url}/  (catalogue {state.base_url}/catalogue)")
            ctx.ready()
            await ctx.wait_stopped()
        finally:
            await runner.cleanup()
            await feeds.close()

    def tokens(self, ctx: Context) -> TokenResolver | None:
        """The bearer tokens it accepts: ``tokens.toml`` in the credentials directory, where
        ``citybus auth add-token`` writes them; none without access control.

        The store reads the file again whenever it changes (:mod:`bus.access.tokens`), so a token
        ``citybus auth`` issues or revokes while the gateway runs counts from the next request.
        """
        if ctx.credentials is None:
            return None
        return TokenStore(ctx.credentials)


DEFAULT_PORT = 8080

_RESERVED_FILES = 256
"""Open files kept for everything but SSE clients (NATS connections, logs, ordinary requests)."""


def open_files() -> int:
    """The number of files this process may open, raised to the hard limit first: every SSE client
    holds a socket, and a common default (1024) is far below ``max_clients``. A process out of file
    descriptors cannot accept, and its accept loop logs an error per attempt: everything it serves
    stops, the ops port included."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    return int(soft)


def _client_limit(configured: int, ctx: Context) -> int:
    """``max_clients``, or what the open-file limit leaves room for (said in the log)."""
    room = max(1, open_files() - _RESERVED_FILES)
    if configured > room:
        ctx.log.warning(
            "fewer SSE clients than max_clients: the process may not open more files",
            max_clients=configured,
            serving=room,
            fix="raise the open-file limit (ulimit -n, LimitNOFILE=)",
        )
        return room
    return configured


async def _listen(runner: web.AppRunner, config: GatewayConfig, ctx: Context) -> int:
    """Listen where configured (see :attr:`GatewayConfig.port`); return the port."""
    port = DEFAULT_PORT if config.port is None else config.port
    try:
        await web.TCPSite(runner, config.host, port, reuse_address=True).start()
    except OSError as exc:
        if config.port is not None:
            raise ConfigError(
                f"the gateway cannot listen on {config.host}:{port} ({exc.strerror}): "
                f"set another port in [adapters.{ctx.instance}] port = … (0: a free one)"
            ) from None
        ctx.log.warning("gateway port taken, serving on a free one", port=port, reason=exc.strerror)
        await web.TCPSite(runner, config.host, 0, reuse_address=True).start()
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return port
