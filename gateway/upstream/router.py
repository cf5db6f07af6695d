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
* an upstream 429/503 with ``Retry-After`` (seconds or HTTP-date) or ``retry-after-ms`` cools
  that deployment down for that long (for every request; garbage ignored, capped at an hour):
  the retry goes to a free deployment of the alias at once, else to a free fallback at once,
  else waits it out (at least ``retry_after``) while this request's waits add up to at most
  ``timeout`` seconds; beyond that it gives up at once and the client gets the error with
  ``Retry-After`` (whole seconds, rounded up). LiteLLM's router does the same (cooldown from
  the header, no sleep while another deployment is healthy, give up rather than outwait the
  budget);
* a deployment at its ``rpm``/``tpm`` is skipped (``deployment_limits``), one failing more than
  ``allowed_fails`` times a minute cools down (``cooldowns``); ``*`` patterns: ``wildcards``;
* then ``router_settings.fallbacks`` (``[{alias: [fallback, ...]}]``) on 5xx / timeout /
  unavailable / rate-limit / rejected credentials, each fallback with its own retries. An
  upstream 400 is the request's fault: no retry, no fallback;
* timeouts per attempt: ``timeout`` (seconds; ``litellm_params.timeout`` overrides) for a whole
  non-streamed call and for the gap between two stream reads; ``stream_timeout`` (default
  ``timeout``) for connect + first chunk of a stream.

Error mapping (``UpstreamError`` subclasses, ``raise ... from`` the foreign exception):
``UpstreamBadRequest`` 400 (upstream 400/404-free 4xx, message passed on), ``UpstreamRateLimited``
429, ``UpstreamTimeout`` 504 (no answer in time, upstream 408), ``UpstreamOverloaded`` 503 (upstream
503), ``UpstreamUnavailable`` 502 (connection refused/reset, other 5xx, 401/403 bad upstream
credentials (never retried; message does not quote the upstream's text, which may echo the key),
404 unknown upstream model, a broken stream, an ``{"error": ...}`` event in the stream; code
``upstream_misconfigured``, not retried, for a deployment that cannot be called as configured: a
provider litellm does not know (its "LLM Provider NOT provided" 400 is the config's fault, not the
client's) or an ``api_base`` that is not a URL), ``UpstreamInvalidResponse`` 502
``upstream_invalid_response`` (invalid JSON, or a reply or chunk that is not a chat completion:
``gateway.upstream.shapes``, checked here for every transport).

Modules: this one routes (``Upstream``, ``UpstreamStream``, spans); ``gateway.upstream.transports``
holds ``Deployment`` and the ``Transport`` protocol; ``lean`` and ``litellm_path`` are the two
transports; ``gateway.upstream.errors`` the error mapping. ``Upstream(settings, transport=...)``
sends every deployment through one given transport (``rollguard.testing.InMemoryTransport`` in
unit tests).

Telemetry: one span per attempt, ``chat {model}``, kind CLIENT, with the OpenTelemetry GenAI
semantic-convention attributes (``gen_ai.*``, ``server.address``/``server.port``, ``error.type``);
never message content. The attempt's span is the current span while the transport sends the
request, so the transports propagate its W3C trace context (``traceparent``) to the upstream.
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

from gateway.ratelimit import RateLimits
from gateway.upstream.cooldowns import FailureCooldown
from gateway.upstream.deployment_limits import Charge, DeploymentLimits
from gateway.upstream.errors import AttemptFailed, failed, map_http_error, map_transport_error
from gateway.upstream.lean import LeanTransport
from gateway.upstream.litellm_path import LiteLLMTransport
from gateway.upstream.shapes import check_chunk, check_completion
from gateway.upstream.transports import LEAN_PROVIDERS, Deployment, Transport, checked
from gateway.upstream.wildcards import Wildcards
from rollguard.errors import UpstreamError, UpstreamUnavailable
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
        if error.retry_after is not None:
            span.set_attribute("rollguard.upstream.retry_after_s", error.retry_after)
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

    charge: Charge | None = None
    """Charges the stream's tokens to its deployment's ``tpm`` budget at its end (when it has one)."""

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

    def ready(self) -> bool:
        """True when the next chunk is already parsed: no network wait (lean transport only)."""
        ready = getattr(self._rest, "ready", None)
        return self._first is not None or self._closed or (ready is not None and bool(ready()))

    async def __anext__(self) -> dict[str, Any]:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        if self._closed:
            raise StopAsyncIteration
        try:
            chunk = check_chunk(await self._rest.__anext__())
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
        if self.charge is not None:
            await self.charge(self.deployment, self.usage)

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

    def __init__(
        self,
        settings: RollguardSettings,
        *,
        connector_limit: int = 1000,
        transport: Transport | None = None,
        limits: RateLimits | None = None,
    ) -> None:
        rs = settings.router_settings
        self.num_retries = rs.num_retries
        self.timeout = rs.timeout
        self.stream_timeout = rs.stream_timeout or rs.timeout
        self.retry_after = rs.retry_after
        self._fails = FailureCooldown(rs.allowed_fails, rs.cooldown_time)
        self._deployments: dict[str, list[Deployment]] = {}
        for i, entry in enumerate(settings.model_list):
            self._deployments.setdefault(entry.model_name, []).append(Deployment.from_entry(entry, i))
        self._fallbacks: dict[str, list[str]] = {}
        for fb in rs.fallbacks:
            for src, targets in fb.items():
                self._fallbacks.setdefault(src, []).extend(targets)
        self._chains = {
            alias: [n for n in (alias, *self._fallbacks.get(alias, ())) if n in self._deployments]
            for alias in self._deployments
        }
        """alias -> the aliases to try, in order: itself, then its configured fallbacks."""
        self._rr = {alias: itertools.count() for alias in self._deployments}
        self._served = tuple(dict.fromkeys(e.model_name for e in settings.model_list))
        self._wildcards = Wildcards(enumerate(settings.model_list))
        """``model_name`` patterns (``*``): requested names they serve are added on first use."""
        self._limits = DeploymentLimits.of(settings, limits, self._deployments)
        """Per-deployment ``rpm``/``tpm`` (``gateway.upstream.deployment_limits``)."""
        self._cooldown: dict[int, float] = {}
        """``id(deployment)`` -> ``time.monotonic()`` until which its upstream asked us to wait."""
        self._given = checked(transport) if transport is not None else None
        """Every deployment's transport when given (``rollguard.testing.InMemoryTransport``)."""
        self._lean = LeanTransport(connector_limit)
        self._litellm = LiteLLMTransport()
        uses_litellm = any(d.path == "litellm" for deps in self._deployments.values() for d in deps)
        if self._given is None and uses_litellm:
            self._litellm.litellm()  # import (seconds) at startup, never inside a request's timeout

    # -- lookup
    def model_names(self) -> list[str]:
        """Configured aliases (``model_name``), in config order."""
        return [a for a in self._deployments if not self._wildcards.made(a)]

    def has_model(self, alias: str) -> bool:
        """Whether ``alias`` is served: a configured alias or a name a wildcard pattern matches."""
        return alias in self._deployments or self._wildcards.match(alias) is not None

    def route_alias(self, model: str) -> str | None:
        """The configured ``model_name`` that serves ``model`` (itself, or the wildcard pattern
        that matches it), or None: what spans and metric labels may name."""
        if not self._wildcards.any:  # the common case: no patterns configured
            return model if model in self._deployments else None
        if model in self._deployments and not self._wildcards.made(model):
            return model
        return self._wildcards.match(model)

    def deployments(self, alias: str) -> list[Deployment]:
        return list(self._deployments.get(alias, ()))

    def _pick(self, alias: str) -> Deployment:
        """The next deployment of ``alias`` round-robin, skipping those cooling down after a
        ``Retry-After`` while another is free; when all are cooling, the one free soonest."""
        deps = self._deployments[alias]
        n = next(self._rr[alias])
        if not self._cooldown:  # the hot path: no upstream asked us to wait
            return deps[n % len(deps)]
        now = time.monotonic()
        self._cooldown = {k: until for k, until in self._cooldown.items() if until > now}
        for k in range(len(deps)):
            dep = deps[(n + k) % len(deps)]
            if id(dep) not in self._cooldown:
                return dep
        return min(deps, key=lambda d: self._cooldown[id(d)])

    def _cool(self, dep: Deployment, seconds: float) -> None:
        """Keep ``dep`` out of picks for ``seconds`` (its upstream's ``Retry-After``)."""
        if seconds > 0:
            until = time.monotonic() + seconds
            self._cooldown[id(dep)] = max(until, self._cooldown.get(id(dep), 0.0))

    def _cooling(self, alias: str) -> float:
        """Seconds until some deployment of ``alias`` is free again (0.0: one is free now)."""
        if not self._cooldown:
            return 0.0
        now = time.monotonic()
        return max(0.0, min(self._cooldown.get(id(d), 0.0) - now for d in self._deployments[alias]))

    def _free_after(self, chain: list[str], i: int) -> bool:
        """Whether an alias after ``chain[i]`` has a deployment free now."""
        return any(self._cooling(fb) == 0.0 for fb in chain[i + 1 :])

    def _transport(self, dep: Deployment) -> Transport:
        if self._given is not None:
            return self._given
        return self._lean if dep.path == "lean" else self._litellm

    # -- the retry / fallback loop
    async def _route(self, alias: str, attempt_fn: Callable[[Deployment, int], Awaitable[T]]) -> T:
        """Run ``attempt_fn`` under the retry / fallback policy (module docstring).

        A failure whose upstream sent ``Retry-After`` (``error.retry_after``) cools its deployment
        down for that long, for every request: the next attempt goes to a free deployment of the
        alias at once; if none is free, to a fallback alias with a free deployment at once (a later
        request skips such an alias straight away, as LiteLLM's router skips deployments in
        cooldown); else it waits until a deployment is free (at least ``retry_after``), unless the
        waits of this request would then add up to more than ``timeout`` seconds: then it stops
        retrying and the error (with its hint, passed to the client as ``Retry-After``) is raised
        now. An alias nothing serves: 404 ``model_not_found`` naming the configured aliases."""
        if alias not in self._deployments and not self._wildcards.add(alias, self):
            from gateway.upstream.errors import model_not_served  # the error path only

            raise model_not_served(self._served)
        chain = self._chains[alias]
        waited = 0.0  # seconds slept on Retry-After hints (no clock read on the hot path)
        last: AttemptFailed | None = None
        for i, name in enumerate(chain):
            if self._cooldown and self._cooling(name) > 0 and self._free_after(chain, i):
                continue  # every deployment of this alias asked us to wait; a fallback is free
            for attempt in range(self.num_retries + 1):
                dep = self._pick(name)
                try:
                    if dep.alias in self._limits.metered:
                        dep = await self._limits.pick(self._deployments[name], dep)
                    return await attempt_fn(dep, attempt)
                except AttemptFailed as f:
                    last = f
                    hint = f.error.retry_after
                    if hint is not None:
                        self._cool(dep, hint)
                    elif self._fails.enabled and f.fallback and len(self._deployments[name]) > 1:
                        self._cool(dep, self._fails.failed(id(dep)))  # allowed_fails / cooldown_time
                    if not f.retryable or attempt >= self.num_retries:
                        break
                    wait = self.retry_after
                    cooling = self._cooling(name)
                    if cooling > 0:
                        if f.fallback and self._free_after(chain, i):
                            break  # a fallback can answer now: no point waiting here
                        wait = max(cooling, wait)
                        if waited + wait > self.timeout:
                            break  # the wait would outlast the request's budget
                        waited += wait
                    if wait:
                        await asyncio.sleep(wait)
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
                with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                    raw = await self._transport(dep).complete(dep, body, dep.timeout or self.timeout)
                resp = check_completion(raw)
            except AttemptFailed as f:
                _end_span(span, f.error)
                raise
            except BaseException:
                _end_span(span, UpstreamUnavailable("cancelled"))
                raise
            _record_response(span, resp, _finish_reasons(resp))
            _end_span(span)
            if dep.alias in self._limits.metered:
                await self._limits.charge(dep, resp.get("usage"))
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
                    with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                        rest = await transport.open_stream(dep, body, read_timeout)
                    first = check_chunk(await rest.__anext__())
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
            stream = UpstreamStream(dep, first, rest, span)
            stream.charge = self._limits.charge if dep.alias in self._limits.metered else None
            return stream

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
        if self._given is not None:
            await self._given.aclose()


async def _aclose(it: AsyncIterator[Any] | None) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):  # best-effort cleanup of an already failed attempt
            await aclose()
