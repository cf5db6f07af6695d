"""Every validation ``rollguard serve`` runs at startup before it binds its port, in one function
(``check_config``) that ``rollguard config check``, ``rollguard serve`` and ``create_app`` all call, so
that a config the check accepts is a config serve accepts.

What is checked, in order (each failure is one ``rollguard.errors.ConfigError`` naming the file and
the dotted field; the first problem stops the check):

1. ``gateway``: a non-loopback ``host`` needs ``api_keys`` (``gateway.auth.check_bind``);
2. ``model_list``: every deployment resolves to a transport (``gateway.upstream.transports``),
   its ``api_base`` is an http(s) URL and a deployment served by litellm names a provider litellm
   knows (``gateway.upstream.deployment_check``);
3. ``policies``: the pipeline builds (unknown type, bad params, unsupported stage), with the
   tenants' caps merged into the ``limits`` policies (``gateway.tenants.with_tenant_limits``);
4. ``flags``: the bootstrap file parses; an ``unleash_url`` needs an ``api_token`` that resolves;
5. ``detectors``: the window-engine and worker options build (``detectors:`` is read by
   ``rollguard worker``; serve refuses it too, so one file never half-works).
6. ``rollouts``: every plan names a known flag, model alias and policy
   (``rollguard.rollout.validate_against``).
7. ``rate_limits``: every ``keys`` entry names a ``gateway.api_keys`` entry (by ``name``).
8. tenant names: every ``tenants.<t>``, ``rate_limits.tenants.<t>`` and ``limits`` policy
   ``params.tenants.<t>`` names a tenant requests can carry (``served_tenants``) or ``default``
   (the fallback): an entry for a tenant no key maps to (a typo) would never be read.

It also lists the configured keys rollguard does not act on (LiteLLM Proxy settings:
``rollguard.litellm_settings.ignored_keys``), for the one startup warning ``serve`` logs and
``config check`` prints (``CheckedConfig.ignored``, ``litellm_warning``).

The field shapes themselves (types, ranges, unknown keys, URLs; every section, ``review`` and
``detectors`` included) are checked earlier, once, by ``rollguard.settings.load_settings``.
Nothing here opens a socket, starts a process or reads the store: runtime failures (store
unreachable, port in use) are reported by ``serve`` itself.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rollguard.errors import ConfigError
from rollguard.settings import RollguardSettings

if TYPE_CHECKING:
    from policies.pipeline import Pipeline


@dataclass(frozen=True, slots=True)
class CheckedConfig:
    """A config that passed ``check_config``: the settings (a copy with the embedded defaults filled
    in; serve runs with these) and the built policy pipeline (built once: loading the shipped
    classifiers takes about a second)."""

    settings: RollguardSettings
    pipeline: Pipeline
    ignored: tuple[str, ...] = ()
    """Configured keys rollguard does not act on (``rollguard.litellm_settings.ignored_keys``)."""


def check_config(settings: RollguardSettings, source: str = "") -> CheckedConfig:
    """Run every startup validation of ``serve`` on ``settings`` (loaded from ``source``, a file path
    or ``environment``; used only in messages). The returned settings have the embedded defaults
    filled in (``gateway.defaults.with_embedded_defaults``, a copy: ``settings`` is not changed).

    Raises ``ConfigError`` whose message starts ``<source>: <field>: ``; the source is where the
    field's value came from when that was not the file (``settings.source_of``: ``command line
    (--host)``, ``environment (ROLLGUARD_...)``).
    """
    from gateway.auth import check_bind
    from gateway.defaults import with_embedded_defaults

    try:
        settings = with_embedded_defaults(settings)
        check_bind(settings.gateway.host, settings.gateway.api_keys)
        _check_models(settings)
        pipeline = _build_pipeline(settings)
        _check_flags(settings)
        _check_detectors(settings)
        _check_rollouts(settings)
        _check_rate_limits(settings)
        _check_tenant_names(settings)
    except ConfigError as exc:
        raise _with_source(exc, settings.source_of(exc.field) or source) from exc
    return CheckedConfig(settings=settings, pipeline=pipeline, ignored=tuple(_ignored(settings)))


def litellm_warning(ignored: tuple[str, ...]) -> str | None:
    """The one startup warning naming every ignored key, or None when there is none."""
    if not ignored:
        return None
    return f"config keys rollguard does not act on (LiteLLM Proxy settings, ignored): {', '.join(ignored)}"


def _ignored(settings: RollguardSettings) -> list[str]:
    from gateway.upstream.transports import Deployment
    from rollguard.litellm_settings import ignored_keys

    lean = {i: Deployment.from_entry(e, i).path == "lean" for i, e in enumerate(settings.model_list)}
    sections = {
        "litellm_settings": settings.litellm_settings,
        "general_settings": settings.general_settings,
        "environment_variables": settings.environment_variables,
    }
    return ignored_keys(settings.model_list, settings.router_settings, sections, lean)


def _check_rate_limits(settings: RollguardSettings) -> None:
    names = {k.name for k in settings.gateway.api_keys if k.name}
    for key in settings.rate_limits.keys:
        if key not in names:
            raise ConfigError(
                f"no gateway.api_keys entry is named {key!r} (set that key's 'name')",
                field=f"rate_limits.keys.{key}",
            )


def served_tenants(settings: RollguardSettings) -> frozenset[str]:
    """The tenants a request can carry (``gateway.auth.Authenticator``): the ``tenant`` of every
    ``gateway.api_keys`` entry; with no keys, the keyless gateway's one tenant ``default``."""
    from gateway.auth import ANONYMOUS_TENANT

    return frozenset(k.tenant for k in settings.gateway.api_keys) or frozenset({ANONYMOUS_TENANT})


def _check_tenant_names(settings: RollguardSettings) -> None:
    """Refuse a per-tenant entry for a tenant no request can carry (nothing would read it)."""
    from gateway.tenants import LIMITS_TYPE
    from rollguard.settings import DEFAULT_TENANT

    served = served_tenants(settings)
    entries = [("tenants", str(t)) for t in settings.tenants]
    entries += [("rate_limits.tenants", str(t)) for t in settings.rate_limits.tenants]
    for i, spec in enumerate(settings.policies):
        own = spec.params.get("tenants") if spec.type == LIMITS_TYPE else None
        if isinstance(own, dict):
            entries += [(f"policies.{i}.params.tenants", str(t)) for t in own]
    for section, tenant in entries:
        if tenant != DEFAULT_TENANT and tenant not in served:
            keys = "no API keys are configured, so every request is tenant 'default'"
            if settings.gateway.api_keys:
                keys = f"the API keys map to {', '.join(repr(t) for t in sorted(served))}"
            raise ConfigError(
                f"no gateway.api_keys entry maps to tenant {tenant!r} ({keys}), so nothing would "
                "read this entry (use 'default' for every tenant without an entry of its own)",
                field=f"{section}.{tenant}",
            )


def _with_source(exc: ConfigError, source: str) -> ConfigError:
    """``exc`` naming ``source`` when it names no file yet."""
    if exc.source or not source:
        return exc
    message = str(exc)
    prefix = f"{exc.field}: " if exc.field else ""
    if prefix and message.startswith(prefix):
        message = message[len(prefix) :]
    return ConfigError(message, source=source, field=exc.field)


def _check_models(settings: RollguardSettings) -> None:
    from gateway.upstream.deployment_check import check_api_base, check_providers
    from gateway.upstream.transports import Deployment

    deployments = []
    for i, entry in enumerate(settings.model_list):
        check_api_base(entry, i)
        deployments.append((i, entry, Deployment.from_entry(entry, i)))
    check_providers(deployments)


def _build_pipeline(settings: RollguardSettings) -> Pipeline:
    from gateway.tenants import with_tenant_limits
    from policies.pipeline import build_pipeline

    try:
        return build_pipeline(with_tenant_limits(settings.policies, settings.tenants))
    except ValueError as exc:
        raise ConfigError(str(exc), field="policies") from exc


def _check_flags(settings: RollguardSettings) -> None:
    from gateway.flags import Flags

    Flags(settings.flags)  # validates only: no client, thread or socket before ``start()``


def _check_detectors(settings: RollguardSettings) -> None:
    from detectors.engine import EngineConfig
    from gateway.worker import WorkerOptions

    try:
        EngineConfig.from_config(settings.detectors.engine())
        WorkerOptions(**settings.detectors.worker_options())
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc), field="detectors") from exc


def known_flags(settings: RollguardSettings) -> set[str]:
    """Every flag name the config or the bootstrap flags file knows."""
    from gateway.flags import Flags

    fs = settings.flags
    names = {p.flag for p in settings.policies if p.flag}
    names |= set(fs.capabilities.values()) | set(fs.models.values())
    names |= {ro.flag for ro in fs.rollouts.values()}
    with contextlib.suppress(ConfigError):  # an unreadable file is reported by _check_flags
        names |= set(Flags(fs).bootstrap_flag_names())
    return names


def _check_rollouts(settings: RollguardSettings) -> None:
    from rollguard.rollout import validate_against

    flags = known_flags(settings)
    aliases = set(settings.model_names())
    policies = {p.id for p in settings.policies}
    for rid, plan in settings.rollouts.plans.items():
        problems = validate_against(plan, flags, aliases, policies, prefix=f"rollouts.plans.{rid}")
        if problems:
            field, _, message = problems[0].partition(": ")
            raise ConfigError(message, field=field)
