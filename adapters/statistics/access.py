"""Who may ask the statistics service: the desk, the analyst, and each citizen about themselves.

The ``citybus.access`` entry point of the statistics service. For every configured ``statistics``
instance it declares, in the instance's account:

* **the desk** (``statistics-desk``): the citizens' front end (a web page's back end, or
  ``citybus stats compare``). It may send comparison requests for any person —
  ``city.personal.rpc.statistics.comparison-request.*`` — and nothing else; the answers come to
  its own inbox.
* **the analyst** (``analyst``): may ask for a release now
  (``city.internal.rpc.statistics.release-request.*``, ``citybus stats release``), which spends
  privacy budget and is refused when it would exceed it.

And it declares a kind of guest, **citizens**, that operators add by hand, one per person:
``citybus auth add-citizen v-3f9c2a7e51d0`` (in the sandbox) or ``… --account city`` (production).
A citizen's user is named by the person's pseudonymous id and may publish exactly one subject,
``city.personal.rpc.statistics.comparison-request.<its id>``, and read its own inbox. The broker,
not the service, keeps a person to their own figures: a request for anyone else is refused before
it reaches the service, and the answer goes to the asker's inbox, which no other user may read.

Decisions, and why:

* **Citizens are guests** (:mod:`bus.access.guests`): users from outside, added and revoked by an
  operator while ``citybus up`` runs (``citizens.toml`` in the credentials directory; the server
  reloaded), never recorded as components. Pilots are guests of the sandbox only; a citizen's kind
  also allows ``CITY``, because a person asking about themselves is how production is used, and
  the user can do nothing but that. The default stays ``SANDBOX`` (the sandbox's volunteers are
  made up), so a real person's user is a decision written on the command line.
* **Named by the person's id**, checked like the contract checks it (``v-`` and 8 to 32 hex
  digits): a user named otherwise could ask for nobody, so the model refuses it in one line. The
  id is the pseudonym the volunteer platform gives; it names a seed file and a line of
  ``accounts.conf``, never a name or a contact.
* **The desk and the analyst are declared from the configuration** (the configured instances, or
  the default one), so ``citybus up`` and ``citybus auth generate`` issue their seeds with the
  service's. An instance is the service's when it answers the statistics requests, whatever it is
  called.
* **Who else may ask.** Comparisons are personal requests: no client kind (public, internal,
  operator, the gateway's users) publishes ``city.personal.rpc.>``, and organisations and pilots
  ask only their own subjects. A release request is *internal*, and internal clients may ask
  internal services: the ``internal`` user (and a gateway token standing for it) can ask for a
  release too. That spends the budget sooner, never beyond it — the service refuses a release the
  budget does not cover, whoever asks.
* **One statistics service per account.** Its budget lives in its instance's bucket: a second
  instance in the same account would hear the same persons' activity and spend a budget of its
  own on them, so the pair is refused here, where every instance is seen (more *processes* of one
  instance share its budget).
* **Nothing here publishes a dead letter** (``dead_letters=False``): they only ask.
"""

from __future__ import annotations

import re

from adapters.access import configured_instances, in_sandbox
from bus.access import AccessError, Account, Declaration
from bus.access.declared import AccessProvider, Declared
from bus.access.guests import GuestKind
from bus.access.tenancy import asker
from bus.config import Config
from bus.subjects import request_filter
from contracts import ComparisonRequest, Contract, ReleaseRequest

__all__ = [
    "ACCESS",
    "ANALYST",
    "CITIZENS",
    "DESK",
    "analyst_declaration",
    "citizen_declaration",
    "declared",
    "desk_declaration",
]

DESK = "statistics-desk"
"""The user the citizens' front end asks comparisons as, for any person."""
ANALYST = "analyst"
"""The user that asks for releases now (``citybus stats release``)."""

_PERSON = re.compile(r"^v-[0-9a-f]{8,32}$")
"""A person's pseudonymous id, as :class:`~contracts.ComparisonRequest` checks it."""


def desk_declaration() -> Declaration:
    """What the desk may do: ask comparisons for any person, nothing else."""
    return asker(DESK, "statistics desk", request_filter(ComparisonRequest))


def analyst_declaration() -> Declaration:
    """What the analyst may do: ask for releases, nothing else."""
    return asker(ANALYST, "statistics analyst", request_filter(ReleaseRequest))


def citizen_declaration(person: str, produces: tuple[type[Contract], ...] = ()) -> Declaration:
    """What a citizen may do: ask how their own figures compare, on their own subject only.

    Raises :class:`~bus.access.AccessError` (one line) for a name that is no person's id, and for
    contracts to publish (a citizen publishes none).
    """
    if not _PERSON.fullmatch(person):
        raise AccessError(
            f"citizen {person!r}: a citizen's user is named by the person's id, v- and 8 to 32 hex digits "
            "(v-3f9c2a7e51d0), as on the volunteer platform"
        )
    if produces:
        raise AccessError(f"citizen {person!r}: a citizen publishes nothing; add it without --produces")
    return asker(person, "citizen", request_filter(ComparisonRequest, person))


CITIZENS = GuestKind(
    name="citizen",
    declare=citizen_declaration,
    help="add a citizen (their person id) who may ask how their own figures compare, and nothing else",
    reads="its own inbox only: the answers to its own comparison requests",
    accounts=(Account.SANDBOX, Account.CITY),
)
"""Citizens: ``citybus auth add-citizen v-… [--account city]``, kept in ``citizens.toml``."""


def declared(config: Config) -> Declared:
    """The desk and the analyst of every account a statistics service runs in."""
    city: dict[str, Declaration] = {}
    sandbox: dict[str, Declaration] = {}
    instances, _ = configured_instances(config)  # adapters' own provider reports the problems
    services: dict[bool, str] = {}
    for instance in instances:
        answers = instance.adapter.answers
        users = sandbox if in_sandbox(instance) else city
        if ReleaseRequest in answers or ComparisonRequest in answers:
            other = services.setdefault(in_sandbox(instance), instance.name)
            if other != instance.name:
                raise AccessError(
                    f"statistics instances {other} and {instance.name} run in one account: each keeps a "
                    "privacy budget of its own, so together they would spend twice what one allows on the "
                    "same persons; run one instance (its processes share one budget)"
                )
        if ComparisonRequest in answers:
            users.setdefault(DESK, desk_declaration())
        if ReleaseRequest in answers:
            users.setdefault(ANALYST, analyst_declaration())
    return Declared(city=tuple(city.values()), sandbox=tuple(sandbox.values()))


ACCESS = AccessProvider(declared=declared, guests=(CITIZENS,))
"""The ``citybus.access`` entry point of the statistics service."""
