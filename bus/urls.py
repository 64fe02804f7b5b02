"""NATS URLs as citybus takes them: one server or a cluster's nodes, and never a secret in a log.

``nats.url`` (and ``--nats``) is one URL or a comma-separated list of a cluster's nodes
(:func:`server_list`); anything that logs or shows a URL shows :func:`redact_url` of it.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = ["redact_url", "server_list"]

_SECRET_PARAMETER = re.compile(r"(?i)(key|token|secret|password|passwd|auth|client_?id|signature|sig)")


def redact_url(url: str) -> str:
    """``url`` with any user name, password or token replaced by ``***``, for logs and messages:
    the user information, and the value of every query parameter whose name says it is a secret
    (``apikey``, ``access_token``, ``client_id`` …)."""
    parts = []
    for server in url.split(","):
        parsed = urlsplit(server.strip())
        if parsed.username or parsed.password:
            parsed = parsed._replace(netloc="***@" + parsed.netloc.rpartition("@")[2])
        if parsed.query:
            pairs = [p.partition("=") for p in parsed.query.split("&")]
            query = "&".join(
                f"{name}{eq}{'***' if eq and _SECRET_PARAMETER.search(name) else value}"
                for name, eq, value in pairs
            )
            parsed = parsed._replace(query=query)
        parts.append(parsed.geturl())
    return ",".join(parts)


def server_list(url: str) -> list[str]:
    """The servers of ``url``: one URL, or a cluster's nodes as a comma-separated list.

    nats-py takes a list as its server pool (it connects to one and fails over to the others, and
    learns further nodes from the cluster itself); a comma-separated string would be one bad URL.
    """
    return [u.strip() for u in url.split(",") if u.strip()]
