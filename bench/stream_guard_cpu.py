"""CPU of the output side of a stream, in process: ``StreamGuard`` driven by ``guard_stream`` over
the benchmark's reply (the demo stub's 512-character fixed text) with the default policies' stream
stage as its check, per stream and per policy.

Usage (from the repository root)::

    .venv/bin/python bench/stream_guard_cpu.py                      # 16 chunks, paced (per chunk)
    .venv/bin/python bench/stream_guard_cpu.py --burst              # the chunks of one network read
    .venv/bin/python bench/stream_guard_cpu.py --chunks 128 --min-release 64

``--burst`` gives the upstream iterator a ``ready()`` that is always True (as the lean transport's
``SSEChunks`` when a fast upstream wrote the whole reply at once); without it every chunk is
checked as it comes (a paced upstream, or a transport without ``ready``). Each stream's context is
a different conversation from ``bench/workload.py``. Prints CPU ms per stream
(``time.process_time``, after ``--warmup`` streams), checks per stream and CPU ms per policy.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workload import Workload

from gateway.demo.stub_sse import split_text
from gateway.demo.upstream import StubState
from gateway.streaming import StreamGuard, guard_stream
from policies.base import CheckContext
from policies.pipeline import build_pipeline
from rollguard.settings import default_policies
from rollguard.types import Stage, Verdict

HEAD = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "bench"}


def chunks_of(pieces: list[str]) -> list[dict[str, Any]]:
    """A streamed reply as upstream chunk dicts: role, the content pieces, finish, usage."""

    def one(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**HEAD, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out = [one({"role": "assistant", "content": ""})]
    out += [one({"content": p}) for p in pieces]
    out.append(one({}, "stop"))
    out.append({**HEAD, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}})
    return out


class Chunks:
    """The chunk dicts as an async iterator; with ``burst``, ``ready()`` always says the next one
    is already read."""

    def __init__(self, chunks: list[dict[str, Any]], burst: bool) -> None:
        self._chunks = chunks
        self._i = 0
        self._burst = burst

    def __aiter__(self) -> Chunks:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._i >= len(self._chunks):
            raise StopAsyncIteration
        self._i += 1
        return self._chunks[self._i - 1]

    def ready(self) -> bool:
        return self._burst


async def run(args: argparse.Namespace) -> None:
    workload = Workload()
    pipe = build_pipeline(default_policies())
    per_policy: collections.Counter[str] = collections.Counter()
    for cp in pipe.policies:
        check = cp.policy.check

        def timed(ctx: CheckContext, _check: Any = check, _id: str = cp.id) -> Any:
            t0 = time.process_time()
            try:
                return _check(ctx)
            finally:
                per_policy[_id] += time.process_time() - t0

        cp.policy.check = timed  # type: ignore[method-assign]
    text = StubState(chunks=args.chunks, reply_chars=args.reply_chars, api_key=None).fixed_text
    chunks = chunks_of(split_text(text, args.chunks))
    checks = 0

    async def stream(i: int) -> None:
        nonlocal checks
        messages = workload.messages(i)

        async def check(window: str) -> tuple[Verdict, str]:
            nonlocal checks
            checks += 1
            ctx = CheckContext(stage=Stage.STREAM, messages=messages, completion=window)
            res = await pipe.run(ctx)
            return res.verdict, ctx.completion if ctx.completion is not None else window

        guard = StreamGuard(check, include_usage=True, min_release=args.min_release)
        async for _ in guard_stream(Chunks(chunks, args.burst), guard):
            pass

    for i in range(args.warmup):
        await stream(i)
    per_policy.clear()
    checks = 0
    t0 = time.process_time()
    for i in range(args.warmup, args.warmup + args.streams):
        await stream(i)
    ms = (time.process_time() - t0) * 1000 / args.streams
    mode = "burst" if args.burst else "paced"
    print(
        f"{mode}, {args.chunks} chunks of a {args.reply_chars}-character reply, min_release "
        f"{args.min_release}: {ms:.3f} ms CPU per stream, {checks / args.streams:.2f} checks per stream"
    )
    for policy, seconds in per_policy.most_common():
        print(f"  {policy:20s} {seconds * 1000 / args.streams:.3f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, default=16, help="content chunks per reply")
    p.add_argument("--reply-chars", type=int, default=512)
    p.add_argument("--burst", action="store_true", help="all chunks already read (ready() True)")
    p.add_argument("--min-release", type=int, default=32, help="stream_check_chars")
    p.add_argument("--streams", type=int, default=300)
    p.add_argument("--warmup", type=int, default=50)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
