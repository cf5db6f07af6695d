"""The clock that inline policy timeouts are measured on: CPU time of the calling thread, minus
the time this thread spent in the cyclic garbage collector.

Why: a full (generation 2) collection in a gateway process with litellm and scikit-learn loaded
walks ~500k objects and takes ~250-300 ms of CPU (measured on the CI machine, Python 3.11). It
runs in whichever thread happened to allocate when the threshold was crossed, so without this
correction a policy that needs 2 ms is charged for the pause and fails its 250 ms budget with a
503 ``guardrail_unavailable`` that has nothing to do with the policy or the request.

Method: ``gc.callbacks`` (Python docs, "gc — Garbage Collector interface") calls us with phase
``"start"`` and ``"stop"`` around every collection, in the collecting thread; the per-thread sum
of those intervals is subtracted. Only full (generation 2) collections are timed: the young ones
take well under a millisecond, far below any policy budget, so timing them would only add two
``time.thread_time()`` system calls each (~1-3 us here; measured 0.013 young collections per
gateway request after startup, most of them during imports). Cost: two ``time.thread_time()``
calls per full collection.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

__all__ = ["policy_cpu_seconds"]


class _GcTime(threading.local):
    started: float | None = None
    total: float = 0.0


_gc_time = _GcTime()


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if info.get("generation") != 2:
        return  # young collections (~every 700 allocations, well under 1 ms each) are not timed
    if phase == "start":
        _gc_time.started = time.thread_time()
    elif _gc_time.started is not None:
        _gc_time.total += time.thread_time() - _gc_time.started
        _gc_time.started = None


if _on_gc not in gc.callbacks:
    gc.callbacks.append(_on_gc)


def policy_cpu_seconds() -> float:
    """CPU seconds used by the calling thread outside garbage collection; monotonic per thread.
    Only differences between two calls in the same thread are meaningful."""
    return time.thread_time() - _gc_time.total
