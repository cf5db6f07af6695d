"""One chat completion, end to end: flags -> pre_call policies -> upstream -> post_call / stream
policies -> result -> (after the response) audit record. The service returns a ``ChatResult``;
the route renders it (``routes/openai.py``), so HTTP-framework details stay in ``routes/``.

Contracts (docs/architecture.md): an input block is HTTP 400 ``code: content_filter`` with the
policy id and interaction id and the upstream is never called; a policy failure with
``on_error: block`` is HTTP 503 ``guardrail_unavailable`` on the input and an output block on the
output; an output block ends with ``finish_reason: "content_filter"``; the matched text is never
sent or echoed.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from gateway.audit import Coverage
from gateway.exchange import ChatResult, Exchange, RequestMeta
from gateway.flags.source import FlagSource
from gateway.flags.variants import CAPABILITY_STREAMING, CAPABILITY_TOOLS, VariantResolver
from gateway.large import LargeInputs
from gateway.relay import CLIENT_CLOSED_STATUS, CLIENT_DISCONNECTED, StreamRelay
from gateway.reply_fields import extra_texts, put_calls, reply_calls
from gateway.restore import restore_calls
from gateway.telemetry import (
    GatewayMetrics,
    model_label,
    record_completion,
    record_outcome,
    record_rejection,
    record_request,
    record_stage,
)
from gateway.tenants import TokenCaps
from gateway.upstream import Upstream
from policies.base import CheckContext, Policy
from policies.pipeline import ConfiguredPolicy, Enabled, Pipeline, StageResult
from rollguard.config_version import config_version as compute_config_version
from rollguard.errors import GuardrailUnavailable, InvalidRequest, RollguardError
from rollguard.settings import RollguardSettings
from rollguard.types import Decision, FlagSnapshot, Interaction, Mode, Stage, Verdict, text_of

__all__ = [
    "CAPABILITY_STREAMING",
    "CAPABILITY_TOOLS",
    "CLIENT_CLOSED_STATUS",
    "CLIENT_DISCONNECTED",
    "AuditPort",
    "ChatService",
    "FlagSource",
    "RequestMeta",
]

_tracer = trace.get_tracer("rollguard.gateway")


class _Redactor(Protocol):
    def eligible_roles(self, policy: Policy) -> frozenset[str] | None: ...


class AuditPort(Protocol):
    """Where finished interactions go: ``gateway.audit.AuditTrail`` in the gateway,
    ``rollguard.testing.DecisionCapture`` in unit tests."""

    @property
    def redactor(self) -> _Redactor: ...

    def record(self, interaction: Interaction, coverage: Coverage | None = None) -> None: ...


def _content_filter_error(decision: Decision) -> RollguardError:
    if decision.error is not None:
        return GuardrailUnavailable(
            f"guardrail {decision.policy!r} is unavailable ({decision.error}); the request was not sent"
        )
    return InvalidRequest(
        f"request blocked by guardrail policy {decision.policy!r}: {decision.reason}", code="content_filter"
    )


def _subject(raw: str | None) -> str | None:
    """A stable pseudonym for a user/session id (the audit record never holds the raw id)."""
    if raw is None:
        return None
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:24]


def _headers(interaction: Interaction) -> dict[str, str]:
    verdict = interaction.verdict  # a property that walks every decision: computed once
    h = {"x-rollguard-interaction-id": interaction.id, "x-rollguard-verdict": verdict.value}
    if verdict is not Verdict.ALLOW:
        for d in interaction.decisions:
            if d.enforced and d.verdict is verdict:
                h["x-rollguard-policy"] = d.policy
                break
    variant = interaction.metadata.get("variant")
    if variant:
        h["x-rollguard-variant"] = variant
    return h


def _new_interaction(body: dict[str, Any], meta: RequestMeta, config_version: str) -> Interaction:
    return Interaction(
        id="rg-" + uuid.uuid4().hex,
        created_ms=int(time.time() * 1000),
        tenant=meta.tenant,
        model=body["model"],
        subject=_subject(meta.user),
        session=_subject(meta.session),
        stream=bool(body.get("stream")),
        messages=body["messages"],
        request_id=meta.request_id,
        config_version=config_version,
    )


class ChatService:
    """Holds the per-process parts (pipeline, upstream, flags, audit) and serves requests."""

    def __init__(
        self,
        settings: RollguardSettings,
        pipeline: Pipeline,
        upstream: Upstream,
        flags: FlagSource,
        audit: AuditPort,
        metrics: GatewayMetrics,
        large: LargeInputs | None = None,
        config_version: str | None = None,
    ) -> None:
        self.settings = settings
        self.config_version = config_version or compute_config_version(settings)
        """Stamped on every audit record (``rollguard.config_version``)."""
        self._policy_rollout_flags = frozenset(
            plan.flag for plan in settings.rollouts.plans.values() if plan.subject.kind == "policy"
        )
        self.large = large
        """Large requests' pre_call checks and large completions' post_call checks run on its
        worker thread (``gateway.large``)."""
        self.pipeline = pipeline
        self.upstream = upstream
        self.flags = flags
        self.audit = audit
        self.metrics = metrics
        self.variants = VariantResolver(
            settings.flags,
            (p.flag for p in pipeline.policies if p.flag),
            upstream.has_model,
            served=settings.model_names(),
        )
        self._privacy: dict[str, tuple[str, frozenset[str]]] = {}
        for p in pipeline.policies:
            if p.mode is Mode.ENFORCE:
                roles = audit.redactor.eligible_roles(p.policy)
                if roles is not None:
                    self._privacy[p.id] = (p.type_name, roles)
        self._token_caps = TokenCaps(pipeline.for_stage(Stage.PRE_CALL))
        self._restore = settings.gateway.restore_redactions
        self._aliases = frozenset(settings.model_names())

    # -- request preparation -------------------------------------------------------------

    def evaluate_flags(self, meta: RequestMeta) -> FlagSnapshot:
        """The request's flags, evaluated once with the context the route built."""
        v = self.variants
        return self.flags.evaluate(v.flag_names, meta.flags, variant_flags=v.variant_flags)

    def resolve_model(self, alias: str, snapshot: FlagSnapshot, interaction: Interaction) -> str:
        """The upstream alias to call for public ``alias`` (``VariantResolver.resolve_model``);
        a rollout's variant and flag go into ``interaction.metadata``. Raises ``NotFound``."""
        choice = self.variants.resolve_model(alias, snapshot)
        if choice.rollout_flag is not None:
            interaction.metadata["variant"] = choice.variant or "control"
            interaction.metadata["rollout_flag"] = choice.rollout_flag
        return choice.target

    def _enabled(self, snapshot: FlagSnapshot, interaction: Interaction) -> Enabled:
        """Which policies run: a policy's flag decides; a policy under a rollout plan (its flag
        is the plan's) runs in shadow mode where the flag is off (the control arm) and enforced
        where it is on (the canary), and the arm goes into ``interaction.metadata``."""
        shadow_flags = self._policy_rollout_flags
        for flag in shadow_flags:
            if flag in snapshot.enabled:
                interaction.metadata["variant"] = "canary" if snapshot.enabled[flag] else "control"
                interaction.metadata["rollout_flag"] = flag

        def enabled(cp: ConfiguredPolicy) -> bool | Mode:
            on = snapshot.is_enabled(cp.flag)
            if not on and cp.flag in shadow_flags:
                return Mode.SHADOW
            return on

        return enabled

    def _record_decisions(self, ex: Exchange, result: StageResult) -> None:
        ex.interaction.decisions.extend(result.decisions)
        ex.interaction.policy_ms += result.elapsed_ms
        record_stage(self.metrics, ex.span, result, ex.interaction)

    def _finish(self, ex: Exchange, outcome: str) -> None:
        """Latency, metrics and span attributes of a finished interaction. ``outcome`` (``ok``,
        ``rejected``, ``blocked``, ``guardrail_error``, ``upstream_error``, ``output_blocked``,
        ``client_disconnected``, ``internal_error``) is the ``outcome`` label of the requests
        metric and ``metadata.outcome`` in the record (written by ``_record``)."""
        interaction = ex.interaction
        interaction.latency_ms = (time.perf_counter() - ex.t0) * 1000.0
        interaction.metadata["outcome"] = outcome
        record_outcome(self.metrics, ex.span, interaction, outcome, self._label(interaction.model))

    def _label(self, model: str) -> str:
        """The model as spans and metric labels may carry it: a configured alias (a ``model_list``
        alias or wildcard pattern, or a rolled-out public one, ``flags.rollouts``) or ``unknown``;
        a wildcard-routed request is labelled by its pattern."""
        return model_label(self.upstream.route_alias(model) or model, self._aliases.__contains__)

    def _record(self, interaction: Interaction) -> None:
        """The audit record (after the response)."""
        self.audit.record(interaction, self._coverage(interaction))

    def _finish_stream(self, ex: Exchange, outcome: str) -> None:
        self._finish(ex, outcome)
        self._record(ex.interaction)

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

    def _error(self, ex: Exchange, err: RollguardError, outcome: str, **fields: Any) -> ChatResult:
        """An error reply before any byte went out (the span of a stream ends here)."""
        ex.interaction.status = err.status
        ex.interaction.error_code = err.code
        self._finish(ex, outcome)
        if ex.interaction.stream:
            ex.span.end()
        elif outcome == "rejected":
            record_rejection(ex.span, err)
        headers = _headers(ex.interaction) if fields else None
        return ChatResult(ex.interaction, headers, error=err, error_fields=fields, after=self._after(ex))

    def _after(self, ex: Exchange) -> Callable[[], Awaitable[None]]:
        """The audit write of ``ex``, as a coroutine function: Starlette awaits it on the event
        loop after the response (a plain function would run in a worker thread, away from the
        loop the escalation task and the store's buffer belong to)."""

        async def record() -> None:
            self._record(ex.interaction)

        return record

    # -- the request ---------------------------------------------------------------------------

    async def chat_completion(self, body: dict[str, Any], meta: RequestMeta) -> ChatResult:
        """Serve one validated chat-completion ``body``. Client mistakes (unknown model, a
        capability the flags switch off) and blocks are error results, not exceptions; the
        route renders the result and runs ``after`` once the response is sent."""
        t0 = time.perf_counter()
        interaction = _new_interaction(body, meta, self.config_version)
        stream = interaction.stream
        label = self._label(interaction.model)
        with _tracer.start_as_current_span(
            f"chat {label}", context=meta.trace_context, kind=SpanKind.SERVER, end_on_exit=not stream
        ) as span:
            ex = Exchange(body, interaction, span, t0)
            record_request(span, interaction, label)
            try:
                snapshot = self.evaluate_flags(meta)
                interaction.flags = snapshot
                target = self.resolve_model(interaction.model, snapshot, interaction)
                interaction.upstream_model = target
                self.variants.gate_capabilities(body, snapshot)
            except RollguardError as exc:
                return self._error(ex, exc, "rejected")
            ex.enabled = self._enabled(snapshot, interaction)
            if stream:
                blocked = await self._pre_call(ex, meta, target)
                return blocked if blocked is not None else await self._stream(ex)
            try:
                blocked = await self._pre_call(ex, meta, target)
                return blocked if blocked is not None else await self._complete(ex)
            except asyncio.CancelledError:
                self._client_left(ex)
                raise

    def _client_left(self, ex: Exchange) -> None:
        """A non-streamed request cancelled because its client disconnected
        (``gateway.disconnect``): the upstream call was cancelled with it (no retry); recorded
        now with status 499 and outcome ``client_disconnected``, as a stream the client left."""
        if ex.u0:
            ex.upstream_done()
        ex.interaction.status = CLIENT_CLOSED_STATUS
        ex.interaction.error_code = CLIENT_DISCONNECTED
        self._finish(ex, CLIENT_DISCONNECTED)
        self._record(ex.interaction)

    async def _pre_call(self, ex: Exchange, meta: RequestMeta, target: str) -> ChatResult | None:
        """Run the pre_call stage; an error result on a block, else ``ex.body`` is what the
        upstream gets (checked messages, upstream alias ``target``)."""
        body = ex.body
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        ctx = CheckContext(
            stage=Stage.PRE_CALL,
            messages=body["messages"],
            tenant=meta.tenant,
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        )
        ex.check = ctx
        if self.large is not None and self.large.is_large(ctx.messages):
            pre = await self.large.run_stage(self.pipeline, ctx, ex.enabled)
        else:
            pre = await self.pipeline.run(ctx, ex.enabled)
        self._record_decisions(ex, pre)
        ex.interaction.messages = ctx.messages
        if pre.blocked:
            assert pre.blocked_by is not None
            err = _content_filter_error(pre.blocked_by)
            outcome = "blocked" if err.status == 400 else "guardrail_error"
            return self._error(
                ex, err, outcome, policy=pre.blocked_by.policy, interaction_id=ex.interaction.id
            )
        ex.body = {**body, "messages": ctx.messages, "model": target}
        if ctx.max_tokens is None:
            cap = self._token_caps.cap(pre.decisions, meta.tenant)
            if cap is not None:  # a request naming no budget gets the tenant's cap upstream
                ex.body["max_tokens"] = cap
        return None

    async def _complete(self, ex: Exchange) -> ChatResult:
        ex.upstream_started()
        try:
            resp = await self.upstream.complete(ex.body["model"], ex.body)
        except RollguardError as exc:
            return self._upstream_failed(ex, exc)
        ex.upstream_done()
        usage = resp.get("usage")
        if isinstance(usage, dict):
            ex.interaction.usage = {k: v for k, v in usage.items() if isinstance(v, int)}
        choices = resp.get("choices") or []
        for choice in choices:
            await self._post_call(ex, choice, first=choice is choices[0])
        record_completion(ex.span, resp)
        self._finish(ex, "ok")
        return ChatResult(ex.interaction, _headers(ex.interaction), completion=resp, after=self._after(ex))

    async def _post_call(self, ex: Exchange, choice: dict[str, Any], *, first: bool) -> None:
        """Run the post_call stage on one choice of a completion; rewrite it in place (blocked:
        empty content, no calls, ``finish_reason: content_filter``; redacted; placeholders
        restored). Tool calls and a legacy ``function_call`` are judged with the content; every
        other text field (``refusal``, ...) as a completion of its own (``gateway.reply_fields``)."""
        ctx, interaction = ex.ctx, ex.interaction
        msg = choice.get("message") or {}
        text = msg.get("content") if isinstance(msg.get("content"), str) else text_of(msg.get("content"))
        calls, legacy = reply_calls(msg)
        post_ctx, post = await self._judge_reply(ex, text or "", calls)
        if first:
            interaction.completion = post_ctx.completion
            interaction.tool_calls = list(post_ctx.completion_tool_calls)
            interaction.finish_reason = choice.get("finish_reason")
        new_msg = dict(msg)
        blocked = post.blocked
        for key, value in extra_texts(msg) if not blocked else []:
            field_ctx, field_res = await self._judge_reply(ex, value, [])
            blocked = blocked or field_res.blocked
            out = field_ctx.completion or ""
            new_msg[key] = ctx.vault.restore(out) if self._restore else out
        if blocked:
            new_msg["content"] = ""
            for key in ("tool_calls", "function_call", *(k for k, _ in extra_texts(msg))):
                new_msg.pop(key, None)
            choice["finish_reason"] = "content_filter"
            if first:
                interaction.finish_reason = "content_filter"
        else:
            if post.completion is not None or msg.get("content") is not None:
                out = post_ctx.completion or ""
                restored = ctx.vault.restore(out) if self._restore else out
                new_msg["content"] = restored if msg.get("content") is not None else None
            if calls:
                checked = post_ctx.completion_tool_calls
                put_calls(new_msg, restore_calls(checked, ctx.vault) if self._restore else checked, legacy)
        choice["message"] = new_msg

    async def _judge_reply(
        self, ex: Exchange, text: str, calls: list[dict[str, Any]]
    ) -> tuple[CheckContext, StageResult]:
        """The post_call stage on one reply text and its calls; decisions recorded."""
        ctx = ex.ctx
        post_ctx = CheckContext(
            stage=Stage.POST_CALL,
            messages=ctx.messages,
            tenant=ctx.tenant,
            completion=text,
            completion_tool_calls=list(calls),
            vault=ctx.vault,
        )
        if self.large is not None and len(post_ctx.completion or "") > self.large.threshold_chars:
            post = await self.large.run_stage(self.pipeline, post_ctx, ex.enabled)
        else:
            post = await self.pipeline.run(post_ctx, ex.enabled)
        self._record_decisions(ex, post)
        return post_ctx, post

    def _upstream_failed(self, ex: Exchange, exc: RollguardError) -> ChatResult:
        """Record an upstream failure before any byte went to the client; its error result."""
        ex.upstream_done()
        ex.interaction.metadata["upstream_error"] = exc.message  # masked again by the audit sweep
        return self._error(ex, exc, "upstream_error", interaction_id=ex.interaction.id)

    async def _stream(self, ex: Exchange) -> ChatResult:
        client_so = ex.body.get("stream_options") or {}
        want_usage = bool(client_so.get("include_usage"))
        ex.body["stream_options"] = {**client_so, "include_usage": True}
        ex.upstream_started()
        try:
            upstream_stream = await self.upstream.open_stream(ex.body["model"], ex.body)
        except RollguardError as exc:
            return self._upstream_failed(ex, exc)
        headers = _headers(ex.interaction)
        headers["cache-control"] = "no-cache"
        relay = StreamRelay(
            ex,
            upstream_stream,
            pipeline=self.pipeline,
            metrics=self.metrics,
            gateway=self.settings.gateway,
            want_usage=want_usage,
            finish=self._finish_stream,
            check_spans=self.settings.telemetry.stream_check_spans,
        )
        return ChatResult(ex.interaction, headers, stream=relay.run())
