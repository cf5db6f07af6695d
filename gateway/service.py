"""One chat completion, end to end: flags -> pre_call policies -> upstream -> post_call / stream
policies -> response -> audit record. HTTP-framework details stay in ``routes/``; this module
returns Starlette responses because streaming and headers are part of the contract.

Contracts (docs/architecture.md): an input block is HTTP 400 ``code: content_filter`` with the
policy id and interaction id and the upstream is never called; a policy failure with
``on_error: block`` is HTTP 503 ``guardrail_unavailable``; an output block ends with
``finish_reason: "content_filter"``; the matched text is never sent or echoed.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.trace import Span
from starlette.responses import Response

from gateway.audit import AuditTrail, Coverage
from gateway.errors import error_response, json_response
from gateway.flags import FlagContext, Flags
from gateway.sse_response import RelayResponse
from gateway.streaming import StreamGuard, delivered_choice, encode_sse, error_event, guard_stream
from gateway.telemetry import GatewayMetrics
from gateway.upstream import Upstream
from policies.base import CheckContext
from policies.pipeline import ConfiguredPolicy, Pipeline, StageResult
from rollguard.errors import GuardrailUnavailable, InvalidRequest, NotFound, RollguardError
from rollguard.settings import RollguardSettings
from rollguard.types import Decision, FlagSnapshot, Interaction, Mode, Stage, Verdict, text_of

log = logging.getLogger("rollguard.gateway")
_tracer = trace.get_tracer("rollguard.gateway")

CAPABILITY_STREAMING = "streaming"
CLIENT_DISCONNECTED = "client_disconnected"
"""The outcome (and ``error_code``) of a stream the client closed before its end."""
CLIENT_CLOSED_STATUS = 499
"""The recorded status of such a stream (nginx's "client closed request"; the client got a 200
and part of the body)."""
CAPABILITY_TOOLS = "tools"


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """Who is asking: tenant from the API key, user/session ids from the body or headers."""

    tenant: str
    user: str | None
    session: str | None


def _content_filter_error(decision: Decision, interaction_id: str) -> RollguardError:
    if decision.error is not None:
        return GuardrailUnavailable(
            f"guardrail {decision.policy!r} is unavailable ({decision.error}); the request was not sent"
        )
    err = InvalidRequest(
        f"request blocked by guardrail policy {decision.policy!r}: {decision.reason}", code="content_filter"
    )
    return err


def _subject(raw: str | None) -> str | None:
    """A stable pseudonym for a user/session id (the audit record never holds the raw id)."""
    if raw is None:
        return None
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:24]


class ChatService:
    """Holds the per-process parts (pipeline, upstream, flags, audit) and serves requests."""

    def __init__(
        self,
        settings: RollguardSettings,
        pipeline: Pipeline,
        upstream: Upstream,
        flags: Flags,
        audit: AuditTrail,
        metrics: GatewayMetrics,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.upstream = upstream
        self.flags = flags
        self.audit = audit
        self.metrics = metrics
        fs = settings.flags
        names: dict[str, None] = {}
        for p in pipeline.policies:
            if p.flag:
                names[p.flag] = None
        for f in (*fs.capabilities.values(), *fs.models.values()):
            names[f] = None
        self._variant_flags = tuple(dict.fromkeys(ro.flag for ro in fs.rollouts.values()))
        self._flag_names = tuple(names)
        self._privacy: dict[str, tuple[str, frozenset[str]]] = {}
        for p in pipeline.policies:
            if p.mode is Mode.ENFORCE:
                roles = audit.redactor.eligible_roles(p.policy)
                if roles is not None:
                    self._privacy[p.id] = (p.type_name, roles)
        self._holdback = settings.gateway.stream_holdback_chars
        self._min_release = settings.gateway.stream_check_chars
        self._restore = settings.gateway.restore_redactions

    # -- request preparation -------------------------------------------------------------

    def evaluate_flags(self, meta: RequestMeta) -> FlagSnapshot:
        ctx = FlagContext(user_id=meta.user, session_id=meta.session, tenant=meta.tenant)
        return self.flags.evaluate(self._flag_names, ctx, variant_flags=self._variant_flags)

    def resolve_model(self, alias: str, snapshot: FlagSnapshot, interaction: Interaction) -> str:
        """The upstream alias to call for public ``alias``: model flags gate it, a rollout picks
        the variant's target. Raises ``NotFound`` (404 ``model_not_found``)."""
        fs = self.settings.flags
        gate = fs.models.get(alias)
        if gate is not None and not snapshot.is_enabled(gate):
            raise NotFound(
                f"the model {alias!r} does not exist or you do not have access to it",
                param="model",
                code="model_not_found",
            )
        ro = fs.rollouts.get(alias)
        if ro is not None:
            variant = snapshot.variants.get(ro.flag)
            target = ro.variants.get(variant) if variant else None
            if target is None:
                payload = snapshot.payloads.get(ro.flag)
                if payload and self.upstream.has_model(payload):
                    target = payload
            if target is None:
                variant = "control"
                target = ro.variants.get("control") or (alias if self.upstream.has_model(alias) else None)
            if target is not None:
                interaction.metadata["variant"] = variant or "control"
                interaction.metadata["rollout_flag"] = ro.flag
                return target
        if not self.upstream.has_model(alias):
            raise NotFound(
                f"the model {alias!r} does not exist or you do not have access to it",
                param="model",
                code="model_not_found",
            )
        return alias

    def _gate_capabilities(self, body: dict[str, Any], snapshot: FlagSnapshot) -> None:
        caps = self.settings.flags.capabilities
        if body.get("stream") and not snapshot.is_enabled(caps.get(CAPABILITY_STREAMING)):
            raise InvalidRequest(
                "streaming is not enabled for this caller", param="stream", code="capability_disabled"
            )
        if (body.get("tools") or body.get("functions")) and not snapshot.is_enabled(
            caps.get(CAPABILITY_TOOLS)
        ):
            raise InvalidRequest(
                "tools are not enabled for this caller", param="tools", code="capability_disabled"
            )

    def _enabled(self, snapshot: FlagSnapshot) -> Any:
        def enabled(cp: ConfiguredPolicy) -> bool:
            return snapshot.is_enabled(cp.flag)

        return enabled

    def _record_decisions(self, interaction: Interaction, result: StageResult, span: Span) -> None:
        interaction.decisions.extend(result.decisions)
        interaction.policy_ms += result.elapsed_ms
        for d in result.decisions:
            self.metrics.decisions.add(
                1,
                {
                    "policy": d.policy,
                    "verdict": d.verdict.value,
                    "stage": d.stage.value,
                    "enforced": d.enforced,
                },
            )
            if d.error:
                self.metrics.policy_errors.add(1, {"policy": d.policy, "error": d.error})
                log.warning(
                    "policy %s failed at %s: %s (on_error -> %s)",
                    d.policy,
                    d.stage.value,
                    d.error,
                    d.verdict.value,
                )
        if span.is_recording() and result.decisions:
            span.set_attribute(f"rollguard.{result.stage.value}.verdict", result.verdict.value)
            if result.blocked_by is not None:
                span.set_attribute("rollguard.blocked_by", result.blocked_by.policy)

    def _headers(self, interaction: Interaction) -> dict[str, str]:
        h = {"x-rollguard-interaction-id": interaction.id, "x-rollguard-verdict": interaction.verdict.value}
        worst = None
        for d in interaction.decisions:
            if d.enforced and d.verdict is interaction.verdict and d.verdict is not Verdict.ALLOW:
                worst = d.policy
                break
        if worst:
            h["x-rollguard-policy"] = worst
        variant = interaction.metadata.get("variant")
        if variant:
            h["x-rollguard-variant"] = variant
        return h

    def _finish(self, interaction: Interaction, t0: float, span: Span, outcome: str) -> None:
        """Metrics, span attributes and the audit record of a finished interaction. ``outcome``
        (``ok``, ``rejected``, ``blocked``, ``guardrail_error``, ``upstream_error``,
        ``output_blocked``, ``client_disconnected``, ``internal_error``) is the ``outcome`` label
        of the requests metric and ``metadata.outcome`` in the record."""
        interaction.latency_ms = (time.perf_counter() - t0) * 1000.0
        interaction.metadata["outcome"] = outcome
        self.metrics.requests.add(
            1, {"outcome": outcome, "model": interaction.model, "stream": interaction.stream}
        )
        self.metrics.request_duration.record(interaction.latency_ms, {"model": interaction.model})
        if span.is_recording():
            span.set_attribute("rollguard.verdict", interaction.verdict.value)
            span.set_attribute("rollguard.outcome", outcome)
            span.set_attribute("http.response.status_code", interaction.status)
            if interaction.usage:
                span.set_attribute("gen_ai.usage.input_tokens", interaction.usage.get("prompt_tokens", 0))
                span.set_attribute(
                    "gen_ai.usage.output_tokens", interaction.usage.get("completion_tokens", 0)
                )
        self.audit.record(interaction, self._coverage(interaction))

    def _coverage(self, interaction: Interaction) -> Coverage:
        """Which privacy redactions the request's own enforced policies already applied."""
        cov = Coverage()
        failed: set[str] = set()
        for d in interaction.decisions:
            entry = self._privacy.get(d.policy)
            if entry is None:
                continue
            if d.error is not None or not d.enforced:
                failed.add(d.policy)
                continue
            type_name, roles = entry
            if d.stage is Stage.PRE_CALL:
                cov.pre[type_name] = cov.pre.get(type_name, frozenset()) | roles
            else:
                cov.post.add(type_name)
        if failed:
            return Coverage()
        return cov

    # -- the request ---------------------------------------------------------------------------

    async def chat_completion(self, body: dict[str, Any], meta: RequestMeta) -> Response:
        """Serve one validated chat-completion ``body``. Client mistakes raise ``ClientError``
        subclasses (mapped by the error boundary); blocks are responses, not exceptions."""
        t0 = time.perf_counter()
        alias = body["model"]
        stream = bool(body.get("stream"))
        interaction = Interaction(
            id="rg-" + uuid.uuid4().hex,
            created_ms=int(time.time() * 1000),
            tenant=meta.tenant,
            model=alias,
            subject=_subject(meta.user),
            session=_subject(meta.session),
            stream=stream,
            messages=body["messages"],
        )
        with _tracer.start_as_current_span(f"chat {alias}", end_on_exit=not stream) as span:
            if span.is_recording():
                span.set_attribute("gen_ai.operation.name", "chat")
                span.set_attribute("gen_ai.request.model", alias)
                span.set_attribute("rollguard.interaction.id", interaction.id)
                span.set_attribute("rollguard.tenant", meta.tenant)
                span.set_attribute("rollguard.stream", stream)
            try:
                snapshot = self.evaluate_flags(meta)
                interaction.flags = snapshot
                target = self.resolve_model(alias, snapshot, interaction)
                interaction.upstream_model = target
                self._gate_capabilities(body, snapshot)
            except RollguardError as exc:
                interaction.status = exc.status
                interaction.error_code = exc.code
                self._finish(interaction, t0, span, "rejected")
                if stream:
                    span.end()
                raise
            enabled = self._enabled(snapshot)
            max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
            ctx = CheckContext(
                stage=Stage.PRE_CALL,
                messages=body["messages"],
                tenant=meta.tenant,
                max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            )
            pre = await self.pipeline.run(ctx, enabled)
            self._record_decisions(interaction, pre, span)
            interaction.messages = ctx.messages
            if pre.blocked:
                assert pre.blocked_by is not None
                err = _content_filter_error(pre.blocked_by, interaction.id)
                interaction.status = err.status
                interaction.error_code = err.code
                self._finish(interaction, t0, span, "blocked" if err.status == 400 else "guardrail_error")
                if stream:
                    span.end()
                return error_response(
                    err,
                    headers=self._headers(interaction),
                    policy=pre.blocked_by.policy,
                    interaction_id=interaction.id,
                )
            body = dict(body)
            body["messages"] = ctx.messages
            body["model"] = target
            if not stream:
                return await self._complete(body, interaction, ctx, enabled, t0, span)
            return await self._stream(body, interaction, ctx, enabled, t0, span)

    async def _complete(
        self,
        body: dict[str, Any],
        interaction: Interaction,
        ctx: CheckContext,
        enabled: Any,
        t0: float,
        span: Span,
    ) -> Response:
        u0 = time.perf_counter()
        try:
            resp = await self.upstream.complete(body["model"], body)
        except RollguardError as exc:
            return self._upstream_failed(exc, interaction, t0, u0, span)
        interaction.upstream_ms = (time.perf_counter() - u0) * 1000.0
        usage = resp.get("usage")
        if isinstance(usage, dict):
            interaction.usage = {k: v for k, v in usage.items() if isinstance(v, int)}
        choices = resp.get("choices") or []
        for choice in choices:
            msg = choice.get("message") or {}
            text = msg.get("content") if isinstance(msg.get("content"), str) else text_of(msg.get("content"))
            calls = msg.get("tool_calls") or []
            post_ctx = CheckContext(
                stage=Stage.POST_CALL,
                messages=ctx.messages,
                tenant=ctx.tenant,
                completion=text or "",
                completion_tool_calls=list(calls),
                vault=ctx.vault,
            )
            post = await self.pipeline.run(post_ctx, enabled)
            self._record_decisions(interaction, post, span)
            if choice is choices[0]:
                interaction.completion = post_ctx.completion
                interaction.tool_calls = list(post_ctx.completion_tool_calls)
                interaction.finish_reason = choice.get("finish_reason")
            new_msg = dict(msg)
            if post.blocked:
                new_msg["content"] = ""
                new_msg.pop("tool_calls", None)
                choice["finish_reason"] = "content_filter"
                if choice is choices[0]:
                    interaction.finish_reason = "content_filter"
            else:
                if post.completion is not None or msg.get("content") is not None:
                    out = post_ctx.completion or ""
                    new_msg["content"] = (
                        self._restore_text(out, ctx) if msg.get("content") is not None else None
                    )
                if calls:
                    new_msg["tool_calls"] = self._restore_calls(post_ctx.completion_tool_calls, ctx)
            choice["message"] = new_msg
        if span.is_recording():
            span.set_attribute("gen_ai.response.model", str(resp.get("model", "")))
            span.set_attribute(
                "gen_ai.response.finish_reasons", [str(c.get("finish_reason")) for c in choices]
            )
        self._finish(interaction, t0, span, "ok")
        return json_response(resp, headers=self._headers(interaction))

    def _upstream_failed(
        self, exc: RollguardError, interaction: Interaction, t0: float, u0: float, span: Span
    ) -> Response:
        """Record an upstream failure before any byte went to the client; its error response."""
        interaction.upstream_ms = (time.perf_counter() - u0) * 1000.0
        interaction.status = exc.status
        interaction.error_code = exc.code
        interaction.metadata["upstream_error"] = exc.message  # masked again by the audit sweep
        self._finish(interaction, t0, span, "upstream_error")
        return error_response(exc, headers=self._headers(interaction), interaction_id=interaction.id)

    def _restore_piece(self, piece: bytes, ctx: CheckContext) -> bytes:
        """A released SSE chunk with the vault's placeholders restored (``restore_redactions``).
        Released text is cut at whitespace, so a placeholder is never split across chunks."""
        if not piece.startswith(b"data: {") or b"<" not in piece:
            return piece
        chunk = orjson.loads(piece[6:])
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                delta["content"] = ctx.vault.restore(delta["content"])
            if isinstance(delta.get("tool_calls"), list):
                delta["tool_calls"] = self._restore_calls(delta["tool_calls"], ctx)
        return encode_sse(chunk)

    def _restore_text(self, text: str, ctx: CheckContext) -> str:
        return ctx.vault.restore(text) if self._restore else text

    def _restore_calls(self, calls: list[dict[str, Any]], ctx: CheckContext) -> list[dict[str, Any]]:
        if not self._restore:
            return calls
        out = []
        for c in calls:
            fn = dict(c.get("function") or {})
            if isinstance(fn.get("arguments"), str):
                fn["arguments"] = ctx.vault.restore(fn["arguments"])
            out.append({**c, "function": fn})
        return out

    async def _stream(
        self,
        body: dict[str, Any],
        interaction: Interaction,
        ctx: CheckContext,
        enabled: Any,
        t0: float,
        span: Span,
    ) -> Response:
        client_so = body.get("stream_options") or {}
        want_usage = bool(client_so.get("include_usage"))
        body["stream_options"] = {**client_so, "include_usage": True}
        u0 = time.perf_counter()
        try:
            upstream_stream = await self.upstream.open_stream(body["model"], body)
        except RollguardError as exc:
            response = self._upstream_failed(exc, interaction, t0, u0, span)
            span.end()
            return response
        headers = self._headers(interaction)
        headers["cache-control"] = "no-cache"
        gen = self._relay(upstream_stream, interaction, ctx, enabled, want_usage, t0, u0, span)
        return RelayResponse(gen, media_type="text/event-stream", headers=headers)

    async def _relay(
        self,
        upstream_stream: Any,
        interaction: Interaction,
        ctx: CheckContext,
        enabled: Any,
        want_usage: bool,
        t0: float,
        u0: float,
        span: Span,
    ) -> AsyncIterator[bytes]:
        """Relay the upstream stream through the ``StreamGuard`` (hold-back window per choice,
        tool calls checked whole). Yields SSE bytes."""
        outcome = "ok"

        async def check_text(window_text: str) -> tuple[Verdict, str]:
            sctx = CheckContext(
                stage=Stage.STREAM,
                messages=ctx.messages,
                tenant=ctx.tenant,
                completion=window_text,
                vault=ctx.vault,
            )
            res = await self.pipeline.run(sctx, enabled)
            self._record_stream_decisions(interaction, res, span)
            return res.verdict, sctx.completion if sctx.completion is not None else window_text

        checked_calls: list[dict[str, Any]] = []  # the tool calls after the output policies

        async def check_tools(calls: list[dict[str, Any]]) -> tuple[Verdict, list[dict[str, Any]]]:
            pctx = CheckContext(
                stage=Stage.POST_CALL,
                messages=ctx.messages,
                tenant=ctx.tenant,
                completion="",
                completion_tool_calls=calls,
                vault=ctx.vault,
            )
            res = await self.pipeline.run(pctx, enabled)
            self._record_decisions(interaction, res, span)
            checked_calls[:] = pctx.completion_tool_calls
            return res.verdict, pctx.completion_tool_calls

        guard = StreamGuard(
            check_text,
            holdback=self._holdback,
            include_usage=want_usage,
            check_tools=check_tools,
            min_release=self._min_release,
        )
        restore = self._restore and len(ctx.vault) > 0
        delivered: list[bytes] = []  # pieces the client took (redacted form), for a cut-off record
        ended = False
        try:
            async for piece in guard_stream(upstream_stream, guard):
                yield self._restore_piece(piece, ctx) if restore else piece
                delivered.append(piece)  # resumed: the server has written it
            ended = True
        except RollguardError as exc:
            # HTTP 200 is already out: OpenAI's mid-stream error event, then the stream closes.
            ended = True
            outcome = "upstream_error"
            interaction.status = exc.status
            interaction.error_code = exc.code
            interaction.metadata["upstream_error"] = exc.message
            yield error_event(exc)
        except Exception:
            ended = True
            outcome = "internal_error"
            interaction.status = 500
            interaction.error_code = "internal_error"
            raise
        finally:
            # Not ended: the client left (RelayResponse cancelled us, or closed us at a yield).
            # Stop reading the upstream either way.
            await upstream_stream.aclose()
            interaction.upstream_ms = (time.perf_counter() - u0) * 1000.0
            if ended:
                if guard.blocked and outcome == "ok":
                    outcome = "output_blocked"
                interaction.completion = guard.completion(0)
                # Only the checked (redacted) calls: the raw assembled ones never reach the record.
                interaction.tool_calls = list(checked_calls)
                reasons = guard.finish_reasons()
                interaction.finish_reason = reasons[0] if reasons else None
            else:
                outcome = CLIENT_DISCONNECTED
                interaction.status = CLIENT_CLOSED_STATUS
                interaction.error_code = CLIENT_DISCONNECTED
                text, calls, finish = delivered_choice(delivered, 0)
                interaction.completion, interaction.tool_calls = text, calls
                interaction.finish_reason = finish
            if guard.usage:
                interaction.usage = {k: v for k, v in guard.usage.items() if isinstance(v, int)}
            self._finish(interaction, t0, span, outcome)
            span.end()

    def _record_stream_decisions(self, interaction: Interaction, result: StageResult, span: Span) -> None:
        # The window is checked many times per stream: keep each policy's most severe decision only.
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
            for d in result.decisions:
                if d.error:
                    self.metrics.policy_errors.add(1, {"policy": d.policy, "error": d.error})
