"""The processes of the gateway benchmarks: the plain aiohttp servers and the SSE clients.

Each runs in an interpreter of its own, pinned to a core by the parent (``taskset``)::

    python -m bench.gateway_peers last-value --body FILE --content-type TYPE
    python -m bench.gateway_peers sse --nats URL --subject PATTERN [--queue N]
    python -m bench.gateway_peers clients --url URL --clients N --result FILE

``last-value``
    A plain aiohttp application answering ``GET /api/v1/contracts/{contract}/entities/{entity}``
    with bytes encoded before it started, looked up in a dictionary: the floor of aiohttp itself
    for what the gateway's entity route does (the gateway also serves pre-encoded bytes, see
    :mod:`adapters.gateway.stored`; what it adds is its middleware, who asks, and its feed).
``sse``
    A plain aiohttp SSE handler doing the gateway's live work: one nats-py subscription on the
    pattern; each message framed once (``id``, ``event``, ``data``: a JSON with its ``ce-id``, subject,
    ``ce-time`` and body) and put in a bounded queue per client (a full queue drops the client), each
    client's handler writing what its queue holds. No decoding, no validation, no resume.
``clients``
    The SSE load generator: ``--clients`` aiohttp connections to one URL, each reading its stream and
    noting when each event arrived (wall clock: the parent compares it with when a subscriber of its
    own saw the message on NATS). It says ``{"connected": N, …}`` on standard output once every
    connection has its response, records between the lines ``mark`` and ``stop`` it reads on
    standard input, then writes its result file: the arrival times per event id, its own CPU and
    event-loop lag over the recorded window (so a load generator that is the bottleneck is seen),
    the clients dropped or ended.

The servers print ``port N`` on standard output once they listen (on a free loopback port).
Nothing here judges a number.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import msgspec
import nats
from aiohttp import ClientSession, ClientTimeout, TCPConnector, web
from nats.aio.msg import Msg

__all__ = ["main"]

ENTITY_ROUTE: Final = "/api/v1/contracts/{contract}/entities/{entity}"
STREAM_ROUTE: Final = "/api/v1/stream"
LAG_TICK: Final = 0.01
"""Seconds between the load generator's event-loop lag probes."""
CONNECTING: Final = 100
"""SSE connections opened at once by the load generator."""


async def _serve(app: web.Application) -> None:
    """Serve ``app`` on a free loopback port, say which, until killed."""
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    sys.stdout.write(f"port {port}\n")
    sys.stdout.flush()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


async def last_value_server(body: bytes, content_type: str) -> None:
    """The plain last-value handler: pre-encoded bytes from a dictionary."""
    values: dict[tuple[str, str], bytes] = {}

    async def handler(request: web.Request) -> web.Response:
        key = (request.match_info["contract"], request.match_info["entity"])
        found = values.get(key)
        if found is None:
            found = values.setdefault(key, body)  # every entity has the same value: one lookup, as a hit
        return web.Response(body=found, content_type=content_type)

    app = web.Application()
    app.router.add_get(ENTITY_ROUTE, handler)
    await _serve(app)


async def sse_server(url: str, subject: str, queue: int) -> None:
    """The plain SSE handler: a nats-py subscription fanned out to bounded per-client queues."""
    clients: set[asyncio.Queue[bytes]] = set()
    sequence = 0

    async def received(msg: Msg) -> None:
        nonlocal sequence
        sequence += 1
        headers = msg.headers or {}
        event = msgspec.json.encode(
            {
                "id": headers.get("ce-id", ""),
                "subject": msg.subject,
                "time": headers.get("ce-time", ""),
                "data": msgspec.Raw(msg.data),
            }
        )
        frame = b"id: %d\nevent: message\ndata: %s\n\n" % (sequence, event)
        for client in tuple(clients):
            try:
                client.put_nowait(frame)
            except asyncio.QueueFull:
                clients.discard(client)  # too slow: dropped, its handler ends on the sentinel below
                with contextlib.suppress(asyncio.QueueEmpty):
                    client.get_nowait()
                client.put_nowait(b"")

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        mine: asyncio.Queue[bytes] = asyncio.Queue(maxsize=queue)
        clients.add(mine)
        try:
            while frame := await mine.get():
                await response.write(frame)
        finally:
            clients.discard(mine)
        return response

    nc = await nats.connect(url)
    await nc.subscribe(subject, cb=received)
    app = web.Application()
    app.router.add_get(STREAM_ROUTE, handler)
    try:
        await _serve(app)
    finally:
        await nc.close()


class Clients:
    """The SSE load generator's state: what arrived when, while recording."""

    def __init__(self) -> None:
        self.recording = False
        self.arrivals: dict[str, list[float]] = {}
        self.dropped: dict[str, int] = {}
        self.ended = 0
        self.failed: dict[str, int] = {}
        self.lags: list[float] = []

    def frames(self, block: bytes, now: float) -> None:
        """Note the events of complete frames in ``block`` as arrived at ``now``."""
        for frame in block.split(b"\n\n"):
            if frame.startswith(b"event: dropped") or b"\nevent: dropped" in frame:
                reason = frame.rpartition(b"data: ")[2].decode(errors="replace")
                self.dropped[reason] = self.dropped.get(reason, 0) + 1
                continue
            start = frame.find(b'"id":"')
            if start < 0 or not self.recording:
                continue
            start += 6
            event_id = frame[start : frame.index(b'"', start)].decode()
            self.arrivals.setdefault(event_id, []).append(now)

    async def read(self, session: ClientSession, url: str, connected: asyncio.Event) -> None:
        """One client: connect, then read its stream until it ends or the run stops."""
        try:
            async with session.get(url, headers={"Accept": "text/event-stream"}) as response:
                if response.status != 200:
                    why = f"HTTP {response.status}"
                    self.failed[why] = self.failed.get(why, 0) + 1
                    return
                connected.set()
                pending = b""
                async for chunk in response.content.iter_any():
                    now = time.time()
                    pending += chunk
                    complete, separator, pending = pending.rpartition(b"\n\n")
                    if separator:
                        self.frames(complete, now)
                self.ended += 1
        except Exception as exc:  # a client that failed is counted, not fatal: the parent reports it
            why = type(exc).__name__
            self.failed[why] = self.failed.get(why, 0) + 1
        finally:
            connected.set()

    async def probe_lag(self) -> None:
        """How late this process's event loop wakes up (a busy load generator shows here)."""
        while True:
            before = time.perf_counter()
            await asyncio.sleep(LAG_TICK)
            if self.recording:
                self.lags.append(time.perf_counter() - before - LAG_TICK)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _line(reader: asyncio.StreamReader) -> str:
    return (await reader.readline()).decode().strip()


async def run_clients(url: str, count: int, result: Path) -> None:
    """The load generator (see the module doc)."""
    state = Clients()
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    gate = asyncio.Semaphore(CONNECTING)
    connector = TCPConnector(limit=0, force_close=True)
    timeout = ClientTimeout(total=None, sock_connect=30, sock_read=None)
    async with ClientSession(connector=connector, timeout=timeout) as session:
        tasks: list[asyncio.Task[None]] = []
        events = [asyncio.Event() for _ in range(count)]

        async def opened(number: int) -> None:
            async with gate:
                task = asyncio.create_task(state.read(session, url, events[number]))
                tasks.append(task)
                await events[number].wait()

        began = time.perf_counter()
        await asyncio.gather(*(opened(n) for n in range(count)))
        failed = sum(state.failed.values())
        sys.stdout.write(
            json.dumps(
                {
                    "connected": count - failed,
                    "failed": state.failed,
                    "seconds": time.perf_counter() - began,
                }
            )
            + "\n"
        )
        sys.stdout.flush()
        lag = asyncio.create_task(state.probe_lag())
        while await _line(stdin) not in ("mark", ""):
            pass
        cpu, wall = _cpu(), time.perf_counter()
        state.recording = True
        while await _line(stdin) not in ("stop", ""):
            pass
        state.recording = False
        cpu, wall = _cpu() - cpu, time.perf_counter() - wall
        lag.cancel()
        written = json.dumps(
            {
                "arrivals": state.arrivals,
                "dropped": state.dropped,
                "ended": state.ended,
                "failed": state.failed,
                "cpu_seconds": cpu,
                "wall_seconds": wall,
                "lags": state.lags,
            }
        )
        await asyncio.to_thread(result.write_text, written, encoding="utf-8")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    sys.stdout.write("done\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> None:
    """Run one process of the gateway benchmarks."""
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_peers")
    sub = parser.add_subparsers(dest="what", required=True)
    last = sub.add_parser("last-value")
    last.add_argument("--body", type=Path, required=True)
    last.add_argument("--content-type", required=True)
    sse = sub.add_parser("sse")
    sse.add_argument("--nats", required=True)
    sse.add_argument("--subject", required=True)
    sse.add_argument("--queue", type=int, default=256)
    clients = sub.add_parser("clients")
    clients.add_argument("--url", required=True)
    clients.add_argument("--clients", type=int, required=True)
    clients.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.what == "last-value":
        asyncio.run(last_value_server(args.body.read_bytes(), args.content_type))
    elif args.what == "sse":
        asyncio.run(sse_server(args.nats, args.subject, args.queue))
    else:
        asyncio.run(run_clients(args.url, args.clients, args.result))


if __name__ == "__main__":
    main()
