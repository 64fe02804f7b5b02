"""The adapter under certification, in a process of its own: ``python -m sandbox.certify.child``.

It joins certify's private sandbox exactly as ``citybus sandbox join`` joins a running one (a
pilot's user, the replay's clock, the sandbox's reserved sources guarded), with two additions
that only certify needs:

* a **probe** in its bus pipeline writes one JSON line per message it handled to ``--events``:
  when the handler began (``time.monotonic()``, which on Linux is one clock for every process, so
  certify can put it on its own timeline), how long it took, the message's subject, ``ce-id`` and
  trace id, and the exception if the handler raised;
* a line ``{"ready": …}`` once the adapter said it is ready, so certify starts the replay only then.

The configuration (``--config``) is the one certify wrote for the run: its ``[tracing]`` has
``export = false``, so what the adapter publishes from a handler carries the ``traceparent`` of
the message it handled, and certify can tell which input caused which output.

Decisions, and why:

* **A process, not a task in certify's.** Peak memory and CPU seconds are the adapter's alone
  (read from ``/proc`` by certify), and an adapter that kills its process (``os._exit``, a
  segfault in an extension, memory exhausted) ends its run, not the certification.
* **Lines are flushed as written.** A process that dies mid-run leaves what it handled until then.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from adapters.cli import find_instance
from adapters.join import run_joined
from bus.config import load_config
from bus.console import err
from bus.errors import CityBusError
from bus.health import Health
from bus.pipeline import Route, Step
from bus.tracing import trace_id

__all__ = ["Probe", "main"]


class Probe:
    """The pipeline middleware that writes one line per handled message to ``out``."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        """Write one line and flush it."""
        with self._lock:
            self._out.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._out.flush()

    def middleware(self, route: Route, step: Step) -> Step:
        """Time each handling and note its outcome."""

        if route.subject.startswith("citybus."):  # the replay's clock, control: not the adapter's work
            return step

        async def probed(item: Any, msg: Any) -> Any:
            headers = msg.headers or {}
            began = time.monotonic()
            error = ""
            try:
                return await step(item, msg)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                self.write(
                    {
                        "wall": began,
                        "seconds": time.monotonic() - began,
                        "subject": msg.subject,
                        "ce_id": headers.get("ce-id", ""),
                        "trace": trace_id(headers),
                        "error": error,
                    }
                )

        return probed


def _watch_ready(health: Health, probe: Probe, stop: threading.Event) -> None:
    """Say ``ready`` once the adapter is (the supervisor's health), from a thread of its own."""
    while not stop.wait(0.02):
        if health.is_ready:
            probe.write({"ready": time.monotonic()})
            return


def main(argv: list[str] | None = None) -> int:
    """Join the private sandbox named by ``--config`` as ``--instance`` and run until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.certify.child")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--url", help="connect here instead (a proxy in front of the server)")
    args = parser.parse_args(argv)
    try:
        # The run's own file, and nothing else: a CITYBUS_SERVER_DATA_DIR or CITYBUS_NATS_URL of the
        # user's would join the adapter to their running citybus up instead of certify's sandbox.
        config = load_config(args.config, environ={})
        instance = find_instance(args.instance, config)
        with args.events.open("a", encoding="utf-8") as out:
            probe = Probe(out)
            health = Health()
            stop = threading.Event()
            watcher = threading.Thread(target=_watch_ready, args=(health, probe, stop), daemon=True)
            watcher.start()
            try:
                return run_joined(
                    instance,
                    config,
                    clock="replay",
                    url=args.url,
                    middleware=[probe.middleware],
                    health=health,
                )
            finally:
                stop.set()
    except CityBusError as exc:
        err(f"citybus certify: the adapter could not run: {exc}")
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
