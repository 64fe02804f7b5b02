"""Secrets kept on disk: the masked :class:`Secret`, private files and directories, their checks.

What the credentials directory's files have in common, whatever they hold (an NKey seed,
:mod:`bus.access.keys`; an MQTT password, :mod:`bus.access.passwords`; a rendered configuration or
a guests' file): they are written whole and readable by their owner only, and refused when they are
not.

Decisions, and why:

* **Permissions checked like ssh does.** Loading refuses a directory open to other users or a seed
  file readable by them, or one owned by someone else, and says which file and what to run: a
  seed that others could read must be considered leaked.
* **Secrets are never shown.** :class:`Secret` masks itself in ``repr``, ``str`` and f-strings, and
  refuses to be pickled. Nothing here puts a secret into an error message.
* **Writes are atomic.** A file is written to a temporary file created 0600 (whatever the umask),
  synced, then renamed into place; a crash leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import sys
from pathlib import Path
from typing import Any

from bus.errors import CityBusError

__all__ = [
    "CredentialError",
    "Secret",
    "check_names",
    "check_private",
    "private_dir",
    "write_private",
]

ACCOUNT = re.compile(r"^[A-Z][A-Z0-9_]*$")
"""An account's name, as a directory of the credentials directory."""
USER = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
"""A user's name, as the stem of its files."""


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


def check_names(account: str, user: str) -> None:
    """Refuse account and user names that could not be path parts of the credentials directory."""
    # The names become path parts: nothing that could leave the directory.
    if not ACCOUNT.match(account):
        raise CredentialError(f"account {account!r} must be upper case letters, digits and '_' (CITY)")
    if not USER.match(user):
        raise CredentialError(f"user {user!r} must be kebab case ('vicotee-beach')")


def check_private(path: Path) -> None:
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


def private_dir(root: Path, directory: Path) -> Path:
    """Create ``directory`` (and the credentials directory ``root``) 0700, or check that it is private."""
    for d in (root, directory):
        if d.exists():
            if not d.is_dir():
                raise CredentialError(f"{d} is not a directory: the credentials need a directory there")
            check_private(d)
            continue
        try:
            d.mkdir(parents=True, mode=0o700)
            os.chmod(d, 0o700)  # mkdir's mode is filtered by the umask
        except OSError as exc:
            raise CredentialError(f"cannot create the credentials directory {d}: {exc.strerror}") from exc
    return directory
