"""The HTTP/SSE gateway (issue 16): placeholder until the gateway core lands on main."""
