"""The ``replay`` user of ``SANDBOX``: who ``citybus replay`` runs as against a running ``citybus up``.

``citybus replay FILE…`` runs the replay adapter on its own, as an instance named ``replay``
(``--name`` chooses another), and logs in as that instance's user. ``citybus up`` runs only the
configured instances, so without this the user would not exist and the command would stop at
``SANDBOX/replay has no credentials``. This module is the ``citybus.access`` entry point that
declares it, so ``citybus up`` and ``citybus auth generate`` issue its credentials.

Decisions, and why:

* **It reads no files.** A configured replay's rights follow the recordings it is given; the
  command line's recordings are not known in advance, so ``replay`` may publish every public and
  internal contract — what a recording of the city holds. **Never personal ones:** a recording
  with personal data is configured as an ``[adapters.<name>]`` instance, whose rights
  ``citybus auth show`` lists for review.
* **It is a replay like any other**: it answers ``replay`` control requests
  (``citybus sandbox status --instance replay``) and publishes its clock.
* **A configured instance named ``replay`` wins**: then the command logs in as that instance.
"""

from __future__ import annotations

from bus.access import Declaration
from bus.auth import Declared
from bus.config import Config
from contracts import Classification, default_registry
from sandbox.adapter import SandboxReplay

__all__ = ["COMMAND_LINE_INSTANCE", "declared", "replay_declaration"]

COMMAND_LINE_INSTANCE = "replay"
"""The instance name, and so the user, of ``citybus replay`` (its ``--name`` default)."""


def replay_declaration(name: str = COMMAND_LINE_INSTANCE) -> Declaration:
    """What the command line's replay may do: publish public and internal contracts, keep a clock."""
    produces = tuple(
        c for c in default_registry() if c.__contract__.classification is not Classification.PERSONAL
    )
    return Declaration(
        name,
        consumes=(),
        produces=produces,
        declassifier=SandboxReplay.declassifier,
        control=SandboxReplay.control,
    )


def declared(config: Config) -> Declared:
    """The ``citybus.access`` entry point: the ``replay`` user of ``SANDBOX``, unless an instance of
    that name is configured (it declares its own rights)."""
    if COMMAND_LINE_INSTANCE in config.adapters:
        return Declared()
    return Declared(on_demand=(replay_declaration(),))
