"""MQTT topics and NATS subjects: validation, overlap, templates and the mapping between them. No I/O.

An MQTT topic becomes a NATS subject the way nats-server's own MQTT listener converts it, so a
device's messages land on the same subject whether it talks to nats-server or comes through the
bridge: each level becomes a token (``v3/app/devices/a1/up`` → ``v3.app.devices.a1.up``), an empty
level becomes the token ``/`` (``/a/b`` → ``/.a.b``, ``a//b`` → ``a./.b``) and a ``.`` inside a
level becomes ``//`` (``spBv1.0/plant`` → ``spBv1//0.plant``).

nats-server refuses topics it cannot carry; the bridge percent-encodes them instead, as UTF-8:
whitespace (``%20`` for a space), ``*`` (``%2A``), ``>`` (``%3E``), control characters, and ``%``
itself (``%25``) so that the mapping stays reversible — :func:`subject_to_topic` undoes it. A
topic with none of those characters maps exactly as nats-server maps it.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Mapping
from urllib.parse import unquote

__all__ = [
    "TEMPLATE_FIELDS",
    "TopicTemplate",
    "filter_to_subjects",
    "filters_overlap",
    "parse_template",
    "reserved_subject",
    "subject_to_topic",
    "topic_matches",
    "topic_to_subject",
    "validate_filter",
    "validate_subject_prefix",
]

_MAX_TOPIC_BYTES = 65535
_TOKEN = re.compile(r"^[^\s.*>]+$")
TEMPLATE_FIELDS = ("domain", "entity", "event", "version")
"""The placeholders an outbound topic template may use."""
# What a placeholder's value may not bring into a topic: a level separator, wildcards, NUL.
_UNSAFE_VALUE = re.compile(r"[/+#\x00]")


def _needs_escape(char: str) -> bool:
    code = ord(char)
    return char in "%*>" or char.isspace() or code < 0x20 or 0x7F <= code < 0xA0


def _escape_level(level: str) -> str:
    if not level:
        return "/"
    escaped = "".join(
        "".join(f"%{byte:02X}" for byte in char.encode()) if _needs_escape(char) else char for char in level
    )
    return escaped.replace(".", "//")


def _unescape_token(token: str) -> str:
    if token == "/":
        return ""
    return unquote(token.replace("//", "."), errors="strict")


def topic_to_subject(topic: str, prefix: str = "") -> str:
    """The NATS subject an MQTT topic arrives on, after ``prefix`` (tokens, e.g. ``ttn``) if any."""
    mapped = ".".join(_escape_level(level) for level in topic.split("/"))
    return f"{prefix}.{mapped}" if prefix else mapped


def filter_to_subjects(topic_filter: str, prefix: str = "") -> tuple[str, ...]:
    """The NATS patterns covering every subject that topics matching an MQTT filter arrive on.

    ``+`` becomes ``*``; a last level ``#`` becomes ``>`` and, since MQTT's ``a/#`` also matches
    ``a`` itself, the parent's subject too (``a/#`` → ``a.>`` and ``a``). A filter that is ``#``
    alone, without a prefix, is ``>``.
    """
    levels = topic_filter.split("/")
    multi = levels[-1] == "#"
    if multi:
        levels = levels[:-1]
    tokens = ["*" if level == "+" else _escape_level(level) for level in levels]
    base = ".".join(([prefix] if prefix else []) + tokens)
    if not multi:
        return (base,)
    if not base:
        return (">",)
    return (f"{base}.>", base)


def subject_to_topic(subject: str, prefix: str = "") -> str:
    """The MQTT topic a subject made by :func:`topic_to_subject` came from; ``ValueError`` if none."""
    if prefix:
        if not subject.startswith(prefix + "."):
            raise ValueError(f"subject {subject!r} does not start with the prefix {prefix!r}")
        subject = subject[len(prefix) + 1 :]
    try:
        return "/".join(_unescape_token(token) for token in subject.split("."))
    except UnicodeDecodeError:
        raise ValueError(f"subject {subject!r} holds a percent escape that is not UTF-8") from None


def reserved_subject(subject: str) -> str | None:
    """Why raw MQTT messages may not be published on ``subject``, or ``None`` if they may.

    ``city.`` is the contracts' namespace (a raw payload there would pose as a contract message and
    skip its classification), ``$...`` holds nats-server's and JetStream's APIs, and ``_INBOX.``
    carries replies to requests.
    """
    first = subject.partition(".")[0]
    if first == "city":
        return "subjects under city. carry contract messages only"
    if first.startswith("$"):
        return "subjects beginning with $ are nats-server's and JetStream's APIs"
    if first == "_INBOX":
        return "subjects under _INBOX. carry replies to requests"
    return None


def validate_subject_prefix(prefix: str) -> str:
    """Check an inbound subject prefix (literal tokens, not reserved); ``ValueError`` says what is wrong."""
    if not prefix:
        return prefix
    for token in prefix.split("."):
        if not _TOKEN.match(token):
            raise ValueError(
                f"subject_prefix {prefix!r}: tokens are separated by single dots and may not be empty "
                "or hold whitespace, '*' or '>'"
            )
    why = reserved_subject(prefix)
    if why:
        raise ValueError(f"subject_prefix {prefix!r} is not allowed: {why}")
    return prefix


def _check_length(kind: str, text: str) -> None:
    if not text:
        raise ValueError(f"{kind} may not be empty")
    if "\x00" in text:
        raise ValueError(f"{kind} {text!r} contains a NUL character")
    if len(text.encode()) > _MAX_TOPIC_BYTES:
        raise ValueError(f"{kind} is longer than MQTT's {_MAX_TOPIC_BYTES} bytes")


def validate_filter(topic_filter: str) -> str:
    """Check an MQTT topic filter (``+`` alone in a level, ``#`` alone in the last level)."""
    _check_length("an MQTT topic filter", topic_filter)
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"topic filter {topic_filter!r}: '#' must be the whole last level")
        if "+" in level and level != "+":
            raise ValueError(f"topic filter {topic_filter!r}: '+' must be a whole level")
    return topic_filter


def _overlap(a: list[str], b: list[str]) -> bool:
    for i in range(max(len(a), len(b)) + 1):
        x = a[i] if i < len(a) else None
        y = b[i] if i < len(b) else None
        if x == "#" or y == "#":
            return True  # '#' also matches its parent level: 'a/#' matches 'a'
        if x is None or y is None:
            return x is None and y is None
        if x != y and x != "+" and y != "+":
            return False
    return True  # not reached: one list ends within the loop


def filters_overlap(a: str, b: str) -> bool:
    """Whether some topic matches both filters (a topic is a filter without wildcards)."""
    la, lb = a.split("/"), b.split("/")
    # MQTT 4.7.2: a filter starting with a wildcard does not match topics starting with '$'.
    if (la[0].startswith("$") and lb[0] in ("+", "#")) or (lb[0].startswith("$") and la[0] in ("+", "#")):
        return False
    return _overlap(la, lb)


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether a concrete topic matches an MQTT topic filter."""
    return filters_overlap(topic_filter, topic)


class TopicTemplate:
    """An outbound topic with placeholders, e.g. ``drammen/beach/{entity}``, parsed once.

    Placeholders are :data:`TEMPLATE_FIELDS`. A value never adds a level or a wildcard: ``/``,
    ``+``, ``#`` and NUL in it become ``_``, and an empty value becomes ``_``.
    """

    def __init__(self, template: str) -> None:
        _check_length("an MQTT topic", template)
        if template.startswith("$"):
            raise ValueError(f"topic {template!r}: topics beginning with $ are the broker's own")
        self.template = template
        self._parts: list[tuple[str, str | None]] = []
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise ValueError(f"topic {template!r}: {exc} (write {{{{ and }}}} for literal braces)") from None
        for literal, field, spec, conversion in parsed:
            if "+" in literal or "#" in literal:
                raise ValueError(f"topic {template!r}: a topic to publish on may not hold '+' or '#'")
            self._parts.append((literal, None))
            if field is None:
                continue
            if field not in TEMPLATE_FIELDS or spec or conversion:
                allowed = ", ".join(f"{{{name}}}" for name in TEMPLATE_FIELDS)
                raise ValueError(
                    f"topic {template!r}: unknown placeholder {{{field}}}; the placeholders are {allowed}"
                )
            self._parts.append(("", field))

    def render(self, values: Mapping[str, str]) -> str:
        """The topic for these placeholder values."""
        return "".join(
            literal if field is None else (_UNSAFE_VALUE.sub("_", values[field]) or "_")
            for literal, field in self._parts
        )

    def as_filter(self) -> str:
        """An MQTT filter matching every topic the template can render (a level with a placeholder
        becomes ``+``), to check that it stays clear of the inbound filters."""
        marked = "".join("\x00" if field else literal for literal, field in self._parts)
        return "/".join("+" if "\x00" in level else level for level in marked.split("/"))

    def __repr__(self) -> str:
        return f"TopicTemplate({self.template!r})"


@functools.lru_cache(maxsize=256)
def parse_template(template: str) -> TopicTemplate:
    """A parsed template, cached (configs are frozen Structs and cannot hold one)."""
    return TopicTemplate(template)
