"""The embedded server's data directory: what lives there, and one server at a time.

``<data_dir>`` (0700) holds the generated ``nats-server.conf``, the server's log (rotated by the
server) and a separate ``nats-server.stderr`` (Go panics and configuration errors come before the
log is open, and must not be stranded in a rotated log), the ports file the server writes once it
listens, the lock, and the JetStream store (``jetstream/``). This module knows their names and
reads and writes them; :mod:`bus.server` runs the process.

Decisions, and why:

* **A free port without races.** Port 0 becomes nats-server's ``port: -1`` (the kernel picks) and the
  chosen port is read back from the *ports file* the server writes once it listens. A restart reuses
  that port, so connected clients simply reconnect.
* **One server per data dir.** nats-server does not lock its JetStream store itself, and two servers
  on one store corrupt it. We take an exclusive ``flock`` on ``<data_dir>/nats-server.lock`` and hand
  the locked descriptor to the child, so the lock lives as long as *either* process does.
* **What went wrong is in the server's own words.** A failed start is explained by the lines it
  wrote to standard error and the log *during this attempt* (:func:`failure_reason`), not by a
  guess.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from bus.errors import EmbeddedServerError

if sys.platform != "win32":
    import fcntl

__all__ = [
    "CONFIG_FILE",
    "DATA_DIR_HINT",
    "LOG_FILE",
    "PORTS_SUFFIX",
    "STDERR_FILE",
    "acquire_lock",
    "default_data_dir",
    "failure_reason",
    "read_ports_file",
    "record_holder",
    "remove_ports_files",
    "write_private",
]

CONFIG_FILE = "nats-server.conf"
LOG_FILE = "nats-server.log"
# Go panics and config parse errors go to stderr before the log file is open; kept apart from the
# log so that log rotation never strands them in a rotated file.
STDERR_FILE = "nats-server.stderr"
LOCK_FILE = "nats-server.lock"
PORTS_SUFFIX = ".ports"
# "[1234] 2026/11/27 14:42:36.639712 [FTL] ..." -> "[FTL] ..."
_LOG_PREFIX = re.compile(r"^\[\d+\] \S+ \S+ ")
DATA_DIR_HINT = (
    "stop the other `citybus up`, or choose another data dir with --data-dir / CITYBUS_SERVER_DATA_DIR"
)
"""What to do when the data dir is in use, for the messages that say so."""


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the embedded server keeps its config, log and JetStream store by default.

    ``$XDG_DATA_HOME/citybus/nats``, or ``~/.local/share/citybus/nats`` (the XDG base-directory spec
    says to ignore a relative ``XDG_DATA_HOME``).
    """
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "citybus" / "nats"


def read_ports_file(data_dir: Path, pid: int) -> dict[str, int]:
    """The ports the server listens on, by kind (``nats``, ``monitoring``), from its ports file."""
    # The file is named after the executable and the pid: "<exe>_<pid>.ports".
    found: dict[str, int] = {}
    for path in data_dir.glob(f"*_{pid}{PORTS_SUFFIX}"):
        try:
            listed = json.loads(path.read_text(encoding="utf-8"))
            kinds = {kind: listed.get(kind) or [] for kind in ("nats", "monitoring")}
        except (OSError, ValueError, AttributeError):
            return {}  # not completely written yet; try again
        for kind, urls in kinds.items():
            for url in urls:
                with contextlib.suppress(ValueError, TypeError):
                    port: int | None = urlsplit(str(url)).port
                    if port:
                        found.setdefault(kind, port)
    return found


def remove_ports_files(data_dir: Path, pid: int | None = None) -> None:
    """Remove the ports files of process ``pid`` (a killed server leaves its file), or all of them."""
    pattern = f"*{PORTS_SUFFIX}" if pid is None else f"*_{pid}{PORTS_SUFFIX}"
    for path in data_dir.glob(pattern):
        path.unlink(missing_ok=True)


def acquire_lock(data_dir: Path) -> int | None:
    """Lock ``data_dir`` for one server: the locked descriptor (to hand to the child), or ``None``
    on Windows; :class:`~bus.errors.EmbeddedServerError` names the holder if another server has it."""
    if sys.platform == "win32":
        return None  # no flock; one server per data dir is then up to the operator
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
        os.close(fd)
        raise EmbeddedServerError(
            f"the data dir {data_dir} is in use by another nats-server"
            + (f" ({holder})" if holder else "")
            + f": {DATA_DIR_HINT}"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def record_holder(lock_fd: int, pid: int, url: str) -> None:
    """Write who holds the lock, so that a second server can say which one is in the way."""
    os.ftruncate(lock_fd, 0)
    os.pwrite(lock_fd, f"pid {pid}, {url}\n".encode(), 0)


def failure_reason(stderr_path: Path, log_file: Path, log_offset: int) -> str:
    """The telling lines of this start attempt: its stderr, then what it added to the log."""
    lines: list[str] = []
    with contextlib.suppress(OSError):
        lines += stderr_path.read_text(encoding="utf-8", errors="replace").splitlines()
    with contextlib.suppress(OSError), log_file.open("rb") as log:
        size = log.seek(0, os.SEEK_END)
        log.seek(log_offset if log_offset <= size else 0)  # smaller: the log was rotated
        lines += log.read().decode("utf-8", "replace").splitlines()
    lines = [_LOG_PREFIX.sub("", line).strip() for line in lines if line.strip()]
    errors = [line for line in lines if "[FTL]" in line or "[ERR]" in line or "nats-server:" in line]
    chosen = errors[-3:] or lines[-3:]
    return ": " + "; ".join(chosen) if chosen else ""


def write_private(path: Path, text: str) -> None:
    """Write ``path`` readable by its owner only (0600, whatever the umask or its old mode)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        if sys.platform != "win32":
            os.fchmod(out.fileno(), 0o600)
        out.write(text)
