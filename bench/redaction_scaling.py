"""Throughput of the span policies (``pii``, ``secrets``) on texts dense with matches.

Run: ``.venv/bin/python bench/redaction_scaling.py [--max-seconds S]``. Prints, per workload and
match count n, the CPU seconds of one ``check`` (pre_call, redact) and the matches per second.
Workloads: ``n`` e-mail addresses (``x@y.com``), ``n`` Luhn-valid Visa numbers, ``n`` AWS access key
ids, all space-separated in one user message. A size is skipped once the previous size took longer
than ``--max-seconds`` (the quadratic code of earlier versions would run for many minutes).
"""

from __future__ import annotations

import argparse
import time

from policies.base import CheckContext
from policies.builtin.pii import PiiPolicy
from policies.builtin.secrets import SecretsPolicy
from rollguard.types import Stage

CARD = "4111 1111 1111 1111"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


def _time(policy: PiiPolicy | SecretsPolicy, text: str) -> tuple[float, int]:
    ctx = CheckContext(stage=Stage.PRE_CALL, messages=[{"role": "user", "content": text}])
    t0 = time.process_time()
    result = policy.check(ctx)
    return time.process_time() - t0, len(result.evidence)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-seconds", type=float, default=30.0)
    parser.add_argument("--sizes", default="1000,8000,16000,150000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    pii, secrets = PiiPolicy(), SecretsPolicy()
    workloads = [
        ("emails", pii, "x@y.com "),
        ("cards", pii, CARD + " "),
        ("aws_keys", secrets, AWS_KEY + " "),
    ]
    print(f"{'workload':<10} {'n':>8} {'chars':>9} {'found':>8} {'cpu s':>8} {'matches/s':>11}")
    for name, policy, unit in workloads:
        last = 0.0
        for n in sizes:
            if last > args.max_seconds:
                print(f"{name:<10} {n:>8} skipped (previous size took {last:.1f} s)")
                continue
            text = unit * n
            last, found = _time(policy, text)
            rate = found / last if last > 0 else float("inf")
            print(f"{name:<10} {n:>8} {len(text):>9} {found:>8} {last:>8.3f} {rate:>11,.0f}")


if __name__ == "__main__":
    main()
