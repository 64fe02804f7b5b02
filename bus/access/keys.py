"""NKey credentials: one key pair per user, issued, stored, loaded and revoked here.

Each user of :mod:`bus.access` authenticates with an NKey (an Ed25519 key pair, NATS's own
format): the server's configuration holds only the *public* key (``U…``); the client proves it
holds the *seed* (``SU…``) by signing a nonce the server sends. A seed is the only secret.

Layout, one file per user, the same ``.nk`` file that ``nsc`` and the ``nats`` CLI read::

    <directory>/                 0700
      CITY/                      0700
        service.nk               0600  the seed, one line
        vicotee-beach.nk
      SANDBOX/
        acme.nk
        old-pilot.revoked        0600  a tombstone: the revoked public key and when (no secret)
        network-server.password  0600  an MQTT user's password, the line itself (for the client)
        network-server.bcrypt    0600  its bcrypt hash (what the server's configuration holds)
      SYS/
        system.nk

MQTT users' passwords live beside the seeds; :mod:`bus.access.passwords` issues and loads them.

Decisions, and why:

* **NKeys, not JWTs.** Decentralised JWT auth (``nsc``) adds an operator, account keys and a
  resolver to rotate users without touching the server's configuration. citybus generates that
  configuration anyway, from the declarations, and reloads it; NKeys keep one kind of key and no
  resolver, and a reload removes a user at once.
* **Seeds are never shown.** A seed is a :class:`~bus.access.private.Secret`;
  :class:`Credential` shows its public key and path only. Log lines carry account, user and
  public key. Nothing here puts a seed into an error message, and clients are pointed at the seed
  *file* (:meth:`Credential.connect_options`), so the seed never sits in an options dict.
* **Seeds never clobber by accident.** A seed is written to a temporary file created 0600
  (whatever the umask), synced, then linked into place (fails if a seed exists, unless
  ``replace``); a crash leaves either the old seed or the new one. Every file here is checked like
  ssh checks its keys (:mod:`bus.access.private`, which also holds what the files share).
* **Revocation leaves a tombstone.** :meth:`CredentialStore.revoke` deletes the seed and writes
  ``<user>.revoked`` (public key and time), so :meth:`~CredentialStore.ensure` does not silently
  issue a new key to a revoked user; :meth:`~CredentialStore.generate` does, on purpose (adding the
  pilot again). The caller then renders the server's configuration again and reloads the server,
  which disconnects the user.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nkeys  # type: ignore[import-untyped]
import structlog

from bus import subjects
from bus.access.passwords import PASSWORD_SUFFIX, Password, ensure_password
from bus.access.private import (
    ACCOUNT,
    USER,
    CredentialError,
    Secret,
    check_names,
    check_private,
    private_dir,
    write_private,
)

__all__ = [
    "Credential",
    "CredentialError",
    "CredentialInfo",
    "CredentialStore",
    "Password",
    "Secret",
    "seed_public_key",
    "write_private",
]

_SEED_SUFFIX = ".nk"
_REVOKED_SUFFIX = ".revoked"


@dataclass(frozen=True, slots=True, repr=False)
class Credential:
    """One user's key pair, loaded from its seed file."""

    account: str
    user: str
    public_key: str
    path: Path
    seed: Secret

    def __repr__(self) -> str:
        return (
            f"Credential(account={self.account!r}, user={self.user!r}, "
            f"public_key={self.public_key!r}, path={str(self.path)!r})"
        )

    @property
    def inbox_prefix(self) -> str:
        """The inbox prefix the user connects with (its permissions allow no other)."""
        return subjects.inbox_prefix(self.user)

    def connect_options(self) -> dict[str, str]:
        """The nats-py ``connect`` options for this user: the seed *file* and the inbox prefix.

        nats-py reads the file whenever it signs (on every connect and reconnect), so a revoked
        user whose file is gone cannot reconnect even with the old configuration.
        """
        return {"nkeys_seed": str(self.path), "inbox_prefix": self.inbox_prefix}


@dataclass(frozen=True, slots=True)
class CredentialInfo:
    """What :meth:`CredentialStore.list` shows of a user: never the seed."""

    account: str
    user: str
    public_key: str
    path: Path
    revoked_at: datetime | None = None
    """When it was revoked (its ``path`` is then the tombstone), or ``None`` while it is valid."""


class CredentialStore:
    """The credentials directory: issue, load, list and revoke NKey users."""

    def __init__(self, directory: Path, *, logger: Any = None) -> None:
        self._dir = Path(directory).expanduser()
        base = logger if logger is not None else structlog.get_logger()
        self._log = base.bind(component="credentials", directory=str(self._dir))

    @property
    def directory(self) -> Path:
        """Where the credentials live."""
        return self._dir

    def seed_path(self, account: str, user: str) -> Path:
        """The seed file of a user (it may not exist)."""
        check_names(account, user)
        return self._dir / account / f"{user}{_SEED_SUFFIX}"

    def _tombstone(self, account: str, user: str) -> Path:
        return self._dir / account / f"{user}{_REVOKED_SUFFIX}"

    # -- issuing ----------------------------------------------------------------------------------

    def generate(self, account: str, user: str, *, replace: bool = False) -> Credential:
        """Issue a new key pair for ``user`` of ``account`` and store its seed (0600).

        An existing seed is an error unless ``replace`` (which rotates the key: the old one stops
        working once the server's configuration is rendered again and reloaded). Issuing a revoked
        user's credentials lifts the revocation.
        """
        path = self.seed_path(account, user)
        directory = private_dir(self._dir, path.parent)
        if path.exists() and not replace:
            raise CredentialError(
                f"{account}/{user} already has credentials ({path}); rotate them explicitly (replace) "
                "or revoke them first"
            )
        raw = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)
        seed = Secret(bytes(raw).decode("ascii"))
        public_key = _public_key(seed)
        tmp = directory / f".{user}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                if sys.platform != "win32":
                    os.fchmod(out.fileno(), 0o600)  # the umask may have taken bits away, never added
                out.write(seed.reveal() + "\n")
                out.flush()
                os.fsync(out.fileno())
            if replace:
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)  # fails, instead of overwriting, if a seed appeared meanwhile
                except FileExistsError:
                    raise CredentialError(f"{account}/{user} already has credentials ({path})") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._tombstone(account, user).unlink(missing_ok=True)
        self._log.info("credentials issued", account=account, user=user, public_key=public_key)
        return Credential(account=account, user=user, public_key=public_key, path=path, seed=seed)

    def ensure(self, users: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Credential]:
        """Load every ``(account, user)``, issuing credentials for the ones that have none.

        Revoked users are skipped (and absent from the result): they stay revoked until
        :meth:`generate` issues them new credentials on purpose.
        """
        loaded: dict[tuple[str, str], Credential] = {}
        for account, user in users:
            if self._tombstone(account, user).exists():
                continue
            if self.seed_path(account, user).exists():
                loaded[(account, user)] = self.load(account, user)
            else:
                loaded[(account, user)] = self.generate(account, user)
        return loaded

    def password_path(self, account: str, user: str) -> Path:
        """The password file of an MQTT user (it may not exist)."""
        check_names(account, user)
        return self._dir / account / f"{user}{PASSWORD_SUFFIX}"

    def ensure_password(self, account: str, user: str) -> Password:
        """The password of an MQTT user, issued (random, 0600 file with its bcrypt hash) if it has none
        (:func:`bus.access.passwords.ensure_password`)."""
        return ensure_password(self._dir, self.password_path(account, user), account, user, self._log)

    # -- reading ----------------------------------------------------------------------------------

    def load(self, account: str, user: str) -> Credential:
        """The credentials of ``user`` of ``account``; :class:`CredentialError` says what is wrong."""
        path = self.seed_path(account, user)
        if not self._dir.is_dir():
            raise CredentialError(
                f"there is no credentials directory {self._dir}: issue the credentials first "
                "(`citybus auth generate`)"
            )
        check_private(self._dir)
        if not path.exists():
            tombstone = self._tombstone(account, user)
            if tombstone.exists():
                info = _read_tombstone(account, user, tombstone)
                raise CredentialError(
                    f"the credentials of {account}/{user} were revoked at "
                    f"{info.revoked_at:%Y-%m-%d %H:%M} UTC (public key {info.public_key}); "
                    "issue new ones to let it in again"
                )
            raise CredentialError(
                f"{account}/{user} has no credentials (expected {path}): issue them "
                "(`citybus auth generate`, or `citybus auth add-<kind> NAME` for a guest of the sandbox)"
            )
        check_private(path.parent)
        check_private(path)
        try:
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise CredentialError(f"cannot read the seed file {path}: {type(exc).__name__}") from None
        seed = Secret(text)
        try:
            public_key = _public_key(seed)
        except (nkeys.NkeysError, ValueError, TypeError, IndexError):
            # The nkeys error is not chained: its arguments could echo the file's content.
            raise CredentialError(
                f"{path} does not hold an NKey user seed (one line starting with 'SU'): issue new "
                "credentials for the user (replacing this file)"
            ) from None
        return Credential(account=account, user=user, public_key=public_key, path=path, seed=seed)

    def list(self) -> list[CredentialInfo]:
        """Every user with credentials or a revocation, account by account, by name."""
        if not self._dir.is_dir():
            return []
        check_private(self._dir)
        found: list[CredentialInfo] = []
        for account_dir in sorted(p for p in self._dir.iterdir() if p.is_dir() and ACCOUNT.match(p.name)):
            account = account_dir.name
            for path in sorted(account_dir.iterdir()):
                user = path.name.removesuffix(path.suffix)
                if not USER.match(user):
                    continue
                if path.suffix == _SEED_SUFFIX:
                    cred = self.load(account, user)
                    found.append(CredentialInfo(account, user, cred.public_key, path))
                elif path.suffix == _REVOKED_SUFFIX:
                    found.append(_read_tombstone(account, user, path))
        return found

    def public_keys(self) -> dict[tuple[str, str], str]:
        """``(account, user) → public key`` of every valid credential, for the server's configuration."""
        return {(i.account, i.user): i.public_key for i in self.list() if i.revoked_at is None}

    # -- revoking ---------------------------------------------------------------------------------

    def revoke(self, account: str, user: str) -> CredentialInfo:
        """Delete a user's seed and leave a tombstone; revoking twice returns the first revocation.

        The user can still connect until the server's configuration is rendered again without its
        key and the server reloaded (SIGHUP), which also disconnects it.
        """
        path = self.seed_path(account, user)
        tombstone = self._tombstone(account, user)
        if not path.exists():
            if tombstone.exists():
                return _read_tombstone(account, user, tombstone)
            raise CredentialError(f"{account}/{user} has no credentials to revoke (no {path})")
        public_key = self.load(account, user).public_key
        now = datetime.now(UTC)
        body = json.dumps({"public_key": public_key, "revoked_at": now.isoformat()})
        fd = os.open(tombstone, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(body + "\n")
        path.unlink()
        self._log.warning("credentials revoked", account=account, user=user, public_key=public_key)
        return CredentialInfo(account, user, public_key, tombstone, now)

    # -- files ------------------------------------------------------------------------------------


def seed_public_key(path: Path) -> str | None:
    """The user public key of the seed in ``path`` (to find whose it is), or ``None`` if the file
    is not a readable user seed."""
    try:
        return _public_key(Secret(Path(path).read_text(encoding="ascii").strip()))
    except (OSError, UnicodeDecodeError, ValueError, TypeError, IndexError, nkeys.NkeysError):
        return None


def _public_key(seed: Secret) -> str:
    """The user public key of a seed; raises ``nkeys.NkeysError`` (or ``ValueError``) for a bad seed."""
    raw = bytearray(seed.reveal().encode("ascii"))
    prefix, _ = nkeys.decode_seed(raw)
    if prefix != nkeys.PREFIX_BYTE_USER:
        raise ValueError("not a user seed")
    pair = nkeys.from_seed(raw)
    try:
        key: bytes = pair.public_key
        return key.decode("ascii")
    finally:
        pair.wipe()


def _read_tombstone(account: str, user: str, path: Path) -> CredentialInfo:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return CredentialInfo(
            account, user, str(data["public_key"]), path, datetime.fromisoformat(data["revoked_at"])
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CredentialError(
            f"the revocation record {path} is unreadable ({type(exc).__name__}): delete it to issue "
            "new credentials, or restore it"
        ) from None
