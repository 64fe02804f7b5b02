"""Polled sources for source adapters: an HTTP endpoint or a file, fetched on an interval.

Most city data is published as a document that changes now and then — a GTFS zip, a SIRI
EstimatedTimetable, a JSON list of the latest readings — not as a stream. A source adapter declares
one :class:`SourceConfig` per document and runs a :class:`Poller` for it::

    class AirConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
        source: SourceConfig = msgspec.field(default_factory=lambda: SourceConfig(url=NILU_URL))

    async def run(self, ctx: Context) -> None:
        async with http_session(self.config.source) as session:
            poller = Poller(ctx, self.config.source, self._on_document, name="utd", session=session)
            ctx.ready()
            await poller.run()

    async def _on_document(self, ctx: Context, document: Document) -> None:
        records = parse(document.body)          # raises SourceFormatError with a reason
        ...

In the configuration the source is a table of its own::

    [adapters.air.source]
    url = "https://api.nilu.no/aq/utd?areas=Drammen"   # or: file = "recordings/utd.json"
    interval = 900            # seconds between polls
    timeout = 30              # seconds one fetch may take
    headers = { apikey = "…" }

What the poller promises the adapter and the operator:

* **A source is never a crash.** An unreachable host, a timeout, an HTTP error, a response larger
  than ``max_bytes`` or a missing file is logged (once when it starts failing, then every tenth
  try, and once when it recovers), counted in ``citybus_source_fetches_total{outcome=…}``, shown in
  ``citybus_source_up``, and retried with exponential backoff (with jitter, honouring
  ``Retry-After``).
* **A malformed document is dead-lettered**, not dropped: when the handler raises
  :class:`SourceFormatError`, the document goes to the dead letters with the reason (its first
  512 KiB if it is larger: a dead letter must fit in one NATS message), and the same bytes are not
  dead-lettered twice.
* **Only new documents reach the handler** (what an adapter makes of them is published only when it
  changed: :mod:`adapters.changes`). HTTP sources are polled conditionally
  (``If-None-Match``/``If-Modified-Since``); a body identical to the last one handled is skipped;
  a file is re-read only when its size or modification time changes. A response's ``Expires`` is
  honoured (MET Norway asks for it): the next poll waits until then if that is later than the
  interval.
* **Provenance follows the source:** ``vendor`` for an HTTP endpoint, ``recorded`` for a file
  (a recording of real data), unless ``provenance`` says otherwise.
* Time is ``ctx.clock``'s, so a poller runs on the sandbox's replayed time as well.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Annotated, ClassVar, Final, Literal
from urllib.parse import urlsplit

import aiohttp
import msgspec
from msgspec import Meta

from adapters.context import Context
from bus import Provenance, RawMessage
from bus.backoff import Backoff
from bus.bus import redact_url
from bus.errors import CityBusError

__all__ = [
    "DEFAULT_USER_AGENT",
    "Document",
    "FetchError",
    "Fetcher",
    "Poller",
    "SourceConfig",
    "SourceFormatError",
    "http_session",
]

DEFAULT_USER_AGENT: Final = "citybus/0.1 (Drammen smart-city message bus; python-aiohttp)"
"""Sent unless ``user_agent`` is configured. MET Norway asks for contact details in it: set
``user_agent = "citybus/0.1 you@example.org"`` for api.met.no and frost.met.no."""

DEAD_LETTER_LIMIT: Final = 512 * 1024
"""The most bytes of a malformed document kept in its dead letter (NATS's default message limit is
1 MiB, and a dead letter carries the bytes as base64)."""

_LONGEST_EXPIRES: Final = 86_400.0
_LOG_EVERY: Final = 10


class SourceConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where a polled document comes from and how often: an ``[adapters.<instance>.<source>]`` table.

    An adapter gives its source a default (the publisher's URL, a fitting interval); a table in
    the configuration is merged over it, so setting ``headers`` alone keeps the URL, and setting
    ``file`` replaces the default ``url`` (see :mod:`adapters.instances`).
    """

    __exclusive__: ClassVar[tuple[tuple[str, ...], ...]] = (("url", "file"),)

    url: str | None = None
    """An ``http://`` or ``https://`` URL to GET."""
    file: str | None = None
    """A file to read instead (relative to the working directory); re-read when it changes."""
    interval: Annotated[float, Meta(ge=0.01, le=7 * 86_400)] = 300.0
    """Seconds between polls."""
    timeout: Annotated[float, Meta(gt=0, le=3_600)] = 30.0
    """Seconds one fetch may take, from connecting to the last byte."""
    backoff_initial: Annotated[float, Meta(gt=0, le=3_600)] = 2.0
    """Seconds before the first retry after a failure; doubles with each failure in a row."""
    backoff_max: Annotated[float, Meta(gt=0, le=86_400)] = 300.0
    """The longest wait between retries."""
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    """Extra request headers (API keys, Entur's ``ET-Client-Name``). Never logged."""
    user_agent: str | None = None
    """The ``User-Agent``; default :data:`DEFAULT_USER_AGENT`."""
    max_bytes: Annotated[int, Meta(ge=1)] = 64 * 1024 * 1024
    """The largest document accepted; a larger one is refused as ``too-large``."""
    provenance: Literal["vendor", "recorded", "manual", "sensor", "synthetic"] | None = None
    """The provenance of what is published from it; default ``vendor`` for a URL, ``recorded`` for a file."""

    def __post_init__(self) -> None:
        if (self.url is None) == (self.file is None):
            raise ValueError("give exactly one of `url` (an http(s) URL to poll) or `file` (a path to read)")
        if self.url is not None:
            try:
                url = urlsplit(self.url)
                host = url.hostname
            except ValueError as exc:
                raise ValueError(f"`url` is not a valid URL: {exc}") from None
            if url.scheme not in ("http", "https") or not host:
                raise ValueError(
                    f"url {redact_url(self.url)!r} must be an http:// or https:// URL with a host"
                )
        if self.backoff_initial > self.backoff_max:
            raise ValueError(
                f"backoff_initial ({self.backoff_initial}) is longer than backoff_max ({self.backoff_max})"
            )

    def __repr__(self) -> str:
        # headers carry API keys and client ids: never let a log line or traceback show them
        shown = {f: getattr(self, f) for f in self.__struct_fields__ if f != "headers"}
        shown["url"] = self.location if self.url is not None else None
        masked = {name: "***" for name in self.headers}
        fields = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"SourceConfig({fields}, headers={masked!r})"

    @property
    def location(self) -> str:
        """The URL (credentials removed) or the file path, for logs and dead letters."""
        return redact_url(self.url) if self.url is not None else str(self.file)

    @property
    def origin(self) -> Provenance:
        """The provenance of messages made from this source's documents."""
        if self.provenance is not None:
            return Provenance(self.provenance)
        return Provenance.VENDOR if self.url is not None else Provenance.RECORDED


class SourceFormatError(CityBusError, ValueError):
    """A document or record that does not parse; ``reason`` is its dead-letter reason (kebab case)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class FetchError(CityBusError):
    """A fetch that failed; ``reason`` is the metric outcome, the message says what to check."""

    def __init__(self, message: str, *, reason: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Document:
    """One fetched version of a source's document."""

    body: bytes
    location: str
    """The URL (credentials removed) or file path it came from."""
    fetched_at: datetime
    content_type: str | None = None
    last_modified: datetime | None = None
    expires: datetime | None = None
    provenance: Provenance = Provenance.VENDOR

    def raw(self, data: bytes | None = None) -> RawMessage:
        """The document (or ``data``, one record of it) as a raw message, to dead-letter."""
        headers = {"x-citybus-source": self.location, "x-citybus-fetched-at": self.fetched_at.isoformat()}
        if self.content_type:
            headers["content-type"] = self.content_type
        return RawMessage(subject=self.location, data=self.body if data is None else data, headers=headers)


@asynccontextmanager
async def http_session(*configs: SourceConfig) -> AsyncIterator[aiohttp.ClientSession]:
    """One aiohttp session for an adapter's sources (connections are reused between polls)."""
    agent = next((c.user_agent for c in configs if c.user_agent), DEFAULT_USER_AGENT)
    async with aiohttp.ClientSession(headers={"User-Agent": agent}, auto_decompress=True) as session:
        yield session


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None


def _retry_after(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    when = _http_date(value)
    return max(0.0, (when - now).total_seconds()) if when is not None and when.tzinfo else None


_HINTS: Final = {
    400: "the source refused the request: check the query in `url`",
    401: "the source wants credentials: check the API key or client id in `headers`",
    403: "the source refused the credentials: check the API key or client id in `headers`",
    404: "nothing at that address: check `url`",
    410: "the endpoint is gone: check `url` against the source's current documentation",
    429: "the source is rate limiting: raise `interval`",
}


class Fetcher:
    """Fetches one source's document: conditionally over HTTP, or from a file when it changed."""

    def __init__(
        self,
        config: SourceConfig,
        *,
        session: aiohttp.ClientSession | None = None,
        now: Callable[[], datetime],
    ) -> None:
        if config.url is not None and session is None:
            raise ValueError("an HTTP source needs an aiohttp session (see http_session)")
        self.config = config
        self._session = session
        self._now = now
        self._etag: str | None = None
        self._last_modified: str | None = None
        self._file_stamp: tuple[int, int] | None = None

    async def fetch(self) -> Document | None:
        """The document if it changed since the last fetch, else ``None``; raises :class:`FetchError`."""
        if self.config.url is not None:
            return await self._get(self.config.url)
        return await self._read(Path(str(self.config.file)))

    async def _get(self, url: str) -> Document | None:
        assert self._session is not None
        config = self.config
        headers = dict(config.headers)
        if config.user_agent:
            headers["User-Agent"] = config.user_agent
        if self._etag:
            headers["If-None-Match"] = self._etag
        if self._last_modified:
            headers["If-Modified-Since"] = self._last_modified
        where = config.location
        try:
            # No redirects: aiohttp would carry the API key headers along to another host.
            async with self._session.get(
                url,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=config.timeout),
                allow_redirects=False,
            ) as response:
                if response.status == 304:
                    return None
                if 300 <= response.status < 400:
                    target = redact_url(response.headers.get("Location", "") or "(no Location)")
                    raise FetchError(
                        f"{where} redirects (HTTP {response.status}) to {target}: set `url` to where it "
                        "redirects, if that is the publisher's (the headers are not sent along)",
                        reason="redirect",
                    )
                if response.status != 200:
                    hint = _HINTS.get(response.status, "the source is failing; it is retried")
                    raise FetchError(
                        f"HTTP {response.status} {response.reason or ''} from {where}: {hint}".replace(
                            "  ", " "
                        ),
                        reason=f"http-{response.status}",
                        retry_after=_retry_after(response.headers.get("Retry-After"), self._now()),
                    )
                body = await self._read_body(response)
                self._etag = response.headers.get("ETag")
                self._last_modified = response.headers.get("Last-Modified")
                return Document(
                    body=body,
                    location=where,
                    fetched_at=self._now(),
                    content_type=response.headers.get("Content-Type"),
                    last_modified=_http_date(self._last_modified),
                    expires=_http_date(response.headers.get("Expires")),
                    provenance=config.origin,
                )
        except TimeoutError:
            raise FetchError(
                f"{where} did not answer within {config.timeout} s: is it up? (raise `timeout` if slow)",
                reason="timeout",
            ) from None
        except aiohttp.ClientPayloadError as exc:
            raise FetchError(f"{where} broke off the response: {exc}", reason="unreachable") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise FetchError(
                f"cannot reach {where}: {exc or type(exc).__name__} (check `url` and the network)",
                reason="unreachable",
            ) from None

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self.config.max_bytes
        length = response.content_length
        if length is not None and length > limit:
            raise FetchError(
                f"{self.config.location} sent {length} bytes, more than max_bytes = {limit}",
                reason="too-large",
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(256 * 1024):
            size += len(chunk)
            if size > limit:
                raise FetchError(
                    f"{self.config.location} sent more than max_bytes = {limit} bytes", reason="too-large"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def _read(self, path: Path) -> Document | None:
        try:
            stat = await asyncio.to_thread(path.stat)
        except FileNotFoundError:
            raise FetchError(
                f"file {path} does not exist: check `file` (relative paths start at {Path.cwd()})",
                reason="missing-file",
            ) from None
        except OSError as exc:
            raise FetchError(f"cannot read {path}: {exc.strerror or exc}", reason="unreadable") from None
        stamp = (stat.st_size, stat.st_mtime_ns)
        if stamp == self._file_stamp:
            return None
        if stat.st_size > self.config.max_bytes:
            raise FetchError(
                f"file {path} has {stat.st_size} bytes, more than max_bytes = {self.config.max_bytes}",
                reason="too-large",
            )
        try:
            body = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise FetchError(f"cannot read {path}: {exc.strerror or exc}", reason="unreadable") from None
        self._file_stamp = stamp
        return Document(body=body, location=str(path), fetched_at=self._now(), provenance=self.config.origin)


Handler = Callable[[Document], Awaitable[None]]


class Poller:
    """Fetches one source on its interval and hands each new document to ``handler``, forever.

    ``name`` labels the source in logs and metrics (``timetable``, ``realtime``, ``status`` …).
    The handler raises :class:`SourceFormatError` for a document it cannot parse; any other
    exception is a bug in the adapter and ends :meth:`run` (the supervisor restarts the adapter).
    """

    def __init__(
        self,
        ctx: Context,
        config: SourceConfig,
        handler: Handler,
        *,
        name: str = "source",
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._ctx = ctx
        self.config = config
        self.name = name
        self._handler = handler
        self._fetcher = Fetcher(config, session=session, now=ctx.clock.now)
        self._metrics = ctx.metrics.source(name)
        self._log = ctx.log.bind(source=name, location=config.location)
        # jitter: many instances polling one vendor do not retry in step
        self._backoff = Backoff(initial=config.backoff_initial, maximum=config.backoff_max, jitter=0.2)
        self._failures = 0
        self._last_digest: bytes | None = None
        self._malformed = False  # the last document handled was malformed
        self.documents = 0
        """Documents handed to the handler so far."""

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            delay = await self.poll()
            await self._ctx.clock.sleep(delay)

    async def poll(self) -> float:
        """Fetch once and handle what came; returns how many seconds to wait before the next poll."""
        try:
            document = await self._fetcher.fetch()
        except FetchError as exc:
            return self._failed(exc.reason, str(exc), exc.retry_after)
        if document is None:
            return self._succeeded("not-modified", None)
        digest = hashlib.sha256(document.body).digest()
        if digest == self._last_digest:
            return self._succeeded("unchanged", document)
        self._last_digest = digest
        try:
            await self._handler(document)
        except SourceFormatError as exc:
            self._malformed = True
            await self._dead_letter(document, exc)
            return self._failed("malformed", f"{document.location} is malformed: {exc}", None)
        self._malformed = False
        self.documents += 1
        return self._succeeded("ok", document)

    def _succeeded(self, outcome: str, document: Document | None) -> float:
        self._metrics.fetched(outcome)
        if self._malformed:  # the source answers, but still with the malformed document
            return self.config.interval
        self._metrics.up.set(1)
        self._metrics.last_success.set(self._ctx.clock.now().timestamp())
        if self._failures:
            self._log.info("source recovered", failures=self._failures)
            self._failures = 0
        delay = self.config.interval
        if document is not None and document.expires is not None and document.expires.tzinfo is not None:
            until = (document.expires - self._ctx.clock.now()).total_seconds()
            delay = max(delay, min(until, _LONGEST_EXPIRES))
        return delay

    def _failed(self, outcome: str, message: str, retry_after: float | None) -> float:
        self._metrics.fetched(outcome)
        self._metrics.up.set(0)
        self._failures += 1
        if self._failures == 1 or self._failures % _LOG_EVERY == 0:
            self._log.warning("source failed", outcome=outcome, error=message, failures=self._failures)
        config = self.config
        backoff = self._backoff.delay(self._failures)
        # a server asking for more than a day (or than our own longest wait) is not taken at its word
        wait = min(retry_after, max(config.backoff_max, config.interval)) if retry_after else 0.0
        return max(backoff, wait)

    async def _dead_letter(self, document: Document, exc: SourceFormatError) -> None:
        body = document.body
        detail = str(exc)
        if len(body) > DEAD_LETTER_LIMIT:
            detail += f" (the dead letter keeps the first {DEAD_LETTER_LIMIT} of {len(body)} bytes)"
            body = body[:DEAD_LETTER_LIMIT]
        await self._ctx.dead_letter(document.raw(body), reason=exc.reason, detail=detail)
