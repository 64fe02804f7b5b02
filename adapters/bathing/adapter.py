"""The ``yr-bathing`` adapter: yr.no's bathing-water temperatures in, beach observations out.

yr.no (NRK and MET Norway) collects water temperatures at bathing places all over Norway, read by
hand and reported by people, or measured by sensors and passed on by platforms such as
Badevann.no. The adapter polls ``https://badetemperaturer.yr.no/api/watertemperatures`` (every
place's latest reading; :mod:`adapters.polling`), reads it (:mod:`~adapters.bathing.yr`), keeps the
places in the configured municipalities, maps each record
(:mod:`~adapters.bathing.observation`) and publishes one :class:`~contracts.BeachObservation` per
site and reading. It is the second source of that contract, next to the city's own Vicotee sensors
(``vicotee-beach``).

Configuration::

    [adapters.bathing]
    adapter = "yr-bathing"
    api_key = "…"                                    # sent as the `apikey` header; never logged
    municipalities = ["Drammen kommune"]             # the default; [] for the whole country
    sites = { "0-10014" = "storoyodden" }            # optional: yr location id → site slug

    [adapters.bathing.source]                        # optional; this is the default
    url = "https://badetemperaturer.yr.no/api/watertemperatures"
    interval = 1800                                  # the default; the table is merged over it

Dead-letter reasons: ``not-json`` and ``unexpected-shape`` for a document (or a record) that does
not parse, ``unnamed-site``, ``out-of-range``.

Decisions, and why:

* **The key is a field of its own**, not a header to write by hand, so it can be checked, masked in
  the config's ``repr`` and kept out of every log line; it is added to the request's headers only.
* **Municipalities** are compared without regard to case and to a trailing "kommune", so
  ``"Drammen"`` and ``"Drammen kommune"`` are the same. A record outside them is skipped, not
  dead-lettered: it is not an error, only another town's beach (the count is in a debug log). A
  place named in ``sites`` is read whatever its municipality: naming it says it is wanted.
* **Each (site, reading time) is published once**: :class:`~adapters.polling.LastSeen` keeps each
  site's last reading time, and the CloudEvents id is :func:`~adapters.polling.stable_id` of site
  and time, so a restarted adapter's repeat is dropped by JetStream's duplicate window. A rejected
  record is dead-lettered once per place, reading time and reason, not at every poll.
* **Provenance** says who measured (see :mod:`~adapters.bathing.observation`): ``manual`` without a
  ``sourceDisplayName``, ``vendor`` with one, whether the document came from the API or a file —
  unless ``source.provenance`` is configured (``synthetic`` for generated data must stay labelled).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from typing import Final

import msgspec

from adapters.base import Adapter
from adapters.bathing.observation import observation_from, provenance_of
from adapters.bathing.yr import Place, RecordError, YrRecord, decode_record, place_of, split_records
from adapters.changes import LastSeen, stable_id
from adapters.context import Context
from adapters.naming import check_slug
from adapters.polling import Document, Poller, SourceConfig, http_session
from bus import Provenance
from contracts import BeachObservation

__all__ = ["API_KEY_HEADER", "BathingConfig", "YR_URL", "YrBathing", "municipality_key"]

YR_URL: Final = "https://badetemperaturer.yr.no/api/watertemperatures"
"""Every bathing place's latest water temperature."""

API_KEY_HEADER: Final = "apikey"
"""The request header yr's API reads its key from."""

_KEY: Final = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII without spaces: a header value on one line


def _default_source() -> SourceConfig:
    return SourceConfig(url=YR_URL, interval=1800.0)


def municipality_key(name: str) -> str:
    """A municipality's name as compared: case and spaces folded, a trailing "kommune" dropped."""
    folded = " ".join(name.split()).casefold()
    return folded.removesuffix(" kommune").strip()


class BathingConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[adapters.<instance>]`` of the yr bathing-temperature adapter (see the module doc)."""

    source: SourceConfig = msgspec.field(default_factory=_default_source)
    """Where the document comes from; default :data:`YR_URL` every 1800 s."""
    api_key: str | None = None
    """yr's API key, sent as the ``apikey`` header; never logged, and masked in the ``repr``."""
    municipalities: list[str] = msgspec.field(default_factory=lambda: ["Drammen kommune"])
    """Only places in these municipalities (plus those named in :attr:`sites`); ``[]``: every place."""
    sites: dict[str, str] = msgspec.field(default_factory=dict)
    """Site slugs by yr location id; a place not named here is ``slug(locationName)``."""

    def __post_init__(self) -> None:
        if self.api_key is not None and not _KEY.match(self.api_key):
            raise ValueError("api_key must be the key alone: printable characters, no spaces or line breaks")
        if self.api_key is not None and any(h.lower() == API_KEY_HEADER for h in self.source.headers):
            raise ValueError("the key is given twice: as api_key and in source.headers; keep api_key")
        for name in self.municipalities:
            if not municipality_key(name):
                raise ValueError(
                    f"municipalities: {name!r} is not a municipality's name, e.g. 'Drammen kommune'"
                )
        for key, value in self.sites.items():
            if not key.strip():
                raise ValueError("sites: a key must be a yr location id, e.g. '0-10014'")
            check_slug(value, f"sites: {key!r} =")

    def __repr__(self) -> str:
        key = None if self.api_key is None else "***"  # the source's own repr masks its headers
        return (
            f"BathingConfig(source={self.source!r}, api_key={key!r}, "
            f"municipalities={self.municipalities!r}, sites={self.sites!r})"
        )

    def request_source(self) -> SourceConfig:
        """:attr:`source` with the key among its headers: what the poller fetches with."""
        if self.api_key is None:
            return self.source
        return msgspec.structs.replace(
            self.source, headers={**self.source.headers, API_KEY_HEADER: self.api_key}
        )


class YrBathing(Adapter[BathingConfig]):
    """yr.no's bathing-water temperatures (badetemperaturer.yr.no) in, beach observations out."""

    name = "yr-bathing"
    Config = BathingConfig
    produces = (BeachObservation,)

    def __init__(self, config: BathingConfig) -> None:
        super().__init__(config)
        self._municipalities = frozenset(municipality_key(m) for m in config.municipalities)
        self._published = LastSeen()
        self._rejected = LastSeen()

    async def run(self, ctx: Context) -> None:
        """Poll the source and publish what is new, until stopped."""
        source = self.config.request_source()
        if source.url is not None and not any(h.lower() == API_KEY_HEADER for h in source.headers):
            ctx.log.warning("no api_key configured: badetemperaturer.yr.no refuses requests without one")
        async with http_session(source) as session:
            poller = Poller(
                ctx,
                source,
                functools.partial(self._on_document, ctx),
                name="watertemperatures",
                session=session,
            )
            ctx.ready()
            await poller.run()

    def _wanted(self, place: Place) -> bool:
        if not self._municipalities or (
            place.location_id is not None and place.location_id in self.config.sites
        ):
            return True
        return place.municipality is not None and municipality_key(place.municipality) in self._municipalities

    def _provenance(self, record: YrRecord) -> Provenance:
        configured = self.config.source.provenance
        return Provenance(configured) if configured is not None else provenance_of(record)

    async def _on_document(self, ctx: Context, document: Document) -> None:
        outcomes: Counter[str] = Counter()
        for index, data in enumerate(split_records(document.body)):
            outcomes[await self._on_record(ctx, document, index, data)] += 1
        ctx.log.debug(
            "water temperatures handled",
            location=document.location,
            municipalities=self.config.municipalities,
            **outcomes,
        )

    async def _on_record(self, ctx: Context, document: Document, index: int, data: bytes) -> str:
        try:
            if not self._wanted(place_of(data, index)):
                return "skipped"  # another municipality's place: not an error
            record = decode_record(data, index)
        except RecordError as exc:
            await ctx.dead_letter(document.raw(data), reason=exc.reason, detail=str(exc))
            return "rejected"
        try:
            observation = observation_from(record, sites=self.config.sites)
        except RecordError as exc:
            if not self._rejected.changed(record.location_id, (record.time, exc.reason)):
                return "unchanged"
            await ctx.dead_letter(document.raw(data), reason=exc.reason, detail=str(exc))
            return "rejected"
        if not self._published.changed(observation.site, observation.observed_at):
            return "unchanged"
        await ctx.publish(
            observation,
            provenance=self._provenance(record),
            event_id=stable_id(self.name, observation.site, observation.observed_at.isoformat()),
            time=observation.observed_at,
        )
        return "published"
