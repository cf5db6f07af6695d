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

Modules: this one routes (``Upstream``, ``UpstreamStream``, spans); ``gateway.upstream_transport``
holds ``Deployment`` and the two transports; ``gateway.upstream_errors`` the error mapping.

Telemetry: one span per attempt, ``chat {model}``, kind CLIENT, with the OpenTelemetry GenAI
semantic-convention attributes (``gen_ai.*``, ``server.address``/``server.port``, ``error.type``);
never message content.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from gateway.upstream_errors import AttemptFailed, failed, map_http_error, map_transport_error
from gateway.upstream_transport import LEAN_PROVIDERS, Deployment, LeanTransport, LiteLLMTransport
from rollguard.errors import (
    NotFound,
    UpstreamError,
    UpstreamUnavailable,
)
from rollguard.settings import RollguardSettings

__all__ = ["LEAN_PROVIDERS", "Deployment", "Upstream", "UpstreamStream", "map_http_error"]

_TRACER = trace.get_tracer("rollguard.gateway.upstream")

T = TypeVar("T")


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
        except AttemptFailed as f:
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
        self._lean = LeanTransport(connector_limit)
        self._litellm = LiteLLMTransport()
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

    def _transport(self, dep: Deployment) -> LeanTransport | LiteLLMTransport:
        return self._lean if dep.path == "lean" else self._litellm

    # -- the retry / fallback loop
    async def _route(self, alias: str, attempt_fn: Callable[[Deployment, int], Awaitable[T]]) -> T:
        if alias not in self._deployments:
            raise NotFound(f"The model `{alias}` does not exist.", code="model_not_found", param="model")
        last: AttemptFailed | None = None
        for name in [alias, *self._fallbacks.get(alias, [])]:
            if name not in self._deployments:
                continue
            for attempt in range(self.num_retries + 1):
                try:
                    return await attempt_fn(self._pick(name), attempt)
                except AttemptFailed as f:
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
            except AttemptFailed as f:
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
                err = failed(UpstreamUnavailable("the upstream stream ended before any chunk"), exc)
                await _aclose(rest)
                _end_span(span, err.error)
                raise err from exc
            except AttemptFailed as f:
                await _aclose(rest)
                _end_span(span, f.error)
                raise
            except TimeoutError as exc:
                await _aclose(rest)
                err = map_transport_error(exc, f"first chunk after {time.perf_counter() - started:.1f} s")
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
