"""Instructions per request of the in-process hot path, counted by valgrind's callgrind: a number
that other load on a shared machine does not move (CPU time there moves by 10-20 % between two
runs of the same code, more than most single optimisations save).

What one request runs here (the gateway's non-streaming path without the server, the upstream and
the store): the ``pre_call`` stage of the default policies on a ``bench/workload.py`` request (a
746-character system prompt, up to 3 earlier turns, a new user turn no earlier request sent), the
``post_call`` stage on a reply unique per request, then the audit record's redaction
(``PrivacyRedactor.redact_record``) with the coverage the gateway computes when the default
``pii`` and ``secrets`` policies are enforced. 100 warm-up requests, then ``--requests`` counted
ones; only the counted loop is instrumented (``callgrind_control -i on/off``), with
``PYTHONHASHSEED=0`` and the wall-clock limits lifted (policy timeouts, decoding's 25 ms), so that
two runs of the same code count the same.

Usage (from the repository root; needs ``valgrind``, ~1 min for 100 requests)::

    .venv/bin/python bench/instructions.py                 # this checkout
    .venv/bin/python bench/instructions.py --requests 200

Prints ``instructions/request`` (millions). Compare two commits by running it in each checkout
(``git archive <commit> | tar -x -C /tmp/base``; run ``bench/instructions.py`` from there).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WARMUP = 100
REPLY = "Sure, here is an answer about your question. " * 12


async def _serve(first: int, count: int, toggle: bool) -> None:
    """Run ``count`` requests from index ``first`` (after ``WARMUP`` unrecorded ones)."""
    sys.path[:0] = [str(REPO), str(BENCH)]
    from workload import Workload

    from policies.base import CheckContext
    from policies.pipeline import build_pipeline
    from policies.privacy import Coverage, PrivacyRedactor
    from rollguard.settings import default_policies
    from rollguard.types import Interaction, Stage

    w, redactor = Workload(), PrivacyRedactor()
    pipe = _untimed(build_pipeline(default_policies()))
    every = frozenset({"system", "developer", "user", "assistant", "tool"})
    coverage = Coverage(
        pre={"pii": every - {"system", "developer"}, "secrets": every}, post={"pii", "secrets"}
    )

    async def one(i: int) -> None:
        ctx = CheckContext(Stage.PRE_CALL, w.messages(i))
        pre = await pipe.run(ctx)
        post_ctx = CheckContext(Stage.POST_CALL, ctx.messages, completion=f"{REPLY}{i}", vault=ctx.vault)
        post = await pipe.run(post_ctx)
        record = Interaction(
            id=f"rg-{i:032x}",
            created_ms=1,
            tenant="default",
            model="bench",
            messages=ctx.messages,
            completion=post_ctx.completion,
            decisions=pre.decisions + post.decisions,
            finish_reason="stop",
            status=200,
        )
        redactor.redact_record(record, coverage)

    for i in range(first - WARMUP, first):
        await one(i)
    if toggle:
        _instrument("on")
    for i in range(first, first + count):
        await one(i)
    if toggle:
        _instrument("off")


def _untimed(pipe: Any) -> Any:
    """``pipe`` without its wall-clock limits: under valgrind code runs ~50x slower, so the policies'
    250 ms budgets and decoding's 25 ms would cut work short (a timeout, fewer decoded views) by an
    amount that depends on the machine's load, and the count would move with it."""
    from policies import decoded_context
    from policies.decoding import DecodeLimits
    from policies.pipeline import Pipeline

    decoded_context.context_views.__defaults__ = (DecodeLimits(max_ms=1e9), 16)
    return Pipeline([dataclasses.replace(cp, timeout_ms=1e9) for cp in pipe.policies])


def _instrument(state: str) -> None:
    """Switch callgrind's instrumentation of this process ``on`` or ``off``."""
    subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], capture_output=True, check=False)


def count(requests: int, first: int = 1000) -> float:
    """Instructions per request (callgrind's ``Collected`` over ``requests``). Raises
    ``RuntimeError`` when valgrind is missing or its output has no count."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise RuntimeError("valgrind (with callgrind_control) is not installed")
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=/dev/null"]
    cmd += [sys.executable, __file__, "--child", "--requests", str(requests), "--first", str(first)]
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(REPO)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    m = re.search(r"Collected : (\d+)", out.stderr)
    if m is None:
        raise RuntimeError(f"no instruction count from valgrind: {out.stderr[-500:]}")
    return int(m.group(1)) / requests


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=100, help="counted requests (after 100 warm-up ones)")
    p.add_argument("--first", type=int, default=1000, help="workload index of the first counted request")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        asyncio.run(_serve(args.first, args.requests, toggle=True))
        return 0
    per = count(args.requests, args.first)
    what = "in-process pre_call + post_call + audit record"
    print(f"{per / 1e6:.3f} M instructions/request ({args.requests} requests, {what})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
