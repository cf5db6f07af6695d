"""The per-text result cache (``policies.score_cache``) and its use by the ``pii`` / ``secrets``
policies: a conversation's earlier messages are scanned once; a new configuration never reads an
old result; memory stays bounded; the verdicts and placeholders are what an uncached run gives."""

from __future__ import annotations

import threading

import pytest

from policies.base import CheckContext
from policies.builtin.pii import PiiPolicy
from policies.builtin.redaction import MESSAGE_SPANS, Span, cached_finder
from policies.builtin.secrets import SecretsPolicy
from policies.score_cache import SHORT_KEY_CHARS, ScoreCache, text_key
from rollguard.types import Stage, Verdict

EMAIL = "jane.roe@example.com"


class CountingFinder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, text: str) -> list[Span]:
        self.calls.append(text)
        i = text.find("@")
        return [Span("AT", i, i + 1)] if i >= 0 else []


def test_second_lookup_is_a_hit_and_computes_nothing() -> None:
    cache: ScoreCache[tuple[Span, ...]] = ScoreCache(max_entries=10)
    finder = CountingFinder()
    find = cached_finder(finder, "ns", cache)
    assert find("a@b") == [Span("AT", 1, 2)]
    assert find("a@b") == [Span("AT", 1, 2)]
    assert finder.calls == ["a@b"]
    assert (cache.hits, cache.misses) == (1, 1)


def test_a_new_namespace_version_never_reads_the_old_result() -> None:
    cache: ScoreCache[tuple[Span, ...]] = ScoreCache(max_entries=10)
    old, new = CountingFinder(), CountingFinder()
    cached_finder(old, "pii:v1", cache)("x@y")
    cached_finder(new, "pii:v2", cache)("x@y")
    assert new.calls == ["x@y"]  # the v2 finder ran although v1 had the same text cached
    assert len(cache) == 2


def test_policies_with_different_entity_sets_do_not_share_results() -> None:
    MESSAGE_SPANS.clear()
    text = f"mail {EMAIL} or call 415-555-0100"
    only_phone = PiiPolicy(entities=["PHONE_NUMBER"])
    everything = PiiPolicy()
    first = only_phone.check(CheckContext(Stage.PRE_CALL, [{"role": "user", "content": text}]))
    second = everything.check(CheckContext(Stage.PRE_CALL, [{"role": "user", "content": text}]))
    assert [e.kind for e in first.evidence] == ["PHONE_NUMBER"]
    assert sorted(e.kind for e in second.evidence) == ["EMAIL_ADDRESS", "PHONE_NUMBER"]


def test_lru_evicts_the_least_recently_used_and_stays_bounded() -> None:
    cache: ScoreCache[tuple[Span, ...]] = ScoreCache(max_entries=3)
    finder = CountingFinder()
    find = cached_finder(finder, "ns", cache)
    for t in ("a", "b", "c"):
        find(t)
    find("a")  # now "b" is the least recently used
    find("d")
    assert len(cache) == 3
    finder.calls.clear()
    find("a")
    find("b")
    assert finder.calls == ["b"]
    for i in range(1000):
        find(f"text {i} " + "z" * (SHORT_KEY_CHARS + i))
    assert len(cache) == 3


def test_long_texts_are_keyed_by_a_fixed_size_digest_and_results_with_many_items_are_not_kept() -> None:
    long_text = "q" * 100_000
    key = text_key(long_text)
    assert isinstance(key, bytes) and len(key) == 16
    assert text_key("short") == "short"
    assert text_key("\ud800" + "x" * SHORT_KEY_CHARS)  # a lone surrogate does not raise
    cache: ScoreCache[tuple[Span, ...]] = ScoreCache(max_entries=10, max_items=2)
    many = "@" * 5

    def all_at(text: str) -> tuple[Span, ...]:
        return tuple(Span("AT", i, i + 1) for i, c in enumerate(text) if c == "@")

    assert len(cache.get_or_compute("ns", many, all_at)) == 5
    assert len(cache) == 0


def test_cached_and_uncached_runs_give_the_same_redaction_across_turns() -> None:
    MESSAGE_SPANS.clear()
    history = [
        {"role": "system", "content": "You are the helpdesk. Escalate to ops@example.org."},
        {"role": "user", "content": f"I am {EMAIL}, key AKIAIOSFODNN7EXAMPLE"},
        {"role": "assistant", "content": "Thanks, noted."},
    ]
    for policy in (PiiPolicy(), SecretsPolicy()):
        cached_path = policy.message_finder
        for turn in ("and my phone is 415-555-0100", "anything else?"):
            messages = [*history, {"role": "user", "content": turn}]
            policy.message_finder = cached_path
            cached = policy.check(CheckContext(Stage.PRE_CALL, list(messages)))
            policy.message_finder = policy.finder  # the uncached path
            plain = policy.check(CheckContext(Stage.PRE_CALL, list(messages)))
            assert cached.verdict == plain.verdict
            assert cached.messages == plain.messages
            assert cached.evidence == plain.evidence
    assert MESSAGE_SPANS.hits > 0


def test_a_twenty_turn_chat_scans_only_its_new_turn() -> None:
    MESSAGE_SPANS.clear()
    finder = CountingFinder()
    policy = PiiPolicy()
    policy.message_finder = cached_finder(finder, "count")
    messages: list[dict[str, str]] = [{"role": "system", "content": "be brief"}]
    for turn in range(20):
        messages.append({"role": "user", "content": f"question {turn}"})
        finder.calls.clear()
        out = policy.check(CheckContext(Stage.PRE_CALL, list(messages)))
        assert out.verdict is Verdict.ALLOW
        # the new turn only: the previous answer (new as a message) and the new question; the
        # system prompt is not a pii default role, earlier turns come from the cache
        assert finder.calls == ([f"answer {turn - 1}"] if turn else []) + [f"question {turn}"]
        messages.append({"role": "assistant", "content": f"answer {turn}"})


def test_concurrent_use_from_threads_is_safe() -> None:
    cache: ScoreCache[tuple[Span, ...]] = ScoreCache(max_entries=50)
    find = cached_finder(CountingFinder(), "ns", cache)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(2000):
                assert find(f"{(seed * 7 + i) % 80}@") == [
                    Span("AT", len(f"{(seed * 7 + i) % 80}"), len(f"{(seed * 7 + i) % 80}") + 1)
                ]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(cache) <= 50


def test_bad_size_is_refused() -> None:
    with pytest.raises(ValueError):
        ScoreCache(max_entries=0)


def test_memoised_digests_are_the_plain_digests_and_the_memo_stays_bounded() -> None:
    """``text_key`` of a long text is its BLAKE2b digest whether or not the memo answers (first
    call, repeat, a string equal but not identical, a lone surrogate, past the memo's size); the
    memo keeps at most ``DIGEST_MEMO_ENTRIES`` texts and none longer than ``DIGEST_MEMO_CHARS``."""
    import hashlib

    from policies import score_cache

    def plain(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    score_cache._memo_digest.cache_clear()
    texts = [f"{i} " + "system prompt text " * 40 for i in range(3 * score_cache.DIGEST_MEMO_ENTRIES)]
    texts += ["x" * (SHORT_KEY_CHARS + 1), "\ud800" + "y" * 400, "z" * (score_cache.DIGEST_MEMO_CHARS + 1)]
    for text in texts + texts[::-1]:
        assert text_key(text) == plain(text)
        assert text_key("".join(list(text))) == plain(text)
    info = score_cache._memo_digest.cache_info()
    assert info.hits > 0
    assert info.currsize <= score_cache.DIGEST_MEMO_ENTRIES == info.maxsize
    big = "w" * (score_cache.DIGEST_MEMO_CHARS + 1)
    before = score_cache._memo_digest.cache_info()
    assert text_key(big) == plain(big)
    assert score_cache._memo_digest.cache_info() == before  # a text past the bound is not memoised
    assert text_key("short") == "short"
