"""The console's rollout pages fed from the store: ``StoreRolloutViews`` implements the review
console's ``RolloutViews`` protocol (``gateway.review.rollout_view``) over the rollout states and
each rollout's judgments stream, with ``view_from_evidence`` (the last judgment of each step is
plotted). The app lifespan sets it as the console's source."""

from __future__ import annotations

import time
from collections.abc import Sequence

from gateway.review.rollout_view import RolloutState as ViewState
from gateway.review.rollout_view import RolloutView, view_from_evidence
from gateway.rollout.repo import RolloutRepo
from gateway.rollout.state import RolloutState
from rollguard.errors import NotFound

JUDGMENTS_SHOWN = 2000
"""Newest judgments read per rollout page (a look every 5 s: almost 3 hours of one step)."""


class StoreRolloutViews:
    """``RolloutViews`` over the store (see the module docstring). Raises ``StoreError``."""

    def __init__(self, repo: RolloutRepo) -> None:
        self.repo = repo

    async def list_rollouts(self) -> Sequence[RolloutView]:
        return [await self._view(s, JUDGMENTS_SHOWN // 10) for s in await self.repo.all()]

    async def get_rollout(self, rollout_id: str) -> RolloutView | None:
        try:
            state = await self.repo.get(rollout_id)
        except NotFound:
            return None
        return await self._view(state, JUDGMENTS_SHOWN)

    async def _view(self, state: RolloutState, count: int) -> RolloutView:
        records = list(reversed(await self.repo.judgments(state.id, count)))  # oldest first
        step = min(state.step, len(state.plan.steps) - 1)
        return view_from_evidence(
            state.id,
            state.plan,
            state=ViewState(state.status.value),
            step=step,
            step_started_ms=state.step_started_ms,
            now_ms=int(time.time() * 1000),
            records=records,
            percent=state.percent,
            evidence_id=state.last_judgment,
        )
