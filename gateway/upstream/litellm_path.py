"""The litellm path: every provider that is not OpenAI-compatible (``azure/``, ``anthropic/``,
``ollama_chat/``, ``bedrock/``, ...) through ``litellm.acompletion`` (imported on first use, its own
retries off), its responses turned into plain OpenAI-shaped dicts. A ``Transport``; raises
``AttemptFailed``."""

from __future__ import annotations

import os
import warnings
from collections.abc import AsyncIterator, Mapping
from typing import Any

from opentelemetry.propagate import inject

from gateway.upstream.errors import AttemptFailed, map_litellm_error
from gateway.upstream.transports import Deployment

__all__ = ["LiteLLMTransport"]


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


def import_litellm() -> Any:
    """The ``litellm`` module, imported the one way rollguard imports it (the config check and the
    transport alike): its model price map read from the package, never fetched from the network
    (``LITELLM_LOCAL_MODEL_COST_MAP``, read by litellm at import, the one environment variable
    rollguard sets); debug banners and telemetry off; its lazily-built pydantic schemas built now,
    not inside the first request's timeout. pydantic warns about ``ReadOnly`` TypedDict items while
    litellm is imported and its schemas are built (theirs, harmless): those warnings are silenced
    here, so a strict warnings filter cannot leave litellm half-imported."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import litellm
        from litellm.types.utils import Delta, ModelResponse, ModelResponseStream, StreamingChoices

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        ModelResponseStream(choices=[StreamingChoices(delta=Delta(content="x"))])
        ModelResponse()
    return litellm


class LiteLLMTransport:
    """Everything else, through ``litellm.acompletion`` (imported on first use)."""

    def __init__(self) -> None:
        self._mod: Any = None

    def litellm(self) -> Any:
        if self._mod is None:
            self._mod = import_litellm()
        return self._mod

    def _kwargs(self, dep: Deployment, body: Mapping[str, Any], seconds: float) -> dict[str, Any]:
        kw: dict[str, Any] = {k: v for k, v in dep.params.items() if k not in ("extra_headers",)}
        kw.update({k: v for k, v in body.items() if k != "model"})
        kw["model"] = dep.litellm_model
        if dep.api_key is not None:
            kw["api_key"] = dep.api_key
        if dep.api_base is not None:
            kw["api_base"] = dep.api_base
        headers = dict(dep.headers)
        inject(headers)  # the current (attempt) span's W3C trace context, as on the lean path
        if headers:
            kw["extra_headers"] = headers
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
