"""Contracts of the community domain: the city's volunteer platform.

Organisations offer opportunities (``community.opportunity``, public: what, where, when, which
skills, how many places are left); citizens sign up, change and withdraw by request/reply
(``community.signup-request`` → ``community.signup-receipt``, personal); the platform records each
confirmed sign-up (``community.volunteer-signup``, personal) and tells each organisation, and no
other, who signed up for its opportunities (``community.roster-request`` → ``community.roster``).

Personal data here is handled as the law expects: every sign-up records the consent given and its
purposes, the personal events name the person only by a pseudonymous id (``person=``) and are
sealed with that person's key on the bus, and each states how long it may be kept (``retention=``).
A volunteer's activity reaches the statistics (``community.volunteer-activity``) only when the
volunteer consented to that purpose.
"""

from __future__ import annotations

import enum
from datetime import timedelta
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from contracts.base import Classification, Contract, contract, measure
from contracts.fields import GeoPoint, Slug, Timestamp

__all__ = [
    "Consent",
    "Opportunity",
    "OpportunityOffer",
    "OpportunityReceipt",
    "Purpose",
    "Roster",
    "RosterEntry",
    "RosterRequest",
    "SignupReceipt",
    "SignupRequest",
    "VolunteerActivity",
    "VolunteerSignup",
]

VOLUNTEER_ID = r"^v-[0-9a-f]{8,32}$"
_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
_PHONE = r"^\+[1-9][0-9]{6,14}$"

VolunteerId = Annotated[
    str, Meta(pattern=VOLUNTEER_ID, description="Pseudonymous id of the volunteer, stable across signups")
]
Name = Annotated[str, Meta(min_length=1, max_length=200, description="The volunteer's name")]
Email = Annotated[str, Meta(pattern=_EMAIL, max_length=254, description="Email address")]
Phone = Annotated[str, Meta(pattern=_PHONE, description="Phone number in E.164 form")]
Skills = Annotated[
    tuple[Slug, ...],
    Meta(max_length=32, description="What the volunteer can bring, e.g. first-aid, boat, lifting"),
]
Title = Annotated[str, Meta(min_length=1, max_length=200, description="What the opportunity is, in a line")]
Text = Annotated[str, Meta(max_length=4000, description="What volunteers will do, and what to bring")]
PlaceName = Annotated[str, Meta(min_length=1, max_length=200, description="Where, as people say it")]
Places = Annotated[int, Meta(ge=1, le=100_000, description="How many volunteers the opportunity takes")]
PlacesLeft = Annotated[int, Meta(ge=0, le=100_000, description="Places not yet taken")]

SIGNUP_RETENTION = timedelta(days=365)
"""A sign-up is kept a year after it was made: long enough for an organisation to thank and insure
its volunteers and for the season's statistics, then it is erased."""


class Purpose(enum.StrEnum):
    """What a volunteer's data may be used for: each is consented to on its own."""

    VOLUNTEERING = "volunteering"
    """Taking part: the platform and the organisation use the contact details to organise the work."""
    STATISTICS = "statistics"
    """Anonymous statistics about volunteering in Drammen (never released about fewer than a few people)."""


class Consent(msgspec.Struct, frozen=True, kw_only=True):
    """The consent a volunteer gave: to which purposes, when, and to which wording."""

    purposes: Annotated[
        tuple[Purpose, ...],
        Meta(min_length=1, max_length=8, description="The purposes consented to; volunteering is required"),
    ]
    given_at: Annotated[Timestamp, Meta(description="When consent was given")]
    text: Annotated[
        str,
        Meta(
            pattern=r"^[a-z0-9]+(?:[-.][a-z0-9]+)*$",
            max_length=64,
            description="The version of the consent text read, e.g. drammen-volunteer-2026-12",
        ),
    ]


class _Offered(Contract, frozen=True, kw_only=True):
    """What an organisation says of an opportunity: the offer's fields, which the public
    opportunity repeats (one declaration, so the two cannot drift apart)."""

    opportunity_id: Annotated[Slug, Meta(description="The opportunity's id, chosen by the organisation")]
    organisation: Annotated[Slug, Meta(description="The organisation offering it (its tenant id)")]
    title: Title
    description: Text = ""
    place: PlaceName
    location: Annotated[GeoPoint | None, Meta(description="Where to meet")] = None
    starts: Annotated[Timestamp, Meta(description="When it starts")]
    ends: Annotated[Timestamp, Meta(description="When it ends")]
    skills: Annotated[tuple[Slug, ...], Meta(max_length=32, description="Skills it asks for")] = ()
    places: Places


@contract(
    "community.opportunity",
    version=1,
    classification=Classification.PUBLIC,
    key="opportunity_id",
    example={
        "opportunity_id": "beach-cleanup-sota-fjordpark-2018-09-01",
        "organisation": "drammen-frivilligsentral",
        "title": "Beach clean-up at Sota fjordpark",
        "description": "Pick litter along the shore; gloves and bags are provided.",
        "place": "Sota fjordpark",
        "location": {"type": "Point", "coordinates": [10.2319, 59.7374]},
        "starts": "2018-09-01T10:00:00+02:00",
        "ends": "2018-09-01T13:00:00+02:00",
        "skills": ["lifting"],
        "places": 20,
        "places_left": 12,
        "status": "open",
    },
)
class Opportunity(_Offered, frozen=True, kw_only=True):
    """An organisation's volunteer opportunity, with the places still left: what anyone may see.

    The platform publishes it when an organisation offers it and again whenever its places left
    change, so the stream's last message per opportunity is its current state.
    """

    places_left: PlacesLeft
    status: Annotated[
        Literal["open", "full", "cancelled"],
        Meta(description="open: places left; full: none left; cancelled by the organisation"),
    ]


@contract(
    "community.opportunity-offer",
    version=1,
    classification=Classification.INTERNAL,
    key="organisation",
    reply="community.opportunity-receipt",
    example={
        "organisation": "drammen-frivilligsentral",
        "opportunity_id": "beach-cleanup-sota-fjordpark-2018-09-01",
        "title": "Beach clean-up at Sota fjordpark",
        "description": "Pick litter along the shore; gloves and bags are provided.",
        "place": "Sota fjordpark",
        "location": {"type": "Point", "coordinates": [10.2319, 59.7374]},
        "starts": "2018-09-01T10:00:00+02:00",
        "ends": "2018-09-01T13:00:00+02:00",
        "skills": ["lifting"],
        "places": 20,
    },
)
class OpportunityOffer(_Offered, frozen=True, kw_only=True):
    """An organisation offers an opportunity, changes it or cancels it (asked of the platform).

    Sent on the organisation's own request subject, which only that organisation may use
    (``city.internal.rpc.community.opportunity-offer.<organisation>``). Offering an id again changes
    it; fewer places than are taken is refused.
    """

    cancel: Annotated[bool, Meta(description="True to cancel the opportunity")] = False


@contract(
    "community.opportunity-receipt",
    version=1,
    classification=Classification.INTERNAL,
    key="organisation",
    answers="community.opportunity-offer",
    example={
        "organisation": "drammen-frivilligsentral",
        "opportunity_id": "beach-cleanup-sota-fjordpark-2018-09-01",
        "accepted": True,
        "places_left": 20,
    },
)
class OpportunityReceipt(Contract, frozen=True, kw_only=True):
    """The platform's answer to an offer: accepted (and published), or refused with the reason."""

    organisation: Annotated[Slug, Meta(description="The organisation that offered it")]
    opportunity_id: Annotated[Slug, Meta(description="The opportunity")]
    accepted: Annotated[bool, Meta(description="Whether the offer was accepted and published")]
    reason: Annotated[str, Meta(max_length=500, description="Why it was refused, for a person")] = ""
    places_left: PlacesLeft = 0


@contract(
    "community.signup-request",
    version=1,
    classification=Classification.PERSONAL,
    key="opportunity_id",
    person="volunteer_id",
    reply="community.signup-receipt",
    example={
        "action": "signup",
        "volunteer_id": "v-3f9c2a7e51d0",
        "opportunity_id": "beach-cleanup-sota-fjordpark-2018-09-01",
        "name": "Kari Nordmann",
        "email": "kari.nordmann@example.no",
        "skills": ["first-aid"],
        "consent": {
            "purposes": ["volunteering", "statistics"],
            "given_at": "2018-08-29T19:42:10+02:00",
            "text": "drammen-volunteer-2018-08",
        },
    },
)
class SignupRequest(Contract, frozen=True, kw_only=True):
    """A citizen signs up for an opportunity, changes their sign-up, or withdraws it.

    A sign-up needs a name, an email or a phone number, and consent to at least the
    ``volunteering`` purpose. A change replaces the contact details, skills or consent of an
    existing sign-up; a withdrawal frees the place. The request subject names the opportunity,
    never the person.
    """

    action: Annotated[Literal["signup", "change", "withdraw"], Meta(description="What the citizen asks")]
    volunteer_id: VolunteerId
    opportunity_id: Annotated[Slug, Meta(description="The opportunity")]
    name: Name | None = None
    email: Email | None = None
    phone: Phone | None = None
    skills: Skills = ()
    consent: Annotated[Consent | None, Meta(description="The consent given (sign-up and change)")] = None


@contract(
    "community.signup-receipt",
    version=1,
    classification=Classification.PERSONAL,
    key="opportunity_id",
    person="volunteer_id",
    answers="community.signup-request",
    example={
        "volunteer_id": "v-3f9c2a7e51d0",
        "opportunity_id": "beach-cleanup-sota-fjordpark-2018-09-01",
        "status": "confirmed",
        "places_left": 11,
    },
)
class SignupReceipt(Contract, frozen=True, kw_only=True):
    """The platform's answer to a sign-up, change or withdrawal.

    ``confirmed``, ``changed`` and ``withdrawn`` say it was done; ``full`` that no place was left;
    ``refused`` that it could not be done, with the reason (no such opportunity, no consent, not
    signed up).
    """

    volunteer_id: VolunteerId
    opportunity_id: Annotated[Slug, Meta(description="The opportunity")]
    status: Annotated[
        Literal["confirmed", "changed", "withdrawn", "full", "refused"],
        Meta(description="What became of the request"),
    ]
    reason: Annotated[str, Meta(max_length=500, description="Why, when refused or full")] = ""
    places_left: PlacesLeft = 0


@contract(
    "community.volunteer-signup",
    version=1,
    classification=Classification.PERSONAL,
    key="volunteer_id",
    person="volunteer_id",
    retention=SIGNUP_RETENTION,
    example={
        "volunteer_id": "v-3f9c2a7e51d0",
        "name": "Kari Nordmann",
        "email": "kari.nordmann@example.no",
        "phone": "+4791234567",
        "task_id": "beach-cleanup-sota-fjordpark-2018-09-01",
        "signed_up_at": "2018-08-29T19:42:10+02:00",
        "skills": ["first-aid", "boat"],
        "organisation": "drammen-frivilligsentral",
        "status": "confirmed",
        "consent": {
            "purposes": ["volunteering", "statistics"],
            "given_at": "2018-08-29T19:42:10+02:00",
            "text": "drammen-volunteer-2018-08",
        },
    },
)
class VolunteerSignup(Contract, frozen=True, kw_only=True):
    """A citizen signs up for a volunteer task, such as a beach clean-up at Sota fjordpark.

    The volunteer is named by a pseudonymous id, so the subject carries no identity; the name and
    contact details in the body are what the task's organiser needs to reach them. At least one of
    email and phone is given.

    The volunteer platform publishes one when a sign-up is confirmed, changed (``status``
    ``changed``) or withdrawn (``withdrawn``, the place freed), with the consent it rests on. The
    subject names the volunteer by a pseudonym and the body is sealed with the volunteer's key: an
    erasure makes every copy unreadable.
    """

    volunteer_id: Annotated[
        str,
        Meta(
            pattern=r"^v-[0-9a-f]{8,32}$",
            description="Pseudonymous id of the volunteer, stable across signups",
        ),
    ]
    name: Annotated[str, Meta(min_length=1, max_length=200, description="The volunteer's name")]
    email: (
        Annotated[
            str,
            Meta(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254, description="Email address"),
        ]
        | None
    ) = None
    phone: (
        Annotated[str, Meta(pattern=r"^\+[1-9][0-9]{6,14}$", description="Phone number in E.164 form")] | None
    ) = None
    task_id: Annotated[Slug, Meta(description="The task signed up for")]
    signed_up_at: Annotated[Timestamp, Meta(description="When the volunteer signed up")]
    skills: Annotated[
        tuple[Slug, ...],
        Meta(description="What the volunteer can bring, e.g. first-aid, boat, lifting"),
    ] = ()
    organisation: Annotated[Slug | None, Meta(description="The organisation offering the task")] = None
    status: Annotated[
        Literal["confirmed", "changed", "withdrawn"],
        Meta(description="confirmed: a place is taken; changed: details changed; withdrawn: place freed"),
    ] = "confirmed"
    consent: Annotated[Consent | None, Meta(description="The consent the sign-up rests on")] = None


@contract(
    "community.volunteer-activity",
    version=1,
    classification=Classification.PERSONAL,
    key="volunteer_id",
    person="volunteer_id",
    retention=SIGNUP_RETENTION,
    example={
        "volunteer_id": "v-3f9c2a7e51d0",
        "opportunity_id": "beach-cleanup-sota-fjordpark-2018-09-01",
        "organisation": "drammen-frivilligsentral",
        "skills": ["lifting"],
        "starts": "2018-09-01T10:00:00+02:00",
        "hours": 3.0,
        "withdrawn": False,
    },
)
class VolunteerActivity(Contract, frozen=True, kw_only=True):
    """A volunteer takes part in an opportunity: what statistics may use, and only with consent.

    Published by the volunteer platform for a volunteer who consented to the ``statistics``
    purpose, and only then: it carries no name or contact, and a statistics service declares this
    contract, never the sign-up, so it cannot see more than consent allows. A withdrawal publishes it
    again with ``withdrawn`` set.
    """

    volunteer_id: VolunteerId
    opportunity_id: Annotated[Slug, Meta(description="The opportunity")]
    organisation: Annotated[Slug, Meta(description="The organisation offering it")]
    skills: Annotated[
        tuple[Slug, ...], Meta(max_length=32, description="The skills the opportunity asks for")
    ] = ()
    starts: Annotated[Timestamp, Meta(description="When the activity starts")]
    hours: Annotated[float, measure("How long the activity lasts", unit="h", ge=0, le=744)]
    withdrawn: Annotated[bool, Meta(description="True when the volunteer withdrew")] = False


class RosterEntry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One volunteer signed up for one of the organisation's opportunities."""

    opportunity_id: Annotated[Slug, Meta(description="The opportunity")]
    volunteer_id: VolunteerId
    name: Name
    email: Email | None = None
    phone: Phone | None = None
    skills: Skills = ()
    signed_up_at: Annotated[Timestamp, Meta(description="When the volunteer signed up")]


@contract(
    "community.roster-request",
    version=1,
    classification=Classification.PERSONAL,
    key="organisation",
    reply="community.roster",
    example={"organisation": "drammen-frivilligsentral"},
)
class RosterRequest(Contract, frozen=True, kw_only=True):
    """An organisation asks who signed up for its opportunities (all of them, or one).

    Sent on the organisation's own request subject
    (``city.personal.rpc.community.roster-request.<organisation>``): the broker lets each
    organisation ask only there, so none can ask about another's volunteers.
    """

    organisation: Annotated[Slug, Meta(description="The organisation asking (its tenant id)")]
    opportunity_id: Annotated[Slug | None, Meta(description="Only this opportunity")] = None


@contract(
    "community.roster",
    version=1,
    classification=Classification.PERSONAL,
    key="organisation",
    answers="community.roster-request",
    example={
        "organisation": "drammen-frivilligsentral",
        "entries": [
            {
                "opportunity_id": "beach-cleanup-sota-fjordpark-2018-09-01",
                "volunteer_id": "v-3f9c2a7e51d0",
                "name": "Kari Nordmann",
                "email": "kari.nordmann@example.no",
                "skills": ["first-aid"],
                "signed_up_at": "2018-08-29T19:42:10+02:00",
            }
        ],
    },
)
class Roster(Contract, frozen=True, kw_only=True):
    """The volunteers signed up for an organisation's opportunities: its own, and nobody else's."""

    organisation: Annotated[Slug, Meta(description="The organisation")]
    entries: Annotated[tuple[RosterEntry, ...], Meta(description="One per volunteer and opportunity")] = ()
