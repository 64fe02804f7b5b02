"""What an SSE client asked to follow: its ``subject`` parameters as NATS patterns it may read.

``GET /api/v1/stream?subject=P&subject=P2`` takes subject patterns (``city.public.>``,
``city.public.environment.beach-observation.*``) and contract names
(``environment.beach-observation``, ``environment.beach-observation@1``), told apart by the rule
``citybus tail`` uses (:func:`bus.subjects.resolve_pattern`), so the two accept the same words.

Decisions, and why:

* **The classification token decides the answer.** Subjects are
  ``city.<classification>.<domain>.<event>.<entity>``. A pattern naming ``personal`` is refused
  (403) whoever asks: the gateway never serves personal data. One naming ``internal`` needs a
  bearer token (401 without one, 403 with a token whose user reads public data only). Refusing at
  once, with what to do, is kinder than an open stream on which nothing ever arrives — and the
  broker still enforces the split underneath, since each caller is served from the feed of the
  NATS user it maps to.
* **A wildcard classification is narrowed, not refused.** ``city.*.environment.>`` or ``>`` means
  "whatever I may read": it becomes one pattern per classification the caller reads
  (``city.public.environment.>``), exactly what no ``subject`` at all means.
* **Anything else is a 400 that says what to fix:** an unknown contract (with the nearest names),
  a malformed pattern, a subject outside ``city.…`` (MQTT topics, control subjects), too many or
  too long patterns (they cost a match per message per client).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from bus import subjects
from bus.errors import CityBusError
from contracts import Classification, Registry, UnknownContractError

__all__ = ["MAX_PATTERNS", "MAX_PATTERN_LENGTH", "SubjectRefusedError", "readable_patterns", "select"]

MAX_PATTERNS = 32
"""The most ``subject`` parameters one stream request may give."""

MAX_PATTERN_LENGTH = 256
"""The longest ``subject`` parameter accepted (a NATS subject of the bus is far shorter)."""


class SubjectRefusedError(CityBusError):
    """A ``subject`` the gateway will not stream: ``status`` is the HTTP answer (400, 401 or 403),
    ``title`` its short summary and the message what to do."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title


def _served(readable: Collection[Classification]) -> list[Classification]:
    """The classifications served to this caller, in a fixed order; never personal."""
    return [c for c in Classification if c in readable and c is not Classification.PERSONAL]


def readable_patterns(readable: Collection[Classification]) -> list[str]:
    """Everything a caller reading ``readable`` may follow (``city.public.>`` for anonymous)."""
    return [subjects.classification_filter(c) for c in _served(readable)]


def _bad(detail: str) -> SubjectRefusedError:
    return SubjectRefusedError(400, "Bad subject", detail)


def _one(text: str, registry: Registry, readable: Collection[Classification], *, token: bool) -> list[str]:
    if len(text) > MAX_PATTERN_LENGTH:
        raise _bad(f"subject: {len(text)} characters, at most {MAX_PATTERN_LENGTH}")
    try:
        pattern = subjects.resolve_pattern(text, registry)
    except UnknownContractError as exc:
        raise _bad(f"subject {text!r}: {exc.args[0] if exc.args else exc}") from None
    except CityBusError as exc:
        raise _bad(str(exc)) from None
    if not subjects.overlaps(pattern, subjects.data_filter()):
        raise _bad(
            f"subject {text!r} is not city data: give a contract name (environment.beach-observation) "
            "or a pattern city.<classification>.<domain>.<event>.<entity> (city.public.>)"
        )
    tokens = pattern.split(".")
    word = tokens[1] if len(tokens) > 1 else ">"
    if word in ("*", ">"):
        narrowed = [
            p
            for c in _served(readable)
            if (p := subjects.intersection(pattern, subjects.classification_filter(c)))
        ]
        if not narrowed:
            raise _bad(f"subject {text!r} matches no data subject (city.<classification>.<domain>.<event>.…)")
        return narrowed
    try:
        classification = Classification(word)
    except ValueError:
        names = ", ".join(c.value for c in Classification if c is not Classification.PERSONAL)
        raise _bad(f"subject {text!r}: {word!r} is no classification (city.<{names}>.…)") from None
    if classification is Classification.PERSONAL:
        raise SubjectRefusedError(
            403, "Personal data", f"subject {text!r}: personal data is never served by the gateway"
        )
    if classification not in readable:
        if not token:
            raise SubjectRefusedError(
                401,
                "Token required",
                f"subject {text!r}: {classification} data needs a bearer token "
                "(Authorization: Bearer …, issued with citybus auth add-token)",
            )
        raise SubjectRefusedError(
            403, "Not readable", f"subject {text!r}: this token's user may not read {classification} data"
        )
    return [pattern]


def select(
    texts: Sequence[str],
    registry: Registry,
    readable: Collection[Classification],
    *,
    token: bool,
) -> list[str]:
    """The patterns to follow for ``texts`` (the ``subject`` parameters), for a caller who reads
    ``readable`` and who did (``token``) or did not give a bearer token.

    No ``texts``: everything the caller may read. Raises :class:`SubjectRefusedError` otherwise
    when a text is refused, with the HTTP status and what to do.
    """
    if not texts:
        return readable_patterns(readable)
    if len(texts) > MAX_PATTERNS:
        raise _bad(f"{len(texts)} subject parameters, at most {MAX_PATTERNS}")
    chosen: list[str] = []
    for text in texts:
        for pattern in _one(text, registry, readable, token=token):
            if pattern not in chosen:
                chosen.append(pattern)
    return chosen
