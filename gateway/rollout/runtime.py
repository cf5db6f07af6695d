"""Building the rollout parts from the settings, and starting them in a gateway process: the
override listener (every process), the configured plans (created pending if missing) and the
controller loop (every process; the lease picks the one that acts)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import redis.asyncio as aioredis

from gateway.flags import Flags
from gateway.ops_audit import OperationsAudit, audited_reload
from gateway.review.service import ReviewService
from gateway.rollout.actuator import Actuator, OverrideActuator, UnleashActuator
from gateway.rollout.controller import Controller
from gateway.rollout.notify import BreachNotifier
from gateway.rollout.overrides import OverrideListener, OverrideStore
from gateway.rollout.repo import RolloutRepo
from gateway.rollout.service import RolloutService
from gateway.store.keys import consumer_name
from rollguard.config_version import config_version as compute_config_version
from rollguard.errors import StoreError
from rollguard.secrets import resolve_secret
from rollguard.settings import RollguardSettings

log = logging.getLogger("rollguard.rollout")


def build_actuator(settings: RollguardSettings, overrides: OverrideStore) -> Actuator:
    """The Unleash Admin API actuator when ``rollouts.unleash_admin.token`` resolves and a URL is
    known, else the store override."""
    admin = settings.rollouts.unleash_admin
    token = resolve_secret(admin.token)
    url = admin.url or settings.flags.unleash_url
    if token and url:
        env = admin.environment or settings.flags.environment
        return UnleashActuator(url, token, project=admin.project, environment=env, overrides=overrides)
    return OverrideActuator(overrides)


def build_service(
    settings: RollguardSettings, redis: aioredis.Redis, config_version: str | None = None
) -> RolloutService:
    """The rollout service; its kill switch, flag overrides and rollbacks are recorded in the
    operations audit stream under ``config_version`` (default: the version of ``settings``)."""
    ops = OperationsAudit(redis, config_version or compute_config_version(settings))
    overrides = OverrideStore(redis, ops)
    return RolloutService(
        RolloutRepo(redis),
        build_actuator(settings, overrides),
        BreachNotifier(redis, settings.review, settings.rollouts),
        overrides,
        ops=ops,
    )


@dataclass
class RolloutRuntime:
    """The rollout parts of one gateway process."""

    service: RolloutService
    listener: OverrideListener
    controller: Controller | None
    ensure_task: asyncio.Task[None] | None = None

    async def aclose(self) -> None:
        if self.controller is not None:
            await self.controller.aclose()
        await self.listener.aclose()
        if self.ensure_task is not None:
            self.ensure_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.ensure_task


async def _ensure_later(service: RolloutService, settings: RollguardSettings, every_s: float = 5.0) -> None:
    """Create the configured plans once the store answers (every ``every_s`` seconds until then)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            made = await service.ensure(settings.rollouts.plans)
        except StoreError:
            continue
        if made:
            log.info("rollouts: configured plan(s) created (pending): %s", ", ".join(made))
        return


async def start_rollouts(
    settings: RollguardSettings, redis: aioredis.Redis, flags: Flags, config_version: str | None = None
) -> RolloutRuntime:
    """Start the override listener (its first load happens before this returns when the store
    answers: no request is served with a stale kill switch), create the configured plans, start the
    controller. With the store down the gateway still starts (degraded, issue 10): the listener
    and the controller retry in the background, and the plans are created by the first controller
    look that reaches the store."""
    service = build_service(settings, redis, config_version)
    reload = audited_reload(flags.reload, service.ops, "store")
    listener = OverrideListener(redis, flags.overrides, on_reload=reload)
    await listener.start()
    runtime = RolloutRuntime(service, listener, None)
    try:
        try:
            made = await service.ensure(settings.rollouts.plans)
        except StoreError as exc:
            made = []
            log.warning("rollouts: the store does not answer (%s); plans are created later", exc)
            runtime.ensure_task = asyncio.create_task(
                _ensure_later(service, settings), name="rollguard-plans"
            )
        if made:
            log.info("rollouts: configured plan(s) created (pending): %s", ", ".join(made))
        ctl = settings.rollouts.controller
        if ctl.enabled:
            runtime.controller = Controller(
                service,
                redis,
                consumer_name("rollout-controller"),
                interval_s=ctl.interval_s,
                lease_ms=ctl.lease_ms,
                reviews=ReviewService(settings.review, redis) if settings.review is not None else None,
            )
            runtime.controller.start()
    except StoreError:
        with contextlib.suppress(StoreError):
            await runtime.aclose()
        raise
    return runtime
