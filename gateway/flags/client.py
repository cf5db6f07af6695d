"""Feature flags: one Unleash client per worker process, evaluated once per request.

Sources, in order of precedence (see ``Flags``):

1. **server** -- with ``flags.unleash_url`` the client polls ``<url>/client/features`` every
   ``refresh_interval_s`` seconds (ETag-conditional) on a background thread;
2. **last known good** -- when a poll fails the client keeps serving what the last successful poll
   returned; with ``flags.cache_dir`` set, that state is also saved to a file there and used at the
   next start while the server is unreachable (source ``cache``);
3. **bootstrap file** -- ``flags.bootstrap_file`` (default: the embedded ``gateway/defaults/flags.json``),
   the same JSON shape as a saved ``GET /api/client/features`` response. With no ``unleash_url`` it is the
   only source: no server, no polling thread, no network at all.

The client never touches ``~/.cache``: feature state lives in memory (``_StateCache``, UnleashClient's
``BaseCache`` extension point), so a later process can never silently serve an earlier run's flags from a
shared cache directory (the "stale cache" pitfall of the default ``FileCache``).

Fork safety: the client's poll thread (APScheduler) does not survive ``fork()``, so ``Flags.start()`` must
run in the worker, after any fork (the app lifespan), never at import time. As a safety net, a server-mode
client started before a fork is replaced in the child at its first ``evaluate`` (with a warning).

Gating is opt-in: a flag named in the config that Unleash does not know evaluates to ``default`` (True), so
a flag must exist (and be off) to switch something off. The store-backed override map (``overrides``:
``rollguard flags kill|revive``, the rollout controller; ``gateway.rollout.overrides``) reaches every
process of every replica and wins over every source. A local kill switch (``Flags.kill``) overrides any
flag to off in this process.

Errors: ``ConfigError`` at construction/start for an unreadable bootstrap file, a malformed URL or a
missing API token; nothing raises on the request path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from itertools import count
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from UnleashClient.clients.unleash_client import UnleashClient
from UnleashClient.constants import FEATURES_URL

from gateway.flags.context import FlagContext
from gateway.flags.state import LOG_GATE, StateCache, parse_state, read_state_file
from gateway.rollout.overrides import OverrideMap, decide
from rollguard.errors import ConfigError
from rollguard.settings import FlagSettings, resolve_secret
from rollguard.types import FlagSnapshot

log = logging.getLogger("rollguard.flags")

DEFAULT_BOOTSTRAP_FILE = Path(__file__).resolve().parents[1] / "defaults" / "flags.json"
"""The embedded bootstrap flags file, used when ``flags.bootstrap_file`` is unset."""


_OFFLINE_URL = "http://127.0.0.1:9/rollguard-offline/api"  # never contacted: no initialize_client()
_INSTANCE_SEQ = count(1)
_STARTED: weakref.WeakSet[Flags] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for flags in list(_STARTED):
        flags._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


# ----------------------------------------------------------------------------------------- flags


def _api_url(url: str) -> str:
    """The SDK's base URL: the server URL ending in ``/api`` (the SDK appends ``/client/features``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"not an http(s) URL: {url!r}", field="flags.unleash_url")
    base = url.rstrip("/")
    return base if base.endswith("/api") else base + "/api"


def _constant(value: bool) -> Callable[[str, dict[str, Any]], bool]:
    """The SDK's ``fallback_function`` answering ``value`` for every flag."""

    def fallback(_name: str, _ctx: dict[str, Any]) -> bool:
        return value

    return fallback


def _read_variant(snapshot: FlagSnapshot, name: str, variant: Mapping[str, Any]) -> None:
    """Put one ``get_variant`` answer into ``snapshot``: on/off, variant name, payload value."""
    snapshot.enabled[name] = bool(variant.get("feature_enabled"))
    if variant.get("enabled") and isinstance(variant.get("name"), str):
        snapshot.variants[name] = variant["name"]
        payload = variant.get("payload")
        if isinstance(payload, dict) and payload.get("value") is not None:
            snapshot.payloads[name] = str(payload["value"])


class Flags:
    """Feature flags for one worker process: ONE ``UnleashClient``, created by ``start()`` (in the app
    lifespan, after any fork), evaluated with ``evaluate()`` once per request.

    Modes: with ``settings.unleash_url`` the client polls the server every ``refresh_interval_s`` seconds
    and falls back to the last known good state, then the bootstrap file; without it the bootstrap file is
    the only source (the client is built from it and never initialised: no thread, no socket).

    ``bootstrap_state`` (a client-features document as a dict) replaces the bootstrap file -- the in-memory
    form for tests and embedding.
    """

    def __init__(self, settings: FlagSettings, *, bootstrap_state: Mapping[str, Any] | None = None) -> None:
        self.settings = settings
        self._url = _api_url(settings.unleash_url) if settings.unleash_url else None
        self._token: str | None = None
        if self._url is not None:
            self._token = resolve_secret(settings.api_token)
            if not self._token:
                raise ConfigError(
                    "flags.api_token is required with flags.unleash_url (or its environment variable is unset)",  # noqa: E501
                    field="flags.api_token",
                )
        self._bootstrap_path = settings.bootstrap_file or DEFAULT_BOOTSTRAP_FILE
        self._bootstrap_dict = dict(bootstrap_state) if bootstrap_state is not None else None
        self._bootstrap = self._load_bootstrap()
        self._client: UnleashClient | None = None
        self._cache: StateCache | None = None
        self._known: frozenset[str] = frozenset()
        self._killed: frozenset[str] = frozenset()
        self.overrides = OverrideMap(on_change=self._state_changed_now)
        """The store-backed override map (kill switch, rollout percentage), kept current by
        ``gateway.rollout.overrides.OverrideListener``; its changes move ``state_version``."""
        self._lock = threading.Lock()
        self._source = "none"
        self._last_fetch_ms: int | None = None
        self._fetches = 0
        self._state_saved_ms: int | None = None
        self._init_thread: threading.Thread | None = None
        self._restart_after_fork = False
        self._state_seq = 0
        self._state_changed = time.monotonic()

    def bootstrap_flag_names(self) -> frozenset[str]:
        """The flag names the bootstrap file (or dict) defines."""
        return self._bootstrap[1]

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """``server`` (polling ``unleash_url``) or ``bootstrap`` (bootstrap file only)."""
        return "server" if self._url else "bootstrap"

    def start(self, wait_s: float = 2.0) -> None:
        """Create the client (serving the bootstrap or last-known-good state at once) and, in server
        mode, register and start polling on a background thread; wait up to ``wait_s`` seconds for the
        first poll so that a healthy server's flags are in effect before the first request. Never
        raises for an unreachable server. Idempotent."""
        if self._client is not None:
            return
        state, names, source = self._initial_state()
        client, cache = self._new_client(state)
        self._cache = cache
        self._known = names
        self._source = source
        self._client = client
        self._state_changed_now()
        _STARTED.add(self)
        if self._url is None:
            log.info("flags: bootstrap file only (%s), %d flags", self._bootstrap_origin(), len(names))
            return
        self._spawn_init(client, wait_s)
        if self._last_fetch_ms is None:
            log.warning(
                "flags: Unleash at %s has not answered yet; serving %s flags until it does",
                self._url,
                "last-known-good" if source == "cache" else "bootstrap",
            )

    async def astart(self, wait_s: float = 2.0) -> None:
        """``start()`` without blocking the event loop (runs it in a thread)."""
        import asyncio

        await asyncio.to_thread(self.start, wait_s)

    def _spawn_init(self, client: UnleashClient, wait_s: float) -> None:
        thread = threading.Thread(
            target=self._initialize, args=(client,), name="rollguard-unleash-init", daemon=True
        )
        self._init_thread = thread
        thread.start()
        thread.join(max(0.0, wait_s))

    def _forked(self) -> None:
        """In a child after ``fork()``: the poll thread did not survive. Mark the client for a restart
        on the next ``evaluate`` (server mode; bootstrap mode has no thread)."""
        self._lock = threading.Lock()  # may have been held by another thread at fork time
        if self._url is not None and self._client is not None:
            self._restart_after_fork = True

    def _restart_in_child(self) -> None:
        with self._lock:
            if not self._restart_after_fork:
                return
            self._restart_after_fork = False
            log.warning(
                "flags: started before fork(); starting a new Unleash client in pid %d "
                "(create Flags in the worker, after the fork)",
                os.getpid(),
            )
            state = self._cache.get(FEATURES_URL) if self._cache is not None else None
            client, cache = self._new_client(state if isinstance(state, str) else self._bootstrap[0])
            self._cache, self._client = cache, client
            self._state_changed_now()
            self._spawn_init(client, 0.0)

    def close(self) -> None:
        """Stop polling and drop the client (bounded: waits at most 5 s for an in-flight poll)."""
        client, self._client = self._client, None
        if client is None or self._url is None:
            return  # bootstrap mode: the client was never initialised, nothing runs
        stopper = threading.Thread(target=client.destroy, name="rollguard-unleash-close", daemon=True)
        stopper.start()
        stopper.join(5.0)

    async def aclose(self) -> None:
        """``close()`` for async callers (runs it in a thread)."""
        import asyncio

        await asyncio.to_thread(self.close)

    # -- evaluation (hot path) ------------------------------------------------------------------

    def evaluate(
        self,
        names: Iterable[str],
        context: FlagContext,
        *,
        variant_flags: Iterable[str] = (),
        default: bool = True,
    ) -> FlagSnapshot:
        """Evaluate every flag of one request, once.

        ``names``: flags read as on/off (policy, capability and model flags) -> ``enabled[name]``.
        ``variant_flags``: rollout flags read with ``get_variant`` -> ``enabled[name]`` (the flag is on
        for this context), ``variants[name]`` (the variant name, e.g. ``control`` / ``canary``; absent when
        no variant applies) and ``payloads[name]`` (the variant payload's ``value`` as a string, if any).

        ``default`` is what a flag that Unleash does not know evaluates to: True, so gating is opt-in
        (policies, capabilities and models stay on until a flag that exists says otherwise). A store
        override (``overrides``) wins over every source; a locally killed flag (``kill()``) is off
        with no variant. Unknown flags are answered without calling the client. Cost
        (``bench/flags_eval.py``, 2 shared cores): about 60 microseconds of CPU per known flag (the
        SDK's context enrichment, then the Unleash engine's FFI calls with JSON both ways: ~370 us for
        6 known of 8 flags), about 0.5 microseconds per unknown flag.
        Raises ``RuntimeError`` before ``start()``.
        """
        if self._restart_after_fork:
            self._restart_in_child()
        client = self._client
        if client is None:
            raise RuntimeError("Flags.start() has not been called (call it in the app lifespan)")
        ctx = context.to_unleash()
        known = self._known
        killed = self._killed
        overrides = self.overrides.entries  # the request's one in-memory override read
        subject = ctx.get("userId") or ctx.get("sessionId")
        snapshot = FlagSnapshot()
        enabled = snapshot.enabled
        fallback = _constant(default)
        for name in names:
            ov = overrides.get(name) if overrides else None
            if ov is not None:
                enabled[name] = decide(ov, name, subject, variant_flag=False)[0]
            elif name in killed:
                enabled[name] = False
            elif name not in known:
                enabled[name] = default
            else:
                enabled[name] = bool(client.is_enabled(name, ctx, fallback_function=fallback))
        for name in variant_flags:
            ov = overrides.get(name) if overrides else None
            if ov is not None:
                enabled[name], arm = decide(ov, name, subject, variant_flag=True)
                if arm is not None:
                    snapshot.variants[name] = arm
            elif name in killed:
                enabled[name] = False
            elif name not in known:
                enabled[name] = default
            else:
                _read_variant(snapshot, name, client.get_variant(name, ctx))
        return snapshot

    def state_version(self) -> tuple[int, float]:
        """``(sequence, monotonic time of the last change)`` of what ``evaluate`` answers from: the
        sequence grows on every answered poll, reload, client swap, kill, revive or override. A result
        cache keys on it (``gateway.flags.cache``)."""
        return self._state_seq, self._state_changed

    def raw_state(self) -> str | None:
        """The client-features document the client evaluates from (JSON text), if started."""
        state = self._cache.get(FEATURES_URL) if self._cache is not None else None
        return state if isinstance(state, str) else None

    def _state_changed_now(self) -> None:
        self._state_seq += 1
        self._state_changed = time.monotonic()

    # -- local kill switch ---------------------------------------------------------------------

    def kill(self, name: str) -> None:
        """Force flag ``name`` off in this process (until ``revive``), whatever Unleash says. For a
        rollout flag this sends everyone to the default route (no variant). Takes effect on the next
        ``evaluate``; other worker processes are not affected (turn the flag off in Unleash for that)."""
        with self._lock:
            self._killed = self._killed | {name}
            self._state_changed_now()
        log.warning("flags: local kill switch ON for %r", name)

    def revive(self, name: str) -> None:
        """Undo ``kill(name)``; the flag evaluates from its source again."""
        with self._lock:
            self._killed = self._killed - {name}
            self._state_changed_now()
        log.warning("flags: local kill switch OFF for %r", name)

    @property
    def killed(self) -> frozenset[str]:
        return self._killed

    # -- reload --------------------------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the bootstrap file (SIGHUP, see ``install_sighup_handler``).

        Bootstrap mode: the new file takes effect at once (a new client is built from it and swapped in).
        Server mode: the new file becomes the fallback; if no poll has succeeded yet it is applied at the
        next poll (within ``refresh_interval_s``); server state is never replaced by it. Returns True on
        success; an unreadable or invalid file is logged and the old flags stay (returns False).
        """
        try:
            self._bootstrap = self._load_bootstrap()
        except ConfigError as exc:
            log.error("flags: reload failed, keeping the current flags: %s", exc)
            return False
        state, names = self._bootstrap
        if self._client is None:
            return True
        if self._url is None:
            client, cache = self._new_client(state)
            old = self._client
            self._cache, self._known, self._client = cache, names, client
            del old  # never initialised: no thread or socket to stop
        elif self._source == "bootstrap" and self._cache is not None:
            self._cache.replace_state(state)
            self._known = self._known | names
        self._state_changed_now()  # after the swap: nothing cached before it outlives it
        log.info("flags: bootstrap file reloaded from %s (%d flags)", self._bootstrap_origin(), len(names))
        return True

    def install_sighup_handler(self) -> bool:
        """Reload the bootstrap file on SIGHUP. Uses the running asyncio loop's signal handler when
        there is one (call from the lifespan), else ``signal.signal``. Returns False where signals cannot
        be installed (not the main thread, or no SIGHUP on this platform)."""
        sighup = getattr(signal, "SIGHUP", None)
        if sighup is None or threading.current_thread() is not threading.main_thread():
            return False
        import asyncio

        try:
            asyncio.get_running_loop().add_signal_handler(sighup, self.reload)
        except RuntimeError:
            signal.signal(sighup, lambda _sig, _frame: self.reload())
        return True

    # -- admin ---------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """For the admin endpoint: ``mode``, ``source`` (``server`` after a successful poll in this
        process, ``cache`` = last-known-good saved by an earlier process, ``bootstrap``, or ``none`` before
        ``start()``), ``unleash_url``, ``last_fetch_ms`` (UTC epoch ms of the last answered poll) and
        ``last_fetch_age_s``, ``stale`` (server mode and no answered poll for 3 refresh intervals),
        ``flags`` (names known to the source), ``killed``, ``bootstrap`` (file path or ``<dict>``),
        ``cache_saved_ms`` (when the last-known-good file in use was written, if source is ``cache``)."""
        now_ms = int(time.time() * 1000)
        age = (now_ms - self._last_fetch_ms) / 1000 if self._last_fetch_ms is not None else None
        stale = self._url is not None and (age is None or age > 3 * self.settings.refresh_interval_s)
        return {
            "mode": self.mode,
            "source": self._source,
            "unleash_url": self._url,
            "app_name": self.settings.app_name,
            "environment": self.settings.environment,
            "refresh_interval_s": self.settings.refresh_interval_s,
            "last_fetch_ms": self._last_fetch_ms,
            "last_fetch_age_s": round(age, 3) if age is not None else None,
            "fetches": self._fetches,
            "stale": stale,
            "cache_saved_ms": self._state_saved_ms,
            "bootstrap": self._bootstrap_origin(),
            "flags": sorted(self._known),
            "killed": sorted(self._killed),
            "overrides": self.overrides.describe(),
        }

    # -- internals -----------------------------------------------------------------------------

    def _bootstrap_origin(self) -> str:
        return "<dict>" if self._bootstrap_dict is not None else str(self._bootstrap_path)

    def _load_bootstrap(self) -> tuple[str, frozenset[str]]:
        if self._bootstrap_dict is not None:
            return parse_state(orjson.dumps(self._bootstrap_dict), "<bootstrap dict>")
        return read_state_file(Path(self._bootstrap_path))

    def _lkg_path(self) -> Path | None:
        """The last-known-good file: only with ``cache_dir`` and a server; keyed by URL and token (hashed)
        so that a different server's or token's flags are never served."""
        if self.settings.cache_dir is None or self._url is None:
            return None
        key = hashlib.sha256(f"{self._url}\n{self._token}".encode()).hexdigest()[:16]
        return Path(self.settings.cache_dir) / f"{self.settings.app_name}-{key}.json"

    def _initial_state(self) -> tuple[str, frozenset[str], str]:
        path = self._lkg_path()
        if path is not None and path.exists():
            try:
                state, names = read_state_file(path)
                self._state_saved_ms = int(path.stat().st_mtime * 1000)
                return state, names, "cache"
            except ConfigError as exc:
                log.warning("flags: ignoring unreadable last-known-good file: %s", exc)
        state, names = self._bootstrap
        return state, names, "bootstrap"

    def _new_client(self, state: str) -> tuple[UnleashClient, StateCache]:
        cache = StateCache(state, self._on_fetch)
        s = self.settings
        server = self._url is not None
        client = UnleashClient(
            url=self._url or _OFFLINE_URL,
            app_name=s.app_name,
            environment=s.environment,
            instance_id=f"{s.app_name}-{os.getpid()}-{next(_INSTANCE_SEQ)}",
            refresh_interval=s.refresh_interval_s,
            request_timeout=max(1, min(5, s.refresh_interval_s)),
            request_retries=0,  # a failed poll waits for the next one (no retry log line)
            disable_metrics=not server,
            disable_registration=not server,
            custom_headers={"Authorization": self._token} if self._token else {},
            cache=cache,
            verbose_log_level=logging.DEBUG,  # "flag not found" is normal: gating is opt-in
        )
        return client, cache

    def _initialize(self, client: UnleashClient) -> None:
        try:
            client.initialize_client()
        except Exception as exc:  # a malformed URL raises; keep serving what we have
            log.error("flags: Unleash client failed to start (%s); serving %s flags", exc, self._source)

    def _on_fetch(self, raw_state: str | None) -> None:
        """Called on the poll thread after an answered poll (``raw_state`` is the new body on a 200),
        just *before* the SDK hands the state to its engine (hence the settling time a result cache
        waits after every change)."""
        self._state_changed_now()
        self._last_fetch_ms = int(time.time() * 1000)
        self._fetches += 1
        self._source = "server"
        LOG_GATE.reset()
        if raw_state is None:
            return
        try:
            _, names = parse_state(raw_state, "Unleash response")
        except ConfigError as exc:
            log.warning("flags: unparseable Unleash response ignored for names: %s", exc)
            return
        self._known = names
        self._save_last_known_good(raw_state)

    def _save_last_known_good(self, raw_state: str) -> None:
        path = self._lkg_path()
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(raw_state, encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:
            log.warning("flags: cannot save last-known-good flags to %s: %s", path, exc)
