"""The rights personal data needs beyond its contracts: the key vault (:mod:`bus.personal`).

Kept apart from :mod:`bus.access.policy` (which calls these) so that what personal data may do is
read in one place.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from bus.access.users import AccessError, Declaration
from bus.personal.vault import ERASED_SUBJECT, KEYS_FILTER, PEPPER_SUBJECT, VAULT_STREAM
from bus.subjects import js_api
from contracts import Classification

__all__ = ["Rights", "personal_rights", "privacy_rights", "provision_vault", "vault_rights"]


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


def privacy_rights(
    r: Rights, d: Declaration, streams: Iterable[tuple[Classification, str]], *, label: str, guest: bool
) -> None:
    """The privacy service's (``privacy``, :mod:`bus.personal.rights`): to read every stored message
    of the personal streams by sequence and erase it (``MSG.GET``, ``MSG.DELETE``, ``INFO`` for their
    bounds), to read and destroy keys in the vault, and to tell every process a key is gone.

    No other user may erase a stored personal message or destroy a key (adapters that ``recalls``
    read their own contracts' streams, but never delete), and nobody purges a stream (a purge
    leaves the bytes on disk). It gets no consumer (whose deliver subject could be any subject).
    Only adapters may be it, never a guest."""
    if not d.privacy:
        return
    if guest:
        raise AccessError(f"{label}: a guest cannot be the privacy service; only citybus's own adapters")
    for stream in (name for classification, name in streams if classification is Classification.PERSONAL):
        r.pub(js_api("STREAM", "INFO", stream), f"finds where {stream} begins and ends")
        r.pub(js_api("STREAM", "MSG", "GET", stream), f"reads the messages of {stream} to find a person's")
        r.pub(js_api("STREAM", "MSG", "DELETE", stream), f"erases a person's messages from {stream}")
    r.pub(js_api("STREAM", "MSG", "GET", VAULT_STREAM), "reads a person's key, to open what it exports")
    r.pub(js_api("STREAM", "MSG", "DELETE", VAULT_STREAM), "destroys a person's key (erasure)")
    r.pub(PEPPER_SUBJECT, "creates the vault's pepper, if it is the first to use the vault")
    r.pub(ERASED_SUBJECT, "tells every process that a person's key was destroyed")
    r.sub(ERASED_SUBJECT, "hears that a person's key was destroyed, to forget it at once")


def personal_rights(
    r: Rights, d: Declaration, streams: Iterable[tuple[Classification, str]], *, label: str, guest: bool
) -> None:
    """Everything an adapter's personal data needs beyond its contracts: the vault (:func:`vault_rights`)
    and, for the privacy service, the stored personal messages (:func:`privacy_rights`)."""
    vault_rights(r, d)
    privacy_rights(r, d, streams, label=label, guest=guest)
