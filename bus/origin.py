"""Where a message may come from: ``ce-source`` values reserved to the subjects of their owner.

The broker decides who may publish on which subject, and nothing else: a ``ce-source`` header is
whatever the publisher wrote. In the sandbox the city's components own entities — a replay owns
every subject its recordings hold (``city.public.environment.beach-observation.bragernes-strand``)
and publishes them under the city's sources (``/adapters/beach``). The broker already refuses
those subjects to every pilot (:mod:`bus.access.policy`); what it cannot refuse is a pilot's
reading for an entity of its own that *says* it comes from the city — ``ce-source:
/adapters/beach``, ``provenance: sensor`` — and would reach other pilots' products as the city's.

A :class:`SourceGuard` closes that gap on the consuming side: a bus given one (``Bus.source_guard``)
reads a message whose ``ce-source`` is reserved but whose subject is not one of that source's
owner as a contract violation, ``forged-source``, so it is dead-lettered with that reason and never
reaches a handler.

Decisions, and why:

* **Sound because the broker does its half.** On an owned subject only the owner (and the city's
  other components) can publish — pilots are denied it — so the source found there is the
  city's; a reserved source anywhere else can only be forged. Together the two checks make a
  pilot's reading either its own (its subject, its source) or refused.
* **Deny lists, not a pilot account with mapped imports.** nats-server could also keep a pilot
  apart by giving it an account of its own whose exports ``SANDBOX`` imports through a subject
  mapping (its entities renamed into a namespace of its own). That would move every pilot into an
  account of its own — the replayed city imported into each, JetStream and acknowledgements across
  accounts — and rename the entities products see. The city's entities are known (a recording's
  subjects), and in nats-server a *deny* overrides an *allow*, so a deny per owned subject that a
  pilot's contracts reach keeps the one ``SANDBOX`` account and refuses exactly the forgery.
* **Exact subjects, from declarations.** The owners are the ``SANDBOX`` components' declarations
  (:attr:`bus.access.Declaration.owns` and ``sources``), as the running ``citybus up`` recorded
  them in ``instance.json``; a component that owns no subjects reserves no source. Subjects are
  literal (a recording's), so the check is one set lookup per message.
* **Personal subjects are not checked.** No guest may publish personal data (the broker refuses
  it every personal subject), so a city source found there is the city's. And there a replay cannot
  know its subjects beforehand: a recording names a person by id, and the replay publishes the
  sealed message on the subject of the person's pseudonymous ref, which only the key vault knows.
* **On the read path, once per message**, in :class:`bus.pipeline.EventReader` — every kind of
  delivery (subscription, request, durable consumer) checks alike, and a bus without a guard
  pays nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from bus.errors import ContractViolation

if TYPE_CHECKING:  # the access package imports the bus; the guard needs only the declarations' shape
    from bus.access.users import Declaration

__all__ = ["FORGED_SOURCE", "SourceGuard"]

_PERSONAL = "city.personal."
FORGED_SOURCE = "forged-source"
"""The dead letters' reason for a reserved ``ce-source`` on a subject its owner does not publish."""


class SourceGuard:
    """Reserved ``ce-source`` values and the subjects each may appear on."""

    __slots__ = ("_owners", "_subjects")

    def __init__(self) -> None:
        self._subjects: dict[str, frozenset[str]] = {}
        self._owners: dict[str, str] = {}

    @classmethod
    def from_declarations(cls, declarations: Iterable[Declaration]) -> SourceGuard:
        """The guard of these components: each one's ``sources`` reserved to its ``owns``."""
        guard = cls()
        for d in declarations:
            if d.owns and d.sources:
                guard.reserve(d.sources, d.owns, owner=d.name)
        return guard

    def reserve(self, sources: Iterable[str], subjects: Iterable[str], *, owner: str) -> None:
        """Reserve ``sources`` to ``subjects`` (added to what they were reserved to already)."""
        owned = frozenset(subjects)
        for source in sources:
            self._subjects[source] = self._subjects.get(source, frozenset()) | owned
            self._owners.setdefault(source, owner)

    def __bool__(self) -> bool:
        return bool(self._subjects)

    @property
    def sources(self) -> frozenset[str]:
        """The reserved sources."""
        return frozenset(self._subjects)

    def check(self, subject: str, source: str) -> None:
        """Raise :class:`~bus.errors.ContractViolation` ``forged-source`` when ``source`` is reserved
        and ``subject`` is not one of its owner's."""
        allowed = self._subjects.get(source)
        if allowed is not None and subject not in allowed and not subject.startswith(_PERSONAL):
            raise ContractViolation(
                f"ce-source {source} belongs to {self._owners[source]}, which does not publish {subject}: "
                "the message claims to come from the city and does not",
                reason=FORGED_SOURCE,
            )
