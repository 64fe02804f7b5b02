"""MQTT passwords: MQTT clients cannot sign with an NKey, so their users log in with a password.

:meth:`bus.access.keys.CredentialStore.ensure_password` issues and loads them through
:func:`ensure_password`; the server's configuration (:mod:`bus.access.render`) holds the bcrypt
hash only.

Decisions, and why:

* **The password file holds the password alone**, so an operator can pass it on as it is
  (``mosquitto_pub -P "$(cat FILE)"``); its hash sits beside it in ``<user>.bcrypt``.
* **The hash is kept, not recomputed**: bcrypt salts each hash, so hashing at every start would
  change the server's configuration at every start.
* **A password changed by hand is meant**: when the file no longer matches the hash, the new
  password is hashed. A file in the JSON format of an earlier citybus is rewritten in this one.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt

from bus.access.private import CredentialError, Secret, check_private, private_dir, write_private

__all__ = ["PASSWORD_SUFFIX", "Password", "ensure_password"]

PASSWORD_SUFFIX = ".password"
"""The suffix of a password file in an account's directory."""
_HASH_SUFFIX = ".bcrypt"
_BCRYPT_ROUNDS = 11  # nats-server checks it on every MQTT connect: ~0.1 s, then a session


@dataclass(frozen=True, slots=True, repr=False)
class Password:
    """An MQTT user's password (MQTT clients cannot sign with an NKey) and its bcrypt hash.

    The server's configuration holds the hash only; the password sits in its 0600 file, for the
    MQTT client's operator.
    """

    account: str
    user: str
    path: Path
    password: Secret
    bcrypt_hash: str

    def __repr__(self) -> str:
        return f"Password(account={self.account!r}, user={self.user!r}, path={str(self.path)!r})"


def ensure_password(root: Path, path: Path, account: str, user: str, log: Any) -> Password:
    """The password of an MQTT user, issued (random, 0600 file with its bcrypt hash) if it has none.

    The password file holds the password alone, so an operator can pass it on as it is
    (``mosquitto_pub -P "$(cat FILE)"``); its hash sits beside it in ``<user>.bcrypt``, kept so
    that the server's configuration does not change at every start (bcrypt salts each hash).
    """
    if path.exists():
        return _load_password(root, account, user, path)
    private_dir(root, path.parent)
    secret = Secret(secrets.token_urlsafe(24))
    hashed = _write_hash(path, secret)
    write_private(path, secret.reveal() + "\n")
    log.info("MQTT password issued", account=account, user=user, path=str(path))
    return Password(account, user, path, secret, hashed)


def _write_hash(path: Path, secret: Secret) -> str:
    hashed = bcrypt.hashpw(secret.reveal().encode(), bcrypt.gensalt(_BCRYPT_ROUNDS)).decode("ascii")
    write_private(path.with_suffix(_HASH_SUFFIX), hashed + "\n")
    return hashed


def _load_password(root: Path, account: str, user: str, path: Path) -> Password:
    check_private(root)
    check_private(path.parent)
    check_private(path)
    unreadable = (
        f"the password file {path} is unreadable: delete it and run "
        "`citybus auth generate` to issue a new password"
    )
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        raise CredentialError(unreadable) from None  # not chained: it could echo the file
    hash_file = path.with_suffix(_HASH_SUFFIX)
    if text.startswith("{"):
        # Issued by an earlier citybus: JSON with the password and its hash. Rewritten as the
        # password alone and the hash beside it, so the file can be used as it is.
        try:
            data = json.loads(text)
            secret, hashed = Secret(str(data["password"])), str(data["bcrypt"])
        except (ValueError, KeyError, TypeError):
            raise CredentialError(unreadable) from None
        write_private(hash_file, hashed + "\n")
        write_private(path, secret.reveal() + "\n")
    else:
        if not text or any(c.isspace() for c in text):
            raise CredentialError(unreadable)
        secret = Secret(text)
        if not hash_file.exists():
            return Password(account, user, path, secret, _write_hash(path, secret))
        check_private(hash_file)
        hashed = hash_file.read_text(encoding="ascii", errors="replace").strip()
    try:
        matches = bcrypt.checkpw(secret.reveal().encode(), hashed.encode("ascii", "replace"))
    except ValueError:  # not a bcrypt hash at all
        matches = False
    if not matches:
        # The password was changed by hand: hash the new one (the operator meant it).
        hashed = _write_hash(path, secret)
    return Password(account, user, path, secret, hashed)
