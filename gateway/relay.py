"""The relay of one streamed chat completion: upstream chunks through the ``StreamGuard`` (the
stream-stage policies on a hold-back window per choice, tool calls checked whole at post_call) to
the client's SSE bytes, and, when the stream ends or the client leaves, the interaction's final
state (completion, tool calls, finish reason, usage, outcome) handed to ``finish``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from opentelemetry import trace

from gateway.exchange import Exchange
from gateway.restore import restore_piece
from gateway.streaming import StreamGuard, delivered_choice, error_event, guard_batches
from gateway.telemetry import GatewayMetrics, record_policy_errors, record_stage
from gateway.upstream import UpstreamStream
from policies.base import CheckContext
from policies.pipeline import ConfiguredPolicy, Pipeline, StageResult
from rollguard.errors import RollguardError
from rollguard.settings import GatewaySettings
from rollguard.types import Decision, Mode, Stage, Verdict

__all__ = ["CLIENT_CLOSED_STATUS", "CLIENT_DISCONNECTED", "StreamRelay"]

CLIENT_DISCONNECTED = "client_disconnected"
"""The outcome (and ``error_code``) of a stream the client closed before its end."""
CLIENT_CLOSED_STATUS = 499
"""The recorded status of such a stream (nginx's "client closed request"; the client got a 200
and part of the body)."""

Finish = Callable[[Exchange, str], None]
"""``finish(exchange, outcome)``: metrics, span and audit record of the ended stream."""


class StreamRelay:
    """Relays ``upstream`` for ``ex`` (one per stream). ``run()`` yields SSE bytes; its cleanup
    closes the upstream, completes ``ex.interaction`` and calls ``finish``, whether the stream
    ended, failed or the client left (``RelayResponse`` closes the generator then)."""

    def __init__(
        self,
        ex: Exchange,
        upstream: UpstreamStream,
        *,
        pipeline: Pipeline,
        metrics: GatewayMetrics,
        gateway: GatewaySettings,
        want_usage: bool,
        finish: Finish,
        check_spans: int = 0,
    ) -> None:
        self._ex = ex
        self._upstream = upstream
        self._pipeline = pipeline
        self._metrics = metrics
        self._finish = finish
        self._checked_calls: list[dict[str, Any]] = []  # the tool calls after the output policies
        self._guard = StreamGuard(
            self._check_text,
            holdback=gateway.stream_holdback_chars,
            include_usage=want_usage,
            check_tools=self._check_tools,
            min_release=gateway.stream_check_chars,
        )
        self._restore = gateway.restore_redactions and len(ex.ctx.vault) > 0
        self._spans_left = check_spans if ex.span.is_recording() else 0
        """Window checks that still get policy spans (the first ``check_spans`` of a traced stream)."""

    def _context(self, stage: Stage, completion: str, calls: list[dict[str, Any]] | None) -> CheckContext:
        ctx = self._ex.ctx
        return CheckContext(
            stage=stage,
            messages=ctx.messages,
            tenant=ctx.tenant,
            completion=completion,
            completion_tool_calls=calls if calls is not None else [],
            vault=ctx.vault,
        )

    async def _check_text(self, window_text: str) -> tuple[Verdict, str]:
        sctx = self._context(Stage.STREAM, window_text, None)
        if self._spans_left > 0:
            # The request's span is no longer current here (the route returned): make it so, and
            # the pipeline opens one ``policy <id>`` span per policy under it.
            self._spans_left -= 1
            with trace.use_span(self._ex.span, record_exception=False, set_status_on_exception=False):
                res = await self._pipeline.run(sctx, self._ex.enabled)
        else:
            res = await self._pipeline.run(sctx, self._ex.enabled)
        self._record_window(res)
        return res.verdict, sctx.completion if sctx.completion is not None else window_text

    async def _check_tools(self, calls: list[dict[str, Any]]) -> tuple[Verdict, list[dict[str, Any]]]:
        pctx = self._context(Stage.POST_CALL, "", calls)
        res = await self._pipeline.run(pctx, self._ex.enabled)
        self._ex.interaction.decisions.extend(res.decisions)
        self._ex.interaction.policy_ms += res.elapsed_ms
        record_stage(self._metrics, self._ex.span, res, self._ex.interaction)
        self._checked_calls[:] = pctx.completion_tool_calls
        return res.verdict, pctx.completion_tool_calls

    async def _judge_whole(self) -> None:
        """Each whole released reply judged once more at ``post_call`` by the read-only policies
        (as a non-streamed reply is), findings recorded as flags (the reply is delivered; a flag
        changes nothing for the client). A stream window is judged at a stricter threshold than a
        whole reply (a reply has many windows: ``content_safety``'s ``stream_threshold`` 0.82 vs
        ``output_threshold`` 0.27), so a harmful reply under every window's bar passed with no
        flag when streamed and was flagged unstreamed (a trial fault). Skipped after a block."""
        guard, ex = self._guard, self._ex
        if guard.blocked:
            return

        def judges(cp: ConfiguredPolicy) -> bool | Mode:
            return False if cp.policy.transforms else ex.enabled(cp)

        for index in guard.indexes():
            text = guard.completion(index)
            if not text:
                continue
            res = await self._pipeline.run(self._context(Stage.POST_CALL, text, None), judges)
            ex.interaction.policy_ms += res.elapsed_ms
            ex.interaction.decisions.extend(
                replace(d, verdict=Verdict.FLAG, reason=f"whole streamed reply: {d.reason}")
                for d in res.decisions
                if d.verdict.severity >= Verdict.FLAG.severity
            )
            record_policy_errors(self._metrics, res.decisions)

    def _record_window(self, result: StageResult) -> None:
        """The window is checked many times per stream: keep each policy's most severe decision."""
        interaction = self._ex.interaction
        worst: dict[str, Decision] = {}
        for d in interaction.decisions:
            if d.stage is Stage.STREAM:
                worst[d.policy] = d
        changed = False
        for d in result.decisions:
            prev = worst.get(d.policy)
            if prev is None or d.verdict.severity > prev.verdict.severity:
                worst[d.policy] = d
                changed = True
        interaction.policy_ms += result.elapsed_ms
        if changed:
            interaction.decisions = [d for d in interaction.decisions if d.stage is not Stage.STREAM]
            interaction.decisions.extend(worst.values())
            record_policy_errors(self._metrics, result.decisions)

    async def run(self) -> AsyncIterator[bytes]:
        """The SSE bytes for the client."""
        outcome = "ok"
        vault = self._ex.ctx.vault
        delivered: list[bytes] = []  # pieces the client took (redacted form), for a cut-off record
        ended = False
        try:
            # one write per burst of upstream chunks (``guard_batches``); ``delivered`` keeps the
            # events one by one (``delivered_choice`` reads them)
            async for batch in guard_batches(self._upstream, self._guard):
                if not delivered:  # time to first byte, for the rollout judge's ttft_p95_ms
                    ttft_ms = (time.perf_counter() - self._ex.t0) * 1000.0
                    self._ex.interaction.metadata["ttft_ms"] = f"{ttft_ms:.3f}"
                if self._restore:
                    yield b"".join([restore_piece(piece, vault) for piece in batch])
                else:
                    yield batch[0] if len(batch) == 1 else b"".join(batch)
                delivered.extend(batch)  # resumed: the server has written it
            ended = True
            await self._judge_whole()  # after [DONE]: the client does not wait for it
        except RollguardError as exc:
            # HTTP 200 is already out: OpenAI's mid-stream error event, then the stream closes.
            ended = True
            outcome = "upstream_error"
            self._failed(exc.status, exc.code)
            self._ex.interaction.metadata["upstream_error"] = exc.message
            yield error_event(exc)
        except Exception:
            ended = True
            outcome = "internal_error"
            self._failed(500, "internal_error")
            raise
        finally:
            # Not ended: the client left (RelayResponse cancelled us, or closed us at a yield).
            # Stop reading the upstream either way.
            await self._upstream.aclose()
            self._ex.upstream_done()
            outcome = self._ended(outcome) if ended else self._left(delivered)
            guard = self._guard
            if guard.usage:
                self._ex.interaction.usage = {k: v for k, v in guard.usage.items() if isinstance(v, int)}
            if self._ex.span.is_recording() and self._upstream.model:
                self._ex.span.set_attribute("gen_ai.response.model", self._upstream.model)
            self._finish(self._ex, outcome)
            self._ex.span.end()

    def _failed(self, status: int, code: str | None) -> None:
        self._ex.interaction.status = status
        self._ex.interaction.error_code = code

    def _ended(self, outcome: str) -> str:
        """The record of a stream that ran to its end (or to an error event)."""
        interaction, guard = self._ex.interaction, self._guard
        if guard.blocked and outcome == "ok":
            outcome = "output_blocked"
        interaction.completion = guard.completion(0)
        # Only the checked (redacted) calls: the raw assembled ones never reach the record.
        interaction.tool_calls = list(self._checked_calls)
        reasons = guard.finish_reasons()
        interaction.finish_reason = reasons[0] if reasons else None
        return outcome

    def _left(self, delivered: list[bytes]) -> str:
        """The record of a stream the client closed early: what it was delivered."""
        interaction = self._ex.interaction
        self._failed(CLIENT_CLOSED_STATUS, CLIENT_DISCONNECTED)
        text, calls, finish = delivered_choice(delivered, 0)
        interaction.completion, interaction.tool_calls = text, calls
        interaction.finish_reason = finish
        return CLIENT_DISCONNECTED
