"""``detect_records`` / ``run_detect``: the offline scoring behind ``rollguard detect``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from detectors.shortcuts import DETECTORS, ShortcutDetectors
from gateway.tools import shipped
from gateway.tools.offline import detect_records, run_detect


def test_run_detect_in_order_with_error_records(tmp_path: Path, detectors: ShortcutDetectors) -> None:
    rows = shipped.xstest_completions()[:5]
    lines = [
        json.dumps({"messages": [{"role": "user", "content": r.prompt}], "completion": r.reply}) for r in rows
    ]
    lines.insert(2, "{not json")
    lines.insert(4, json.dumps({"messages": "x", "completion": "y"}))
    lines.insert(5, "")
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    reported: list[str] = []
    errors = run_detect(src, out, on_error=reported.append)
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert errors == 2
    assert len(got) == 5  # the two bad lines are reported, not written
    assert reported[0].startswith("line 3: invalid JSON")
    assert reported[1].startswith("line 5: 'messages'")
    for res in got:
        assert set(res) == set(DETECTORS)
        assert set(res["refusal"]) == {"score", "flagged", "evidence"}
    want = [not r.label.startswith("1") for r in rows]
    scored = [res["refusal"]["flagged"] for res in got]
    assert sum(a == b for a, b in zip(scored, want, strict=True)) >= 4


def test_detect_records_accepts_dicts(detectors: ShortcutDetectors) -> None:
    bad: Any = 3
    res = list(
        detect_records([{"messages": [], "completion": "I can't help with that request."}, bad], detectors)
    )
    assert res[0]["refusal"]["flagged"] is True
    assert res[1] == {"error": "line 2: expected a JSON object, got int"}
