"""The embedded defaults: what ``rollguard serve`` uses with no configuration — an embedded Valkey
under ``./var/`` (see ``gateway.store``), the bootstrap flags file shipped in
``gateway/defaults/flags.json``, and a local demo model served in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rollguard.review_settings import ReviewSettings
from rollguard.settings import ModelEntry, RollguardSettings

DEFAULTS_DIR = Path(__file__).resolve().parent / "defaults"
BOOTSTRAP_FLAGS = DEFAULTS_DIR / "flags.json"
DEMO_MODEL = "demo"


def with_embedded_defaults(settings: RollguardSettings) -> RollguardSettings:
    """``settings`` with the bootstrap flags file filled in when none is configured, and, for a
    gateway without API keys (loopback only), the demo review queues and reviewer tokens
    (``gateway.review.demo``) when no ``review`` section is configured. A copy: ``settings`` itself is
    not changed (``settings`` when there is nothing to fill in)."""
    update: dict[str, Any] = {}
    if settings.flags.bootstrap_file is None and BOOTSTRAP_FLAGS.exists():
        update["flags"] = settings.flags.model_copy(update={"bootstrap_file": BOOTSTRAP_FLAGS})
    if not settings.review and not settings.gateway.api_keys:
        from gateway.review.demo import demo_review_config

        update["review"] = ReviewSettings.model_validate(demo_review_config())
    return settings.model_copy(update=update) if update else settings


def demo_model_entries(base_url: str) -> list[ModelEntry]:
    """Model-list entries pointing the ``demo`` and ``echo`` aliases at the local demo upstream at
    ``base_url`` (e.g. ``http://127.0.0.1:40123/v1``)."""
    return [
        ModelEntry(
            model_name=name,
            litellm_params={"model": f"openai/{name}", "api_base": base_url, "api_key": "demo"},
        )
        for name in (DEMO_MODEL, "echo")
    ]
