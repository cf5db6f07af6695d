"""Running one detector worker process: options from the settings, the Redis connection (the
embedded server when no URL is configured), signal handling, and the counters as JSON. The
command line is ``rollguard worker`` (``gateway.cli``)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal

import orjson
import redis.asyncio as aioredis

from detectors.engine import EngineConfig
from gateway.store.embedded import EmbeddedValkey
from gateway.worker.consumer import DetectorWorker, WorkerOptions, WorkerStats
from rollguard.settings import RollguardSettings

log = logging.getLogger("rollguard.worker")


def worker_options(settings: RollguardSettings) -> tuple[EngineConfig, WorkerOptions]:
    """The engine config and the worker knobs from the ``detectors:`` section (``worker:`` holds
    the ``WorkerOptions`` fields), typed and validated when the settings load."""
    detectors = settings.detectors
    return EngineConfig.from_config(detectors.engine()), WorkerOptions(**detectors.worker_options())


def _redis_url(settings: RollguardSettings, override: str | None) -> tuple[str, EmbeddedValkey | None]:
    """The store URL, and the embedded server this process acquired (to release at exit) or None."""
    url = override or settings.store.redis_url
    if url:
        return url, None
    embedded = EmbeddedValkey(settings.store.data_dir)
    return embedded.acquire(), embedded


async def run_worker(
    settings: RollguardSettings,
    consumer_name: str,
    options: WorkerOptions | None = None,
    *,
    redis_url: str | None = None,
) -> WorkerStats:
    """Run one detector worker until SIGTERM/SIGINT (or ``options.idle_exit_s`` idle seconds).
    ``consumer_name`` must be unique per live worker (``gateway.store.keys.consumer_name``);
    ``redis_url`` overrides ``store.redis_url``. Returns the counters. Raises ``StoreError`` when
    the consumer group cannot be created."""
    engine_config, opt = worker_options(settings)
    if options is not None:
        opt = options
    url, embedded = _redis_url(settings, redis_url)
    client = aioredis.from_url(url)
    worker = DetectorWorker(client, settings.store.interactions_stream, consumer_name, engine_config, opt)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, worker.stop)
    try:
        stats = await worker.run()
    finally:
        await client.aclose()
        if embedded is not None:
            await asyncio.to_thread(embedded.release)  # stops the server if this process started it
    log.info("worker %s stopped: %s", consumer_name, stats)
    return stats


def stats_json(stats: WorkerStats) -> str:
    """The counters of a run as one JSON line (``extra`` and ``batches`` left out)."""
    fields = dataclasses.asdict(stats)
    for key in ("extra", "batches"):
        fields.pop(key)
    return orjson.dumps(fields).decode()
