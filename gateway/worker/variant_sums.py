"""Per flag variant, what the rollout judge needs beyond the window engine's comparisons: latency
and time-to-first-token histograms (for ``latency_p95_ms`` / ``ttft_p95_ms``) and the shadow
would-block moments (``shadow_would_block_rate``). The detector worker folds every counted
interaction into it in the same optimistic transaction as the window state
(``gateway.store.keys.VARIANT_SUMS_KEY``); the rollout controller reads it
(``gateway.rollout.stats``) and subtracts the step's baseline, as for the comparisons.

Shape (JSON)::

    {"<variant>": {"latency_ms": {"<bucket>": count, ...},
                   "ttft_ms": {"<bucket>": count, ...},
                   "shadow_would_block": [n, sum, sum_sq]}}

Histogram: fixed log-spaced buckets, bucket ``i`` holds values in ``[BASE**(i-1), BASE**i)`` ms
(bucket 0: below 1 ms), with ``BASE = 1.02``; a count per bucket is exact under addition and
subtraction (a step's data is "now minus baseline", with no merging error), and the state is
bounded (at most ``MAX_BUCKET + 1`` buckets per variant and metric: 1 ms .. about 2 h; one
variant's latency histogram is a few kB of JSON at most). Error: a value is represented by its
bucket's geometric midpoint, so every quantile the judge computes from the histogram is within
``sqrt(1.02) - 1`` = 1 % (relative) of a value inside the same bucket; the p95 test compares
shares above a threshold, so only requests within 1 % of the threshold can be counted on the
wrong side. (HdrHistogram and DDSketch use the same relative-error buckets; this is the
fixed-bucket special case.)

Values: ``latency_ms`` is the record's end-to-end latency (``Interaction.latency_ms``);
``ttft_ms`` is the time to the first streamed chunk (``ttft_ms`` at the top level or in
``metadata``; the gateway writes ``metadata.ttft_ms`` for every streamed reply: request arrival to
its first SSE piece; a non-streamed record has none). A missing or non-numeric value is not counted. A
shadow would-block is a decision with ``enforced`` false and verdict ``block`` (shadow mode);
every record counts as one 0/1 observation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

BASE = 1.02
MAX_BUCKET = 800
"""Bucket 800 holds every value from ``1.02**799`` ms (about 2 h) up."""
P95_FIELDS = ("latency_ms", "ttft_ms")

VariantSums = dict[str, dict[str, Any]]


def bucket_of(ms: float) -> int:
    """The histogram bucket of ``ms`` (module docstring); 0 below 1 ms."""
    if ms < 1.0:
        return 0
    return min(MAX_BUCKET, math.floor(math.log(ms) / math.log(BASE)) + 1)


def bucket_value(i: int) -> float:
    """The representative value (ms) of bucket ``i``: its geometric midpoint (0.5 for bucket 0)."""
    if i <= 0:
        return 0.5
    return float(BASE ** (i - 0.5))


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        return None
    return float(v)


def shadow_would_block(record: Mapping[str, Any]) -> bool:
    """True when a decision of ``record`` is a block that was not enforced (shadow mode)."""
    return any(
        isinstance(d, Mapping) and d.get("verdict") == "block" and d.get("enforced") is False
        for d in record.get("decisions") or []
    )


def fold(sums: VariantSums, record: Mapping[str, Any]) -> None:
    """Add one interaction record (``Interaction.to_record()`` shape) to ``sums`` in place."""
    variant = str((record.get("metadata") or {}).get("variant") or "control")  # as the engine
    slot = sums.setdefault(variant, {})
    meta = record.get("metadata") or {}
    for name in P95_FIELDS:
        v = _number(record.get(name, meta.get(name)))
        if v is not None:
            hist = slot.setdefault(name, {})
            key = str(bucket_of(v))
            hist[key] = int(hist.get(key, 0)) + 1
    x = 1.0 if shadow_would_block(record) else 0.0
    n, s, ss = slot.get("shadow_would_block") or [0, 0.0, 0.0]
    slot["shadow_would_block"] = [int(n) + 1, float(s) + x, float(ss) + x * x]


def values_of(cur: Mapping[str, Any] | None, base: Mapping[str, Any] | None) -> tuple[float, ...]:
    """The step's values of one histogram (``cur`` minus ``base``, per bucket), each bucket's
    count times its representative value, ascending (the judge's ``MetricData.*_values``)."""
    out: list[float] = []
    b = base or {}
    for key, count in sorted((cur or {}).items(), key=lambda kv: int(kv[0])):
        k = int(count) - int(b.get(key, 0))
        if k > 0:
            out.extend([bucket_value(int(key))] * k)
    return tuple(out)
