"""``rollguard rollout replay`` (issue 8 item 8): JSON output with the final decision, the same
output for the same inputs and seed, exit 2 with one line on bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.tools import shipped

runner = CliRunner()


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 real OpenAssistant lottery replies as ``rollguard detect`` records."""
    path = tmp_path_factory.mktemp("rollout") / "a.jsonl"
    rows = shipped.oasst_outputs()[:200]
    lines = [
        json.dumps({"messages": [{"role": "user", "content": e.prompt}], "completion": e.reply}) for e in rows
    ]
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    return path


def _run(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, ["rollout", "replay", *args])
    return res.exit_code, res.stdout, res.stderr


def test_json_replay_is_reproducible(records: Path) -> None:
    args = ("--control", str(records), "--canary", str(records), "--json")
    code, out, _ = _run(*args, "--seed", "5")
    assert code == 0
    doc = json.loads(out)
    assert doc["final"] in ("completed", "paused", "rolled_back")
    assert isinstance(doc["decided_after_canary_requests"], int) and doc["steps"]
    assert doc["steps"][0]["percent"] == 1 and "evidence" in doc["steps"][0]
    assert _run(*args, "--seed", "5")[1] == out
    assert _run(*args, "--seed", "6")[1] != out


def test_plan_file_and_text_report(records: Path, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "rollout:\n  flag: model-rollout\n  steps: [10, 100]\n  min_samples: 50\n  min_duration_s: 0\n"
        "  metrics:\n    - {name: refusal_rate, tolerance: 0.05}\n",
        encoding="utf-8",
    )
    code, out, _ = _run("--plan", str(plan), "--control", str(records), "--canary", str(records))
    assert code == 0
    assert out.splitlines()[0].startswith("step 1 (10 %): ")
    assert "refusal_rate" in out and out.splitlines()[-1].startswith("final: ")


@pytest.mark.parametrize(
    ("setup", "expect"),
    [
        ("bad_json", "line 2: invalid JSON"),
        ("bad_record", "line 1: 'completion' must be a string"),
        ("bad_plan", "rollout.steps: steps must be strictly increasing"),
        ("missing", "No such file"),
        ("empty", "no records"),
    ],
)
def test_bad_input_exits_2_with_one_line(records: Path, tmp_path: Path, setup: str, expect: str) -> None:
    canary = tmp_path / "b.jsonl"
    plan: list[str] = []
    good = records.read_text(encoding="utf-8").splitlines()[0]
    if setup == "bad_json":
        canary.write_text(good + "\n{nope\n", encoding="utf-8")
    elif setup == "bad_record":
        canary.write_text('{"messages": [], "completion": 3}\n', encoding="utf-8")
    elif setup == "bad_plan":
        canary = records
        (tmp_path / "p.yaml").write_text("flag: f\nsteps: [5, 1, 100]\n", encoding="utf-8")
        plan = ["--plan", str(tmp_path / "p.yaml")]
    elif setup == "empty":
        canary.write_text("\n", encoding="utf-8")
    code, out, err = _run(*plan, "--control", str(records), "--canary", str(canary))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and expect in err


def test_p95_rows_say_they_show_shares_and_give_the_milliseconds(records: Path, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in records.read_text(encoding="utf-8").splitlines() if line]
    timed = tmp_path / "timed.jsonl"
    timed.write_text(
        "\n".join(json.dumps({**r, "latency_ms": 100 + (i % 50) * 10}) for i, r in enumerate(rows)) + "\n",
        encoding="utf-8",
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "rollout:\n  flag: model-rollout\n  steps: [50, 100]\n  min_samples: 200\n  min_duration_s: 0\n"
        "  metrics:\n    - {name: latency_p95_ms, tolerance: 50}\n",
        encoding="utf-8",
    )
    code, out, _ = _run("--plan", str(plan), "--control", str(timed), "--canary", str(timed))
    assert code == 0
    [row] = [line for line in out.splitlines() if "latency_p95_ms" in line]
    assert "share > threshold: control 0.05 " in row
    # Resampled p95s; the threshold is the control's p95 + the 50 ms tolerance.
    m = re.search(r"\(p95 ms: control ([\d.]+), canary ([\d.]+), threshold ([\d.]+)\)", row)
    assert m is not None and float(m.group(3)) == float(m.group(1)) + 50


def test_help_says_records_are_resampled_with_replacement() -> None:
    res = runner.invoke(app, ["rollout", "replay", "--help"])
    assert res.exit_code == 0
    text = " ".join(res.stdout.split())
    assert "WITH replacement" in text and "can exceed the number of lines" in text
