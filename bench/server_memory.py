"""The embedded nats-server's memory while the sandbox replays as fast as possible.

``citybus up`` is started as a user starts it, in a directory of its own, with the shipped Drammen
day replayed at ``speed = 0`` and looping; every ``--every`` seconds the nats-server's resident set
(``VmRSS`` of ``/proc/<pid>/status``), the replay's message count (citybus's ``/metrics``) and, where
the server serves monitoring, its ``/varz`` memory and JetStream store are sampled. After
``--seconds`` the replay is paused (``citybus sandbox pause``) and the server watched ``--pause``
seconds more: memory the server no longer needs should go back. The figures are printed as a table
and, with ``--json FILE``, written for ``docs/benchmarks.md``.

Run it from the repository: ``python -m bench.server_memory --seconds 300 --pause 150``;
``--code DIR`` runs another checkout's code (the figures *before* a change), ``--set KEY=VALUE``
adds a ``[server]`` setting (``--set memory_limit=0``). It needs Linux (``/proc``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Final

from bench.common import ROOT, BenchError, child_env, log

__all__ = ["main", "measure"]

_MB: Final = 1 << 20
_REPLAYED: Final = re.compile(r"^citybus_replay_messages_total\{[^}]*\} (\S+)$", re.M)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (a loopback URL of ours)
        text: str = response.read().decode()
    return text


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for process {pid}")


def _server(data_dir: Path, deadline: float) -> tuple[int, str | None]:
    """The nats-server's pid and monitoring URL, from the ports file it writes once it listens."""
    while time.monotonic() < deadline:
        for path in data_dir.glob("*.ports"):
            with contextlib.suppress(ValueError, OSError):
                ports = json.loads(path.read_text())
                monitoring = ports.get("monitoring") or [None]
                return int(path.stem.rsplit("_", 1)[1]), monitoring[0]
        time.sleep(0.2)
    raise BenchError(f"no nats-server ports file appeared in {data_dir}")


def _sample(start: float, pid: int, monitor: str | None, ops: str, phase: str) -> dict[str, Any]:
    row: dict[str, Any] = {"t": round(time.monotonic() - start), "phase": phase, "rss": _rss(pid)}
    with contextlib.suppress(OSError, ValueError):
        found = _REPLAYED.search(_get(f"{ops}/metrics"))
        row["replayed"] = int(float(found.group(1))) if found else 0
    if monitor is not None:
        with contextlib.suppress(OSError, ValueError):
            varz = json.loads(_get(f"{monitor}/varz"))
            row["varz_mem"] = varz["mem"]
            row["js_store"] = varz.get("jetstream", {}).get("stats", {}).get("storage", 0)
    return row


def measure(seconds: float, pause: float, every: float, code: Path, settings: list[str]) -> dict[str, Any]:
    """Run ``citybus up`` replaying as fast as possible and sample the server; see the module doc."""
    with tempfile.TemporaryDirectory(prefix="citybus-server-memory-") as tmp:
        work = Path(tmp)
        ops_port = _free_port()
        extra = "".join(f"{setting.split('=', 1)[0]} = {setting.split('=', 1)[1]}\n" for setting in settings)
        (work / "citybus.toml").write_text(
            f'[server]\ndata_dir = "{work / "nats"}"\n{extra}'
            f'[ops]\nport = {ops_port}\n[log]\nlevel = "warning"\n'
            '[adapters.sandbox]\nadapter = "sandbox-replay"\nspeed = 0\nloop = true\n',
            encoding="utf-8",
        )
        env = child_env(PYTHONPATH=str(code))
        command = [sys.executable, "-c", "import sys; from bus.cli import main; sys.exit(main())"]
        up = subprocess.Popen([*command, "up"], cwd=work, env=env, stderr=subprocess.PIPE, text=True)
        try:
            pid, monitor = _server(work / "nats", time.monotonic() + 30)
            ops = f"http://127.0.0.1:{ops_port}"
            start = time.monotonic()
            samples = []
            while time.monotonic() - start < seconds:
                time.sleep(every)
                samples.append(_sample(start, pid, monitor, ops, "replay"))
                log(f"{samples[-1]}")
            paused = subprocess.run(
                [*command, "sandbox", "pause"], cwd=work, env=env, capture_output=True, text=True, check=False
            )
            if paused.returncode != 0:
                raise BenchError(f"citybus sandbox pause failed: {paused.stderr.strip()}")
            while time.monotonic() - start < seconds + pause:
                time.sleep(every)
                samples.append(_sample(start, pid, monitor, ops, "paused"))
                log(f"{samples[-1]}")
        finally:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(timeout=30)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
    replaying = [s for s in samples if s["phase"] == "replay"]
    last = replaying[-1]
    return {
        "code": str(code),
        "settings": settings,
        "seconds": seconds,
        "replayed": last.get("replayed", 0),
        "rate": round(last.get("replayed", 0) / max(last["t"], 1)),
        "peak_rss": max(s["rss"] for s in samples),
        "end_rss": last["rss"],
        "paused_rss": samples[-1]["rss"],
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.server_memory``: see the module doc."""
    parser = argparse.ArgumentParser(prog="python -m bench.server_memory", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="seconds of replay (default 300)")
    parser.add_argument("--pause", type=float, default=150.0, help="seconds paused afterwards (default 150)")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout to run (default: this one)")
    parser.add_argument("--set", action="append", default=[], dest="settings", metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    if not all("=" in setting for setting in args.settings):
        parser.error("--set takes KEY=VALUE (a [server] key, e.g. memory_limit=0)")
    result = measure(args.seconds, args.pause, args.every, args.code.resolve(), args.settings)
    out = [f"{'t (s)':>6} {'phase':>7} {'RSS (MB)':>9} {'replayed':>10} {'varz mem (MB)':>14}"]
    for s in result["samples"]:
        varz = f"{s['varz_mem'] / _MB:.0f}" if "varz_mem" in s else "-"
        replayed = s.get("replayed", 0)
        out.append(f"{s['t']:>6} {s['phase']:>7} {s['rss'] / _MB:>9.0f} {replayed:>10} {varz:>14}")
    out.append(
        f"replayed {result['replayed']} messages ({result['rate']}/s); server RSS peak "
        f"{result['peak_rss'] / _MB:.0f} MB, at the end of the replay {result['end_rss'] / _MB:.0f} MB, "
        f"after {args.pause:g} s paused {result['paused_rss'] / _MB:.0f} MB"
    )
    sys.stdout.write("\n".join(out) + "\n")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
