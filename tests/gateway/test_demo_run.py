"""``rollguard demo`` end to end: real stub process, real gateway process (uvicorn), real store."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from gateway.demo.run import demo_config, run_demo
from rollguard.settings import load_settings

pytestmark = pytest.mark.integration


def test_demo_config_is_a_valid_rollguard_config(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(json.dumps(demo_config("http://127.0.0.1:9", tmp_path)), encoding="utf-8")
    settings = load_settings(path)
    assert settings.model_names() == ["demo", "echo"]
    assert [p.id for p in settings.policies]  # the default policy set is on
    assert settings.store.data_dir == tmp_path / "var"


@pytest.mark.slow
def test_run_demo_end_to_end(tmp_path: Path) -> None:
    out = io.StringIO()
    summary: dict[str, Any] = {}
    code = run_demo(
        n=40,
        concurrency=4,
        direct_sample=10,
        console=Console(file=out, width=120),
        show_progress=False,
        keep_dir=tmp_path,
        summary_out=summary,
        anomaly=False,  # raise_demo_anomaly: tests/integration/test_console_demo_browser.py
    )
    text = out.getvalue()
    assert code == 0, text + (tmp_path / "gateway.log").read_text(errors="replace")[-3000:]
    assert summary["requests"] == 40
    assert summary["errors"] == 0
    assert summary["allowed"] + summary["redacted"] + summary["flagged"] + summary["blocked"] == 40
    # The corpus holds attacks and PII: the default policies must act on some of them.
    assert summary["blocked"] + summary["redacted"] + summary["flagged"] > 0
    assert summary["probe_requests"] == 10 and 0 < summary["direct"]["pairs"] <= 10
    # Every replayed request and every latency probe left one audit record in the store.
    assert summary["audit_records"] == 40 + 10
    assert "added latency p50 / p99 over direct" in text
    assert (tmp_path / "rollguard-demo.yaml").exists()
