"""A result cache in front of ``Flags.evaluate``: a request whose flag context (stickiness ids,
tenant, remote address, properties) and flag names were answered before, under the same flag state
version, gets the same ``FlagSnapshot`` without calling the Unleash engine (about 60 microseconds
of CPU per known flag, ``bench/flags_eval.py``).

Correctness rests on Unleash's evaluation being a pure function of (feature state, context) for
the requests it caches:

* the key holds every context field rollguard sends (``FlagContext.to_unleash()``), the names,
  the variant flags and the default, plus ``Flags.state_version()``, which changes on every
  answered poll, reload, client swap, ``kill`` and ``revive``: nothing cached survives a change;
* results are not cached for ``settle_s`` seconds after a change (the SDK writes the new state to
  its cache, where ``Flags`` sees it, just *before* its engine loads it);
* a context with neither ``userId`` nor ``sessionId`` is never cached (Unleash's ``default``
  stickiness buckets it at random per evaluation);
* a feature state that uses randomness or time anywhere (``random`` stickiness,
  ``gradualRolloutRandom``, a ``currentTime`` constraint) turns the cache off for that version
  (a substring test over the state's JSON: conservative, it may turn the cache off needlessly,
  never on wrongly).

Bounded: ``max_entries`` snapshots, least recently used evicted first. A hit returns a copy, so
callers may change their snapshot. Unleash's own usage metrics count evaluations: a hit is not
counted there (rollguard's audit record carries every request's snapshot).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from gateway.flags.context import FlagContext
from gateway.flags.source import VersionedFlagSource
from rollguard.types import FlagSnapshot

__all__ = ["NONDETERMINISTIC_MARKERS", "CachedFlags"]

NONDETERMINISTIC_MARKERS = ('"random"', "gradualRolloutRandom", '"currentTime"')
"""Strings whose presence in a feature-state document makes evaluation depend on more than the
context (Unleash strategy and constraint reference: stickiness ``random``, the
``gradualRolloutRandom`` strategy, ``currentTime`` date constraints)."""


def _copy(s: FlagSnapshot) -> FlagSnapshot:
    return FlagSnapshot(enabled=dict(s.enabled), variants=dict(s.variants), payloads=dict(s.payloads))


def _context_key(context: FlagContext) -> tuple[Any, ...] | None:
    ctx = context.to_unleash()
    if "userId" not in ctx and "sessionId" not in ctx:
        return None
    props = ctx.get("properties") or {}
    return (ctx.get("userId"), ctx.get("sessionId"), ctx.get("remoteAddress"), tuple(sorted(props.items())))


class CachedFlags:
    """``flags`` (a ``gateway.flags.Flags``) with a result cache; the same ``evaluate`` signature.
    ``hits`` / ``misses`` count cacheable lookups."""

    def __init__(self, flags: VersionedFlagSource, max_entries: int = 10_000, settle_s: float = 1.0) -> None:
        self.flags = flags
        self.max_entries = max_entries
        self.settle_s = settle_s
        self._data: OrderedDict[tuple[Any, ...], FlagSnapshot] = OrderedDict()
        self._lock = threading.Lock()
        self._version: tuple[int, float] | None = None
        self._deterministic = False
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def _current(self) -> tuple[int, float]:
        """The state version, dropping every entry (and re-reading the state) when it moved."""
        version = self.flags.state_version()
        if version != self._version:
            raw = self.flags.raw_state()
            with self._lock:
                self._data.clear()
                self._version = version
                self._deterministic = raw is not None and not any(m in raw for m in NONDETERMINISTIC_MARKERS)
        return version

    def evaluate(
        self,
        names: Iterable[str],
        context: FlagContext,
        *,
        variant_flags: Iterable[str] = (),
        default: bool = True,
    ) -> FlagSnapshot:
        """``Flags.evaluate`` (same arguments, same answer), from the cache when allowed (see the
        module docstring)."""
        names, variant_flags = tuple(names), tuple(variant_flags)
        version = self._current()
        ctx_key = _context_key(context) if self._deterministic else None
        if ctx_key is None:
            return self.flags.evaluate(names, context, variant_flags=variant_flags, default=default)
        key = (version[0], names, variant_flags, default, ctx_key)
        with self._lock:
            found = self._data.get(key)
            if found is not None:
                self._data.move_to_end(key)
                self.hits += 1
                return _copy(found)
            self.misses += 1
        snapshot = self.flags.evaluate(names, context, variant_flags=variant_flags, default=default)
        if time.monotonic() - version[1] >= self.settle_s and self.flags.state_version() == version:
            with self._lock:
                self._data[key] = _copy(snapshot)
                while len(self._data) > self.max_entries:
                    self._data.popitem(last=False)
        return snapshot
