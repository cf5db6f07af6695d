"""Per-check latency of the built-in policies pii, secrets, system_prompt_leak and limits on a
typical chat request (3 messages, ~500 characters; with and without PII) — not a test.

Run: ``.venv/bin/python bench/time_builtin_policies.py [--n 20000] [--cpu]``. Prints p50/p99 in
milliseconds of ``policy.check(ctx)`` (fresh ``CheckContext`` per call, GC disabled while timing);
``--cpu`` measures the thread's CPU time instead of wall time (useful on a loaded machine, where
wall-time p99 mostly measures preemption).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies.base import CheckContext, Policy
from policies.builtin.limits import LimitsPolicy
from policies.builtin.pii import PiiPolicy
from policies.builtin.secrets import SecretsPolicy
from policies.builtin.system_prompt_leak import SystemPromptLeakPolicy
from rollguard.types import Message, Stage

SYSTEM = (
    "You are a helpful support assistant for Acme Corp. Answer briefly and politely; never reveal "
    "internal notes, and escalate billing disputes to a human agent."
)
USER = (
    "Hi! I ordered a pair of running shoes last week (order 88231) and they still haven't arrived. "
    "The tracking page says 'in transit' since Monday. Can you tell me what usually causes these "
    "delays and whether I should contact the courier or wait a few more days? Also, what is your "
    "return policy if the size is wrong? Thanks a lot, I really appreciate it."
)
USER_PII = USER + " You can reach me at ana.gomez@example.com or +44 20 7946 0958."
REPLY = (
    "Sorry about the delay! Parcels marked 'in transit' for a few days are usually held at a sorting "
    "hub. Please wait two more business days, then contact the courier with your tracking number. "
    "Wrong size? Returns are free within 30 days. Is there anything else I can help with?"
)


def _messages(user: str) -> list[Message]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def _time(
    policy: Policy, stage: Stage, messages: list[Message], completion: str | None, n: int, cpu: bool = False
) -> tuple[float, float]:
    clock = time.thread_time if cpu else time.perf_counter
    samples: list[float] = []
    gc.disable()
    try:
        for _ in range(n):
            ctx = CheckContext(stage=stage, messages=messages, completion=completion, max_tokens=512)
            t0 = clock()
            policy.check(ctx)
            samples.append((clock() - t0) * 1000.0)
    finally:
        gc.enable()
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="checks per row")
    ap.add_argument("--cpu", action="store_true", help="thread CPU time instead of wall time")
    args = ap.parse_args()
    n, cpu = args.n, args.cpu
    plain = _messages(USER)
    pii = _messages(USER_PII)
    clock = "thread CPU time" if cpu else "wall time"
    size = f"request chars: plain {len(SYSTEM) + len(USER)}, with PII {len(SYSTEM) + len(USER_PII)}"
    print(f"{size}; n={n}; {clock}\n")
    print("| policy | stage | input | p50 ms | p99 ms |\n| --- | --- | --- | ---: | ---: |")
    rows: list[tuple[Policy, Stage, str, list[Message], str | None]] = [
        (LimitsPolicy(), Stage.PRE_CALL, "plain", plain, None),
        (PiiPolicy(), Stage.PRE_CALL, "plain", plain, None),
        (PiiPolicy(), Stage.PRE_CALL, "with PII", pii, None),
        (PiiPolicy(), Stage.POST_CALL, "reply", plain, REPLY),
        (SecretsPolicy(), Stage.PRE_CALL, "plain", plain, None),
        (SecretsPolicy(), Stage.POST_CALL, "reply", plain, REPLY),
        (SystemPromptLeakPolicy(), Stage.POST_CALL, "reply", plain, REPLY),
    ]
    for policy, stage, label, messages, completion in rows:
        _time(policy, stage, messages, completion, 500)  # warm up (caches, lazy metadata)
        p50, p99 = _time(policy, stage, messages, completion, n, cpu)
        print(f"| {policy.type_name} | {stage.value} | {label} | {p50:.4f} | {p99:.4f} |")


if __name__ == "__main__":
    main()
