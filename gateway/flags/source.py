"""The one protocol for "where a request's flags come from"."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from gateway.flags.context import FlagContext
from rollguard.types import FlagSnapshot

__all__ = ["FlagSource", "VersionedFlagSource"]


class FlagSource(Protocol):
    """Where a request's flags come from: ``gateway.flags.Flags`` (Unleash) in the gateway,
    ``gateway.flags.cache.FlagResultCache`` in front of it, ``rollguard.testing.StaticFlags`` in
    unit tests."""

    def evaluate(
        self,
        names: Iterable[str],
        context: FlagContext,
        *,
        variant_flags: Iterable[str] = (),
        default: bool = True,
    ) -> FlagSnapshot: ...


class VersionedFlagSource(FlagSource, Protocol):
    """A flag source that can say when its state changed (what a result cache needs)."""

    def state_version(self) -> tuple[int, float]: ...

    def raw_state(self) -> str | None: ...
