"""The HTTP/SSE gateway (issue 16). The core (adapter, app, feeds) lands from main; this branch adds
the catalogue (:mod:`adapters.gateway.catalogue`)."""

__all__: list[str] = []
