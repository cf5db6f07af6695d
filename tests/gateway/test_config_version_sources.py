"""The config version hashes what changes behaviour, not how a process runs: ``config check FILE``,
``serve -c FILE`` with any listen address, port, worker count or log level (command line or
environment), and the operations events a CLI command writes with ``-c FILE`` carry one version
(defect 9 of the issue-12 trial)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis
import yaml
from typer.testing import CliRunner

from gateway.cli import _cli_settings, app
from gateway.config_check import check_config
from gateway.ops_audit import OPERATIONS_AUDIT
from rollguard.config_version import config_version
from rollguard.settings import load_settings

runner = CliRunner()


@pytest.fixture()
def cfg(tmp_path: Path, redis_url: str) -> Path:
    config = {
        "store": {"redis_url": redis_url, "data_dir": str(tmp_path / "var")},
        "review": {
            "queues": [{"name": "rollouts"}],
            "reviewers": [{"name": "ana", "token": "tl", "role": "lead"}],
        },
    }
    path = tmp_path / "rollguard.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _checked_version(cfg: Path) -> str:
    res = runner.invoke(app, ["config", "check", str(cfg)])
    assert res.exit_code == 0, res.output
    found = re.search(r"config version ([0-9a-f]{12})", res.output)
    assert found is not None, res.output
    return found.group(1)


def _serve_version(cfg: Path, **options: object) -> str:
    """The version ``serve`` stamps: ``check_config`` on the settings ``serve`` loads."""
    return config_version(check_config(load_settings(cfg, _cli_settings(**options))).settings)


def test_process_options_do_not_change_the_version(
    cfg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = _checked_version(cfg)
    assert _serve_version(cfg) == version
    assert _serve_version(cfg, port=9123, workers=4, host="127.0.0.2") == version
    monkeypatch.setenv("ROLLGUARD_GATEWAY__LOG_LEVEL", "debug")
    monkeypatch.setenv("ROLLGUARD_GATEWAY__PORT", "9555")
    monkeypatch.setenv("ROLLGUARD_STORE__DATA_DIR", str(tmp_path / "elsewhere"))
    assert _serve_version(cfg) == version
    monkeypatch.setenv("ROLLGUARD_GATEWAY__STREAM_HOLDBACK_CHARS", "64")  # behaviour: a new version
    assert _serve_version(cfg) != version


def test_a_cli_ops_event_carries_the_version_config_check_prints(cfg: Path, redis_url: str) -> None:
    version = _checked_version(cfg)
    res = runner.invoke(app, ["flags", "kill", "gate", "--config", str(cfg), "--token", "tl"])
    assert res.exit_code == 0, res.output
    client = redis.Redis.from_url(redis_url)
    try:
        events = [f for _, f in client.xrange(OPERATIONS_AUDIT)]
    finally:
        client.close()
    kills = [e for e in events if e[b"action"] == b"flag_killed" or e[b"target"] == b"gate"]
    assert kills, events
    assert {e[b"config_version"].decode() for e in kills} == {version}
