"""Tenants, stores and reading back: the rights of ``asks``, ``stores`` and ``recalls``.

A service with tenants (the volunteer platform and its organisations) needs three rights the
contract rules of :mod:`bus.access.policy` do not give, each granted here from a field of the
:class:`~bus.access.users.Declaration`:

* **Tenants ask on their own subject only** (``asks``): an organisation may send requests on
  ``city.<class>.rpc.<domain>.<event>.<its id>`` and nowhere else, so it can neither offer as
  another nor ask for another's volunteers — the broker refuses the publish, the responder never
  sees it. The answer comes to its own inbox (the responder's ``allow_responses``).
* **A service keeps its own key-value stores** (``stores``, :func:`bus.subjects.store_bucket`):
  it may create and read its ``KV_<instance>_<name>`` stream and write its keys (compare-and-set,
  :mod:`bus.store`); no other bucket, no ``PURGE`` or ``DELETE`` of the stream, and no ``UPDATE``
  (which could point the stream at other subjects, to read them): an operator raises its replicas.
* **A service reads back what it stored** (``recalls``, contracts it produces): ``STREAM.INFO``
  and ``STREAM.MSG.GET`` of their stream (the read-only reads of :mod:`bus.reading`, never a
  consumer, which could name any deliver subject) and their subjects, to hear of new messages.
  The stream is the whole classification and domain: a recalled personal contract's stream is
  read whole, which is why only a producer of the contract may recall it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from bus import subjects
from bus.access.users import AccessError, Declaration, Grant

__all__ = ["asker", "check_tenancy", "tenancy_grants", "tenancy_rights"]


def asker(name: str, kind: str, *asks: str) -> Declaration:
    """A user that only asks: sends requests on ``asks`` (request subjects, an entity or ``*``)
    and reads its own inbox, where the answers come; it publishes and consumes nothing else, and
    no dead letter (a desk, an organisation, an officer, an analyst, a citizen)."""
    return Declaration(
        name, consumes=(), produces=(), declassifier=False, kind=kind, asks=asks, dead_letters=False
    )


def tenancy_grants(d: Declaration) -> tuple[list[Grant], list[Grant]]:
    """What ``d`` may publish and subscribe for its ``asks``, ``stores`` and ``recalls``."""
    publish: list[Grant] = []
    subscribe: list[Grant] = []
    for subject in d.asks:
        publish.append(Grant(subject, "asks on its own request subject (a tenant: never as another)"))
    for bucket in d.stores:
        stream = subjects.store_stream(bucket)
        publish += [
            Grant(subjects.js_api("STREAM", "INFO", stream), f"binds to its key-value store {bucket}"),
            Grant(subjects.js_api("STREAM", "CREATE", stream), f"creates its key-value store {bucket}"),
            Grant(subjects.store_filter(bucket), f"writes the keys of {bucket} (compare-and-set)"),
            Grant(subjects.js_api("DIRECT", "GET", stream, ">"), f"reads the keys of {bucket}"),
            Grant(subjects.js_api("STREAM", "MSG", "GET", stream), f"reads the keys of {bucket}"),
        ]
    for cls in d.recalls:
        info = cls.__contract__
        stream = subjects.stream_name(info.classification, info.domain)
        what = f"what it stored of {info.name} (the whole stream {stream})"
        publish += [
            Grant(subjects.js_api("STREAM", "INFO", stream), f"reads back {what}"),
            Grant(subjects.js_api("STREAM", "MSG", "GET", stream), f"reads back {what}"),
        ]
        subscribe.append(
            Grant(
                subjects.contract_filter(cls),
                f"hears that {info.name} v{info.version} was stored, to read it back",
            )
        )
    return publish, subscribe


def tenancy_rights(
    d: Declaration, label: str, publish: Callable[[str, str], None], subscribe: Callable[[str, str], None]
) -> None:
    """Check ``d``'s ``asks``, ``stores`` and ``recalls`` (:func:`check_tenancy`, naming ``label``)
    and grant them through ``publish(subject, why)`` and ``subscribe(subject, why)``."""
    check_tenancy(d, label)
    pub, sub = tenancy_grants(d)
    for grant in pub:
        publish(grant.subject, grant.why)
    for grant in sub:
        subscribe(grant.subject, grant.why)


def check_tenancy(d: Declaration, label: str) -> None:
    """Refuse asks that are not request subjects, stores that are not bucket names, and reading
    back a contract ``d`` does not produce; the message names ``label`` and what to change."""
    for subject in d.asks:
        tokens = subject.split(".")
        literal = all(t not in ("*", ">") for t in tokens[:5]) and tokens[-1] != ">"
        if len(tokens) != 6 or tokens[0] != subjects.ROOT or tokens[2] != subjects.RPC or not literal:
            raise AccessError(
                f"{label}: asks {subject!r} is not a request subject; build it with "
                "bus.subjects.request_filter(contract, entity)"
            )
    for bucket in d.stores:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", bucket):
            raise AccessError(
                f"{label}: store {bucket!r} is not a bucket name; use bus.subjects.store_bucket"
            )
    for cls in d.recalls:
        if cls not in d.produces:
            raise AccessError(
                f"{label}: it reads back {cls.__contract__.name}, which it does not produce; an adapter "
                "reads back only what it stored"
            )
