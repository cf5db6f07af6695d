"""The upstream boundary: ``Upstream`` (the router: aliases, round-robin, retries, fallbacks,
``Retry-After`` cooldowns; ``router.py``), the transports behind one small ``Transport`` protocol
(``transports.py``: lean aiohttp and litellm) and the error mapping (``errors.py``). See
``gateway.upstream.router`` for the full contract."""

from gateway.upstream.errors import map_http_error
from gateway.upstream.router import Upstream, UpstreamStream
from gateway.upstream.transports import LEAN_PROVIDERS, Deployment

__all__ = ["LEAN_PROVIDERS", "Deployment", "Upstream", "UpstreamStream", "map_http_error"]
