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
    errors = run_detect(src, out)
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert errors == 2
    assert len(got) == 7
    assert got[2] == {"error": got[2]["error"]} and got[2]["error"].startswith("line 3: invalid JSON")
    assert got[4]["error"].startswith("line 5: 'messages'")
    for res in (got[0], got[1], got[3], got[5], got[6]):
        assert set(res) == set(DETECTORS)
        assert set(res["refusal"]) == {"score", "flagged", "evidence"}
    want = [not r.label.startswith("1") for r in rows]
    scored = [got[i]["refusal"]["flagged"] for i in (0, 1, 3, 5, 6)]
    assert sum(a == b for a, b in zip(scored, want, strict=True)) >= 4


def test_detect_records_accepts_dicts(detectors: ShortcutDetectors) -> None:
    bad: Any = 3
    res = list(
        detect_records([{"messages": [], "completion": "I can't help with that request."}, bad], detectors)
    )
    assert res[0]["refusal"]["flagged"] is True
    assert res[1] == {"error": "line 2: expected a JSON object, got int"}
