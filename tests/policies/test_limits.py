"""The ``limits`` policy: message, character and max_tokens caps with per-tenant overrides."""

from __future__ import annotations

from typing import Any

import pytest

from policies.base import CheckContext
from policies.builtin.limits import LimitsPolicy
from rollguard.types import Stage, Verdict


def ctx(n: int = 1, text: str = "hi", tenant: str = "default", max_tokens: int | None = None) -> CheckContext:
    messages = [{"role": "user", "content": text} for _ in range(n)]
    return CheckContext(stage=Stage.PRE_CALL, messages=messages, tenant=tenant, max_tokens=max_tokens)


def test_defaults_allow_a_normal_request() -> None:
    result = LimitsPolicy().check(ctx(3, max_tokens=100_000))
    assert result.verdict is Verdict.ALLOW


def test_too_many_messages() -> None:
    result = LimitsPolicy().check(ctx(300))
    assert result.verdict is Verdict.BLOCK
    assert result.reason == "messages 300 > limit 256"
    assert result.evidence[0].kind == "max_messages" and result.evidence[0].detail == "300 > 256"


def test_characters_count_every_text_location() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "a" * 6}]},
        {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": '{"q": "bb"}'}}]},
        {"role": "tool", "content": "c" * 3},
    ]
    policy = LimitsPolicy(max_chars=20)
    assert policy.check(CheckContext(stage=Stage.PRE_CALL, messages=messages)).verdict is Verdict.ALLOW
    result = LimitsPolicy(max_chars=19).check(CheckContext(stage=Stage.PRE_CALL, messages=messages))
    assert result.reason == "characters 20 > limit 19"


def test_max_tokens_and_tenant_overrides() -> None:
    policy = LimitsPolicy(
        max_tokens=4096,
        tenants={"free": {"max_tokens": 512, "max_messages": 10}, "batch": {"max_tokens": None}},
    )
    assert policy.check(ctx(max_tokens=4096)).verdict is Verdict.ALLOW
    assert policy.check(ctx(max_tokens=None)).verdict is Verdict.ALLOW
    assert policy.check(ctx(max_tokens=8192)).reason == "max_tokens 8192 > limit 4096"
    assert policy.check(ctx(max_tokens=8192, tenant="batch")).verdict is Verdict.ALLOW
    free = policy.check(ctx(11, "x" * 10, tenant="free", max_tokens=1000))
    assert free.verdict is Verdict.BLOCK
    assert free.reason == "messages 11 > limit 10; max_tokens 1000 > limit 512"
    assert policy.caps_for("free").max_chars == 400_000  # inherited
    assert policy.describe()["tenants"]["free"]["max_tokens"] == 512


@pytest.mark.parametrize(
    "params",
    [
        {"max_messages": 0},
        {"max_chars": -1},
        {"max_tokens": "100"},
        {"max_messages": True},
        {"tenants": {"a": {"max_turns": 3}}},
        {"tenants": {"a": 5}},
        {"tenants": ["a"]},
    ],
)
def test_bad_params(params: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LimitsPolicy(**params)
