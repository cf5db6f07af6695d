"""Micro-benchmark: the CPU that decode-then-judge, invisible-character handling and indirect-
injection segmentation add to an ordinary request (issue 9 allows +0.3 ms per request for all of
issue 9 together).

Usage (from the repository root)::

    .venv/bin/python bench/decode_overhead.py [--rounds 5]

Requests: the first user turns of MT-bench and Vicuna-bench and 400 OASST prompts (shared data,
``data/``), as one-message ``pre_call`` contexts. Measured per request, in microseconds of wall
time, best of ``--rounds`` passes (the machine is shared; the minimum is the cost without
interference), then the median and mean over requests of that per-request figure (the context
construction subtracted):

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
import statistics
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


def _per_request_us(fn: Callable[[str], object], texts: Sequence[str], rounds: int) -> list[float]:
    """Per request: the best of ``rounds`` timings (µs)."""
    best = [float("inf")] * len(texts)
    for _ in range(rounds):
        for i, t in enumerate(texts):
            t0 = time.perf_counter()
            fn(t)
            best[i] = min(best[i], (time.perf_counter() - t0) * 1e6)
    return best


def _stats(us: Sequence[float]) -> dict[str, float]:
    return {"median_us": round(statistics.median(us), 2), "mean_us": round(statistics.fmean(us), 2)}


def _diff(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    return _stats([x - y for x, y in zip(a, b, strict=True)])


def _pipeline_us(pipeline: Pipeline, texts: Sequence[str], rounds: int) -> list[float]:
    loop = asyncio.new_event_loop()
    try:
        return _per_request_us(lambda t: loop.run_until_complete(pipeline.run(_ctx(t))), texts, rounds)
    finally:
        loop.close()


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
    r = args.rounds
    base = _per_request_us(_ctx, texts, r)
    report = {
        "requests": len(texts),
        "mean_chars": round(sum(map(len, texts)) / len(texts), 1),
        "prescan_fires_share": round(fires / len(texts), 4),
        "context_views": _diff(_per_request_us(lambda t: context_views(_ctx(t)), texts, r), base),
        "invisible_text": _diff(_per_request_us(lambda t: invisible.check(_ctx(t)), texts, r), base),
        "segments_on_minus_off": _diff(
            _per_request_us(lambda t: on.check(_ctx(t)), texts, r),
            _per_request_us(lambda t: off.check(_ctx(t)), texts, r),
        ),
        "pipeline_decode_on_minus_off": _diff(
            _pipeline_us(build_pipeline(specs), texts, r),
            _pipeline_us(Pipeline(build_pipeline(specs).policies, decode_views=False), texts, r),
        ),
    }
    out = ROOT / "bench" / "results" / "decode_overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
