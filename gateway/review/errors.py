"""Review-specific errors, inside the rollguard tree (``ClientError`` -> 4xx)."""

from __future__ import annotations

from rollguard.errors import ClientError


class LeaseLost(ClientError):
    """409: the lease expired (and was returned to the queue) or belongs to another reviewer."""

    status = 409
    type = "invalid_request_error"
    code = "lease_lost"
