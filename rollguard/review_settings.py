"""The ``review`` section of the config (``RollguardSettings.review``), typed and validated when the
settings load (``rollguard.settings.load_settings``), like every other section.

Shape (YAML)::

    review:
      k_overlap: 1                # verdicts from distinct reviewers per item (default for queues)
      lease_s: 300                # seconds a claim lasts without a heartbeat
      retention_s: 604800         # TTL of decided items (seconds); pending items never expire
      webhook_url: null           # SLA breaches are POSTed here (JSON) when set
      escalation_queue: escalation
      adjudication_queue: adjudication
      sla: {P1: {claim_s: 900, decide_s: 3600}, P2: {...}, P3: {...}}
      queues:
        - {name: safety, k: 2, description: "policy flags"}
      routes:                     # first match wins; every field optional (absent = any)
        - {queue: safety, priority: P1, policy: [pii, secrets], tenant: [acme]}
        - {queue: drift, priority: P2, detector: [psi], severity: [high]}
      reviewers:
        - {name: ana, token: os.environ/ANA_TOKEN, role: reviewer, queues: [safety], tenants: [acme]}
      taxonomy:                   # verdict labels (default: ``default_taxonomy()``)
        - {id: acceptable, title: Acceptable, key: "1", acceptable: true, confirms_alert: false,
           judges: reply}

Errors: ``load_settings`` raises ``rollguard.errors.ConfigError`` naming the file and the field
(``review.queues.0.name``); ``gateway.review.config.parse_review_settings`` does the same for a
section given as a mapping (tests, the demo).
"""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rollguard.secrets import hash_api_key, resolve_secret

NAME_PATTERN = r"^[A-Za-z0-9_.\-]+$"
"""Queue, label and reviewer names: no ``:`` (lease ids are ``queue:priority:entry``)."""


class Priority(enum.StrEnum):
    """Review priority. P1 is claimed first."""

    P1 = "P1"
    P2 = "P2"
    P3 = "P3"

    @property
    def rank(self) -> int:
        """1, 2 or 3."""
        return int(self.value[1])


class Role(enum.StrEnum):
    """``reviewer`` claims and decides; ``lead`` also adjudicates and sees verdicts unblinded;
    ``operator`` sees every queue's state, agreement and exports, but gives no verdicts."""

    REVIEWER = "reviewer"
    LEAD = "lead"
    OPERATOR = "operator"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SlaSpec(_Strict):
    """Claim-by and decide-by times, in seconds after the item was queued."""

    claim_s: int = Field(ge=1)
    decide_s: int = Field(ge=1)


def default_sla() -> dict[Priority, SlaSpec]:
    """P1: claim in 15 min, decide in 1 h; P2: 1 h / 8 h; P3: 8 h / 3 days."""
    return {
        Priority.P1: SlaSpec(claim_s=900, decide_s=3600),
        Priority.P2: SlaSpec(claim_s=3600, decide_s=8 * 3600),
        Priority.P3: SlaSpec(claim_s=8 * 3600, decide_s=3 * 24 * 3600),
    }


class QueueSpec(_Strict):
    """A named review queue. ``k`` overrides ``review.k_overlap``; ``leads_only`` restricts claims
    to leads (the adjudication queue is always leads-only)."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    k: int | None = Field(default=None, ge=1, le=10)
    blind: bool = True
    leads_only: bool = False


class RouteRule(_Strict):
    """One routing rule: every given field must match (lists are "any of"); absent fields match
    anything. ``policy`` matches a flagged decision's configured policy id, ``detector`` a detector
    name (an anomaly bundle's or a flagged per-interaction signal's), ``severity`` the anomaly's
    severity, ``variant`` the flag variant (``canary``/``control``), ``source`` is
    ``interaction`` or ``anomaly``."""

    queue: str = Field(pattern=NAME_PATTERN)
    priority: Priority = Priority.P2
    source: list[str] | None = None
    policy: list[str] | None = None
    detector: list[str] | None = None
    severity: list[str] | None = None
    tenant: list[str] | None = None
    variant: list[str] | None = None


class ReviewerSpec(_Strict):
    """A reviewer account. Give ``token_hash`` (``sha256:<hex>``, ``rollguard keys hash``) or
    ``token`` (hashed at load; ``os.environ/NAME`` allowed). ``queues``/``tenants``: the grants;
    ``["*"]`` = all."""

    name: str = Field(pattern=NAME_PATTERN)
    role: Role = Role.REVIEWER
    token_hash: str | None = None
    token: str | None = None
    queues: list[str] = Field(default_factory=lambda: ["*"])
    tenants: list[str] = Field(default_factory=lambda: ["*"])

    @model_validator(mode="after")
    def _hash(self) -> ReviewerSpec:
        if self.token is not None:
            raw = resolve_secret(self.token)
            if not raw:
                raise ValueError("token is empty or its environment variable is unset")
            self.token_hash = hash_api_key(raw)
            self.token = None
        if not self.token_hash or not self.token_hash.startswith("sha256:") or len(self.token_hash) != 71:
            raise ValueError("token_hash must be 'sha256:' followed by 64 hex digits")
        return self

    def can_queue(self, queue: str) -> bool:
        return "*" in self.queues or queue in self.queues

    def can_tenant(self, tenant: str) -> bool:
        return "*" in self.tenants or tenant in self.tenants


class LabelSpec(_Strict):
    """A verdict label. ``acceptable``: nothing is wrong and the reply is fine to ship (KTO label
    True); ``confirms_alert``: the policy/detector that raised the item was right (detector
    precision); ``judges``: what a non-acceptable label says is wrong, ``reply`` (the completion
    itself, e.g. hedging: KTO label False) or ``alert`` (whatever was flagged, e.g. a policy
    violation: KTO label False only when the flagged evidence includes the reply, see
    ``gateway.review.export``); ``key``: the keyboard shortcut in the console; ``group`` only
    groups buttons."""

    id: str = Field(pattern=NAME_PATTERN)
    title: str
    key: str | None = Field(default=None, max_length=1)
    acceptable: bool = False
    confirms_alert: bool = True
    judges: Literal["reply", "alert"] = "alert"
    group: str = ""


def default_taxonomy() -> list[LabelSpec]:
    """Acceptable, policy violation, the five shortcuts, detector false positive."""
    return [
        LabelSpec(
            id="acceptable",
            title="Acceptable",
            key="1",
            acceptable=True,
            confirms_alert=False,
            judges="reply",
        ),
        LabelSpec(id="policy_violation", title="Policy violation", key="2"),
        LabelSpec(id="sycophancy", title="Sycophancy", key="3", judges="reply", group="shortcut"),
        LabelSpec(id="hedging", title="Hedging", key="4", judges="reply", group="shortcut"),
        LabelSpec(id="verbosity", title="Verbosity", key="5", judges="reply", group="shortcut"),
        LabelSpec(id="refusal", title="Over-refusal", key="6", judges="reply", group="shortcut"),
        LabelSpec(id="evasion", title="Evasion", key="7", judges="reply", group="shortcut"),
        LabelSpec(
            id="detector_false_positive",
            title="Detector false positive",
            key="8",
            acceptable=True,
            confirms_alert=False,
        ),
    ]


class ReviewSettings(_Strict):
    """The whole ``review`` section. See the module docstring for the YAML shape."""

    k_overlap: int = Field(default=1, ge=1, le=10)
    lease_s: float = Field(default=300.0, gt=0, description="seconds a claim lasts without heartbeat")
    retention_s: int = Field(default=7 * 24 * 3600, ge=1, description="TTL of decided items, seconds")
    window_s: int = Field(default=30 * 24 * 3600, ge=60, description="rolling agreement window, seconds")
    alpha_threshold: float = Field(default=0.667, ge=0, le=1, description="Krippendorff 2004: 0.667")
    posterior_threshold: float = Field(default=0.8, gt=0, le=1)
    webhook_url: str | None = None
    escalation_queue: str = Field(default="escalation", pattern=NAME_PATTERN)
    adjudication_queue: str = Field(default="adjudication", pattern=NAME_PATTERN)
    default_queue: str = Field(default="triage", pattern=NAME_PATTERN)
    session_ttl_s: int = Field(default=12 * 3600, ge=60)
    sla: dict[Priority, SlaSpec] = Field(default_factory=default_sla)
    queues: list[QueueSpec] = Field(default_factory=list)
    routes: list[RouteRule] = Field(default_factory=list)
    reviewers: list[ReviewerSpec] = Field(default_factory=list)
    taxonomy: list[LabelSpec] = Field(default_factory=default_taxonomy)

    @field_validator("sla")
    @classmethod
    def _all_priorities(cls, v: dict[Priority, SlaSpec]) -> dict[Priority, SlaSpec]:
        merged = default_sla()
        merged.update(v)
        return merged

    @model_validator(mode="after")
    def _check(self) -> ReviewSettings:
        names = [q.name for q in self.queues]
        for extra in (self.default_queue, self.escalation_queue, self.adjudication_queue):
            if extra not in names:
                self.queues.append(QueueSpec(name=extra, k=1, leads_only=extra == self.adjudication_queue))
                names.append(extra)
        for q in self.queues:
            if q.name == self.adjudication_queue:
                q.leads_only = True
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate queue name(s): {sorted(dup)}")
        for i, r in enumerate(self.routes):
            if r.queue not in names:
                raise ValueError(f"routes[{i}].queue: unknown queue {r.queue!r}")
        rnames = [r.name for r in self.reviewers]
        if len(set(rnames)) != len(rnames):
            raise ValueError("duplicate reviewer name")
        ids = [label.id for label in self.taxonomy]
        keys = [label.key for label in self.taxonomy if label.key]
        if len(set(ids)) != len(ids) or len(set(keys)) != len(keys):
            raise ValueError("taxonomy label ids and keys must be unique")
        if not self.taxonomy:
            raise ValueError("taxonomy must not be empty")
        return self

    def queue(self, name: str) -> QueueSpec:
        """The queue named ``name``; raises ``KeyError`` when unknown."""
        for q in self.queues:
            if q.name == name:
                return q
        raise KeyError(name)

    def k_for(self, queue: str) -> int:
        spec = self.queue(queue)
        return spec.k if spec.k is not None else self.k_overlap

    def label(self, label_id: str) -> LabelSpec | None:
        for label in self.taxonomy:
            if label.id == label_id:
                return label
        return None

    def reviewer_by_hash(self, token_hash: str) -> ReviewerSpec | None:
        for r in self.reviewers:
            if r.token_hash == token_hash:
                return r
        return None

    def reviewer(self, name: str) -> ReviewerSpec | None:
        for r in self.reviewers:
            if r.name == name:
                return r
        return None
