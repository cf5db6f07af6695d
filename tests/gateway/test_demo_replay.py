"""The replayer and its summary, against the real demo upstream stub (a local aiohttp server)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from rich.console import Console

from gateway.demo.corpus import DemoItem, build_corpus
from gateway.demo.replay import (
    Outcome,
    make_client,
    measure_pairs,
    percentile,
    replay,
    replay_corpus,
    send_one,
    summarize,
)
from gateway.demo.run import exit_code, free_port
from gateway.demo.upstream import start_stub, stub_state

pytestmark = pytest.mark.integration  # a real local HTTP server (the demo upstream stub)


@pytest.fixture()
async def stub() -> AsyncIterator[tuple[Any, str]]:
    runner, base = await start_stub()
    try:
        yield runner, base.removesuffix("/v1")
    finally:
        await runner.cleanup()


def _item(i: int, stream: bool, kind: str = "benign") -> DemoItem:
    return DemoItem(
        id=f"t:{i}",
        source="test",
        kind=kind,
        messages=[{"role": "user", "content": f"hello {i}"}],
        stream=stream,
    )


async def test_corpus_replays_cleanly_through_the_stub(stub: tuple[Any, str]) -> None:
    runner, url = stub
    items = build_corpus(24)
    results = await replay(items, url, concurrency=4, model="echo")
    assert [r.item_id for r in results] == [it.id for it in items]
    assert all(r.status == 200 and r.outcome is Outcome.ALLOWED for r in results)
    assert sum(r.stream for r in results) == 12
    assert stub_state(runner).calls["echo"] == 24
    summary = summarize(results, wall_s=1.0)
    assert summary["requests"] == summary["allowed"] == 24
    assert summary["errors"] == 0 and summary["blocked_by_policy"] == {}
    assert sum(sum(row.values()) for row in summary["by_kind"].values()) == 24
    assert summary["latency_ms"]["p50"] > 0
    assert summary["added_ms"] is None and summary["direct"] is None
    assert exit_code(summary) == 0


async def test_replay_corpus_prints_tables_and_compares_with_direct(stub: tuple[Any, str]) -> None:
    runner, url = stub
    out = io.StringIO()
    items = build_corpus(12)
    # The stub stands in for both the gateway and the direct upstream: the comparison still works.
    summary = await replay_corpus(
        items, url, url, concurrency=3, direct_sample=5, console=Console(file=out), show_progress=False
    )
    assert stub_state(runner).calls["demo"] == 12 + 2 * 5
    assert summary["direct"]["pairs"] == 5 and summary["probe_requests"] == 5
    assert summary["added_ms"] is not None
    text = out.getvalue()
    assert "added latency p50 / p99 over direct" in text and "outcome by kind of prompt" in text


async def test_outcomes_are_read_from_status_body_headers_and_finish_reason(stub: tuple[Any, str]) -> None:
    runner, url = stub
    scripts = stub_state(runner).scripts
    blocked_body = {
        "message": "blocked by policy",
        "type": "invalid_request_error",
        "param": None,
        "code": "content_filter",
        "policy": "prompt_injection",
    }
    cases: list[tuple[DemoItem, dict[str, Any]]] = [
        (
            _item(0, False),
            {"status": 400, "error": blocked_body, "headers": {"x-rollguard-verdict": "block"}},
        ),
        (_item(1, False), {"content": "ok", "headers": {"x-rollguard-verdict": "redact"}}),
        (_item(2, False), {"content": "ok", "headers": {"x-rollguard-verdict": "flag"}}),
        (_item(3, False), {"content": "", "finish_reason": "content_filter"}),
        (
            _item(4, True),
            {"chunks": [{"content": "partial", "role": "assistant"}, {"finish_reason": "content_filter"}]},
        ),
        (_item(5, False), {"status": 500}),
        (_item(6, True), {"content": "fine"}),
        (_item(7, False), {"status": 400, "error": {"message": "bad", "type": "invalid_request_error"}}),
    ]
    results = []
    async with make_client(url) as client:
        for item, script in cases:
            scripts["echo"] = [script, 1]
            results.append(await send_one(client, item, model="echo"))
    outcomes = [(r.outcome, r.policy, r.status) for r in results]
    assert outcomes == [
        (Outcome.BLOCKED, "prompt_injection", 400),
        (Outcome.REDACTED, None, 200),
        (Outcome.FLAGGED, None, 200),
        (Outcome.BLOCKED, "output", 200),
        (Outcome.BLOCKED, "output", 200),
        (Outcome.ERROR, None, 500),
        (Outcome.ALLOWED, None, 200),
        (Outcome.ERROR, None, 400),
    ]
    assert not results[0].reached_upstream and results[3].reached_upstream
    summary = summarize(results)
    assert summary["blocked"] == 3 and summary["blocked_by_policy"] == {"output": 2, "prompt_injection": 1}
    assert (summary["allowed"], summary["redacted"], summary["flagged"], summary["errors"]) == (1, 1, 1, 2)
    assert len(summary["error_samples"]) == 2
    assert exit_code(summary) == 1  # 2 errors in 8 requests is over the 2 % limit


async def test_connection_refused_is_an_error_not_an_exception() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    results = await replay([_item(0, False), _item(1, True)], url, concurrency=2)
    assert [(r.outcome, r.status) for r in results] == [(Outcome.ERROR, 0), (Outcome.ERROR, 0)]
    assert all(r.error and "Connection" in r.error for r in results)


async def test_pairs_leave_out_input_blocks(stub: tuple[Any, str]) -> None:
    runner, url = stub
    blocked = {
        "status": 400,
        "error": {"message": "no", "type": "invalid_request_error", "code": "content_filter"},
    }
    stub_state(runner).scripts["echo"] = [blocked, 2]  # both calls of the first pair: an input block
    pairs = await measure_pairs([_item(0, False), _item(1, True), _item(2, False)], url, url, model="echo")
    assert [p.item_id for p in pairs] == ["t:1", "t:2"]
    assert all(p.direct_ms > 0 and p.gateway_ms > 0 for p in pairs)
    summary = summarize([], pairs)
    assert summary["direct"]["pairs"] == 2
    assert summary["added_ms"]["p50"] == pytest.approx(
        percentile([p.gateway_ms - p.direct_ms for p in pairs], 50), abs=1e-3
    )


def test_percentile_matches_linear_interpolation() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) != percentile([], 50)  # NaN


def test_exit_code_needs_requests() -> None:
    assert exit_code({"requests": 0, "errors": 0}) == 1
    assert exit_code({"requests": 100, "errors": 2}) == 0
    assert exit_code({"requests": 100, "errors": 3}) == 1
