"""Feature flags: the Unleash client (``client.py``), the per-request context (``context.py``),
the in-memory feature state (``state.py``) and what a snapshot means for a request: model gates,
rollout variants, capabilities (``variants.py``)."""

from gateway.flags.client import DEFAULT_BOOTSTRAP_FILE, Flags
from gateway.flags.context import SESSION_HEADER, TENANT_PROPERTY, USER_HEADER, FlagContext

__all__ = [
    "DEFAULT_BOOTSTRAP_FILE",
    "SESSION_HEADER",
    "TENANT_PROPERTY",
    "USER_HEADER",
    "FlagContext",
    "Flags",
]
