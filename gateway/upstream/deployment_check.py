"""Startup checks of ``model_list`` deployments that would otherwise fail only at request time
(called by ``gateway.config_check``): ``api_base`` (or ``base_url``) must be an absolute http(s)
URL, and a deployment served by litellm must name a provider litellm knows
(``litellm.provider_list``, the values of ``litellm.types.utils.LlmProviders``).

litellm is imported only when a deployment takes the litellm path (the import takes seconds).
Each failure is one ``ConfigError`` naming the field (``model_list[2].litellm_params.api_base``).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from gateway.upstream.transports import Deployment
from rollguard.errors import ConfigError
from rollguard.settings import ENV_PREFIX, ModelEntry, resolve_secret

__all__ = ["check_api_base", "check_providers"]

_EXAMPLES = "'openai/', 'azure/', 'anthropic/', 'ollama_chat/', 'bedrock/'"


def check_api_base(entry: ModelEntry, index: int) -> None:
    """Raise ``ConfigError`` when ``litellm_params.api_base`` (or ``base_url``) is set and is not
    an http(s) URL with a host. An ``os.environ/NAME`` value is checked once resolved (an unset
    variable is only warned about, see ``RollguardSettings.unresolved_secrets``)."""
    params = entry.litellm_params
    for key in ("api_base", "base_url"):
        raw = params.get(key)
        if raw is None:
            continue
        value = resolve_secret(raw) if isinstance(raw, str) else raw
        if isinstance(raw, str) and raw.startswith(ENV_PREFIX) and value is None:
            continue
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            shown = f"{raw} = {value!r}" if isinstance(raw, str) and raw.startswith(ENV_PREFIX) else repr(raw)
            raise ConfigError(
                f"not an http(s) URL: {shown} (e.g. 'http://127.0.0.1:8000/v1')",
                field=f"model_list[{index}].litellm_params.{key}",
            )


def check_providers(deployments: Iterable[tuple[int, ModelEntry, Deployment]]) -> None:
    """Raise ``ConfigError`` for the first deployment on the litellm path whose provider (its
    ``custom_llm_provider``, else the ``model`` prefix before ``/``) is not in
    ``litellm.provider_list``. Imports litellm only when such a deployment exists."""
    litellm_deps = [(i, e, d) for i, e, d in deployments if d.path == "litellm"]
    if not litellm_deps:
        return
    known = _known_providers()
    for index, entry, dep in litellm_deps:
        custom = entry.litellm_params.get("custom_llm_provider")
        provider, key = (str(custom), "custom_llm_provider") if custom else (dep.provider, "model")
        if provider not in known:
            raise ConfigError(
                f"unknown provider {provider!r} (from {dep.litellm_model!r}): litellm does not know it;"
                f" use one of litellm's provider prefixes, e.g. {_EXAMPLES}",
                field=f"model_list[{index}].litellm_params.{key}",
            )


def _known_providers() -> frozenset[str]:
    """litellm's provider names (``litellm.provider_list``; its model price map is read from the
    package, never fetched)."""
    from gateway.upstream.litellm_path import import_litellm

    litellm = import_litellm()
    return frozenset(str(getattr(p, "value", p)) for p in litellm.provider_list)
