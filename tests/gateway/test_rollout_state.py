"""The rollout state machine (pure) and the override decision (pure)."""

from __future__ import annotations

import pytest

from gateway.rollout.overrides import Override, bucket, decide
from gateway.rollout.state import Event, RolloutState, Status, apply
from rollguard.errors import Conflict
from rollguard.rollout import RolloutPlan

PLAN = RolloutPlan(flag="f", steps=(1, 5, 25, 100))


def state(**kw: object) -> RolloutState:
    return RolloutState(id="r", plan=PLAN, **kw)  # type: ignore[arg-type]


def test_the_happy_path_walks_every_step_and_completes() -> None:
    s = apply(state(), Event.START, now_ms=1)
    assert (s.status, s.step, s.percent, s.revision) == (Status.RUNNING, 0, 1.0, 1)
    s = apply(s, Event.BASELINE, now_ms=5, baseline={"sums": {}})
    assert s.step_started_ms == 5 and s.baseline == {"sums": {}}
    s = apply(s, Event.AWAIT, now_ms=6)
    assert s.status is Status.AWAITING_APPROVAL and s.percent == 1.0
    s = apply(s, Event.APPROVE, now_ms=7)
    assert (s.status, s.step, s.percent, s.baseline) == (Status.RUNNING, 1, 5.0, None)
    s = apply(s, Event.PROMOTE, now_ms=8)  # auto-promotion of step 1 -> step 2 (25 %)
    assert (s.step, s.percent) == (2, 25.0)
    s = apply(s, Event.PROMOTE, now_ms=9)  # the next step is the final 100 %
    assert (s.status, s.percent, s.next_percent) == (Status.COMPLETED, 100.0, None)
    assert s.revision == 6


@pytest.mark.parametrize(
    ("status", "event"),
    [
        (Status.RUNNING, Event.APPROVE),  # approving what is not awaiting approval: 409
        (Status.PENDING, Event.APPROVE),
        (Status.COMPLETED, Event.ROLLBACK),
        (Status.ROLLED_BACK, Event.RESUME),
        (Status.RUNNING, Event.RESUME),
        (Status.PAUSED, Event.PROMOTE),
    ],
)
def test_a_transition_the_state_does_not_allow_is_a_409(status: Status, event: Event) -> None:
    with pytest.raises(Conflict) as err:
        apply(state(status=status), event, now_ms=1)
    assert err.value.status == 409


def test_rollback_sends_the_canary_to_zero_and_resume_restarts_the_step() -> None:
    s = apply(state(status=Status.RUNNING, step=2, baseline={"sums": {}}), Event.PAUSE, now_ms=1)
    assert s.percent == 25.0  # a pause keeps the share
    r = apply(s, Event.RESUME, now_ms=2)
    assert (r.status, r.step, r.baseline, r.step_started_ms) == (Status.RUNNING, 2, None, 0)
    b = apply(s, Event.ROLLBACK, now_ms=3, reason="guardrail", judgment="1-0")
    assert (b.status, b.percent, b.last_judgment, b.reason) == (Status.ROLLED_BACK, 0.0, "1-0", "guardrail")


def test_the_state_round_trips_through_json() -> None:
    s = apply(state(), Event.START, now_ms=1, fence=7)
    s = apply(s, Event.BASELINE, now_ms=2, baseline={"sums": {"error": {"control": [1, 0, 0]}}}, fence=7)
    assert RolloutState.from_json(s.to_json()) == s


def test_override_kill_beats_percent_and_buckets_are_sticky() -> None:
    assert decide(Override(killed=True, percent=100), "f", "u", variant_flag=True) == (False, None)
    assert decide(Override(percent=0), "f", "u", variant_flag=True) == (True, "control")
    assert decide(Override(percent=100), "f", "u", variant_flag=True) == (True, "canary")
    assert decide(Override(percent=100), "f", "u", variant_flag=False) == (True, None)
    assert decide(Override(percent=0), "f", "u", variant_flag=False) == (False, None)
    assert bucket("f", "user-1") == bucket("f", "user-1")
    users = [f"user-{i}" for i in range(4000)]
    share = sum(decide(Override(percent=10), "f", u, variant_flag=True)[1] == "canary" for u in users) / 4000
    assert 0.085 < share < 0.115
    # growing the percentage never moves a canary subject back to control
    at5 = {u for u in users if decide(Override(percent=5), "f", u, variant_flag=True)[1] == "canary"}
    at25 = {u for u in users if decide(Override(percent=25), "f", u, variant_flag=True)[1] == "canary"}
    assert at5 <= at25
