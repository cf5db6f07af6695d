"""A local OpenAI-compatible upstream: the demo model, the benchmark upstream and the scripted
upstream of the tests (aiohttp.web + orjson, minimal work per request).

Endpoints: ``POST /v1/chat/completions`` (streamed or not; ``stream_options.include_usage`` adds a
final usage chunk with ``"choices": []``; ``n`` choices when the request asks for ``n``: the
same reply in each, usage counting every choice), ``GET /v1/models``, and for tests ``GET /stub/calls``
(``{"calls": {model: n}, "total": n}``), ``POST /stub/reset``, ``GET /stub/requests`` (the last 100
requests: model, body and the ``authorization``/``traceparent``/``x-*`` headers), ``POST /stub/script``
(``{"model": m, "script": {...}, "times": n | null}``: the next ``n`` calls for model ``m``, or all
when ``times`` is null, follow the script).

Mode of a request, first match wins:

1. **scripted**: a script in the ``x-stub-script`` header (JSON), in ``metadata.stub_script`` (an
   object or a JSON string), or registered for the model with ``POST /stub/script``;
2. the ``x-stub-mode`` header: ``echo``, ``fixed`` or ``recorded``;
3. the model name: starting with ``echo`` -> echo; ``fixed`` or ``bench`` -> fixed; anything else
   (``demo``, ``gpt-4o``, ...) -> recorded, with the regressed answers when the name contains
   ``regressed``.

* echo: the text of the last user message.
* fixed: ``reply_chars`` characters (default 512) of fixed text: the benchmark reply.
* recorded: a real recorded assistant reply to the nearest prompt (``gateway.demo.recorded``;
  built in a thread on first use, or at start with ``preload=True``).

Streams of echo/fixed/recorded replies have exactly ``chunks`` content chunks (default 16, header
``x-stub-chunks``), then a finish chunk, the usage chunk if asked, and ``data: [DONE]``; written in
one write unless ``x-stub-chunk-delay-ms`` asks for pacing. Token counts are approximations:
``ceil(characters / 4)``.

Script (all keys optional)::

    {"status": 429, "error": {"message": ..., "type": ..., "code": ...},
     "headers": {...},                # on an error or a non-streamed reply, e.g. {"Retry-After": "1"}
     "delay_ms": 0,                   # before the response starts
     "content": "text", "tool_calls": [...], "finish_reason": "stop",     # non-streamed reply
     "function_call": {"name", "arguments"}, "refusal": "text",           # non-streamed, optional
     "choices": [{"content", "tool_calls"?, "finish_reason"?}, ...],      # non-streamed, n > 1
     "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
     "chunks": [item, ...],           # streamed: exactly these events, in order
     "done": true}                    # end with data: [DONE]

Stream items: ``{"content": str, "role"?: str, "index"?: int}``, ``{"tool_call": {"index", "id"?,
"name"?, "arguments"?}}``, ``{"finish_reason": str}``, ``{"usage": {...}}`` (a ``choices: []``
chunk), ``{"chunk": {...}}`` (any dict), ``{"error": {...}}`` (a mid-stream error event),
``{"raw": str}`` (bytes written verbatim: ``": keep-alive\\n\\n"``, ``"data:\\n\\n"``, broken
JSON), ``{"delay_ms": n}``, ``{"disconnect": true}`` (abort the connection). Any event item may add
``"split_at": n`` (its bytes go out in two writes 20 ms apart, so the split really happens on the
wire) and ``"crlf": true`` (CRLF line ends). With ``usage`` at the top level and no usage item, the
usage chunk is added at the end when the request asked ``include_usage``.

Run: ``python -m gateway.demo.upstream --port 9000``; in code ``await start_stub()`` ->
``(runner, "http://127.0.0.1:PORT/v1")``; ``stub_state(runner)`` gives the counters directly.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import time
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web

from gateway.demo.recorded import RecordedAnswers
from gateway.demo.stub_sse import split_text, stream_plain, stream_script

__all__ = ["StubState", "build_app", "main", "serve_stub", "split_text", "start_stub", "stub_state"]

DEFAULT_CHUNKS = 16
DEFAULT_REPLY_CHARS = 512
_FIXED_WORDS = "The quick brown fox jumps over the lazy dog while the gateway checks every word. "


def _tokens(chars: int) -> int:
    return max(1, math.ceil(chars / 4))


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


class StubState:
    """Counters, registered scripts and recent requests of one stub server."""

    def __init__(self, *, chunks: int, reply_chars: int, api_key: str | None) -> None:
        self.chunks = chunks
        self.reply_chars = reply_chars
        self.api_key = api_key
        self.calls: Counter[str] = Counter()
        self.requests: deque[dict[str, Any]] = deque(maxlen=100)
        self.scripts: dict[str, list[Any]] = {}  # model -> [script, remaining uses or None]
        self.fixed_text = (_FIXED_WORDS * (reply_chars // len(_FIXED_WORDS) + 1))[:reply_chars]
        self._recorded: RecordedAnswers | None = None
        self._recorded_lock = asyncio.Lock()
        self._ids = itertools.count(1)

    def next_id(self) -> str:
        return f"chatcmpl-stub-{next(self._ids)}"

    def reset(self) -> None:
        self.calls.clear()
        self.requests.clear()
        self.scripts.clear()

    async def recorded(self) -> RecordedAnswers:
        if self._recorded is None:
            async with self._recorded_lock:
                if self._recorded is None:
                    self._recorded = await asyncio.to_thread(RecordedAnswers)
        return self._recorded

    def take_script(self, model: str) -> dict[str, Any] | None:
        entry = self.scripts.get(model)
        if entry is None:
            return None
        script, remaining = entry
        if remaining is not None:
            if remaining <= 1:
                del self.scripts[model]
            else:
                entry[1] = remaining - 1
        return script if isinstance(script, dict) else None


STATE: web.AppKey[StubState] = web.AppKey("stub_state", StubState)


def _error(
    status: int, message: str, type_: str = "invalid_request_error", code: str | None = None
) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _script_of(
    request: web.Request, body: dict[str, Any], state: StubState, model: str
) -> dict[str, Any] | None:
    raw = request.headers.get("x-stub-script")
    if raw:
        obj = orjson.loads(raw)
        return obj if isinstance(obj, dict) else None
    meta = body.get("metadata")
    if isinstance(meta, dict) and "stub_script" in meta:
        s = meta["stub_script"]
        obj = orjson.loads(s) if isinstance(s, str) else s
        return obj if isinstance(obj, dict) else None
    return state.take_script(model) if state.scripts else None


async def _reply_text(request: web.Request, body: dict[str, Any], state: StubState, model: str) -> str:
    mode = request.headers.get("x-stub-mode", "")
    if not mode:
        low = model.lower()
        mode = (
            "echo"
            if low.startswith("echo")
            else "fixed"
            if low.startswith(("fixed", "bench"))
            else "recorded"
        )
    if mode == "fixed":
        return state.fixed_text
    messages = body.get("messages") or []
    last_user = ""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            last_user = _text_of(m.get("content"))
            break
    if mode == "echo":
        return last_user
    answers = await state.recorded()
    return answers.reply(last_user, "regressed" if "regressed" in model.lower() else "good")


def _usage(body: dict[str, Any], completion: str, n: int = 1) -> dict[str, int]:
    """Token usage as OpenAI counts it: the prompt once, the completion once per choice (``n``)."""
    prompt_chars = sum(
        len(_text_of(m.get("content"))) for m in body.get("messages") or [] if isinstance(m, dict)
    )
    p, c = _tokens(prompt_chars), _tokens(len(completion)) * n
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def cap_reply(text: str, body: dict[str, Any]) -> tuple[str, str]:
    """``(text, finish_reason)`` under the request's ``max_completion_tokens`` / ``max_tokens``
    (a positive integer; the demo counts 4 characters a token, as ``_usage`` does): a longer reply
    is cut to the cap and finishes with ``"length"``, as OpenAI's do; else ``(text, "stop")``."""
    for key in ("max_completion_tokens", "max_tokens"):
        cap = body.get(key)
        if isinstance(cap, int) and not isinstance(cap, bool) and cap >= 1:
            if _tokens(len(text)) > cap:
                return text[: cap * 4], "length"
            break
    return text, "stop"


MAX_N = 128
"""OpenAI's bound on ``n`` (the gateway refuses more before the upstream is called)."""


def choices_n(body: dict[str, Any]) -> int:
    """The number of choices asked for: ``n`` when it is an integer in 1..``MAX_N``, else 1."""
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_N else 1


def _completion(
    state: StubState,
    model: str,
    message: dict[str, Any],
    finish: str,
    usage: Any,
    extra: Sequence[tuple[dict[str, Any], str]] = (),
) -> bytes:
    choices = [(message, finish), *extra]
    return orjson.dumps(
        {
            "id": state.next_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {"index": i, "message": m, "finish_reason": f, "logprobs": None}
                for i, (m, f) in enumerate(choices)
            ],
            "usage": usage,
        }
    )


async def _scripted(
    request: web.Request, body: dict[str, Any], state: StubState, model: str, script: dict[str, Any]
) -> web.StreamResponse:
    if script.get("delay_ms"):
        await asyncio.sleep(float(script["delay_ms"]) / 1000)
    status = int(script.get("status", 200))
    headers = {str(k): str(v) for k, v in (script.get("headers") or {}).items()}
    if status >= 400:
        err = script.get("error") or {
            "message": f"scripted error {status}",
            "type": "server_error",
            "code": None,
        }
        return web.Response(
            status=status, body=orjson.dumps({"error": err}), content_type="application/json", headers=headers
        )
    stream = bool(body.get("stream"))
    if stream and "chunks" in script:
        return await stream_script(request, body, state, model, script)
    text = str(script.get("content") or "")
    usage = script.get("usage") or _usage(body, text)
    if stream:
        return await stream_plain(request, body, state, model, text, usage)
    choices = [_scripted_choice(c) for c in script.get("choices") or [script]]
    return web.Response(
        body=_completion(state, model, choices[0][0], choices[0][1], usage, extra=choices[1:]),
        content_type="application/json",
        headers=headers,
    )


def _scripted_choice(spec: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """``(message, finish_reason)`` of one scripted non-streamed choice."""
    text = str(spec.get("content") or "")
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not (spec.get("tool_calls") or spec.get("function_call")) else None,
    }
    if spec.get("tool_calls"):
        message["tool_calls"] = spec["tool_calls"]
    for key in ("function_call", "refusal"):  # the legacy call and a refusal, as OpenAI sends them
        if spec.get(key) is not None:
            message[key] = spec[key]
    finish = str(spec.get("finish_reason") or ("tool_calls" if spec.get("tool_calls") else "stop"))
    return message, finish


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    if state.api_key is not None and request.headers.get("Authorization") != f"Bearer {state.api_key}":
        return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _error(400, "We could not parse the JSON body of your request.")
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return _error(400, "'messages' is a required property", code="invalid_value")
    model = str(body.get("model", ""))
    state.calls[model] += 1
    state.requests.append(
        {
            "model": model,
            "body": body,
            "headers": {
                k.lower(): v
                for k, v in request.headers.items()
                if k.lower() in ("authorization", "traceparent") or k.lower().startswith("x-")
            },
        }
    )
    try:
        script = _script_of(request, body, state, model)
    except orjson.JSONDecodeError:
        return _error(400, "invalid stub script JSON")
    if script is not None:
        return await _scripted(request, body, state, model, script)
    text, finish = cap_reply(await _reply_text(request, body, state, model), body)
    n = choices_n(body)
    usage = _usage(body, text, n)
    if body.get("stream"):
        return await stream_plain(request, body, state, model, text, usage, n=n, finish=finish)
    message = {"role": "assistant", "content": text}
    return web.Response(
        body=_completion(state, model, message, finish, usage, extra=[(message, finish)] * (n - 1)),
        content_type="application/json",
    )


async def list_models(request: web.Request) -> web.Response:
    names = ["demo", "demo-regressed", "echo", "fixed"]
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "rollguard-stub"} for n in names]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type="application/json")


async def get_calls(request: web.Request) -> web.Response:
    calls = request.app[STATE].calls
    return web.json_response({"calls": dict(calls), "total": sum(calls.values())})


async def get_requests(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(list(request.app[STATE].requests)), content_type="application/json")


async def reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.json_response({"ok": True})


async def set_script(request: web.Request) -> web.Response:
    body = await request.json()
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("model"), str)
        or not isinstance(body.get("script"), dict)
    ):
        return _error(400, "need {'model': str, 'script': object, 'times': int | null}")
    times = body.get("times")
    request.app[STATE].scripts[body["model"]] = [body["script"], int(times) if times is not None else None]
    return web.json_response({"ok": True})


def build_app(
    *, chunks: int = DEFAULT_CHUNKS, reply_chars: int = DEFAULT_REPLY_CHARS, api_key: str | None = None
) -> web.Application:
    """The stub's aiohttp application. ``api_key``: when set, requests need ``Authorization:
    Bearer <api_key>`` (else 401, OpenAI's error body)."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE] = StubState(chunks=chunks, reply_chars=reply_chars, api_key=api_key)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/stub/calls", get_calls)
    app.router.add_get("/stub/requests", get_requests)
    app.router.add_post("/stub/reset", reset)
    app.router.add_post("/stub/script", set_script)
    return app


def stub_state(runner: web.AppRunner) -> StubState:
    """The counters and scripts of a stub started with ``start_stub``."""
    app = runner.app
    assert isinstance(app, web.Application)
    return app[STATE]


async def start_stub(
    host: str = "127.0.0.1", port: int = 0, *, preload: bool = False, **options: Any
) -> tuple[web.AppRunner, str]:
    """Start the stub on the running loop. Returns ``(runner, base_url)`` with ``base_url`` like
    ``http://127.0.0.1:PORT/v1`` (an ``api_base``). Stop with ``await runner.cleanup()``.
    ``preload`` builds the recorded-answer index before returning (~2 s). ``options`` go to
    ``build_app``."""
    app = build_app(**options)
    if preload:
        await app[STATE].recorded()
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    server = site._server  # aiohttp exposes the bound port only here
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, f"http://{host}:{bound}/v1"


def serve_stub(host: str = "127.0.0.1", port: int = 9000, *, preload: bool = True, **options: Any) -> None:
    """Run the stub in the foreground until interrupted (on uvloop when installed)."""
    app = build_app(**options)
    if preload:
        app.on_startup.append(_preload)
    loop: asyncio.AbstractEventLoop | None = None
    try:  # uvloop comes with uvicorn[standard]; about twice the requests/s of the default loop
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        pass
    web.run_app(app, host=host, port=port, access_log=None, print=None, backlog=1024, loop=loop)


async def _preload(app: web.Application) -> None:
    await app[STATE].recorded()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Local OpenAI-compatible upstream (rollguard demo/bench stub)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument(
        "--chunks", type=int, default=DEFAULT_CHUNKS, help="content chunks per streamed reply"
    )
    parser.add_argument(
        "--reply-chars", type=int, default=DEFAULT_REPLY_CHARS, help="size of the fixed reply"
    )
    parser.add_argument("--api-key", default=None, help="require this bearer key")
    parser.add_argument("--no-preload", action="store_true", help="build the recorded index on first use")
    args = parser.parse_args(argv)
    print(f"stub upstream on http://{args.host}:{args.port}/v1", flush=True)
    serve_stub(
        args.host,
        args.port,
        preload=not args.no_preload,
        chunks=args.chunks,
        reply_chars=args.reply_chars,
        api_key=args.api_key,
    )


if __name__ == "__main__":
    main()
