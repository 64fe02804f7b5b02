"""Bearer tokens of the HTTP gateway: who may read internal data over HTTP, without a NATS key.

``citybus auth add-token NAME --user internal`` issues one; ``citybus auth revoke-token NAME``
revokes it. A token stands for a *client user* of one account (``SANDBOX/internal``): the gateway
serves its caller from what that NATS user reads, so the broker keeps deciding who sees what. The
tokens live in ``tokens.toml`` in the credentials directory, 0600::

    [tokens.acme-research]
    account = "SANDBOX"
    user = "internal"
    sha256 = "3b0c…"
    created = 2026-12-07T05:10:00Z

Decisions, and why:

* **Only a hash is kept.** A token is ``cbt_`` and 32 random bytes in URL-safe base64, printed once
  by :meth:`TokenStore.issue`; the file holds its SHA-256. A copy of the file (a backup, a support
  bundle) lets nobody in. A plain SHA-256 is enough where a password needs a slow hash: the token
  has 256 random bits, so there is nothing to guess from a dictionary.
* **Looked up by hash.** :meth:`TokenStore.resolve` hashes what the caller sent and looks the digest
  up, then compares with :func:`hmac.compare_digest`: the time taken depends on a hash the caller
  cannot steer, never on how many leading characters of a real token it got right.
* **Only users that read no personal data.** A token maps to ``public`` or ``internal``
  (:data:`TOKEN_USERS`): the gateway never serves personal data, and a token is a secret that
  travels in headers and proxies' logs more easily than a seed file.
* **A revoke takes effect at once.** The file is written whole (a temporary file, then a rename), and
  :meth:`TokenStore.resolve` stats it on every call and parses it again when its inode, size or
  times changed — or changed too recently for them to show the next change (git's "racily clean"
  rule): a gateway needs no reload, and between changes a request costs one ``stat`` and one hash.
  A file that does not parse refuses every token (``ConfigError``) rather than keep an old, perhaps
  revoked, list.
* **Its own TOML writer**, :func:`~bus.access.guests.toml_string` and
  :func:`~bus.access.guests.toml_key`, as for the guests' files.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat
import sys
import time
import tomllib
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bus.access.guests import toml_key, toml_string
from bus.access.joined import credentials_lock
from bus.access.private import private_dir, write_private
from bus.access.users import Account, Kind
from bus.errors import CityBusError, ConfigError

__all__ = [
    "TOKENS_FILE",
    "TOKEN_ACCOUNTS",
    "TOKEN_PREFIX",
    "TOKEN_USERS",
    "TokenError",
    "TokenInfo",
    "TokenStore",
    "token_digest",
]

TOKENS_FILE = "tokens.toml"
"""The tokens' file, in the credentials directory."""
TOKEN_PREFIX = "cbt_"
"""What every citybus token starts with, so a leaked one is recognised (secret scanners, logs)."""
TOKEN_USERS = (Kind.PUBLIC.value, Kind.INTERNAL.value)
"""The users a token may stand for: the client users that read no personal data."""
TOKEN_ACCOUNTS = (Account.CITY.value, Account.SANDBOX.value)
"""The accounts a token may belong to: those with data (not ``SYS``)."""

_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_TOKEN = re.compile(rf"{TOKEN_PREFIX}[A-Za-z0-9_-]{{43}}")  # 32 bytes: 43 base64 characters, no padding
_DIGEST = re.compile(r"[0-9a-f]{64}")
_TABLE = "tokens"
_KEYS = frozenset({"account", "user", "sha256", "created"})
_SETTLE = 2_000_000_000
"""Nanoseconds after a change to the file during which its ``stat`` is not trusted to show the next."""


class TokenError(CityBusError, ValueError):
    """A token that cannot be issued or revoked as asked; the message says what to do instead."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What is known of a token: never the token itself."""

    name: str
    """Who holds it, kebab case (``acme-research``)."""
    account: str
    """``CITY`` or ``SANDBOX``."""
    user: str
    """The NATS user it stands for: ``public`` or ``internal``."""
    created: str
    """When it was issued, ISO 8601 in UTC (``2026-12-07T05:10:00Z``)."""

    @property
    def label(self) -> str:
        """``ACCOUNT/user``, as the rest of citybus names a user."""
        return f"{self.account}/{self.user}"


@dataclass(frozen=True, slots=True)
class _Entry:
    info: TokenInfo
    digest: str


def token_digest(token: str) -> str:
    """The SHA-256 (hex) of ``token``: what the file keeps of it."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class TokenStore:
    """The gateway's tokens in ``<directory>/tokens.toml`` (or ``file``): issued, listed, revoked, resolved.

    One instance may serve a gateway for its whole life: :meth:`resolve` follows the file's changes.
    """

    def __init__(self, directory: Path, *, file: Path | None = None) -> None:
        self._directory = Path(directory).expanduser()
        self._path = Path(file).expanduser() if file is not None else self._directory / TOKENS_FILE
        self._seen: tuple[int, int, int, int] | None = None
        self._settled = False
        self._by_digest: dict[str, _Entry] = {}

    @property
    def path(self) -> Path:
        """The tokens' file."""
        return self._path

    def issue(self, name: str, account: str, user: str) -> str:
        """Issue a token named ``name`` for ``account``/``user`` and return it: the only time it is seen."""
        if not _NAME.fullmatch(name):
            raise TokenError(f"{name!r} cannot name a token: use kebab case ('acme-research')")
        if account not in TOKEN_ACCOUNTS:
            raise TokenError(f"a token belongs to account {' or '.join(TOKEN_ACCOUNTS)}, not {account!r}")
        if user not in TOKEN_USERS:
            raise TokenError(
                f"a token cannot stand for {user!r}: tokens map only to the users that read no personal "
                f"data ({', '.join(TOKEN_USERS)}; --user internal reads public and internal data)"
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        created = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        with self._locked():
            entries = _read(self._path)
            taken = next((e.info for e in entries if e.info.name == name), None)
            if taken is not None:
                raise TokenError(
                    f"token {name!r} already exists (for {taken.label}, created {taken.created}): choose "
                    f"another name, or `citybus auth revoke-token {name}` first"
                )
            issued = _Entry(TokenInfo(name, account, user, created), token_digest(token))
            _write(self._path, [*entries, issued])
        return token

    def revoke(self, name: str) -> TokenInfo:
        """Remove the token named ``name``; what it was. The gateway refuses it from its next request."""
        with self._locked():
            entries = _read(self._path)
            found = next((e.info for e in entries if e.info.name == name), None)
            if found is None:
                known = ", ".join(sorted(e.info.name for e in entries))
                raise TokenError(
                    f"no token named {name!r} to revoke; "
                    + (f"the tokens are: {known}" if known else f"there are no tokens in {self._path}")
                )
            _write(self._path, [e for e in entries if e.info.name != name])
        return found

    def list(self) -> list[TokenInfo]:
        """Every token, by name (none if the file does not exist)."""
        return sorted((e.info for e in _read(self._path)), key=lambda i: i.name)

    def resolve(self, token: str) -> TokenInfo | None:
        """Who ``token`` stands for, or ``None`` for a token that is unknown, revoked or malformed.

        Cheap enough for every request: a ``stat`` of the file, a parse only when it changed, a hash.
        A file that cannot be read or parsed is a :class:`~bus.errors.ConfigError`.
        """
        if not _TOKEN.fullmatch(token):
            return None
        by_digest = self._current()
        digest = token_digest(token)
        entry = by_digest.get(digest)
        if entry is None or not hmac.compare_digest(entry.digest, digest):
            return None
        return entry.info

    # -- the file -----------------------------------------------------------------------------------

    def _current(self) -> dict[str, _Entry]:
        """The tokens by digest, parsed again only when the file changed.

        A file's inode, size and times may all stay the same across a change: a rename can reuse
        the inode just freed, and the kernel's clock ticks every few milliseconds. So, as git does
        with its index, a file changed less than :data:`_SETTLE` ago is read again on every call,
        until its times are old enough to tell the next change apart.
        """
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            self._seen, self._by_digest = None, {}
            return self._by_digest
        except OSError as exc:
            raise ConfigError(f"cannot read {self._path}: {exc.strerror}") from None
        seen = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if seen != self._seen or not self._settled:
            self._by_digest = {e.digest: e for e in _read(self._path)}
            self._seen = seen
            self._settled = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > _SETTLE
        return self._by_digest

    def _locked(self) -> AbstractContextManager[None]:
        """Hold the credentials directory (created 0700, or checked) for one read-change-write."""
        private_dir(self._path.parent, self._path.parent)
        return credentials_lock(self._path.parent)


def _read(path: Path) -> list[_Entry]:
    """The tokens in ``path`` (none if it does not exist), checked."""
    try:
        with path.open("rb") as stream:
            _check_file(path, stream.fileno())
            data = tomllib.load(stream)
    except FileNotFoundError:
        return []
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML: {exc}; fix it, or remove it (every token is then revoked)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    table = data.get(_TABLE, {})
    unknown = sorted(set(data) - {_TABLE})
    if unknown or not isinstance(table, dict):
        raise ConfigError(
            f"{path}: only [{_TABLE}.<name>] tables belong here (found {', '.join(unknown) or _TABLE})"
        )
    return [_entry(path, name, fields) for name, fields in table.items()]


def _write(path: Path, entries: list[_Entry]) -> None:
    """Replace ``path`` with ``entries``, in name order (0600, whole)."""
    lines = [
        "# The HTTP gateway's bearer tokens, kept by `citybus auth add-token` and `revoke-token`.",
        "# Only each token's SHA-256 is here: the token was printed once, when it was issued.",
        "# Remove a table to revoke its token; the gateway reads this file again when it changes.",
    ]
    for entry in sorted(entries, key=lambda e: e.info.name):
        info = entry.info
        lines += [
            "",
            f"[{_TABLE}.{toml_key(info.name)}]",
            f"account = {toml_string(info.account)}",
            f"user = {toml_string(info.user)}",
            f"sha256 = {toml_string(entry.digest)}",
            f"created = {info.created}",
        ]
    write_private(path, "\n".join(lines) + "\n")


def _check_file(path: Path, fd: int) -> None:
    """Refuse a tokens' file that someone else could have written: they could have added a token.

    (Others *reading* it learn hashes only; the file is written 0600 all the same.)
    """
    if sys.platform == "win32":
        return  # no POSIX modes; the directory's ACL is up to the operator
    st = os.fstat(fd)
    if st.st_uid != os.getuid():
        raise ConfigError(
            f"{path} belongs to uid {st.st_uid}, not to this user (uid {os.getuid()}): run citybus as its "
            "owner, or `chown` it"
        )
    if stat.S_IMODE(st.st_mode) & 0o022:
        raise ConfigError(
            f"{path} may be written by other users (mode {stat.S_IMODE(st.st_mode):04o}), who could have "
            f"added a token: check its tokens, then run `chmod 600 {path}`"
        )


def _entry(path: Path, name: str, fields: object) -> _Entry:
    """One ``[tokens.NAME]`` table, checked."""
    where = f"{path}: [{_TABLE}.{name}]"
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{where}: a token's name must be kebab case ('acme-research')")
    if not isinstance(fields, dict) or set(fields) != _KEYS:
        raise ConfigError(f"{where}: the keys are {', '.join(sorted(_KEYS))}, each once")
    account, user, digest, created = (fields[k] for k in ("account", "user", "sha256", "created"))
    if account not in TOKEN_ACCOUNTS:
        raise ConfigError(f"{where}: account must be {' or '.join(map(repr, TOKEN_ACCOUNTS))}")
    if user not in TOKEN_USERS:
        raise ConfigError(f"{where}: user must be {' or '.join(map(repr, TOKEN_USERS))}")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ConfigError(f"{where}: sha256 must be 64 lower-case hexadecimal digits")
    if not isinstance(created, datetime) or created.tzinfo is None:
        raise ConfigError(f"{where}: created must be a date and time with an offset (2026-12-07T05:10:00Z)")
    when = created.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return _Entry(TokenInfo(name, account, user, when), digest)
