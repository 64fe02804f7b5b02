"""The provisioner's rights: the registry's streams, the key vault and the declared key-value buckets.

Kept apart from :mod:`bus.access.policy` (which calls these) so that what may create and change a
stream is read in one place. The provisioner is the only user that may: a connection ``citybus up``
opens while it starts (and ``citybus contracts provision``, a ``citybus sandbox join``), closed
once the streams are made.

Decisions, and why:

* **Buckets are the provisioner's too, not their instance's.** The body of a ``STREAM.CREATE``
  (or ``UPDATE``) request is the stream's configuration, and the broker checks only the subject:
  an instance allowed to create ``KV_<bucket>`` could create it over any subject of its account
  (``city.personal.rpc.>``, a citizen's requests) and read what it captured with the stored-message
  get it needs for its keys. So the provisioner creates each bucket an account's users declare
  (``stores``), with the bucket's own subjects only (:mod:`bus.buckets`), and scales it up like a
  stream; the instance binds (``STREAM.INFO``), writes its keys and reads them.
* **Per account.** A bucket lives in the account of the user that declares it (a guest's own
  account, ``SANDBOX`` unless its kind allows ``CITY``), so each account's provisioner gets its
  own users' buckets and no other's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bus.access.personal import Rights, provision_vault
from bus.access.users import Account, Declaration
from bus.subjects import js_api, store_stream
from contracts import Classification

__all__ = ["buckets_by_account", "provisioner_rights"]

_ACTIONS = ("INFO", "CREATE", "UPDATE")


def buckets_by_account(
    adapters: Sequence[Declaration], sandbox_adapters: Sequence[Declaration], guests: Sequence[Declaration]
) -> dict[Account, tuple[str, ...]]:
    """The key-value buckets declared in each account (sorted, each once): ``adapters`` live in
    ``CITY``, ``sandbox_adapters`` in ``SANDBOX``, each guest in its own account (default ``SANDBOX``)."""
    found: dict[Account, set[str]] = {Account.CITY: set(), Account.SANDBOX: set()}
    placed = [(Account.CITY, d) for d in adapters] + [(Account.SANDBOX, d) for d in sandbox_adapters]
    placed += [(d.account or Account.SANDBOX, d) for d in guests]
    for account, d in placed:
        found.setdefault(account, set()).update(d.stores)
    return {account: tuple(sorted(buckets)) for account, buckets in found.items()}


def provisioner_rights(
    r: Rights, streams: Iterable[tuple[Classification, str]], *, vault: bool, buckets: Iterable[str]
) -> None:
    """Read, create and update the registry's ``streams``, the key vault (when ``vault``) and
    ``buckets``' streams — these names exactly: no delete, purge, consumer or data (see the module)."""
    for _, stream in streams:
        for action in _ACTIONS:
            r.pub(js_api("STREAM", action, stream), f"provisions the stream {stream}")
    if vault:
        provision_vault(r)
    for bucket in buckets:
        for action in _ACTIONS:
            r.pub(
                js_api("STREAM", action, store_stream(bucket)),
                f"provisions the key-value store {bucket} (its own subjects only)",
            )
