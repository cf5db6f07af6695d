"""Review-specific errors, inside the rollguard tree (``ClientError`` -> 4xx)::

ClientError
├── LeaseLost        409 lease_lost: the caller does not hold the lease (any more)
│   └── LeaseExpired 409 lease_expired: the caller's lease ran out before this call
└── LeaseMismatch    409 lease_item_mismatch: the lease is for another item than the one named
"""

from __future__ import annotations

import datetime as dt

from rollguard.errors import ClientError


class LeaseLost(ClientError):
    """409: the lease was released, expired and was re-claimed, or belongs to another reviewer."""

    status = 409
    type = "invalid_request_error"
    code = "lease_lost"


class LeaseExpired(LeaseLost):
    """409: the caller's lease ran out (``expired_ms``, UTC epoch ms on the store's clock) before
    this heartbeat or verdict; nothing was recorded and the item went back to the queue."""

    code = "lease_expired"

    def __init__(self, expired_ms: int) -> None:
        when = dt.datetime.fromtimestamp(expired_ms / 1000, tz=dt.UTC).isoformat(timespec="milliseconds")
        super().__init__(
            f"the lease expired at {when.replace('+00:00', 'Z')} (no heartbeat in time); nothing was "
            "recorded and the item went back to the queue: claim it again"
        )
        self.expired_ms = expired_ms


class LeaseMismatch(ClientError):
    """409: a verdict or release named an ``item_id`` that is not the item the lease is for;
    nothing was recorded and the lease is still the caller's (``param`` = ``item_id``)."""

    status = 409
    type = "invalid_request_error"
    code = "lease_item_mismatch"

    def __init__(self, lease_id: str) -> None:
        super().__init__(
            f"lease {lease_id} is for another item than the item_id sent: send the item_id the claim "
            "returned with this lease; nothing was recorded and the lease is still yours",
            param="item_id",
        )
