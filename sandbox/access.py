"""What the sandbox declares through the ``citybus.access`` entry point: its pilots, and the
``replay`` user of ``citybus replay``.

**Pilots** are companies trying their services on the replayed city. Operators add them by hand
(``citybus auth add-pilot acme --produces CONTRACT…``, kept in ``pilots.toml`` of the credentials
directory, :mod:`bus.access.guests`); :func:`pilot_declaration` says what one may do.

**The replay user.** ``citybus replay FILE…`` runs the replay adapter on its own, as an instance
named ``replay`` (``--name`` chooses another), and logs in as that instance's user. ``citybus up``
runs only the configured instances, so without this the user would not exist and the command
would stop at ``SANDBOX/replay has no credentials``; :func:`declared` declares it, so
``citybus up`` and ``citybus auth generate`` issue its credentials.

Decisions, and why:

* **Pilots read, publish what they declare, and nothing personal.** A pilot reads the sandbox's
  replayed public and internal data whole (``reads``) and the replay's clock (``clocks``), and
  publishes only the contracts it declared. It never handles personal data (``personal=False``:
  a pilot declaring a personal contract is refused) and never publishes a dead letter
  (``dead_letters=False``): it reads the sandbox's dead letters, which is how it sees why its
  messages were refused (a personal message's dead letter is personal, out of its reach), but a
  forged one would be taken for the bus's record.
* **Pilots publish their own entities only.** The replay owns what its recordings hold
  (:meth:`sandbox.adapter.SandboxReplay.owned`): the broker denies those subjects to every pilot,
  and the sandbox's consumers dead-letter the recorded sources anywhere else (``forged-source``,
  :mod:`bus.origin`). A ``citybus sandbox join`` instance is a pilot too (:mod:`adapters.join`).
* **The replay user reads no files.** A configured replay's rights follow the recordings it is
  given; the command line's recordings are not known in advance, so ``replay`` may publish every
  public and internal contract — what a recording of the city holds. **Never personal ones:** a
  recording with personal data is configured as an ``[adapters.<name>]`` instance, whose rights
  ``citybus auth show`` lists for review.
* **It is a replay like any other**: it answers ``replay`` control requests
  (``citybus sandbox status --instance replay``), publishes its clock and follows the clocks.
* **A configured instance named ``replay`` wins**: then the command logs in as that instance.
"""

from __future__ import annotations

from bus.access import Declaration
from bus.access.declared import AccessProvider, Declared
from bus.access.guests import GuestKind
from bus.config import Config
from contracts import CITY_PACKAGE, Classification, Contract, default_registry
from sandbox.adapter import SandboxReplay

__all__ = ["ACCESS", "COMMAND_LINE_INSTANCE", "PILOTS", "declared", "pilot_declaration", "replay_declaration"]

COMMAND_LINE_INSTANCE = "replay"
"""The instance name, and so the user, of ``citybus replay`` (its ``--name`` default)."""


def replay_declaration(name: str = COMMAND_LINE_INSTANCE) -> Declaration:
    """What the command line's replay may do: publish the city's public and internal contracts, keep
    a clock.

    The city's own, not every installed one: this user is declared by ``citybus up`` at start and
    recorded in ``instance.json``, and ``citybus auth`` refuses to act when its rights would differ,
    so rights that grew with every package installed later would lock a company out of ``auth``
    while the sandbox runs. A recording of a company's contracts is replayed by a configured
    ``sandbox-replay`` instance, which declares what its files hold.
    """
    produces = tuple(
        c
        for c in default_registry().of_package(CITY_PACKAGE)
        # Never personal data; never the bus's own records (dead letters, erasure records): a
        # replay that published those could forge what operators and the privacy metrics count.
        if c.__contract__.classification is not Classification.PERSONAL and c.__contract__.domain != "citybus"
    )
    return Declaration(
        name,
        consumes=(),
        produces=produces,
        declassifier=SandboxReplay.declassifier,
        control=SandboxReplay.control,
        clocks=True,
    )


def pilot_declaration(name: str, produces: tuple[type[Contract], ...]) -> Declaration:
    """What a pilot may do: publish ``produces``; read the replayed public and internal data and
    the clock; never personal data, never a dead letter."""
    return Declaration(
        name,
        consumes=(),
        produces=produces,
        declassifier=False,
        kind="pilot",
        reads=(Classification.PUBLIC, Classification.INTERNAL),
        dead_letters=False,
        personal=False,
        clocks=True,
    )


PILOTS = GuestKind(
    name="pilot",
    declare=pilot_declaration,
    help="add a sandbox pilot with the contracts it publishes",
    reads="the sandbox's replayed public and internal data, and the replay's clock",
)
"""The sandbox's pilots: ``citybus auth add-pilot``, ``pilots.toml``."""


def declared(config: Config) -> Declared:
    """The ``replay`` user of ``SANDBOX``, unless an instance of that name is configured (it
    declares its own rights)."""
    if COMMAND_LINE_INSTANCE in config.adapters:
        return Declared()
    return Declared(on_demand=(replay_declaration(),))


ACCESS = AccessProvider(declared=declared, guests=(PILOTS,))
"""The ``citybus.access`` entry point of ``sandbox``."""
