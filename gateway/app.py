"""The FastAPI application factory. ``create_app()`` reads the config (``$ROLLGUARD_CONFIG`` or the
embedded defaults); the lifespan builds the per-process runtime after any fork: store (embedded
Valkey unless ``ROLLGUARD_REDIS_URL``), one Unleash client, the upstream pool, the policy pipeline.

Run with ``rollguard serve`` or ``uvicorn gateway.app:create_app --factory``.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from gateway.audit import AuditTrail
from gateway.auth import Authenticator, check_bind
from gateway.defaults import demo_model_entries, with_embedded_defaults
from gateway.errors import install_error_handlers, response_for
from gateway.flags import Flags
from gateway.routes import admin, guard, health, openai
from gateway.runtime import Runtime
from gateway.service import ChatService
from gateway.store import Store
from gateway.telemetry import setup_telemetry
from gateway.upstream import Upstream
from policies.pipeline import build_pipeline
from rollguard.errors import ConfigError
from rollguard.settings import RollguardSettings, load_settings

log = logging.getLogger("rollguard.gateway")


class FastPath:
    """The ASGI front of the gateway. ``POST /v1/chat/completions`` (the hot path) goes straight
    to its endpoint, skipping FastAPI's router and middleware stack (measured: about a third of
    the gateway's CPU per request, see docs/decisions.md); errors go through the same boundary
    (``gateway.errors.response_for``). Everything else, the lifespan included, is FastAPI's.
    """

    HOT = ("POST", "/v1/chat/completions")

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    @property
    def state(self) -> Any:
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["method"], scope["path"]) == self.HOT:
            scope["app"] = self.app
            request = Request(scope, receive)
            try:
                response = await openai.chat_completions(request)
            except Exception as exc:
                response = response_for(request, exc)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(settings: RollguardSettings | None = None, **overrides: Any) -> FastPath:
    """Build the gateway app. ``overrides`` (tests): ``span_exporter``, ``metric_reader``.

    Raises ``ConfigError`` for an invalid config (file + field named).
    """
    if settings is None:
        settings = load_settings()
    try:
        pipeline = build_pipeline(settings.policies)
    except ValueError as exc:
        raise ConfigError(str(exc), field="policies") from exc
    check_bind(settings.gateway.host, settings.gateway.api_keys)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics = setup_telemetry(
            span_exporter=overrides.get("span_exporter"), metric_reader=overrides.get("metric_reader")
        )
        with_embedded_defaults(settings)
        stub_runner = None
        if not settings.model_list:
            from gateway.demo.upstream import start_stub

            stub_runner, base_url = await start_stub("127.0.0.1", 0)
            settings.model_list = demo_model_entries(base_url)
            log.warning("no model_list configured: serving the local demo model at %s", base_url)
        store = Store(settings.store)
        await store.start()
        flags = Flags(settings.flags)
        await flags.astart()
        flags.install_sighup_handler()
        upstream = Upstream(settings)
        raw = frozenset(name for name, t in settings.tenants.items() if t.raw_content_opt_in)
        extras: dict[str, Any] = {}
        escalate = None
        review_router = _review(settings, store, extras)
        if review_router is not None:
            app.include_router(review_router)
            extras["review"].start()
            escalate = _escalator(extras["review"])
        audit = AuditTrail(store.append_interaction, escalate=escalate, raw_tenants=raw)
        service = ChatService(settings, pipeline, upstream, flags, audit, metrics)
        app.state.runtime = Runtime(
            settings=settings,
            auth=Authenticator(settings.gateway.api_keys),
            service=service,
            flags=flags,
            store=store,
            extras=extras,
        )
        # Everything built so far (imports, models, config) lives as long as the process: move it
        # out of the collector's sight so later full collections walk only request-time objects
        # (~280 ms -> <1 ms of CPU per full collection measured with litellm loaded; gc.freeze,
        # Python docs "gc — Garbage Collector interface").
        gc.collect()
        gc.freeze()
        log.info(
            "rollguard gateway ready: %d model alias(es), %d policies",
            len(settings.model_names()),
            len(pipeline.policies),
        )
        try:
            yield
        finally:
            await audit.drain()
            if "review" in extras:
                await extras["review"].aclose()
            await upstream.aclose()
            await flags.aclose()
            await store.aclose()
            if stub_runner is not None:
                await stub_runner.cleanup()

    app = FastAPI(
        title="rollguard",
        version="0.1.0",
        lifespan=lifespan,
        description="Staged-rollout guardrail gateway for LLMs (OpenAI-compatible).",
    )
    install_error_handlers(app)
    app.include_router(openai.router)
    app.include_router(guard.router)
    app.include_router(admin.router)
    app.include_router(health.router)
    return FastPath(app)


def _escalator(service: Any) -> Any:
    async def escalate(record: dict[str, Any]) -> None:
        await service.escalate_interaction(record)

    return escalate


def _review(settings: RollguardSettings, store: Store, extras: dict[str, Any]) -> Any:
    """Mount the review console when the review package is configured (issue 4)."""
    if not settings.review:
        return None
    try:
        from gateway.review.api import create_review_router
    except ImportError:
        return None
    router = create_review_router(settings, store.redis)
    service = getattr(router, "review_service", None)
    if service is None:
        return None
    extras["review"] = service
    return router
