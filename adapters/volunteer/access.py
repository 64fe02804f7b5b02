"""Who may talk to the volunteer platform: its organisations (tenants) and its desk.

The ``citybus.access`` entry point of the volunteer platform. For every configured
``volunteer-platform`` instance it declares, in the instance's account:

* **one user per organisation** of its ``organisations``, named like the organisation, that may
  send requests on exactly two subjects — ``city.internal.rpc.community.opportunity-offer.<its id>``
  and ``city.personal.rpc.community.roster-request.<its id>`` — and read its own inbox. The broker
  refuses it any other organisation's subjects, so an organisation can neither offer as another
  nor ask another's roster, and it reads no personal subject: the roster comes to its inbox.
* **the desk** (``volunteer-desk``): the front door through which citizens sign up, change and
  withdraw (a web form's back end, ``citybus volunteer signup``). It may send sign-up requests for
  any opportunity, and nothing else.

Decisions, and why:

* **Declared from the platform's configuration**, as ``citybus up`` runs it (the configured
  instances, or the default one), so ``citybus up`` and ``citybus auth generate`` issue the
  organisations' credentials with the platform's, and adding an organisation to the list is
  how one is let in.
* **Neither publishes a dead letter** (``dead_letters=False``): they only ask.
"""

from __future__ import annotations

from adapters.access import configured_instances, in_sandbox
from adapters.volunteer.adapter import VolunteerConfig, VolunteerPlatform
from bus.access import Declaration
from bus.access.declared import AccessProvider, Declared
from bus.access.tenancy import asker
from bus.config import Config
from bus.subjects import request_filter
from contracts import OpportunityOffer, RosterRequest, SignupRequest

__all__ = ["ACCESS", "DESK", "declared", "desk_declaration", "organisation_declaration"]

DESK = "volunteer-desk"
"""The user citizens' sign-ups come through."""


def organisation_declaration(organisation: str) -> Declaration:
    """What an organisation may do: offer opportunities and ask its roster, as itself only."""
    return asker(
        organisation,
        "organisation",
        request_filter(OpportunityOffer, organisation),
        request_filter(RosterRequest, organisation),
    )


def desk_declaration() -> Declaration:
    """What the desk may do: send citizens' sign-up requests, for any opportunity."""
    return asker(DESK, "volunteer desk", request_filter(SignupRequest))


def declared(config: Config) -> Declared:
    """The organisations and the desk of every configured platform instance, by account."""
    city: dict[str, Declaration] = {}
    sandbox: dict[str, Declaration] = {}
    instances, _ = configured_instances(config)  # adapters' own provider reports the problems
    for instance in instances:
        if not issubclass(instance.adapter, VolunteerPlatform):
            continue
        users = sandbox if in_sandbox(instance) else city
        users.setdefault(DESK, desk_declaration())
        assert isinstance(instance.config, VolunteerConfig)
        for organisation in instance.config.organisations:
            users.setdefault(organisation, organisation_declaration(organisation))
    return Declared(city=tuple(city.values()), sandbox=tuple(sandbox.values()))


ACCESS = AccessProvider(declared=declared)
"""The ``citybus.access`` entry point of the volunteer platform."""
