"""Contracts of the community domain: citizens taking part in the city's volunteer platform.

Everything here is personal data: classified ``personal``, readable only by the adapters that
declare it, and never mixed into public or internal streams.
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from contracts.base import Classification, Contract, contract
from contracts.fields import Slug, Timestamp

__all__ = ["VolunteerSignup"]


@contract(
    "community.volunteer-signup",
    version=1,
    classification=Classification.PERSONAL,
    key="volunteer_id",
    example={
        "volunteer_id": "v-3f9c2a7e51d0",
        "name": "Kari Nordmann",
        "email": "kari.nordmann@example.no",
        "phone": "+4791234567",
        "task_id": "beach-cleanup-sota-fjordpark-2018-09-01",
        "signed_up_at": "2018-08-29T19:42:10+02:00",
        "skills": ["first-aid", "boat"],
    },
)
class VolunteerSignup(Contract, frozen=True, kw_only=True):
    """A citizen signs up for a volunteer task, such as a beach clean-up at Sota fjordpark.

    The volunteer is named by a pseudonymous id, so the subject carries no identity; the name and
    contact details in the body are what the task's organiser needs to reach them. At least one of
    email and phone is given.
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
