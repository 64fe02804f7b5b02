"""The live web page at ``/``: a map of Drammen with what the bus says now, and its static files.

The page (``web/index.html``, ``web/app.js``, ``web/style.css``) is plain HTML, CSS and JavaScript
served as it is in the repository: it reads the gateway's own API (the entities of four contracts,
their history, the SSE stream) and draws them on a Leaflet map. ``web/journey.js`` asks the journey
route; ``web/stats.js`` shows the latest released table of each statistics data set
(``statistics.aggregate``), each script on its own. Leaflet is vendored under
``web/vendor/leaflet/`` from the npm registry's ``leaflet@1.9.4`` (its BSD licence beside it, the
provenance in ``web/vendor/README.md``).

Decisions, and why:

- **No build step, no CDN.** The machines citybus runs on may have no internet, and a pilot must be
  able to read the page's source as it runs: the files are package data, read once at start-up and
  served from memory. Only files that exist when the gateway starts can be served — a request path is a
  key in a dictionary, never joined to a directory — so there is no path traversal to defend against.
- **No tiles.** No tile server is reachable here; the map draws its places on a plain background, with
  the railway through the valley drawn from the train calls the page has seen (consecutive calls of one
  journey), a scale and the places themselves, which is enough to recognise Drammen.
- **Hand-written SVG sparklines, no chart library.** A panel shows one or two series of at most a few
  hundred points; a polyline with its minimum, maximum and last value says that in some forty lines of
  JavaScript, where uPlot or Chart.js would add a dependency to vendor, audit and upgrade.
- **Caching**: the page's own files are sent with ``Cache-Control: no-cache`` and a strong ETag, so a
  browser revalidates (a cheap 304) and a new citybus version is seen at once without content-hashed
  names (which would need a build step); vendored files change only when citybus upgrades them and are
  cached for a day. Text files are gzip-compressed once at start-up and sent compressed to clients that
  accept it (Leaflet is 147 kB, 43 kB compressed).
- **A strict Content-Security-Policy** on the page: scripts, styles, images and connections from the
  gateway itself only, no inline script. Values on the page come from the bus, so the page never
  parses them as HTML (``textContent`` only); the policy is the second line of defence.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

__all__ = ["WEB", "StaticFile", "load_files", "routes"]

WEB = Path(__file__).resolve().parent / "web"
"""The directory of the page's files, shipped as package data."""

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    "": "text/plain; charset=utf-8",  # LICENSE
}
_COMPRESSIBLE = (".html", ".js", ".css", ".map", ".md", ".svg", "")
_REVALIDATE = "no-cache"
_VENDORED = "public, max-age=86400"
_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True, slots=True)
class StaticFile:
    """One file of the page, held in memory with what its responses need."""

    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str
    cache_control: str


def load_files(directory: Path = WEB) -> dict[str, StaticFile]:
    """Every servable file under ``directory``, by its path relative to it (``vendor/leaflet/leaflet.js``).

    Raises :class:`FileNotFoundError` when the directory is missing (a broken installation) and
    :class:`ValueError` for a file of a type the page does not serve, so a file added without its
    content type fails at start-up rather than being sent as something a browser sniffs."""
    if not (directory / "index.html").is_file():
        raise FileNotFoundError(f"the web page's files are missing: no {directory / 'index.html'}")
    files: dict[str, StaticFile] = {}
    for path in sorted(directory.rglob("*")):
        if not path.is_file():
            continue
        name = path.relative_to(directory).as_posix()
        suffix = path.suffix.lower()
        content_type = _TYPES.get(suffix)
        if content_type is None:
            raise ValueError(f"web/{name}: no content type known for {suffix!r} files; add one to page.py")
        body = path.read_bytes()
        files[name] = StaticFile(
            body=body,
            gzipped=gzip.compress(body, mtime=0) if suffix in _COMPRESSIBLE else None,
            content_type=content_type,
            etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
            cache_control=_VENDORED if name.startswith("vendor/") else _REVALIDATE,
        )
    return files


def _respond(request: web.Request, file: StaticFile) -> web.Response:
    headers = {
        "Cache-Control": file.cache_control,
        "ETag": file.etag,
        "X-Content-Type-Options": "nosniff",
        "Vary": "Accept-Encoding",
    }
    if file.content_type.startswith("text/html"):
        headers["Content-Security-Policy"] = _POLICY
        headers["Referrer-Policy"] = "no-referrer"
    if file.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    body = file.body
    if file.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", ""):
        body = file.gzipped
        headers["Content-Encoding"] = "gzip"
    headers["Content-Type"] = file.content_type
    return web.Response(body=body, headers=headers)


def routes(app: web.Application, directory: Path = WEB) -> None:
    """Serve the page at ``GET /`` and its files at ``GET /static/<path>`` (``HEAD`` too)."""
    files = load_files(directory)
    page = files["index.html"]

    async def index(request: web.Request) -> web.Response:
        return _respond(request, page)

    async def static(request: web.Request) -> web.Response:
        file = files.get(request.match_info["path"])
        if file is None:
            raise web.HTTPNotFound(text=f"no such file of the web page: {request.path}")
        return _respond(request, file)

    app.router.add_get("/", index)
    app.router.add_get("/static/{path:.+}", static)
