"""``router_settings.allowed_fails`` / ``cooldown_time`` (LiteLLM's names): a deployment failing
more than ``allowed_fails`` times a minute leaves the rotation for ``cooldown_time`` seconds. Over
``InMemoryTransport``."""

from __future__ import annotations

from typing import Any

from gateway.upstream import Upstream
from gateway.upstream.cooldowns import FailureCooldown
from rollguard.errors import UpstreamUnavailable
from rollguard.settings import RollguardSettings
from rollguard.testing import InMemoryTransport, ScriptedCall, completion


def entry(alias: str, model: str) -> dict[str, Any]:
    return {
        "model_name": alias,
        "litellm_params": {"model": f"openai/{model}", "api_base": "http://u.test/v1"},
    }


def reply(call: ScriptedCall) -> Any:
    return UpstreamUnavailable("connection refused") if call.model == "bad" else completion()


def ask() -> dict[str, Any]:
    return {"model": "alias", "messages": [{"role": "user", "content": "hi"}]}


async def run(router: dict[str, Any], models: list[dict[str, Any]], n: int) -> list[str]:
    transport = InMemoryTransport(reply)
    up = Upstream(RollguardSettings(model_list=models, router_settings=router), transport=transport)
    for _ in range(n):
        await up.complete("alias", ask())
    await up.aclose()
    return [c.model for c in transport.calls]


async def test_failing_deployment_cools_down_after_allowed_fails() -> None:
    models = [entry("alias", "bad"), entry("alias", "good")]
    calls = await run({"num_retries": 1, "allowed_fails": 1, "cooldown_time": 60}, models, 8)
    assert calls.count("bad") == 2  # the second failure in a minute takes it out for 60 s
    assert calls.count("good") == 8


async def test_without_allowed_fails_nothing_cools_down() -> None:
    models = [entry("alias", "bad"), entry("alias", "good")]
    calls = await run({"num_retries": 1}, models, 8)
    assert calls.count("bad") == 8  # every request tries it first (its retry goes to the next)


def test_counts_per_minute_and_starts_again() -> None:
    cd = FailureCooldown(allowed_fails=2, cooldown_time=5.0)
    assert [cd.failed(1), cd.failed(1), cd.failed(2), cd.failed(1)] == [0.0, 0.0, 0.0, 5.0]
    assert cd.failed(1) == 0.0  # the count started again after the cooldown was given
