"""Everything a person or the controller does to a rollout, in one place shared by the API
(``gateway.rollout.api``), the CLI (``gateway.rollout.cli``) and the controller loop
(``gateway.rollout.controller``).

A transition reads the state, asks the state machine (``gateway.rollout.state.apply``; 409 when
not allowed), writes it with the revision compare-and-set of ``RolloutRepo.save`` (retrying on a
concurrent write, so that the loser re-reads and gets its 409: two approvals of one step promote
once) and then sets the flag to the new state's percentage (``Actuator``). A crash between the
write and the flag change is repaired by the controller, which re-applies the percentage of every
rollout whose flag does not show it (``reconcile``).

Errors: ``NotFound`` (404) unknown rollout, ``Conflict`` (409) a transition the state does not
allow or an id that exists, ``StoreError`` (503) the store or the Unleash Admin API failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from gateway.ops_audit import NoAudit, OperationsAudit
from gateway.rollout.actuator import Actuator
from gateway.rollout.notify import BreachNotifier
from gateway.rollout.overrides import OverrideStore
from gateway.rollout.repo import RolloutRepo
from gateway.rollout.state import Event, RolloutState, Status, apply
from rollguard.errors import Conflict
from rollguard.review_settings import Priority
from rollguard.rollout import RolloutPlan

log = logging.getLogger("rollguard.rollout")

CAS_RETRIES = 5


def now_ms() -> int:
    return int(time.time() * 1000)


class RolloutService:
    """Rollout transitions over the store (see the module docstring)."""

    def __init__(
        self,
        repo: RolloutRepo,
        actuator: Actuator,
        notifier: BreachNotifier,
        overrides: OverrideStore,
        ops: OperationsAudit | None = None,
    ) -> None:
        self.repo = repo
        self.actuator = actuator
        self.notifier = notifier
        self.overrides = overrides
        self.ops = ops or NoAudit()
        """Rollbacks and pauses also go to the operations audit stream (``gateway.ops_audit``)."""

    async def create(
        self, rollout_id: str, plan: RolloutPlan, who: str, *, start: bool = False
    ) -> RolloutState:
        """A new rollout (pending; running at step 0 with ``start``). Raises ``Conflict`` when the
        id exists."""
        state = RolloutState(
            id=rollout_id, plan=plan, created_ms=now_ms(), updated_ms=now_ms(), created_by=who
        )
        try:
            await self.repo.save(state, expected_revision=-1, who=who, event="create", why="created")
        except Conflict:
            raise Conflict(f"rollout {rollout_id!r} exists", param="id") from None
        return await self.start(rollout_id, who) if start else state

    async def ensure(self, plans: Mapping[str, RolloutPlan], who: str = "config") -> list[str]:
        """Create the configured plans that are not in the store yet (pending); returns their ids."""
        known = set(await self.repo.ids())
        made = []
        for rid, plan in plans.items():
            if rid in known:
                continue
            try:
                await self.create(rid, plan, who)
                made.append(rid)
            except Conflict:
                continue  # another replica created it meanwhile
        return made

    async def start(self, rollout_id: str, who: str) -> RolloutState:
        return await self.transition(rollout_id, Event.START, who=who, why="started")

    async def approve(self, rollout_id: str, who: str, *, step: int | None = None) -> RolloutState:
        """Promote an awaiting rollout to its next step. ``step``: the step the person saw (409 when
        the rollout has moved on)."""
        return await self.transition(rollout_id, Event.APPROVE, who=who, why="approved", expect_step=step)

    async def pause(self, rollout_id: str, who: str, why: str = "paused by a person") -> RolloutState:
        return await self.transition(rollout_id, Event.PAUSE, who=who, why=why)

    async def resume(self, rollout_id: str, who: str) -> RolloutState:
        return await self.transition(rollout_id, Event.RESUME, who=who, why="resumed (the step starts again)")

    async def rollback(self, rollout_id: str, who: str, why: str = "rolled back by a person") -> RolloutState:
        return await self.transition(rollout_id, Event.ROLLBACK, who=who, why=why)

    async def transition(
        self,
        rollout_id: str,
        event: Event,
        *,
        who: str,
        why: str,
        evidence_id: str | None = None,
        fence: int = 0,
        expect_step: int | None = None,
        expect_revision: int | None = None,
        baseline: dict[str, Any] | None = None,
    ) -> RolloutState:
        """Apply ``event`` with compare-and-set (see the module docstring); returns the new state.
        ``expect_revision`` (the controller): fail with ``Conflict`` instead of retrying when the
        state moved since it judged it."""
        for _ in range(CAS_RETRIES):
            cur = await self.repo.get(rollout_id)
            if expect_revision is not None and cur.revision != expect_revision:
                raise Conflict(f"rollout {rollout_id} changed since it was judged")
            if expect_step is not None and cur.step != expect_step:
                raise Conflict(f"rollout {rollout_id} is at step {cur.step}, not {expect_step}")
            new = apply(
                cur, event, now_ms=now_ms(), reason=why, judgment=evidence_id, baseline=baseline, fence=fence
            )
            try:
                await self.repo.save(
                    new,
                    expected_revision=cur.revision,
                    who=who,
                    event=event.value,
                    why=why,
                    evidence_id=evidence_id,
                )
            except Conflict as exc:
                if type(exc) is not Conflict or expect_revision is not None:
                    raise  # Fenced, or the controller's judgment is out of date
                continue
            if new.percent != cur.percent or event in (Event.START, Event.ROLLBACK):
                await self.actuate(new, who=who, why=why)
            if event in (Event.ROLLBACK, Event.PAUSE):
                await self.ops.record(f"rollout_{event.value}", by=who, target=rollout_id, reason=why)
            log.info(
                "rollout %s: %s by %s -> %s (step %d, %.4g %%)",
                rollout_id,
                event.value,
                who,
                new.status,
                new.step,
                new.percent,
            )
            return new
        raise Conflict(f"rollout {rollout_id} is changing too fast; try again")

    async def actuate(self, state: RolloutState, *, who: str, why: str) -> dict[str, Any]:
        """Set the flag to ``state.percent`` (rollback: canary to 0 % at once)."""
        return await self.actuator.apply(
            state.plan, state.percent, by=who, reason=why, rollback=state.status is Status.ROLLED_BACK
        )

    async def breach(
        self,
        state: RolloutState,
        *,
        rollback: bool,
        who: str,
        why: str,
        evidence_id: str,
        judgment: Mapping[str, Any],
        fence: int = 0,
    ) -> RolloutState:
        """A failed metric: roll back (guardrail; P1 item, webhook) or pause (signal or sample
        ratio; P2 item). The transition comes first: the canary stops before anyone is told."""
        event = Event.ROLLBACK if rollback else Event.PAUSE
        new = await self.transition(
            state.id,
            event,
            who=who,
            why=why,
            evidence_id=evidence_id,
            fence=fence,
            expect_revision=state.revision,
        )
        priority = Priority.P1 if rollback else Priority.P2
        item = await self.notifier.open_item(
            rollout_id=state.id,
            flag=state.plan.flag,
            step=state.step,
            priority=priority,
            evidence_id=evidence_id,
            judgment=judgment,
        )
        if rollback:
            await self.notifier.webhook(
                {
                    "event": "rollout_rollback",
                    "rollout": state.id,
                    "flag": state.plan.flag,
                    "step": state.step,
                    "percent": state.percent,
                    "metric": judgment.get("metric"),
                    "reason": why,
                    "evidence_id": evidence_id,
                    "review_item": item,
                    "at_ms": now_ms(),
                }
            )
        return new

    # -- kill switch -------------------------------------------------------------------------------

    async def kill(self, flag: str, who: str, why: str = "") -> int:
        """The flag off for everyone, in every process within a second. Returns the override
        version."""
        return await self.overrides.kill(flag, who, why)

    async def revive(self, flag: str, who: str, why: str = "") -> int:
        return await self.overrides.revive(flag, who, why)
