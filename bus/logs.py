"""Logging with structlog: JSON lines by default, readable key-value lines on a terminal.

:func:`configure_logging` is called once, by the CLI, from :class:`~bus.config.LogConfig`; components
receive a logger bound to their name (:func:`get_logger`) rather than reaching for a global one.
Values bound with ``structlog.contextvars.bind_contextvars`` (the adapter, say) appear on every line
logged in that context, and so does the ``event_id`` of the message being handled (set by the bus in
:data:`CURRENT_EVENT`, one context variable, since binding structlog's per message measured as a cost
of its own).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any, TextIO, cast

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import FilteringBoundLogger, Processor

from bus.errors import ConfigError

__all__ = ["CURRENT_EVENT", "FORMATS", "LEVELS", "add_event_id", "configure_logging", "get_logger"]

CURRENT_EVENT: ContextVar[str | None] = ContextVar("citybus_event_id", default=None)
"""The ``ce-id`` of the message whose handler is running, if any."""


def add_event_id(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: the handled message's ``event_id`` on each line logged while handling it."""
    event_id = CURRENT_EVENT.get()
    if event_id is not None:
        event_dict.setdefault("event_id", event_id)
    return event_dict


FORMATS = ("auto", "json", "console")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(
    format: str = "auto",  # named like the log.format key it comes from
    level: str = "info",
    stream: TextIO | None = None,
) -> FilteringBoundLogger:
    """Configure structlog for the process and return a logger.

    ``format`` is ``json`` (one JSON object per line: ``timestamp`` in ISO 8601 UTC, ``level``,
    ``event`` and the bound keys), ``console`` (aligned key-value lines), or ``auto``: console when
    ``stream`` is a terminal, JSON otherwise, so that log shippers always get JSON. Lines below
    ``level`` cost one method call and are dropped. ``stream`` defaults to standard error.
    """
    if format not in FORMATS:
        raise ConfigError(f"log.format = {format!r} is not allowed: expected one of {', '.join(FORMATS)}")
    if level not in LEVELS:
        raise ConfigError(f"log.level = {level!r} is not allowed: expected one of {', '.join(LEVELS)}")
    out = stream if stream is not None else sys.stderr
    console = format == "console" or (format == "auto" and _isatty(out))

    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        add_event_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if console:
        # ConsoleRenderer formats exceptions itself, readably; colours only for a real terminal.
        # Plain tracebacks, always: by default it formats them with `rich` or `better_exceptions`
        # when either happens to be installed, so a log line depended on another package's version
        # (an old rich, pulled in by a test dependency, made every logged exception raise TypeError).
        renderer = structlog.dev.ConsoleRenderer(
            colors=_isatty(out), exception_formatter=structlog.dev.plain_traceback
        )
        processors.append(renderer)
    else:
        # Exceptions become structured data ({"exception": [{"exc_type": ..., "frames": [...]}]}),
        # which stays one JSON line and can be queried in the log store. Without local variables:
        # they would put passwords and personal data from the failing frame into the logs.
        processors += [
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            structlog.processors.JSONRenderer(),
        ]

    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        # Not cached: reconfiguring (the CLI after reading the config, tests) must reach every logger.
        cache_logger_on_first_use=False,
    )
    return get_logger("citybus")


def get_logger(component: str, **bound: Any) -> FilteringBoundLogger:
    """A logger with ``component`` (and any other ``bound`` keys) on every line."""
    return cast(FilteringBoundLogger, structlog.get_logger().bind(component=component, **bound))


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
