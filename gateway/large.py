"""Large inputs off the event loop: a request whose messages hold more than a threshold of text
(characters) has its pre_call checks, and later its audit record's redaction, run by a worker off
the event loop (as has the post_call check of a completion over the threshold), so the loop keeps
serving small requests and ``/healthz`` while it is checked (issue 11: one 3.9 M-character body
held the loop for seconds).

Where: in the gateway, a child process (``ProcessPoolExecutor``, spawned, ``workers`` of them,
default 1) holding its own copy of the pipeline, pickled once at start; only the request and the
result cross the pipe (~1 ms for 1 MB). A thread would share the GIL with the loop: CPython hands
it back every ``sys.getswitchinterval()`` (5 ms), but one regular-expression scan or NFKC pass over
hundreds of thousands of characters holds it for its whole C call, and on a loaded machine a
descheduled GIL holder stalls the loop far longer (measured: /healthz p99 190-680 ms at load 10
with a thread, for a 390,000-character request). Threads remain the fallback (a pipeline that
cannot be pickled, a broken child, unit tests). Several large requests at once queue behind each
other instead of competing with the loop. In the child, policies record no OpenTelemetry spans
(the request's span stays in the gateway, with the stage's decisions and metrics as usual).

A request rejected by ``limits`` never pays for redacting its whole body: its audit record keeps
the first ``CLIP_CHARS`` characters of each text (``clip_messages``), with a marker naming how many
were left out (the body never reached the upstream; the decision and its reason are kept whole).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from policies.base import CheckContext
from policies.pipeline import ConfiguredPolicy, Enabled, Pipeline, StageResult
from policies.privacy import Coverage, PrivacyRedactor
from rollguard.types import Interaction, Message, Mode, Stage, Verdict

__all__ = [
    "CLIP_CHARS",
    "LARGE_INPUT_CHARS",
    "LargeInputs",
    "clip_messages",
    "message_chars",
    "rejected_by_limits",
]

LARGE_INPUT_CHARS = 32_000
"""Characters of message text above which a request is checked off the event loop. On this
project's 2-core bench machine the default policies take about 1 ms of CPU per 10,000 characters
(``bench/time_builtin_policies.py``), so below this a request holds the loop for a few ms at most."""

CLIP_CHARS = 2_000
"""Characters of each text kept in the audit record of a request ``limits`` rejected."""

T = TypeVar("T")

log = logging.getLogger("rollguard.large")


def _text_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return 0


def message_chars(messages: Sequence[Message]) -> int:
    """Characters (Unicode code points) of text in ``messages``: string content, text parts and
    tool-call arguments (the locations ``policies.builtin.locations`` scans). O(number of parts)."""
    total = 0
    for m in messages:
        if not isinstance(m, dict):
            continue
        total += _text_chars(m.get("content"))
        calls = m.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                    total += len(fn["arguments"])
    return total


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}[... {len(text) - limit} characters clipped from the audit record]"


def _clip_content(content: Any, limit: int) -> Any:
    if isinstance(content, str):
        return _clip(content, limit)
    if isinstance(content, list):
        return [
            {**p, "text": _clip(p["text"], limit)}
            if isinstance(p, dict) and isinstance(p.get("text"), str)
            else p
            for p in content
        ]
    return content


def clip_messages(messages: Sequence[Message], limit: int = CLIP_CHARS) -> list[Message]:
    """New messages with every text (content, text parts, tool-call arguments) cut to ``limit``
    characters plus a marker saying how many were clipped; unchanged messages are shared."""
    out: list[Message] = []
    for m in messages:
        if not isinstance(m, dict) or message_chars([m]) <= limit:
            out.append(m)
            continue
        new: dict[str, Any] = {**m, "content": _clip_content(m.get("content"), limit)}
        calls = m.get("tool_calls")
        if isinstance(calls, list):
            new["tool_calls"] = [_clip_call(c, limit) for c in calls]
        out.append(new)
    return out


def _clip_call(call: Any, limit: int) -> Any:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("arguments"), str):
        return call
    return {**call, "function": {**fn, "arguments": _clip(fn["arguments"], limit)}}


def rejected_by_limits(interaction: Interaction) -> bool:
    """True when an enforced ``limits`` decision blocked ``interaction`` before the upstream."""
    return any(
        d.enforced and d.verdict is Verdict.BLOCK and d.policy_type == "limits" and d.stage is Stage.PRE_CALL
        for d in interaction.decisions
    )


def _run_stage(pipeline: Pipeline, ctx: CheckContext, enabled: Enabled) -> StageResult:
    """A pipeline stage on a private event loop in the calling (worker) thread."""
    return asyncio.run(pipeline.run(ctx, enabled))


# -- the child process: its own pipeline (unpickled once) and privacy redactor -----------------

_CHILD: dict[str, Any] = {}


def _child_init(pipeline_blob: bytes) -> None:
    _CHILD["pipeline"] = pickle.loads(pipeline_blob)  # noqa: S301 - our own parent's pipeline
    _CHILD["redactor"] = PrivacyRedactor()
    parent = os.getppid()
    threading.Thread(target=_exit_with, args=(parent,), name="rollguard-parent-watch", daemon=True).start()


def _exit_with(parent: int, every_s: float = 1.0) -> None:
    """End this child process within ``every_s`` seconds of its gateway process dying (a SIGKILLed
    gateway must not leave its large-input workers running: they are re-parented, so the parent
    pid changes)."""
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(0)


def _child_ready() -> bool:
    return "pipeline" in _CHILD


def _child_stage(
    ctx: CheckContext, enabled_ids: frozenset[str], shadow_ids: frozenset[str] = frozenset()
) -> tuple[StageResult, CheckContext]:
    pipeline: Pipeline = _CHILD["pipeline"]

    def enabled(cp: ConfiguredPolicy) -> bool | Mode:
        return Mode.SHADOW if cp.id in shadow_ids else cp.id in enabled_ids

    result = asyncio.run(pipeline.run(ctx, enabled))
    return result, ctx


def _child_redact(interaction: Interaction, coverage: Coverage | None) -> dict[str, Any]:
    redactor: PrivacyRedactor = _CHILD["redactor"]
    return redactor.redact_record(interaction, coverage)


def _adopt(ctx: CheckContext, out: CheckContext) -> None:
    """Copy what the child's pipeline changed in its copy ``out`` into the caller's ``ctx`` (the
    vault in place: later stages of the request hold it)."""
    ctx.messages = out.messages
    ctx.completion = out.completion
    ctx.completion_tool_calls = out.completion_tool_calls
    for f in dataclasses.fields(ctx.vault):
        setattr(ctx.vault, f.name, getattr(out.vault, f.name))


class LargeInputs:
    """The size threshold (``threshold_chars``) and the workers for large requests. With
    ``pipeline`` the checks and the audit redaction run in ``workers`` child processes (spawned,
    each with a copy of ``pipeline`` pickled once at start: no GIL shared with the event loop);
    without it, or when the pipeline cannot be pickled or a child fails, on ``workers`` threads.
    ``close()`` at shutdown (waits for running work)."""

    def __init__(
        self, threshold_chars: int = LARGE_INPUT_CHARS, workers: int = 1, pipeline: Pipeline | None = None
    ) -> None:
        if threshold_chars < 1 or workers < 1:
            raise ValueError("threshold_chars and workers must be at least 1")
        self.threshold_chars = threshold_chars
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rollguard-large")
        self._pipeline = pipeline
        self._procs: ProcessPoolExecutor | None = None
        if pipeline is not None:
            self._procs = self._start_processes(pipeline, workers)
        self.offloaded = 0
        """Jobs run off the loop so far (a counter for tests and metrics)."""

    @staticmethod
    def _start_processes(pipeline: Pipeline, workers: int) -> ProcessPoolExecutor | None:
        try:
            blob = pickle.dumps(pipeline)
        except Exception as exc:  # a custom policy holding a lock, a lambda ...
            log.warning("large inputs are checked on a thread: the pipeline cannot be pickled (%s)", exc)
            return None
        procs = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_child_init,
            initargs=(blob,),
        )
        procs.submit(_child_ready)  # start the child now, not on the first large request
        return procs

    @property
    def mode(self) -> str:
        """``process`` or ``thread``: where large requests are checked now."""
        return "process" if self._procs is not None else "thread"

    def is_large(self, messages: Sequence[Message]) -> bool:
        """True when ``messages`` hold more than ``threshold_chars`` characters of text."""
        return message_chars(messages) > self.threshold_chars

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the thread pool, in a copy of the caller's context (so the request's
        span is the current span there); re-raises what ``fn`` raises."""
        self.offloaded += 1
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._pool, ctx.run, fn, *args)

    async def _in_child(self, fn: Callable[..., T], *args: Any) -> T | None:
        """``fn(*args)`` in a child process; None (and thread mode from now on) when the pool
        is broken (a child died or could not start)."""
        procs = self._procs
        if procs is None:
            return None
        try:
            self.offloaded += 1
            return await asyncio.get_running_loop().run_in_executor(procs, fn, *args)
        except BrokenProcessPool:
            log.error("the large-input process pool broke; checking large inputs on a thread from now on")
            self._procs = None
            procs.shutdown(wait=False, cancel_futures=True)
            return None

    async def run_stage(self, pipeline: Pipeline, ctx: CheckContext, enabled: Enabled) -> StageResult:
        """``pipeline.run(ctx, enabled)`` off the loop, with the same effect on ``ctx`` (inline
        policies keep their CPU-time timeout, measured where they run; threaded ones their
        wall-clock timeout)."""
        if pipeline is self._pipeline and self._procs is not None:
            modes = {cp.id: enabled(cp) for cp in pipeline.policies}
            ids = frozenset(i for i, on in modes.items() if on)
            shadow = frozenset(i for i, on in modes.items() if on is Mode.SHADOW)
            done = await self._in_child(_child_stage, ctx, ids, shadow)
            if done is not None:
                result, out = done
                _adopt(ctx, out)
                return result
        return await self.call(_run_stage, pipeline, ctx, enabled)

    async def redact_record(
        self, redactor: PrivacyRedactor, interaction: Interaction, coverage: Coverage | None
    ) -> dict[str, Any]:
        """``redactor.redact_record(interaction, coverage)`` off the loop (in a child process,
        with its own redactor of the same default configuration, when there is one)."""
        if self._procs is not None:
            rec = await self._in_child(_child_redact, interaction, coverage)
            if rec is not None:
                return rec
        return await self.call(redactor.redact_record, interaction, coverage)

    def close(self) -> None:
        """Stop the pools after the work already queued (blocking)."""
        if self._procs is not None:
            self._procs.shutdown(wait=True, cancel_futures=False)
        self._pool.shutdown(wait=True, cancel_futures=False)

    async def aclose(self) -> None:
        """``close()`` without blocking the event loop."""
        await asyncio.to_thread(self.close)
