"""A TCP proxy between the adapter under certification and its broker, that can be made slow.

The ``slow-downstream`` preset's fault: while :attr:`SlowLink.latency` is above zero, every chunk
either way is held that long before it is passed on (in order, so the NATS protocol stays
intact), as a congested or far-away link would; at zero it passes chunks straight through. The
adapter sees its publishes, acknowledgements and deliveries late, and must neither lose data nor
let its buffers grow without bound.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["SlowLink"]

_CHUNK = 64 * 1024


class SlowLink:
    """Listens on a free loopback port and forwards every connection to ``host:port``."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.latency = 0.0
        """Seconds each chunk is held (0: none)."""
        self.chunks_delayed = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:<port>`` of the proxy."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"nats://127.0.0.1:{port}"

    async def start(self) -> None:
        """Start listening."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def close(self) -> None:
        """Stop listening and cut every connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            writer.close()
            return
        for source, target in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, target))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()
                queue.task_done()

        sender = asyncio.create_task(deliver())
        try:
            while chunk := await reader.read(_CHUNK):
                if self.latency > 0:
                    self.chunks_delayed += 1
                queue.put_nowait((loop.time() + self.latency, chunk))
            await queue.join()  # the other side closed: pass on what is still held
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender
            writer.close()
