"""Rollout persistence, lease, override push and the controller against a real Redis (the embedded
Valkey of the ``redis_url`` fixture). The detector worker's state is written in the worker's own
serialised shape (``VariantComparison.to_dict``), built with the real comparison objects."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis

from detectors.canary import VariantComparison
from detectors.drift import Floors
from gateway.flags import FlagContext, Flags
from gateway.rollout.controller import Controller
from gateway.rollout.overrides import OverrideListener, OverrideMap, OverrideStore
from gateway.rollout.repo import ControllerLease, Fenced
from gateway.rollout.runtime import build_service
from gateway.rollout.service import RolloutService
from gateway.rollout.state import Event, Status
from gateway.store.keys import SEEN_KEY, STATE_KEY, VARIANT_SUMS_KEY, ReviewQueueKeys
from gateway.worker.variant_sums import VariantSums, fold
from rollguard.errors import Conflict
from rollguard.review_settings import ReviewSettings
from rollguard.rollout import MetricSpec, RolloutPlan
from rollguard.settings import FlagSettings, RollguardSettings

PLAN = RolloutPlan(
    flag="chat-rollout",
    steps=(10, 50, 100),
    min_samples=200,
    min_duration_s=0,
    metrics=(
        MetricSpec(name="refusal_rate", tolerance=0.01, kind="guardrail"),
        MetricSpec(name="reply_length_ratio", tolerance=0.15, tolerance_type="relative", kind="signal"),
        MetricSpec(name="latency_p95_ms", tolerance=0.25, tolerance_type="relative", kind="signal"),
    ),
)


@pytest.fixture()
async def r(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the shared test store with no rollout state left by an earlier test (a
    controller's default 15 s lease would otherwise outlive its test)."""
    client = aioredis.from_url(redis_url)
    stale = [k async for k in client.scan_iter(match="rollguard:{rollout}*")]
    stale += [k async for k in client.scan_iter(match="rollguard:{flags}*")]
    if stale:
        await client.delete(*stale)
    yield client
    await client.aclose()


def settings(**review: Any) -> RollguardSettings:
    rev = ReviewSettings.model_validate({"queues": [{"name": "rollouts"}], **review})
    return RollguardSettings(review=rev)


class Worker:
    """Writes the detector worker's state: per arm, ``n`` requests with ``refusals`` refusals,
    replies of ``chars`` characters, latencies around ``latency_ms`` (1.0x .. 1.19x) and
    ``shadow_blocks`` shadow would-blocks, as the worker's ``VariantComparison`` objects and its
    per-variant sums (``gateway.worker.variant_sums.fold``, the worker's own code) hold them."""

    def __init__(self, r: aioredis.Redis) -> None:
        self.r = r
        f = Floors()
        self.comps = {
            name: VariantComparison(name, kind, f, "canary", "control", 10**9)
            for name, kind in (("refusal", "rate"), ("reply_log_chars", "log_length"), ("error", "rate"))
        }
        self.i = 0
        self.sums: VariantSums = {}

    def add(
        self,
        variant: str,
        n: int,
        refusals: int = 0,
        chars: float = 400.0,
        latency_ms: float = 800.0,
        shadow_blocks: int = 0,
    ) -> None:
        import math

        shadow = {"policy": "pii", "verdict": "block", "enforced": False}

        for k in range(n):
            self.i += 1
            iid = f"i{self.i}"
            self.comps["refusal"].update(variant, 1.0 if k < refusals else 0.0, iid, 0, {})
            self.comps["reply_log_chars"].update(variant, math.log(chars * (1 + 0.1 * (k % 3))), iid, 0, {})
            self.comps["error"].update(variant, 0.0, iid, 0, {})
            rec = {"metadata": {"variant": variant}, "latency_ms": latency_ms * (1 + 0.01 * (k % 20))}
            fold(self.sums, {**rec, "decisions": [shadow] if k < shadow_blocks else []})

    async def flush(self, seen_ms: int | None = None) -> None:
        state = {
            "comparisons": {
                "model=chat|tenant=t|variant=canary": {k: c.to_dict() for k, c in self.comps.items()}
            }
        }
        await self.r.set(STATE_KEY, orjson.dumps(state))
        await self.r.set(VARIANT_SUMS_KEY, orjson.dumps(self.sums))
        await self.r.zadd(
            SEEN_KEY, {f"x{self.i}": seen_ms if seen_ms is not None else int(time.time() * 1000)}
        )


async def started(svc: RolloutService, rid: str = "r1", plan: RolloutPlan = PLAN) -> None:
    await svc.create(rid, plan, "lead:ana", start=True)


# ------------------------------------------------------------------------------- override push


async def test_a_kill_reaches_a_listening_process_within_a_second(r: aioredis.Redis, redis_url: str) -> None:
    flags = Flags(FlagSettings(), bootstrap_state={"version": 1, "features": []})
    flags.start()
    listener = OverrideListener(aioredis.from_url(redis_url), flags.overrides, check_s=30)
    await listener.start()
    try:
        ctx = FlagContext(user_id="u1")
        assert flags.evaluate(["gate"], ctx).enabled["gate"] is True
        t0 = time.perf_counter()
        await OverrideStore(r).kill("gate", "test")
        while flags.evaluate(["gate"], ctx).enabled["gate"]:
            assert time.perf_counter() - t0 < 1.0, "the kill did not arrive within 1 s"
            await asyncio.sleep(0.005)
        await OverrideStore(r).set_percent("roll", 100, "test")
        await asyncio.sleep(0.3)
        snap = flags.evaluate([], ctx, variant_flags=["roll"])
        assert snap.variants["roll"] == "canary"
        await OverrideStore(r).revive("gate", "test")
        await asyncio.sleep(0.3)
        assert flags.evaluate(["gate"], ctx).enabled["gate"] is True
        assert "gate" not in flags.overrides.entries  # a revived flag without a percentage is gone
    finally:
        await listener.aclose()
        await listener.redis.aclose()
        flags.close()


async def test_the_version_check_catches_a_change_whose_push_was_lost(
    r: aioredis.Redis, redis_url: str
) -> None:
    m = OverrideMap()
    listener = OverrideListener(aioredis.from_url(redis_url), m, check_s=0.2)
    await listener.start()
    try:
        # a write that publishes nothing (as if the push was lost): only the version moves
        await r.hset("rollguard:{flags}:overrides", "f", orjson.dumps({"killed": True}))
        await r.incr("rollguard:{flags}:version")
        t0 = time.perf_counter()
        while "f" not in m.entries:
            assert time.perf_counter() - t0 < 2.0
            await asyncio.sleep(0.02)
    finally:
        await listener.aclose()
        await listener.redis.aclose()


# --------------------------------------------------------------------------- repo, CAS, lease


async def test_two_approvals_of_one_step_promote_once(r: aioredis.Redis) -> None:
    svc = build_service(settings(), r)
    await started(svc)
    s = await svc.repo.get("r1")
    await svc.transition("r1", Event.AWAIT, who="ctl", why="pass")
    results = await asyncio.gather(
        *(svc.approve("r1", f"lead:{i}") for i in range(8)), return_exceptions=True
    )
    ok = [x for x in results if not isinstance(x, BaseException)]
    refused = [x for x in results if isinstance(x, Conflict)]
    assert len(ok) == 1 and len(refused) == 7
    after = await svc.repo.get("r1")
    assert (after.status, after.step, after.revision) == (Status.RUNNING, 1, s.revision + 2)
    approvals = [a for a in await svc.repo.audit("r1") if a["event"] == "approve"]
    assert len(approvals) == 1 and approvals[0]["who"].startswith("lead:")


async def test_approve_of_a_rollout_not_awaiting_approval_is_409(r: aioredis.Redis) -> None:
    svc = build_service(settings(), r)
    await started(svc)
    with pytest.raises(Conflict) as err:
        await svc.approve("r1", "lead:ana")
    assert err.value.status == 409
    with pytest.raises(Conflict):
        await svc.create("r1", PLAN, "lead:ana")


async def test_one_lease_holder_and_a_fenced_write_after_losing_it(r: aioredis.Redis) -> None:
    a, b = ControllerLease(r, "a", ttl_ms=300), ControllerLease(r, "b", ttl_ms=300)
    fa = await a.acquire_or_renew()
    assert fa > 0 and await b.acquire_or_renew() == 0
    assert await a.acquire_or_renew() == fa  # a renewal keeps the fence
    deadline = time.monotonic() + 5  # a goes silent: b gets the lease once it expires (~300 ms)
    while (fb := await b.acquire_or_renew()) == 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert fb > fa
    svc = build_service(settings(), r)
    await started(svc)
    with pytest.raises(Fenced):  # a's write with its old fence is refused
        await svc.transition("r1", Event.BASELINE, who="a", why="x", fence=fa, baseline={"sums": {}})
    await svc.transition("r1", Event.BASELINE, who="b", why="x", fence=fb, baseline={"sums": {}})


# ------------------------------------------------------------------------------------ controller


async def look(ctl: Controller) -> int:
    return await ctl.tick()


async def test_a_guardrail_breach_rolls_back_opens_a_p1_item_and_records_evidence(r: aioredis.Redis) -> None:
    svc = build_service(settings(), r)
    await started(svc)
    w = Worker(r)
    w.add("control", 500, refusals=10)
    await w.flush()
    ctl = Controller(svc, r, "ctl-1", interval_s=60)
    await look(ctl)  # takes the baseline: the step starts now
    s = await svc.repo.get("r1")
    assert s.baseline is not None and s.step_started_ms > 0
    w.add("control", 2700, refusals=54)  # 2 %
    w.add("canary", 300, refusals=60)  # 20 %
    await w.flush()
    await look(ctl)
    s = await svc.repo.get("r1")
    assert (s.status, s.percent) == (Status.ROLLED_BACK, 0.0)
    _version, entries = await svc.overrides.load()
    assert entries["chat-rollout"].percent == 0.0
    [judgment] = await svc.repo.judgments("r1")
    assert judgment["outcome"] == "fail" and judgment["metric"] == "refusal_rate"
    assert judgment["n"] == {"control": 2700, "canary": 300}  # the step's data only: minus the baseline
    assert judgment["dropped_metrics"] == []
    assert s.last_judgment == judgment["id"]
    audit = await svc.repo.audit("r1")
    assert audit[0]["event"] == "rollback" and audit[0]["evidence_id"] == judgment["id"]
    keys = ReviewQueueKeys("rollouts")
    p1 = await r.xrange(keys.stream_of_rank(1))
    assert len(p1 or []) == 1
    # the console's view of it, from the same store
    from gateway.rollout.views import StoreRolloutViews

    view = await StoreRolloutViews(svc.repo).get_rollout("r1")
    assert view is not None and view.state.value == "rolled_back" and view.percent == 0.0
    assert view.metric == "refusal_rate" and view.evidence_id == judgment["id"]
    refusal = next(m for m in view.metrics if m.name == "refusal_rate")
    assert refusal.current is not None
    assert (refusal.current.status, refusal.current.canary_n) == ("fail", 300)


async def test_a_signal_breach_pauses_with_a_p2_item(r: aioredis.Redis) -> None:
    svc = build_service(settings(), r)
    await started(svc)
    w = Worker(r)
    await w.flush()
    ctl = Controller(svc, r, "ctl-1", interval_s=60)
    await look(ctl)
    w.add("control", 2700, chars=400)
    w.add("canary", 300, chars=800)  # twice as long
    await w.flush()
    await look(ctl)
    s = await svc.repo.get("r1")
    assert s.status is Status.PAUSED and s.percent == 10.0
    assert len(await r.xrange(ReviewQueueKeys("rollouts").stream_of_rank(2)) or []) == 1


async def _latency_breach(r: aioredis.Redis, plan: RolloutPlan) -> tuple[RolloutService, dict[str, Any]]:
    """Control at 800 ms, canary 50 % slower, everything else healthy; one look after the
    baseline. Returns the service and the judgment."""
    svc = build_service(settings(), r)
    await started(svc, plan=plan)
    w = Worker(r)
    w.add("control", 100, latency_ms=700.0)  # before the step: left out by the baseline
    await w.flush()
    ctl = Controller(svc, r, "ctl-1", interval_s=60)
    await look(ctl)
    w.add("control", 2700, refusals=27)
    w.add("canary", 300, refusals=3, latency_ms=1200.0)
    await w.flush()
    await look(ctl)
    [judgment] = await svc.repo.judgments("r1")
    return svc, judgment


async def test_a_canary_with_50_percent_higher_latency_pauses_on_a_signal_metric(r: aioredis.Redis) -> None:
    svc, judgment = await _latency_breach(r, PLAN)
    assert (judgment["outcome"], judgment["reason"], judgment["metric"]) == (
        "fail",
        "signal_breach",
        "latency_p95_ms",
    )
    assert judgment["dropped_metrics"] == []
    lat = next(m for m in judgment["metrics"] if m["metric"] == "latency_p95_ms")
    # the exact p95 of the step's latencies, within the histogram's 1 % (relative)
    exact = {v: float(np.quantile([m * (1 + 0.01 * (k % 20)) for k in range(n)], 0.95))
             for v, m, n in (("control", 800.0, 2700), ("canary", 1200.0, 300))}  # fmt: skip
    assert lat["extra"]["control_p95_ms"] == pytest.approx(exact["control"], rel=0.01)
    assert lat["extra"]["canary_p95_ms"] == pytest.approx(exact["canary"], rel=0.01)
    assert lat["canary"]["n"] == 300  # the step's canary requests
    assert lat["extra"]["canary_share_above_threshold"] > 0.5
    s = await svc.repo.get("r1")
    assert s.status is Status.PAUSED and s.percent == 10.0


async def test_a_latency_guardrail_rolls_back(r: aioredis.Redis) -> None:
    metrics = tuple(
        m.model_copy(update={"kind": "guardrail"}) if m.name == "latency_p95_ms" else m for m in PLAN.metrics
    )
    svc, judgment = await _latency_breach(r, PLAN.model_copy(update={"metrics": metrics}))
    assert (judgment["action"], judgment["metric"]) == ("rollback", "latency_p95_ms")
    s = await svc.repo.get("r1")
    assert (s.status, s.percent) == (Status.ROLLED_BACK, 0.0)


async def test_shadow_would_block_rate_is_judged_from_the_worker_sums(r: aioredis.Redis) -> None:
    plan = RolloutPlan(
        flag="chat-rollout",
        steps=(10, 50, 100),
        min_samples=200,
        min_duration_s=0,
        metrics=(MetricSpec(name="shadow_would_block_rate", tolerance=0.02, kind="guardrail"),),
    )
    svc = build_service(settings(), r)
    await started(svc, plan=plan)
    w = Worker(r)
    await w.flush()
    ctl = Controller(svc, r, "ctl-1", interval_s=60)
    await look(ctl)
    w.add("control", 2700, shadow_blocks=27)  # 1 %
    w.add("canary", 300, shadow_blocks=45)  # 15 %
    await w.flush()
    await look(ctl)
    [judgment] = await svc.repo.judgments("r1")
    [ev] = judgment["metrics"]
    assert (ev["metric"], ev["status"]) == ("shadow_would_block_rate", "fail")
    assert (ev["control"]["n"], ev["control"]["sum"]) == (2700, 27.0)
    assert (ev["canary"]["n"], ev["canary"]["sum"]) == (300, 45.0)
    assert (await svc.repo.get("r1")).status is Status.ROLLED_BACK


async def _review(r: aioredis.Redis, variant: str, labels: list[str], tag: str) -> None:
    """Enqueue one item per label in queue ``safety`` (raised by a block of policy ``pii`` on an
    interaction of ``variant``) and decide each with that label (k = 1)."""
    from gateway.review.items import NewItem
    from gateway.review.queue import ReviewQueues
    from rollguard.review_settings import Priority

    q = ReviewQueues(r, lease_ms=60_000)
    block = {"policy": "pii", "verdict": "block", "stage": "pre_call", "enforced": True}
    for i, _label in enumerate(labels):
        item = NewItem(
            source="interaction",
            source_id=f"{tag}-{variant}-{i}",
            tenant="t",
            priority=Priority.P3,
            claim_by_ms=0,
            decide_by_ms=0,
            payload={"decisions": [block], "flags": {"variants": {"chat-rollout": variant}}},
            detectors=("pii",),
            variant=variant,
        )
        await q.enqueue("safety", item, 1)
    want = {f"{tag}-{variant}-{i}": lab for i, lab in enumerate(labels)}
    decided = 0
    while decided < len(labels):
        leases = await q.claim("safety", "rev", count=100)
        assert leases
        for lease in leases:
            it = await q.get_item("safety", lease.item_id)
            assert it is not None
            label = want.get(it.source_id)
            if label is None:  # another call's item: leave it to its own call
                await q.release(lease.id, "rev", lease.item_id)
                continue
            await q.verdict(lease.id, "rev", lease.item_id, {"label": label})
            decided += 1


async def test_reviewer_verdicts_reach_the_judgment_and_stale_ones_never_pass(r: aioredis.Redis) -> None:
    from gateway.review.service import ReviewService

    plan = PLAN.model_copy(
        update={
            "metrics": (
                MetricSpec(name="refusal_rate", tolerance=0.01, kind="guardrail"),
                MetricSpec(name="reviewer_regression_rate", tolerance=0.05, kind="guardrail"),
                MetricSpec(name="reviewer_false_positive_rate", tolerance=0.05, kind="signal"),
            )
        }
    )
    st = settings(queues=[{"name": "rollouts"}, {"name": "safety"}])
    assert st.review is not None
    svc = build_service(st, r)
    await started(svc, plan=plan)
    # verdicts from before the step started: stale, never counted for it
    await _review(r, "canary", ["acceptable"] * 40, "old")
    await _review(r, "control", ["acceptable"] * 40, "old")
    await asyncio.sleep(0.01)
    w = Worker(r)
    await w.flush()
    ctl = Controller(svc, r, "ctl-1", interval_s=60, reviews=ReviewService(st.review, r))
    # baseline: the step starts now (0 here means another process on this Valkey holds the lease)
    assert await look(ctl) == 1, await ctl.lease.holder_now()
    assert (await svc.repo.get("r1")).baseline is not None
    w.add("control", 2700, refusals=27)
    w.add("canary", 300, refusals=3)  # healthy detector data, enough of it
    await w.flush()
    assert await look(ctl) == 1
    [j1] = await svc.repo.judgments("r1")
    no_data = ("inconclusive", "no_data", "reviewer_regression_rate")
    assert (j1["outcome"], j1["reason"], j1["metric"]) == no_data
    assert j1["dropped_metrics"] == []
    assert (await svc.repo.get("r1")).status is Status.RUNNING
    # fresh verdicts: control 5 of 100 not acceptable, canary 60 of 100 (refusals); of the
    # canary's 100 policy blocks 40 were not confirmed (acceptable or a detector false positive)
    await _review(r, "control", ["acceptable"] * 95 + ["refusal"] * 5, "new")
    fp_labels = ["acceptable"] * 20 + ["detector_false_positive"] * 20
    await _review(r, "canary", fp_labels + ["refusal"] * 60, "new")
    await look(ctl)
    j2 = (await svc.repo.judgments("r1"))[0]  # newest first
    ev = {m["metric"]: m for m in j2["metrics"]}
    reg, fp = ev["reviewer_regression_rate"], ev["reviewer_false_positive_rate"]
    assert (reg["control"]["n"], reg["control"]["sum"]) == (100, 5.0)  # the 40 stale ones left out
    assert (reg["canary"]["n"], reg["canary"]["sum"]) == (100, 60.0)
    assert (fp["control"]["n"], fp["control"]["sum"]) == (100, 95.0)  # acceptable: block not confirmed
    assert (fp["canary"]["n"], fp["canary"]["sum"]) == (100, 40.0)
    assert reg["status"] == "fail" and fp["status"] != "fail"
    assert (j2["action"], j2["metric"]) == ("rollback", "reviewer_regression_rate")
    assert (await svc.repo.get("r1")).status is Status.ROLLED_BACK


async def test_a_stopped_worker_makes_the_step_inconclusive_never_pass(r: aioredis.Redis) -> None:
    svc = build_service(settings(), r)
    await started(svc)
    w = Worker(r)
    await w.flush()
    ctl = Controller(svc, r, "ctl-1", interval_s=60)
    await look(ctl)
    w.add("control", 2700, refusals=27)
    w.add("canary", 300, refusals=3)  # healthy data, enough of it ...
    await r.delete(SEEN_KEY)
    await w.flush(seen_ms=int(time.time() * 1000) - 10 * 60 * 1000)  # ... but the worker stopped 10 min ago
    for _ in range(3):
        await look(ctl)
    s = await svc.repo.get("r1")
    assert s.status is Status.RUNNING
    outcomes = {(j["outcome"], j["reason"]) for j in await svc.repo.judgments("r1")}
    assert outcomes == {("inconclusive", "stale")}
    await w.flush()  # the worker is back: the same data now passes
    await look(ctl)
    assert (await svc.repo.get("r1")).status is Status.AWAITING_APPROVAL


async def test_a_restarted_controller_continues_at_the_same_step_with_the_same_evidence(
    r: aioredis.Redis,
) -> None:
    svc = build_service(settings(), r)
    await started(svc)
    w = Worker(r)
    w.add("control", 100)
    await w.flush()
    first = Controller(svc, r, "ctl-1", interval_s=60, lease_ms=500)
    await look(first)
    before = await svc.repo.get("r1")
    w.add("control", 2700, refusals=27)
    w.add("canary", 100, refusals=1)
    await w.flush()
    # the process dies without releasing its lease; a new one takes over after lease_ms
    second = Controller(build_service(settings(), r), r, "ctl-2", interval_s=60, lease_ms=500)
    await first.lease.acquire_or_renew()  # the first still holds the lease: the second stands by
    assert await look(second) == 0
    deadline = time.monotonic() + 10  # then the first goes silent: its lease expires
    while await look(second) == 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    after = await svc.repo.get("r1")
    assert (after.step, after.baseline, after.step_started_ms) == (
        before.step,
        before.baseline,
        before.step_started_ms,
    )
    [j] = await svc.repo.judgments("r1")
    assert j["n"]["canary"] == 100 and j["controller"] == "ctl-2"


async def test_two_controllers_never_promote_twice(r: aioredis.Redis) -> None:
    plan = PLAN.model_copy(update={"auto_promote": True, "steps": (10, 25, 50, 100)})
    svc = build_service(settings(), r)
    await started(svc, plan=plan)
    w = Worker(r)
    await w.flush()
    ctls = [Controller(build_service(settings(), r), r, f"ctl-{i}", interval_s=60) for i in range(3)]
    await asyncio.gather(*(look(c) for c in ctls))
    w.add("control", 2700, refusals=27)
    w.add("canary", 300, refusals=3)
    await w.flush()
    for _ in range(3):
        await asyncio.gather(*(look(c) for c in ctls))
    s = await svc.repo.get("r1")
    assert s.step == 1  # promoted once; the next step needs its own fresh data
    promotes = [a for a in await svc.repo.audit("r1") if a["event"] == "promote"]
    assert len(promotes) == 1
    assert len({a["who"] for a in await svc.repo.audit("r1") if a["fence"]}) == 1  # one controller acted


async def test_configured_plans_are_created_once_pending(r: aioredis.Redis) -> None:
    svc = build_service(settings(), r)
    assert await svc.ensure({"a": PLAN}) == ["a"]
    assert await svc.ensure({"a": PLAN}) == []
    assert (await svc.repo.get("a")).status is Status.PENDING


async def test_a_rollback_calls_the_alert_webhook_with_the_evidence_id(r: aioredis.Redis) -> None:
    import http.server
    import threading

    got: list[dict[str, Any]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(orjson.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        s = settings()
        s = s.model_copy(
            update={
                "rollouts": s.rollouts.model_copy(
                    update={"webhook_url": f"http://127.0.0.1:{server.server_port}/hook"}
                )
            }
        )
        svc = build_service(s, r)
        await started(svc)
        w = Worker(r)
        await w.flush()
        ctl = Controller(svc, r, "ctl-1", interval_s=60)
        await ctl.tick()
        w.add("control", 2700, refusals=27)
        w.add("canary", 300, refusals=60)
        await w.flush()
        await ctl.tick()
        [body] = got
        state = await svc.repo.get("r1")
        assert body["event"] == "rollout_rollback" and body["metric"] == "refusal_rate"
        assert body["evidence_id"] == state.last_judgment and body["review_item"]
    finally:
        server.shutdown()


async def test_a_crash_between_the_state_write_and_the_flag_change_is_repaired(r: aioredis.Redis) -> None:
    from gateway.rollout.state import RolloutState, apply

    svc = build_service(settings(), r)
    # the transition was written, the process died before it set the flag
    state = apply(RolloutState(id="r1", plan=PLAN), Event.START, now_ms=int(time.time() * 1000))
    await svc.repo.save(state, expected_revision=-1, who="lead:ana", event="start")
    _v, entries = await svc.overrides.load()
    assert "chat-rollout" not in entries
    await Controller(svc, r, "ctl-1", interval_s=60).tick()
    _v, entries = await svc.overrides.load()
    assert entries["chat-rollout"].percent == 10.0
