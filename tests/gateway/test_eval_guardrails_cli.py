"""``rollguard eval guardrails``: wired into the CLI, in-process, writes the JSON report and the
plot, prints a table or ``--json``."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gateway.cli import app


def test_eval_guardrails_quick_json(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    args = ["eval", "guardrails", "--quick", "--no-shipped", "--split", "dev", "--json", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report == json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert (out / "guardrails.png").stat().st_size > 1000
    families = {c["family"] for c in report["cells"] if c["source"] == "redteam"}
    assert {"encoded", "invisible", "hidden_document", "hijack", "benign_encoded"} <= families
    for cell in report["cells"]:
        low, high = cell["ci95"]
        assert 0.0 <= low <= cell["rate"] <= high <= 1.0


def test_eval_guardrails_rejects_a_bad_split(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "guardrails", "--split", "train", "--out", str(tmp_path)])
    assert result.exit_code == 2
