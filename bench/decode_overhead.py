"""Micro-benchmark: the CPU that decode-then-judge, invisible-character handling and indirect-
injection segmentation add to an ordinary request (issue 9 allows +0.3 ms per request for all of
issue 9 together).

Usage (from the repository root)::

    .venv/bin/python bench/decode_overhead.py [--rounds 5]

Requests: the first user turns of MT-bench and Vicuna-bench and 400 OASST prompts (shared data,
``data/``), as one-message ``pre_call`` contexts. Measured per request, in microseconds of wall
time, best of ``--rounds`` passes (the machine is shared; the minimum is the cost without
interference):

* ``prescan``: ``policies.decoded_context.context_views`` (one regex per text; decoding only
  when the pre-scan fires) and the share of requests where it fires;
* ``invisible_text``: the policy's ``check``;
* ``segments``: ``prompt_injection`` with ``segments`` on minus off (data-part detection and the
  rules);
* ``pipeline``: the default pipeline with ``decode_views`` on minus off (everything together,
  including judging decoded readings where there are some).

Writes ``bench/results/decode_overhead.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from policies.base import CheckContext
from policies.builtin.invisible_text import InvisibleTextPolicy
from policies.builtin.prompt_injection import PromptInjectionPolicy
from policies.decoded_context import context_views
from policies.pipeline import Pipeline, build_pipeline
from rollguard.settings import default_policies
from rollguard.types import Stage

ROOT = Path(__file__).resolve().parents[1]


def _prompts(data: Path) -> list[str]:
    out: list[str] = []
    mt = data / "mt-bench-vicuna-questions"
    for name in ("mt_bench_questions.jsonl", "vicuna_bench_questions.jsonl"):
        for line in (mt / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            out.append(row["turns"][0] if "turns" in row else row.get("text", ""))
    lines = (data / "oasst-prompt-lottery" / "prompts.jsonl").read_text(encoding="utf-8").splitlines()
    for line in lines[:400]:
        row = json.loads(line)
        out.append(row.get("prompt") or row.get("text") or "")
    return [p for p in out if p]


def _ctx(text: str) -> CheckContext:
    return CheckContext(stage=Stage.PRE_CALL, messages=[{"role": "user", "content": text}])


def _best_us(fn: Callable[[str], object], texts: Sequence[str], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for t in texts:
            fn(t)
        best = min(best, (time.perf_counter() - t0) / len(texts) * 1e6)
    return best


def _pipeline_us(pipeline: Pipeline, texts: Sequence[str], rounds: int) -> float:
    async def one_pass() -> float:
        t0 = time.perf_counter()
        for t in texts:
            await pipeline.run(_ctx(t))
        return (time.perf_counter() - t0) / len(texts) * 1e6

    return min(asyncio.run(one_pass()) for _ in range(rounds))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--data", type=Path, default=ROOT / "data")
    args = ap.parse_args()
    texts = _prompts(args.data)
    fires = sum(1 for t in texts if context_views(_ctx(t)))
    invisible = InvisibleTextPolicy()
    on, off = PromptInjectionPolicy(), PromptInjectionPolicy(segments=False)
    specs = default_policies()
    report = {
        "requests": len(texts),
        "mean_chars": round(sum(map(len, texts)) / len(texts), 1),
        "prescan_fires_share": round(fires / len(texts), 4),
        "prescan_us": round(_best_us(lambda t: context_views(_ctx(t)), texts, args.rounds), 2),
        "invisible_text_us": round(_best_us(lambda t: invisible.check(_ctx(t)), texts, args.rounds), 2),
        "segments_us": round(
            _best_us(lambda t: on.check(_ctx(t)), texts, args.rounds)
            - _best_us(lambda t: off.check(_ctx(t)), texts, args.rounds),
            2,
        ),
        "pipeline_decode_on_minus_off_us": round(
            _pipeline_us(build_pipeline(specs), texts, args.rounds)
            - _pipeline_us(Pipeline(build_pipeline(specs).policies, decode_views=False), texts, args.rounds),
            2,
        ),
    }
    out = ROOT / "bench" / "results" / "decode_overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
