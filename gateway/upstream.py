"""The upstream boundary: calls the model endpoints of the ``model_list`` and maps every failure,
once, into ``rollguard.errors``.

Two transports behind one interface (``Upstream``):

* **lean** (OpenAI-compatible endpoints): ``litellm_params.model`` with provider prefix ``openai/``,
  ``hosted_vllm/``, ``lm_studio/`` or ``llamafile/``. One pooled ``aiohttp.ClientSession``, the
  body serialised with orjson, unknown request fields passed through, ``model`` replaced by the
  deployment's model name (prefix stripped), ``api_key`` resolved (``os.environ/NAME``), extra
  headers from ``litellm_params.extra_headers``. Default ``api_base`` for ``openai/`` is
  ``https://api.openai.com/v1``; the others need one.
* **litellm** (everything else: ``azure/``, ``anthropic/``, ``ollama_chat/`` (Ollama's native API),
  ``bedrock/``, ...): ``litellm.acompletion`` with the entry's params (LiteLLM's own retries off),
  its responses turned into plain OpenAI-shaped dicts. ``litellm_params.rollguard_path: lean |
  litellm`` forces a path (the key is never sent on). litellm is imported only when needed.

Both share the routing (why not ``litellm.Router``: one retry/fallback policy for both paths, and
the decisions are visible in our spans; see docs/decisions.md):

* several deployments of one ``model_name`` are used round-robin, one deployment per attempt;
* ``router_settings.num_retries`` further attempts on retryable failures (connection refused,
  5xx, timeout, 429, a broken or invalid stream *before its first chunk*), ``retry_after``
  seconds apart; never after a stream chunk was handed out;
* then ``router_settings.fallbacks`` (``[{alias: [fallback, ...]}]``) on 5xx / timeout /
  unavailable / rate-limit / rejected credentials, each fallback with its own retries. An
  upstream 400 is the request's fault: no retry, no fallback;
* timeouts per attempt: ``timeout`` (seconds; ``litellm_params.timeout`` overrides) for a whole
  non-streamed call and for the gap between two stream reads; ``stream_timeout`` (default
  ``timeout``) for connect + first chunk of a stream.

Error mapping (``UpstreamError`` subclasses, ``raise ... from`` the foreign exception):
``UpstreamBadRequest`` 400 (upstream 400/404-free 4xx, message passed on), ``UpstreamRateLimited``
429, ``UpstreamTimeout`` 504 (no answer in time, upstream 408), ``UpstreamUnavailable`` 502
(connection refused/reset, 5xx, 401/403 bad upstream credentials (never retried; message does not
quote the upstream's text, which may echo the key), 404 unknown upstream model, invalid JSON,
a broken stream, an ``{"error": ...}`` event in the stream).

Telemetry: one span per attempt, ``chat {model}``, kind CLIENT, with the OpenTelemetry GenAI
semantic-convention attributes (``gen_ai.*``, ``server.address``/``server.port``, ``error.type``);
never message content.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import aiohttp
import orjson
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from gateway.streaming import SSEParser, decode_chunk
from rollguard.errors import (
    ConfigError,
    NotFound,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from rollguard.settings import ModelEntry, RollguardSettings, resolve_secret

__all__ = ["LEAN_PROVIDERS", "Deployment", "Upstream", "UpstreamStream", "map_http_error"]

LEAN_PROVIDERS = frozenset({"openai", "hosted_vllm", "lm_studio", "llamafile"})
"""Providers whose endpoint is OpenAI's chat-completions API: served by the lean path."""

_DEFAULT_BASES = {"openai": "https://api.openai.com/v1"}
_ROLLGUARD_KEYS = frozenset({"rollguard_path"})
# litellm_params that configure the connection, not the request body (lean path).
_CONNECTION_KEYS = frozenset(
    {
        "model",
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "organization",
        "timeout",
        "stream_timeout",
        "max_retries",
        "num_retries",
        "extra_headers",
        "headers",
        "rpm",
        "tpm",
        "weight",
        "order",
        "custom_llm_provider",
        "rollguard_path",
    }
)
_MAX_MESSAGE = 500
_NOT_RETRIED = frozenset({"upstream_auth_failed", "upstream_model_not_found"})
_TRACER = trace.get_tracer("rollguard.gateway.upstream")

T = TypeVar("T")


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


# ---------------------------------------------------------------------------------------------- errors


@dataclass(slots=True)
class _Failed(Exception):
    """One failed attempt: the mapped error, whether another attempt may help, whether a
    fallback alias may help."""

    error: UpstreamError
    retryable: bool
    fallback: bool


def _upstream_message(raw: bytes) -> str:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:_MAX_MESSAGE].decode("utf-8", errors="replace").strip()
    msg: Any = obj
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        msg = err.get("message") or err.get("detail") if isinstance(err, dict) else err
        if msg is None and isinstance(obj.get("detail"), str):
            msg = obj["detail"]
    return str(msg)[:_MAX_MESSAGE] if msg else ""


def map_http_error(status: int, raw: bytes = b"") -> UpstreamError:
    """The rollguard error for an upstream HTTP error ``status`` with body ``raw``.

    400/409/413/422 and other 4xx -> ``UpstreamBadRequest`` with the upstream's message (truncated
    to 500 characters); 401/403 -> ``UpstreamUnavailable`` (the gateway's upstream credentials are
    wrong, the client cannot fix that; the upstream's text is not passed on); 404 ->
    ``UpstreamUnavailable`` (the configured model or api_base is wrong); 408 -> ``UpstreamTimeout``;
    429 -> ``UpstreamRateLimited``; 5xx and anything else -> ``UpstreamUnavailable``."""
    if status in (401, 403):
        return UpstreamUnavailable(
            f"the upstream rejected the gateway's credentials (HTTP {status})", code="upstream_auth_failed"
        )
    if status == 404:
        return UpstreamUnavailable(
            "the upstream does not know the configured model or path (HTTP 404)",
            code="upstream_model_not_found",
        )
    if status == 408:
        return UpstreamTimeout("the upstream timed out (HTTP 408)")
    if status == 429:
        return UpstreamRateLimited(_upstream_message(raw) or "the upstream is rate limiting (HTTP 429)")
    if 400 <= status < 500:
        return UpstreamBadRequest(
            _upstream_message(raw) or f"the upstream rejected the request (HTTP {status})"
        )
    return UpstreamUnavailable(f"the upstream failed (HTTP {status})")


def _failed(err: UpstreamError, cause: BaseException | None) -> _Failed:
    """Wrap a mapped error with its retry/fallback policy: a bad request is final (no retry, no
    fallback); rejected credentials and an unknown upstream model are not retried on the same
    alias but may fall back; everything else (5xx, connection, timeout, 429) is retried."""
    err.__cause__ = cause
    if isinstance(err, UpstreamBadRequest):
        return _Failed(err, retryable=False, fallback=False)
    if err.code in _NOT_RETRIED:
        return _Failed(err, retryable=False, fallback=True)
    return _Failed(err, retryable=True, fallback=True)


def _map_transport(exc: BaseException, what: str) -> _Failed:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):  # aiohttp.ServerTimeoutError included
        return _failed(UpstreamTimeout(f"the upstream did not answer in time ({what})"), exc)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _failed(UpstreamUnavailable(f"cannot connect to the upstream ({what})"), exc)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return _failed(UpstreamUnavailable(f"the upstream broke the connection ({what})"), exc)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return _failed(UpstreamUnavailable(f"upstream connection error ({what}): {type(exc).__name__}"), exc)
    return _failed(UpstreamUnavailable(f"upstream call failed ({what}): {type(exc).__name__}"), exc)


_LITELLM_PREFIX = re.compile(r"^(?:litellm\.\w+:\s*)?(?:\w+Exception\s*-\s*)?")


def _map_litellm(exc: BaseException) -> _Failed:
    """litellm's exception classes -> ours (litellm is imported by the caller already)."""
    import litellm

    ex = litellm.exceptions
    msg = _LITELLM_PREFIX.sub("", str(getattr(exc, "message", "") or exc))[:_MAX_MESSAGE]
    if isinstance(exc, ex.Timeout):
        return _failed(UpstreamTimeout("the upstream did not answer in time"), exc)
    if isinstance(exc, ex.RateLimitError):
        return _failed(UpstreamRateLimited(msg or "the upstream is rate limiting"), exc)
    if isinstance(exc, ex.AuthenticationError | ex.PermissionDeniedError):
        status = getattr(exc, "status_code", 401)
        return _failed(map_http_error(status if status in (401, 403) else 401), exc)
    if isinstance(exc, ex.NotFoundError):
        return _failed(map_http_error(404), exc)
    if isinstance(exc, ex.BadRequestError | ex.UnprocessableEntityError):
        return _failed(UpstreamBadRequest(msg or "the upstream rejected the request"), exc)
    if isinstance(exc, ex.APIConnectionError):
        return _failed(UpstreamUnavailable("cannot connect to the upstream"), exc)
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status < 600:
        return _failed(map_http_error(status, msg.encode()), exc)
    return _failed(UpstreamUnavailable(f"upstream call failed: {type(exc).__name__}"), exc)


def _stream_error_event(chunk: Mapping[str, Any]) -> _Failed:
    err = chunk.get("error")
    code = err.get("code") if isinstance(err, dict) else None
    if code in (429, "429", "rate_limit_exceeded"):
        return _failed(UpstreamRateLimited("the upstream reported a rate limit in the stream"), None)
    return _failed(UpstreamUnavailable("the upstream reported an error in the stream"), None)


# ---------------------------------------------------------------------------------------------- spans


def _start_span(dep: Deployment, body: Mapping[str, Any], attempt: int, stream: bool) -> Span:
    host, port = dep.server
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": dep.provider,
        "gen_ai.provider.name": dep.provider,
        "gen_ai.request.model": dep.model,
        "rollguard.model_alias": dep.alias,
        "rollguard.upstream.path": dep.path,
        "rollguard.upstream.attempt": attempt,
        "rollguard.upstream.stream": stream,
    }
    if host:
        attrs["server.address"] = host
    if port:
        attrs["server.port"] = port
    for key, attr in (
        ("max_tokens", "gen_ai.request.max_tokens"),
        ("max_completion_tokens", "gen_ai.request.max_tokens"),
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
    ):
        v = body.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool):
            attrs[attr] = v
    return _TRACER.start_span(f"chat {dep.model}", kind=SpanKind.CLIENT, attributes=attrs)


def _record_response(span: Span, resp: Mapping[str, Any], finish_reasons: list[str]) -> None:
    if not span.is_recording():
        return
    if isinstance(resp.get("model"), str):
        span.set_attribute("gen_ai.response.model", resp["model"])
    if isinstance(resp.get("id"), str):
        span.set_attribute("gen_ai.response.id", resp["id"])
    usage = resp.get("usage")
    if isinstance(usage, Mapping):
        if isinstance(usage.get("prompt_tokens"), int):
            span.set_attribute("gen_ai.usage.input_tokens", usage["prompt_tokens"])
        if isinstance(usage.get("completion_tokens"), int):
            span.set_attribute("gen_ai.usage.output_tokens", usage["completion_tokens"])
    if finish_reasons:
        span.set_attribute("gen_ai.response.finish_reasons", finish_reasons)


def _end_span(span: Span, error: UpstreamError | None = None) -> None:
    if error is not None:
        span.set_attribute("error.type", type(error).__name__)
        span.set_status(Status(StatusCode.ERROR, error.code or ""))
    span.end()


def _finish_reasons(resp: Mapping[str, Any]) -> list[str]:
    out = []
    for c in resp.get("choices") or ():
        if isinstance(c, Mapping) and c.get("finish_reason"):
            out.append(str(c["finish_reason"]))
    return out


# ---------------------------------------------------------------------------------------------- streams


class UpstreamStream:
    """An open upstream stream whose first chunk has already been read (so connect errors, HTTP
    errors and a broken start were raised by ``Upstream.open_stream`` as proper errors).

    Async iterator of chunk dicts (OpenAI ``chat.completion.chunk`` shape). Errors after the first
    chunk raise ``UpstreamTimeout`` / ``UpstreamUnavailable`` / ``UpstreamRateLimited`` from
    ``__anext__`` (never retried: bytes may already be with the client). Always ``await aclose()``
    (or use ``async with``); it closes the connection if the stream was not read to its end.
    ``deployment`` is the deployment that answered; ``usage`` the upstream's usage when seen.
    """

    def __init__(
        self, deployment: Deployment, first: dict[str, Any], rest: AsyncIterator[dict[str, Any]], span: Span
    ) -> None:
        self.deployment = deployment
        self._first: dict[str, Any] | None = first
        self._rest = rest
        self._span = span
        self._finish: list[str] = []
        self.usage: dict[str, Any] | None = None
        self.model: str | None = None
        self._closed = False
        self._observe(first)

    def _observe(self, chunk: dict[str, Any]) -> None:
        if self.model is None and isinstance(chunk.get("model"), str):
            self.model = chunk["model"]
        u = chunk.get("usage")
        if isinstance(u, dict):
            self.usage = u
        self._finish.extend(_finish_reasons(chunk))

    def __aiter__(self) -> UpstreamStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        if self._closed:
            raise StopAsyncIteration
        try:
            chunk = await self._rest.__anext__()
        except StopAsyncIteration:
            await self.aclose()
            raise
        except _Failed as f:
            await self._end(f.error)
            raise f.error from f.error.__cause__ or None
        self._observe(chunk)
        return chunk

    async def _end(self, error: UpstreamError | None) -> None:
        if self._closed:
            return
        self._closed = True
        aclose = getattr(self._rest, "aclose", None)
        if aclose is not None:
            await aclose()
        _record_response(self._span, {"model": self.model, "usage": self.usage}, self._finish)
        _end_span(self._span, error)

    async def aclose(self) -> None:
        """Stop reading; close the upstream connection; end the span. Idempotent."""
        await self._end(None)

    async def __aenter__(self) -> UpstreamStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# ---------------------------------------------------------------------------------------------- transports


class _Lean:
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
        except _Failed:
            raise
        except Exception as exc:
            raise _map_transport(exc, "completion") from exc
        if status >= 400:
            raise _failed(map_http_error(status, raw), None)
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _failed(
                UpstreamUnavailable("the upstream sent invalid JSON", code="upstream_invalid_json"), exc
            ) from exc
        if not isinstance(obj, dict) or "choices" not in obj:
            raise _failed(
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
            raise _map_transport(exc, "stream") from exc
        if resp.status >= 400:
            try:
                raw = await resp.read()
            except Exception:
                raw = b""
            resp.release()
            raise _failed(map_http_error(resp.status, raw), None)
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
            except _Failed:
                raise
            except Exception as exc:
                raise _map_transport(exc, "stream") from exc
        finally:
            if done:
                resp.release()
            else:
                resp.close()


def _decode(ev: Any) -> dict[str, Any] | None:
    try:
        chunk = decode_chunk(ev)
    except UpstreamUnavailable as exc:
        raise _failed(exc, exc.__cause__) from exc
    if chunk is not None and "error" in chunk and "choices" not in chunk:
        raise _stream_error_event(chunk)
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


class _LiteLLM:
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
            raise _map_litellm(exc) from exc
        return _plain(resp, stream=False)

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
            raise _map_litellm(exc) from exc
        return self._chunks(resp)

    @staticmethod
    async def _chunks(resp: Any) -> AsyncIterator[dict[str, Any]]:
        try:
            async for chunk in resp:
                yield _plain(chunk, stream=True)
        except _Failed:
            raise
        except Exception as exc:
            raise _map_litellm(exc) from exc


# ---------------------------------------------------------------------------------------------- Upstream


class Upstream:
    """The model endpoints of one configuration.

    ``complete(alias, body) -> dict`` (an OpenAI ``chat.completion``), ``open_stream(alias, body)
    -> UpstreamStream`` (first chunk already read), ``stream(alias, body)`` (an async iterator of
    chunk dicts built on ``open_stream``). ``body`` is the client's chat-completions request (it is
    not modified; ``model`` is replaced per deployment). Raises ``NotFound`` (code
    ``model_not_found``) for an unknown alias and ``UpstreamError`` subclasses (see the module
    docstring). Build once at startup, ``await aclose()`` at shutdown.
    """

    def __init__(self, settings: RollguardSettings, *, connector_limit: int = 1000) -> None:
        rs = settings.router_settings
        self.num_retries = rs.num_retries
        self.timeout = rs.timeout
        self.stream_timeout = rs.stream_timeout or rs.timeout
        self.retry_after = rs.retry_after
        self._deployments: dict[str, list[Deployment]] = {}
        for i, entry in enumerate(settings.model_list):
            self._deployments.setdefault(entry.model_name, []).append(Deployment.from_entry(entry, i))
        self._fallbacks: dict[str, list[str]] = {}
        for fb in rs.fallbacks:
            for src, targets in fb.items():
                self._fallbacks.setdefault(src, []).extend(targets)
        self._rr = {alias: itertools.count() for alias in self._deployments}
        self._lean = _Lean(connector_limit)
        self._litellm = _LiteLLM()
        if any(d.path == "litellm" for deps in self._deployments.values() for d in deps):
            self._litellm.litellm()  # import (seconds) at startup, never inside a request's timeout

    # -- lookup
    def model_names(self) -> list[str]:
        """Configured aliases (``model_name``), in config order."""
        return list(self._deployments)

    def has_model(self, alias: str) -> bool:
        return alias in self._deployments

    def deployments(self, alias: str) -> list[Deployment]:
        return list(self._deployments.get(alias, ()))

    def _pick(self, alias: str) -> Deployment:
        deps = self._deployments[alias]
        return deps[next(self._rr[alias]) % len(deps)]

    def _transport(self, dep: Deployment) -> _Lean | _LiteLLM:
        return self._lean if dep.path == "lean" else self._litellm

    # -- the retry / fallback loop
    async def _route(self, alias: str, attempt_fn: Callable[[Deployment, int], Awaitable[T]]) -> T:
        if alias not in self._deployments:
            raise NotFound(f"The model `{alias}` does not exist.", code="model_not_found", param="model")
        last: _Failed | None = None
        for name in [alias, *self._fallbacks.get(alias, [])]:
            if name not in self._deployments:
                continue
            for attempt in range(self.num_retries + 1):
                try:
                    return await attempt_fn(self._pick(name), attempt)
                except _Failed as f:
                    last = f
                    if not f.retryable:
                        break
                    if attempt < self.num_retries and self.retry_after:
                        await asyncio.sleep(self.retry_after)
            if last is not None and not last.fallback:
                break
        assert last is not None
        raise last.error from last.error.__cause__

    # -- calls
    async def complete(self, alias: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A non-streamed chat completion from ``alias`` (dict in OpenAI's ``chat.completion``
        shape). Raises ``NotFound`` / ``UpstreamError`` subclasses."""

        async def attempt(dep: Deployment, n: int) -> dict[str, Any]:
            span = _start_span(dep, body, n, stream=False)
            try:
                resp = await self._transport(dep).complete(dep, body, dep.timeout or self.timeout)
            except _Failed as f:
                _end_span(span, f.error)
                raise
            except BaseException:
                _end_span(span, UpstreamUnavailable("cancelled"))
                raise
            _record_response(span, resp, _finish_reasons(resp))
            _end_span(span)
            return resp

        return await self._route(alias, attempt)

    async def open_stream(self, alias: str, body: Mapping[str, Any]) -> UpstreamStream:
        """Open a streamed completion and read its first chunk (within ``stream_timeout``), with
        retries and fallbacks up to that point. The upstream is always asked for usage
        (``stream_options.include_usage``); the stream guard decides what the client sees.
        Raises ``NotFound`` / ``UpstreamError`` subclasses; the returned stream raises them too
        (no retries) after the first chunk."""

        async def attempt(dep: Deployment, n: int) -> UpstreamStream:
            span = _start_span(dep, body, n, stream=True)
            transport = self._transport(dep)
            read_timeout = dep.timeout or self.timeout
            rest: AsyncIterator[dict[str, Any]] | None = None
            started = time.perf_counter()
            try:
                async with asyncio.timeout(dep.stream_timeout or self.stream_timeout):
                    rest = await transport.open_stream(dep, body, read_timeout)
                    first = await rest.__anext__()
            except StopAsyncIteration as exc:
                err = _failed(UpstreamUnavailable("the upstream stream ended before any chunk"), exc)
                await _aclose(rest)
                _end_span(span, err.error)
                raise err from exc
            except _Failed as f:
                await _aclose(rest)
                _end_span(span, f.error)
                raise
            except TimeoutError as exc:
                await _aclose(rest)
                err = _map_transport(exc, f"first chunk after {time.perf_counter() - started:.1f} s")
                _end_span(span, err.error)
                raise err from exc
            except BaseException:
                await _aclose(rest)
                _end_span(span, UpstreamUnavailable("cancelled"))
                raise
            return UpstreamStream(dep, first, rest, span)

        return await self._route(alias, attempt)

    async def stream(self, alias: str, body: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Chunk dicts of a streamed completion (``open_stream`` + iterate + ``aclose``)."""
        s = await self.open_stream(alias, body)
        async with s:
            async for chunk in s:
                yield chunk

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._lean.aclose()


async def _aclose(it: AsyncIterator[Any] | None) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):  # best-effort cleanup of an already failed attempt
            await aclose()
