"""Who is asking: the caller of an HTTP request, and the answers that refuse one.

No ``Authorization`` header: the caller is the public, read as the NATS user ``public``. A bearer
token (``Authorization: Bearer cbt_…``, issued with ``citybus auth add-token``) maps to the NATS
user it was issued for (``internal``); an unknown or revoked token is refused (401), never quietly
downgraded to public — a caller who sent a token expects to be who it says.

Decisions, and why:

* **Problems as RFC 9457 JSON** (``application/problem+json``: ``type``, ``title``, ``status``,
  ``detail``): one shape for every refusal and mistake, with a ``detail`` that says what to do.
* **The class is checked early, the broker enforces it.** Internal data without a token is a 401
  and personal data a 403 *before* any read, so the caller learns why; were these checks wrong,
  the feed of the caller's user still could not read what the broker does not allow it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from contracts import Classification, Contract

__all__ = ["Caller", "Refusal", "TokenGrant", "TokenResolver", "caller_of", "check_readable", "problem"]

PROBLEM = "application/problem+json"


class TokenGrant(Protocol):
    """What a valid token stands for (``bus.access.tokens.TokenInfo``)."""

    @property
    def name(self) -> str:
        """The token's name (``citybus auth add-token NAME``)."""
        ...

    @property
    def account(self) -> str:
        """The account it is for (``CITY``, ``SANDBOX``)."""
        ...

    @property
    def user(self) -> str:
        """The NATS user of that account it reads as (``internal``)."""
        ...


class TokenResolver(Protocol):
    """Resolves a bearer token (``bus.access.tokens.TokenStore``)."""

    def resolve(self, token: str) -> TokenGrant | None:
        """What ``token`` stands for, or ``None`` when it is unknown or revoked."""
        ...


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the NATS user the gateway reads as for them, and their token's name if any."""

    user: str
    token: str | None = None


class Refusal(Exception):
    """Ends a request with a problem response (the app's middleware answers with it)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


def problem(status: int, title: str, detail: str, *, headers: dict[str, str] | None = None) -> web.Response:
    """An RFC 9457 problem response."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM, headers=headers)


def _unauthorized(detail: str) -> Refusal:
    challenge = {"WWW-Authenticate": 'Bearer realm="citybus"'}
    return Refusal(problem(401, "Unauthorized", detail, headers=challenge))


def caller_of(request: web.Request, tokens: TokenResolver | None, account: str) -> Caller:
    """The caller of ``request``; raises :class:`Refusal` (401) for a token that is not valid here."""
    header = request.headers.get("Authorization")
    if header is None:
        return Caller("public")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("send `Authorization: Bearer <token>` (a token from `citybus auth add-token`)")
    grant = tokens.resolve(token) if tokens is not None else None
    if grant is None:
        raise _unauthorized("unknown or revoked token: ask the operator for one (`citybus auth add-token`)")
    if grant.account.upper() != account.upper():
        raise _unauthorized(
            f"token {grant.name} is for the {grant.account.upper()} account; this gateway serves "
            f"{account.upper()}"
        )
    return Caller(grant.user, grant.name)


def check_readable(caller: Caller, contract: type[Contract], readable: frozenset[Classification]) -> None:
    """Refuse (401/403) a contract the caller's user does not read; ``readable`` is what it reads."""
    info = contract.__contract__
    if info.classification is Classification.PERSONAL:
        raise Refusal(
            problem(403, "Forbidden", f"{info.name} is personal data: the gateway never serves personal data")
        )
    if info.classification in readable:
        return
    if caller.token is None:
        raise _unauthorized(f"{info.name} is {info.classification.value} data: it needs a bearer token")
    raise Refusal(
        problem(403, "Forbidden", f"token {caller.token} may not read {info.classification.value} data")
    )
