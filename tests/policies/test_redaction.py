"""Shared span machinery of ``pii`` / ``secrets`` (``policies.builtin.redaction``) and the
request's ``RedactionVault``: overlap resolution against a reference implementation, growth of the
cost with the number of matches (CPU time of n vs 8n, never wall-clock thresholds), and
placeholders that never collide with look-alike text already in the request."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable
from typing import Any

import pytest

from policies.base import CheckContext, RedactionVault
from policies.builtin.pii import PiiPolicy
from policies.builtin.redaction import Span, resolve_overlaps
from policies.builtin.secret_patterns import SecretFinder
from policies.builtin.secrets import SecretsPolicy
from policies.cpu_clock import policy_cpu_seconds
from rollguard.types import Stage, Verdict

# --- overlap resolution ----------------------------------------------------------------------


def reference_resolve(spans: list[Span]) -> list[Span]:
    """The definition: take non-empty spans by (priority, longer first, earlier start, listed
    first) and keep each that overlaps nothing kept; return them by start. O(n^2)."""
    ranked = sorted(
        (s for s in spans if s.end > s.start), key=lambda s: (s.priority, s.start - s.end, s.start)
    )
    kept: list[Span] = []
    for s in ranked:
        if all(s.end <= k.start or s.start >= k.end for k in kept):
            kept.append(s)
    return sorted(kept, key=lambda s: s.start)


def _random_spans(rng: random.Random) -> list[Span]:
    """Adversarial mixes: random, nested (shared centre), chained (each overlaps the next) and
    identical spans (same offsets, same or different kind and priority), shuffled."""
    spans: list[Span] = []
    length = rng.randint(1, 400)
    for _ in range(rng.randint(0, 60)):
        a = rng.randint(0, length)
        spans.append(Span(rng.choice("ABC"), a, a + rng.randint(0, 20), rng.choice((10, 20, 100))))
    centre = rng.randint(0, length)
    for w in range(rng.randint(0, 25)):
        spans.append(Span("N", max(0, centre - w), centre + w + 1, rng.choice((10, 100))))
    start, step = rng.randint(0, length), rng.randint(1, 4)
    for i in range(rng.randint(0, 60)):
        spans.append(
            Span(rng.choice("CD"), start + i * step, start + i * step + step + rng.randint(1, 6), 100)
        )
    spans += [spans[i] for i in range(0, len(spans), 3)]  # exact duplicates
    spans += [Span("Z", s.start, s.end, s.priority) for s in spans[::7]]  # same offsets, other kind
    rng.shuffle(spans)
    return spans


def test_resolve_overlaps_matches_the_reference_on_random_adversarial_spans() -> None:
    rng = random.Random(20240501)
    big_groups = 0
    for case in range(1500):
        spans = _random_spans(rng)
        got = resolve_overlaps(spans)
        assert got == reference_resolve(spans), f"case {case}"
        assert all(a.end <= b.start for a, b in itertools.pairwise(got))
        big_groups += len(spans) > 40
    assert big_groups > 500  # the indexed path (groups over 16 spans) was exercised


@pytest.mark.parametrize(
    ("spans", "expected"),
    [
        ([Span("A", 0, 10, 100), Span("B", 2, 5, 10)], [Span("B", 2, 5, 10)]),  # priority beats length
        ([Span("A", 0, 4), Span("B", 2, 9), Span("C", 8, 12)], [Span("B", 2, 9)]),  # longer wins a chain
        ([Span("A", 0, 5), Span("B", 0, 5)], [Span("A", 0, 5)]),  # identical: listed first wins
        ([Span("A", 0, 3), Span("B", 3, 6)], [Span("A", 0, 3), Span("B", 3, 6)]),  # touching is fine
        ([Span("A", 4, 4), Span("B", 0, 9)], [Span("B", 0, 9)]),  # zero-width dropped
    ],
)
def test_resolve_overlaps_precedence(spans: list[Span], expected: list[Span]) -> None:
    assert resolve_overlaps(spans) == expected


# --- growth with the number of matches -------------------------------------------------------

GROWTH = 8
MAX_RATIO = 24.0
"""n log n gives about 8-10x for 8x the matches; the quadratic code gave 60-80x."""


def _cpu(fn: Callable[[], Any], repeat: int = 3) -> float:
    """Best of ``repeat`` runs, in CPU seconds of this thread outside garbage collection (the
    pipeline's own clock), so neither other threads nor a GC pause skews the ratio."""
    best = float("inf")
    for _ in range(repeat):
        t0 = policy_cpu_seconds()
        fn()
        best = min(best, policy_cpu_seconds() - t0)
    return best


def _growth(make: Callable[[int], Callable[[], Any]], n: int) -> float:
    small, large = make(n), make(GROWTH * n)
    small()
    large()  # warm up (regex caches, imports)
    return _cpu(large) / max(_cpu(small), 1e-4)


def test_overlap_resolution_cost_grows_well_below_quadratic() -> None:
    def chained(n: int) -> Callable[[], Any]:
        spans = [Span("C", 2 * i, 2 * i + 3 + i % 2, 100 - i % 3) for i in range(n)]
        random.Random(n).shuffle(spans)
        return lambda: resolve_overlaps(spans)

    ratio = _growth(chained, 2000)
    assert ratio < MAX_RATIO, f"8x the chained spans cost {ratio:.1f}x the CPU time"


def _pre_call(policy: Any, text: str) -> Callable[[], Any]:
    ctx = CheckContext(stage=Stage.PRE_CALL, messages=[{"role": "user", "content": text}])
    return lambda: policy.check(ctx)


@pytest.mark.parametrize(
    ("policy", "unit"),
    [
        (PiiPolicy(), "x@y.com "),
        (PiiPolicy(), "4111 1111 1111 1111 "),
        (SecretsPolicy(), "AKIAIOSFODNN7EXAMPLE "),
    ],
    ids=["emails", "cards", "aws-keys"],
)
def test_redacting_dense_text_cost_grows_well_below_quadratic(policy: Any, unit: str) -> None:
    def dense(n: int) -> Callable[[], Any]:
        return _pre_call(policy, unit * n)

    result = dense(100)()
    assert result.verdict is Verdict.REDACT and len(result.evidence) == 100
    ratio = _growth(dense, 1000)
    assert ratio < MAX_RATIO, f"8x the matches cost {ratio:.1f}x the CPU time"


def test_unterminated_private_key_headers_are_found_once_not_once_per_window() -> None:
    # Headers over 1,024 characters apart get windows of their own; each match runs to the end of
    # the text (no END line), so re-searching it from every window was quadratic.
    finder = SecretFinder(["PRIVATE_KEY"])
    unit = "-----BEGIN PRIVATE KEY-----\n" + "A" * 1100 + "\n"
    spans = finder(unit * 20)
    assert [(s.start, s.end) for s in spans] == [(0, len(unit) * 20)]

    def headers(n: int) -> Callable[[], Any]:
        text = unit * n
        return lambda: finder(text)

    ratio = _growth(headers, 50)
    assert ratio < MAX_RATIO, f"8x the headers cost {ratio:.1f}x the CPU time"


# --- placeholders and look-alikes --------------------------------------------------------------

ARGS = json.dumps({"to": "<EMAIL_ADDRESS_1>"})


def _redact(messages: list[dict[str, Any]], *policies: Any) -> tuple[list[dict[str, Any]], RedactionVault]:
    ctx = CheckContext(stage=Stage.PRE_CALL, messages=messages)
    for policy in policies:
        result = policy.check(ctx)
        if result.messages is not None:
            ctx.messages = result.messages
    return ctx.messages, ctx.vault


def test_typed_placeholder_lookalike_is_never_issued_nor_restored() -> None:
    messages, vault = _redact(
        [{"role": "user", "content": "<EMAIL_ADDRESS_1> mail alice@example.com"}], PiiPolicy()
    )
    assert messages[0]["content"] == "<EMAIL_ADDRESS_1> mail <EMAIL_ADDRESS_2>"
    reply = "Sure: <EMAIL_ADDRESS_1> is not an address, <EMAIL_ADDRESS_2> is."
    assert vault.restore(reply) == "Sure: <EMAIL_ADDRESS_1> is not an address, alice@example.com is."


@pytest.mark.parametrize(
    "lookalike_message",
    [
        {"role": "user", "content": "later turn quoting <EMAIL_ADDRESS_1>"},
        {"role": "system", "content": "Reply to <EMAIL_ADDRESS_1> politely."},  # a role pii does not scan
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "c1", "type": "function", "function": {"name": "f", "arguments": ARGS}
        }]},
        {"role": "user", "content": [{"type": "text", "text": "part <EMAIL_ADDRESS_1>"}]},
    ],
    ids=["later-message", "unscanned-role", "tool-call-arguments", "content-part"],
)  # fmt: skip
def test_lookalikes_anywhere_in_the_request_are_reserved_before_numbering(
    lookalike_message: dict[str, Any],
) -> None:
    messages, vault = _redact(
        [{"role": "user", "content": "write to bob@example.org"}, lookalike_message], PiiPolicy()
    )
    assert messages[0]["content"] == "write to <EMAIL_ADDRESS_2>"
    assert vault.restore("<EMAIL_ADDRESS_1> <EMAIL_ADDRESS_2>") == "<EMAIL_ADDRESS_1> bob@example.org"


def test_second_transform_keeps_the_first_ones_placeholders_restorable() -> None:
    text = "key AKIAIOSFODNN7EXAMPLE for ann@example.com; typed <AWS_ACCESS_KEY_1> <EMAIL_ADDRESS_1>"
    messages, vault = _redact([{"role": "user", "content": text}], PiiPolicy(), SecretsPolicy())
    redacted = messages[0]["content"]
    assert (
        redacted == "key <AWS_ACCESS_KEY_2> for <EMAIL_ADDRESS_2>; typed <AWS_ACCESS_KEY_1> <EMAIL_ADDRESS_1>"
    )
    assert vault.restore(redacted) == text


def test_post_call_completion_lookalike_is_reserved() -> None:
    ctx = CheckContext(
        stage=Stage.POST_CALL,
        messages=[{"role": "user", "content": "hi"}],
        completion="Forward <EMAIL_ADDRESS_1> to eve@example.net",
    )
    result = PiiPolicy().check(ctx)
    assert result.completion == "Forward <EMAIL_ADDRESS_1> to <EMAIL_ADDRESS_2>"
    assert ctx.vault.restore(result.completion) == "Forward <EMAIL_ADDRESS_1> to eve@example.net"


def test_restore_is_one_pass_and_only_for_issued_placeholders() -> None:
    vault = RedactionVault()
    first = vault.placeholder("URL_CREDENTIALS", "p<EMAIL_ADDRESS_1>q")  # a value shaped like a placeholder
    second = vault.placeholder("EMAIL_ADDRESS", "real@example.com")
    assert (first, second) == ("<URL_CREDENTIALS_1>", "<EMAIL_ADDRESS_1>")
    assert vault.restore(f"{first} {second} <EMAIL_ADDRESS_7>") == (
        "p<EMAIL_ADDRESS_1>q real@example.com <EMAIL_ADDRESS_7>"
    )


def test_reserve_skips_each_reserved_number() -> None:
    vault = RedactionVault()
    vault.reserve("<PHONE_NUMBER_1> <PHONE_NUMBER_2> <PHONE_NUMBER_4> <phone_number_3> <PHONE_NUMBER_03>")
    assert [vault.placeholder("PHONE_NUMBER", v) for v in "abc"] == [
        "<PHONE_NUMBER_3>",
        "<PHONE_NUMBER_5>",
        "<PHONE_NUMBER_6>",
    ]
    assert vault.placeholder("PHONE_NUMBER", "a") == "<PHONE_NUMBER_3>"
