"""The traffic replayer behind ``rollguard demo``: sends the demo corpus through a base URL with the
official ``openai`` client and sorts every reply into an outcome.

Outcomes (``Outcome``), read from what the gateway promises on the wire (docs/architecture.md,
"Contracts"):

* ``blocked`` — HTTP 400 with ``error.code == "content_filter"`` (input block; the policy id is in
  ``error.policy`` and in the ``x-rollguard-policy`` header), or a completion / stream ending with
  ``finish_reason == "content_filter"`` (output block);
* ``redacted`` / ``flagged`` / ``allowed`` — a 200 whose ``x-rollguard-verdict`` header says
  ``redact`` / ``flag`` / ``allow`` (no header, e.g. straight to the upstream: ``allowed``);
* ``error`` — anything else (connection failure, timeout, other 4xx/5xx).

Latency is wall time per request in milliseconds, measured by the client from the call until the
last byte (the whole stream for streaming requests), including the client's own overhead.

``replay_corpus`` then measures the *added latency* of the gateway on a sample of the same prompts
(``measure_pairs``): one prompt at a time, each sent straight to the upstream (``direct``) and
through the gateway back to back (the order alternating), so that both calls see the same prompt,
the same upstream work and the same machine load. The added latency of a prompt is the gateway's
time minus the direct time; the summary gives its p50 and p99 over the prompts that reached the
upstream through the gateway (input blocks and errors are left out).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import openai
from openai import AsyncOpenAI
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gateway.demo.corpus import DEMO_MODEL, DemoItem

VERDICT_HEADER = "x-rollguard-verdict"
POLICY_HEADER = "x-rollguard-policy"
INTERACTION_HEADER = "x-rollguard-interaction-id"
VARIANT_HEADER = "x-rollguard-variant"
CONTENT_FILTER = "content_filter"

DEFAULT_CONCURRENCY = 8
DEFAULT_DIRECT_SAMPLE = 200
DEFAULT_TIMEOUT_S = 30.0


class Outcome(enum.StrEnum):
    ALLOWED = "allowed"
    REDACTED = "redacted"
    FLAGGED = "flagged"
    BLOCKED = "blocked"
    ERROR = "error"


_VERDICT_OUTCOME = {
    "allow": Outcome.ALLOWED,
    "redact": Outcome.REDACTED,
    "flag": Outcome.FLAGGED,
    "block": Outcome.BLOCKED,
}


@dataclass(frozen=True, slots=True)
class RequestResult:
    """One replayed request. ``status`` is the HTTP status (0 when no response arrived);
    ``policy`` the blocking policy id (``"output"`` when an output block named none);
    ``error`` a short class name + message for ``Outcome.ERROR``, else ``None``."""

    item_id: str
    kind: str
    stream: bool
    status: int
    outcome: Outcome
    latency_ms: float
    policy: str | None = None
    verdict: str | None = None
    interaction_id: str | None = None
    error: str | None = None
    variant: str | None = None

    @property
    def reached_upstream(self) -> bool:
        """True when the request went on to the model (everything but input blocks and errors)."""
        return self.outcome is not Outcome.ERROR and not (
            self.outcome is Outcome.BLOCKED and self.status == 400
        )


@dataclass(frozen=True, slots=True)
class LatencyPair:
    """One prompt sent direct and through the gateway back to back (milliseconds)."""

    item_id: str
    direct_ms: float
    gateway_ms: float

    @property
    def added_ms(self) -> float:
        return self.gateway_ms - self.direct_ms


def _from_headers(
    item: DemoItem, headers: httpx.Headers, status: int, finish: str | None, latency_ms: float
) -> RequestResult:
    verdict = headers.get(VERDICT_HEADER)
    policy = headers.get(POLICY_HEADER)
    outcome = _VERDICT_OUTCOME.get(verdict or "allow", Outcome.ALLOWED)
    if finish == CONTENT_FILTER:
        outcome = Outcome.BLOCKED
        policy = policy or "output"
    return RequestResult(
        item_id=item.id,
        kind=item.kind,
        stream=item.stream,
        status=status,
        outcome=outcome,
        latency_ms=latency_ms,
        policy=policy if outcome is Outcome.BLOCKED else None,
        verdict=verdict,
        interaction_id=headers.get(INTERACTION_HEADER),
        variant=headers.get(VARIANT_HEADER),
    )


def _stream_policy(chunk: Any) -> str | None:
    """A policy id the gateway may attach to the chunk that ends a blocked stream (any of the
    extra fields ``rollguard.policy`` / ``x_rollguard_policy``), else ``None``."""
    extra = getattr(chunk, "model_extra", None) or {}
    info = extra.get("rollguard")
    if isinstance(info, dict) and isinstance(info.get("policy"), str):
        return str(info["policy"])
    value = extra.get("x_rollguard_policy")
    return value if isinstance(value, str) else None


async def send_one(client: AsyncOpenAI, item: DemoItem, model: str = DEMO_MODEL) -> RequestResult:
    """Send one item (streaming or not, as the item says) and classify the reply. Never raises for
    HTTP or connection failures: they become ``Outcome.ERROR`` (or ``BLOCKED`` for content_filter)."""
    body = item.request(model)
    start = time.perf_counter()
    try:
        if item.stream:
            async with client.chat.completions.with_streaming_response.create(**body, stream=True) as resp:
                finish: str | None = None
                policy: str | None = None
                async for chunk in await resp.parse():
                    for choice in chunk.choices:
                        if choice.finish_reason:
                            finish = choice.finish_reason
                    policy = policy or _stream_policy(chunk)
                latency = (time.perf_counter() - start) * 1000
                result = _from_headers(item, resp.headers, resp.status_code, finish, latency)
                if policy and result.outcome is Outcome.BLOCKED:
                    result = _replace_policy(result, policy)
                return result
        raw = await client.chat.completions.with_raw_response.create(**body)
        completion = raw.parse()
        latency = (time.perf_counter() - start) * 1000
        finish = completion.choices[0].finish_reason if completion.choices else None
        return _from_headers(item, raw.headers, raw.status_code, finish, latency)
    except openai.APIStatusError as exc:
        latency = (time.perf_counter() - start) * 1000
        return _from_status_error(item, exc, latency)
    except (openai.APIError, httpx.HTTPError) as exc:
        latency = (time.perf_counter() - start) * 1000
        return RequestResult(item.id, item.kind, item.stream, 0, Outcome.ERROR, latency, error=_describe(exc))


def _replace_policy(result: RequestResult, policy: str) -> RequestResult:
    return dataclasses.replace(result, policy=policy)


def _from_status_error(item: DemoItem, exc: openai.APIStatusError, latency_ms: float) -> RequestResult:
    headers = exc.response.headers
    body = exc.body if isinstance(exc.body, dict) else {}
    if exc.status_code == 400 and (exc.code == CONTENT_FILTER or body.get("code") == CONTENT_FILTER):
        policy = body.get("policy") or headers.get(POLICY_HEADER) or "unknown"
        return RequestResult(
            item.id,
            item.kind,
            item.stream,
            400,
            Outcome.BLOCKED,
            latency_ms,
            policy=str(policy),
            verdict=headers.get(VERDICT_HEADER, "block"),
            interaction_id=body.get("interaction_id") or headers.get(INTERACTION_HEADER),
        )
    return RequestResult(
        item.id,
        item.kind,
        item.stream,
        exc.status_code,
        Outcome.ERROR,
        latency_ms,
        interaction_id=headers.get(INTERACTION_HEADER),
        error=_describe(exc),
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def make_client(
    base_url: str, api_key: str = "rollguard-demo", timeout_s: float = DEFAULT_TIMEOUT_S
) -> AsyncOpenAI:
    """An ``AsyncOpenAI`` client for ``<base_url>/v1`` with retries off (a retry would hide errors
    and double-count latency). ``base_url`` is the server root, e.g. ``http://127.0.0.1:8080``."""
    return AsyncOpenAI(
        base_url=base_url.rstrip("/") + "/v1",
        api_key=api_key,
        max_retries=0,
        timeout=timeout_s,
    )


async def replay(
    items: Sequence[DemoItem],
    base_url: str,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    api_key: str = "rollguard-demo",
    model: str = DEMO_MODEL,
    progress: Progress | None = None,
    label: str = "replay",
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[RequestResult]:
    """Send ``items`` to ``base_url`` with ``concurrency`` requests in flight; results come back in
    the order of ``items``. A rich ``progress`` (optional) gets one task named ``label``.

    Raises ``ValueError`` when ``concurrency < 1``."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    results: list[RequestResult | None] = [None] * len(items)
    task = progress.add_task(label, total=len(items)) if progress is not None else None
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(items)):
        queue.put_nowait(i)

    async with make_client(base_url, api_key, timeout_s) as client:

        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                results[i] = await send_one(client, items[i], model)
                if progress is not None and task is not None:
                    progress.advance(task)

        await asyncio.gather(*(worker() for _ in range(min(concurrency, max(1, len(items))))))
    return [r for r in results if r is not None]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks (numpy's
    default method); ``nan`` for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(
    results: Sequence[RequestResult],
    pairs: Sequence[LatencyPair] = (),
    wall_s: float | None = None,
) -> dict[str, Any]:
    """The demo summary as a JSON-ready dict.

    Keys: ``requests``, ``allowed``, ``redacted``, ``flagged``, ``blocked`` (total),
    ``blocked_by_policy`` ``{policy: count}``, ``errors``, ``error_samples`` (up to 5 strings),
    ``by_kind`` ``{kind: {outcome: count}}``, ``variants`` ``{model-rollout variant: count}`` (from
    the ``x-rollguard-variant`` header; empty when no rollout is configured), ``latency_ms``
    ``{p50, p99}`` over all requests,
    ``direct`` ``{pairs, p50, p99, gateway_p50, gateway_p99}`` (ms, over the paired sample) and
    ``added_ms`` ``{p50, p99}``: percentiles of the per-prompt added latency (``None`` without
    pairs), ``wall_s`` and ``requests_per_s`` of the replay.
    """
    counts, by_policy, by_kind, variants = _tally(results)
    latencies = [r.latency_ms for r in results]
    return {
        "requests": len(results),
        "allowed": counts[Outcome.ALLOWED],
        "redacted": counts[Outcome.REDACTED],
        "flagged": counts[Outcome.FLAGGED],
        "blocked": counts[Outcome.BLOCKED],
        "blocked_by_policy": dict(sorted(by_policy.items(), key=lambda kv: (-kv[1], kv[0]))),
        "errors": counts[Outcome.ERROR],
        "error_samples": [r.error or f"HTTP {r.status}" for r in results if r.outcome is Outcome.ERROR][:5],
        "by_kind": dict(sorted(by_kind.items())),
        "variants": dict(sorted(variants.items())),
        "latency_ms": {"p50": _round(percentile(latencies, 50)), "p99": _round(percentile(latencies, 99))},
        **_paired(pairs),
        "wall_s": _round(wall_s) if wall_s is not None else None,
        "requests_per_s": _round(len(results) / wall_s) if wall_s else None,
    }


def _tally(
    results: Sequence[RequestResult],
) -> tuple[dict[Outcome, int], dict[str, int], dict[str, dict[str, int]], dict[str, int]]:
    """``(per outcome, blocked per policy, per kind and outcome, per variant)`` counts."""
    counts = {o: 0 for o in Outcome}
    by_policy: dict[str, int] = {}
    by_kind: dict[str, dict[str, int]] = {}
    variants: dict[str, int] = {}
    for r in results:
        counts[r.outcome] += 1
        if r.variant:
            variants[r.variant] = variants.get(r.variant, 0) + 1
        if r.outcome is Outcome.BLOCKED:
            key = r.policy or "unknown"
            by_policy[key] = by_policy.get(key, 0) + 1
        row = by_kind.setdefault(r.kind, {o.value: 0 for o in Outcome})
        row[r.outcome.value] += 1
    return counts, by_policy, by_kind, variants


def _paired(pairs: Sequence[LatencyPair]) -> dict[str, Any]:
    """``direct`` and ``added_ms`` of the summary (both None without pairs)."""
    if not pairs:
        return {"direct": None, "added_ms": None}
    direct = [p.direct_ms for p in pairs]
    via = [p.gateway_ms for p in pairs]
    added = [p.added_ms for p in pairs]
    return {
        "direct": {
            "pairs": len(pairs),
            "p50": _round(percentile(direct, 50)),
            "p99": _round(percentile(direct, 99)),
            "gateway_p50": _round(percentile(via, 50)),
            "gateway_p99": _round(percentile(via, 99)),
        },
        "added_ms": {"p50": _round(percentile(added, 50)), "p99": _round(percentile(added, 99))},
    }


def _round(x: float | None) -> float | None:
    if x is None or x != x:  # NaN
        return None
    return round(x, 3)


def new_progress(console: Console | None = None) -> Progress:
    """The progress bar used by the demo (label, bar, n/total, elapsed)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


async def measure_pairs(
    items: Sequence[DemoItem],
    gateway_url: str,
    upstream_url: str,
    *,
    api_key: str = "rollguard-demo",
    model: str = DEMO_MODEL,
    progress: Progress | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[LatencyPair]:
    """Send each item direct and through the gateway, back to back, one item at a time (even
    items direct first, odd items gateway first). Returns the pairs where both calls succeeded and
    the gateway passed the request to the upstream; ``len(items)`` gateway requests are made."""
    pairs: list[LatencyPair] = []
    task = progress.add_task("direct vs gateway", total=len(items)) if progress is not None else None
    async with (
        make_client(gateway_url, api_key, timeout_s) as via,
        make_client(upstream_url, api_key, timeout_s) as direct,
    ):
        for i, item in enumerate(items):
            if i % 2 == 0:
                d = await send_one(direct, item, model)
                g = await send_one(via, item, model)
            else:
                g = await send_one(via, item, model)
                d = await send_one(direct, item, model)
            if d.outcome is not Outcome.ERROR and g.reached_upstream:
                pairs.append(LatencyPair(item.id, d.latency_ms, g.latency_ms))
            if progress is not None and task is not None:
                progress.advance(task)
    return pairs


async def replay_corpus(
    items: Sequence[DemoItem],
    gateway_url: str,
    upstream_url: str | None = None,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    direct_sample: int = DEFAULT_DIRECT_SAMPLE,
    api_key: str = "rollguard-demo",
    console: Console | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Replay ``items`` through the gateway at ``gateway_url`` with ``concurrency`` in flight, then
    measure the added latency on the first ``direct_sample`` of them against ``upstream_url``
    (``measure_pairs``; skipped when ``None`` or 0), print the summary tables on ``console`` and
    return ``summarize``'s dict plus ``probe_requests`` (gateway requests made by the pairing)."""
    console = console or Console()
    progress = new_progress(console) if show_progress else None
    sample = list(items[: max(0, direct_sample)]) if upstream_url else []
    if progress is not None:
        progress.start()
    try:
        start = time.perf_counter()
        results = await replay(
            items, gateway_url, concurrency=concurrency, api_key=api_key, progress=progress, label="gateway"
        )
        wall = time.perf_counter() - start
        pairs: list[LatencyPair] = []
        if sample and upstream_url:
            pairs = await measure_pairs(sample, gateway_url, upstream_url, api_key=api_key, progress=progress)
    finally:
        if progress is not None:
            progress.stop()
    summary = summarize(results, pairs, wall_s=wall)
    summary["probe_requests"] = len(sample)
    from gateway.demo.report import render_by_kind, render_summary  # report imports this module

    console.print(render_by_kind(summary))
    console.print(render_summary(summary))
    if summary["error_samples"]:
        console.print("[red]first errors:[/red]")
        for line in summary["error_samples"]:
            console.print(f"  {line}", markup=False)
    return summary
