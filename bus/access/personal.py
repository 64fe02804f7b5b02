"""The rights personal data needs beyond its contracts: the key vault (:mod:`bus.personal`).

Kept apart from :mod:`bus.access.policy` (which calls these) so that what personal data may do is
read in one place.
"""

from __future__ import annotations

from typing import Protocol

from bus.access.users import Declaration
from bus.personal.vault import ERASED_SUBJECT, KEYS_FILTER, PEPPER_SUBJECT, VAULT_STREAM
from bus.subjects import js_api

__all__ = ["Rights", "provision_vault", "vault_rights"]


class Rights(Protocol):
    """Where rights are added (:class:`bus.access.policy._Rights`)."""

    def pub(self, subject: str, why: str) -> None:
        """May publish ``subject``, because ``why``."""

    def sub(self, subject: str, why: str) -> None:
        """May subscribe ``subject``, because ``why``."""


def provision_vault(r: Rights) -> None:
    """The provisioner's: it creates and updates the account's key vault with the streams."""
    for action in ("INFO", "CREATE", "UPDATE"):
        r.pub(js_api("STREAM", action, VAULT_STREAM), "provisions the personal key vault")


def vault_rights(r: Rights, d: Declaration) -> None:
    """What an adapter handling sealed personal contracts needs of the key vault (:mod:`bus.personal`):
    to read keys (to open, or to seal), to create the key of a person it is the first to write about,
    and to hear that a key was destroyed. It cannot destroy a key or list the vault. (A producer could
    publish over a key, which the bus never does: that would lose data, not reveal it.)"""
    writes = any(c.__contract__.sealed for c in d.produces)
    if not writes and not any(c.__contract__.sealed for c in d.consumes):
        return
    r.pub(js_api("STREAM", "MSG", "GET", VAULT_STREAM), "reads the keys of the persons it handles")
    if writes:
        r.pub(KEYS_FILTER, "creates the key of a person it is the first to write about")
        r.pub(PEPPER_SUBJECT, "creates the vault's pepper, if it is the first to use the vault")
    r.sub(ERASED_SUBJECT, "hears that a person's key was destroyed, to forget it at once")
