"""``ChatService`` as a unit, on the shipped in-memory fakes (``rollguard.testing``): a scripted
upstream, static flags and a decision capture. The HTTP behaviour end to end is tested in
tests/integration against a real upstream server, Redis and the real app."""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry import metrics

from gateway.exchange import ChatResult, RequestMeta
from gateway.flags import FlagContext
from gateway.routes.openai import render
from gateway.service import ChatService
from gateway.telemetry import GatewayMetrics
from gateway.upstream import Upstream
from policies.base import CheckContext, Execution, PolicyResult
from policies.pipeline import ConfiguredPolicy, Pipeline
from rollguard.settings import RollguardSettings
from rollguard.testing import DecisionCapture, InMemoryTransport, StaticFlags, completion
from rollguard.types import Interaction, Stage, Verdict


class Forbidden:
    """Blocks a request (or a completion) that says "forbidden"."""

    type_name = "forbidden"
    transforms = False
    execution = Execution.INLINE
    stages = frozenset(Stage)

    def check(self, ctx: CheckContext) -> PolicyResult:
        text = ctx.completion if ctx.stage is not Stage.PRE_CALL else str(ctx.messages[-1]["content"])
        return PolicyResult(Verdict.BLOCK if "forbidden" in (text or "") else Verdict.ALLOW, 0.0, "word")

    def describe(self) -> dict[str, Any]:
        return {}


def service(
    transport: InMemoryTransport, static: StaticFlags | None = None, **settings: Any
) -> tuple[ChatService, DecisionCapture, StaticFlags]:
    entries = [
        {
            "model_name": name,
            "litellm_params": {"model": f"openai/{name}-model", "api_base": "http://up.test/v1"},
        }
        for name in ("demo", "demo-b")
    ]
    s = RollguardSettings(model_list=entries, **settings)
    pipeline = Pipeline([ConfiguredPolicy(id="words", policy=Forbidden(), stages=frozenset(Stage))])
    capture, flags = DecisionCapture(), static or StaticFlags()
    upstream = Upstream(s, transport=transport)
    meter = GatewayMetrics(metrics.get_meter("test"))
    return ChatService(s, pipeline, upstream, flags, capture, meter), capture, flags


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "demo", "messages": [{"role": "user", "content": text}], **extra}


META = RequestMeta(tenant="t1", flags=FlagContext(user_id="u1", tenant="t1", remote_address="10.1.2.3"))


async def rendered(result: ChatResult) -> Any:
    response = render(result)
    assert response.background is not None
    return response


async def test_a_completion_is_recorded_after_the_response() -> None:
    svc, capture, _ = service(InMemoryTransport(replies=[completion("Hello there")]))
    result = await svc.chat_completion(ask("hi"), META)
    assert result.completion is not None and result.error is None
    assert result.completion["choices"][0]["message"]["content"] == "Hello there"
    response = await rendered(result)
    assert response.status_code == 200 and response.headers["x-rollguard-verdict"] == "allow"
    assert capture.interactions == []  # not before the response is sent
    await response.background()
    (rec,) = capture.interactions
    assert rec.metadata["outcome"] == "ok" and rec.completion == "Hello there"
    assert capture.verdicts("words") == [Verdict.ALLOW, Verdict.ALLOW]


async def test_the_record_after_the_response_is_written_on_the_event_loop() -> None:
    """Regression: a plain function as the background task ran in Starlette's thread pool, where
    the audit trail's escalation (``asyncio.get_running_loop``) failed and the response broke."""
    svc, capture, _ = service(InMemoryTransport(replies=[completion()]))
    loops: list[asyncio.AbstractEventLoop] = []
    record = capture.record

    def record_on_loop(interaction: Interaction, coverage: object = None) -> None:
        loops.append(asyncio.get_running_loop())  # raises RuntimeError off the loop
        record(interaction, coverage)

    capture.record = record_on_loop  # type: ignore[method-assign]
    response = await rendered(await svc.chat_completion(ask("hi"), META))
    await response.background()
    assert loops == [asyncio.get_running_loop()] and len(capture.interactions) == 1


async def test_an_input_block_never_calls_the_upstream_and_is_recorded_after() -> None:
    transport = InMemoryTransport(replies=[completion()])
    svc, capture, _ = service(transport)
    result = await svc.chat_completion(ask("a forbidden word"), META)
    assert result.error is not None and result.error.code == "content_filter"
    assert result.error_fields == {"policy": "words", "interaction_id": result.interaction.id}
    response = await rendered(result)
    assert response.status_code == 400 and response.headers["x-rollguard-policy"] == "words"
    assert transport.calls == [] and capture.interactions == []
    await response.background()
    assert capture.interactions[0].metadata["outcome"] == "blocked"


async def test_an_unknown_model_is_a_rejected_result_recorded_after() -> None:
    svc, capture, _ = service(InMemoryTransport(replies=[completion()]))
    result = await svc.chat_completion({**ask("hi"), "model": "nope"}, META)
    assert result.error is not None and result.error.status == 404 and result.headers is None
    response = await rendered(result)
    assert response.status_code == 404 and "x-rollguard-interaction-id" not in response.headers
    await response.background()
    assert capture.interactions[0].metadata["outcome"] == "rejected"


async def test_the_flag_context_is_the_routes_own_with_the_remote_address() -> None:
    svc, _, flags = service(InMemoryTransport(replies=[completion()]))
    await svc.chat_completion(ask("hi"), META)
    assert len(flags.contexts) == 1 and flags.contexts[0] is META.flags
    assert flags.contexts[0].remote_address == "10.1.2.3"


async def test_a_rollout_variant_picks_the_upstream_alias() -> None:
    transport = InMemoryTransport(replies=[completion()])
    svc, _, _ = service(
        transport,
        StaticFlags(variants={"demo-rollout": "canary"}),
        flags={
            "rollouts": {
                "demo": {"flag": "demo-rollout", "variants": {"control": "demo", "canary": "demo-b"}}
            }
        },
    )
    response = await rendered(await svc.chat_completion(ask("hi"), META))
    assert transport.calls[0].model == "demo-b-model"
    assert response.headers["x-rollguard-variant"] == "canary"


async def test_a_stream_records_itself_at_its_end() -> None:
    svc, capture, _ = service(InMemoryTransport(replies=[completion("streamed back to you")]))
    result = await svc.chat_completion(ask("hi", stream=True), META)
    assert result.stream is not None and result.after is None
    body = b"".join([piece async for piece in result.stream])
    assert body.endswith(b"data: [DONE]\n\n") and b"streamed" in body
    (rec,) = capture.interactions
    assert rec.metadata["outcome"] == "ok" and rec.completion == "streamed back to you"
    # the time to the first byte, which the rollout judge's ttft_p95_ms reads from the record
    assert 0.0 < float(rec.metadata["ttft_ms"]) <= rec.latency_ms


async def test_an_output_block_ends_the_stream_with_content_filter() -> None:
    svc, capture, _ = service(InMemoryTransport(replies=[completion("this is forbidden text")]))
    result = await svc.chat_completion(ask("hi", stream=True), META)
    assert result.stream is not None
    body = b"".join([piece async for piece in result.stream])
    assert b'"finish_reason":"content_filter"' in body and b"forbidden" not in body
    assert capture.interactions[0].metadata["outcome"] == "output_blocked"


def policy_rollout(on: bool) -> tuple[ChatService, DecisionCapture]:
    """The ``words`` policy under a policy rollout on flag ``words-rollout``, whose flag is
    ``on`` (canary: enforce) or off (control: shadow) for the request."""
    from rollguard.rollout_settings import RolloutsSettings

    plan = {"flag": "words-rollout", "subject": {"kind": "policy", "policy": "words"}}
    entry = {
        "model_name": "demo",
        "litellm_params": {"model": "openai/demo-model", "api_base": "http://up.test/v1"},
    }
    s = RollguardSettings(
        model_list=[entry], rollouts=RolloutsSettings.model_validate({"plans": {"v2": plan}})
    )
    words = ConfiguredPolicy(id="words", policy=Forbidden(), stages=frozenset(Stage), flag="words-rollout")
    capture = DecisionCapture()
    upstream = Upstream(s, transport=InMemoryTransport(replies=[completion("fine")]))
    meter = GatewayMetrics(metrics.get_meter("test"))
    flags = StaticFlags(enabled={"words-rollout": on})
    return ChatService(s, Pipeline([words]), upstream, flags, capture, meter), capture


async def test_a_policy_rollout_shadows_the_control_arm_and_enforces_the_canary() -> None:
    control, captured = policy_rollout(False)
    result = await control.chat_completion(ask("forbidden"), META)
    assert result.error is None  # shadow: recorded, never enforced
    await result.after()  # type: ignore[misc]
    (rec,) = captured.interactions
    (d,) = [d for d in rec.decisions if d.policy == "words" and d.stage is Stage.PRE_CALL]
    assert d.verdict is Verdict.BLOCK and d.enforced is False
    assert rec.metadata["variant"] == "control" and rec.metadata["rollout_flag"] == "words-rollout"
    canary, _ = policy_rollout(True)
    blocked = await canary.chat_completion(ask("forbidden"), META)
    assert blocked.error is not None and blocked.error.code == "content_filter"
