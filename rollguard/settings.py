"""Configuration: one YAML file, validated at startup, with environment and command-line overrides.

Precedence (highest first), declared once in ``RollguardSettings.settings_customise_sources``:
command-line options (``load_settings(path, cli={...})``: the init values), then ``ROLLGUARD_*``
environment variables (nested with ``__``, e.g. ``ROLLGUARD_GATEWAY__PORT=9000``), then the YAML
file, then the defaults here. Sources are merged field by field (a nested value set by a higher
source replaces only that value). ``ROLLGUARD_REDIS_URL`` is the documented short form of
``ROLLGUARD_STORE__REDIS_URL``; ``ROLLGUARD_DATA_DIR`` sets ``data_dir`` (the shipped data sets).
Every section is typed and parsed once, here (``review``: ``rollguard.review_settings``;
``detectors``: ``rollguard.detector_settings``; ``rollouts``: ``rollguard.rollout_settings``);
nothing changes the settings after loading.

The model list uses LiteLLM's ``model_list`` schema unchanged (``model_name`` + ``litellm_params``,
``os.environ/NAME`` for secrets), and a whole LiteLLM Proxy config loads (``rollguard.litellm_settings``).
A config holding only ``model_list`` gets the default policy set (``default_policies()``).

Errors: ``load_settings`` raises ``rollguard.errors.ConfigError`` whose message is ONE line,
``SOURCE: FIELD: message``: SOURCE is where the bad value came from (the file, ``command line
(--host)`` or ``environment (ROLLGUARD_GATEWAY__PORT)``: ``RollguardSettings.source_of``), FIELD the
dotted path. Several problems: the first in full, then ``(and N more: FIELD, FIELD)`` naming the
others. Invalid YAML: ``FILE:LINE:COLUMN: invalid YAML: problem``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from rollguard.detector_settings import DetectorSettings
from rollguard.errors import ConfigError
from rollguard.litellm_settings import ModelEntry as ModelEntry
from rollguard.litellm_settings import RouterSettings as RouterSettings
from rollguard.litellm_settings import with_litellm_settings
from rollguard.ratelimit_settings import RateLimitSettings
from rollguard.review_settings import ReviewSettings
from rollguard.rollout_settings import RolloutsSettings
from rollguard.secrets import ENV_PREFIX as ENV_PREFIX
from rollguard.secrets import hash_api_key as hash_api_key
from rollguard.secrets import resolve_secret as resolve_secret
from rollguard.telemetry_settings import TelemetrySettings
from rollguard.types import Mode, OnError, Stage


def _is_url(value: str, schemes: tuple[str, ...]) -> bool:
    """True when ``value`` is an absolute URL with one of ``schemes`` and a host."""
    parts = urlsplit(value)
    return parts.scheme in schemes and bool(parts.hostname)


def _check_redis_url(value: str | None) -> str | None:
    """``value`` if it is a URL ``redis.asyncio.Redis.from_url`` accepts, else ``ValueError``."""
    if value is not None and not (value.startswith("unix://") or _is_url(value, ("redis", "rediss"))):
        raise ValueError(f"not a redis://, rediss:// or unix:// URL: {value!r}")
    return value


def _check_short_redis_url(value: str | None) -> str | None:
    """``_check_redis_url`` for the top-level ``redis_url`` (checked in a model validator, so the
    message names its field)."""
    try:
        return _check_redis_url(value)
    except ValueError as exc:
        raise ValueError(f"redis_url: {exc}") from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApiKey(_Strict):
    """An app key bound to a tenant. Give ``key_hash`` (``sha256:<hex>``, see ``rollguard keys
    hash``) or ``key`` (hashed at load; ``os.environ/NAME`` allowed)."""

    key_hash: str | None = None
    key: str | None = None
    tenant: str = Field(min_length=1)
    name: str = ""

    @model_validator(mode="after")
    def _hash(self) -> ApiKey:
        if self.key is not None:
            raw = resolve_secret(self.key)
            if not raw:
                raise ValueError("key is empty or its environment variable is unset")
            self.key_hash = hash_api_key(raw)
            self.key = None
        if not self.key_hash or not self.key_hash.startswith("sha256:") or len(self.key_hash) != 71:
            raise ValueError("key_hash must be 'sha256:' followed by 64 hex digits")
        return self


class GatewaySettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, description="bytes; larger -> 413")
    stream_holdback_chars: int = Field(
        default=128, ge=0, description="characters held back before release in streams"
    )
    stream_check_chars: int = Field(
        default=32,
        ge=1,
        description="characters that must be releasable before the stream policies run again",
    )
    restore_redactions: bool = Field(
        default=False, description="put redacted values back into the response from the vault"
    )
    large_input_chars: int = Field(
        default=32_000,
        ge=1,
        description="characters of message text above which a request is checked off the event loop",
    )
    api_keys: list[ApiKey] = Field(default_factory=list)
    log_level: str = "info"


class PolicySpec(_Strict):
    """One configured policy. ``id`` is what decisions, metrics and flags name; ``type`` picks the
    implementation from the registry; ``stages`` defaults to every stage the type supports."""

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    type: str = Field(min_length=1)
    mode: Mode = Mode.ENFORCE
    on_error: OnError = OnError.BLOCK
    timeout_ms: float = Field(
        default=250.0, gt=0, description="ms; CPU time for inline policies, wall time for threaded ones"
    )
    stages: list[Stage] | None = None
    flag: str | None = Field(default=None, description="Unleash flag gating this policy")
    params: dict[str, Any] = Field(default_factory=dict)


def default_policies() -> list[PolicySpec]:
    """The policy set used when the config has no ``policies`` key."""
    return [
        PolicySpec(id="limits", type="limits"),
        PolicySpec(id="invisible_text", type="invisible_text"),
        PolicySpec(id="pii", type="pii"),
        PolicySpec(id="secrets", type="secrets"),
        PolicySpec(id="prompt_injection", type="prompt_injection"),
        PolicySpec(id="system_prompt_leak", type="system_prompt_leak"),
        PolicySpec(id="content_safety", type="content_safety"),
    ]


class ModelRollout(_Strict):
    """A model alias rolled out as variants of one flag: the variant's name (or its payload) picks
    the upstream alias to call, e.g. ``{"control": "demo-a", "canary": "demo-b"}``."""

    flag: str
    variants: dict[str, str] = Field(default_factory=dict)


class FlagSettings(_Strict):
    """Unleash flags. With no ``unleash_url`` the bootstrap file is the only source (embedded
    default); with one, the client polls the server and falls back to last-known-good, then the
    bootstrap file."""

    unleash_url: str | None = None
    api_token: str | None = None
    app_name: str = "rollguard"
    environment: str = "default"
    refresh_interval_s: int = Field(default=15, ge=1)
    bootstrap_file: Path | None = None
    cache_dir: Path | None = None
    capabilities: dict[str, str] = Field(
        default_factory=dict, description="capability (streaming, tools) -> flag name"
    )
    models: dict[str, str] = Field(default_factory=dict, description="model alias -> flag name")
    rollouts: dict[str, ModelRollout] = Field(
        default_factory=dict, description="public model alias -> variant rollout"
    )

    @field_validator("unleash_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not _is_url(v, ("http", "https")):
            raise ValueError(f"not an http(s) URL: {v!r} (e.g. 'http://unleash:4242/api')")
        return v


class StoreSettings(_Strict):
    redis_url: str | None = Field(default=None, description="unset -> embedded Valkey under data_dir")
    data_dir: Path = Path("var")
    interactions_stream: str = "rollguard:interactions"
    retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=0, description="0 = keep forever")
    flush_interval_ms: float = Field(default=5.0, gt=0)
    max_buffer: int = Field(
        default=100_000, ge=100, description="records queued in memory while the store is slow"
    )
    max_spool_records: int = Field(
        default=10_000_000, ge=100, description="records kept on disk while the store is down"
    )
    spool_fsync_ms: float = Field(default=100.0, gt=0, description="fsync interval of the spool file")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str | None) -> str | None:
        return _check_redis_url(v)


TENANT_LIMIT_FIELDS = ("max_messages", "max_chars", "max_tokens")
"""The ``TenantSettings`` fields the ``limits`` policy enforces (``gateway.tenants``)."""
DEFAULT_TENANT = "default"
"""``tenants.default``: the fallback of limits and retention for tenants not listed (and the
tenant of a gateway without API keys). Raw-content consent is never inherited from it."""


class TenantSettings(_Strict):
    """One tenant's settings (``tenants.<name>``). Every field has an effect; a setting nothing
    would read is refused at load (``RollguardSettings._check_tenants``):

    - ``max_messages`` / ``max_chars`` / ``max_tokens``: the caps of every ``limits`` policy for
      this tenant (messages, characters, completion tokens per request), over the policy's own
      ``params`` (``gateway.tenants.with_tenant_limits``); needs a ``limits`` policy.
    - ``retention_ms``: milliseconds the tenant's records are kept in the interactions stream
      (``gateway.store.tenant_retention``); shorter than ``store.retention_ms``.
    - ``raw_content_opt_in``: the tenant consented to raw content: its audit records and its
      reviewers' free text are stored unredacted (``gateway.audit``, ``gateway.review.privacy``).
    """

    max_messages: int | None = Field(default=None, ge=1, description="messages per request")
    max_chars: int | None = Field(default=None, ge=1, description="characters of text per request")
    max_tokens: int | None = Field(default=None, ge=1, description="completion tokens per request")
    retention_ms: int | None = Field(
        default=None, ge=1000, description="ms the tenant's interaction records are kept"
    )
    raw_content_opt_in: bool = False

    def limits(self) -> dict[str, int]:
        """The limit fields this tenant sets (``TENANT_LIMIT_FIELDS``), unset ones left out."""
        return {f: v for f in TENANT_LIMIT_FIELDS if (v := getattr(self, f)) is not None}


class RollguardSettings(BaseSettings):
    """The whole configuration (one YAML file + ``ROLLGUARD_*`` environment)."""

    model_config = SettingsConfigDict(
        env_prefix="ROLLGUARD_",
        env_nested_delimiter="__",
        extra="forbid",
        nested_model_default_partial_update=True,
    )

    model_list: list[ModelEntry] = Field(default_factory=list)
    router_settings: RouterSettings = Field(default_factory=RouterSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    policies: list[PolicySpec] = Field(default_factory=default_policies)
    flags: FlagSettings = Field(default_factory=FlagSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    tenants: dict[str, TenantSettings] = Field(default_factory=dict)
    review: ReviewSettings | None = Field(
        default=None, description="review queues and console; unset (or empty): not mounted"
    )
    detectors: DetectorSettings = Field(default_factory=DetectorSettings)
    rollouts: RolloutsSettings = Field(
        default_factory=RolloutsSettings, description="rollout controller and plans"
    )
    telemetry: TelemetrySettings = Field(
        default_factory=TelemetrySettings, description="Prometheus endpoint, stream-check spans"
    )
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    litellm_settings: dict[str, Any] = Field(default_factory=dict, description="LiteLLM Proxy section")
    general_settings: dict[str, Any] = Field(default_factory=dict, description="LiteLLM Proxy section")
    environment_variables: dict[str, Any] = Field(default_factory=dict, description="LiteLLM Proxy")
    redis_url: str | None = Field(default=None, description="short form of store.redis_url (env)")
    data_dir: Path | None = Field(
        default=None,
        description="the shipped data sets (demo corpus, recorded replies); unset: <repo>/data",
    )

    @field_validator("review", mode="before")
    @classmethod
    def _empty_review_is_unset(cls, v: Any) -> Any:
        return None if v == {} else v

    @field_validator("detectors", "rollouts", "telemetry", mode="before")
    @classmethod
    def _null_section_is_empty(cls, v: Any) -> Any:
        return {} if v is None else v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest first: command-line options (init values), the environment, the YAML file; then
        # the field defaults.
        return (init_settings, env_settings, _FileSource(settings_cls))

    _origin: _Origin | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _post(self) -> RollguardSettings:
        # Messages start "<field>: " (a model validator's error has no location of its own).
        self.router_settings = with_litellm_settings(self.router_settings, self.litellm_settings)
        if self.redis_url and not self.store.redis_url:
            self.store.redis_url = _check_short_redis_url(self.redis_url)
        names = [m.model_name for m in self.model_list]
        ids = [p.id for p in self.policies]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"policies: duplicate policy id(s): {sorted(dup)}")
        for fb in self.router_settings.fallbacks:
            for src, targets in fb.items():
                for t in [src, *targets]:
                    if t not in names:
                        raise ValueError(f"router_settings.fallbacks: unknown model {t!r}")
        for alias, ro in self.flags.rollouts.items():
            for variant, target in ro.variants.items():
                if target not in names:
                    raise ValueError(f"flags.rollouts.{alias}.variants.{variant}: unknown model {target!r}")
        self._check_tenants()
        return self

    def _check_tenants(self) -> None:
        """Refuse a tenant setting nothing would act on: a cap with no ``limits`` policy in mode
        ``enforce`` (shadow mode never blocks), a
        ``retention_ms`` not shorter than ``store.retention_ms`` (the stream-wide trim already
        removes the record by then). Raises ``ValueError`` naming ``tenants.<t>.<field>``."""
        limits = [p for p in self.policies if p.type == "limits"]
        enforcing = any(p.mode is Mode.ENFORCE for p in limits)
        global_ms = self.store.retention_ms
        for name, t in self.tenants.items():
            for field in t.limits():
                if not limits:
                    raise ValueError(
                        f"tenants.{name}.{field}: no 'limits' policy is configured, so nothing would "
                        "enforce it (add {id: limits, type: limits} to policies)"
                    )
                if not enforcing:
                    raise ValueError(
                        f"tenants.{name}.{field}: every 'limits' policy is in mode shadow, which "
                        "records a verdict but never blocks, so the cap would never be enforced "
                        "(set mode: enforce on the limits policy)"
                    )
            if t.retention_ms is not None and global_ms and t.retention_ms >= global_ms:
                raise ValueError(
                    f"tenants.{name}.retention_ms: {t.retention_ms} ms is not shorter than "
                    f"store.retention_ms ({global_ms} ms), so it would have no effect"
                )

    def source_of(self, field: str) -> str | None:
        """Where the value of ``field`` (a dotted path, ``gateway.host``) came from when it was not
        the config file: ``command line (--host)``, ``environment (ROLLGUARD_GATEWAY__HOST)``; None
        for the file, a default, or settings not built by ``load_settings``."""
        return self._origin.source_of(field) if self._origin is not None else None

    def tenant(self, name: str) -> TenantSettings:
        """``tenants.<name>``, else ``tenants.default``, else no settings."""
        return self.tenants.get(name) or self.tenants.get(DEFAULT_TENANT) or TenantSettings()

    def raw_content_tenants(self) -> frozenset[str]:
        """The tenants that consented to raw content (named explicitly; never by ``default``
        inheritance, except the keyless gateway's own tenant ``default``)."""
        return frozenset(name for name, t in self.tenants.items() if t.raw_content_opt_in)

    def unresolved_secrets(self) -> list[str]:
        """``model_list[i].litellm_params.KEY`` paths whose ``os.environ/NAME`` is unset (warned at
        startup: the upstream will refuse the call)."""
        out = []
        for i, m in enumerate(self.model_list):
            for key, value in m.litellm_params.items():
                if isinstance(value, str) and value.startswith(ENV_PREFIX) and resolve_secret(value) is None:
                    out.append(f"model_list[{i}].litellm_params.{key} ({value})")
        return out

    def model_names(self) -> list[str]:
        """Public model aliases, in config order, without duplicates (several deployments of one
        alias are load-balanced by the router)."""
        seen: dict[str, None] = {}
        for m in self.model_list:
            seen.setdefault(m.model_name, None)
        for alias in self.flags.rollouts:
            seen.setdefault(alias, None)
        return list(seen)


Source = Literal["environment"] | str

_FILE_LAYER: ContextVar[Mapping[str, Any] | None] = ContextVar("rollguard_file_layer", default=None)
"""The YAML file's values while ``load_settings`` builds the settings (one build per context)."""


class _FileSource(PydanticBaseSettingsSource):
    """The YAML file as a settings source (below the environment): the mapping ``load_settings``
    read, or nothing when settings are built directly."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        layer = _FILE_LAYER.get() or {}
        return layer.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_LAYER.get() or {})


ENV_PREFIX_SETTINGS = "ROLLGUARD_"
"""The prefix of the environment variables that set fields (``RollguardSettings.model_config``)."""
_FIELD_PREFIX = re.compile(r"^([A-Za-z_][\w.\[\]-]*): (.+)$", re.DOTALL)
_MORE_FIELDS = 5
"""Fields named after ``(and N more: ...)``; further ones are ``…``."""


class _Origin:
    """The layers ``load_settings`` merged, to tell where a field's value came from."""

    def __init__(self, cli: Mapping[str, Any], env_names: frozenset[str]) -> None:
        self._cli = cli
        self._env = env_names

    def source_of(self, field: str) -> str | None:
        """``command line (--opt)`` when the command line set ``field``, ``environment (NAME)``
        when a ``ROLLGUARD_*`` variable did (the longest one that covers it), else None."""
        parts = [p for p in re.split(r"[.\[\]]+", field) if p]
        cur: Any = self._cli
        for part in parts:
            if not isinstance(cur, Mapping) or part not in cur:
                break
            cur = cur[part]
        else:
            if parts and not isinstance(cur, Mapping):
                return f"command line (--{parts[-1].replace('_', '-')})"
        for i in range(len(parts), 0, -1):
            name = ENV_PREFIX_SETTINGS + "__".join(parts[:i]).upper()
            if name in self._env:
                return f"environment ({name})"
        return None


def _format_errors(exc: ValidationError, origin: _Origin, source: str) -> ConfigError:
    """One one-line ``ConfigError``: the first problem's source (``origin``, else ``source``),
    field and message, then ``(and N more: field, ...)`` naming the other fields."""
    found: list[tuple[str, str]] = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = " ".join(str(err["msg"]).removeprefix("Value error, ").split())
        match = _FIELD_PREFIX.match(msg) if not loc else None
        if match:  # a model validator's "<field>: message"
            loc, msg = match.group(1), match.group(2)
        found.append((loc, msg))
    if not found:
        return ConfigError("invalid configuration", source=source)
    field, message = found[0]
    others = [loc or "(settings)" for loc, _ in found[1:]]
    if others:
        names = others[:_MORE_FIELDS] + (["…"] if len(others) > _MORE_FIELDS else [])
        message += f" (and {len(others)} more: {', '.join(names)})"
    return ConfigError(message, source=origin.source_of(field) or source, field=field)


def config_path(path: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to read: ``path``, else ``$ROLLGUARD_CONFIG``, else None (no file: the
    built-in embedded defaults)."""
    if path is None:
        path = os.environ.get("ROLLGUARD_CONFIG") or None
    return Path(path) if path is not None else None


def config_source(path: str | os.PathLike[str] | None = None) -> str:
    """What error messages name as the config's source: the file ``config_path(path)`` or
    ``environment``."""
    found = config_path(path)
    return str(found) if found is not None else "environment"


def _read_file(path: Path) -> dict[str, Any]:
    """The YAML mapping in ``path`` (an empty or null document is ``{}``; ``policies: null`` is
    dropped so the default policy set applies). Raises ``ConfigError`` naming the file."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file: {exc}", source=source) from exc
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from exc
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigError("the top level must be a mapping", source=source)
    if loaded.get("policies") is None:
        loaded.pop("policies", None)
    return loaded


def _yaml_error(exc: yaml.YAMLError, source: str) -> ConfigError:
    """PyYAML's several-line message as one line: ``FILE:LINE:COLUMN: invalid YAML: problem
    (context)`` (line and column from 1, where the parser stopped)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        context = f" ({exc.context})" if exc.context else ""
        return ConfigError(f"invalid YAML: {exc.problem}{context}", source=where)
    return ConfigError(f"invalid YAML: {' '.join(str(exc).split())}", source=source)


def load_settings(
    path: str | os.PathLike[str] | None = None, cli: Mapping[str, Any] | None = None
) -> RollguardSettings:
    """Read and validate the config, once: ``cli`` (command-line options, nested like the YAML,
    e.g. ``{"gateway": {"port": 9000}}``) over the ``ROLLGUARD_*`` environment over the YAML file
    ``config_path(path)`` over the defaults. With no file: the built-in embedded defaults (demo
    model on loopback).

    Raises ``ConfigError`` (one line: source + field, see the module docstring) on unreadable
    YAML, a non-mapping document, unknown or invalid fields.
    """
    found = config_path(path)
    data = _read_file(found) if found is not None else {}
    origin = _Origin(
        dict(cli or {}),
        frozenset(k.upper() for k in os.environ if k.upper().startswith(ENV_PREFIX_SETTINGS)),
    )
    token = _FILE_LAYER.set(data)
    try:
        settings = RollguardSettings(**dict(cli or {}))
    except ValidationError as exc:
        raise _format_errors(exc, origin, config_source(found)) from exc
    finally:
        _FILE_LAYER.reset(token)
    settings._origin = origin
    return settings
