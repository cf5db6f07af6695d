"""Wildcard routes (``model_name: "*"``, ``"openai/*"``; LiteLLM's rules) in the router, over
``InMemoryTransport``; over real sockets on both paths in tests/integration/test_wildcard_routing.py."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.upstream import Upstream
from gateway.upstream import wildcards as wildcards_module
from rollguard.errors import NotFound
from rollguard.settings import RollguardSettings
from rollguard.testing import InMemoryTransport, completion


def entry(alias: str, model: str) -> dict[str, Any]:
    return {"model_name": alias, "litellm_params": {"model": model, "api_base": "http://upstream.test/v1"}}


def make(models: list[dict[str, Any]], transport: InMemoryTransport) -> Upstream:
    settings = RollguardSettings(model_list=models, router_settings={"num_retries": 0})
    return Upstream(settings, transport=transport)


def ask(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


async def test_patterns_resolve_like_litellm() -> None:
    transport = InMemoryTransport(replies=[completion()])
    up = make(
        [
            entry("*", "openai/*"),
            entry("openai/*", "openai/*"),
            entry("team-*-v*", "openai/m-*-*"),
            entry("fast-*", "openai/small"),
            entry("gpt-4o", "openai/exact"),
        ],
        transport,
    )
    for name in ("anything", "openai/gpt-4o-mini", "team-a-v2", "fast-x", "gpt-4o"):
        assert up.has_model(name)
        await up.complete(name, ask(name))
    assert [c.model for c in transport.calls] == ["anything", "gpt-4o-mini", "m-a-2", "small", "exact"]
    # spans and metric labels name the configured pattern, never the client's string
    assert [up.route_alias(n) for n in ("anything", "openai/x", "gpt-4o")] == ["*", "openai/*", "gpt-4o"]
    assert up.model_names() == ["*", "openai/*", "team-*-v*", "fast-*", "gpt-4o"]  # no requested names
    await up.aclose()


async def test_no_pattern_no_route() -> None:
    up = make([entry("openai/*", "openai/*")], InMemoryTransport(replies=[completion()]))
    assert not up.has_model("anthropic/claude")
    assert up.route_alias("anthropic/claude") is None
    with pytest.raises(NotFound):
        await up.complete("anthropic/claude", ask("anthropic/claude"))
    await up.aclose()


async def test_requested_names_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wildcards_module, "MAX_NAMES", 3)
    transport = InMemoryTransport(replies=[completion()])
    up = make([entry("*", "openai/*"), entry("fixed", "openai/fixed")], transport)
    for i in range(10):
        await up.complete(f"m{i}", ask(f"m{i}"))
    assert len(up._deployments) <= 2 + 3  # the configured aliases stay, at most 3 requested names
    assert "fixed" in up._deployments and "*" in up._deployments
    assert [c.model for c in transport.calls] == [f"m{i}" for i in range(10)]
    await up.aclose()
