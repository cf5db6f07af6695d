"""CPU per ``content_safety`` check (``pre_call`` on a new user turn, ``post_call`` on a reply) on
the overhead benchmark's real texts (``bench/workload.py``), cut to a fixed length, every text new
to the process (the policy has no cache). Thread CPU time per check (``time.thread_time_ns``):
p50 / p99 in microseconds, after 100 warm-up checks. Run it on two checkouts back to back to
compare (the machine is shared).

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python bench/content_safety_cpu.py [checks per cell, default 2000]
"""

import sys
import time

sys.path.insert(0, "bench")
from workload import Workload

from policies.base import CheckContext
from policies.builtin.content_safety import ContentSafetyPolicy
from rollguard.types import Stage

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000


def texts(w: Workload, chars: int, n: int) -> list[str]:
    """``n`` distinct texts of exactly ``chars`` characters: user turns and replies, joined."""
    pool = [f"{w.user_text(i)}\n\n{w.replies[i % len(w.replies)]}" for i in range(n + 100)]
    out = []
    for i, t in enumerate(pool):
        while len(t) < chars:
            t += "\n\n" + pool[(i * 7 + len(t)) % len(pool)]
        out.append(t[:chars])
    return out


def cell(policy: ContentSafetyPolicy, stage: Stage, items: list[str]) -> tuple[float, float]:
    cpu = []
    for i, t in enumerate(items):
        if stage is Stage.PRE_CALL:
            ctx = CheckContext(stage, [{"role": "user", "content": t}])
        else:
            ctx = CheckContext(stage, [{"role": "user", "content": "hi"}], completion=t)
        c0 = time.thread_time_ns()
        policy.check(ctx)
        if i >= 100:
            cpu.append(time.thread_time_ns() - c0)
    cpu.sort()
    return cpu[len(cpu) // 2] / 1e3, cpu[int(len(cpu) * 0.99)] / 1e3


def main() -> None:
    w = Workload()
    policy = ContentSafetyPolicy()
    for chars in (300, 2000):
        items = texts(w, chars, N + 100)
        for stage in (Stage.PRE_CALL, Stage.POST_CALL):
            p50, p99 = cell(policy, stage, items)
            print(f"{chars:>5} chars {stage.value:<9} p50 {p50:7.1f} us  p99 {p99:7.1f} us")


main()
