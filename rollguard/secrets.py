"""Secrets in the config: LiteLLM's ``os.environ/NAME`` references and the stored (hashed) form of
API keys and reviewer tokens. Used by ``rollguard.settings`` and ``rollguard.review_settings``."""

from __future__ import annotations

import hashlib
import os

ENV_PREFIX = "os.environ/"


def resolve_secret(value: str | None) -> str | None:
    """LiteLLM's secret reference: ``os.environ/NAME`` -> the value of ``$NAME`` (None if unset)."""
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        return os.environ.get(value[len(ENV_PREFIX) :])
    return value


def hash_api_key(key: str) -> str:
    """The stored form of an app API key: ``sha256:<hex>``. Keys are never stored in clear."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()
