"""A real local HTTP server for source-adapter tests: it serves files (or bytes) the way a city data
publisher would, and can be told to fail.

::

    async with FileServer() as server:
        server.serve("/aq/utd", SOURCES / "air" / "utd.json", content_type="application/json")
        server.fail("/aq/utd", status=503, times=2)     # the next two requests get 503
        url = server.url("/aq/utd")

Every response carries ``Last-Modified`` (the time the route was last set) and an ``ETag`` and
answers a matching conditional request with ``304``, as real publishers do; ``requests`` counts
what each path was asked for.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from aiohttp import web

__all__ = ["FileServer", "SOURCES"]

SOURCES = Path(__file__).resolve().parent.parent / "sandbox" / "data" / "sources"
"""The real source files shipped with the project (see ``sandbox/data/sources/README.md``)."""


@dataclass
class _Route:
    body: bytes
    content_type: str
    modified: datetime
    headers: dict[str, str] = field(default_factory=dict)
    failures: list[int] = field(default_factory=list)
    hang: float = 0.0


class FileServer:
    """An aiohttp server on 127.0.0.1 and a free port, serving what the test tells it to."""

    def __init__(self) -> None:
        self._routes: dict[str, _Route] = {}
        self.requests: Counter[str] = Counter()
        self.request_headers: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._closing = asyncio.Event()
        self._redirects: dict[str, str] = {}

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str) -> str:
        """The URL of ``path`` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(
        self,
        path: str,
        body: bytes | Path,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> str:
        """Serve ``body`` (bytes, or a file's bytes) at ``path`` from now on; returns its URL."""
        data = body.read_bytes() if isinstance(body, Path) else body
        old = self._routes.get(path)
        self._routes[path] = _Route(
            body=data,
            content_type=content_type,
            modified=datetime.now(UTC).replace(microsecond=0),
            headers=dict(headers or {}),
            failures=old.failures if old else [],
        )
        return self.url(path)

    def redirect(self, path: str, to: str) -> str:
        """Answer ``path`` with a 302 to ``to`` (another host, say); returns the URL of ``path``."""
        self._redirects[path] = to
        return self.url(path)

    def fail(self, path: str, *, status: int, times: int = 1) -> None:
        """Answer the next ``times`` requests for ``path`` with ``status``."""
        self._routes[path].failures.extend([status] * times)

    def hang(self, path: str, seconds: float) -> None:
        """Wait ``seconds`` before answering requests for ``path`` (0 to stop)."""
        self._routes[path].hang = seconds

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.requests[path] += 1
        self.request_headers.append(dict(request.headers))
        if path in self._redirects:
            raise web.HTTPFound(self._redirects[path])
        route = self._routes.get(path)
        if route is None:
            return web.Response(status=404, text="not found")
        if route.hang:
            try:  # until the test stops the server, so its clean-up does not wait for the hang
                await asyncio.wait_for(self._closing.wait(), route.hang)
            except TimeoutError:
                pass
        if route.failures:
            return web.Response(
                status=route.failures.pop(0), text="failing on purpose", headers=route.headers
            )
        etag = '"' + hashlib.sha256(route.body).hexdigest()[:16] + '"'
        last_modified = format_datetime(route.modified, usegmt=True)
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304)
        headers = {"ETag": etag, "Last-Modified": last_modified, **route.headers}
        return web.Response(body=route.body, content_type=route.content_type.split(";")[0], headers=headers)
