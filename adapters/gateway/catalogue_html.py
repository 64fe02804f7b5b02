"""The catalogue as a page people read: one section per data set, its fields, access and ways in.

Built from the same :class:`~adapters.gateway.catalogue.Dataset` values as the DCAT-AP-NO
document, so the two say the same. Like the certification report's page
(``sandbox/certify/report.py``) it is one self-contained document: inline CSS, no script,
nothing fetched.

Decisions, and why:

* **Every string is escaped where it is written** (``html.escape``, quotes too): contract
  docstrings and field descriptions come from installed packages, and entity names from
  subjects, which anyone allowed to publish chooses.
* **A Content-Security-Policy forbids scripts and fetches** (the route sends it as a header too):
  escaping is the defence, the policy the second one.
* **Entities are listed up to a limit** (:data:`ENTITY_ROWS`), with a count of the rest: a data set
  can have thousands, and the page is for reading.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

from adapters.gateway.catalogue import Dataset, Distribution
from adapters.gateway.fields import unit_label

__all__ = [
    "CSP",
    "ENTITY_ROWS",
    "render_html",
]

ENTITY_ROWS: Final = 50
"""Entities listed per data set; the others are counted."""

CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
"""The page's Content-Security-Policy: no script, nothing fetched."""

_ROLE: Final = re.compile(r":[a-z]+:`~?([^`]+)`")
_LITERAL: Final = re.compile(r"``([^`]+)``")
_OPTIONAL: Final = ' <span class="muted">(optional)</span>'
_FORBIDDEN: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

_CSS: Final = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1b1f24;margin:0 auto;
max-width:1100px;padding:0 20px 60px}
h1{font-size:1.6em;margin:.8em 0 .3em}h2{margin-top:1.8em;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.92em}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em}
.facts th{background:none;border:none;padding:2px 12px 2px 0}.facts td{border:none;padding:2px 0}
.access{display:inline-block;padding:.05em .5em;border-radius:6px;color:#fff;font-size:.85em}
.access.public{background:#1a7f37}.access.internal{background:#9a6700}.access.personal{background:#cf222e}
.muted{color:#6e7781}
"""

_ACCESS_TEXT: Final = {
    "public": "Public (PUBLIC): anyone may read it, no login needed.",
    "internal": "Internal (RESTRICTED): readable with a bearer token that maps to an internal user.",
    "personal": "Personal (NON_PUBLIC): never served by the gateway; only the adapters that declare "
    "the contract may read it on NATS.",
}


def _e(text: object) -> str:
    """``text`` for HTML content or a quoted attribute."""
    return html.escape(_FORBIDDEN.sub("\ufffd", str(text)), quote=True)


def _marked(text: str) -> str:
    """A docstring paragraph for HTML: escaped, its ````literals```` and ``:role:`names``` as code."""
    escaped = _e(text)
    escaped = _ROLE.sub(lambda m: f"<code>{m.group(1).rsplit('.', 1)[-1]}</code>", escaped)
    return _LITERAL.sub(r"<code>\1</code>", escaped)


def _time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _rate(d: Dataset) -> str:
    facts = d.facts
    if facts is None or facts.unreadable is not None:
        return _unseen(d)
    rate = facts.rate_per_hour
    if rate is None:
        return f"{_count(facts.messages, 'message')} stored, too few to tell a rate"
    text = f"{rate:.1f} messages per hour"
    if facts.interval is not None:
        text += f"; each entity about every {_span(facts.interval)}"
    return text


def _entities(d: Dataset) -> str:
    facts = d.facts
    if facts is None or facts.unreadable is not None:
        return _unseen(d)
    return f"{_count(len(facts.entities), 'entity', 'entities')}, {_count(facts.messages, 'message')} stored"


def _count(n: int, one: str, many: str = "") -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _unseen(d: Dataset) -> str:
    """Why a data set shows no stream facts."""
    if d.classification.value == "personal":
        return "not shown: personal data"
    if d.facts is not None and d.facts.unreadable is not None:
        return f"not shown: {d.facts.unreadable}"
    return "no messages stored"


def _licence(d: Dataset) -> str:
    a = d.attribution
    if a is not None:
        return (
            f'<a href="{_e(a.licence.url)}">{_e(a.licence.name)}</a>; credit <strong>{_e(a.credit)}</strong>'
            f" ({_e(a.source)})"
        )
    if d.classification.value != "public":
        return "none: not open data"
    return f"no licence declared{f' by package {_e(d.package)}' if d.package else ''}"


def _way(x: Distribution, d: Dataset) -> str:
    if x.kind == "nats":
        return (
            f"<li><strong>NATS</strong>: subscribe to <code>{_e(d.subject)}</code> — "
            f'<a href="{_e(x.url)}">AsyncAPI document</a></li>'
        )
    label = {"http": "HTTP", "sse": "Server-Sent Events"}.get(x.kind, x.kind)
    return f'<li><strong>{_e(label)}</strong>: <a href="{_e(x.url)}"><code>{_e(x.url)}</code></a></li>'


def _section(d: Dataset) -> str:
    klass = d.classification.value
    paragraphs = "".join(f"<p>{_marked(p)}</p>" for p in d.description.split("\n\n") if p.strip())
    facts = [
        ("Identifier", f"<code>{_e(d.identifier)}</code>"),
        ("Access", _e(_ACCESS_TEXT[klass])),
        ("Package", _e(d.package or "-")),
        ("Update rate", _e(_rate(d))),
        ("Entities", _e(_entities(d))),
        ("Last update", _e(_time(d.facts.last_stored if d.facts else None))),
        ("Provenance", _e(d.provenance_text())),
        ("Licence", _licence(d)),
    ]
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in facts)
    ways = "".join(_way(x, d) for x in d.distributions)
    ways += f'<li><strong>JSON Schema</strong>: <a href="{_e(d.schema_url)}">{_e(d.schema_url)}</a></li>'
    if klass == "personal":
        ways += "<li>Not over HTTP or SSE: the gateway never serves personal data.</li>"
    field_rows = "".join(
        f"<tr><td><code>{_e(f.name)}</code></td><td>{_e(f.type)}</td>"
        f"<td>{_e(unit_label(f.unit)) if f.unit else ''}</td>"
        f"<td>{_e(f.description)}{'' if f.required else _OPTIONAL}</td></tr>"
        for f in d.fields
    )
    out = [
        f'<section class="dataset" id="{_e(d.identifier)}">',
        f'<h2>{_e(d.title)} <span class="access {klass}">{_e(d.access_right)}</span></h2>',
        paragraphs,
        f'<table class="facts"><tbody>{rows}</tbody></table>',
        f"<h3>How to get it</h3><ul>{ways}</ul>",
        '<h3>Fields</h3><table class="fields"><thead><tr><th>name</th><th>type</th><th>unit</th>'
        f"<th>description</th></tr></thead><tbody>{field_rows}</tbody></table>",
    ]
    if d.facts is not None and d.facts.unreadable is None and d.facts.entities:
        shown = sorted(d.facts.entities, key=lambda e: e.entity)[:ENTITY_ROWS]
        entity_rows = "".join(
            f"<tr><td><code>{_e(e.entity)}</code></td><td>{e.messages}</td>"
            f"<td>{_e(_time(e.last_stored))}</td><td>{_e(e.provenance or '-')}</td></tr>"
            for e in shown
        )
        rest = len(d.facts.entities) - len(shown)
        out.append(
            '<h3>Entities</h3><table class="entities"><thead><tr><th>entity</th><th>messages</th>'
            f"<th>last stored</th><th>provenance</th></tr></thead><tbody>{entity_rows}</tbody></table>"
            + (f'<p class="muted">and {rest} more</p>' if rest > 0 else "")
        )
    out.append("</section>")
    return "\n".join(out)


def render_html(datasets: Sequence[Dataset], *, jsonld_url: str, home_url: str) -> str:
    """The catalogue page: an index, then one section per data set."""
    index = "".join(
        f'<tr><td><a href="#{_e(d.identifier)}">{_e(d.title)}</a></td>'
        f'<td><span class="access {d.classification.value}">{_e(d.access_right)}</span></td>'
        f"<td>{_e(_entities(d))}</td><td>{_e(_rate(d))}</td></tr>"
        for d in datasets
    )
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>citybus catalogue: the city's data on the bus</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>The city's data on the bus</h1>",
        "<p>Every data set that flows on citybus: what it holds, its fields and units, how often it "
        "updates, who may read it and how to get it. Generated from the contracts and the streams. "
        f'Machine-readable as <a href="{_e(jsonld_url)}">DCAT-AP-NO JSON-LD</a>; '
        f'the live map is on <a href="{_e(home_url)}">the home page</a>.</p>',
        '<table class="index"><thead><tr><th>data set</th><th>access</th><th>entities</th>'
        f"<th>update rate</th></tr></thead><tbody>{index}</tbody></table>",
        *(_section(d) for d in datasets),
        "</body></html>",
    ]
    return "\n".join(out) + "\n"
