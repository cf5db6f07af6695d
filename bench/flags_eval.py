"""Flag evaluation cost per request: ``Flags.evaluate`` for 8 flags (5 on/off flags + 1 rollout flag with
variants that exist, 2 flags that do not exist), bootstrap mode, one thread.

Usage (from the repository root)::

    .venv/bin/python bench/flags_eval.py [--requests 20000]

Prints microseconds per request (median of 5 runs; wall time and this process's CPU time, which is
less disturbed by other processes on a shared machine) for: a known user id, anonymous traffic, and
all-unknown flags (gating not configured in Unleash); then the same through the result cache
(``gateway.flags.cache.CachedFlags``, what the gateway uses): a repeated user id (hits), and 1,000
distinct user ids asked in turn (the cache's own cost on misses is included). Numbers depend on the
machine; no test asserts them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from gateway.flags import FlagContext, Flags
from gateway.flags.cache import CachedFlags
from rollguard.settings import FlagSettings


def rollout(name: str, percent: int, variants: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "enabled": True,
        "strategies": [
            {
                "name": "flexibleRollout",
                "parameters": {"rollout": str(percent), "stickiness": "default", "groupId": name},
                "constraints": [{"contextName": "tenantId", "operator": "IN", "values": ["acme", "demo"]}],
                "variants": variants or [],
            }
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    variants = [
        {
            "name": n,
            "weight": 500,
            "weightType": "variable",
            "stickiness": "default",
            "payload": {"type": "string", "value": v},
        }
        for n, v in (("control", "demo-a"), ("canary", "demo-b"))
    ]
    on_off = ["policy.pii", "policy.secrets", "policy.injection", "cap.streaming", "cap.tools"]
    state = {
        "version": 2,
        "features": [rollout(n, 50) for n in on_off] + [rollout("rollout.demo", 100, variants)],
    }
    flags = Flags(FlagSettings(), bootstrap_state=state)
    flags.start()
    names = [*on_off, "model.demo", "model.other"]
    cases = {
        "user id, 7 on/off + 1 variant flag (6 known)": (FlagContext(user_id="u-123", tenant="acme"), names),
        "anonymous, same flags": (FlagContext(tenant="acme"), names),
        "8 unknown flags (no gating configured)": (FlagContext(user_id="u-1"), [f"x{i}" for i in range(7)]),
    }
    cached = CachedFlags(flags, settle_s=0.0)
    users = [FlagContext(user_id=f"u-{i}", tenant="acme") for i in range(1000)]
    runs: dict[str, tuple[Any, list[FlagContext], list[str]]] = {
        label: (flags, [ctx], ns) for label, (ctx, ns) in cases.items()
    }
    runs["cached: user id repeated (hits), 6 known flags"] = (cached, [users[0]], names)
    runs["cached: 1,000 user ids in turn, 6 known flags"] = (cached, users, names)
    for label, (source, contexts, ns) in runs.items():
        variant_flags = ["rollout.demo"] if ns is names else ["x7"]
        wall, cpu = [], []
        for _ in range(5):
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(args.requests):
                source.evaluate(ns, contexts[i % len(contexts)], variant_flags=variant_flags)
            wall.append((time.perf_counter() - t0) / args.requests * 1e6)
            cpu.append((time.process_time() - c0) / args.requests * 1e6)
        print(
            f"{label}: {statistics.median(wall):.1f} us/request wall, {statistics.median(cpu):.1f} us CPU "
            f"(median of 5 runs; wall runs: {', '.join(f'{r:.0f}' for r in wall)})"
        )
    flags.close()


if __name__ == "__main__":
    main()
