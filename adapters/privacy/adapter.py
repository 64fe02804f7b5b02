"""The ``privacy`` adapter: a person's rights over their data, answered on the bus, and retention kept.

``citybus up`` runs it by default (instance ``privacy``, beside the other default instances in the
``SANDBOX`` account); in production municipal IT runs it in ``CITY``::

    [adapters.privacy]
    adapter = "privacy"
    sweep_interval = 3600        # seconds between retention sweeps

It answers :class:`~contracts.PersonalExportRequest` with a :class:`~contracts.PersonalExport` and
:class:`~contracts.ErasureRequest` with an :class:`~contracts.ErasureReceipt` (the engine is
:mod:`bus.personal.rights`, over every place of :func:`bus.personal.rights.places`), and erases
what outlived its contract's retention every ``sweep_interval`` seconds, starting when it starts.
Each erasure publishes an internal :class:`~contracts.ErasureRecord` naming no person.

Metrics: ``citybus_personal_erased_total{place, reason}``,
``citybus_personal_erasure_last_timestamp_seconds{reason}``, ``citybus_personal_export_total``
and ``citybus_personal_erasure_incomplete_total{reason}``. Erasures are counted from their records
(it follows :class:`~contracts.ErasureRecord`), so one run by ``citybus personal erase`` while it
runs counts too; a sweep sets its timestamp whether or not anything had expired.

Decisions, and why:

* **Its own broker rights** (``privacy = True``): it reads every personal stream by sequence, and
  it alone may erase their messages and destroy keys in the vault (:mod:`bus.access.personal`).
* **One erasure at a time.** Requests and sweeps take turns, so a receipt counts what that erasure
  did, not what a sweep running beside it removed.
* **A request that cannot be served fully is still answered**: an export or receipt with
  ``complete = False`` and what failed, never a refusal that leaves the asker guessing.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

import msgspec

from adapters.base import Adapter
from adapters.context import Context
from adapters.privacy.metrics import privacy_metrics
from bus import Event
from bus.personal import rights
from contracts import ErasureReceipt, ErasureRecord, ErasureRequest, PersonalExport, PersonalExportRequest

__all__ = ["PrivacyConfig", "PrivacyService", "fitting"]


class PrivacyConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[adapters.<instance>]`` of ``privacy``."""

    sweep_interval: Annotated[float, msgspec.Meta(gt=0)] = 3600.0
    """Seconds between two retention sweeps (the first runs at start)."""


def fitting(export: PersonalExport, limit: int) -> PersonalExport:
    """``export`` as one reply can carry it: whole if it fits in ``limit`` bytes (the server's
    largest message), else as many messages as fit, ``complete = False`` and a note saying how to
    get the whole of it (the command line has no such limit)."""
    size = len(msgspec.json.encode(export))
    if size <= limit:
        return export
    note = (
        f"the export is {size} bytes, more than one message on this bus carries ({limit}): the first "
        f"messages only; `citybus personal export {export.person}` writes the whole of it"
    )
    kept = list(export.messages)
    while kept:
        kept = kept[: len(kept) * 3 // 4]
        cut = msgspec.structs.replace(
            export, messages=tuple(kept), complete=False, notes=(*export.notes, note)
        )
        if len(msgspec.json.encode(cut)) <= limit:
            return cut
    return msgspec.structs.replace(export, messages=(), complete=False, notes=(*export.notes, note))


class PrivacyService(Adapter[PrivacyConfig]):
    """Exports and erases a person's data on request, and erases what outlived its retention."""

    name = "privacy"
    Config = PrivacyConfig
    consumes = (ErasureRecord,)
    produces = (PersonalExport, ErasureReceipt, ErasureRecord)
    answers = (PersonalExportRequest, ErasureRequest)
    privacy = True
    default_instance = "privacy"
    default_section: ClassVar[dict[str, Any]] = {"account": "sandbox", "clock": "wall"}

    async def run(self, ctx: Context) -> None:
        """Serve the requests and sweep, until stopped."""
        bus, config = ctx.personal_data()
        metrics = privacy_metrics(ctx.registry)
        places, problems = rights.places(config, bus)
        for problem in problems:
            ctx.log.error("personal data place not loaded", problem=problem)
        turn = asyncio.Lock()

        async def on_record(event: Event[ErasureRecord]) -> None:
            record = event.data  # its own, and those of `citybus personal erase` run by hand
            metrics.erasure(record.reason, record.places, record.complete, record.erased_at.timestamp())

        async def on_export(event: Event[PersonalExportRequest]) -> PersonalExport:
            asked = event.data
            async with turn:
                export = await rights.export(bus, places, asked.person, asked.identifiers, asked.case)
            metrics.exports.inc()
            ctx.log.info("personal data exported", messages=len(export.messages))
            return fitting(export, bus.nc.max_payload)

        async def on_erase(event: Event[ErasureRequest]) -> ErasureReceipt:
            asked = event.data
            async with turn:
                receipt = await rights.erase(bus, places, asked.person, asked.identifiers, asked.case)
            erased = sum(p.erased for p in receipt.places)
            ctx.log.info("personal data erased", erased=erased, complete=receipt.complete)
            return receipt

        await ctx.subscribe(ErasureRecord, on_record)
        await ctx.serve(PersonalExportRequest, on_export)
        await ctx.serve(ErasureRequest, on_erase)
        ctx.ready()
        while True:
            async with turn:
                lines, complete = await rights.expire(bus, places, datetime.now(UTC))
            metrics.swept(complete)
            if lines:
                ctx.log.info("retention sweep", erased=sum(p.erased for p in lines), complete=complete)
            await asyncio.sleep(self.config.sweep_interval)
