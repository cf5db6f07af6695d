"""A small FastAPI app that mounts only the review router (the full gateway app is not needed),
served by a real uvicorn server; reviewer tokens and sample records for the review tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI

from gateway.review.api import create_review_router
from gateway.review.config import parse_review_settings
from gateway.review.rollout_view import RolloutViews
from gateway.review.service import ReviewService
from rollguard.settings import RollguardSettings

TOKENS = {
    "ana": "tok-ana-reviewer",
    "ben": "tok-ben-reviewer",
    "eve": "tok-eve-globex",
    "lea": "tok-lea-lead",
    "ops": "tok-ops-operator",
}


def review_config(**overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "k_overlap": 1,
        "lease_s": 60,
        "queues": [
            {"name": "safety", "description": "policy flags"},
            {"name": "rollout", "k": 2, "description": "canary vs control"},
        ],
        "routes": [
            {"queue": "safety", "priority": "P1", "policy": ["pii", "secrets"]},
            {"queue": "safety", "priority": "P2", "source": ["interaction"]},
            {"queue": "rollout", "priority": "P1", "source": ["anomaly"]},
        ],
        "reviewers": [
            {"name": "ana", "token": TOKENS["ana"], "queues": ["safety", "rollout"], "tenants": ["acme"]},
            {"name": "ben", "token": TOKENS["ben"], "queues": ["safety", "rollout"], "tenants": ["acme"]},
            {"name": "eve", "token": TOKENS["eve"], "queues": ["safety"], "tenants": ["globex"]},
            {"name": "lea", "token": TOKENS["lea"], "role": "lead"},
            {"name": "ops", "token": TOKENS["ops"], "role": "operator"},
        ],
    }
    cfg.update(overrides)
    return cfg


def build_app(
    redis_url: str, review: dict[str, Any] | None = None, rollouts: RolloutViews | None = None
) -> tuple[FastAPI, ReviewService]:
    settings = RollguardSettings(review=review or review_config())
    client = aioredis.Redis.from_url(redis_url)
    router = create_review_router(settings, client)
    service: ReviewService = router.review_service  # type: ignore[attr-defined]
    if rollouts is not None:
        router.rollout_views.source = rollouts  # type: ignore[attr-defined]

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            await service.aclose()
            await client.aclose()

    app = FastAPI(title="review test app", lifespan=lifespan)
    app.include_router(router)
    return app, service


def flagged_record(
    rid: str, tenant: str = "acme", *, variant: str | None = None, completion: str | None = None
) -> dict[str, Any]:
    """An audit record shaped like ``Interaction.to_record()`` with a flagged PII decision whose
    evidence points at the placeholder, and a hedging signal on the completion."""
    user = "My email is <EMAIL_ADDRESS_1>, can you reset my password?"
    start = user.index("<EMAIL")
    reply = completion or "I think it might possibly be done, perhaps, from the settings page."
    hedge = reply.index("might possibly") if "might possibly" in reply else 0
    return {
        "id": rid,
        "created_ms": 1_760_000_000_000,
        "tenant": tenant,
        "model": "demo-chat",
        "upstream_model": "demo-a",
        "messages": [
            {"role": "system", "content": "You are a support assistant."},
            {"role": "user", "content": user},
        ],
        "completion": reply,
        "verdict": "flag",
        "flags": {"enabled": {}, "variants": {"model-rollout": variant or "control"}},
        "decisions": [
            {
                "policy": "pii",
                "policy_type": "pii",
                "stage": "pre_call",
                "verdict": "flag",
                "score": 0.9,
                "reason": "EMAIL_ADDRESS in messages[1]",
                "evidence": [
                    {
                        "kind": "EMAIL_ADDRESS",
                        "location": "messages[1].content",
                        "start": start,
                        "end": start + len("<EMAIL_ADDRESS_1>"),
                        "detail": "",
                    }
                ],
                "elapsed_ms": 0.2,
                "enforced": True,
                "error": None,
            }
        ],
        "signals": {
            "hedging": {
                "score": 0.7,
                "flagged": True,
                "evidence": [
                    {
                        "kind": "hedge_phrase",
                        "location": "completion",
                        "start": hedge,
                        "end": hedge + len("might possibly"),
                        "detail": "",
                    }
                ],
            }
        },
        "metadata": {"variant": variant} if variant else {},
    }


def injection_record(rid: str, user_text: str) -> dict[str, Any]:
    """A flagged prompt-injection interaction (routed at P2 by ``review_config``) whose last user
    message is ``user_text``."""
    rec = flagged_record(rid)
    rec["messages"] = [{"role": "user", "content": user_text}]
    rec["decisions"] = [
        {
            "policy": "prompt_injection",
            "policy_type": "prompt_injection",
            "stage": "pre_call",
            "verdict": "flag",
            "score": 0.5,
            "reason": "score 0.50",
            "evidence": [],
            "elapsed_ms": 1.0,
            "enforced": True,
            "error": None,
        }
    ]
    rec["signals"] = {}
    return rec


def seed_safety(redis_url: str, injection_text: str) -> dict[str, str]:
    """Three acme items in ``safety``: two PII flags (P1, ``pii-a`` then ``pii-b``) and a
    prompt-injection flag (P2, ``inj``, the newest) whose user text is ``injection_text``; item ids
    by those names."""

    async def run() -> dict[str, str]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            svc = ReviewService(parse_review_settings(review_config()), client)
            out = {}
            for name, rec in (
                ("pii-a", flagged_record("int-pii-a")),
                ("pii-b", flagged_record("int-pii-b")),
                ("inj", injection_record("int-inj", injection_text)),
            ):
                out[name] = (await svc.escalate_interaction(rec))[0].item_id
                await asyncio.sleep(0.01)  # distinct creation times: inj is the newest
            return out
        finally:
            await client.aclose()

    return asyncio.run(run())
