"""From one yr.no water-temperature record to one :class:`~contracts.BeachObservation`: the mapping.

Pure functions, no I/O. Decisions, and why:

* **site** is ``sites[locationId]`` when configured, else the slug of ``locationName``
  (``Årvolldammen`` → ``arvolldammen``). yr's location id is stable while names are spelled in
  several ways, so a site the city already knows by another slug (``bragernes-strand`` from the
  Vicotee sensors) is mapped by id, and the two sources then share the site's subject. A name
  that makes no identifier is dead-lettered as ``unnamed-site``.
* **source** is ``sourceDisplayName`` (``Badevann.no``) when yr names the platform a reading came
  through, else ``yr.no``: a reading someone made by hand and reported to yr came through yr.
* **Provenance** follows the same field, whatever the URL or file it was read from: without
  ``sourceDisplayName`` a person measured it (``manual``); with it, a platform's sensor did and a
  vendor passed it on (``vendor``). As on Oslo's platform, manual and sensor readings coexist on
  the contract — the ``vicotee-beach`` adapter publishes its own sensors' readings as ``sensor``.
* **device** is absent: yr does not say which sensor measured, and the contract reserves the
  field for that.
* **location** is the record's ``position``; absent when yr gives none.
* A temperature (or position) the contract does not allow is dead-lettered as ``out-of-range``;
  a slip of the thumb of 136 °C for 13.6 °C must not reach a citizen deciding where to swim.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from adapters.bathing.yr import RecordError, YrRecord
from adapters.naming import slug
from bus import Provenance
from contracts import BeachObservation, validate
from contracts.fields import GeoPoint

__all__ = ["YR", "observation_from", "provenance_of", "reporter_of"]

YR: Final = "yr.no"
"""The ``source`` of a reading reported to yr by hand."""


def reporter_of(record: YrRecord) -> str | None:
    """The platform that reported a sensor reading (``sourceDisplayName``), or ``None`` for a manual one."""
    name = (record.source_display_name or "").strip()
    return name or None


def provenance_of(record: YrRecord) -> Provenance:
    """``vendor`` for a reading a platform passed on to yr, ``manual`` for one a person reported."""
    return Provenance.MANUAL if reporter_of(record) is None else Provenance.VENDOR


def observation_from(record: YrRecord, *, sites: Mapping[str, str]) -> BeachObservation:
    """The observation one record makes; raises :class:`~adapters.bathing.yr.RecordError` if none.

    ``sites`` maps a yr location id to the site's slug.
    """
    label = f"{record.location_name} ({record.location_id}) at {record.time.isoformat()}"
    site = sites.get(record.location_id) or slug(record.location_name)
    if not site:
        raise RecordError(
            f"{label}: the location name makes no identifier; map {record.location_id!r} in `sites`",
            reason="unnamed-site",
        )
    position = record.position
    observation = BeachObservation(
        site=site,
        observed_at=record.time,
        water_temperature=record.temperature,
        location=None if position is None else GeoPoint.at(position.lat, position.lon),
        source=reporter_of(record) or YR,
    )
    try:  # the constructor checked no constraint
        return validate(observation)
    except msgspec.ValidationError as exc:
        raise RecordError(
            f"{label}: a value the contract does not allow: {exc}", reason="out-of-range"
        ) from None
