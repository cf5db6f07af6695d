"""The rollout controller: a background task in every gateway process; the one that holds the
controller lease acts, the others stand by (``ControllerLease``; a new holder takes over within
``lease_ms`` of the old one going silent).

Each look (every ``interval_s`` seconds), for every running rollout:

1. no baseline yet (the step just started): take the detector worker's sums as the step's
   baseline and start the step's clock (a fenced write);
2. otherwise: the step's data is the worker's sums minus the baseline (``gateway.rollout.stats``)
   and the reviewer rates of the items reviewed since the step started
   (``gateway.rollout.review_stats``);
   the judge (``detectors.rollout_judge.judge_step``) decides; the judgment and its evidence are
   appended to ``rollguard:{rollout}:judgments``; then the action: ``wait`` nothing; ``promote``
   awaiting approval (or the next step when the plan auto-promotes); ``pause`` (signal metric,
   sample ratio) paused with a P2 item; ``rollback`` (guardrail metric) canary to 0 %, a P1 item
   and the alert webhook.

Before judging, the holder re-applies each live rollout's percentage once per revision
(``_reconcile``): a crash between a transition's write and its flag change is repaired.

Every write carries the lease's fencing token and the revision the judgment was made on, so a
controller that lost its lease, or a judgment overtaken by a person's approval, changes nothing.
Judging runs off the request path.

Why the gateway and not the detector worker: the gateway already has the flags actuator, the
review service and the operator API; the controller's work per look is two store reads per
rollout, so it costs the gateway nothing measurable, and every replica can take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis.asyncio as aioredis

from detectors.rollout_judge import Action, judge_step
from gateway.review.service import ReviewService
from gateway.rollout.repo import ControllerLease, Fenced
from gateway.rollout.review_stats import read_reviewer_metrics
from gateway.rollout.service import RolloutService, now_ms
from gateway.rollout.state import Event, RolloutState, Status
from gateway.rollout.stats import judged_plan, read_snapshot, step_data
from rollguard.errors import Conflict, StoreError

log = logging.getLogger("rollguard.rollout.controller")

RECONCILE_ROLLED_BACK_MS = 10 * 60 * 1000
"""A rollback younger than this is re-applied by a new lease holder (10 minutes)."""


class Controller:
    """See the module docstring. ``holder``: this process's lease name (unique per process);
    ``reviews``: the review service whose verdicts give the reviewer rates (None: no review
    section, so a plan's reviewer rates have no data and its steps stay inconclusive)."""

    def __init__(
        self,
        service: RolloutService,
        redis: aioredis.Redis,
        holder: str,
        *,
        interval_s: float = 5.0,
        lease_ms: int = 15_000,
        reviews: ReviewService | None = None,
    ) -> None:
        self.service = service
        self.reviews = reviews
        self.redis = redis
        self.holder = holder
        self.interval_s = interval_s
        self.lease = ControllerLease(redis, holder, lease_ms)
        self._task: asyncio.Task[None] | None = None
        self.looks = 0
        self._applied: dict[str, int] = {}  # rollout id -> revision whose percentage this process set

    async def tick(self) -> int:
        """One look: returns how many rollouts it judged (0 when another process holds the lease)."""
        fence = await self.lease.acquire_or_renew()
        if not fence:
            return 0
        judged = 0
        for state in await self.service.repo.all():
            await self._reconcile(state)
            if state.status is not Status.RUNNING:
                continue
            try:
                await self._look(state, fence)
                judged += 1
            except Fenced:
                log.warning("rollout controller %s lost the lease; standing by", self.holder)
                return judged
            except Conflict as exc:
                log.info("rollout %s: %s (judged again at the next look)", state.id, exc)
        self.looks += 1
        return judged

    async def _reconcile(self, state: RolloutState) -> None:
        """Set the flag to the state's percentage once per (rollout, revision) in this process: a
        crash between a transition's write and its flag change is repaired by the next lease
        holder. Rollouts that are pending, completed, or rolled back more than
        ``RECONCILE_ROLLED_BACK_MS`` ago are left alone (an operator may have changed the flag
        since)."""
        if self._applied.get(state.id) == state.revision or state.status is Status.PENDING:
            return
        recent = now_ms() - state.updated_ms < RECONCILE_ROLLED_BACK_MS
        if state.status is Status.COMPLETED or (state.status is Status.ROLLED_BACK and not recent):
            self._applied[state.id] = state.revision
            return
        await self.service.actuate(state, who=self.holder, why="reconcile")
        self._applied[state.id] = state.revision

    async def _look(self, state: RolloutState, fence: int) -> None:
        snap = await read_snapshot(self.redis)
        if state.baseline is None:
            await self.service.transition(
                state.id,
                Event.BASELINE,
                who=self.holder,
                why=f"step {state.step} ({state.percent:g} %) started",
                fence=fence,
                expect_revision=state.revision,
                baseline=snap.to_baseline(),
            )
            return
        plan, dropped = judged_plan(state.plan)
        now = now_ms()
        reviews = await read_reviewer_metrics(self.reviews, plan, state.step_started_ms)
        data = step_data(
            plan,
            state.step,
            snap,
            state.baseline,
            elapsed_s=max(0.0, (now - state.step_started_ms) / 1000.0),
            flag_snapshot={"flag": plan.flag, "percent": state.percent, "revision": state.revision},
            reviews=reviews,
        )
        judgment = judge_step(plan, data)
        record: dict[str, Any] = {
            **judgment.to_dict(),
            "rollout": state.id,
            "revision": state.revision,
            "dropped_metrics": dropped,
            "at_ms": now,
            "controller": self.holder,
            "fence": fence,
        }
        evidence_id = await self.service.repo.append_judgment(state.id, record)
        await self._act(state, judgment.action, judgment.needs_approval, record, evidence_id, fence)

    async def _act(
        self,
        state: RolloutState,
        action: Action,
        needs_approval: bool,
        record: dict[str, Any],
        evidence_id: str,
        fence: int,
    ) -> None:
        why = f"{record.get('outcome')}: {record.get('reason')}" + (
            f" ({record['metric']})" if record.get("metric") else ""
        )
        common: dict[str, Any] = {"who": self.holder, "why": why, "evidence_id": evidence_id, "fence": fence}
        if action is Action.PROMOTE:
            event = Event.AWAIT if needs_approval else Event.PROMOTE
            await self.service.transition(state.id, event, expect_revision=state.revision, **common)
        elif action in (Action.PAUSE, Action.ROLLBACK):
            await self.service.breach(state, rollback=action is Action.ROLLBACK, judgment=record, **common)

    # -- background task ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="rollguard-rollout-controller")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(StoreError):
            await self.lease.release()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self.tick()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store or Unleash failed: keep looking; nothing is lost
                failures += 1
                if failures == 1 or failures % 60 == 0:
                    log.warning("rollout controller look failed (%s: %s)", type(exc).__name__, exc)
            await asyncio.sleep(self.interval_s)
