"""Generated volunteer-platform traffic of the day: opportunities at Drammen's beaches, and sign-ups
of generated people.

Drammen's volunteer platform did not exist in 2018, so all of this is generated (provenance
``synthetic``), around real places: four opportunities for the weekend after the day, at bathing
sites of :data:`~adapters.vicotee.SITES` (their points, approximate ones marked as such), offered
in the morning by two invented organisations (``demo-…``: no real organisation's name), and
through the day the sign-ups of ten generated volunteers (:mod:`sandbox.people`: names,
``example.invalid`` addresses and drama-range phone numbers that are no one's).

What the platform publishes for each, as its contracts say (:mod:`contracts.community`):

* an offer publishes the :class:`~contracts.Opportunity` (public), and every sign-up or withdrawal
  publishes it again with the places left;
* a confirmed sign-up, a change and a withdrawal each publish a
  :class:`~contracts.community.VolunteerSignup` (personal), and — only for a volunteer who
  consented to the ``statistics`` purpose — a :class:`~contracts.community.VolunteerActivity`.

Decisions, and why:

* **Built as messages, not by running the platform.** The rest of the day is what the source
  adapters publish when they read the day's inputs; the volunteer platform is a service answering
  requests, with no input file to replay, so its messages are made here directly from the
  contracts (and checked against them by the builder like every other message). Their
  ``ce-source`` is ``/adapters/volunteers``, where the platform's instance would publish.
* **Personal messages as they were published before sealing.** On a running citybus a
  volunteer's messages are sealed with that person's key. These people are generated, with no key
  in the file, so their messages are kept readable and the subject names them by their volunteer
  id; a replay seals them as it publishes them (:meth:`adapters.Context.seal_raw`). The builder
  writes them apart from the rest of the day (see :mod:`~sandbox.drammen.build`).
* **Small and seeded**: 4 opportunities, 10 volunteers, 14 sign-ups, a change and a withdrawal,
  all drawn from the day's seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Final

import msgspec

from adapters.vicotee import SITES
from bus.envelope import Provenance, build_headers
from bus.subjects import contract_subject
from contracts import Contract
from contracts.community import Consent, Opportunity, Purpose, VolunteerActivity, VolunteerSignup
from sandbox.drammen.day import DAY, OSLO, at
from sandbox.people import SyntheticPerson, synthetic_person

__all__ = ["GeneratedMessage", "ORGANISATIONS", "SOURCE", "VOLUNTEERS", "volunteer_messages"]

SOURCE: Final = "/adapters/volunteers"
"""The ``ce-source`` of the platform's messages."""
ORGANISATIONS: Final = ("demo-badevakter", "demo-strandryddere")
"""The invented organisations offering the opportunities."""
VOLUNTEERS: Final = 10
_SIGNUPS: Final = 14
_CONSENT_TEXT: Final = "drammen-volunteer-2018-08"


@dataclass(frozen=True, slots=True)
class GeneratedMessage:
    """A message the platform publishes at ``at``: its subject, JSON body and headers."""

    at: datetime
    subject: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class _Offer:
    site: str
    title: str
    description: str
    organisation: str
    day: int
    """Days after the recorded day."""
    hours: tuple[int, int]
    skills: tuple[str, ...]
    places: int
    offered: datetime


_OFFERS: Final = (
    _Offer(
        "sota-fjordpark",
        "Beach clean-up at Sota fjordpark",
        "Pick litter along the shore where the river meets the fjord; gloves and bags are provided.",
        "demo-strandryddere",
        4,
        (10, 13),
        ("lifting",),
        8,
        at(8, 5),
    ),
    _Offer(
        "bragernes-strand",
        "Beach clean-up at Bragernes strand",
        "Clear the city beach and the riverside path after the summer.",
        "demo-strandryddere",
        4,
        (14, 17),
        (),
        6,
        at(8, 20),
    ),
    _Offer(
        "blektjern",
        "Lake-shore clean-up at Blektjern",
        "Collect litter around the lake and from the water by boat.",
        "demo-strandryddere",
        5,
        (11, 14),
        ("boat",),
        4,
        at(9, 40),
    ),
    _Offer(
        "landfalltjern",
        "Bathing watch at Landfalltjern",
        "Keep an eye on swimmers on the last warm Sunday; first-aid training needed.",
        "demo-badevakter",
        5,
        (12, 16),
        ("first-aid",),
        3,
        at(10, 15),
    ),
)


def _slug(offer: _Offer) -> str:
    return f"{offer.title.split(' at ')[0].lower().replace(' ', '-')}-{offer.site}-{_date(offer, 0):%Y-%m-%d}"


def _date(offer: _Offer, hour: int) -> datetime:
    return datetime.combine(DAY + timedelta(days=offer.day), time(hour), OSLO)


def _message(moment: datetime, instance: Contract, draw: random.Random) -> GeneratedMessage:
    headers = build_headers(
        instance.__contract__,
        event_id=f"{draw.getrandbits(128):032x}",  # seeded, so the build stays reproducible
        source=SOURCE,
        time=moment,
        provenance=Provenance.SYNTHETIC,
    )
    return GeneratedMessage(moment, contract_subject(instance), msgspec.json.encode(instance), headers)


def volunteer_messages(draw: random.Random) -> list[GeneratedMessage]:
    """The day's opportunities (public) and sign-ups (personal), in the order they happen."""
    opportunities: dict[str, Opportunity] = {}
    messages: list[GeneratedMessage] = []
    for offer in _OFFERS:
        site = SITES[offer.site]
        first, last = offer.hours
        opportunity = Opportunity(
            opportunity_id=_slug(offer),
            organisation=offer.organisation,
            title=offer.title,
            description=offer.description,
            place=site.name,
            location=site.location,
            starts=_date(offer, first),
            ends=_date(offer, last),
            skills=offer.skills,
            places=offer.places,
            places_left=offer.places,
            status="open",
        )
        opportunities[opportunity.opportunity_id] = opportunity
        messages.append(_message(offer.offered, opportunity, draw))
    people = [synthetic_person(draw) for _ in range(VOLUNTEERS)]
    # sign-ups from noon to late evening, most after work
    moments = sorted(
        at(12) + timedelta(seconds=draw.randrange(int(timedelta(hours=10, minutes=30).total_seconds())))
        for _ in range(_SIGNUPS)
    )
    signed: list[tuple[SyntheticPerson, VolunteerSignup]] = []
    for moment in moments:
        person = draw.choice(people)
        taken = {s.task_id for p, s in signed if p is person}
        open_ones = [o for o in opportunities.values() if o.places_left > 0 and o.opportunity_id not in taken]
        if not open_ones:
            continue
        opportunity = draw.choice(open_ones)
        statistics = draw.random() < 0.6
        signup = VolunteerSignup(
            volunteer_id=person.volunteer_id,
            name=person.name,
            email=person.email,
            phone=person.phone if draw.random() < 0.5 else None,
            task_id=opportunity.opportunity_id,
            signed_up_at=moment,
            skills=tuple(s for s in opportunity.skills if draw.random() < 0.7),
            organisation=opportunity.organisation,
            consent=Consent(
                purposes=(Purpose.VOLUNTEERING, Purpose.STATISTICS)
                if statistics
                else (Purpose.VOLUNTEERING,),
                given_at=moment,
                text=_CONSENT_TEXT,
            ),
        )
        signed.append((person, signup))
        messages += _taken(moment, signup, opportunities, -1, draw)
    # one volunteer changes their details (a phone number added), one withdraws
    person, signup = signed[draw.randrange(len(signed))]
    moment = at(22, 40)
    changed = _changed(signup, status="changed", phone=person.phone)
    messages.append(_message(moment, changed, draw))
    person, signup = signed[draw.randrange(len(signed))]
    moment = at(23, 10)
    withdrawn = _changed(signup, status="withdrawn")
    messages += _taken(moment, withdrawn, opportunities, +1, draw)
    return messages


def _changed(signup: VolunteerSignup, **changes: object) -> VolunteerSignup:
    return msgspec.structs.replace(signup, **changes)


def _taken(
    moment: datetime,
    signup: VolunteerSignup,
    opportunities: dict[str, Opportunity],
    change: int,
    draw: random.Random,
) -> list[GeneratedMessage]:
    """What a sign-up (``change`` -1) or a withdrawal (+1) publishes: the sign-up, the activity when
    consent allows, and the opportunity with its places left."""
    opportunity = opportunities[signup.task_id]
    left = opportunity.places_left + change
    opportunity = msgspec.structs.replace(opportunity, places_left=left, status="open" if left else "full")
    opportunities[signup.task_id] = opportunity
    out = [_message(moment, signup, draw)]
    consent = signup.consent
    if consent is not None and Purpose.STATISTICS in consent.purposes:
        activity = VolunteerActivity(
            volunteer_id=signup.volunteer_id,
            opportunity_id=opportunity.opportunity_id,
            organisation=opportunity.organisation,
            skills=opportunity.skills,
            starts=opportunity.starts,
            hours=(opportunity.ends - opportunity.starts).total_seconds() / 3600,
            withdrawn=signup.status == "withdrawn",
        )
        out.append(_message(moment, activity, draw))
    out.append(_message(moment, opportunity, draw))
    return out
