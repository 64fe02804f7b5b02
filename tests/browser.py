"""A small driver for a real headless Chromium, over the DevTools protocol, for tests of web pages.

::

    async with Browser.launch(tmp_path) as page:
        await page.navigate("http://127.0.0.1:8080/")
        await page.wait_for("document.querySelectorAll('.badge').length > 0")
        await page.type("#journey-from", "drammen")
        assert page.errors == []
        await page.screenshot(tmp_path / "page.png")

It starts Debian's ``chromium`` with ``--remote-debugging-port=0``, reads the port Chromium chose
from ``DevToolsActivePort`` in its user data directory, and talks to the page's target over a
WebSocket with aiohttp's client. It collects everything a developer would see in red in the
console: uncaught exceptions (``Runtime.exceptionThrown``), ``console.error`` and failed
assertions (``Runtime.consoleAPICalled``), and the browser's own errors such as a failed request or
a Content-Security-Policy violation (``Log.entryAdded`` at level ``error``).

Decisions, and why: the DevTools protocol directly rather than Playwright or Selenium, because
citybus already depends on aiohttp, whose WebSocket client is all the protocol needs, while
Playwright downloads browser builds of its own (impossible on machines without internet) and
Selenium needs a chromedriver matching the browser; Debian's ``chromium`` package is the browser a
city's Linux machines have. Everything waits on conditions evaluated in the page (``wait_for``),
never on a sleep.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["Browser", "BrowserError", "Page", "find_chromium"]

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


class BrowserError(RuntimeError):
    """The browser did not start, a DevTools command failed, or the page did not do what was awaited."""


def find_chromium() -> str | None:
    """The path of a Chromium to drive: ``$CITYBUS_CHROMIUM``, else the first of :data:`CANDIDATES`."""
    explicit = os.environ.get("CITYBUS_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Page:
    """One browser tab, driven over its DevTools WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self._reader = asyncio.create_task(self._read(), name="devtools reader")
        self.errors: list[str] = []
        """Console errors and uncaught exceptions, one line each, in the order they happened."""

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                payload = json.loads(message.data)
                if "id" in payload:
                    future = self._pending.pop(payload["id"], None)
                    if future is not None and not future.done():
                        future.set_result(payload)
                else:
                    self._event(payload["method"], payload.get("params", {}))
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(BrowserError("the browser closed the DevTools connection"))

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            description = details.get("exception", {}).get("description") or details.get("text", "")
            self.errors.append(
                f"uncaught: {description} ({details.get('url', '?')}:{details.get('lineNumber')})"
            )
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = [str(a.get("value", a.get("description", ""))) for a in params.get("args", [])]
            self.errors.append(f"console.{params['type']}: {' '.join(args)}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            self.errors.append(
                f"{entry.get('source', 'browser')}: {entry.get('text', '')} {entry.get('url', '')}"
            )
        for listener in list(self._listeners):
            listener(method, params)

    async def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        """Send one DevTools command and return its result; :class:`BrowserError` on a protocol error."""
        if self._reader.done():
            raise BrowserError("the DevTools connection is closed")
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        await self._ws.send_str(json.dumps({"id": ident, "method": method, "params": params or {}}))
        async with asyncio.timeout(timeout):
            answer = await future
        if "error" in answer:
            raise BrowserError(
                f"{method}: {answer['error'].get('message')} {answer['error'].get('data', '')}"
            )
        return answer.get("result", {})

    async def navigate(self, url: str, timeout: float = 30.0) -> None:
        """Open ``url`` and return once the page's ``load`` event fired (its scripts ran)."""
        loaded = asyncio.Event()

        def on_load(method: str, params: dict[str, Any]) -> None:
            if method == "Page.loadEventFired":
                loaded.set()

        self._listeners.append(on_load)
        try:
            result = await self.send("Page.navigate", {"url": url})
            if result.get("errorText"):
                raise BrowserError(f"{url} did not load: {result['errorText']}")
            async with asyncio.timeout(timeout):
                await loaded.wait()
        finally:
            self._listeners.remove(on_load)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited, results as JSON)."""
        result = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(
                f"{expression!r} threw: {details.get('exception', {}).get('description', details)}"
            )
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 15.0) -> Any:
        """Poll ``expression`` until it is truthy and return its value; :class:`BrowserError` (with the
        console errors so far) if it never is."""
        value: Any = None
        try:
            async with asyncio.timeout(timeout):
                while not (value := await self.evaluate(expression)):  # noqa: ASYNC110 - the page's state
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise BrowserError(
                f"not true within {timeout} s: {expression} "
                f"(last value {value!r}; console errors: {self.errors})"
            ) from None
        return value

    async def click(self, selector: str) -> None:
        """Click the element ``selector`` names, as a user would (its ``click()``)."""
        found = await self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return false; "
            "e.click(); return true; })()"
        )
        if not found:
            raise BrowserError(f"nothing on the page matches {selector!r}")

    async def type(self, selector: str, text: str) -> None:
        """Replace what the input ``selector`` names holds with ``text``, as a user would: focus it,
        select what is there and type over it (the page sees its ``input`` events). A date or time
        field takes no typed text over DevTools, so its value is set and ``input`` and ``change``
        dispatched, as its picker does."""
        target = f"document.querySelector({json.dumps(selector)})"
        kind = await self.evaluate(
            f"(() => {{ const e = {target}; if (!e) return null; e.focus(); "
            "if (typeof e.select === 'function') e.select(); return e.type || e.tagName; })()"
        )
        if kind is None:
            raise BrowserError(f"nothing on the page matches {selector!r}")
        if kind in ("date", "datetime-local", "month", "time", "week"):
            value = json.dumps(text)
            await self.evaluate(
                f"(() => {{ const e = {target}; e.value = {value}; "
                "for (const t of ['input', 'change']) e.dispatchEvent(new Event(t, { bubbles: true })); })()"
            )
        else:
            await self.send("Input.insertText", {"text": text})
        if await self.evaluate(f"{target}.value") != text:
            raise BrowserError(f"{selector!r} did not take {text!r}")

    async def screenshot(self, path: Path) -> Path:
        """Save a PNG of the page as it is drawn now, and return its path."""
        result = await self.send("Page.captureScreenshot", {"format": "png"})
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(result["data"]))
        return path

    async def close(self) -> None:
        """Close the DevTools connection."""
        await self._ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


class Browser:
    """A headless Chromium process with one page, for :meth:`launch`."""

    @staticmethod
    @contextlib.asynccontextmanager
    async def launch(
        directory: Path, *, executable: str | None = None, width: int = 1280, height: int = 800
    ) -> AsyncIterator[Page]:
        """Start Chromium with its profile in ``directory``, yield its page ready to drive (console
        collection on, the viewport ``width`` × ``height``), and stop it on exit."""
        executable = executable or find_chromium()
        if executable is None:
            raise BrowserError("no Chromium found (install Debian's chromium package)")
        profile = directory / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=True)
        (profile / "DevToolsActivePort").unlink(missing_ok=True)  # a previous run's port is not ours
        log = directory / "chromium.log"
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                executable,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "about:blank",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
            )
        try:
            async with aiohttp.ClientSession() as session:
                port = await _devtools_port(profile, process, log)
                async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                    targets = await response.json()
                pages = [t for t in targets if t.get("type") == "page"]
                if not pages:
                    raise BrowserError(f"Chromium opened no page: {targets}")
                ws = await session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
                page = Page(ws)
                try:
                    await page.send("Runtime.enable")
                    await page.send("Log.enable")
                    await page.send("Page.enable")
                    await page.send(
                        "Emulation.setDeviceMetricsOverride",
                        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                    )
                    yield page
                finally:
                    await page.close()
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    async with asyncio.timeout(10):
                        await process.wait()
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def _devtools_port(profile: Path, process: asyncio.subprocess.Process, log: Path) -> int:
    """The port Chromium listens on for DevTools, from the file it writes once it does."""
    active = profile / "DevToolsActivePort"
    try:
        async with asyncio.timeout(30):
            while not active.is_file() or not active.read_text().strip():  # noqa: ASYNC110 - a file, not an event
                if process.returncode is not None:
                    break
                await asyncio.sleep(0.05)
    except TimeoutError:
        pass
    if not active.is_file():
        tail = (await asyncio.to_thread(log.read_text, errors="replace"))[-800:]
        raise BrowserError(
            f"Chromium did not open its DevTools port (exit code {process.returncode}): {tail}"
        )
    return int(active.read_text().split()[0])
