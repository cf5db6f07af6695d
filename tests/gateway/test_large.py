"""Large inputs off the event loop (``gateway.large``) and the audit trail's use of it: sizes,
clipping of a ``limits``-rejected record, redaction on the worker thread, drain at shutdown."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from gateway.audit import AuditTrail
from gateway.large import CLIP_CHARS, LargeInputs, clip_messages, message_chars, rejected_by_limits
from policies.base import CheckContext
from policies.pipeline import build_pipeline
from policies.privacy import PrivacyRedactor
from rollguard.settings import PolicySpec
from rollguard.types import Decision, Interaction, Stage, Verdict

EMAIL = "jane.roe@example.com"


def _interaction(messages: list[dict[str, Any]], decisions: list[Decision] | None = None) -> Interaction:
    return Interaction(
        id="rg-1", created_ms=1, tenant="t", model="m", messages=messages, decisions=decisions or []
    )


def _limits_block() -> Decision:
    return Decision("limits", "limits", Stage.PRE_CALL, Verdict.BLOCK, 1.0, "characters 10 > limit 5")


def test_message_chars_counts_content_parts_and_tool_call_arguments() -> None:
    messages = [
        {"role": "system", "content": "abc"},
        {"role": "user", "content": [{"type": "text", "text": "de"}, {"type": "image_url", "image_url": {}}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}],
        },
    ]
    assert message_chars(messages) == 3 + 2 + 2


def test_clip_keeps_the_head_marks_the_rest_and_shares_short_messages() -> None:
    short = {"role": "system", "content": "be brief"}
    long = {"role": "user", "content": "x" * (CLIP_CHARS + 500)}
    parts = {"role": "user", "content": [{"type": "text", "text": "y" * (CLIP_CHARS + 1)}]}
    out = clip_messages([short, long, parts])
    assert out[0] is short
    assert out[1]["content"].startswith("x" * CLIP_CHARS)
    assert "500 characters clipped" in out[1]["content"]
    assert "1 characters clipped" in out[2]["content"][0]["text"]
    assert long["content"] == "x" * (CLIP_CHARS + 500)  # the input is never mutated


def test_rejected_by_limits_only_for_an_enforced_limits_block() -> None:
    assert rejected_by_limits(_interaction([], [_limits_block()]))
    shadow = Decision("limits", "limits", Stage.PRE_CALL, Verdict.BLOCK, 1.0, "r", enforced=False)
    other = Decision("pi", "prompt_injection", Stage.PRE_CALL, Verdict.BLOCK, 1.0, "r")
    assert not rejected_by_limits(_interaction([], [shadow, other]))


def test_limits_rejected_record_is_clipped_before_redaction() -> None:
    records: list[dict[str, Any]] = []
    audit = AuditTrail(records.append)
    text = f"{EMAIL} " + "a" * 50_000
    it = _interaction([{"role": "user", "content": text}], [_limits_block()])
    audit.record(it)
    content = records[0]["messages"][0]["content"]
    assert content.startswith("<EMAIL_ADDRESS_1> ")
    assert len(content) < CLIP_CHARS + 100
    assert it.messages[0]["content"] == text  # the interaction itself is left alone


def test_large_record_is_redacted_on_the_worker_thread_and_drained() -> None:
    records: list[dict[str, Any]] = []
    threads: list[str] = []
    large = LargeInputs(threshold_chars=100)
    audit = AuditTrail(records.append, large=large)
    original = audit.redactor.redact_record

    def spy(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return original(*args)

    audit.redactor.redact_record = spy  # type: ignore[method-assign]

    async def run() -> None:
        audit.record(_interaction([{"role": "user", "content": f"{EMAIL} " + "b" * 200}]))
        audit.record(_interaction([{"role": "user", "content": "small"}]))
        assert len(records) == 1  # the small one at once, the large one still on the thread
        await audit.drain()

    asyncio.run(run())
    large.close()
    assert len(records) == 2
    assert records[1]["messages"][0]["content"].startswith("<EMAIL_ADDRESS_1> ")
    # the small record is prepared at once on the loop's thread, the large one later on the pool
    assert threads[0] == threading.main_thread().name and threads[1].startswith("rollguard-large")


def test_run_stage_runs_the_pipeline_on_the_worker_thread_with_the_same_result() -> None:
    pipeline = build_pipeline([PolicySpec(id="pii", type="pii"), PolicySpec(id="limits", type="limits")])
    large = LargeInputs(threshold_chars=10)
    messages = [{"role": "user", "content": f"mail {EMAIL} please"}]

    async def both() -> tuple[Any, Any]:
        on_loop = await pipeline.run(CheckContext(Stage.PRE_CALL, list(messages)))
        ctx = CheckContext(Stage.PRE_CALL, list(messages))
        off_loop = await large.run_stage(pipeline, ctx, lambda _: True)
        return on_loop, off_loop

    on_loop, off_loop = asyncio.run(both())
    large.close()
    assert large.is_large(messages) and large.offloaded == 1
    assert [d.verdict for d in off_loop.decisions] == [d.verdict for d in on_loop.decisions]
    assert off_loop.messages == on_loop.messages
    assert off_loop.messages[0]["content"] == "mail <EMAIL_ADDRESS_1> please"


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        LargeInputs(threshold_chars=0)


def test_process_mode_checks_in_a_child_with_the_same_result_and_vault() -> None:
    pipeline = build_pipeline([PolicySpec(id="pii", type="pii"), PolicySpec(id="limits", type="limits")])
    large = LargeInputs(threshold_chars=10, pipeline=pipeline)
    assert large.mode == "process"
    messages = [{"role": "user", "content": f"mail {EMAIL} please"}]
    record = _interaction([{"role": "user", "content": f"from {EMAIL}"}])

    async def run() -> tuple[Any, CheckContext, dict[str, Any]]:
        ctx = CheckContext(Stage.PRE_CALL, list(messages))
        result = await large.run_stage(pipeline, ctx, lambda cp: cp.id == "pii")
        rec = await large.redact_record(PrivacyRedactor(), record, None)
        return result, ctx, rec

    try:
        result, ctx, rec = asyncio.run(run())
    finally:
        large.close()
    assert large.mode == "process" and large.offloaded == 2
    assert [d.policy for d in result.decisions] == ["pii"]  # limits was not enabled
    assert ctx.messages[0]["content"] == "mail <EMAIL_ADDRESS_1> please"
    assert ctx.vault.restore(ctx.messages[0]["content"]) == f"mail {EMAIL} please"
    assert rec["messages"][0]["content"] == "from <EMAIL_ADDRESS_1>"
