"""The demo corpus: size, mix, determinism and OpenAI wire shape, on the shipped data."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from openai.types.chat import ChatCompletionMessageParam
from pydantic import TypeAdapter

from gateway.demo.corpus import (
    SOURCE_WEIGHTS,
    USER_POOL,
    CorpusError,
    DemoItem,
    build_corpus,
    kind_counts,
)

MESSAGES = TypeAdapter(list[ChatCompletionMessageParam])


@pytest.fixture(scope="module")
def corpus() -> list[DemoItem]:
    return build_corpus(1000)


def test_size_and_unique_ids(corpus: list[DemoItem]) -> None:
    assert len(corpus) == 1000
    assert len({it.id for it in corpus}) == 1000


def test_every_source_and_kind_is_present_in_its_share(corpus: list[DemoItem]) -> None:
    by_source = Counter(it.source for it in corpus)
    assert set(by_source) == set(SOURCE_WEIGHTS)
    for source, weight in SOURCE_WEIGHTS.items():
        assert abs(by_source[source] - 1000 * weight) <= 1, source
    kinds = kind_counts(corpus)
    assert set(kinds) == {"benign", "attack", "pii", "borderline", "harmful"}
    assert kinds["benign"] >= 400 and kinds["attack"] >= 250 and kinds["pii"] >= 150


def test_half_stream_and_some_carry_a_user(corpus: list[DemoItem]) -> None:
    assert sum(it.stream for it in corpus) == 500
    users = [it.user for it in corpus if it.user is not None]
    assert 400 <= len(users) <= 800
    assert len(set(users)) <= USER_POOL
    assert all(u.startswith("demo-user-") for u in users)
    # A stickiness key must recur, or flag stickiness has nothing to show.
    assert Counter(users).most_common(1)[0][1] > 1


def test_deterministic_and_prefix_stable() -> None:
    a, b = build_corpus(300), build_corpus(300)
    assert a == b
    assert [it.id for it in a] == [it.id for it in build_corpus(300)]


def test_every_item_is_a_valid_openai_request(corpus: list[DemoItem]) -> None:
    for it in corpus:
        MESSAGES.validate_python(it.messages)
        body = it.request()
        assert body["model"] == "demo"
        assert json.loads(json.dumps(body)) == body  # JSON-serialisable as is
        _check_tool_pairing(it.messages)
        assert it.messages[-1]["role"] in {"user", "tool"}


def _check_tool_pairing(messages: list[dict[str, Any]]) -> None:
    open_calls: set[str] = set()
    for m in messages:
        if m["role"] == "assistant":
            open_calls = {c["id"] for c in m.get("tool_calls", [])}
        elif m["role"] == "tool":
            assert m["tool_call_id"] in open_calls


def test_cyberseceval_keeps_its_system_prompt_and_bipia_uses_both_carriers(corpus: list[DemoItem]) -> None:
    cse = [it for it in corpus if it.source == "cyberseceval-prompt-injection"]
    assert cse and all(it.messages[0]["role"] == "system" for it in cse)
    bipia = [it for it in corpus if it.source == "bipia-email"]
    carriers = Counter(it.meta["carrier"] for it in bipia)
    assert carriers["tool"] > 0 and carriers["user"] > 0
    assert all(it.messages[-1]["role"] == "tool" for it in bipia if it.meta["carrier"] == "tool")


def test_pii_items_are_the_presidio_sentences(corpus: list[DemoItem]) -> None:
    pii = [it for it in corpus if it.kind == "pii"]
    assert pii and all(it.source == "presidio-synth-pii" and it.meta["entities"] for it in pii)


def test_small_and_bad_sizes() -> None:
    assert len(build_corpus(7)) == 7
    with pytest.raises(ValueError):
        build_corpus(0)


def test_missing_data_dir_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("ROLLGUARD_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(CorpusError, match="ROLLGUARD_DATA_DIR"):
        build_corpus(10)
