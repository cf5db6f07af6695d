"""The config version: a short hash of the effective configuration, secrets excluded.

Stamped on every response (``x-rollguard-config-version``), every audit record (``config_version``)
and every operations audit event, so an interaction can be tied to the exact config that served
it and two replicas can be compared at a glance. Equal configs give equal versions on every
machine and in every process (``--workers N`` loads the config again in each).

What is hashed: ``RollguardSettings.model_dump(mode="json")`` (defaults filled in, every source
merged), keys sorted, SHA-256, the first ``LENGTH`` hex digits. What is left out: every value whose
key names a secret (``SECRET_KEY``: ``api_key``, ``key``, ``key_hash``, ``token``, ``api_token``,
``*_secret``, ``password``, ``credentials`` ...) and the user:password part of URLs, so rotating a
secret keeps the version and the version reveals nothing about one. Also left out: the process
options (``PROCESS_OPTIONS``: listen address and port, worker count, log level, where the store and
the data sets live), which say how and where a process runs, not how a request is served. So
``rollguard config check FILE``, ``rollguard serve -c FILE --port 9000 --workers 4`` and the
operations events of ``rollguard flags kill -c FILE`` all carry one version.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson
from pydantic import BaseModel

LENGTH = 12
"""Hex digits kept (48 bits: a collision between two configs of one fleet is not a concern)."""
SECRET_KEY = re.compile(
    r"(^|_)(api_?key|key|keys?_hash|token|api_token|secret|password|passwd|credentials?)$", re.IGNORECASE
)
_USERINFO = re.compile(r"://[^/@\s]*@")
PROCESS_OPTIONS: tuple[tuple[str, ...], ...] = (
    ("gateway", "host"),
    ("gateway", "port"),
    ("gateway", "workers"),
    ("gateway", "log_level"),
    ("store", "redis_url"),
    ("store", "data_dir"),
    ("redis_url",),
    ("data_dir",),
    ("telemetry", "prometheus", "host"),
    ("telemetry", "prometheus", "port"),
)
"""Dotted paths of the settings left out of the version: process options (command-line options,
their environment variables, or file values), not behaviour."""


def scrub(value: Any) -> Any:
    """``value`` (JSON-shaped) without secret-named keys and URL credentials."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if not SECRET_KEY.search(str(k))}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, str) and "@" in value and "://" in value:
        return _USERINFO.sub("://", value)
    return value


def config_version(settings: BaseModel) -> str:
    """The version of ``settings`` (``LENGTH`` lowercase hex digits)."""
    data = scrub(settings.model_dump(mode="json"))
    for path in PROCESS_OPTIONS:
        _drop(data, path)
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:LENGTH]


def _drop(data: Any, path: tuple[str, ...]) -> None:
    *parents, last = path
    for key in parents:
        data = data.get(key) if isinstance(data, dict) else None
    if isinstance(data, dict):
        data.pop(last, None)
