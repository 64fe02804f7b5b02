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

Decisions, and why:

* **NKeys, not JWTs.** Decentralised JWT auth (``nsc``) adds an operator, account keys and a
  resolver to rotate users without touching the server's configuration. citybus generates that
  configuration anyway, from the declarations, and reloads it; NKeys keep one kind of key and no
  resolver, and a reload removes a user at once.
* **Permissions checked like ssh does.** Loading refuses a directory open to other users or a seed
  file readable by them, or one owned by someone else, and says which file and what to run: a
  seed that others could read must be considered leaked.
* **Seeds are never shown.** :class:`Secret` masks itself in ``repr``, ``str`` and f-strings;
  :class:`Credential` shows its public key and path only. Log lines carry account, user and
  public key. Nothing here puts a seed into an error message, and clients are pointed at the seed
  *file* (:meth:`Credential.connect_options`), so the seed never sits in an options dict.
* **Writes are atomic and never clobber by accident.** A seed is written to a temporary file
  created 0600 (whatever the umask), synced, then linked into place (fails if a seed exists, unless
  ``replace``); a crash leaves either the old seed or the new one.
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
import re
import secrets
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bcrypt
import nkeys  # type: ignore[import-untyped]
import structlog

from bus import subjects
from bus.errors import CityBusError

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
_PASSWORD_SUFFIX = ".password"
_HASH_SUFFIX = ".bcrypt"
_BCRYPT_ROUNDS = 11  # nats-server checks it on every MQTT connect: ~0.1 s, then a session
_REVOKED_SUFFIX = ".revoked"
_ACCOUNT = re.compile(r"^[A-Z][A-Z0-9_]*$")
_USER = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")


class CredentialError(CityBusError):
    """Credentials are missing, revoked, malformed or not private enough; the message says what to do."""


class Secret:
    """A seed that does not show itself: ``repr``, ``str`` and formatting print ``'****'``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The seed itself, for the one place that needs it (signing, writing its file)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    def __str__(self) -> str:
        return "****"

    def __format__(self, spec: str) -> str:
        return "****"

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is not pickled: pass the seed file's path instead")


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
        _check_names(account, user)
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
        directory = self._private_dir(path.parent)
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
        _check_names(account, user)
        return self._dir / account / f"{user}{_PASSWORD_SUFFIX}"

    def ensure_password(self, account: str, user: str) -> Password:
        """The password of an MQTT user, issued (random, 0600 file with its bcrypt hash) if it has none.

        The password file holds the password alone, so an operator can pass it on as it is
        (``mosquitto_pub -P "$(cat FILE)"``); its hash sits beside it in ``<user>.bcrypt``, kept so
        that the server's configuration does not change at every start (bcrypt salts each hash).
        """
        path = self.password_path(account, user)
        if path.exists():
            return self._load_password(account, user, path)
        self._private_dir(path.parent)
        secret = Secret(secrets.token_urlsafe(24))
        hashed = self._write_hash(path, secret)
        write_private(path, secret.reveal() + "\n")
        self._log.info("MQTT password issued", account=account, user=user, path=str(path))
        return Password(account, user, path, secret, hashed)

    def _write_hash(self, path: Path, secret: Secret) -> str:
        hashed = bcrypt.hashpw(secret.reveal().encode(), bcrypt.gensalt(_BCRYPT_ROUNDS)).decode("ascii")
        write_private(path.with_suffix(_HASH_SUFFIX), hashed + "\n")
        return hashed

    def _load_password(self, account: str, user: str, path: Path) -> Password:
        _check_private(self._dir)
        _check_private(path.parent)
        _check_private(path)
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
                return Password(account, user, path, secret, self._write_hash(path, secret))
            _check_private(hash_file)
            hashed = hash_file.read_text(encoding="ascii", errors="replace").strip()
        try:
            matches = bcrypt.checkpw(secret.reveal().encode(), hashed.encode("ascii", "replace"))
        except ValueError:  # not a bcrypt hash at all
            matches = False
        if not matches:
            # The password was changed by hand: hash the new one (the operator meant it).
            hashed = self._write_hash(path, secret)
        return Password(account, user, path, secret, hashed)

    # -- reading ----------------------------------------------------------------------------------

    def load(self, account: str, user: str) -> Credential:
        """The credentials of ``user`` of ``account``; :class:`CredentialError` says what is wrong."""
        path = self.seed_path(account, user)
        if not self._dir.is_dir():
            raise CredentialError(
                f"there is no credentials directory {self._dir}: issue the credentials first "
                "(`citybus auth generate`)"
            )
        _check_private(self._dir)
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
        _check_private(path.parent)
        _check_private(path)
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
        _check_private(self._dir)
        found: list[CredentialInfo] = []
        for account_dir in sorted(p for p in self._dir.iterdir() if p.is_dir() and _ACCOUNT.match(p.name)):
            account = account_dir.name
            for path in sorted(account_dir.iterdir()):
                user = path.name.removesuffix(path.suffix)
                if not _USER.match(user):
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

    def _private_dir(self, directory: Path) -> Path:
        """Create ``directory`` (and the credentials directory) 0700, or check that it is private."""
        for d in (self._dir, directory):
            if d.exists():
                if not d.is_dir():
                    raise CredentialError(f"{d} is not a directory: the credentials need a directory there")
                _check_private(d)
                continue
            try:
                d.mkdir(parents=True, mode=0o700)
                os.chmod(d, 0o700)  # mkdir's mode is filtered by the umask
            except OSError as exc:
                raise CredentialError(f"cannot create the credentials directory {d}: {exc.strerror}") from exc
        return directory


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``, atomically, readable by its owner only (0600): a temporary file
    created 0600 (whatever the umask), synced, then renamed over the old one."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise CredentialError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            if sys.platform != "win32":
                os.fchmod(out.fileno(), 0o600)
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _check_names(account: str, user: str) -> None:
    # The names become path parts: nothing that could leave the directory.
    if not _ACCOUNT.match(account):
        raise CredentialError(f"account {account!r} must be upper case letters, digits and '_' (CITY)")
    if not _USER.match(user):
        raise CredentialError(f"user {user!r} must be kebab case ('vicotee-beach')")


def _check_private(path: Path) -> None:
    """Refuse a credentials file or directory that other users can reach, or that is not ours."""
    if sys.platform == "win32":
        return  # no POSIX modes; the directory's ACL is up to the operator
    st = path.stat()
    what = "directory" if stat.S_ISDIR(st.st_mode) else "file"
    if st.st_uid != os.getuid():
        raise CredentialError(
            f"the credentials {what} {path} belongs to uid {st.st_uid}, not to this user "
            f"(uid {os.getuid()}): run citybus as its owner, or `chown` it"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        if what == "directory":
            raise CredentialError(
                f"the credentials directory {path} is open to other users (mode {mode:04o}): "
                f"run `chmod 700 {path}`"
            )
        raise CredentialError(
            f"the seed file {path} is readable by other users (mode {mode:04o}): run `chmod 600 {path}`, "
            "and since others could read it, revoke it and issue new credentials"
        )


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
