"""A rollout's state machine, pure (no I/O, no clock: times are passed in).

States and the transitions allowed (``TRANSITIONS``)::

    pending ──start──> running(0)
    running(k) ──judge pass, auto──> running(k+1)      (completed when step k+1 is 100 %)
    running(k) ──judge pass──> awaiting_approval(k) ──approve──> running(k+1) / completed
    running(k) | awaiting_approval(k) ──pause (person, signal metric, sample ratio)──> paused
    paused ──resume──> running(k)                       (the step starts again: new baseline)
    any but completed / rolled_back ──rollback (person, guardrail metric)──> rolled_back

``RolloutState`` is what the store keeps (``gateway.store.keys.rollout_state``), as JSON with a
``revision`` that every write compares and increments (``gateway.rollout.repo``). ``baseline`` is
the detector worker's cumulative per-variant sums at the moment the step started (the step's data
is the current sums minus the baseline); None until the controller has taken it.

Errors: ``apply`` raises ``Conflict`` (HTTP 409) for a transition the current state does not
allow.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import orjson

from rollguard.errors import Conflict
from rollguard.rollout import RolloutPlan


class Status(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    PAUSED = "paused"
    ROLLED_BACK = "rolled_back"
    COMPLETED = "completed"

    @property
    def terminal(self) -> bool:
        return self in (Status.ROLLED_BACK, Status.COMPLETED)


class Event(StrEnum):
    START = "start"
    PROMOTE = "promote"  # a passed step, auto-promoted, or an approval
    AWAIT = "await_approval"  # a passed step waiting for a person
    APPROVE = "approve"
    PAUSE = "pause"
    RESUME = "resume"
    ROLLBACK = "rollback"
    BASELINE = "baseline"  # the controller took the step's starting sums


TRANSITIONS: dict[Event, frozenset[Status]] = {
    Event.START: frozenset({Status.PENDING}),
    Event.PROMOTE: frozenset({Status.RUNNING}),
    Event.AWAIT: frozenset({Status.RUNNING}),
    Event.APPROVE: frozenset({Status.AWAITING_APPROVAL}),
    Event.PAUSE: frozenset({Status.RUNNING, Status.AWAITING_APPROVAL}),
    Event.RESUME: frozenset({Status.PAUSED}),
    Event.ROLLBACK: frozenset({Status.PENDING, Status.RUNNING, Status.AWAITING_APPROVAL, Status.PAUSED}),
    Event.BASELINE: frozenset({Status.RUNNING}),
}
"""Which states each event may leave from."""


@dataclass(frozen=True, slots=True)
class RolloutState:
    """One rollout as stored. ``step``: index into ``plan.steps``; ``step_started_ms``: UTC epoch ms
    when the step's baseline was taken (0 before); ``revision``: incremented by every write;
    ``fence``: the controller lease's fencing token of the last controller write (0: a person's);
    ``last_judgment``: the judgments-stream id of the judgment behind the last transition."""

    id: str
    plan: RolloutPlan
    status: Status = Status.PENDING
    step: int = 0
    step_started_ms: int = 0
    baseline: dict[str, Any] | None = None
    revision: int = 0
    fence: int = 0
    created_ms: int = 0
    updated_ms: int = 0
    created_by: str = ""
    reason: str = ""
    last_judgment: str | None = None

    @property
    def percent(self) -> float:
        """The canary share the flag should serve now: the step's percentage while the rollout
        runs, waits or pauses; 0 before it starts and after a rollback; 100 when completed."""
        if self.status in (Status.PENDING, Status.ROLLED_BACK):
            return 0.0
        if self.status is Status.COMPLETED:
            return 100.0
        return float(self.plan.steps[self.step])

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "plan": self.plan.model_dump(mode="json"),
            "plan_version": self.plan.version(),
            "status": self.status.value,
            "step": self.step,
            "percent": self.percent,
            "next_percent": self.next_percent,
            "step_started_ms": self.step_started_ms,
            "baseline": self.baseline,
            "revision": self.revision,
            "fence": self.fence,
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
            "created_by": self.created_by,
            "reason": self.reason,
            "last_judgment": self.last_judgment,
        }

    @property
    def next_percent(self) -> float | None:
        if self.status.terminal or self.step + 1 >= len(self.plan.steps):
            return None
        return float(self.plan.steps[self.step + 1])

    def to_json(self) -> str:
        return orjson.dumps(self.to_dict()).decode()

    @classmethod
    def from_json(cls, raw: str | bytes) -> RolloutState:
        d = orjson.loads(raw)
        return cls(
            id=str(d["id"]),
            plan=RolloutPlan.model_validate(d["plan"]),
            status=Status(d["status"]),
            step=int(d["step"]),
            step_started_ms=int(d.get("step_started_ms", 0)),
            baseline=d.get("baseline"),
            revision=int(d["revision"]),
            fence=int(d.get("fence", 0)),
            created_ms=int(d.get("created_ms", 0)),
            updated_ms=int(d.get("updated_ms", 0)),
            created_by=str(d.get("created_by", "")),
            reason=str(d.get("reason", "")),
            last_judgment=d.get("last_judgment"),
        )


def apply(
    state: RolloutState,
    event: Event,
    *,
    now_ms: int,
    reason: str = "",
    judgment: str | None = None,
    baseline: dict[str, Any] | None = None,
    fence: int = 0,
) -> RolloutState:
    """The state after ``event`` (revision + 1). Raises ``Conflict`` when ``event`` is not allowed
    from ``state.status`` (approving a rollout that is not awaiting approval: 409)."""
    if state.status not in TRANSITIONS[event]:
        raise Conflict(f"rollout {state.id} is {state.status.value}: cannot {event.value}")
    common: dict[str, Any] = {
        "revision": state.revision + 1,
        "updated_ms": now_ms,
        "fence": fence,
        "reason": reason or state.reason,
        "last_judgment": judgment if judgment is not None else state.last_judgment,
    }
    if event is Event.BASELINE:
        return replace(state, baseline=baseline, step_started_ms=now_ms, **common)
    if event in (Event.START, Event.RESUME):
        return replace(state, status=Status.RUNNING, baseline=None, step_started_ms=0, **common)
    if event in (Event.PROMOTE, Event.APPROVE):
        nxt = state.step + 1
        if nxt >= len(state.plan.steps) - 1:  # the next step is the final 100 %: done
            return replace(state, status=Status.COMPLETED, step=len(state.plan.steps) - 1, **common)
        return replace(state, status=Status.RUNNING, step=nxt, baseline=None, step_started_ms=0, **common)
    if event is Event.AWAIT:
        return replace(state, status=Status.AWAITING_APPROVAL, **common)
    if event is Event.PAUSE:
        return replace(state, status=Status.PAUSED, **common)
    return replace(state, status=Status.ROLLED_BACK, **common)
