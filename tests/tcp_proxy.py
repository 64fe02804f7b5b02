"""A TCP proxy for tests: in front of nats-server, it can hold back the server's bytes (a connection
that stops reading) or cut every connection (a server that went away)."""

from __future__ import annotations

import asyncio


class FreezableProxy:
    """A TCP proxy in front of nats-server that can stop passing the server's bytes to the client,
    as a connection looks when its reader hangs: the client writes, nothing comes back."""

    def __init__(self, target: str) -> None:
        host, _, port = target.removeprefix("nats://").rpartition(":")
        self.target = (host, int(port))
        self.flowing = asyncio.Event()
        self.flowing.set()
        self._pipes: list[asyncio.Task[None]] = []
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> FreezableProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"nats://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cut()

    async def cut(self) -> None:
        """Close every connection and refuse new ones, as a server that went away (or refuses the
        user) looks to a client."""
        for pipe in self._pipes:
            pipe.cancel()
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.close()

    def freeze(self) -> None:
        """Hold back what the server sends, on every connection, until :meth:`thaw`."""
        self.flowing.clear()

    def thaw(self) -> None:
        """Pass the server's bytes again."""
        self.flowing.set()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self.target)
        self._writers += [client_w, server_w]
        loop = asyncio.get_running_loop()
        self._pipes.append(loop.create_task(self._pipe(client_r, server_w, None)))
        self._pipes.append(loop.create_task(self._pipe(server_r, client_w, self.flowing)))

    @staticmethod
    async def _pipe(
        source: asyncio.StreamReader, sink: asyncio.StreamWriter, flowing: asyncio.Event | None
    ) -> None:
        try:
            while data := await source.read(65536):
                if flowing is not None:
                    await flowing.wait()
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.close()
