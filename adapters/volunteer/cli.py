"""``citybus volunteer offer|signup|roster``: the volunteer platform from the command line.

::

    citybus volunteer offer drammen-frivilligsentral beach-cleanup-sota-2026-06-06 \\
        --title "Beach clean-up at Sota fjordpark" --place "Sota fjordpark" \\
        --starts 2026-06-06T10:00 --ends 2026-06-06T13:00 --places 20
    citybus volunteer signup beach-cleanup-sota-2026-06-06 --volunteer v-3f9c2a7e51d0 \\
        --name "Kari Nordmann" --email kari.nordmann@example.no --consent volunteering,statistics
    citybus volunteer signup beach-cleanup-sota-2026-06-06 --volunteer v-3f9c2a7e51d0 --withdraw
    citybus volunteer roster drammen-frivilligsentral

``offer`` and ``roster`` log in as the organisation's own user (its name; ``--user`` chooses
another), ``signup`` as the platform's desk (``volunteer-desk``); ``--nats`` and ``--account`` as
for the other commands. A time without an offset is Drammen's (Europe/Oslo). What the platform
refuses is printed as one line, with exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import msgspec

from adapters.volunteer.access import DESK
from bus import Bus, Metrics
from bus.cli import add_login_options, err, login, out
from bus.config import Config
from bus.errors import CityBusError, NoRespondersError, RequestTimeoutError
from bus.logs import configure_logging
from contracts import (
    Contract,
    OpportunityOffer,
    OpportunityReceipt,
    Purpose,
    Roster,
    RosterRequest,
    SignupReceipt,
    SignupRequest,
)

__all__ = ["register"]

CITY_ZONE = ZoneInfo("Europe/Oslo")
CONSENT_TEXT = "drammen-volunteer-2026-12"
"""The version of the consent text ``signup`` says the volunteer read (``--consent-text``)."""

R = TypeVar("R", bound=Contract)


def _time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: write 2026-06-06T10:00 (Drammen's time)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=CITY_ZONE)


def _left(places: int) -> str:
    return f"{places} place left" if places == 1 else f"{places} places left"


def _list(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _ask(args: argparse.Namespace, config: Config, request: Contract, answer: type[R], user: str) -> R:
    who = login(args, config, default=user)

    async def ask() -> R:
        bus = Bus(metrics=Metrics(), logger=configure_logging(config.log.format, "warning"))
        await who.connect(bus, config)
        try:
            return (await bus.request(request, answer, timeout=args.timeout)).data
        except NoRespondersError:
            raise CityBusError(
                "no volunteer platform answers on this bus: start `citybus up` (it runs one by default), "
                "or an instance of the volunteer-platform adapter"
            ) from None
        except RequestTimeoutError:
            raise CityBusError(f"the volunteer platform did not answer within {args.timeout} s") from None
        finally:
            await bus.close()

    return asyncio.run(ask())


def _checked(kind: type[R], fields: dict[str, Any]) -> R:
    """The request, with the contract's own limits checked (a ``ValueError`` naming the field)."""
    try:
        return msgspec.convert(fields, kind, from_attributes=False)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None


def cmd_offer(args: argparse.Namespace, config: Config) -> int:
    """Offer (or change, or cancel) an opportunity as an organisation."""
    try:
        offer = _checked(
            OpportunityOffer,
            {
                "organisation": args.organisation,
                "opportunity_id": args.opportunity,
                "title": args.title,
                "description": args.description,
                "place": args.place,
                "starts": _time(args.starts),
                "ends": _time(args.ends),
                "skills": _list(args.skills),
                "places": args.places,
                "cancel": args.cancel,
            },
        )
    except ValueError as exc:
        err(f"citybus volunteer offer: {exc}")
        return 2
    receipt = _ask(args, config, offer, OpportunityReceipt, args.organisation)
    if not receipt.accepted:
        err(f"refused: {receipt.reason}")
        return 1
    what = "cancelled" if args.cancel else "offered"
    out(f"{what} {receipt.opportunity_id} ({receipt.organisation}): {_left(receipt.places_left)}")
    return 0


def cmd_signup(args: argparse.Namespace, config: Config) -> int:
    """Sign a volunteer up for an opportunity, change the sign-up, or withdraw it."""
    action = "withdraw" if args.withdraw else "change" if args.change else "signup"
    fields: dict[str, Any] = {
        "action": action,
        "volunteer_id": args.volunteer,
        "opportunity_id": args.opportunity,
        "name": args.name,
        "email": args.email,
        "phone": args.phone,
        "skills": _list(args.skills),
    }
    if action == "signup" or args.consent is not None:
        purposes = _list(args.consent if args.consent is not None else Purpose.VOLUNTEERING.value)
        fields["consent"] = {"purposes": purposes, "given_at": datetime.now(UTC), "text": args.consent_text}
    try:
        request = _checked(SignupRequest, fields)
    except ValueError as exc:
        err(f"citybus volunteer signup: {exc}")
        return 2
    receipt = _ask(args, config, request, SignupReceipt, DESK)
    line = f"{receipt.status}: {receipt.opportunity_id}, {_left(receipt.places_left)}"
    if receipt.status in ("full", "refused"):
        err(f"{line} ({receipt.reason})" if receipt.reason else line)
        return 1
    out(f"{line} ({receipt.reason})" if receipt.reason else line)
    return 0


def cmd_roster(args: argparse.Namespace, config: Config) -> int:
    """Print the volunteers signed up for an organisation's opportunities."""
    try:
        request = _checked(
            RosterRequest, {"organisation": args.organisation, "opportunity_id": args.opportunity}
        )
    except ValueError as exc:
        err(f"citybus volunteer roster: {exc}")
        return 2
    roster = _ask(args, config, request, Roster, args.organisation)
    if args.json:
        out(msgspec.json.encode(roster).decode())
        return 0
    if not roster.entries:
        which = args.opportunity or f"the opportunities of {roster.organisation}"
        out(f"nobody has signed up for {which} yet")
    for e in roster.entries:
        contact = ", ".join(c for c in (e.email, e.phone) if c)
        skills = f"  [{', '.join(e.skills)}]" if e.skills else ""
        when = e.signed_up_at.astimezone(CITY_ZONE).strftime("%Y-%m-%d %H:%M")
        out(f"{e.opportunity_id}  {e.name} <{contact}>  {e.volunteer_id}  signed up {when}{skills}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``volunteer`` to the ``citybus`` command."""
    parser = subparsers.add_parser(
        "volunteer",
        help="the volunteer platform: offer an opportunity, sign up, ask the roster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="volunteer_command", metavar="COMMAND", required=True)

    offer = sub.add_parser("offer", help="offer, change or cancel an opportunity (as the organisation)")
    offer.add_argument("organisation", metavar="ORGANISATION", help="the organisation's id")
    offer.add_argument("opportunity", metavar="OPPORTUNITY", help="the opportunity's id (kebab case)")
    offer.add_argument("--title", required=True, help="what it is, in a line")
    offer.add_argument("--description", default="", help="what volunteers will do, what to bring")
    offer.add_argument("--place", required=True, help="where, as people say it")
    offer.add_argument("--starts", required=True, metavar="TIME", help="when it starts")
    offer.add_argument("--ends", required=True, metavar="TIME", help="when it ends")
    offer.add_argument("--places", type=int, required=True, metavar="N", help="how many volunteers it takes")
    offer.add_argument("--skills", metavar="A,B", help="skills it asks for (comma-separated)")
    offer.add_argument("--cancel", action="store_true", help="cancel the opportunity")
    offer.set_defaults(func=cmd_offer)

    signup = sub.add_parser("signup", help="sign a volunteer up, change the sign-up, or withdraw it")
    signup.add_argument("opportunity", metavar="OPPORTUNITY", help="the opportunity's id")
    signup.add_argument("--volunteer", required=True, metavar="ID", help="the volunteer's id (v-<hex>)")
    signup.add_argument("--name", help="the volunteer's name (needed to sign up)")
    signup.add_argument("--email", help="an email address (this or --phone to sign up)")
    signup.add_argument("--phone", help="a phone number, +47…")
    signup.add_argument("--skills", metavar="A,B", help="what the volunteer can bring (comma-separated)")
    signup.add_argument(
        "--consent",
        metavar="PURPOSES",
        help="purposes consented to: volunteering (required) and statistics (default: volunteering)",
    )
    signup.add_argument(
        "--consent-text",
        default=CONSENT_TEXT,
        help=f"the consent text read (default {CONSENT_TEXT})",
    )
    what = signup.add_mutually_exclusive_group()
    what.add_argument("--change", action="store_true", help="change the sign-up (contact, skills, consent)")
    what.add_argument("--withdraw", action="store_true", help="withdraw the sign-up, freeing the place")
    signup.set_defaults(func=cmd_signup)

    roster = sub.add_parser("roster", help="who signed up for an organisation's opportunities")
    roster.add_argument("organisation", metavar="ORGANISATION", help="the organisation's id")
    roster.add_argument("--opportunity", metavar="ID", help="only this opportunity")
    roster.add_argument("--json", action="store_true", help="print the roster as JSON")
    roster.set_defaults(func=cmd_roster)

    for command, user in ((offer, "the organisation"), (signup, DESK), (roster, "the organisation")):
        command.add_argument(
            "--timeout", type=float, default=10.0, metavar="SECONDS", help="wait this long (default 10)"
        )
        add_login_options(command, default=user)
