"""The four built-ins (pii, secrets, system_prompt_leak, limits) as the pipeline sees them:
registration, the ``Policy`` protocol, JSON-ready ``describe()``, and a real pipeline run where
the transforms chain (secrets sees pii's output) and redactions land in the context."""

from __future__ import annotations

import json

from policies.base import CheckContext, Policy
from policies.builtin.limits import LimitsPolicy
from policies.builtin.pii import PiiPolicy
from policies.builtin.secrets import SecretsPolicy
from policies.builtin.system_prompt_leak import SystemPromptLeakPolicy
from policies.pipeline import ConfiguredPolicy, Pipeline
from policies.registry import _TYPES
from rollguard.types import Stage, Verdict

BUILTINS = (PiiPolicy, SecretsPolicy, SystemPromptLeakPolicy, LimitsPolicy)


def test_registered_and_protocol_conformant() -> None:
    for cls in BUILTINS:
        assert _TYPES[cls.type_name] is cls
        policy = cls()
        assert isinstance(policy, Policy)
        json.dumps(dict(policy.describe()))


async def test_pipeline_runs_transforms_in_order_and_checks() -> None:
    pipeline = Pipeline(
        [
            ConfiguredPolicy(id=p.type_name, policy=p, stages=p.stages)
            for p in (LimitsPolicy(), PiiPolicy(), SecretsPolicy())
        ]
    )
    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    ctx = CheckContext(
        stage=Stage.PRE_CALL,
        messages=[{"role": "user", "content": f"I am ana.gomez@example.com and my token is {token}"}],
    )
    result = await pipeline.run(ctx)
    assert result.verdict is Verdict.REDACT
    assert ctx.messages[0]["content"] == "I am <EMAIL_ADDRESS_1> and my token is <GITHUB_TOKEN_1>"
    assert [d.policy for d in result.decisions] == ["limits", "pii", "secrets"]
    assert [d.verdict for d in result.decisions] == [Verdict.ALLOW, Verdict.REDACT, Verdict.REDACT]
    assert ctx.vault.restore(ctx.messages[0]["content"]).endswith(token)
