"""The rollout and kill-switch CLI checks the caller's role like the API (issue 8, human gate):
a lead or operator token (``--token`` or ``ROLLGUARD_REVIEW_TOKEN``) changes things; no token,
an unknown token or a reviewer's is refused with one line and exit 2 before anything changes;
reading needs no token. Against the real Valkey of the ``redis_url`` fixture."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import yaml
from typer.testing import CliRunner

from gateway.cli import app
from gateway.ops_audit import OperationsAudit
from gateway.rollout.overrides import OverrideStore

runner = CliRunner()


@pytest.fixture()
def cfg(tmp_path: Path, redis_url: str) -> Path:
    config = {
        "store": {"redis_url": redis_url, "data_dir": str(tmp_path / "var")},
        "review": {
            "queues": [{"name": "rollouts"}],
            "reviewers": [
                {"name": "ana", "token": "tok-lead", "role": "lead"},
                {"name": "rev", "token": "tok-rev", "role": "reviewer"},
            ],
        },
    }
    path = tmp_path / "rollguard.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _killed(redis_url: str) -> bool:
    async def go() -> bool:
        client = aioredis.from_url(redis_url)
        try:
            _v, entries = await OverrideStore(client).load()
            return "gate" in entries and entries["gate"].killed
        finally:
            await client.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {}, "error: this needs a reviewer token with the lead or operator role"),
        (("--token", "nope"), {}, "error: unknown reviewer token"),
        (("--token", "tok-rev"), {}, "error: this needs the lead or operator role"),
        ((), {"ROLLGUARD_REVIEW_TOKEN": "tok-rev"}, "error: this needs the lead or operator role"),
    ],
)
def test_a_kill_without_the_role_is_refused_and_changes_nothing(
    cfg: Path, redis_url: str, args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    res = runner.invoke(app, ["flags", "kill", "gate", "--config", str(cfg), *args], env=env)
    assert res.exit_code == 2
    assert res.stderr.strip().startswith(message) and len(res.stderr.strip().splitlines()) == 1
    assert not _killed(redis_url)


def test_a_lead_token_kills_and_the_audit_names_the_lead(cfg: Path, redis_url: str) -> None:
    res = runner.invoke(
        app, ["flags", "kill", "gate", "--config", str(cfg)], env={"ROLLGUARD_REVIEW_TOKEN": "tok-lead"}
    )
    assert res.exit_code == 0, res.stderr
    assert _killed(redis_url)
    listed = runner.invoke(app, ["flags", "list", "--config", str(cfg)], env={"ROLLGUARD_REVIEW_TOKEN": ""})
    assert listed.exit_code == 0 and '"gate"' in listed.stdout and "lead:ana" in listed.stdout


def test_rollout_transitions_need_the_role_reading_does_not(cfg: Path, redis_url: str) -> None:
    for verb in ("start", "approve", "pause", "resume", "rollback"):
        res = runner.invoke(app, ["rollout", verb, "r1", "--config", str(cfg), "--token", "tok-rev"])
        assert (res.exit_code, res.stderr.strip()) == (2, "error: this needs the lead or operator role"), verb
    res = runner.invoke(app, ["rollout", "approve", "r1", "--config", str(cfg), "--token", "tok-lead"])
    assert res.exit_code == 1 and "r1" in res.stderr  # past the role check: 404, unknown rollout
    # A gateway's store (it records its config load): reading needs no token. (An empty store is
    # refused: tests/gateway/test_cli_polish.py.)
    asyncio.run(_seed_gateway_store(redis_url))
    assert runner.invoke(app, ["rollout", "list", "--config", str(cfg)]).exit_code == 0


async def _seed_gateway_store(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    try:
        await OperationsAudit(client, "test").record("config_loaded", by="config")
    finally:
        await client.aclose()
