"""How to reach a deployment: ``Deployment`` (one resolved ``model_list`` entry) and the
``Transport`` protocol the router calls. The two transports are ``gateway.upstream.lean``
(OpenAI-compatible endpoints over one pooled aiohttp session) and ``gateway.upstream.litellm_path``
(``litellm.acompletion``).
Transports raise ``AttemptFailed`` (mapped error + retry policy) or a plain ``UpstreamError``
(``checked`` gives it the default policy); ``gateway.upstream.Upstream`` does the routing."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from gateway.upstream.errors import (
    failed,
)
from rollguard.errors import (
    ConfigError,
    UpstreamError,
)
from rollguard.settings import ModelEntry, resolve_secret

__all__ = ["LEAN_PROVIDERS", "Deployment", "Transport", "checked"]

LEAN_PROVIDERS = frozenset({"openai", "hosted_vllm", "lm_studio", "llamafile"})
"""Providers whose endpoint is OpenAI's chat-completions API: served by the lean path."""

_DEFAULT_BASES = {"openai": "https://api.openai.com/v1"}
_ROLLGUARD_KEYS = frozenset({"rollguard_path"})


@dataclass(frozen=True, slots=True)
class Deployment:
    """One ``model_list`` entry, resolved. ``model`` is the name sent upstream (provider prefix
    stripped); ``timeout``/``stream_timeout`` in seconds (None: the router's)."""

    alias: str
    model: str
    litellm_model: str
    provider: str
    path: Literal["lean", "litellm"]
    api_base: str | None
    api_key: str | None
    headers: Mapping[str, str]
    timeout: float | None
    stream_timeout: float | None
    params: Mapping[str, Any] = field(default_factory=dict)
    """litellm path: every litellm_param (secrets resolved) except ``model`` and ours."""
    index: int = -1
    """Its place in ``model_list`` (names its ``rpm``/``tpm`` budget: ``budget_name``)."""

    @property
    def budget_name(self) -> str:
        """``alias#index``: the name of its per-deployment rate limit budget."""
        return f"{self.alias}#{self.index}"

    @property
    def url(self) -> str:
        return (self.api_base or "").rstrip("/") + "/chat/completions"

    @property
    def server(self) -> tuple[str, int | None]:
        if not self.api_base:
            return "", None
        parts = urlsplit(self.api_base)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return parts.hostname or "", port

    @classmethod
    def from_entry(cls, entry: ModelEntry, index: int) -> Deployment:
        """Raises ``ConfigError`` for a lean deployment without ``api_base`` (except ``openai/``)."""
        p = dict(entry.litellm_params)
        full = str(p["model"])
        provider, sep, name = full.partition("/")
        if not sep:
            provider, name = str(p.get("custom_llm_provider") or "openai"), full
        forced = p.get("rollguard_path")
        if forced not in (None, "lean", "litellm"):
            raise ConfigError(
                "rollguard_path must be 'lean' or 'litellm'",
                field=f"model_list[{index}].litellm_params.rollguard_path",
            )
        path: Literal["lean", "litellm"] = forced or ("lean" if provider in LEAN_PROVIDERS else "litellm")
        api_base = resolve_secret(p.get("api_base") or p.get("base_url"))
        if path == "lean":
            api_base = api_base or _DEFAULT_BASES.get(provider)
            if not api_base:
                raise ConfigError(
                    f"provider {provider!r} needs an api_base",
                    field=f"model_list[{index}].litellm_params.api_base",
                )
        api_key = resolve_secret(p.get("api_key"))
        if api_key is None and provider == "openai" and "api_key" not in p:
            api_key = os.environ.get("OPENAI_API_KEY")
        headers = {str(k): str(resolve_secret(str(v))) for k, v in (p.get("extra_headers") or {}).items()}
        org = resolve_secret(p.get("organization"))
        if org:
            headers["OpenAI-Organization"] = org
        params = {
            k: resolve_secret(v) if isinstance(v, str) else v
            for k, v in p.items()
            if k not in _ROLLGUARD_KEYS
            and k not in ("model", "timeout", "stream_timeout", "max_retries", "num_retries", "rpm", "tpm")
        }
        return cls(
            alias=entry.model_name,
            model=name if path == "lean" else full,
            litellm_model=full,
            provider=provider,
            path=path,
            api_base=api_base,
            api_key=api_key,
            headers=headers,
            timeout=_seconds(p.get("timeout")),
            stream_timeout=_seconds(p.get("stream_timeout")),
            params=params,
            index=index,
        )


def _seconds(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and v > 0 else None


# ---------------------------------------------------------------------------------------------- transports


class Transport(Protocol):
    """How one attempt reaches a deployment (the router's seam; httpx's ``BaseTransport`` is the
    model). ``complete`` returns an OpenAI ``chat.completion`` dict within ``seconds``;
    ``open_stream`` returns an async iterator of ``chat.completion.chunk`` dicts (``read_timeout``:
    seconds between two reads). Both raise ``AttemptFailed`` or an ``UpstreamError``; neither
    retries. ``aclose`` releases pooled connections (idempotent)."""

    async def complete(self, dep: Deployment, body: Mapping[str, Any], seconds: float) -> dict[str, Any]: ...

    async def open_stream(
        self, dep: Deployment, body: Mapping[str, Any], read_timeout: float
    ) -> AsyncIterator[dict[str, Any]]: ...

    async def aclose(self) -> None: ...


class _Checked:
    """A ``Transport`` whose plain ``UpstreamError`` s become ``AttemptFailed`` (``failed``'s
    default retry/fallback policy), so a transport outside ``gateway`` need not know it."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner

    async def complete(self, dep: Deployment, body: Mapping[str, Any], seconds: float) -> dict[str, Any]:
        try:
            return await self._inner.complete(dep, body, seconds)
        except UpstreamError as exc:
            raise failed(exc, exc.__cause__, retry_after=exc.retry_after) from exc.__cause__

    async def open_stream(
        self, dep: Deployment, body: Mapping[str, Any], read_timeout: float
    ) -> AsyncIterator[dict[str, Any]]:
        try:
            rest = await self._inner.open_stream(dep, body, read_timeout)
        except UpstreamError as exc:
            raise failed(exc, exc.__cause__, retry_after=exc.retry_after) from exc.__cause__
        return self._chunks(rest)

    @staticmethod
    async def _chunks(rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        try:
            async for chunk in rest:
                yield chunk
        except UpstreamError as exc:
            raise failed(exc, exc.__cause__, retry_after=exc.retry_after) from exc.__cause__
        finally:
            aclose = getattr(rest, "aclose", None)
            if aclose is not None:
                await aclose()

    async def aclose(self) -> None:
        await self._inner.aclose()


def checked(transport: Transport) -> Transport:
    """``transport`` with plain ``UpstreamError`` s mapped to ``AttemptFailed``."""
    return _Checked(transport)
