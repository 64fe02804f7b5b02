"""The volunteer platform's rules: offers, sign-ups, changes, withdrawals and rosters.

:class:`Platform` answers the three requests the adapter serves. Places are taken and freed in
the ledger (:mod:`adapters.volunteer.places`, compare-and-set: never overbooked, even by two
processes); what was decided is published durably — the public :class:`~contracts.Opportunity`
whenever its places left change, a :class:`~contracts.VolunteerSignup` for every sign-up, change
and withdrawal, and a :class:`~contracts.VolunteerActivity` only for a volunteer who consented to
``statistics``.

Decisions, and why:

* **A place is taken before it is recorded, and recorded before it is freed.** A sign-up takes
  the place (compare-and-set), then publishes the sign-up; if publishing fails the place is given
  back. A withdrawal publishes the withdrawal, then frees the place. Whatever fails in between, a
  place is at worst held too long, never given twice.
* **The public state follows the ledger.** After publishing an opportunity the platform reads its
  record again and publishes the newer state if another process changed it meanwhile, so the
  stream's last message is right even when two processes' messages are stored out of order.
* **Asking again is answered, not repeated.** A volunteer who signs up again for an opportunity
  they hold a place on is confirmed again, with no second place and no second record — unless the
  record is missing (the process stopped between taking the place and recording it), which is
  then written.
* **A tenant speaks only for itself.** The broker lets an organisation send offers and roster
  requests only on its own subject; the platform checks the body says the same, and that an
  opportunity id is not another organisation's.
* **Nothing personal is logged**: opportunity ids, actions and statuses only; refusals say what to
  fix without repeating the request's contact details.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import msgspec

from adapters.context import Context
from adapters.volunteer.metrics import VolunteerMetrics
from adapters.volunteer.places import Entry, Places
from adapters.volunteer.signups import Book, has_purpose
from bus import Event
from bus.envelope import Provenance
from bus.errors import CityBusError
from contracts import (
    Consent,
    Contract,
    Opportunity,
    OpportunityOffer,
    OpportunityReceipt,
    Purpose,
    Roster,
    RosterRequest,
    SignupReceipt,
    SignupRequest,
    VolunteerActivity,
    VolunteerSignup,
)

__all__ = ["Platform", "RequestMismatchError"]

_REPUBLISH: Final = 10
"""Times an opportunity is published again while other processes keep changing it (each of them
publishes its own change too, so stopping here loses nothing)."""

_MAX_HOURS: Final = 744.0
"""The longest activity the contract takes (a month): a longer opportunity counts as that."""


class RequestMismatchError(CityBusError, ValueError):
    """A request's body names another organisation or opportunity than its subject."""


def _entity(event: Event[Contract]) -> str:
    """The entity token of the subject a request came on (the organisation or opportunity)."""
    return event.envelope.subject.rsplit(".", 1)[-1]


def _consent_problem(consent: Consent | None) -> str:
    if consent is None:
        return "a sign-up needs the volunteer's consent: its purposes, when it was given and the text read"
    if Purpose.VOLUNTEERING not in consent.purposes:
        return "the consent must include the purpose 'volunteering': without it a sign-up cannot be used"
    return ""


def _signup_problem(request: SignupRequest) -> str:
    if request.name is None:
        return "a sign-up needs the volunteer's name"
    if request.email is None and request.phone is None:
        return "a sign-up needs an email address or a phone number"
    return _consent_problem(request.consent)


class Platform:
    """Answers offers, sign-up requests and roster requests for one platform instance."""

    def __init__(
        self,
        ctx: Context,
        places: Places,
        book: Book,
        *,
        refs: Callable[[str], Awaitable[str]],
        catch_up: Callable[[], Awaitable[None]],
        organisations: frozenset[str],
        metrics: VolunteerMetrics,
    ) -> None:
        self.ctx = ctx
        self.places = places
        self.book = book
        self._refs = refs
        self._catch_up = catch_up
        self.organisations = organisations
        """The organisations that may offer here; empty: any (the broker decides who may ask)."""
        self.metrics = metrics

    # -- organisations --------------------------------------------------------------------------

    async def offer(self, event: Event[OpportunityOffer]) -> OpportunityReceipt:
        """Answer an organisation's offer: publish the opportunity, or say why not."""
        offer = event.data
        receipt = await self._offer(offer, _entity(event))
        self.metrics.offers.labels("accepted" if receipt.accepted else "refused").inc()
        self.ctx.log.info(
            "offer answered",
            organisation=offer.organisation,
            opportunity=offer.opportunity_id,
            accepted=receipt.accepted,
            reason=receipt.reason,
        )
        return receipt

    async def _offer(self, offer: OpportunityOffer, entity: str) -> OpportunityReceipt:
        def refused(reason: str, left: int = 0) -> OpportunityReceipt:
            return OpportunityReceipt(
                organisation=offer.organisation,
                opportunity_id=offer.opportunity_id,
                accepted=False,
                reason=reason,
                places_left=left,
            )

        if entity != offer.organisation:
            return refused(f"the offer names {offer.organisation} but came on {entity}'s subject")
        if self.organisations and offer.organisation not in self.organisations:
            return refused(f"{offer.organisation} is not an organisation of this platform")
        if offer.ends <= offer.starts:
            return refused("the opportunity ends before it starts: give `ends` after `starts`")

        def apply(entry: Entry | None) -> tuple[Entry | None, str]:
            if entry is not None and entry.opportunity.organisation != offer.organisation:
                return (
                    None,
                    f"{offer.opportunity_id} is another organisation's opportunity: choose another id",
                )
            taken = entry.taken if entry is not None else ()
            if offer.places < len(taken):
                return None, (
                    f"{len(taken)} places are taken: offer at least {len(taken)} (a withdrawal frees a place)"
                )
            opportunity = Opportunity(
                opportunity_id=offer.opportunity_id,
                organisation=offer.organisation,
                title=offer.title,
                description=offer.description,
                place=offer.place,
                location=offer.location,
                starts=offer.starts,
                ends=offer.ends,
                skills=offer.skills,
                places=offer.places,
                places_left=offer.places,
                status="cancelled" if offer.cancel else "open",
            )
            new = Entry(opportunity=opportunity).with_taken(taken)
            return (None if new == entry else new), ""

        async with self.places.lock(offer.opportunity_id):
            entry, problem = await self.places.change(offer.opportunity_id, apply)
            if problem or entry is None:
                mine = entry is not None and entry.opportunity.organisation == offer.organisation
                return refused(problem, entry.opportunity.places_left if entry is not None and mine else 0)
            await self._publish_opportunity(entry.opportunity)
        return OpportunityReceipt(
            organisation=offer.organisation,
            opportunity_id=offer.opportunity_id,
            accepted=True,
            places_left=entry.opportunity.places_left,
        )

    async def roster(self, event: Event[RosterRequest]) -> Roster:
        """Answer an organisation's roster request with its own volunteers only."""
        request = event.data
        entity = _entity(event)
        if entity != request.organisation:
            raise RequestMismatchError(
                f"the roster request names {request.organisation} but came on {entity}'s subject"
            )
        await self._catch_up()  # what another platform process recorded, too
        entries = self.book.roster(request.organisation, request.opportunity_id)
        self.metrics.rosters.inc()
        self.ctx.log.info(
            "roster sent",
            organisation=request.organisation,
            opportunity=request.opportunity_id,
            size=len(entries),
        )
        return Roster(organisation=request.organisation, entries=entries)

    # -- citizens -------------------------------------------------------------------------------

    async def signup(self, event: Event[SignupRequest]) -> SignupReceipt:
        """Answer a citizen's sign-up, change or withdrawal."""
        request = event.data
        if _entity(event) != request.opportunity_id:
            receipt = self._receipt(request, "refused", "the request came on another opportunity's subject")
        elif request.action == "signup":
            receipt = await self._sign_up(request)
        elif request.action == "change":
            receipt = await self._change(request)
        else:
            receipt = await self._withdraw(request)
        self.metrics.signed(request.action, receipt.status)
        self.ctx.log.info(
            "sign-up request answered",
            action=request.action,
            opportunity=request.opportunity_id,
            status=receipt.status,
            places_left=receipt.places_left,
        )
        return receipt

    def _receipt(self, request: SignupRequest, status: str, reason: str = "", left: int = 0) -> SignupReceipt:
        return msgspec.convert(
            {
                "volunteer_id": request.volunteer_id,
                "opportunity_id": request.opportunity_id,
                "status": status,
                "reason": reason,
                "places_left": left,
            },
            SignupReceipt,
        )

    async def _sign_up(self, request: SignupRequest) -> SignupReceipt:
        problem = _signup_problem(request)
        if problem:
            return self._receipt(request, "refused", problem)
        opportunity_id = request.opportunity_id
        # The key exists before the place is taken: a ref in the ledger without a key is one an
        # erasure destroyed, which a platform that was down then frees when it starts (reconcile).
        ref = await self.ctx.person_key(request.volunteer_id)

        def take(entry: Entry | None) -> tuple[Entry | None, str]:
            if entry is None:
                return None, "missing"
            if entry.opportunity.status == "cancelled":
                return None, "cancelled"
            if ref in entry.taken:
                return None, "again"
            if len(entry.taken) >= entry.opportunity.places:
                return None, "full"
            return entry.with_taken((*entry.taken, ref)), "taken"

        async with self.places.lock(opportunity_id):
            entry, outcome = await self.places.change(opportunity_id, take)
            if entry is None:
                return self._receipt(request, "refused", f"there is no opportunity {opportunity_id}")
            left = entry.opportunity.places_left
            if outcome == "cancelled":
                return self._receipt(request, "refused", f"the opportunity {opportunity_id} was cancelled")
            if outcome == "full":
                return self._receipt(request, "full", f"no place is left on {opportunity_id}")
            if outcome == "again":
                await self._catch_up()
                if self.book.get(opportunity_id, request.volunteer_id) is not None:
                    return self._receipt(request, "confirmed", "already signed up: nothing changed", left)
            assert request.name is not None  # _signup_problem
            signup = VolunteerSignup(
                volunteer_id=request.volunteer_id,
                name=request.name,
                email=request.email,
                phone=request.phone,
                task_id=opportunity_id,
                signed_up_at=self.ctx.clock.now(),
                skills=request.skills,
                organisation=entry.opportunity.organisation,
                status="confirmed",
                consent=request.consent,
            )
            try:
                await self._record(signup)
            except Exception:
                if outcome == "taken":  # give the place back: it is not recorded
                    entry = await self._free(opportunity_id, ref)
                raise
            if has_purpose(signup, Purpose.STATISTICS):
                await self._activity(signup, entry.opportunity, withdrawn=False)
            if outcome == "taken":
                await self._publish_opportunity(entry.opportunity)
        return self._receipt(request, "confirmed", "", left)

    async def _change(self, request: SignupRequest) -> SignupReceipt:
        opportunity_id = request.opportunity_id
        if request.consent is not None and (problem := _consent_problem(request.consent)):
            return self._receipt(request, "refused", problem + " (to stop volunteering, withdraw)")
        ref = await self._refs(request.volunteer_id)
        async with self.places.lock(opportunity_id):
            entry, _ = await self.places.read(opportunity_id)  # fresh: another process may have freed it
            if entry is None:
                return self._receipt(request, "refused", f"there is no opportunity {opportunity_id}")
            left = entry.opportunity.places_left
            current = await self._current(request) if ref in entry.taken else None
            if current is None:
                return self._receipt(
                    request, "refused", f"not signed up for {opportunity_id}: sign up first", left
                )
            contact = request.email is not None or request.phone is not None
            changed = msgspec.structs.replace(
                current,
                name=request.name or current.name,
                email=request.email if contact else current.email,
                phone=request.phone if contact else current.phone,
                skills=request.skills or current.skills,
                consent=request.consent or current.consent,
                status="changed",
            )
            await self._record(changed)
            before, after = has_purpose(current, Purpose.STATISTICS), has_purpose(changed, Purpose.STATISTICS)
            if before != after:  # consent to statistics given, or taken back
                await self._activity(changed, entry.opportunity, withdrawn=not after)
        return self._receipt(request, "changed", "", left)

    async def _withdraw(self, request: SignupRequest) -> SignupReceipt:
        opportunity_id = request.opportunity_id
        ref = await self._refs(request.volunteer_id)
        async with self.places.lock(opportunity_id):
            entry, _ = await self.places.read(opportunity_id)
            if entry is None:
                return self._receipt(request, "refused", f"there is no opportunity {opportunity_id}")
            if ref not in entry.taken:
                left = entry.opportunity.places_left
                return self._receipt(request, "refused", f"not signed up for {opportunity_id}", left)
            current = await self._current(request)
            if current is not None:  # recorded before the place is freed (see the module)
                await self._record(msgspec.structs.replace(current, status="withdrawn"))
                if has_purpose(current, Purpose.STATISTICS):
                    await self._activity(current, entry.opportunity, withdrawn=True)
            else:
                self.ctx.log.warning("place freed without a sign-up record", opportunity=opportunity_id)
            entry = await self._free(opportunity_id, ref)
            await self._publish_opportunity(entry.opportunity)
        return self._receipt(request, "withdrawn", "", entry.opportunity.places_left)

    # -- erasure ----------------------------------------------------------------------------------

    async def erased(self, ref: str) -> None:
        """A person was erased (their key destroyed, ``citybus.personal.erased``): free their places,
        drop their ref from the ledger and forget their sign-ups here. Nothing is published about
        them: sealing would make them a new key."""
        forgotten = 0
        for volunteer_id in self.book.volunteers():
            if await self._refs(volunteer_id) == ref:
                forgotten += self.book.forget(volunteer_id)
        freed = 0
        for opportunity_id in await self.places.store.keys():
            async with self.places.lock(opportunity_id):
                entry, _ = await self.places.read(opportunity_id)
                if entry is None or ref not in entry.taken:
                    continue
                entry = await self._free(opportunity_id, ref)
                await self._publish_opportunity(entry.opportunity)
                freed += 1
        self.metrics.volunteers.set(len(self.book))
        self.metrics.erased_places.inc(freed)
        if freed or forgotten:
            self.ctx.log.info("an erased volunteer's places freed", places=freed, signups=forgotten)

    async def reconcile(self) -> int:
        """Free the places of volunteers erased while this platform was not running (it did not
        hear ``citybus.personal.erased``): every ref in the ledger whose key is gone. Returns how
        many such volunteers there were."""
        refs: set[str] = set()
        for opportunity_id in await self.places.store.keys():
            entry, _ = await self.places.read(opportunity_id)
            if entry is not None:
                refs.update(entry.taken)
        gone = [ref for ref in sorted(refs) if await self.ctx.person_erased(ref)]
        for ref in gone:
            await self.erased(ref)
        return len(gone)

    # -- the ledger and the stream ----------------------------------------------------------------

    async def _current(self, request: SignupRequest) -> VolunteerSignup | None:
        """The volunteer's sign-up, read back from the stream first if this process has not seen it."""
        found = self.book.get(request.opportunity_id, request.volunteer_id)
        if found is None:
            await self._catch_up()
            found = self.book.get(request.opportunity_id, request.volunteer_id)
        return found

    async def _free(self, opportunity_id: str, ref: str) -> Entry:
        def free(entry: Entry | None) -> tuple[Entry | None, None]:
            if entry is None or ref not in entry.taken:
                return None, None
            return entry.with_taken(tuple(r for r in entry.taken if r != ref)), None

        entry, _ = await self.places.change(opportunity_id, free)
        assert entry is not None  # an opportunity is never deleted from the ledger
        return entry

    async def _record(self, signup: VolunteerSignup) -> None:
        ack = await self.ctx.publish_durable(signup, provenance=Provenance.MANUAL)
        self.book.take(ack.seq, signup)
        self.metrics.volunteers.set(len(self.book))

    async def _activity(self, signup: VolunteerSignup, opportunity: Opportunity, *, withdrawn: bool) -> None:
        hours = (opportunity.ends - opportunity.starts).total_seconds() / 3600
        activity = VolunteerActivity(
            volunteer_id=signup.volunteer_id,
            opportunity_id=opportunity.opportunity_id,
            organisation=opportunity.organisation,
            skills=opportunity.skills,
            starts=opportunity.starts,
            hours=round(min(max(hours, 0.0), _MAX_HOURS), 2),
            withdrawn=withdrawn,
        )
        await self.ctx.publish_durable(activity, provenance=Provenance.MANUAL)

    async def _publish_opportunity(self, opportunity: Opportunity) -> None:
        """Publish the opportunity's state; then, until the ledger says the same, its newer state.

        Two processes changing one opportunity at once may have their messages stored in the other
        order than their changes. Whoever published last reads the ledger after its message was
        stored: if the ledger moved on, it publishes the ledger's state again. A change after that
        read is published after it by its own process, so the stream's last message per
        opportunity ends up the ledger's state.
        """
        for _ in range(_REPUBLISH):
            await self.ctx.publish_durable(opportunity, provenance=Provenance.MANUAL)
            entry, _ = await self.places.read(opportunity.opportunity_id)
            if entry is None or entry.opportunity == opportunity:
                break
            opportunity = entry.opportunity
        self.metrics.places(opportunity.opportunity_id, opportunity.places_left, opportunity.status)
