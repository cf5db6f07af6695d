"""How to reach a deployment: ``Deployment`` (one resolved ``model_list`` entry), the ``Transport``
protocol, and the two transports, ``LeanTransport`` (OpenAI-compatible endpoints over one pooled
aiohttp session, orjson, our SSE parser) and ``LiteLLMTransport`` (``litellm.acompletion``).
Transports raise ``AttemptFailed`` (mapped error + retry policy) or a plain ``UpstreamError``
(``checked`` gives it the default policy); ``gateway.upstream.Upstream`` does the routing."""

from __future__ import annotations

import os
import warnings
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import aiohttp
import orjson

from gateway.streaming.sse import SSEParser, decode_chunk
from gateway.upstream.errors import (
    AttemptFailed,
    failed,
    http_failure,
    map_litellm_error,
    map_transport_error,
    stream_error_event,
)
from rollguard.errors import (
    ConfigError,
    UpstreamError,
    UpstreamUnavailable,
)
from rollguard.settings import ModelEntry, resolve_secret

__all__ = ["LEAN_PROVIDERS", "Deployment", "LeanTransport", "LiteLLMTransport", "Transport", "checked"]

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
            and k not in ("model", "timeout", "stream_timeout", "max_retries", "num_retries")
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


class LeanTransport:
    """OpenAI-compatible endpoints over one pooled aiohttp session."""

    def __init__(self, connector_limit: int) -> None:
        self._limit = connector_limit
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=30, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, raise_for_status=False)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @staticmethod
    def _headers(dep: Deployment) -> dict[str, str]:
        h = {"Content-Type": "application/json", **dep.headers}
        if dep.api_key:
            h["Authorization"] = f"Bearer {dep.api_key}"
        return h

    @staticmethod
    def _payload(dep: Deployment, body: Mapping[str, Any], stream: bool) -> bytes:
        payload = dict(body)
        payload["model"] = dep.model
        if stream:
            payload["stream"] = True
            opts = payload.get("stream_options")
            payload["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
        else:
            payload.pop("stream", None)
            payload.pop("stream_options", None)
        return orjson.dumps(payload)

    async def complete(self, dep: Deployment, body: Mapping[str, Any], seconds: float) -> dict[str, Any]:
        data = self._payload(dep, body, stream=False)
        try:
            async with self.session().post(
                dep.url, data=data, headers=self._headers(dep), timeout=aiohttp.ClientTimeout(total=seconds)
            ) as resp:
                raw = await resp.read()
                status = resp.status
                headers = resp.headers
        except AttemptFailed:
            raise
        except Exception as exc:
            raise map_transport_error(exc, "completion") from exc
        if status >= 400:
            raise http_failure(status, raw, headers)
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise failed(
                UpstreamUnavailable("the upstream sent invalid JSON", code="upstream_invalid_json"), exc
            ) from exc
        if not isinstance(obj, dict) or "choices" not in obj:
            raise failed(
                UpstreamUnavailable("the upstream sent no completion", code="upstream_invalid_json"), None
            )
        return obj

    async def open_stream(
        self, dep: Deployment, body: Mapping[str, Any], read_timeout: float
    ) -> AsyncIterator[dict[str, Any]]:
        data = self._payload(dep, body, stream=True)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=read_timeout, sock_read=read_timeout)
        try:
            resp = await self.session().post(dep.url, data=data, headers=self._headers(dep), timeout=timeout)
        except Exception as exc:
            raise map_transport_error(exc, "stream") from exc
        if resp.status >= 400:
            try:
                raw = await resp.read()
            except Exception:
                raw = b""
            resp.release()
            raise http_failure(resp.status, raw, resp.headers)
        return self._events(resp)

    @staticmethod
    async def _events(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
        parser = SSEParser()
        done = False
        try:
            try:
                async for data in resp.content.iter_any():
                    for ev in parser.feed(data):
                        chunk = _decode(ev)
                        if chunk is None:
                            done = True
                            return
                        if chunk:
                            yield chunk
                for ev in parser.close():
                    chunk = _decode(ev)
                    if chunk is None:
                        done = True
                        return
                    if chunk:
                        yield chunk
                done = True
            except AttemptFailed:
                raise
            except Exception as exc:
                raise map_transport_error(exc, "stream") from exc
        finally:
            if done:
                resp.release()
            else:
                resp.close()


def _decode(ev: Any) -> dict[str, Any] | None:
    try:
        chunk = decode_chunk(ev)
    except UpstreamUnavailable as exc:
        raise failed(exc, exc.__cause__) from exc
    if chunk is not None and "error" in chunk and "choices" not in chunk:
        raise stream_error_event(chunk)
    return chunk


_RESPONSE_KEYS = (
    "id",
    "object",
    "created",
    "model",
    "system_fingerprint",
    "service_tier",
    "choices",
    "usage",
)
_MESSAGE_KEYS = ("role", "content", "tool_calls", "function_call", "refusal")


def _clean(d: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: d[k] for k in keys if k in d and d[k] is not None}


def _plain(obj: Any, stream: bool) -> dict[str, Any]:
    """A litellm ``ModelResponse``/``ModelResponseStream`` as a plain OpenAI-shaped dict."""
    raw = obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)
    out = _clean(raw, _RESPONSE_KEYS)
    out["object"] = "chat.completion.chunk" if stream else "chat.completion"
    choices = []
    for c in raw.get("choices") or ():
        inner_key = "delta" if stream else "message"
        inner = _clean(c.get(inner_key) or {}, _MESSAGE_KEYS)
        if not stream:
            inner.setdefault("content", None)
        choice = {"index": c.get("index", 0), inner_key: inner, "finish_reason": c.get("finish_reason")}
        choices.append(choice)
    out["choices"] = choices
    usage = raw.get("usage")
    if isinstance(usage, Mapping):
        out["usage"] = {
            k: usage[k]
            for k in ("prompt_tokens", "completion_tokens", "total_tokens")
            if usage.get(k) is not None
        }
    return out


class LiteLLMTransport:
    """Everything else, through ``litellm.acompletion`` (imported on first use)."""

    def __init__(self) -> None:
        self._mod: Any = None

    def litellm(self) -> Any:
        if self._mod is None:
            # Never fetch the model price map from the network at import.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import litellm

            litellm.suppress_debug_info = True
            litellm.telemetry = False
            # Build litellm's lazily-built pydantic schemas now, not inside the first request's
            # timeout; pydantic warns about a ReadOnly TypedDict item there (theirs, harmless).
            from litellm.types.utils import Delta, ModelResponse, ModelResponseStream, StreamingChoices

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ModelResponseStream(choices=[StreamingChoices(delta=Delta(content="x"))])
                ModelResponse()
            self._mod = litellm
        return self._mod

    def _kwargs(self, dep: Deployment, body: Mapping[str, Any], seconds: float) -> dict[str, Any]:
        kw: dict[str, Any] = {k: v for k, v in dep.params.items() if k not in ("extra_headers",)}
        kw.update({k: v for k, v in body.items() if k != "model"})
        kw["model"] = dep.litellm_model
        if dep.api_key is not None:
            kw["api_key"] = dep.api_key
        if dep.api_base is not None:
            kw["api_base"] = dep.api_base
        if dep.headers:
            kw["extra_headers"] = dict(dep.headers)
        kw["timeout"] = seconds
        kw["num_retries"] = 0
        kw["max_retries"] = 0
        return kw

    async def complete(self, dep: Deployment, body: Mapping[str, Any], seconds: float) -> dict[str, Any]:
        lit = self.litellm()
        kw = self._kwargs(dep, body, seconds)
        kw.pop("stream", None)
        kw.pop("stream_options", None)
        try:
            resp = await lit.acompletion(**kw)
        except Exception as exc:
            raise map_litellm_error(exc) from exc
        return _plain(resp, stream=False)

    async def aclose(self) -> None:
        """Nothing pooled here (litellm keeps its own clients)."""

    async def open_stream(
        self, dep: Deployment, body: Mapping[str, Any], read_timeout: float
    ) -> AsyncIterator[dict[str, Any]]:
        lit = self.litellm()
        kw = self._kwargs(dep, body, read_timeout)
        kw["stream"] = True
        opts = kw.get("stream_options")
        kw["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
        try:
            resp = await lit.acompletion(**kw)
        except Exception as exc:
            raise map_litellm_error(exc) from exc
        return self._chunks(resp)

    @staticmethod
    async def _chunks(resp: Any) -> AsyncIterator[dict[str, Any]]:
        try:
            async for chunk in resp:
                yield _plain(chunk, stream=True)
        except AttemptFailed:
            raise
        except Exception as exc:
            raise map_litellm_error(exc) from exc
