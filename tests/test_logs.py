"""Logging: JSON lines a log shipper can parse, readable lines on a terminal."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import structlog

from bus.errors import ConfigError
from bus.logs import configure_logging, get_logger


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_component_level_time_and_keys() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    get_logger("server", data_dir="/tmp/x").info("nats-server started", port=4222)
    [line] = _lines(out)
    assert line["event"] == "nats-server started"
    assert line["component"] == "server"
    assert line["data_dir"] == "/tmp/x"
    assert line["port"] == 4222
    assert line["level"] == "info"
    stamp = datetime.fromisoformat(line["timestamp"])
    assert stamp.utcoffset() == timedelta(0)  # UTC


def test_auto_is_json_when_not_a_terminal() -> None:
    out = io.StringIO()
    configure_logging(stream=out)
    get_logger("x").info("hello")
    assert _lines(out)[0]["event"] == "hello"


def test_level_filters_lower_lines() -> None:
    out = io.StringIO()
    configure_logging("json", "warning", stream=out)
    log = get_logger("x")
    log.debug("no")
    log.info("no")
    log.warning("yes")
    log.error("also")
    assert [line["event"] for line in _lines(out)] == ["yes", "also"]


def test_exceptions_are_structured_json_without_local_variables() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    password = "hunter2"  # a local in the failing frame must not reach the logs
    try:
        raise RuntimeError(f"boom after {len(password)} tries")
    except RuntimeError:
        get_logger("x").exception("handler failed")
    [line] = _lines(out)
    assert line["level"] == "error"
    [exc] = line["exception"]
    assert exc["exc_type"] == "RuntimeError"
    assert exc["exc_value"] == "boom after 7 tries"
    assert exc["frames"]
    assert "hunter2" not in out.getvalue()


def test_context_variables_are_on_every_line() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    structlog.contextvars.bind_contextvars(adapter="beach-sensors", event_id="abc")
    get_logger("adapter").info("handled")
    [line] = _lines(out)
    assert line["adapter"] == "beach-sensors"
    assert line["event_id"] == "abc"


def test_console_format_is_readable() -> None:
    out = io.StringIO()
    configure_logging("console", stream=out)
    get_logger("server").info("nats-server started", port=4222)
    text = out.getvalue()
    assert "nats-server started" in text
    assert "component=server" in text
    assert "port=4222" in text
    assert not text.lstrip().startswith("{")
    assert "\x1b[" not in text  # no colour codes when the stream is not a terminal


def test_auto_is_console_on_a_terminal() -> None:
    out = _Terminal()
    configure_logging("auto", stream=out)
    get_logger("server").info("hello")
    assert "hello" in out.getvalue()
    assert not out.getvalue().lstrip().startswith("{")


def test_configure_returns_a_logger() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out).info("ready")
    assert _lines(out)[0]["event"] == "ready"


def test_invalid_format_or_level() -> None:
    with pytest.raises(ConfigError, match="log.format = 'xml'.*auto, json, console"):
        configure_logging("xml")
    with pytest.raises(ConfigError, match="log.level = 'loud'.*debug, info, warning, error"):
        configure_logging(level="loud")
