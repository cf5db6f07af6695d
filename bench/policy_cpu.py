"""In-process CPU per request of the default policies (pre_call, post_call on a reply unique per
request) and the audit record's redaction, on the overhead benchmark's workload
(``bench/workload.py``: 746-character system prompt, up to 3 earlier turns, a new user turn every
request), with and without the message span cache (``policies.builtin.redaction.MESSAGE_SPANS``).
CPU time of this process (``time.process_time``), after 200 warm-up requests; run both modes
back to back to compare on a shared machine.

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python bench/policy_cpu.py 2000 uncached
    PYTHONPATH=. .venv/bin/python bench/policy_cpu.py 2000 cached
"""

import asyncio
import sys
import time

sys.path.insert(0, "bench")
from workload import Workload

from policies.base import CheckContext
from policies.builtin import redaction
from policies.pipeline import build_pipeline
from policies.privacy import PrivacyRedactor
from rollguard.settings import default_policies
from rollguard.types import Interaction, Stage

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
cached = sys.argv[2] == "cached" if len(sys.argv) > 2 else True
w = Workload()
pipe = build_pipeline(default_policies())
red = PrivacyRedactor()
if not cached:
    for cp in pipe.policies:
        if hasattr(cp.policy, "message_finder"):
            cp.policy.message_finder = cp.policy.finder
    for pol in red._cache.values():
        pol.message_finder = pol.finder
    orig = red._policy

    def nocache(t, roles):
        p = orig(t, roles)
        p.message_finder = p.finder
        return p

    red._policy = nocache
reply = "Sure. " * 80


async def one(i):
    msgs = w.messages(i)
    ctx = CheckContext(Stage.PRE_CALL, msgs)
    pre = await pipe.run(ctx)
    post = CheckContext(Stage.POST_CALL, ctx.messages, completion=reply + str(i), vault=ctx.vault)
    await pipe.run(post)
    it = Interaction(
        id=f"rg-{i}",
        created_ms=1,
        tenant="t",
        model="m",
        messages=ctx.messages,
        completion=post.completion,
        decisions=pre.decisions,
    )
    red.redact_record(it)


async def main():
    for i in range(200):
        await one(i)
    c0 = time.process_time()
    for i in range(200, 200 + N):
        await one(i)
    ms = (time.process_time() - c0) * 1000 / N
    spans = redaction.MESSAGE_SPANS
    label = "cached" if cached else "uncached"
    print(f"{label}: {ms:.3f} ms CPU per request (pre_call + post_call + audit redaction)")
    print(f"span cache hits={spans.hits} misses={spans.misses}")


asyncio.run(main())
