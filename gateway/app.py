"""The FastAPI application factory. ``create_app()`` reads the config (``$ROLLGUARD_CONFIG`` or the
embedded defaults); the lifespan builds the per-process runtime after any fork: store (embedded
Valkey unless ``ROLLGUARD_REDIS_URL``), one Unleash client, the upstream pool, the policy pipeline.

Run with ``rollguard serve`` or ``uvicorn gateway.app:create_app --factory``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from gateway import client_header_log
from gateway.audit import AuditTrail
from gateway.auth import Authenticator
from gateway.config_check import check_config, litellm_warning
from gateway.defaults import demo_model_entries
from gateway.errors import install_error_handlers, response_for
from gateway.flags import Flags
from gateway.flags.cache import CachedFlags
from gateway.large import LargeInputs
from gateway.metrics_endpoint import mount_metrics_route
from gateway.ops_audit import OperationsAudit, audit_sighup
from gateway.ratelimit import RateLimits
from gateway.request_id import CURRENT as CURRENT_REQUEST_ID
from gateway.request_id import install_log_field, request_id_of, stamp
from gateway.rollout import api as rollout_api
from gateway.routes import admin, guard, health, openai
from gateway.runtime import Runtime
from gateway.service import ChatService
from gateway.store import Store
from gateway.store.tenant_retention import TenantRetention
from gateway.telemetry import GatewayMetrics, setup_telemetry
from gateway.upstream import Upstream
from gateway.upstream.deployment_limits import deployment_budgets
from rollguard.config_version import config_version
from rollguard.errors import RollguardError
from rollguard.settings import RollguardSettings, config_source, load_settings

if TYPE_CHECKING:
    from policies.pipeline import Pipeline

log = logging.getLogger("rollguard.gateway")


class FastPath:
    """The ASGI front of the gateway. ``POST /v1/chat/completions`` (the hot path) goes straight
    to its endpoint, skipping FastAPI's router and middleware stack (measured: about a third of
    the gateway's CPU per request, see docs/decisions.md); errors go through the same boundary
    (``gateway.errors.response_for``). Everything else, the lifespan included, is FastAPI's; a
    failed lifespan startup is reported by its one-line ``app.state.startup_error`` instead of the
    traceback Starlette puts in ``lifespan.startup.failed`` (uvicorn logs that message and exits 3).
    """

    HOT = ("POST", "/v1/chat/completions")

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.config_version: str = app.state.config_version

    @property
    def state(self) -> Any:
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # Every HTTP response carries x-request-id and the config version (gateway.request_id).
            rid = request_id_of(scope)
            scope.setdefault("state", {})["request_id"] = rid
            token = CURRENT_REQUEST_ID.set(rid)
            try:
                await self._http(scope, receive, stamp(send, rid, self.config_version))
            finally:
                CURRENT_REQUEST_ID.reset(token)
            return
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["method"], scope["path"]) == self.HOT:
            scope["app"] = self.app
            request = Request(scope, receive)
            try:
                response = await openai.chat_completions(request)
            except Exception as exc:
                response = response_for(request, exc)
            try:
                await response(scope, receive, send)
            finally:
                reservation = scope.get("state", {}).get("reservation")
                if reservation is not None:
                    reservation.release()  # idempotent: the response's background released it
            return
        await self.app(scope, receive, send)

    def _lifespan_send(self, send: Send) -> Send:
        async def forward(message: Message) -> None:
            error = getattr(self.app.state, "startup_error", None)
            if message["type"] == "lifespan.startup.failed" and error:
                message = {**message, "message": error}
            await send(message)

        return forward


def create_app(settings: RollguardSettings | None = None, *, source: str = "", **overrides: Any) -> FastPath:
    """Build the gateway app. ``source``: the file ``settings`` came from (named in errors);
    ``overrides`` (tests): ``span_exporter``, ``metric_reader``.

    Raises ``ConfigError`` for an invalid config (file + field named), from the same checks as
    ``rollguard config check`` (``gateway.config_check.check_config``).

    The lifespan starts, in order, telemetry, the demo upstream (no ``model_list``), the store, the
    flags, the rollout parts (override listener, configured plans, controller: gateway.rollout), the
    review service and the upstream pool; it registers each one's cleanup as soon as it is
    started, so a startup that fails part-way stops everything started so far (the embedded Valkey
    included) before the error reaches the server. A ``RollguardError`` at startup is reported as one
    line (``app.state.startup_error``, see ``FastPath``), not a traceback.
    """
    if settings is None:
        source = config_source()
        settings = load_settings()
    checked = check_config(settings, source)
    settings, pipeline = checked.settings, checked.pipeline
    ignored = litellm_warning(checked.ignored)
    version = config_version(settings)
    install_log_field()
    client_header_log.install()  # a bad traceparent: one warning a minute, not one per request

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if ignored:
                log.warning("%s", ignored)  # once per serving process, at startup
            try:
                audit = await _start(app, settings, pipeline, stack, overrides)
            except RollguardError as exc:
                app.state.startup_error = f"startup failed: {exc}"  # logged once, by the server
                raise
            try:
                yield
            finally:
                await _bounded(audit.drain(), "audit drain")

    app = FastAPI(
        title="rollguard",
        version="0.1.0",
        lifespan=lifespan,
        description="Staged-rollout guardrail gateway for LLMs (OpenAI-compatible).",
    )
    app.state.startup_error = None
    app.state.config_version = version
    install_error_handlers(app)
    app.include_router(openai.router)
    app.include_router(guard.router)
    app.include_router(admin.router)
    app.include_router(health.router)
    app.include_router(rollout_api.router)
    prom = settings.telemetry.prometheus
    if prom.enabled and prom.port is None:
        mount_metrics_route(app, prom.path)
    return FastPath(app)


SHUTDOWN_STEP_S = 15.0
"""Seconds one shutdown step may take before the lifespan moves on to the next (a stuck step must
not keep the embedded Valkey running or the process alive)."""


async def _bounded(step: Awaitable[None], what: str, timeout_s: float = SHUTDOWN_STEP_S) -> None:
    """Await ``step`` for at most ``timeout_s`` seconds; log (do not raise) a timeout or an error, so
    that the shutdown steps after it still run. The step is left running on a timeout (cancelling a
    task that swallows its cancellation would block here again)."""
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        log.error("shutdown: %s did not finish in %.0f s; continuing", what, timeout_s)
        return
    exc = task.exception()
    if exc is not None:
        log.error("shutdown: %s failed: %s", what, exc)


def _async(close: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        close()

    return run


def _cleanup(stack: contextlib.AsyncExitStack, close: Callable[[], Awaitable[None]], what: str) -> None:
    async def run() -> None:
        await _bounded(close(), what)

    stack.push_async_callback(run)


async def _start(
    app: FastAPI,
    settings: RollguardSettings,
    pipeline: Pipeline,
    stack: contextlib.AsyncExitStack,
    overrides: dict[str, Any],
) -> AuditTrail:
    """Start the runtime into ``app.state.runtime``; every started part's cleanup goes on ``stack``
    (run in reverse order at shutdown or when a later part fails). Returns the audit trail (drained
    first at shutdown)."""
    metrics = _start_telemetry(app, settings, stack, overrides)
    settings = await _with_demo_upstream(settings, stack)
    store = Store(settings.store, tenant_retention=TenantRetention.from_settings(settings.tenants))
    _cleanup(stack, store.aclose, "store")  # also stops an embedded Valkey a failed start() acquired
    await store.start()
    flags = Flags(settings.flags)
    _cleanup(stack, flags.aclose, "flags")
    await flags.astart()
    version: str = app.state.config_version
    await _audit_operations(store, flags, version, len(pipeline.policies))
    from gateway.rollout.runtime import start_rollouts

    rollouts = await start_rollouts(settings, store.redis, flags, version)  # override map loaded first
    _cleanup(stack, rollouts.aclose, "rollouts")
    limits = RateLimits.start(settings.rate_limits, store.url, deployment_budgets(settings))
    _cleanup(stack, limits.aclose, "rate limits")
    upstream = Upstream(settings, limits=limits)
    _cleanup(stack, upstream.aclose, "upstream pool")
    raw = settings.raw_content_tenants()
    extras: dict[str, Any] = {"rollouts": rollouts.service}
    escalate = _mount_review(app, settings, store, extras, stack)
    large = LargeInputs(settings.gateway.large_input_chars, pipeline=pipeline)
    _cleanup(stack, large.aclose, "large-input pool")
    audit = AuditTrail(store.append_interaction, escalate=escalate, raw_tenants=raw, large=large)
    service = ChatService(
        settings, pipeline, upstream, CachedFlags(flags), audit, metrics, large=large, config_version=version
    )
    app.state.runtime = Runtime(
        settings=settings,
        auth=Authenticator(settings.gateway.api_keys),
        service=service,
        flags=flags,
        store=store,
        extras=extras,
        limits=limits,
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
    return audit


def _start_telemetry(
    app: FastAPI, settings: RollguardSettings, stack: contextlib.AsyncExitStack, overrides: dict[str, Any]
) -> GatewayMetrics:
    """Tracing, this app's metric readers and its Prometheus endpoint (``gateway.telemetry``);
    the registry goes to ``app.state.metrics_registry`` for the ``/metrics`` route."""
    tel = setup_telemetry(
        settings.telemetry,
        variants=(v for ro in settings.flags.rollouts.values() for v in ro.variants),
        workers=settings.gateway.workers,
        span_exporter=overrides.get("span_exporter"),
        metric_reader=overrides.get("metric_reader"),
    )
    _cleanup(stack, _async(tel.close), "telemetry")
    app.state.metrics_registry = tel.registry
    return tel.metrics


async def _audit_operations(store: Store, flags: Flags, version: str, policies: int) -> None:
    """Record this process's ``config_loaded`` in the operations audit stream and make SIGHUP flag
    reloads recorded there too (``gateway.ops_audit``)."""
    ops = OperationsAudit(store.redis, version)
    if flags.install_sighup_handler():
        audit_sighup(flags.reload, ops)
    await ops.record("config_loaded", by="config", policies=policies)


async def _with_demo_upstream(
    settings: RollguardSettings, stack: contextlib.AsyncExitStack
) -> RollguardSettings:
    """With no ``model_list``, start the local demo upstream and return a copy of the settings that
    serves it (the loaded settings are never changed after loading); otherwise the settings as given."""
    if settings.model_list:
        return settings
    from gateway.demo.upstream import start_stub

    stub_runner, base_url = await start_stub("127.0.0.1", 0)
    _cleanup(stack, stub_runner.cleanup, "demo upstream")
    log.warning("no model_list configured: serving the local demo model at %s", base_url)
    return settings.model_copy(update={"model_list": demo_model_entries(base_url)})


def _mount_review(
    app: FastAPI,
    settings: RollguardSettings,
    store: Store,
    extras: dict[str, Any],
    stack: contextlib.AsyncExitStack,
) -> Any:
    """Mount and start the review service when configured; its console's rollout pages read the
    rollout controller's store. Returns the audit trail's escalation hook (None without review)."""
    review_router = _review(settings, store, extras)
    if review_router is None:
        return None
    app.include_router(review_router)
    extras["review"].start()
    _cleanup(stack, extras["review"].aclose, "review service")
    slot = getattr(review_router, "rollout_views", None)
    if slot is not None:
        from gateway.rollout.views import StoreRolloutViews

        slot.source = StoreRolloutViews(extras["rollouts"].repo)
    return _escalator(extras["review"])


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
