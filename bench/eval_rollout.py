"""Error rates and detection delays of the rollout judge, by 100 seeded offline replays per
scenario over the shipped traffic (issue 8, must-holds 1-3; numbers in docs/rollouts.md).

    python bench/eval_rollout.py [--runs 100] [--out var/eval_rollout.json]

Scenarios (test data from tests/detectors/rollout_data.py, deterministic): ``aa`` (canary =
control, default plan), ``refusal_5pt`` (+5 points of refusals, steps 10/25/50/100 %),
``longer_30pct`` (replies 30 % longer, default plan), ``srm_10_delivers_20`` (configured 10 %,
delivered 20 %). Takes about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.rollout_replay import Pool, ReplayConfig, replay
from rollguard.rollout import RolloutPlan, default_plan
from tests.detectors import rollout_data as D


def _scenario(
    plan: RolloutPlan, control: Pool, canary: Pool, runs: int, cfg: ReplayConfig | None = None
) -> dict[str, Any]:
    res = [replay(plan, control, canary, seed=s, config=cfg) for s in range(runs)]
    delays = [r.decided_after_canary_requests for r in res]
    return {
        "runs": runs,
        "final": dict(Counter(r.final for r in res)),
        "reason": dict(Counter(f"{r.reason}:{r.metric}" if r.metric else r.reason for r in res)),
        "canary_requests_to_decision": {"median": float(np.median(delays)), "max": max(delays)},
        "_results": res,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path("var/eval_rollout.json"))
    args = ap.parse_args(argv)
    ten = default_plan().model_copy(update={"steps": (10.0, 25.0, 50.0, 100.0)})
    base = D.base()
    report = {
        "aa": _scenario(default_plan(), base, base, args.runs),
        "refusal_5pt": _scenario(ten, base, D.refusal_canary(0.05), args.runs),
        "longer_30pct": _scenario(default_plan(), base, D.longer(), args.runs),
        "srm_10_delivers_20": _scenario(
            ten, base, base, args.runs, ReplayConfig(delivered_percent={10.0: 20.0})
        ),
    }
    aa = report["aa"]["_results"]
    report["aa"]["all_steps_passed"] = sum(
        all(s.judgment.outcome.value == "pass" for s in r.steps) and r.final == "completed" for r in aa
    )
    ref = report["refusal_5pt"]["_results"]
    hit = [
        r.decided_after_canary_requests
        for r in ref
        if r.final == "rolled_back" and r.metric == "refusal_rate"
    ]
    report["refusal_5pt"]["rolled_back_within_2000"] = sum(d <= 2000 for d in hit)
    report["refusal_5pt"]["rolled_back_requests"] = (
        {"median": float(np.median(hit)), "max": max(hit)} if hit else None
    )
    for v in report.values():
        v.pop("_results")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
