"""``citybus journey FROM TO``: ask the running journey planner the best way, over the bus.

::

    citybus journey drammen "Oslo S" --depart 2018-08-28T08:00
    citybus journey NSR:StopPlace:11 59.7446,10.2046 --arrive-by 2018-08-28T09:30 --json
    citybus journey drammen "Oslo S" --depart 2018-08-28T08:00 --max-walk 0 --no-bikes --change 120

FROM and TO are a stop place id, a stop name (matched forgivingly) or ``LAT,LON``. A time without
an offset is Drammen's local time (Europe/Oslo); ``HH:MM`` is today. The command connects as the
``public`` user of the running ``citybus up`` (``--user``, ``--nats`` and ``--account`` as for the
other commands) and prints the journeys, fastest first; with ``--json`` the plan as the planner sent
it. A request that cannot be planned prints the planner's one line and exits with 1.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from bus import Bus, Metrics
from bus.cli import add_login_options, err, login, out
from bus.config import Config
from bus.errors import CityBusError, NoRespondersError, RequestTimeoutError
from bus.logs import configure_logging
from contracts import Journey, JourneyLeg, JourneyPlan, JourneyRequest

__all__ = ["format_plan", "parse_time", "register"]

CITY_ZONE = ZoneInfo("Europe/Oslo")
"""The zone a time without an offset is read in: Drammen's."""


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """A time as a traveller types it: ISO 8601 (with or without an offset; without, Drammen's
    local time) or ``HH:MM`` (today, locally). ``ValueError`` with what to type if it is neither."""
    text = text.strip()
    try:
        if len(text) <= 5 and ":" in text:
            clock = time.fromisoformat(text.zfill(5))
            today = (now or datetime.now(CITY_ZONE)).astimezone(CITY_ZONE).date()
            return datetime.combine(today, clock, tzinfo=CITY_ZONE)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: write 2018-08-28T08:00 (Drammen's time), "
            "2018-08-28T08:00+02:00 or 08:00"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=CITY_ZONE)


def _clock(moment: datetime) -> str:
    return moment.astimezone(CITY_ZONE).strftime("%H:%M")


def _leg(leg: JourneyLeg) -> str:
    if leg.mode in ("walk", "bike"):
        what = f"{'walk' if leg.mode == 'walk' else 'city bike'} {leg.distance or 0:.0f} m"
    else:
        toward = f" towards {leg.headsign}" if leg.headsign else ""
        what = f"{leg.mode} {leg.line or ''}{toward}".replace("  ", " ")
    known: str = leg.known
    delay = leg.delay_seconds
    if delay:
        known += f", {round(delay / 60):+d} min" if abs(delay) >= 60 else f", {delay:+d} s"
    return (
        f"    {_clock(leg.departure)}–{_clock(leg.arrival)}  {what}: "
        f"{leg.origin.name} → {leg.destination.name}  ({known})"
    )


def _journey(number: int, journey: Journey) -> list[str]:
    changes = {0: "no changes", 1: "1 change"}.get(journey.changes, f"{journey.changes} changes")
    minutes = journey.duration // 60
    head = f"{number}. {_clock(journey.departure)} → {_clock(journey.arrival)}  ({minutes} min, {changes})"
    return [head, *(_leg(leg) for leg in journey.legs)]


def format_plan(plan: JourneyPlan) -> list[str]:
    """The lines ``citybus journey`` prints for a plan that has journeys."""
    lines = [plan.message, ""]
    for number, journey in enumerate(plan.journeys, 1):
        lines += _journey(number, journey)
    return lines


def cmd_journey(args: argparse.Namespace, config: Config) -> int:
    """Ask the journey planner and print its answer."""
    try:
        depart = None if args.depart is None else parse_time(args.depart)
        arrive_by = None if args.arrive_by is None else parse_time(args.arrive_by)
        request = JourneyRequest(
            request_id=secrets.token_hex(8),
            origin=args.origin,
            destination=args.destination,
            depart=depart,
            arrive_by=arrive_by,
            max_walk=args.max_walk,
            bikes=not args.no_bikes,
            change=args.change,
            max_changes=args.max_changes,
        )
        msgspec.convert(msgspec.to_builtins(request), type=JourneyRequest)  # the contract's limits
    except (ValueError, msgspec.ValidationError) as exc:
        err(f"citybus journey: {exc}")
        return 2
    who = login(args, config, default="public")

    async def ask() -> JourneyPlan:
        bus = Bus(metrics=Metrics(), logger=configure_logging(config.log.format, "warning"))
        await who.connect(bus, config)
        try:
            return (await bus.request(request, JourneyPlan, timeout=args.timeout)).data
        except NoRespondersError:
            raise CityBusError(
                "no journey planner answers on this bus: start `citybus up` (it runs one by default), "
                "or an instance of the journey-planner adapter"
            ) from None
        except RequestTimeoutError:
            raise CityBusError(
                f"the journey planner did not answer within {args.timeout} s: is it still loading its "
                "timetable? (`citybus status`)"
            ) from None
        finally:
            await bus.close()

    plan = asyncio.run(ask())
    if args.json:
        out(msgspec.json.encode(plan).decode())
    elif plan.status == "ok":
        for line in format_plan(plan):
            out(line)
    if plan.status != "ok":
        err(plan.message)
        return 1
    return 0


def register(subparsers: Any) -> None:
    """Add ``journey`` to the ``citybus`` command."""
    parser = subparsers.add_parser(
        "journey",
        help="the best way from A to B: trains (with live delays), walking and city bikes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("origin", metavar="FROM", help="a stop place id, a stop name or LAT,LON")
    parser.add_argument("destination", metavar="TO", help="a stop place id, a stop name or LAT,LON")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--depart", metavar="TIME", help="leave at or after TIME (default: now)")
    when.add_argument("--arrive-by", metavar="TIME", help="arrive at or before TIME")
    parser.add_argument(
        "--max-walk",
        type=int,
        default=1000,
        metavar="METRES",
        help="longest walk of a leg (default 1000; 0: none)",
    )
    parser.add_argument("--no-bikes", action="store_true", help="no city bikes")
    parser.add_argument(
        "--change", type=int, default=120, metavar="SECONDS", help="least time to change trips (default 120)"
    )
    parser.add_argument("--max-changes", type=int, default=6, metavar="N", help="most changes (default 6)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="wait this long (default 10)"
    )
    add_login_options(parser, default="public")
    parser.set_defaults(func=cmd_journey)
