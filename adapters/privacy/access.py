"""Who may ask the privacy service: the data protection officer.

The ``citybus.access`` entry point of the privacy service. For every configured ``privacy``
instance it declares, in the instance's account, one user, ``privacy-officer``, that may send the
two requests the service answers — ``city.personal.rpc.citybus.personal-export-request.<case>``
and ``city.personal.rpc.citybus.erasure-request.<case>`` — and read its own inbox, where the
export or the receipt comes back. Nothing else: it reads no stream and no personal subject, so a
leaked officer seed can ask for one person at a time, each request a case the service records
(``citybus.erasure-record``), never read the streams wholesale.

Decisions, and why:

* **A user of its own**, not the operator's: operators run the bus and see no personal data; the
  officer handles citizens' requests and sees exactly what those return (GDPR art. 15 and 17 are
  the controller's duties, usually its data protection officer's).
* **Declared from the service's configuration** (the configured instances, or the default one),
  so ``citybus auth generate`` issues its seed with the service's, and no privacy service means
  no officer.
* **It publishes no dead letter** (``dead_letters=False``): it only asks.
"""

from __future__ import annotations

from adapters.access import configured_instances, in_sandbox
from adapters.privacy.adapter import PrivacyService
from bus.access import Declaration
from bus.access.declared import AccessProvider, Declared
from bus.access.tenancy import asker
from bus.config import Config
from bus.subjects import request_filter
from contracts import ErasureRequest, PersonalExportRequest

__all__ = ["ACCESS", "OFFICER", "declared", "officer_declaration"]

OFFICER = "privacy-officer"
"""The user a front end for citizens' requests about their data asks the privacy service as."""


def officer_declaration() -> Declaration:
    """What the officer may do: ask the privacy service for exports and erasures, nothing else."""
    return asker(
        OFFICER, "privacy officer", request_filter(PersonalExportRequest), request_filter(ErasureRequest)
    )


def declared(config: Config) -> Declared:
    """The officer of every account a privacy service runs in."""
    city: dict[str, Declaration] = {}
    sandbox: dict[str, Declaration] = {}
    instances, _ = configured_instances(config)  # adapters' own provider reports the problems
    for instance in instances:
        if issubclass(instance.adapter, PrivacyService):
            (sandbox if in_sandbox(instance) else city).setdefault(OFFICER, officer_declaration())
    return Declared(city=tuple(city.values()), sandbox=tuple(sandbox.values()))


ACCESS = AccessProvider(declared=declared)
"""The ``citybus.access`` entry point of the privacy service."""
