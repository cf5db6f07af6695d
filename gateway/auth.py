"""App API keys -> tenant. Keys are configured hashed (``sha256:<hex>``); the presented key is
hashed and looked up. With no keys configured the gateway runs without auth on loopback only
(``check_bind`` refuses anything else at startup).
"""

from __future__ import annotations

import ipaddress
import logging

from starlette.requests import Request

from rollguard.errors import AuthenticationFailed, ConfigError
from rollguard.settings import ApiKey, hash_api_key

log = logging.getLogger("rollguard.auth")

ANONYMOUS_TENANT = "default"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, keys: list[ApiKey]) -> None:
    """Refuse to serve a non-loopback address without API keys. Raises ``ConfigError``."""
    if not keys and not is_loopback(host):
        raise ConfigError(
            f"refusing to bind {host} without API keys: add gateway.api_keys or bind 127.0.0.1",
            field="gateway.host",
        )


class Authenticator:
    """Maps ``Authorization: Bearer <key>`` to a tenant."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self._callers = {k.key_hash: (k.tenant, k.name or None) for k in keys if k.key_hash}
        self.enabled = bool(self._callers)
        if not self.enabled:
            log.warning("no API keys configured: serving without authentication (loopback only)")

    def tenant_for(self, request: Request) -> str:
        """The caller's tenant. Raises ``AuthenticationFailed`` (401) for a missing or wrong key."""
        return self.caller(request)[0]

    def caller(self, request: Request) -> tuple[str, str | None]:
        """The caller's tenant and the ``name`` of its app key (None: unnamed, or no auth).
        Raises ``AuthenticationFailed`` (401) for a missing or wrong key."""
        if not self.enabled:
            return ANONYMOUS_TENANT, None
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationFailed("missing API key: send 'Authorization: Bearer <key>'")
        found = self._callers.get(hash_api_key(token.strip()))
        if found is None:
            raise AuthenticationFailed("invalid API key")
        return found
