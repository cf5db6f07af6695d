"""The small things a CLI user notices (issue 12): ``--version``, ``-h`` on every command, choice
lists, and a clear refusal to read a store that is not the gateway's (instead of 0 rows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
import typer.main
from typer.testing import CliRunner

from gateway.cli import app

runner = CliRunner()


def _paths(cmd: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path under ``cmd`` (Typer's own Click groups have ``commands``)."""
    out = [prefix]
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            out += _paths(sub, (*prefix, name))
    return out


COMMANDS = _paths(typer.main.get_command(app))


def test_version() -> None:
    for flag in ("--version", "-V"):
        res = runner.invoke(app, [flag])
        assert res.exit_code == 0, res.output
        assert res.output.strip() == "rollguard 0.1.0"


def test_the_walk_found_the_nested_commands() -> None:
    assert {("review", "export"), ("flags", "kill"), ("rollout", "list"), ("config", "check")} <= set(
        COMMANDS
    )


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "rollguard")
def test_dash_h_is_help_on_every_command(path: tuple[str, ...]) -> None:
    res = runner.invoke(app, [*path, "-h"])
    assert res.exit_code == 0, res.output
    assert "Usage" in res.output and "-h, --help" in res.output


def test_format_and_scenario_are_choice_lists() -> None:
    res = runner.invoke(app, ["review", "export", "-h"])
    assert "<dpo|kto|jsonl>" in res.output
    bad = runner.invoke(app, ["review", "export", "--format", "xml"])
    assert bad.exit_code == 2 and "'xml' is not one of 'dpo', 'kto', 'jsonl'" in bad.output
    assert "<traffic|rollout>" in runner.invoke(app, ["demo", "-h"]).output
    assert runner.invoke(app, ["demo", "--scenario", "nope"]).exit_code == 2


def test_review_export_in_another_directory_is_refused_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROLLGUARD_CONFIG", raising=False)
    monkeypatch.delenv("ROLLGUARD_REDIS_URL", raising=False)
    res = runner.invoke(app, ["review", "export", "--out", "x.jsonl"])
    assert res.exit_code == 2, res.output
    assert f"no rollguard store in {tmp_path.resolve() / 'var'}" in res.output
    assert "-c" in res.output and "ROLLGUARD_REDIS_URL" in res.output
    assert list(tmp_path.iterdir()) == []  # no new empty store, no empty export


def test_review_export_from_a_store_without_rollguard_data_is_refused(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "rollguard.yaml"
    cfg.write_text(f"store: {{redis_url: '{redis_url}'}}\nreview: {{queues: [{{name: safety}}]}}\n")
    client = redis.Redis.from_url(redis_url)
    client.set("someone-else:key", "1")  # a foreign database: data, but none of ours
    res = runner.invoke(app, ["review", "export", "-c", str(cfg), "--out", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2, res.output
    assert "holds no rollguard data" in res.output
    assert not (tmp_path / "x.jsonl").exists()
    client.xadd("rollguard:interactions", {"record": "{}"})  # a gateway's store: exported (0 rows is true)
    res = runner.invoke(app, ["review", "export", "-c", str(cfg), "--out", str(tmp_path / "x.jsonl")])
    client.close()
    assert res.exit_code == 0, res.output
    assert "wrote 0 rows" in res.output


def test_config_check_prints_the_config_version(tmp_path: Path) -> None:
    cfg = tmp_path / "rollguard.yaml"
    cfg.write_text("gateway: {port: 9000}\n")
    res = runner.invoke(app, ["config", "check", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "config version " in res.output


def test_rollout_and_flags_reads_refuse_an_empty_store_and_a_missing_embedded_one(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "rollguard.yaml"
    cfg.write_text(f"store: {{redis_url: '{redis_url}'}}\n")
    for cmd in (["rollout", "list"], ["flags", "list"]):
        res = runner.invoke(app, [*cmd, "-c", str(cfg)])
        assert res.exit_code == 2, res.output
        assert "holds no rollguard data" in res.output
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROLLGUARD_CONFIG", raising=False)
    monkeypatch.delenv("ROLLGUARD_REDIS_URL", raising=False)
    res = runner.invoke(app, ["rollout", "list"])
    assert res.exit_code == 2 and "no rollguard store in" in res.output
    assert not (tmp_path / "var").exists()


def test_config_check_of_an_empty_file_says_what_serve_will_serve(tmp_path: Path) -> None:
    cfg = tmp_path / "rollguard.yaml"
    cfg.write_text("")
    res = runner.invoke(app, ["config", "check", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "serves the local demo model(s) demo, echo (no model_list)" in res.output
    assert "0 model alias" not in res.output


def _leaf_paths(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for name, cmd in getattr(group, "commands", {}).items():
        sub = getattr(cmd, "commands", None)
        out += _leaf_paths(cmd, (*prefix, name)) if sub else [(*prefix, name)]
    return out


def test_every_usage_line_names_arguments_the_click_way() -> None:
    """``Usage: rollguard config check [OPTIONS] FILE``: no ``{file}`` placeholder on any command."""
    paths = _leaf_paths(typer.main.get_command(app))
    assert ("config", "check") in paths and len(paths) > 10
    for path in paths:
        res = runner.invoke(app, [*path, "--help"])
        usage = res.output.splitlines()[0]
        assert "{" not in usage, usage
    res = runner.invoke(app, ["config", "check", "--help"])
    assert res.output.splitlines()[0].endswith("config check [OPTIONS] FILE")
