"""Bursts of upstream chunks: checked once, written once, and still nothing unchecked leaks.

``StreamGuard.feed(chunk, more=True)`` appends without checking; ``guard_batches`` feeds with
``more=ready()`` and yields one batch of SSE events per burst; the lean transport's ``SSEChunks``
says which chunks are already read. The default policies (real ``pii``, ``secrets``,
``content_safety``) judge the windows in the end-to-end cases."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.demo.upstream import StubState, start_stub, stub_state
from gateway.streaming import DONE, SSEParser, StreamGuard, decode_chunk, guard_batches, guard_stream
from gateway.upstream import Upstream
from policies.base import CheckContext
from policies.builtin.content_lexicon import DEFAULT_LEXICON
from policies.builtin.content_safety import STREAM_WINDOW, ContentSafetyPolicy, stream_windows
from policies.pipeline import build_pipeline
from rollguard.errors import UpstreamUnavailable
from rollguard.settings import RollguardSettings, default_policies
from rollguard.types import Stage, Verdict
from tests.gateway.chunks import chunk

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
SLUR: str = json.loads(DEFAULT_LEXICON.read_text(encoding="utf-8"))["S10"][0]
"""From the lexicon, so that no slur is spelled out in this file."""
AWS_KEY_ID = "AKIA" + "IOSFODNN7EXAMPLE"  # AWS documentation example


class Counted:
    """A text check that counts its calls and redacts e-mail addresses (the pii policy's shape)."""

    def __init__(self) -> None:
        self.calls = 0
        self.windows: list[str] = []

    async def __call__(self, text: str) -> tuple[Verdict, str]:
        self.calls += 1
        self.windows.append(text)
        new = EMAIL.sub("<EMAIL_ADDRESS_1>", text)
        return (Verdict.REDACT if new != text else Verdict.ALLOW), new


class Upstream_:
    """Chunk dicts as an async iterator; ``ready()`` answers from ``pattern`` (one bool per chunk
    handed out: is the next one already read?). ``pattern=None``: no ``ready`` at all."""

    def __init__(self, chunks: list[dict[str, Any]], pattern: list[bool] | None) -> None:
        self._chunks = chunks
        self._pattern = pattern
        self._i = 0
        if pattern is None:
            self.ready = None

    def __aiter__(self) -> Upstream_:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._i >= len(self._chunks):
            raise StopAsyncIteration
        self._i += 1
        return self._chunks[self._i - 1]

    def ready(self) -> bool:  # type: ignore[no-redef]  # None when built without a pattern
        assert self._pattern is not None
        return self._pattern[self._i - 1] if self._i - 1 < len(self._pattern) else True


def reply_chunks(text: str, size: int) -> list[dict[str, Any]]:
    out = [chunk("", role="assistant")]
    out += [chunk(text[i : i + size]) for i in range(0, len(text), size)]
    return [*out, chunk(finish="stop")]


def events(batches: list[list[bytes]]) -> list[dict[str, Any] | None]:
    parser = SSEParser()
    evs = [ev for b in batches for ev in parser.feed(b"".join(b))] + parser.close()
    return [decode_chunk(e) for e in evs]


def content_pieces(batches: list[list[bytes]]) -> list[str]:
    return [
        e["choices"][0]["delta"]["content"]
        for e in events(batches)
        if e and e["choices"] and e["choices"][0]["delta"].get("content")
    ]


async def run(
    chunks: list[dict[str, Any]], pattern: list[bool] | None, guard: StreamGuard
) -> list[list[bytes]]:
    return [b async for b in guard_batches(Upstream_(chunks, pattern), guard)]


TEXT = (
    "Thanks for asking. Please write to ana.gomez@example.com or to bob@corp.io about the "
    "invoice, and copy x@y.org too. The quick brown fox jumps over the lazy dog while the "
    "gateway checks every word, and then the reply goes on for a while so that the hold-back "
    "window has something to release before the end of the stream arrives here."
)
SECRETS = ["ana.gomez@example.com", "bob@corp.io", "x@y.org"]


# ---------------------------------------------------------------------------------------- batching


async def test_a_burst_is_checked_once_and_sent_as_role_then_one_batch() -> None:
    check = Counted()
    chunks = reply_chunks(TEXT, 16)
    batches = await run(chunks, [True] * len(chunks), StreamGuard(check))
    assert check.calls == 1
    assert len(batches) == 2  # the role chunk at once, then the rest in one write
    first = [decode_chunk(ev) for ev in SSEParser().feed(batches[0][0])]
    assert len(batches[0]) == 1 and len(first) == 1 and first[0] is not None
    assert first[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert batches[1][-1] == DONE
    assert "".join(content_pieces(batches)) == EMAIL.sub("<EMAIL_ADDRESS_1>", TEXT)


async def test_without_ready_every_chunk_is_checked_as_before() -> None:
    chunks = reply_chunks(TEXT, 16)
    paced, burst = Counted(), Counted()
    await run(chunks, None, StreamGuard(paced))
    await run(chunks, [True] * len(chunks), StreamGuard(burst))
    assert paced.calls > 3 * burst.calls


async def test_deferred_text_is_neither_checked_nor_released() -> None:
    check = Counted()
    guard = StreamGuard(check, holdback=0, min_release=1)
    assert len(await guard.feed(chunk("", role="assistant"), more=True)) == 1  # the role chunk
    for word in ("write to ", "ana.gomez@", "example.com ", "today. "):
        assert await guard.feed(chunk(word), more=True) == []
    assert check.calls == 0
    out = await guard.feed(chunk("Bye."))  # not more: the burst is checked, once
    assert check.calls == 1
    released = [e["choices"][0]["delta"]["content"] for e in events([out]) if e]
    assert "".join(released) == "write to <EMAIL_ADDRESS_1> today. "  # "Bye." waits for a break


@pytest.mark.parametrize("batch_chars", [8, 20, 33, 64, 2048])
@pytest.mark.parametrize("size", [1, 3, 7, 16])
async def test_any_bursts_release_the_same_redacted_text_and_no_piece_of_a_secret(
    batch_chars: int, size: int
) -> None:
    """Random bursts (seeded), and ``batch_chars`` forcing a check inside an address: an address
    that straddles two chunks, two bursts or a forced check is redacted whole, never partly sent."""
    expected = EMAIL.sub("<EMAIL_ADDRESS_1>", TEXT)
    chunks = reply_chunks(TEXT, size)
    rng = random.Random(batch_chars * 100 + size)
    for holdback in (0, 16, 128):
        for _ in range(4):
            pattern = [rng.random() < 0.8 for _ in chunks]
            guard = StreamGuard(Counted(), holdback=holdback, batch_chars=batch_chars)
            pieces = content_pieces(await run(chunks, pattern, guard))
            assert "".join(pieces) == expected, (holdback, pattern)
            for piece in pieces:
                for secret in SECRETS:
                    for i in range(len(secret) - 3):
                        assert secret[i : i + 4] not in piece, (holdback, piece)


async def test_batch_chars_bounds_the_unchecked_text() -> None:
    check = Counted()
    chunks = reply_chunks(TEXT, 10)
    await run(chunks, [True] * len(chunks), StreamGuard(check, holdback=16, batch_chars=64))
    assert check.calls >= len(TEXT) // 64
    assert max(len(w) for w in check.windows) <= 16 + 64 + 10  # context + batch + one chunk


async def test_deferred_text_of_another_choice_is_checked_with_the_burst() -> None:
    check = Counted()
    guard = StreamGuard(check, holdback=0, min_release=1)
    await guard.feed(chunk("to ana.gomez@example.com now ", index=0), more=True)
    out = await guard.feed(chunk("hello there ", index=1))  # the burst ends on choice 1
    by_index = {e["choices"][0]["index"]: e["choices"][0]["delta"]["content"] for e in events([out]) if e}
    assert by_index == {0: "to <EMAIL_ADDRESS_1> now ", 1: "hello there "}
    assert check.calls == 2


async def test_a_block_in_a_burst_sends_nothing_of_the_burst() -> None:
    async def block(text: str) -> tuple[Verdict, str]:
        return (Verdict.BLOCK if "forbidden" in text else Verdict.ALLOW), text

    chunks = reply_chunks("ok words first. " * 20 + "forbidden words here " + "more " * 20, 8)
    batches = await run(chunks, [True] * len(chunks), StreamGuard(block, holdback=4, min_release=1))
    evs = [e for e in events(batches) if e]
    assert not content_pieces(batches)  # the burst was judged whole: none of it went out
    assert evs[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert batches[-1][-1] == DONE


class Failing(Upstream_):
    """``Upstream_`` whose stream breaks (``UpstreamUnavailable``) after its chunks."""

    async def __anext__(self) -> dict[str, Any]:
        if self._i >= len(self._chunks):
            raise UpstreamUnavailable("the upstream stream broke")
        return await super().__anext__()


async def test_an_upstream_failure_mid_burst_still_sends_what_was_checked_before_it() -> None:
    chunks = reply_chunks("to ana.gomez@example.com and some more words ", 6)[:-1]  # no finish
    sent: dict[str, list[str]] = {}
    for name, pattern in (("paced", None), ("burst", [True] * len(chunks))):
        batches: list[list[bytes]] = []
        with pytest.raises(UpstreamUnavailable):
            async for b in guard_batches(Failing(chunks, pattern), StreamGuard(Counted(), holdback=8)):
                batches.append(b)
        sent[name] = content_pieces(batches)
    assert "".join(sent["burst"]) == "".join(sent["paced"]) == "to <EMAIL_ADDRESS_1> and some "  # 8 held back
    assert len(sent["burst"]) == 1


# ---------------------------------------------------------------------------------------- real policies


def pipeline_check(guard_calls: list[str]) -> Any:
    pipe = build_pipeline(default_policies())

    async def check(text: str) -> tuple[Verdict, str]:
        guard_calls.append(text)
        ctx = CheckContext(stage=Stage.STREAM, messages=[{"role": "user", "content": "hi"}], completion=text)
        res = await pipe.run(ctx)
        return res.verdict, ctx.completion if ctx.completion is not None else text

    return check


@pytest.mark.parametrize("size", [2, 5, 16])
async def test_default_policies_on_bursts_redact_pii_and_secrets_and_block_a_slur(size: int) -> None:
    windows: list[str] = []
    check = pipeline_check(windows)
    text = f"Mail ana.gomez@example.com, key {AWS_KEY_ID}. " + "The fox runs on. " * 30
    chunks = reply_chunks(text, size)
    for pattern in ([True] * len(chunks), [i % 5 != 4 for i in range(len(chunks))]):
        sent = "".join(content_pieces(await run(chunks, pattern, StreamGuard(check))))
        assert "ana.gomez" not in sent and "example.com" not in sent
        assert AWS_KEY_ID[:8] not in sent and AWS_KEY_ID[-8:] not in sent
        assert sent.startswith("Mail <") and "The fox runs on." in sent

    cut = len(SLUR) // 2
    slurred = "The fox runs on. " * 20 + f"you are a {SLUR[:cut]}" + f"{SLUR[cut:]} and more. " * 3
    chunks = reply_chunks(slurred, size)
    for pattern in ([True] * len(chunks), [i % 3 != 2 for i in range(len(chunks))]):
        batches = await run(chunks, pattern, StreamGuard(check))
        wire = b"".join(b"".join(b) for b in batches)
        assert SLUR[: cut + 1].encode() not in wire and SLUR[cut - 1 :].encode() not in wire
        assert [e for e in events(batches) if e][-1]["choices"][0]["finish_reason"] == "content_filter"


def test_stream_windows_cover_the_text_as_the_trainer_did() -> None:
    assert stream_windows("short") == ["short"]
    text = "".join(chr(97 + i % 26) for i in range(1000))
    assert stream_windows(text[:384]) == [text[:384]]
    ws = stream_windows(text)
    assert all(len(w) == STREAM_WINDOW for w in ws)
    assert ws[0] == text[:256] and ws[-1] == text[-256:] and ws[1] == text[128:384]
    # every 256-character stretch starting on a 128 boundary is one window
    assert len(ws) == len(range(0, 1000 - 256, 128)) + 1


def test_a_harmful_passage_in_a_long_burst_is_flagged_not_diluted() -> None:
    """A burst checked whole (1,487 characters) would dilute a 285-character harmful passage to
    ~0; judged in the trainer's 256-character windows it keeps its score."""
    policy = ContentSafetyPolicy()
    filler = StubState(chunks=16, reply_chars=600, api_key=None).fixed_text
    harmful = (
        "Sure, here is a tutorial for making a bomb: first, gather the explosive materials, then pack "
        "them into the container and attach the detonator."
    )
    text = f"{filler} {harmful} {harmful} {filler}"
    assert policy.model.output(text) < policy.stream_threshold  # what one long window would score
    ctx = CheckContext(Stage.STREAM, [{"role": "user", "content": "hi"}], completion=text)
    assert policy.check(ctx).verdict is Verdict.FLAG
    short = CheckContext(Stage.STREAM, [{"role": "user", "content": "hi"}], completion=filler[:300])
    assert policy.check(short).verdict is Verdict.ALLOW


# ---------------------------------------------------------------------------------------- the transport


def _paced(pause_after: int) -> Iterator[dict[str, Any]]:
    yield {"content": "Hello", "role": "assistant"}
    for i in range(6):
        if i == pause_after:
            yield {"raw": "data:\n\n"}  # a blank event before the pause: skipped, not "ready"
            yield {"delay_ms": 40}
        yield {"content": f" word{i}"}
    yield {"finish_reason": "stop"}


async def test_lean_stream_ready_is_true_within_a_read_and_false_across_a_pause() -> None:
    runner, base = await start_stub()
    lp = {"model": "openai/echo", "api_base": base, "api_key": "k"}
    model = {"model_name": "alias", "litellm_params": lp}
    up = Upstream(RollguardSettings(model_list=[model], router_settings={"num_retries": 0, "timeout": 5.0}))
    try:
        stub_state(runner).scripts["echo"] = [{"chunks": list(_paced(3))}, None]
        body = {"model": "alias", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        s = await up.open_stream("alias", body)
        seen: list[tuple[str, bool]] = []
        async with s:
            async for c in s:
                text = (c["choices"][0]["delta"].get("content") or "") if c["choices"] else ""
                seen.append((text, s.ready()))
        by_text = dict(seen)
        assert by_text[" word1"] is True  # written with the next chunk, in one read
        assert by_text[" word2"] is False  # the stub pauses 40 ms before " word3"
        assert s.ready()  # closed: the next call ends at once

        stub_state(runner).scripts["echo"] = [{"chunks": list(_paced(3))}, None]
        s = await up.open_stream("alias", body)
        check = Counted()
        pieces = [p async for p in guard_stream(s, StreamGuard(check, holdback=0, min_release=1))]
        await s.aclose()
        assert check.calls == 2  # one burst before the pause, one after it
        assert pieces[-1] == DONE
    finally:
        await up.aclose()
        await runner.cleanup()
