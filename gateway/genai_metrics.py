"""The gateway's metric instruments (OpenTelemetry *API* only) and how one finished chat
completion is recorded into them.

Instruments (names and buckets from the OpenTelemetry GenAI semantic conventions, "Semantic
conventions for generative AI metrics", semantic-conventions v1.41.0; the ``rollguard.*`` ones are
ours):

- ``gen_ai.client.token.usage`` histogram, ``{token}``: input and output tokens per request
  (``gen_ai.token.type``), from the upstream's ``usage``;
- ``gen_ai.client.operation.duration`` histogram, seconds: the whole chat operation as the gateway
  served it (arrival to last byte; ``error.type`` on failures);
- ``gen_ai.server.time_to_first_token`` histogram, seconds: arrival to the first SSE bytes sent,
  streams only;
- ``rollguard.gateway.overhead`` histogram, seconds: the operation minus the upstream call (what
  the gateway itself adds: parsing, flags, policies, relaying);
- ``rollguard.requests`` counter (``outcome``, ``model``, ``stream``, ``variant``);
- ``rollguard.policy.decisions`` counter (``policy``, ``action`` = the verdict, ``stage``,
  ``enforced``, ``variant``); ``rollguard.policy.errors`` counter (``policy``, ``error``).

The two per-request counters are observable counters over in-process counts (cheap per request);
the histograms are synchronous (the API has no observable histogram).

Every label value is bounded by the configuration: a model is a configured alias or ``unknown``
(``gateway.telemetry.model_label``), a variant is ``none``, ``control``, ``canary``, a configured
rollout variant or ``other``; policies are the configured ids. The attribute dicts are built once
per label combination and reused (no per-request attribute objects once warm).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from rollguard.types import Decision, Interaction

__all__ = [
    "DURATION_BUCKETS_S",
    "NO_VARIANT",
    "OTHER",
    "TOKEN_BUCKETS",
    "TTFT_BUCKETS_S",
    "GatewayMetrics",
]

TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
"""``gen_ai.client.token.usage`` ExplicitBucketBoundaries (GenAI metrics semconv)."""
DURATION_BUCKETS_S = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
"""``gen_ai.client.operation.duration`` ExplicitBucketBoundaries, seconds (GenAI metrics semconv)."""
TTFT_BUCKETS_S = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
"""``gen_ai.server.time_to_first_token`` ExplicitBucketBoundaries, seconds (GenAI metrics semconv)."""
OVERHEAD_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""``rollguard.gateway.overhead`` boundaries, seconds: ours, around the hot path's 0.8 ms budget
(docs/architecture.md) up to a slow policy."""

OTHER = "other"
"""The label value of a variant the configuration does not name."""
NO_VARIANT = "none"
"""The variant label of a request no rollout covers."""

Attrs = dict[str, Any]


class GatewayMetrics:
    """The instruments of one gateway process, from ``meter``; ``variants``: the variant names the
    configuration knows (rollout variants; ``control`` / ``canary`` always)."""

    def __init__(self, meter: metrics.Meter, variants: Iterable[str] = ()) -> None:
        m = self.meter = meter
        self._variants = frozenset({"control", "canary", *variants})
        # The two per-request counters are counted in-process and observed at collection time
        # (``_Counts``): a synchronous SDK counter costs ~8 us per add (bench/telemetry_cpu.py),
        # a dict increment well under 1 us.
        counts = _counts_of(meter)
        self._attrs = counts.attrs
        self._requests = counts.requests
        self._decisions = counts.decisions
        self.policy_errors = m.create_counter(
            "rollguard.policy.errors", description="policy failures (exception or timeout)"
        )
        self.token_usage = m.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Measures number of input and output tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.operation_duration = m.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self.ttft = m.create_histogram(
            "gen_ai.server.time_to_first_token",
            unit="s",
            description="Time to generate first token for successful responses",
            explicit_bucket_boundaries_advisory=TTFT_BUCKETS_S,
        )
        self.overhead = m.create_histogram(
            "rollguard.gateway.overhead",
            unit="s",
            description="operation duration minus the upstream call",
            explicit_bucket_boundaries_advisory=OVERHEAD_BUCKETS_S,
        )

    def variant(self, interaction: Interaction) -> str:
        """The bounded variant label of ``interaction`` (``metadata.variant``)."""
        v = interaction.metadata.get("variant")
        if not v:
            return NO_VARIANT
        return v if v in self._variants else OTHER

    def _cached(self, key: tuple[Any, ...], build: Attrs) -> Attrs:
        """The shared attribute dict for ``key`` (``build`` on the first use). Callers pass only
        bounded values, so the cache is bounded too."""
        got = self._attrs.get(key)
        if got is None:
            got = self._attrs[key] = build
        return got

    def record_finished(self, interaction: Interaction, outcome: str, model: str) -> None:
        """A finished chat completion: requests, operation duration (``latency_ms`` / 1000, s),
        overhead (``latency_ms - upstream_ms``, s), time to first token (``metadata.ttft_ms``,
        successful streams) and token usage (``usage.prompt_tokens`` / ``completion_tokens``).
        ``model``: the bounded alias (``model_label``); ``outcome`` one of the service's outcomes."""
        variant = self.variant(interaction)
        stream = interaction.stream
        key = ("req", outcome, model, stream, variant)
        if key not in self._attrs:
            self._cached(key, {"outcome": outcome, "model": model, "stream": stream, "variant": variant})
        counts = self._requests
        counts[key] = counts.get(key, 0) + 1
        ok = interaction.status < 400
        gkey = ("op", model, variant, None if ok else outcome)
        g = self._attrs.get(gkey)
        if g is None:
            g = self._cached(gkey, _genai(model, variant, ok, outcome))
        latency_s = interaction.latency_ms / 1000.0
        self.operation_duration.record(latency_s, g)
        if interaction.upstream_ms:
            self.overhead.record(max(0.0, latency_s - interaction.upstream_ms / 1000.0), g)
        ttft = interaction.metadata.get("ttft_ms")
        if ttft is not None and ok:
            self.ttft.record(float(ttft) / 1000.0, g)
        usage = interaction.usage
        if usage:
            for field, kind in (("prompt_tokens", "input"), ("completion_tokens", "output")):
                n = usage.get(field)
                if isinstance(n, int) and n >= 0:
                    tkey = ("tok", model, variant, kind)
                    t = self._attrs.get(tkey)
                    if t is None:
                        t = self._cached(tkey, _tokens(model, variant, kind))
                    self.token_usage.record(n, t)

    def record_decisions(self, decisions: Iterable[Decision], variant: str) -> None:
        """One count per decision (``policy``, ``action``, ``stage``, ``enforced``, ``variant``)."""
        counts = self._decisions
        for d in decisions:
            key = ("dec", d.policy, d.verdict, d.stage, d.enforced, variant)
            if key not in self._attrs:
                self._cached(
                    key,
                    {
                        "policy": d.policy,
                        "action": d.verdict.value,
                        "stage": d.stage.value,
                        "enforced": d.enforced,
                        "variant": variant,
                    },
                )
            counts[key] = counts.get(key, 0) + 1


class _Counts:
    """The in-process counts behind one meter's two observable counters (``rollguard.requests``,
    ``rollguard.policy.decisions``) and the attribute dicts of every label set. One per meter: the
    SDK keeps the first callbacks of an instrument name and ignores a later registration, so every
    ``GatewayMetrics`` of a meter (several apps in one test process) shares them."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.meter = meter  # held: the registry below is keyed by id(meter)
        self.attrs: dict[tuple[Any, ...], Attrs] = {}
        self.requests: dict[tuple[Any, ...], int] = {}
        self.decisions: dict[tuple[Any, ...], int] = {}
        meter.create_observable_counter(
            "rollguard.requests",
            callbacks=[self._observer(self.requests)],
            description="chat completion requests by outcome",
        )
        meter.create_observable_counter(
            "rollguard.policy.decisions",
            callbacks=[self._observer(self.decisions)],
            description="policy decisions by action (verdict)",
        )

    def _observer(
        self, counts: dict[tuple[Any, ...], int]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        """The callback of an observable counter fed by ``counts`` (cumulative, per label set).
        It may run on an exporter's thread: it reads a copy (one atomic ``dict.copy``)."""

        def observe(_: CallbackOptions) -> Iterable[Observation]:
            attrs = self.attrs
            return [Observation(n, attrs[key]) for key, n in counts.copy().items()]

        return observe


_COUNTS: dict[int, _Counts] = {}
_COUNTS_LOCK = threading.Lock()


def _counts_of(meter: metrics.Meter) -> _Counts:
    """The shared ``_Counts`` of ``meter`` (created, with its instruments, on first use)."""
    with _COUNTS_LOCK:
        got = _COUNTS.get(id(meter))
        if got is None or got.meter is not meter:
            got = _COUNTS[id(meter)] = _Counts(meter)
        return got


def _genai(model: str, variant: str, ok: bool, outcome: str) -> Attrs:
    a: Attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model, "variant": variant}
    if not ok:
        a["error.type"] = outcome
    return a


def _tokens(model: str, variant: str, kind: str) -> Attrs:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.token.type": kind,
        "variant": variant,
    }
