"""The ``volunteer-platform`` adapter: Drammen's shared volunteer platform, on the bus.

``citybus up`` runs it by default next to the sandbox (instance ``volunteer-platform``, in the
``SANDBOX`` account, on the wall clock) for two organisations; in production municipal IT names
the organisations that use it::

    [adapters.volunteer-platform]
    adapter = "volunteer-platform"
    account = "city"
    organisations = ["drammen-frivilligsentral", "rode-kors-drammen"]

Each organisation is a tenant with a NATS user of its own (:mod:`adapters.volunteer.access`):
it offers opportunities (:class:`~contracts.OpportunityOffer` on
``city.internal.rpc.community.opportunity-offer.<organisation>``, answered with an
:class:`~contracts.OpportunityReceipt`) and asks who signed up (:class:`~contracts.RosterRequest`
on ``city.personal.rpc.community.roster-request.<organisation>``, answered with its own
:class:`~contracts.Roster`). Citizens sign up, change and withdraw through the platform's desk
(:class:`~contracts.SignupRequest` → :class:`~contracts.SignupReceipt`). The rules are
:mod:`adapters.volunteer.platform`.

Decisions, and why:

* **State that survives, shared by replicas.** Places live in the instance's key-value bucket
  (``places``, compare-and-set: :mod:`adapters.volunteer.places`), so two processes of the
  instance can never overbook; sign-ups are read back from the ``community.volunteer-signup``
  stream at start and followed afterwards (:mod:`adapters.volunteer.signups`), so a restart and a
  second process know every sign-up. The opportunities are the ledger's records, whose public
  face is the ``community.opportunity`` stream.
* **A declassifier, on purpose.** It answers internal and personal requests and publishes the
  public :class:`~contracts.Opportunity`: what an organisation offers, and a count of places left,
  never who took them.
* **An erasure frees the places.** When a volunteer's key is destroyed (``citybus.personal.erased``)
  every process forgets their sign-ups and the ledger drops their ref, freeing their places;
  their stored sign-ups can no longer be opened, so a restart does not bring them back.
* **Ready once it has read back what was stored**, so the first request of a restarted platform
  finds the sign-ups it made before.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from adapters.base import Adapter
from adapters.context import Context
from adapters.volunteer.metrics import volunteer_metrics
from adapters.volunteer.places import Places
from adapters.volunteer.platform import Platform
from adapters.volunteer.signups import Book
from bus import Event, RawMessage
from bus.errors import CityBusError
from bus.personal import ERASED_SUBJECT
from contracts import (
    Opportunity,
    OpportunityOffer,
    OpportunityReceipt,
    Roster,
    RosterRequest,
    SignupReceipt,
    SignupRequest,
    VolunteerActivity,
    VolunteerSignup,
)

__all__ = ["DEFAULT_ORGANISATIONS", "VolunteerConfig", "VolunteerPlatform"]

Organisation = Annotated[
    str,
    Meta(
        pattern=r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$",
        max_length=64,
        description="An organisation's id, in kebab case (also the name of its NATS user)",
    ),
]

DEFAULT_ORGANISATIONS = ("drammen-frivilligsentral", "rode-kors-drammen")
"""The organisations of the platform ``citybus up`` runs by default (in the sandbox)."""


class VolunteerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[adapters.<instance>]`` of ``volunteer-platform``."""

    organisations: tuple[Organisation, ...] = ()
    """The organisations that offer opportunities here. Each gets a NATS user of its own, named
    like it, that may offer and ask its roster on its own subjects only (``citybus auth
    generate`` issues its credentials). Empty: no tenant users, and the platform takes offers
    from whoever the broker lets ask."""


class VolunteerPlatform(Adapter[VolunteerConfig]):
    """Organisations offer opportunities, citizens sign up: places never overbooked, each
    organisation sees its own volunteers only, and statistics only what consent allows."""

    name = "volunteer-platform"
    Config = VolunteerConfig
    produces = (Opportunity, OpportunityReceipt, SignupReceipt, VolunteerSignup, VolunteerActivity, Roster)
    answers = (OpportunityOffer, SignupRequest, RosterRequest)
    recalls = (VolunteerSignup,)
    stores = ("places",)
    declassifier = True
    default_instance = "volunteer-platform"
    default_section: ClassVar[dict[str, Any]] = {
        "account": "sandbox",
        "clock": "wall",
        "organisations": list(DEFAULT_ORGANISATIONS),
    }

    def __init__(self, config: VolunteerConfig) -> None:
        super().__init__(config)
        self.book = Book()
        """The sign-ups it holds (tests look inside)."""
        self.places: Places | None = None
        """The ledger of places, once opened."""

    @classmethod
    def kind(cls) -> Literal["source", "service", "sink"]:
        """A service: it answers requests (and consumes none of the bus's streams)."""
        return "service"

    async def run(self, ctx: Context) -> None:
        """Open the ledger, read back the sign-ups, answer requests, until stopped."""
        metrics = volunteer_metrics(ctx.registry)
        store = await ctx.key_value("places")
        places = self.places = Places(store, on_conflict=metrics.conflicts.inc)
        for entry in await places.load():
            opportunity = entry.opportunity
            metrics.places(opportunity.opportunity_id, opportunity.places_left, opportunity.status)

        async def take(seq: int, event: Event[VolunteerSignup]) -> None:
            self.book.take(seq, event.data)

        reader = ctx.recall(VolunteerSignup, take)
        await reader.catch_up()
        if reader.error is not None:
            raise CityBusError(f"cannot read back the sign-ups: {reader.error}")
        metrics.volunteers.set(len(self.book))

        async def erased_heard(message: RawMessage) -> None:
            await platform.erased(message.data.decode("ascii", "replace"))

        platform = Platform(
            ctx,
            places,
            self.book,
            refs=ctx.person_ref,
            catch_up=reader.catch_up,
            organisations=frozenset(self.config.organisations),
            metrics=metrics,
        )

        # every process of the instance hears it (no queue group): each forgets what it holds
        await ctx.subscribe_raw(ERASED_SUBJECT, erased_heard, queue="")
        # ... and what was erased while it was down, it learns from the vault
        await platform.reconcile()

        async def offer(event: Event[OpportunityOffer]) -> OpportunityReceipt:
            return await platform.offer(event)

        async def signup(event: Event[SignupRequest]) -> SignupReceipt:
            return await platform.signup(event)

        async def roster(event: Event[RosterRequest]) -> Roster:
            return await platform.roster(event)

        await ctx.serve(OpportunityOffer, offer)
        await ctx.serve(SignupRequest, signup)
        await ctx.serve(RosterRequest, roster)
        ctx.log.info(
            "volunteer platform serving", opportunities=len(await store.keys()), signups=len(self.book)
        )
        ctx.ready()
        await reader.run()
