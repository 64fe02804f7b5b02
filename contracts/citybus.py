"""Contracts of the bus itself (domain ``citybus``): what citybus says about its own traffic."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from msgspec import Meta

from contracts.base import Classification, Contract, contract

__all__ = ["DeadLetter", "PersonalDeadLetter"]


class _Letter(Contract, frozen=True, kw_only=True):
    """The fields of a dead letter, whatever its classification."""

    reason: Annotated[
        str,
        Meta(
            description=(
                "Why the message was rejected: missing-header, unknown-type, wrong-contract, "
                "invalid-body, unsupported-encoding or max-deliver"
            ),
            pattern=r"^[a-z][a-z0-9-]*$",
        ),
    ]
    detail: Annotated[str, Meta(description="What exactly was wrong, naming the field where known")]
    original_subject: Annotated[str, Meta(description="The subject the message arrived on")]
    original_headers: Annotated[
        dict[str, str], Meta(description="The message's NATS headers as they arrived")
    ]
    payload: Annotated[bytes, Meta(description="The message body as it arrived (base64 in JSON)")]
    contract: Annotated[
        str, Meta(description="The CloudEvents type expected by the consumer, if one was")
    ] = ""
    consumer: Annotated[
        str, Meta(description="The durable consumer or queue group that rejected it, if any")
    ] = ""
    deliveries: Annotated[int, Meta(ge=0, description="How often it was delivered before this")] = 1
    failed_at: Annotated[datetime, Meta(tz=True, description="When it was dead-lettered")]


@contract(
    "citybus.dead-letter",
    version=1,
    classification=Classification.INTERNAL,
    key="reason",
    example={
        "reason": "invalid-body",
        "detail": "Expected `float`, got `str` - at `$.water_temperature`",
        "original_subject": "city.public.environment.beach-observation.bragernes-strand",
        "original_headers": {"ce-type": "environment.beach-observation.v1", "ce-id": "7f1c"},
        "payload": "eyJ3YXRlcl90ZW1wZXJhdHVyZSI6ICJ3YXJtIn0=",
        "contract": "environment.beach-observation.v1",
        "consumer": "",
        "deliveries": 1,
        "failed_at": "2018-08-29T10:00:00Z",
    },
)
class DeadLetter(_Letter, frozen=True, kw_only=True):
    """A message that citybus could not hand to its consumer, kept with the reason why.

    Nothing on the bus is dropped silently: a message that does not decode, does not validate
    against its contract, carries the wrong or no CloudEvents headers, or whose handler kept
    failing until its retries ran out, is published here — internal, because the original may hold
    anything — so that an operator can see it, fix the producer and replay the original.
    """


@contract(
    "citybus.personal-dead-letter",
    version=1,
    classification=Classification.PERSONAL,
    key="reason",
    retention=timedelta(days=30),
    example={
        "reason": "invalid-body",
        "detail": "Expected `str`, got `int` - at `$.phone`",
        "original_subject": "city.personal.community.volunteer-signup.v-1042",
        "original_headers": {"ce-type": "community.volunteer-signup.v1", "ce-id": "7f1c"},
        "payload": "eyJ3YXRlcl90ZW1wZXJhdHVyZSI6ICJ3YXJtIn0=",
        "contract": "community.volunteer-signup.v1",
        "consumer": "",
        "deliveries": 1,
        "failed_at": "2018-08-29T10:00:00Z",
    },
)
class PersonalDeadLetter(_Letter, frozen=True, kw_only=True):
    """A personal message that citybus could not hand to its consumer, kept apart from the others.

    A dead letter carries its original's payload, so a personal message's dead letter is personal
    itself: it is published under ``city.personal.`` where only those allowed to read personal
    data can, never among the internal dead letters operators and internal clients read.
    """
