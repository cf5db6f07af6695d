"""Bytes one request adds to the interactions stream: the XADD fields (the redacted audit record as
JSON plus the id / tenant / model / variant / verdict filter fields, names included) for 2,000
requests of the overhead benchmark's workload (``bench/workload.py``) through the default policies,
with a 512-character reply (the benchmark stub's size). For the Redis sizing in
``docs/operations.md``; Redis's own per-entry overhead (stream listpack, ~tens of bytes) is not
included.

Usage: ``PYTHONPATH=. .venv/bin/python bench/record_bytes.py``
"""

import asyncio
import statistics
import sys

import orjson

sys.path.insert(0, "bench")
from workload import Workload

from policies.base import CheckContext
from policies.pipeline import build_pipeline
from policies.privacy import PrivacyRedactor
from rollguard.settings import default_policies
from rollguard.types import Interaction, Stage

w = Workload()
pipe = build_pipeline(default_policies())
red = PrivacyRedactor()
reply = ("The trail is 12 km long and takes about four hours. " * 10)[:512]
sizes = []


async def main():
    for i in range(2000):
        ctx = CheckContext(Stage.PRE_CALL, w.messages(i))
        pre = await pipe.run(ctx)
        post = CheckContext(Stage.POST_CALL, ctx.messages, completion=reply, vault=ctx.vault)
        po = await pipe.run(post)
        it = Interaction(
            id="rg-" + "0" * 32,
            created_ms=1765000000000,
            tenant="default",
            model="bench-d0",
            upstream_model="bench-d0",
            messages=ctx.messages,
            completion=post.completion,
            decisions=pre.decisions + po.decisions,
            finish_reason="stop",
            usage={"prompt_tokens": 300, "completion_tokens": 120, "total_tokens": 420},
            latency_ms=3.2,
            policy_ms=1.1,
            upstream_ms=0.8,
            metadata={"outcome": "ok"},
        )
        rec = red.redact_record(it)
        payload = orjson.dumps(rec)
        fields = {
            "record": payload,
            "id": it.id,
            "tenant": "default",
            "model": "bench-d0",
            "variant": "",
            "verdict": "allow",
        }
        sizes.append(sum(len(k) + len(v) for k, v in fields.items()))


asyncio.run(main())
s = sorted(sizes)
mean, p50, p99 = statistics.mean(s), s[len(s) // 2], s[int(len(s) * 0.99)]
print(f"XADD field bytes per record: mean {mean:.0f}, p50 {p50}, p99 {p99}, max {s[-1]}")
