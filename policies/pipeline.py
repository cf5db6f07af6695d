"""The policy pipeline: configured policies run per stage in list order. A transform (redaction)
sees the output of the transforms before it; a run of consecutive read-only checks is one batch
(threaded checks in it run concurrently). An enforced block ends the stage: the policies after it
do not run (so a ``limits`` check listed first keeps a huge input away from the others). The most
severe *enforced* verdict wins.

Each configured policy has an id, a mode (enforce / shadow), a timeout and an ``on_error``
(block / flag). A policy that raises or times out yields a decision with ``error`` set and the
``on_error`` verdict: it never silently allows. Shadow-mode decisions are recorded but change
nothing (their redactions are not applied either).

Decode, then judge: the pipeline looks for encoded or obfuscated spans in the content as it
arrived (``policies.decoded_context``: base64/32/16, ascii85, uuencode, base2048, emoji,
ROT13/Atbash when asked for, Morse, NATO, Braille, Unicode tags, Zalgo, leetspeak). Every
policy of the stage then also judges each decoded view. A ``flag`` or ``block`` on a decoded
view becomes a ``block``: what a policy flags in plain text is blocked when it arrives hidden,
because hiding it is the attack. A decoded payload that a read-only policy scores at 0.5 or more,
under its own threshold, is blocked too (``_near``); a request's decoded payload is also judged
as a stream window of the reply (``policies.decoded_context``); a flag on the framing alone, when
the payload is clearly benign, is not escalated (``_framing_only``). The decision's reason names
the encoding and the location, never the decoded text. A redaction computed on a view is never
applied. Text that the pre-scan finds plain costs one regular-expression search.

Telemetry: one span per policy through the OpenTelemetry *API* (a no-op unless the gateway installs
an SDK and the request is traced), with ``rollguard.policy.*`` attributes and never any content.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from operator import attrgetter
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from policies.base import CheckContext, Execution, Policy, PolicyResult
from policies.cpu_clock import policy_cpu_seconds
from policies.decoded_context import ContextView, context_views
from rollguard.types import Decision, Evidence, Message, Mode, OnError, Stage, Verdict

_tracer = trace.get_tracer("rollguard.policies")


@dataclass(frozen=True, slots=True)
class ConfiguredPolicy:
    """A policy instance with its configuration: what the pipeline runs."""

    id: str
    policy: Policy
    stages: frozenset[Stage]
    mode: Mode = Mode.ENFORCE
    on_error: OnError = OnError.BLOCK
    timeout_ms: float = 250.0
    """ms; the same default as ``rollguard.settings.PolicySpec.timeout_ms``."""
    flag: str | None = None

    @property
    def type_name(self) -> str:
        return self.policy.type_name

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type_name,
            "stages": sorted(s.value for s in self.stages),
            "mode": self.mode.value,
            "on_error": self.on_error.value,
            "timeout_ms": self.timeout_ms,
            "flag": self.flag,
            "params": dict(self.policy.describe()),
        }


@dataclass(slots=True)
class StageResult:
    """The outcome of one stage: every decision (in configured order), the winning enforced
    verdict, the policy that blocked (if any), and the content after enforced redactions."""

    stage: Stage
    decisions: list[Decision] = field(default_factory=list)
    verdict: Verdict = Verdict.ALLOW
    blocked_by: Decision | None = None
    messages: list[Message] | None = None
    completion: str | None = None
    completion_tool_calls: list[dict[str, Any]] | None = None
    elapsed_ms: float = 0.0

    @property
    def blocked(self) -> bool:
        return self.verdict is Verdict.BLOCK

    @property
    def failed(self) -> bool:
        """True when the block comes from a policy failure (-> HTTP 503 guardrail_unavailable)."""
        return self.blocked_by is not None and self.blocked_by.error is not None


def _segments(policies: list[ConfiguredPolicy]) -> list[list[ConfiguredPolicy]]:
    """Split ``policies`` (list order) into runs of transforms and runs of read-only checks."""
    out: list[list[ConfiguredPolicy]] = []
    for cp in policies:
        if out and out[-1][0].policy.transforms == cp.policy.transforms:
            out[-1].append(cp)
        else:
            out.append([cp])
    return out


def _active(policies: tuple[ConfiguredPolicy, ...], enabled: Enabled) -> list[ConfiguredPolicy]:
    """The policies ``enabled`` runs, those it puts in shadow mode for this request as copies."""
    out: list[ConfiguredPolicy] = []
    for p in policies:
        on = enabled(p)
        if on is Mode.SHADOW and p.mode is not Mode.SHADOW:
            out.append(replace(p, mode=Mode.SHADOW))
        elif on:
            out.append(p)
    return out


class PolicyFailure(Exception):
    """Internal: a policy raised or exceeded its timeout."""


Enabled = Callable[[ConfiguredPolicy], "bool | Mode"]
"""Which policies run for one request: ``False`` skips a policy, ``True`` runs it in its configured
mode, ``Mode.SHADOW`` runs it in shadow mode for this request only (the control arm of a policy
rollout: shadow -> enforce for x % -> 100 %, one policy id, one configuration)."""


def _always(_: ConfiguredPolicy) -> bool:
    return True


class Pipeline:
    """Runs ``policies`` (in configured order) for a stage. Immutable after construction; cheap to
    share across requests."""

    def __init__(self, policies: Sequence[ConfiguredPolicy], *, decode_views: bool = True) -> None:
        self.policies: tuple[ConfiguredPolicy, ...] = tuple(policies)
        self.decode_views = decode_views
        """Judge decoded views too (module docstring); False runs each policy on the original only."""
        self._by_stage: dict[Stage, tuple[ConfiguredPolicy, ...]] = {
            s: tuple(p for p in self.policies if s in p.stages) for s in Stage
        }

    def for_stage(self, stage: Stage) -> tuple[ConfiguredPolicy, ...]:
        return self._by_stage[stage]

    def describe(self) -> list[dict[str, Any]]:
        return [p.describe() for p in self.policies]

    async def run(self, ctx: CheckContext, enabled: Enabled = _always) -> StageResult:
        """Run every enabled policy of ``ctx.stage``. ``ctx`` is updated in place with enforced
        redactions (transforms see the output of the previous transform)."""
        t0 = time.perf_counter()
        result = StageResult(stage=ctx.stage)
        active = _active(self._by_stage[ctx.stage], enabled)
        if not active:
            return result
        # decoded views of the content as it arrived (before any redaction or stripping, so text
        # hidden in Unicode tag characters is judged even when a transform strips the tags);
        # computed once, when a segment did not already block (``limits`` first keeps 1 MB away)
        original = _snapshot(ctx) if self.decode_views else None
        views: list[ContextView] | None = None
        # A span per policy only when the request is traced (a no-op span still costs a context
        # attach/detach per policy); the current span is the same for the whole stage, so it is
        # looked up once here rather than once per policy (~2 us each).
        traced = trace.get_current_span().is_recording()
        for segment in _segments(active):
            if segment[0].policy.transforms:
                decisions = [await self._transform(cp, ctx, result, traced) for cp in segment]
            else:
                decisions = await self._checks(segment, ctx, traced)
            if original is not None and not any(
                d.verdict is Verdict.BLOCK and d.policy_type == "limits" for d in decisions
            ):
                views = _views_of(original) if views is None else views
                if views:
                    decisions = await self._judge_views(segment, views, decisions, traced)
            for d in decisions:
                result.decisions.append(d)
                if d.enforced and d.verdict.severity > result.verdict.severity:
                    result.verdict = d.verdict
                    if d.verdict is Verdict.BLOCK:
                        result.blocked_by = d
            if result.blocked:
                break  # an enforced block ends the stage: later policies need not pay for this input
        result.elapsed_ms = (time.perf_counter() - t0) * 1000.0
        return result

    async def _transform(
        self, cp: ConfiguredPolicy, ctx: CheckContext, result: StageResult, traced: bool
    ) -> Decision:
        decision, out = await self._run_one(cp, ctx, traced)
        rewrites = out is not None and out.verdict in (Verdict.REDACT, Verdict.FLAG)
        if out is not None and decision.enforced and rewrites:
            if out.messages is not None:
                ctx.messages = out.messages
                result.messages = out.messages
            if out.completion is not None:
                ctx.completion = out.completion
                result.completion = out.completion
            if out.completion_tool_calls is not None:
                ctx.completion_tool_calls = out.completion_tool_calls
                result.completion_tool_calls = out.completion_tool_calls
        return decision

    async def _checks(
        self, segment: list[ConfiguredPolicy], ctx: CheckContext, traced: bool
    ) -> list[Decision]:
        """Read-only checks: threaded ones concurrently (started first), inline ones in order on
        the loop meanwhile. Decisions come back in list order."""
        slots: dict[str, Decision] = {}
        threaded = [cp for cp in segment if cp.policy.execution is not Execution.INLINE]
        pending = [asyncio.ensure_future(self._run_one(cp, ctx, traced)) for cp in threaded]
        for cp in segment:
            if cp.policy.execution is Execution.INLINE:
                slots[cp.id] = (await self._run_one(cp, ctx, traced))[0]
        for cp, (decision, _) in zip(threaded, await asyncio.gather(*pending), strict=True):
            slots[cp.id] = decision
        return [slots[cp.id] for cp in segment]

    async def _judge_views(
        self,
        segment: list[ConfiguredPolicy],
        views: list[ContextView],
        decisions: list[Decision],
        traced: bool,
    ) -> list[Decision]:
        """Run ``segment`` on each decoded view; a flag or block there (or a policy failure) replaces
        the original decision unless that already blocks. A block of the original that a whole-span
        decoding clears (``_CLEARING``: the framing kept, the span decoded), while no reading is
        flagged and every payload scores below ``_CLEAR_SCORE``, was caused by the encoded letters
        alone: it becomes a flag for review. A transform's output on a view is discarded."""
        out = list(decisions)
        clear = [False] * len(segment)  # a whole-span decoding of the blocked text passed
        doubt = [False] * len(segment)  # some reading of it was not clearly benign
        judged = [(view, await self._judge_view(segment, view, traced)) for view in views]
        framing = _framing_only(judged)
        for k, (view, found) in enumerate(judged):
            for i, d in enumerate(found):
                if d is None:
                    continue
                if d.stage is not out[i].stage:
                    d = replace(d, stage=out[i].stage)  # a reply view runs as a stream window
                near = view.part == "payload" and d.score >= _CLEAR_SCORE
                if d.error is not None or d.verdict.severity >= Verdict.FLAG.severity or near:
                    doubt[i] = True
                elif view.part == "text" and view.encoding in _CLEARING:
                    clear[i] = True
                if (
                    near
                    and view.encoding not in _PARTIAL
                    and not segment[i].policy.transforms
                    and d.verdict is Verdict.ALLOW
                ):
                    d = _near(d)  # a decoded payload near a threshold: hiding it tips the balance
                if (k, i) in framing or out[i].verdict is Verdict.BLOCK:
                    continue
                if d.verdict is Verdict.REDACT and out[i].verdict is not Verdict.FLAG:
                    out[i] = _hidden(out[i], d, view) or out[i]
                    continue
                if d.verdict.severity >= Verdict.FLAG.severity:
                    out[i] = _encoded(d, view) if d.error is None else d
        for i, original in enumerate(decisions):
            blocked = original.verdict is Verdict.BLOCK and original.error is None
            if blocked and clear[i] and not doubt[i] and out[i] is original:
                out[i] = _cleared(original, views)
        return out

    async def _judge_view(
        self, segment: list[ConfiguredPolicy], view: ContextView, traced: bool
    ) -> list[Decision | None]:
        """Each policy of ``segment`` on ``view``: a ``reply`` view (a decoded request payload as a
        stream window of the reply) only by the read-only policies that also judge streams;
        ``None`` for the others."""
        if view.part == "reply":
            judges = [cp for cp in segment if not cp.policy.transforms and Stage.STREAM in cp.stages]
            if not judges:
                return [None] * len(segment)
            found = await self._checks(judges, view.ctx, traced)
            by_id = dict(zip((cp.id for cp in judges), found, strict=True))
            return [by_id.get(cp.id) for cp in segment]
        if segment[0].policy.transforms:
            return [(await self._run_one(cp, view.ctx, traced))[0] for cp in segment]
        return list(await self._checks(segment, view.ctx, traced))

    async def _run_one(
        self, cp: ConfiguredPolicy, ctx: CheckContext, traced: bool
    ) -> tuple[Decision, PolicyResult | None]:
        # ``traced``: the stage's request is traced (``run``): one span per policy.
        if traced:
            with _tracer.start_as_current_span(f"policy {cp.id}") as span:
                decision, out = await self._evaluate(cp, ctx, span)
                _annotate(span, decision)
                return decision, out
        return await self._evaluate(cp, ctx, None)

    async def _evaluate(
        self, cp: ConfiguredPolicy, ctx: CheckContext, span: trace.Span | None
    ) -> tuple[Decision, PolicyResult | None]:
        enforce = cp.mode is Mode.ENFORCE
        t0 = time.perf_counter()
        error: str | None = None
        out: PolicyResult | None = None
        try:
            if cp.policy.execution is Execution.INLINE:
                # Inline checks are CPU-bound and never wait: their timeout is enforced on the CPU
                # time they used (thread time, garbage-collection pauses excluded), so neither a
                # loaded machine nor a full GC turns into a guardrail failure. A late result is
                # discarded. A thread's CPU time never exceeds the wall time it took, so the CPU
                # clock (a system call, ~1-3 us here) is read again only when the wall time
                # (``perf_counter``) is over the budget.
                c0 = policy_cpu_seconds()
                out = cp.policy.check(ctx)
                if (time.perf_counter() - t0) * 1000.0 > cp.timeout_ms and (
                    policy_cpu_seconds() - c0
                ) * 1000.0 > cp.timeout_ms:
                    out = None
                    error = "timeout"
            else:
                out = await asyncio.wait_for(
                    asyncio.to_thread(cp.policy.check, ctx), timeout=cp.timeout_ms / 1000.0
                )
        except TimeoutError:
            error = "timeout"
        except Exception as exc:  # a broken policy must fail closed, whatever it raised
            error = type(exc).__name__
            if span is not None:
                span.record_exception(exc)
        elapsed = (time.perf_counter() - t0) * 1000.0
        if error is not None or out is None:
            verdict = Verdict.BLOCK if cp.on_error is OnError.BLOCK else Verdict.FLAG
            decision = Decision(
                policy=cp.id,
                policy_type=cp.type_name,
                stage=ctx.stage,
                verdict=verdict,
                score=1.0,
                reason=f"policy failed ({error}); on_error={cp.on_error.value}",
                elapsed_ms=elapsed,
                enforced=enforce,
                error=error or "no result",
            )
            return decision, None
        decision = Decision(
            policy=cp.id,
            policy_type=cp.type_name,
            stage=ctx.stage,
            verdict=out.verdict,
            score=min(1.0, max(0.0, float(out.score))),
            reason=out.reason,
            evidence=out.evidence,
            elapsed_ms=elapsed,
            enforced=enforce,
        )
        return decision, out


_CONTEXT_FIELDS = attrgetter(*(f.name for f in fields(CheckContext)))


def _snapshot(ctx: CheckContext) -> CheckContext:
    """A shallow copy of ``ctx`` (what ``dataclasses.replace(ctx)`` returns, every field in
    declaration order, in ~1 us instead of ~5)."""
    return CheckContext(*_CONTEXT_FIELDS(ctx))


def _views_of(ctx: CheckContext) -> list[ContextView]:
    """``context_views(ctx)``; ``[]`` if decoding itself fails (the original is judged anyway: a
    decoder bug must not turn into a failed request)."""
    try:
        return context_views(ctx)
    except Exception:
        return []


_CLEARING = frozenset(
    {"base64", "base32", "hex", "ascii85", "uuencode", "base2048", "emoji", "morse", "nato", "braille"}
    | {"emoji_letters", "variation_selectors"}
)
"""Encodings whose decoding replaces a whole span (no letters of the encoded form survive), so a
block that the decoded reading clears came from the encoded letters alone."""


_CLEAR_SCORE = 0.5
"""A decoded payload (the spans alone, bare, quoted or as a reply) clears a block only when it
scores below this (0 benign .. 1 violation), well under any sensible threshold: a payload near the
threshold is doubt, and doubt keeps the block. A payload at or above it is blocked by a read-only
policy even when under that policy's own threshold (``_near``): hiding a text is evidence on its
own (the prior of an attack is far higher for an encoded instruction than for plain text).
Readings with the framing only need to pass (the framing of a benign "decode this" request can
score near the threshold on its own)."""


def _framing_only(judged: list[tuple[ContextView, list[Decision | None]]]) -> set[tuple[int, int]]:
    """``(view index, policy index)`` of flags on a ``text`` reading (the framing kept, the spans
    decoded) whose decoded spans are clearly benign for that policy: every ``payload`` / ``reply``
    reading of the same encoding and location passes with a score under ``_CLEAR_SCORE``. Such a
    flag comes from the sender's own words around the payload ("decode this and do it"), which the
    original was judged on already, not from what the encoding hid: it is not made a block. Not
    for leetspeak (``_PARTIAL``): its text reading swaps look-alikes all through the text, so it
    is no framing around a payload."""
    benign: dict[tuple[str, str, int], bool] = {}
    for view, found in judged:
        if view.part == "text":
            continue
        for i, d in enumerate(found):
            ok = d is None or (
                d.error is None and d.verdict.severity < Verdict.FLAG.severity and d.score < _CLEAR_SCORE
            )
            key = (view.encoding, view.location, i)
            benign[key] = benign.get(key, True) and ok
    out: set[tuple[int, int]] = set()
    for k, (view, found) in enumerate(judged):
        if view.part == "text" and view.encoding not in _PARTIAL:
            for i, d in enumerate(found):
                if d is not None and benign.get((view.encoding, view.location, i), False):
                    out.add((k, i))
    return out


_PARTIAL = frozenset({"leetspeak"})
"""Decoders whose reading is the visible text with look-alike characters swapped back, not text
that was unreadable before: their payloads are judged at the policies' own thresholds only (an
e-mail header read as leetspeak scored 0.60 for injection), and their text reading is no framing
(``_framing_only``)."""


def _near(d: Decision) -> Decision:
    """``d`` (an allow of a decoded payload scoring at least ``_CLEAR_SCORE``) as a flag, which the
    caller turns into a block: a request that hides a payload this close to a policy's threshold
    is not given the benefit of the doubt that plain text gets."""
    return replace(
        d,
        verdict=Verdict.FLAG,
        reason=f"decoded payload score {d.score:.2f} >= {_CLEAR_SCORE} ({d.reason})",
    )


def _cleared(d: Decision, views: list[ContextView]) -> Decision:
    """``d`` (a block of the encoded original) as a flag: every decoded reading passes."""
    view = next(v for v in views if v.part == "text" and v.encoding in _CLEARING)
    return Decision(
        policy=d.policy,
        policy_type=d.policy_type,
        stage=d.stage,
        verdict=Verdict.FLAG,
        score=d.score,
        reason=f"encoded form only ({view.encoding} in {view.location}); the decoded text passes: {d.reason}",
        evidence=d.evidence,
        elapsed_ms=d.elapsed_ms,
        enforced=d.enforced,
    )


def _hidden(original: Decision, d: Decision, view: ContextView) -> Decision | None:
    """A transform (``pii``, ``secrets``) that redacts more at ``view.location`` in a decoded
    reading than in the text as it arrived found a value the encoding hid: ``original`` as a flag
    with the encoding and location added (the redaction of a view is never applied, so the
    encoded value itself is not masked here: the audit record masks the encoded span,
    ``policies.privacy``). ``None`` when the view finds nothing new (a value in plain text)."""
    seen = sum(1 for e in original.evidence if e.location == view.location)
    if sum(1 for e in d.evidence if e.location == view.location) <= seen:
        return None
    where = Evidence(f"encoded:{view.encoding}", view.location)
    return replace(
        original,
        verdict=Verdict.FLAG,
        score=max(original.score, d.score),
        reason=f"found encoded ({view.encoding}) in {view.location}: {d.reason}",
        evidence=(*original.evidence, where),
    )


def _encoded(d: Decision, view: ContextView) -> Decision:
    """``d`` (a flag or block on a decoded view) as a block that names the encoding and where it
    was found, never the decoded text."""
    where = Evidence(f"encoded:{view.encoding}", view.location)
    return Decision(
        policy=d.policy,
        policy_type=d.policy_type,
        stage=d.stage,
        verdict=Verdict.BLOCK,
        score=d.score,
        reason=f"found encoded ({view.encoding}) in {view.location}: {d.reason}",
        evidence=(*d.evidence, where),
        elapsed_ms=d.elapsed_ms,
        enforced=d.enforced,
    )


def _annotate(span: trace.Span, decision: Decision) -> None:
    span.set_attribute("rollguard.policy.id", decision.policy)
    span.set_attribute("rollguard.policy.type", decision.policy_type)
    span.set_attribute("rollguard.policy.stage", decision.stage.value)
    span.set_attribute("rollguard.policy.verdict", decision.verdict.value)
    span.set_attribute("rollguard.policy.score", decision.score)
    span.set_attribute("rollguard.policy.enforced", decision.enforced)
    span.set_attribute("rollguard.policy.elapsed_ms", decision.elapsed_ms)
    if decision.error:
        span.set_attribute("rollguard.policy.error", decision.error)
        span.set_status(Status(StatusCode.ERROR, decision.reason))


def build_pipeline(specs: Sequence[Any]) -> Pipeline:
    """Build a pipeline from ``rollguard.settings.PolicySpec`` objects.

    Raises ``ValueError`` naming the policy id for an unknown type, bad params, or a stage the
    type does not support.
    """
    from policies import registry

    built: list[ConfiguredPolicy] = []
    for spec in specs:
        try:
            policy = registry.build(spec.type, dict(spec.params))
        except (KeyError, ValueError) as exc:
            msg = exc.args[0] if exc.args else str(exc)
            raise ValueError(f"policy {spec.id!r}: {msg}") from exc
        stages = frozenset(spec.stages) if spec.stages else frozenset(policy.stages)
        unsupported = stages - policy.stages
        if unsupported:
            raise ValueError(
                f"policy {spec.id!r}: type {spec.type!r} does not support stage(s) "
                f"{sorted(s.value for s in unsupported)}"
            )
        built.append(
            ConfiguredPolicy(
                id=spec.id,
                policy=policy,
                stages=stages,
                mode=spec.mode,
                on_error=spec.on_error,
                timeout_ms=spec.timeout_ms,
                flag=spec.flag,
            )
        )
    return Pipeline(built)
