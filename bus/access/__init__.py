"""Access control, in one place: who may do what on the broker, and how each user logs in.

Split by idea:

* :mod:`bus.access.users` — the values access control speaks in: accounts, kinds of users,
  declarations, users and their permissions;
* :mod:`bus.access.policy` — who may do what: the rules that derive each user's rights from the
  contracts and plain declarations, and what they refuse (pure);
* :mod:`bus.access.declared` — what the installed packages declare through the ``citybus.access``
  entry point, and the one :func:`~bus.access.declared.access_model` built from it;
* :mod:`bus.access.guests` — users from outside added by hand (the sandbox's pilots), kept in a
  TOML file of their kind;
* :mod:`bus.access.render` — the nats-server configuration (``accounts.conf``) a model renders,
  and issuing the credentials it needs;
* :mod:`bus.access.keys` — the key store: NKey seeds, MQTT passwords, revocation;
* :mod:`bus.access.login` — how client commands find a running ``citybus up`` (``instance.json``)
  and log in to it;
* :mod:`bus.access.tokens` — the HTTP gateway's bearer tokens, each standing for a client user that
  reads no personal data (``public``, ``internal``);
* :mod:`bus.access.command` — ``citybus auth``.

The credentials directory (``auth.dir``, default ``<server data dir>/credentials``)::

    credentials/              0700
      accounts.conf           0600  the nats-server accounts block (public keys and hashes only)
      pilots.toml             0600  a kind of guests and the contracts each declared
      tokens.toml             0600  the gateway's bearer tokens (their SHA-256 only) and their users
      CITY/ SANDBOX/ SYS/     0700  one seed file per user, one password file per MQTT user

This package re-exports the names of the users and the policy, which every layer uses, and the
token store, which the gateway uses; the other modules are imported by name.
"""

from bus.access.policy import AccessModel
from bus.access.tokens import TokenError, TokenInfo, TokenStore
from bus.access.users import (
    AccessError,
    Account,
    AuthRow,
    Declaration,
    DeclassificationError,
    Grant,
    Kind,
    Permissions,
    User,
)

__all__ = [
    "AccessError",
    "AccessModel",
    "Account",
    "AuthRow",
    "Declaration",
    "DeclassificationError",
    "Grant",
    "Kind",
    "Permissions",
    "TokenError",
    "TokenInfo",
    "TokenStore",
    "User",
]
