"""Admission reservations of the audit writer: a request admitted to the gateway holds one record's
place (``Store.reserve``) until it is over, so records in flight can never overfill the memory
queue or the spool (issue 10: 270 requests in flight once got 200 with room for 200 records)."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Reservation"]


class Reservation:
    """One admitted record's place. ``release()`` once the request is over (its record appended,
    or never to be); idempotent, so every exit path may call it."""

    __slots__ = ("_release",)

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None
