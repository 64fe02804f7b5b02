"""The sign-ups the platform holds, in memory, as the ``community.volunteer-signup`` stream says.

Every confirmed, changed or withdrawn sign-up is a :class:`~contracts.VolunteerSignup` stored in
JetStream; the :class:`Book` is what they add up to: the current sign-up of each volunteer for
each opportunity, with their contact details, for the organisation's roster. It is rebuilt from
the stream at start (``ctx.recall``) and kept in step with it afterwards, so a restart forgets
nothing and a second platform process sees the sign-ups the first one took.

Decisions, and why:

* **The stream's order decides.** Each sign-up is taken with its stream sequence, and one older
  than the last taken for the same volunteer and opportunity is ignored: the process that
  published a change applies it at once (its acknowledgement names the sequence) and reading the
  stream back later does not undo it with the older message before it.
* **Only in memory.** The stream (sealed, once the bus seals personal payloads) is where the
  personal data rests; this is a view of it, gone with the process.
"""

from __future__ import annotations

from contracts import Purpose, RosterEntry, VolunteerSignup

__all__ = ["Book", "has_purpose"]


def has_purpose(signup: VolunteerSignup, purpose: Purpose) -> bool:
    """Whether the sign-up's consent covers ``purpose``."""
    return signup.consent is not None and purpose in signup.consent.purposes


class Book:
    """The current sign-ups, by opportunity and volunteer."""

    def __init__(self) -> None:
        self._current: dict[tuple[str, str], VolunteerSignup] = {}
        self._seq: dict[tuple[str, str], int] = {}

    def take(self, seq: int, signup: VolunteerSignup) -> None:
        """Apply a sign-up stored at stream sequence ``seq`` (an older one than known is ignored)."""
        key = (signup.task_id, signup.volunteer_id)
        if seq <= self._seq.get(key, 0):
            return
        self._seq[key] = seq
        if signup.status == "withdrawn":
            self._current.pop(key, None)
        else:
            self._current[key] = signup

    def volunteers(self) -> set[str]:
        """The ids of the volunteers signed up for anything."""
        return {volunteer for _, volunteer in self._current}

    def forget(self, volunteer_id: str) -> int:
        """Drop every sign-up of a volunteer (erased); return how many there were. Their stored
        messages can no longer be opened, so reading the stream back does not bring them again."""
        keys = [key for key in self._current if key[1] == volunteer_id]
        for key in keys:
            del self._current[key]
        return len(keys)

    def get(self, opportunity_id: str, volunteer_id: str) -> VolunteerSignup | None:
        """The volunteer's current sign-up for the opportunity, if any."""
        return self._current.get((opportunity_id, volunteer_id))

    def count(self, opportunity_id: str) -> int:
        """How many volunteers are signed up for the opportunity."""
        return sum(1 for opportunity, _ in self._current if opportunity == opportunity_id)

    def __len__(self) -> int:
        return len(self._current)

    def roster(self, organisation: str, opportunity_id: str | None = None) -> tuple[RosterEntry, ...]:
        """The organisation's volunteers (of one opportunity, or all of its own), by opportunity and
        time of signing up. Sign-ups for other organisations' opportunities are never among them."""
        entries = [
            RosterEntry(
                opportunity_id=s.task_id,
                volunteer_id=s.volunteer_id,
                name=s.name,
                email=s.email,
                phone=s.phone,
                skills=s.skills,
                signed_up_at=s.signed_up_at,
            )
            for s in self._current.values()
            if s.organisation == organisation and opportunity_id in (None, s.task_id)
        ]
        return tuple(sorted(entries, key=lambda e: (e.opportunity_id, e.signed_up_at, e.volunteer_id)))
