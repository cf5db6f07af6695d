"""The Unleash feature state held in memory: parsing a client-features document
(``parse_state``, ``read_state_file``), the in-memory cache port (``StateCache``) and the log gate
that turns a failing poll's repeated stack traces into one line (``LOG_GATE``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from UnleashClient.cache import BaseCache
from UnleashClient.constants import ETAG, FEATURES_URL

from rollguard.errors import ConfigError

__all__ = ["LOG_GATE", "StateCache", "parse_state", "read_state_file"]

log = logging.getLogger("rollguard.flags")


def parse_state(raw: str | bytes, source: str) -> tuple[str, frozenset[str]]:
    """Validate an Unleash client-features document; returns (the JSON text, the flag names).
    Raises ``ConfigError`` naming ``source``."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON: {exc}", source=source) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("features"), list):
        raise ConfigError(
            "expected an object with a 'features' list (GET /api/client/features)", source=source
        )
    names = frozenset(
        f["name"] for f in doc["features"] if isinstance(f, dict) and isinstance(f.get("name"), str)
    )
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    return text, names


def read_state_file(path: Path) -> tuple[str, frozenset[str]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read flags file: {exc}", source=str(path), field="flags.bootstrap_file"
        ) from exc
    return parse_state(raw, str(path))


class StateCache(BaseCache):
    """UnleashClient's cache port, in memory. The client writes ``FEATURES_URL`` after a poll that
    returned a body (HTTP 200) and ``ETAG`` after any answered poll (200 or 304); a failed poll writes
    neither. Those writes are how ``Flags`` learns the time of the last successful fetch."""

    def __init__(self, state: str, on_fetch: Callable[[str | None], None]) -> None:
        self._data: dict[str, Any] = {FEATURES_URL: state}
        self._on_fetch = on_fetch
        self.bootstrapped = True

    def replace_state(self, state: str) -> None:
        """Swap the held state without counting it as a fetch (``Flags.reload``)."""
        self._data[FEATURES_URL] = state

    def set(self, key: str, value: Any) -> None:
        self._data[key] = value
        if key == FEATURES_URL:
            self._on_fetch(value)
        elif key == ETAG and value:
            self._on_fetch(None)

    def mset(self, data: dict[str, Any]) -> None:
        self._data.update(data)

    def get(self, key: str, default: Any | None = None) -> Any:
        return self._data.get(key, default)

    def exists(self, key: str) -> bool:
        return key in self._data

    def destroy(self) -> None:
        self._data.clear()


# ------------------------------------------------------------------------------------- log gate


class _UnleashLogGate(logging.Filter):
    """Installed once on the ``UnleashClient`` logger. A poll against an unreachable server logs a full
    stack trace every ``refresh_interval_s``; this turns the first warning of each kind into one line
    (exception type and message, no trace) and drops its repeats until a poll succeeds again, when one
    INFO line reports how many were suppressed."""

    def __init__(self) -> None:
        super().__init__("UnleashClient")
        self._seen: set[str] = set()
        self._suppressed = 0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = str(record.msg)
        with self._lock:
            if key in self._seen:
                self._suppressed += 1
                return False
            self._seen.add(key)
        message = record.getMessage().splitlines()[0] if record.getMessage() else key
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if type(exc).__name__ not in message:
                message = f"{message} ({type(exc).__name__})"
        record.msg = message + " [repeats suppressed until the next successful poll]"
        record.args = None
        record.exc_info = None
        record.exc_text = None
        return True

    def reset(self) -> None:
        with self._lock:
            suppressed, self._suppressed = self._suppressed, 0
            had = bool(self._seen)
            self._seen.clear()
        if had:
            log.info("Unleash poll succeeded again (%d repeated client warnings suppressed)", suppressed)


def _install_log_gate() -> _UnleashLogGate:
    logger = logging.getLogger("UnleashClient")
    for f in logger.filters:
        if isinstance(f, _UnleashLogGate):
            return f
    gate = _UnleashLogGate()
    logger.addFilter(gate)
    return gate


LOG_GATE = _install_log_gate()
