"""LiteLLM Proxy config compatibility: the ``model_list`` and ``router_settings`` schemas
(``ModelEntry``, ``RouterSettings``, LiteLLM's names) and the truth about the rest.

A LiteLLM Proxy ``config.yaml`` loads as is: its ``litellm_settings``, ``general_settings`` and
``environment_variables`` sections are accepted (``RollguardSettings`` fields), what rollguard acts
on is mapped, and everything else is named, in one startup warning (``ignored_keys``; also printed
by ``rollguard config check``), never dropped silently. Sources: LiteLLM's docs, "Config.yaml"
and "All settings" (docs.litellm.ai/docs/proxy/configs, /docs/proxy/config_settings).

Acted on:

* ``router_settings``: ``num_retries``, ``timeout``, ``stream_timeout``, ``fallbacks``,
  ``retry_after`` (``gateway.upstream.router``), ``allowed_fails`` and ``cooldown_time``
  (``gateway.upstream.cooldowns``);
* ``litellm_settings``: ``num_retries``, ``request_timeout`` (-> ``timeout``), ``fallbacks``, used
  when ``router_settings`` does not set the same value (LiteLLM's router settings win too);
* ``model_list[].litellm_params``: on the lean path ``model``, ``api_base``/``base_url``,
  ``api_key``, ``organization``, ``extra_headers``, ``custom_llm_provider``, ``timeout``,
  ``stream_timeout``, ``rpm``, ``tpm`` (per-deployment limits, ``gateway.upstream.router``) and
  ``rollguard_path``; on the litellm path every key except ``max_retries``/``num_retries`` (the
  router retries) is passed to ``litellm.acompletion``, ``rpm``/``tpm`` are the router's.

Ignored (named in the warning): every other key of those sections, every ``model_info`` key, and
any further key of a ``model_list`` entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ROUTER_KEYS = frozenset(
    {"num_retries", "timeout", "stream_timeout", "fallbacks", "retry_after", "allowed_fails", "cooldown_time"}
)
"""``router_settings`` keys the router acts on."""
LITELLM_SETTINGS_MAP = {"num_retries": "num_retries", "request_timeout": "timeout", "fallbacks": "fallbacks"}
"""``litellm_settings`` key -> the ``router_settings`` field it sets."""
LEAN_PARAMS = frozenset(
    {
        "model",
        "api_base",
        "base_url",
        "api_key",
        "organization",
        "extra_headers",
        "custom_llm_provider",
        "timeout",
        "stream_timeout",
        "rpm",
        "tpm",
        "rollguard_path",
    }
)
"""``litellm_params`` keys the lean transport and the router act on."""
NOT_PASSED = frozenset({"max_retries", "num_retries"})
"""``litellm_params`` keys never passed to litellm (the router retries)."""


class ModelEntry(BaseModel):
    """One LiteLLM ``model_list`` entry. Unknown keys are kept (LiteLLM has many) and named by
    ``ignored_keys``."""

    model_config = ConfigDict(extra="allow")
    model_name: str = Field(min_length=1)
    litellm_params: dict[str, Any]
    model_info: dict[str, Any] = Field(default_factory=dict)

    @field_validator("litellm_params")
    @classmethod
    def _needs_model(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(v.get("model"), str) or not v["model"]:
            raise ValueError("litellm_params.model is required (e.g. 'openai/gpt-4o')")
        for key in ("rpm", "tpm"):
            if key in v and (not isinstance(v[key], int) or isinstance(v[key], bool) or v[key] < 1):
                raise ValueError(f"litellm_params.{key} must be a whole number >= 1 (per minute)")
        return v

    @model_validator(mode="after")
    def _stars_filled(self) -> ModelEntry:
        """Each ``*`` of ``litellm_params.model`` is filled by what a ``*`` of the requested name
        matched (``gateway.upstream.wildcards``): a model with more ``*`` than ``model_name`` would
        send a literal ``*`` upstream, so it is refused."""
        model = str(self.litellm_params["model"])
        have, need = self.model_name.count("*"), model.count("*")
        if need > have:
            raise ValueError(
                f"litellm_params.model {model!r} has {need} '*' but model_name {self.model_name!r} has"
                f" {have}: each '*' of the model takes what a '*' of the requested name matched, so a"
                " wildcard deployment needs a wildcard model_name (e.g. model_name: 'openai/*')"
            )
        return self


class RouterSettings(BaseModel):
    """Retries, timeouts and fallbacks (LiteLLM ``router_settings`` names). Other LiteLLM router
    keys are kept and named by ``ignored_keys``."""

    model_config = ConfigDict(extra="allow")
    num_retries: int = Field(default=1, ge=0, le=10)
    timeout: float = Field(default=60.0, gt=0, description="seconds per upstream attempt")
    stream_timeout: float | None = Field(default=None, gt=0)
    fallbacks: list[dict[str, list[str]]] = Field(default_factory=list)
    retry_after: float = Field(default=0.0, ge=0, description="seconds between retries")
    allowed_fails: int | None = Field(
        default=None, ge=0, description="failures per minute before a deployment cools down; unset: off"
    )
    cooldown_time: float = Field(default=5.0, gt=0, description="seconds a failing deployment cools down")


def with_litellm_settings(router: RouterSettings, litellm_settings: Mapping[str, Any]) -> RouterSettings:
    """``router`` with the ``litellm_settings`` values rollguard acts on (``LITELLM_SETTINGS_MAP``)
    filled in where ``router_settings`` did not set them. Raises ``ValueError`` naming the
    ``litellm_settings`` field of an invalid value."""
    update = {
        target: litellm_settings[key]
        for key, target in LITELLM_SETTINGS_MAP.items()
        if key in litellm_settings and target not in router.model_fields_set
    }
    if not update:
        return router
    try:
        return RouterSettings.model_validate({**router.model_dump(exclude_unset=True), **update})
    except ValidationError as exc:
        err = exc.errors()[0]
        target = str(err["loc"][0]) if err["loc"] else ""
        key = next((k for k, t in LITELLM_SETTINGS_MAP.items() if t == target), target)
        raise ValueError(f"litellm_settings.{key}: {err['msg']}") from None


def ignored_keys(
    model_list: list[ModelEntry],
    router: RouterSettings,
    sections: Mapping[str, Mapping[str, Any]],
    lean: Mapping[int, bool],
) -> list[str]:
    """Every configured key rollguard does not act on, grouped, in config order:
    ``litellm_settings.{set_verbose, success_callback}``, ``router_settings.{routing_strategy}``,
    ``model_list[0].litellm_params.{temperature}``, ``model_list[0, 3].model_info.{id}`` (entries
    with the same ignored keys are named together).
    ``sections``: ``litellm_settings``, ``general_settings``, ``environment_variables`` by name;
    ``lean``: model_list index -> whether that deployment takes the lean path."""
    out: list[str] = []

    def add(where: str, keys: list[str]) -> None:
        if keys:
            out.append(f"{where}.{{{', '.join(keys)}}}")

    add("router_settings", [k for k in (router.model_extra or {}) if k not in ROUTER_KEYS])
    for name, section in sections.items():
        acted = LITELLM_SETTINGS_MAP if name == "litellm_settings" else {}
        add(name, [str(k) for k in section if k not in acted])
    groups: dict[tuple[str, tuple[str, ...]], list[int]] = {}  # same keys in several entries: once
    for i, entry in enumerate(model_list):
        known = LEAN_PARAMS if lean.get(i, False) else None
        params = entry.litellm_params
        found = (
            (
                ".litellm_params",
                [k for k in params if (k not in known if known is not None else k in NOT_PASSED)],
            ),
            (".model_info", [str(k) for k in entry.model_info]),
            ("", list(entry.model_extra or {})),
        )
        for suffix, names in found:
            if names:
                groups.setdefault((suffix, tuple(names)), []).append(i)
    for (suffix, same), indices in groups.items():
        add(f"model_list[{', '.join(map(str, indices))}]{suffix}", list(same))
    return out
