"""The command-line tools that read or change the store (``review export``, ``rollout ...``,
``flags ...``) meet an unreachable Redis with their own one-line error and exit 3: never the
gateway's "serving degraded, spooling audit records to disk" message, and no spool files
(``gateway.store.client``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gateway.cli import app
from tests.servers import free_port

runner = CliRunner()

COMMANDS = [
    ["review", "export", "--out", "{out}"],
    ["rollout", "list"],
    ["flags", "list"],
    ["flags", "kill", "gate", "--token", "tl"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_an_unreachable_store_is_the_tools_own_error(
    tmp_path: Path, command: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    cfg = tmp_path / "rollguard.yaml"
    review = {"queues": [{"name": "q"}], "reviewers": [{"name": "ana", "token": "tl", "role": "lead"}]}
    cfg.write_text(
        yaml.safe_dump({"store": {"redis_url": url, "data_dir": str(tmp_path / "var")}, "review": review})
    )
    args = [a.replace("{out}", str(tmp_path / "x.jsonl")) for a in command]
    with caplog.at_level(logging.INFO):
        res = runner.invoke(app, [*args, "--config", str(cfg)])
    said = res.output + caplog.text
    assert res.exit_code == 3, said
    assert "serving degraded" not in said and "spooling" not in said
    errors = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "does not answer" in errors[0], errors
    assert not (tmp_path / "var").exists()  # no spool, no spill, no embedded server directory
